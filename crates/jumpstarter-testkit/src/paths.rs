//! Where things are: the workspace, the upstream venv, our binaries.

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_owned()
}

/// The venv with upstream Jumpstarter 0.9.0 (`JMP_INTEROP_VENV`, else the workspace's
/// `.venv`; made by `scripts/setup-interop-venv.sh`). Interop tests never skip: without the
/// venv they fail and say how to create it.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("JMP_INTEROP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    assert!(
        venv.join("bin/python").is_file(),
        "the upstream Jumpstarter 0.9.0 venv is missing at {} (set JMP_INTEROP_VENV or run \
         scripts/setup-interop-venv.sh)",
        venv.display()
    );
    venv
}

/// The venv's `python`.
pub fn py() -> PathBuf {
    venv().join("bin/python")
}

/// Upstream's `jmp` from the venv.
pub fn upstream_jmp() -> PathBuf {
    venv().join("bin/jmp")
}

/// Upstream's `j` from the venv.
pub fn upstream_j() -> PathBuf {
    venv().join("bin/j")
}

/// A helper script under `tests/interop/` of the workspace.
pub fn script(name: &str) -> PathBuf {
    workspace_root().join("tests/interop").join(name)
}

/// The package that builds each of our binaries, for the message when one is missing.
fn package_of(name: &str) -> &'static str {
    match name {
        "jmp" | "j" => "jumpstarter-cli",
        "jmp-controller" => "jumpstarter-controller",
        _ => "<package>",
    }
}

/// Our binary `name`, next to the running test executable: tests run from
/// `target/<profile>/deps/`, binaries are linked into `target/<profile>/`. Works from any
/// package's tests (`env!("CARGO_BIN_EXE_…")` only does inside the owning package); panics
/// naming the `cargo build` command when the binary was not built.
pub fn our_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's folder");
    let profile = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    let bin = profile.join(name);
    assert!(
        bin.is_file(),
        "our `{name}` is not built at {}: run `cargo build -p {} --bin {name}` (with the same \
         profile and target dir), or `cargo test --workspace`, which builds it",
        bin.display(),
        package_of(name)
    );
    bin
}

/// Our `jmp`.
pub fn jmp() -> PathBuf {
    our_bin("jmp")
}

/// Our `j`.
pub fn j() -> PathBuf {
    our_bin("j")
}

/// Our `jmp-controller`.
pub fn controller_bin() -> PathBuf {
    our_bin("jmp-controller")
}

/// A PATH with our binaries first (so `j` inside a shell is ours).
pub fn path_with_ours() -> String {
    let ours = jmp().parent().unwrap().to_owned();
    format!(
        "{}:{}",
        ours.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A PATH with the upstream venv first (so `j` inside a shell is upstream's).
pub fn path_with_upstream() -> String {
    format!(
        "{}:{}",
        venv().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

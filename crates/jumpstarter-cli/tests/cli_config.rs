//! `jmp config client|exporter …`, `jmp completion`, and the help tree, run as a user would,
//! on config roots in temporary directories.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(60);

/// An unsigned JWT (clients only decode tokens).
fn jwt() -> String {
    use base64::Engine;
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.sig",
        e(r#"{"alg":"none"}"#),
        e(r#"{"sub":"c","exp":4102444800}"#)
    )
}

struct Root {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cfg");
        Root { _dir: dir, root }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(jmp());
        clean(&mut c);
        c.env("JMP_CLIENT_CONFIG_HOME", &self.root)
            .env_remove("VISUAL")
            .env_remove("EDITOR")
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        run_timeout(&mut self.cmd(args), T)
    }

    /// Runs with `input` on stdin.
    fn run_input(&self, args: &[&str], input: &str) -> Output {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        wait_output(child, T, &format!("{args:?}"))
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap()
    }

    fn create_client(&self, alias: &str, endpoint: &str) {
        let out = self.run(&[
            "config",
            "client",
            "create",
            alias,
            "--namespace",
            "ns",
            "--name",
            alias,
            "-e",
            endpoint,
            "-t",
            &jwt(),
            "-a",
            "",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn client_create_list_use_delete() {
    let r = Root::new();
    r.create_client("c1", "ctl.example:443");
    let tok = jwt();
    let out = r.run(&[
        "config",
        "client",
        "create",
        "c2",
        "--namespace",
        "ns",
        "--name",
        "n2",
        "-e",
        "ctl.example:1443",
        "-t",
        &tok,
        "-a",
        "a.*,b",
        "--unsafe",
        "-k",
        "--nointeractive",
        "-o",
        "path",
    ]);
    assert_eq!(
        text(&out.stdout).trim(),
        r.file("clients/c2.yaml").display().to_string()
    );
    assert_eq!(mode(&r.file("clients/c1.yaml")), 0o600);
    assert_eq!(
        r.read("clients/c2.yaml"),
        format!(
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: ClientConfig\nmetadata:\n  namespace: ns\n  \
             name: n2\nendpoint: ctl.example:1443\ntls:\n  ca: ''\n  insecure: true\ntoken: {tok}\n\
             grpcOptions: {{}}\ndrivers:\n  allow:\n  - a.*\n  - b\n  unsafe: true\nshell:\n  \
             use_profiles: false\n"
        )
    );
    // The first client became current; the second did not change that.
    assert!(r.read("config.yaml").contains("current-client: c1"));
    let table = ok(&r.run(&["config", "client", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("CURRENT  ALIAS  ENDPOINT          PATH"),
        "{table}"
    );
    let c1 = lines.iter().find(|l| l.contains(" c1 ")).unwrap();
    assert!(
        c1.starts_with("*        c1     ctl.example:443 "),
        "{table}"
    );
    let mut names: Vec<String> = ok(&r.run(&["config", "client", "list", "-o", "name"]))
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    assert_eq!(names, ["c1", "c2"]);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&r.run(&["config", "client", "list", "-o", "json"]))).unwrap();
    assert_eq!(json["kind"], "ClientConfigList");
    assert_eq!(json["currentConfig"], "c1");
    let yaml = ok(&r.run(&["config", "client", "list", "-o", "yaml"]));
    assert!(
        yaml.starts_with(
            "apiVersion: jumpstarter.dev/v1alpha1\ncurrentConfig: c1\nitems:\n- alias: "
        ),
        "{yaml}"
    );
    assert!(yaml.ends_with("kind: ClientConfigList\n\n"), "{yaml}");

    let out = r.run(&["config", "client", "use", "c2", "-o", "path"]);
    assert_eq!(
        text(&out.stdout).trim(),
        r.file("clients/c2.yaml").display().to_string()
    );
    assert!(r.read("config.yaml").contains("current-client: c2"));
    // Deleting the current client moves current-client to another one.
    ok(&r.run(&["config", "client", "delete", "c2"]));
    assert!(!r.file("clients/c2.yaml").exists());
    assert!(r.read("config.yaml").contains("current-client: c1"));
    ok(&r.run(&["config", "client", "delete", "c1"]));
    assert!(r.read("config.yaml").contains("current-client: null"));
    assert_eq!(
        ok(&r.run(&["config", "client", "list"])),
        "No resources found.\n"
    );
}

#[test]
fn client_create_prompts_like_upstream() {
    let r = Root::new();
    let tok = jwt();
    let out = r.run_input(
        &["config", "client", "create", "p1"],
        &format!("ns\nn1\nctl:443\n{tok}\njumpstarter_driver_*\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "Enter a valid Jumpstarter client namespace: Enter a valid Jumpstarter client name: \
         Enter a valid Jumpstarter service endpoint: Enter a Jumpstarter auth token (hidden): \
         Enter a comma-separated list of allowed driver packages (optional) []: "
    );
    let c = r.read("clients/p1.yaml");
    assert!(c.contains("  - jumpstarter_driver_*\n"), "{c}");
    assert!(c.contains("endpoint: ctl:443\n"), "{c}");
    // Input ends before every answer is given: aborted, nothing written.
    let out = r.run_input(&["config", "client", "create", "p2"], "ns\nn2\n");
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).ends_with("Aborted!\n"),
        "{}",
        text(&out.stderr)
    );
    assert!(!r.file("clients/p2.yaml").exists());
    // Insecure TLS asks for confirmation unless --nointeractive.
    let args = [
        "config",
        "client",
        "create",
        "k1",
        "--namespace",
        "ns",
        "--name",
        "k",
        "-e",
        "c:1",
        "-t",
        &tok,
        "-a",
        "",
        "-k",
    ];
    let out = r.run_input(&args, "n\n");
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("Continue? [y/N]: Error: Aborted by user.\n"),
        "{}",
        text(&out.stderr)
    );
    assert!(!r.file("clients/k1.yaml").exists());
    let out = r.run_input(&args, "y\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(r.read("clients/k1.yaml").contains("insecure: true"));
}

#[test]
fn exporter_create_list_delete() {
    let r = Root::new();
    let out = r.run_input(&["config", "exporter", "create"], "ns\nen\nep:1\nsecret\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "Namespace: Name: Endpoint: Token: ");
    assert_eq!(mode(&r.file("exporters/default.yaml")), 0o600);
    assert_eq!(
        r.read("exporters/default.yaml"),
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata:\n  namespace: ns\n  \
         name: en\nendpoint: ep:1\ntls:\n  ca: ''\n  insecure: false\ntoken: secret\ngrpcOptions: {}\n\
         description: null\nexport: {}\nhooks:\n  beforeLease: null\n  afterLease: null\n\
         failureDetection:\n  maxRapidFailures: 5\n  rapidFailureWindow: 60\n"
    );
    let out = r.run(&[
        "config",
        "exporter",
        "create",
        "default",
        "--namespace",
        "a",
        "--name",
        "b",
        "--endpoint",
        "c",
        "--token",
        "d",
    ]);
    assert_eq!(code(&out), 1);
    assert_eq!(text(&out.stderr), "Error: exporter \"default\" exists\n");
    let out = r.run(&[
        "config",
        "exporter",
        "create",
        "e2",
        "--namespace",
        "a",
        "--name",
        "b",
        "--endpoint",
        "c",
        "--token",
        "d",
        "-o",
        "path",
    ]);
    assert_eq!(
        text(&out.stdout).trim(),
        r.file("exporters/e2.yaml").display().to_string()
    );
    let table = ok(&r.run(&["config", "exporter", "list"]));
    assert!(table.starts_with("ALIAS    PATH"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&r.run(&["config", "exporter", "list", "-o", "json"]))).unwrap();
    assert_eq!(json["kind"], "ExporterConfigList");
    assert_eq!(json["items"].as_array().unwrap().len(), 2);
    ok(&r.run(&["config", "exporter", "delete", "e2"]));
    let out = r.run(&["config", "exporter", "delete", "e2"]);
    assert_eq!(code(&out), 1);
    assert_eq!(text(&out.stderr), "Error: exporter \"e2\" does not exist\n");
    assert_eq!(
        ok(&r.run(&["config", "exporter", "list", "-o", "name"])),
        "default\n"
    );
}

#[test]
fn edit_replaces_the_file_only_when_the_new_text_is_valid() {
    let r = Root::new();
    r.create_client("c1", "old:1");
    let editor = r.root.join("editor.sh");
    // The "editor" replaces `endpoint` with $NEW_ENDPOINT, or writes $NEW_TEXT.
    std::fs::write(
        &editor,
        "#!/bin/sh\nif [ -n \"$NEW_TEXT\" ]; then printf '%s' \"$NEW_TEXT\" > \"$1\"; \
         else sed -i \"s/^endpoint: .*/endpoint: $NEW_ENDPOINT/\" \"$1\"; fi\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run_timeout(
        r.cmd(&["config", "client", "edit", "c1"])
            .env("EDITOR", &editor)
            .env("NEW_ENDPOINT", "new:2"),
        T,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(r.read("clients/c1.yaml").contains("endpoint: new:2\n"));
    assert_eq!(mode(&r.file("clients/c1.yaml")), 0o600);
    // $VISUAL wins over $EDITOR; an invalid edit keeps the old file and saves the edit.
    let before = r.read("clients/c1.yaml");
    let out = run_timeout(
        r.cmd(&["config", "client", "edit", "c1"])
            .env("EDITOR", "/bin/false")
            .env("VISUAL", &editor)
            .env("NEW_TEXT", "kind: ExporterConfig\nmetadata: {name: x}\n"),
        T,
    );
    assert_eq!(code(&out), 1);
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "Error: {}:1:7: kind must be 'ClientConfig'",
            r.file("clients/c1.yaml").display()
        )),
        "{err}"
    );
    assert!(err.contains("is unchanged, your edit is saved in"), "{err}");
    assert_eq!(r.read("clients/c1.yaml"), before);
    assert!(
        r.read("clients/c1.yaml.invalid")
            .starts_with("kind: ExporterConfig")
    );
    // No temporary copies are left in the clients directory.
    let left: Vec<_> = std::fs::read_dir(r.file("clients"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Exporter edit validates the exporter schema (a dangling ref is refused).
    ok(&r.run(&[
        "config",
        "exporter",
        "create",
        "e1",
        "--namespace",
        "a",
        "--name",
        "b",
        "--endpoint",
        "c",
        "--token",
        "d",
    ]));
    let out = run_timeout(
        r.cmd(&["config", "exporter", "edit", "e1"])
            .env("EDITOR", &editor)
            .env(
                "NEW_TEXT",
                "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {name: b}\nexport:\n  a: {ref: nowhere}\n",
            ),
        T,
    );
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("references nonexistent driver `nowhere`"),
        "{}",
        text(&out.stderr)
    );
    assert!(r.read("exporters/e1.yaml").contains("export: {}"));
    let out = run_timeout(
        r.cmd(&["config", "exporter", "edit", "nope"])
            .env("EDITOR", &editor),
        T,
    );
    assert_eq!(code(&out), 1);
    assert_eq!(
        text(&out.stderr),
        "Error: exporter \"nope\" does not exist\n"
    );
}

#[test]
fn bad_input_gives_one_clear_line_and_a_non_zero_exit() {
    let r = Root::new();
    r.create_client("c1", "ctl:1");
    let one_line = |out: &Output, want_code: i32, needle: &str| {
        let err = text(&out.stderr);
        assert_eq!(code(out), want_code, "{err}");
        let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("Error: ")).collect();
        assert_eq!(error_lines.len(), 1, "{err}");
        assert!(error_lines[0].contains(needle), "want {needle:?} in {err}");
    };
    // A missing alias.
    let out = r.run(&["config", "client", "use", "nope"]);
    one_line(&out, 1, "Client config '");
    assert!(text(&out.stderr).contains("nope.yaml' does not exist."));
    one_line(
        &r.run(&["config", "client", "delete", "nope"]),
        1,
        "does not exist",
    );
    // An existing alias.
    let out = r.run(&[
        "config",
        "client",
        "create",
        "c1",
        "--namespace",
        "a",
        "--name",
        "b",
        "-e",
        "c:1",
        "-t",
        &jwt(),
        "-a",
        "",
    ]);
    one_line(&out, 1, "A client with the name 'c1' already exists.");
    // A token that is not a JWT.
    let out = r.run(&[
        "config",
        "client",
        "create",
        "c9",
        "--namespace",
        "a",
        "--name",
        "b",
        "-e",
        "c:1",
        "-t",
        "opaque",
        "-a",
        "",
    ]);
    one_line(&out, 1, "--token is not a JWT");
    assert!(!r.file("clients/c9.yaml").exists());
    // A bad exporter alias is a usage error.
    one_line(
        &r.run(&["config", "exporter", "create", "../evil"]),
        2,
        "Invalid exporter alias '../evil'",
    );
    // A file that is not YAML, and a wrong kind in the clients folder: the other configs are
    // still listed, the broken file is named with line and column.
    std::fs::write(r.file("clients/broken.yaml"), "metadata: [1, 2\n").unwrap();
    let out = r.run(&["config", "client", "list", "-o", "name"]);
    assert_eq!(text(&out.stdout), "c1\n");
    one_line(
        &out,
        1,
        &format!("{}:", r.file("clients/broken.yaml").display()),
    );
    std::fs::remove_file(r.file("clients/broken.yaml")).unwrap();
    std::fs::write(
        r.file("clients/exp.yaml"),
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {name: x}\n",
    )
    .unwrap();
    let out = r.run(&["config", "client", "list"]);
    one_line(
        &out,
        1,
        "exp.yaml:2:7: kind must be 'ClientConfig', not 'ExporterConfig' (this is an exporter config",
    );
    std::fs::remove_file(r.file("clients/exp.yaml")).unwrap();
    // A corrupt config.yaml.
    std::fs::write(r.file("config.yaml"), "config: {current-client: [\n").unwrap();
    one_line(&r.run(&["config", "client", "list"]), 1, "config.yaml:");
    // Unknown output format and unknown shells are usage errors.
    assert_eq!(code(&r.run(&["config", "client", "list", "-o", "xml"])), 2);
    assert_eq!(code(&r.run(&["completion", "tcsh"])), 2);
}

#[test]
fn completion_scripts_and_help_tree() {
    let r = Root::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef jmp"),
        ("fish", "complete -c jmp"),
    ] {
        let script = ok(&r.run(&["completion", shell]));
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("config"), "{shell}");
    }
    let top = ok(&r.run(&["--help"]));
    for name in ["completion", "config", "run", "shell", "version"] {
        assert!(
            top.lines().any(|l| l.trim_start().starts_with(name)),
            "{name}: {top}"
        );
    }
    let client = ok(&r.run(&["config", "client", "--help"]));
    for name in ["create", "delete", "edit", "list", "use"] {
        assert!(
            client.lines().any(|l| l.trim_start().starts_with(name)),
            "{name}: {client}"
        );
    }
    let exporter = ok(&r.run(&["conf", "exporter", "--help"]));
    for name in ["create", "delete", "edit", "list"] {
        assert!(
            exporter.lines().any(|l| l.trim_start().starts_with(name)),
            "{name}: {exporter}"
        );
    }
    let create = ok(&r.run(&["config", "client", "create", "--help"]));
    for flag in [
        "--out",
        "--namespace",
        "--name",
        "--endpoint",
        "--token",
        "--allow",
        "--unsafe",
        "--insecure-tls",
        "--nointeractive",
        "--output",
    ] {
        assert!(create.contains(flag), "{flag}: {create}");
    }
    // Upstream's (click's) completion protocol, used by scripts upstream generated.
    let complete = |mode: &str, words: &str, cword: &str| {
        ok(&run_timeout(
            r.cmd(&[])
                .env("_JMP_COMPLETE", mode)
                .env("COMP_WORDS", words)
                .env("COMP_CWORD", cword),
            T,
        ))
    };
    assert_eq!(complete("bash_complete", "jmp conf", "1"), "plain,config\n");
    assert_eq!(
        complete("bash_complete", "jmp config client ", "3"),
        "plain,create\nplain,delete\nplain,edit\nplain,list\nplain,use\n"
    );
    assert_eq!(
        complete("bash_complete", "jmp config client list -o ", "5"),
        "plain,json\nplain,yaml\nplain,name\n"
    );
    assert_eq!(
        complete("bash_complete", "jmp completion ", "2"),
        "plain,bash\nplain,zsh\nplain,fish\n"
    );
    assert_eq!(
        complete("zsh_complete", "jmp config exp", "2"),
        "plain\nexporter\nModify jumpstarter exporter config files\n"
    );
    assert_eq!(
        complete("fish_complete", "jmp config exporter li", "li"),
        "plain,list\tList exporter configs\n"
    );
    assert!(
        complete("bash_complete", "jmp config client create --na", "4")
            .contains("plain,--namespace\nplain,--name\n")
    );

    let v = ok(&r.run(&["version"]));
    assert!(v.starts_with("Jumpstarter v"), "{v}");
}

//! Direct mode against upstream Jumpstarter 0.9.0: upstream's `jmp shell --tls-grpc` (with
//! upstream's `j` and Python client inside) against our `jmp run`, and our `jmp shell
//! --tls-grpc` against upstream's `jmp run --tls-grpc-listener`. Plaintext, TLS with a test CA,
//! passphrases accepted and rejected, hooks and their logs, every onFailure mode.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(180);

/// A Python one-liner printing the mock power state through upstream's client library.
const PY_STATE: &str = "from jumpstarter.utils.env import env\nwith env() as c: print('state=' + c.power.call('get_state'))";

fn hook(kind: &str, script: &str, extra: &str) -> String {
    let mut s = format!("  {kind}:\n    script: |\n");
    for l in script.lines() {
        s.push_str(&format!("      {l}\n"));
    }
    for l in extra.lines() {
        s.push_str(&format!("    {l}\n"));
    }
    s
}

/// Our `jmp run` on a free port; hooks find upstream's `j` first on PATH.
fn our_run(cfg: &Path, extra: &[&str]) -> RunningExporter {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.current_dir(cfg.parent().unwrap())
        .env("PATH", path_with_upstream())
        .args(["run", "--exporter-config"])
        .arg(cfg)
        .args(["--tls-grpc-listener", "127.0.0.1:0"])
        .args(extra);
    RunningExporter::start(&mut cmd, None)
}

/// Upstream's `jmp run` on a free port.
fn upstream_run(cfg: &Path, extra: &[&str]) -> RunningExporter {
    let port = free_port();
    let mut cmd = Command::new(upstream_jmp());
    clean(&mut cmd);
    cmd.current_dir(cfg.parent().unwrap())
        .env("PATH", path_with_upstream())
        .args(["run", "--exporter-config"])
        .arg(cfg)
        .args(["--tls-grpc-listener", &format!("127.0.0.1:{port}")])
        .args(extra);
    RunningExporter::start(&mut cmd, Some(port))
}

fn upstream_shell(dir: &Path, port: u16, opts: &[&str], script: &str) -> Command {
    let mut cmd = Command::new(upstream_jmp());
    clean(&mut cmd);
    cmd.current_dir(dir)
        .env("PATH", path_with_upstream())
        .args(["shell", "--tls-grpc", &format!("127.0.0.1:{port}")])
        .args(opts)
        .args(["--", "sh", "-c", script]);
    cmd
}

fn our_shell(dir: &Path, port: u16, opts: &[&str], script: &str) -> Command {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.current_dir(dir)
        .env("PATH", path_with_ours())
        .args(["shell", "--tls-grpc", &format!("127.0.0.1:{port}")])
        .args(opts)
        .args(["--", "sh", "-c", script]);
    cmd
}

fn py_state() -> String {
    format!("{} -c \"{PY_STATE}\"", py().display())
}

/// A Python one-liner switching the power through upstream's client library (upstream's
/// MockPower has no `get_state`).
fn py_power(on: bool) -> String {
    let method = if on { "on" } else { "off" };
    format!(
        "{} -c \"from jumpstarter.utils.env import env\nwith env() as c: c.power.{method}(); print('python-{method}')\"",
        py().display()
    )
}

#[test]
fn upstream_shell_and_j_against_our_plaintext_exporter_with_a_power_hook() {
    let dir = tempfile::tempdir().unwrap();
    // The hook uses upstream's j on the hook socket.
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}",
            hook("beforeLease", "echo hook says hello\nj power on", "")
        ),
    );
    let exporter = our_run(&cfg, &["--tls-grpc-insecure"]);
    let script = format!(
        "set -e; {py}; j power off; {py}; echo host=$JUMPSTARTER_HOST; exit 5",
        py = py_state()
    );
    let mut cmd = upstream_shell(dir.path(), exporter.port, &["--tls-grpc-insecure"], &script);
    let out = run_timeout(&mut cmd, T);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{stdout}{}", text(&out.stderr));
    // The client sees what the hook did, then what upstream's j did over TCP.
    assert!(stdout.contains("state=on\nstate=off\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("host=127.0.0.1:{}", exporter.port)),
        "{stdout}"
    );
    // Hook output reached upstream's shell through LogStream.
    assert!(stdout.contains("hook says hello"), "{stdout}");
    assert!(stdout.contains("LEASE_READY"), "{stdout}");
}

#[test]
fn upstream_shell_and_j_against_our_tls_exporter_with_a_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = write_ca(dir.path(), "lab");
    // Upstream's j inside the hook works with a passphrase too (upstream's own exporter
    // rejects it: bug B6).
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}",
            hook("beforeLease", "j power on", "onFailure: endLease")
        ),
    );
    let exporter = our_run(
        &cfg,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--passphrase",
            "lab-pass",
        ],
    );
    let script = format!("set -e; {py}; j power off; {py}", py = py_state());
    let mut cmd = upstream_shell(
        dir.path(),
        exporter.port,
        &["--passphrase", "lab-pass"],
        &script,
    );
    cmd.env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca);
    let out = ok(&run_timeout(&mut cmd, T));
    assert!(out.contains("state=on\nstate=off\n"), "{out}");

    // Rejected passphrase.
    let mut cmd = upstream_shell(
        dir.path(),
        exporter.port,
        &["--passphrase", "guess"],
        "true",
    );
    cmd.env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca);
    let out = run_timeout(&mut cmd, T);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Error: Authentication failed: invalid or missing passphrase"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Missing passphrase.
    let mut cmd = upstream_shell(dir.path(), exporter.port, &[], "true");
    cmd.env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca);
    let out = run_timeout(&mut cmd, T);
    assert_eq!(out.status.code(), Some(1));
    // The exporter kept serving.
    let mut cmd = upstream_shell(
        dir.path(),
        exporter.port,
        &["--passphrase", "lab-pass"],
        "j power on && echo again",
    );
    cmd.env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca);
    assert!(ok(&run_timeout(&mut cmd, T)).contains("again"));
}

#[test]
fn hook_logs_and_the_status_walk_reach_a_python_client() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}{}",
            hook("beforeLease", "echo before one\necho before two", ""),
            hook(
                "afterLease",
                "echo after one\nsleep 0.2\necho after done",
                ""
            )
        ),
    );
    let exporter = our_run(&cfg, &["--tls-grpc-insecure", "--passphrase", "pw"]);
    let mut cmd = Command::new(py());
    clean(&mut cmd);
    cmd.current_dir(dir.path())
        .arg(script("hook_logs.py"))
        .arg(format!("127.0.0.1:{}", exporter.port))
        .arg("pw");
    let out = ok(&run_timeout(&mut cmd, T));
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let records: Vec<(String, String, String)> = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
                r[2].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let of = |source: &str| -> Vec<&str> {
        records
            .iter()
            .filter(|r| r.2 == source)
            .map(|r| r.1.as_str())
            .collect()
    };
    assert_eq!(
        of("LOG_SOURCE_BEFORE_LEASE_HOOK"),
        ["before one", "before two"]
    );
    assert_eq!(
        of("LOG_SOURCE_AFTER_LEASE_HOOK"),
        ["after one", "after done"]
    );
    assert!(
        of("LOG_SOURCE_SYSTEM").contains(&"beforeLease hook completed successfully"),
        "{records:?}"
    );
    assert!(records.iter().all(|r| r.0 == "INFO"), "{records:?}");
    assert_eq!(json["before"]["status"], "EXPORTER_STATUS_LEASE_READY");
    assert_eq!(json["before"]["message"], "Ready for commands");
    assert_eq!(json["before"]["version"], 2);
    assert_eq!(
        json["before"]["previous"],
        "EXPORTER_STATUS_BEFORE_LEASE_HOOK"
    );
    assert_eq!(json["end"]["success"], true);
    assert_eq!(
        json["end"]["message"],
        "Session ended, afterLease hook completed"
    );
    assert_eq!(json["after"]["status"], "EXPORTER_STATUS_AVAILABLE");
    assert_eq!(json["after"]["message"], "Available for new lease");
    assert_eq!(json["after"]["version"], 4);
    assert_eq!(
        json["after"]["previous"],
        "EXPORTER_STATUS_AFTER_LEASE_HOOK"
    );
}

#[test]
fn every_on_failure_mode_as_upstream_shell_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    // warn
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}",
            hook("beforeLease", "exit 3", "onFailure: warn")
        ),
    );
    let exporter = our_run(&cfg, &["--tls-grpc-insecure"]);
    let mut cmd = upstream_shell(
        dir.path(),
        exporter.port,
        &["--tls-grpc-insecure"],
        "echo ran",
    );
    let out = ok(&run_timeout(&mut cmd, T));
    assert!(
        out.contains("Warning: beforeLease hook warning: Hook failed with exit code 3"),
        "{out}"
    );
    assert!(out.contains("ran\n"), "{out}");
    drop(exporter);

    // endLease
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}",
            hook("beforeLease", "exit 3", "onFailure: endLease")
        ),
    );
    let exporter = our_run(&cfg, &["--tls-grpc-insecure"]);
    let mut cmd = upstream_shell(
        dir.path(),
        exporter.port,
        &["--tls-grpc-insecure"],
        "echo ran",
    );
    let out = run_timeout(&mut cmd, T);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!text(&out.stdout).contains("ran\n"), "{all}");
    assert!(
        all.contains("beforeLease hook failed (on_failure=endLease): Hook failed with exit code 3"),
        "{all}"
    );
    drop(exporter);

    // exit: our exporter stops with code 3; the shell reports the failure.
    // The hook outlasts the upstream shell's start-up (seconds for Python on a loaded machine),
    // so the shell is connected when the exporter shuts down.
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}",
            hook("beforeLease", "sleep 8; exit 3", "onFailure: exit")
        ),
    );
    let mut exporter = our_run(&cfg, &["--tls-grpc-insecure"]);
    let mut cmd = upstream_shell(
        dir.path(),
        exporter.port,
        &["--tls-grpc-insecure"],
        "echo ran",
    );
    let out = run_timeout(&mut cmd, T);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!text(&out.stdout).contains("ran\n"), "{all}");
    assert!(
        all.contains(
            "beforeLease hook failed (on_failure=exit, shutting down): Hook failed with exit code 3"
        ),
        "{all}"
    );
    let (status, log) = exporter.wait_exit(T);
    assert_eq!(status.code(), Some(3), "{log}");
}

#[test]
fn our_shell_and_both_js_against_upstream_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}",
            hook("beforeLease", "echo upstream hook ran", "")
        ),
    );
    let exporter = upstream_run(&cfg, &["--tls-grpc-insecure"]);
    let script = format!(
        "set -e; j power on; {py_off}; {up_j} power on; {py_on}; j power off; echo relayed | j echo connect; exit 4",
        py_on = py_power(true),
        py_off = py_power(false),
        up_j = upstream_j().display()
    );
    let mut cmd = our_shell(dir.path(), exporter.port, &["--tls-grpc-insecure"], &script);
    let out = run_timeout(&mut cmd, T);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("python-off\npython-on\nrelayed\n"),
        "{stdout}"
    );
    // Every call reached upstream's MockPower, in order.
    let log = exporter.log();
    let powers: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("INFO:driver.MockPower:"))
        .collect();
    assert_eq!(
        powers,
        ["power on", "power off", "power on", "power on", "power off"],
        "{log}"
    );
    assert!(
        stdout.contains("INFO     [exporter:beforeLease] upstream hook ran"),
        "{stdout}"
    );
}

#[test]
fn our_shell_against_upstream_tls_exporter_with_a_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = write_ca(dir.path(), "up");
    let cfg = direct_config(dir.path(), "");
    let exporter = upstream_run(
        &cfg,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--passphrase",
            "up-pass",
        ],
    );
    let script = format!(
        "set -e; j power on; {up_j} power read; {py}",
        py = py_power(false),
        up_j = upstream_j().display()
    );
    let mut cmd = our_shell(
        dir.path(),
        exporter.port,
        &["--passphrase", "up-pass"],
        &script,
    );
    cmd.env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca);
    let out = ok(&run_timeout(&mut cmd, T));
    assert!(out.contains("apparent_power=10.0 VA"), "{out}");
    assert!(out.contains("python-off\n"), "{out}");

    let mut cmd = our_shell(
        dir.path(),
        exporter.port,
        &["--passphrase", "wrong"],
        "true",
    );
    cmd.env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca);
    let out = run_timeout(&mut cmd, T);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Error: Authentication failed: invalid or missing passphrase"),
        "{}",
        text(&out.stderr)
    );
    // Our j straight to upstream's TLS listener.
    let mut cmd = Command::new(j());
    clean(&mut cmd);
    cmd.current_dir(dir.path())
        .env("JUMPSTARTER_HOST", format!("127.0.0.1:{}", exporter.port))
        .env("JMP_DRIVERS_ALLOW", "UNSAFE")
        .env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca)
        .env("JMP_GRPC_PASSPHRASE", "up-pass")
        .args(["power", "off"]);
    ok(&run_timeout(&mut cmd, T));
}

//! `jmp run` (direct mode) and `jmp shell --tls-grpc`, ours against ours: listeners, TLS,
//! passphrases, hooks seen through the shell, signals and exit codes, bad input.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jumpstarter_core::Client;
use jumpstarter_core::transport::{Dial, Target};
use jumpstarter_testkit::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(120);

fn our_run(cfg: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env("PATH", path_with_ours())
        .arg("run")
        .arg("--exporter-config")
        .arg(cfg)
        .args(["--tls-grpc-listener", "127.0.0.1:0"])
        .args(extra);
    if let Some(dir) = cfg.parent() {
        cmd.current_dir(dir);
    }
    cmd
}

fn start(cfg: &Path, extra: &[&str]) -> RunningExporter {
    RunningExporter::start(&mut our_run(cfg, extra), None)
}

fn our_shell(dir: &Path, port: u16, opts: &[&str], command: &[&str]) -> Command {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.current_dir(dir)
        .env("PATH", path_with_ours())
        .arg("shell")
        .arg("--tls-grpc")
        .arg(format!("127.0.0.1:{port}"))
        .args(opts)
        .arg("--")
        .args(command);
    cmd
}

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

#[test]
fn run_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let cfg = cfg.to_str().unwrap();
    let cases: &[(&[&str], &str, i32)] = &[
        (
            &["run"],
            "Error: Specify one of: --exporter / --exporter-config",
            2,
        ),
        (
            &["run", "--exporter-config", cfg, "--tls-grpc-insecure"],
            "Error: --tls-grpc-insecure, --tls-cert, --tls-key, and --passphrase require --tls-grpc-listener",
            2,
        ),
        (
            &[
                "run",
                "--exporter-config",
                cfg,
                "--tls-grpc-listener",
                "1909",
            ],
            "Error: --tls-grpc-listener requires either --tls-grpc-insecure or --tls-cert and --tls-key",
            2,
        ),
        (
            &[
                "run",
                "--exporter-config",
                cfg,
                "--tls-grpc-listener",
                "1909",
                "--tls-grpc-insecure",
                "--tls-cert",
                cfg,
                "--tls-key",
                cfg,
            ],
            "Error: --tls-grpc-insecure cannot be combined with --tls-cert / --tls-key",
            2,
        ),
        (
            &[
                "run",
                "--exporter-config",
                cfg,
                "--tls-grpc-listener",
                "x:abc",
                "--tls-grpc-insecure",
            ],
            "Error: Invalid value for '--tls-grpc-listener': port must be an integer, got 'abc'",
            2,
        ),
        (
            &[
                "run",
                "--exporter-config",
                cfg,
                "--tls-grpc-listener",
                "70000",
                "--tls-grpc-insecure",
            ],
            "port must be between 0 and 65535, got 70000",
            2,
        ),
        (
            &[
                "run",
                "--exporter-config",
                cfg,
                "--tls-grpc-listener",
                "1909",
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                cfg,
            ],
            "Error: Invalid value for '--tls-cert': Path '/nonexistent/cert.pem' does not exist.",
            2,
        ),
        (
            &["run", "--exporter-config", cfg],
            "Error: the exporter config has no endpoint: controller mode needs endpoint and token",
            1,
        ),
        (
            &[
                "run",
                "--exporter-config",
                "/nonexistent.yaml",
                "--tls-grpc-listener",
                "0",
                "--tls-grpc-insecure",
            ],
            "Error: Failed to load config: cannot read /nonexistent.yaml",
            1,
        ),
        (
            &[
                "run",
                "--exporter-config",
                cfg,
                "--tls-grpc-listener",
                "0",
                "--tls-cert",
                cfg,
                "--tls-key",
                cfg,
            ],
            "Error: TLS setup failed: ",
            1,
        ),
    ];
    for (args, want, code) in cases {
        let mut cmd = Command::new(jmp());
        clean(&mut cmd);
        cmd.current_dir(dir.path()).args(*args);
        let out = run_timeout(&mut cmd, T);
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
    }
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.current_dir(dir.path())
        .args(["run", "--exporter-config"])
        .arg(&cfg)
        .args([
            "--tls-grpc-listener",
            &format!("127.0.0.1:{port}"),
            "--tls-grpc-insecure",
        ]);
    let out = run_timeout(&mut cmd, T);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "Error: cannot listen on 127.0.0.1:{port}: Address already in use"
        )),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn plaintext_shell_relays_every_call_and_propagates_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let exporter = start(&cfg, &["--tls-grpc-insecure"]);
    let mut cmd = our_shell(
        dir.path(),
        exporter.port,
        &["--tls-grpc-insecure"],
        &[
            "sh",
            "-c",
            "set -e; j power on; j power read; echo relayed | j echo connect; \
             echo \"host=$JUMPSTARTER_HOST lease=$JMP_LEASE exporter=$JMP_EXPORTER allow=$JMP_DRIVERS_ALLOW\"; \
             test -S \"$JUMPSTARTER_HOST\"; exit 7",
        ],
    );
    let out = run_timeout(&mut cmd, T);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("voltage=5.0 V  current=2.0 A"), "{stdout}");
    assert!(stdout.contains("relayed\n"), "{stdout}");
    assert!(
        stdout.contains("lease=direct exporter=direct allow=UNSAFE"),
        "{stdout}"
    );
    assert!(
        stdout.contains("host=/"),
        "a local socket, not host:port: {stdout}"
    );
    assert!(exporter.log().contains("[driver.MockPower] power on"));
}

#[test]
fn tls_passphrase_certificates_and_bad_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = write_ca(dir.path(), "good");
    let (other_ca, _, _) = write_ca(dir.path(), "other");
    let cfg = direct_config(dir.path(), "");
    let exporter = start(
        &cfg,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--passphrase",
            "open sesame",
        ],
    );
    let port = exporter.port;
    let shell = |opts: &[&str], roots: &Path, command: &[&str]| {
        let mut cmd = our_shell(dir.path(), port, opts, command);
        cmd.env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", roots);
        run_timeout(&mut cmd, T)
    };
    // Trusted certificate and right passphrase: j inside works without any setting.
    let out = shell(
        &["--passphrase", "open sesame"],
        &ca,
        &["sh", "-c", "j power on && echo tls-ok"],
    );
    assert!(ok(&out).contains("tls-ok"));
    // Wrong passphrase.
    let out = shell(&["--passphrase", "nope"], &ca, &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Error: Authentication failed: invalid or missing passphrase"),
        "{}",
        text(&out.stderr)
    );
    // Certificate from another CA.
    let out = shell(&["--passphrase", "open sesame"], &other_ca, &["true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("Error: Exporter did not respond to initial connection")
            && err.contains("TLS handshake with 127.0.0.1:")
            && err.contains("not signed by a trusted certificate authority"),
        "{err}"
    );
    // Plaintext against TLS.
    let out = shell(
        &["--tls-grpc-insecure", "--passphrase", "open sesame"],
        &ca,
        &["true"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Error: Exporter did not respond to initial connection"),
        "{}",
        text(&out.stderr)
    );
    // JMP_GRPC_INSECURE=1: TLS without checking the certificate (upstream jmp's meaning).
    let mut cmd = our_shell(
        dir.path(),
        port,
        &["--passphrase", "open sesame"],
        &["j", "power", "off"],
    );
    cmd.env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &other_ca)
        .env("JMP_GRPC_INSECURE", "1");
    ok(&run_timeout(&mut cmd, T));
    // Our j straight to the TCP listener: TLS roots and passphrase from the environment.
    let mut cmd = Command::new(j());
    clean(&mut cmd);
    cmd.current_dir(dir.path())
        .env("JUMPSTARTER_HOST", format!("127.0.0.1:{port}"))
        .env("JMP_DRIVERS_ALLOW", "UNSAFE")
        .env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca)
        .env("JMP_GRPC_PASSPHRASE", "open sesame")
        .args(["power", "on"]);
    ok(&run_timeout(&mut cmd, T));
    cmd.env("JMP_GRPC_PASSPHRASE", "wrong");
    let out = run_timeout(&mut cmd, T);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Authentication failed"));
    // A client that connects, says nothing useful, and goes.
    {
        use std::io::Write;
        let mut raw = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = raw.write_all(b"hello?\r\n\r\n");
    }
    // Still serving.
    let out = shell(
        &["--passphrase", "open sesame"],
        &ca,
        &["sh", "-c", "j power read >/dev/null && echo still-serving"],
    );
    assert!(ok(&out).contains("still-serving"));
    let log = exporter.log();
    assert!(
        log.contains("authentication failed: invalid or missing passphrase for method /jumpstarter.v1.ExporterService/GetReport"),
        "{log}"
    );
    assert!(log.contains("TLS handshake with 127.0.0.1:"), "{log}");
}

#[test]
fn a_before_lease_hook_drives_power_behind_a_passphrase_and_its_logs_reach_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = format!(
        "motd: Welcome to direct\nhooks:\n{}",
        hook(
            "beforeLease",
            "echo preparing the board\nj power on\necho 'Board is powered' > \"$JMP_MOTD_FILE\"",
            ""
        )
    );
    let cfg = direct_config(dir.path(), &hooks);
    let exporter = start(&cfg, &["--tls-grpc-insecure", "--passphrase", "pw"]);
    let port = exporter.port;
    // Upstream's j inside a passphrase-protected hook fails (bug B6); ours gets its own socket.
    let mut cmd = our_shell(
        dir.path(),
        port,
        &["--tls-grpc-insecure", "--passphrase", "pw"],
        &["true"],
    );
    let out = ok(&run_timeout(&mut cmd, T));
    assert!(
        out.contains("INFO     [exporter:beforeLease] preparing the board"),
        "{out}"
    );
    // A client sees the state the hook left.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::dial(
            &Target::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            &Dial {
                tls: None,
                passphrase: Some("pw".into()),
            },
        )
        .await
        .unwrap();
        let state = client
            .get("power")
            .unwrap()
            .call("get_state", vec![])
            .await
            .unwrap();
        assert_eq!(state, "on");
        assert_eq!(client.motd(), "Welcome to direct\nBoard is powered");
    });
    // An interactive shell prints the message of the day first.
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.current_dir(dir.path())
        .env("SHELL", "/bin/sh")
        .args(["shell", "--tls-grpc", &format!("127.0.0.1:{port}")])
        .args(["--tls-grpc-insecure", "--passphrase", "pw"]);
    let out = ok(&run_timeout(&mut cmd, T));
    assert!(
        out.contains("Welcome to direct\nBoard is powered\n"),
        "{out}"
    );
}

#[test]
fn hook_failures_through_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    // warn: the command runs, with a warning.
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}",
            hook(
                "beforeLease",
                "echo about to fail\nexit 3",
                "onFailure: warn"
            )
        ),
    );
    let exporter = start(&cfg, &["--tls-grpc-insecure"]);
    let mut cmd = our_shell(
        dir.path(),
        exporter.port,
        &["--tls-grpc-insecure"],
        &["echo", "ran"],
    );
    let out = ok(&run_timeout(&mut cmd, T));
    assert!(
        out.contains("Warning: beforeLease hook warning: Hook failed with exit code 3\n"),
        "{out}"
    );
    assert!(
        out.contains("[exporter:beforeLease] about to fail"),
        "{out}"
    );
    assert!(out.contains("ran\n"), "{out}");
    drop(exporter);

    // endLease: the shell fails, the exporter keeps serving its failure.
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}",
            hook("beforeLease", "exit 3", "onFailure: endLease")
        ),
    );
    let exporter = start(&cfg, &["--tls-grpc-insecure"]);
    for _ in 0..2 {
        let mut cmd = our_shell(
            dir.path(),
            exporter.port,
            &["--tls-grpc-insecure"],
            &["echo", "ran"],
        );
        let out = run_timeout(&mut cmd, T);
        assert_eq!(out.status.code(), Some(1));
        assert!(!text(&out.stdout).contains("ran"));
        assert!(
            text(&out.stderr).contains(
                "Error: beforeLease hook failed (on_failure=endLease): Hook failed with exit code 3"
            ),
            "{}",
            text(&out.stderr)
        );
    }
    drop(exporter);

    // exit: the exporter stops with exit code 3.
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}",
            hook("beforeLease", "sleep 1; exit 3", "onFailure: exit")
        ),
    );
    let mut exporter = start(&cfg, &["--tls-grpc-insecure"]);
    let mut cmd = our_shell(
        dir.path(),
        exporter.port,
        &["--tls-grpc-insecure"],
        &["echo", "ran"],
    );
    let out = run_timeout(&mut cmd, T);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("Error: beforeLease hook failed (on_failure=exit, shutting down): Hook failed with exit code 3")
            || err.contains("Error: Exporter shutting down due to beforeLease hook failure"),
        "{err}"
    );
    let (status, log) = exporter.wait_exit(T);
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(
        log.contains("the beforeLease hook failed and its onFailure is exit"),
        "{log}"
    );
}

fn hook_socket(log: &str) -> std::path::PathBuf {
    let path = log
        .split(" and unix://")
        .nth(1)
        .and_then(|r| r.lines().next())
        .expect("hook socket in the start line");
    std::path::PathBuf::from(path)
}

#[test]
fn sigterm_and_sigint_stop_gracefully_with_documented_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("after-ran");
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}",
            hook(
                "afterLease",
                &format!("j power off\ntouch {}", mark.display()),
                ""
            )
        ),
    );
    let mut exporter = start(&cfg, &["--tls-grpc-insecure"]);
    let socket = hook_socket(&exporter.log());
    assert!(socket.exists());
    exporter.signal(Signal::SIGTERM);
    let (status, log) = exporter.wait_exit(T);
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(mark.exists(), "afterLease ran on SIGTERM:\n{log}");
    assert!(log.contains("[driver.MockPower] power off"), "{log}");
    assert!(!socket.exists(), "hook socket removed");
    assert!(
        !socket.parent().unwrap().exists(),
        "hook socket directory removed"
    );

    let cfg = direct_config(dir.path(), "");
    let mut exporter = start(&cfg, &["--tls-grpc-insecure"]);
    exporter.signal(Signal::SIGINT);
    let (status, log) = exporter.wait_exit(T);
    assert_eq!(status.code(), Some(130), "{log}");
}

#[test]
fn a_second_signal_kills_a_running_after_lease_hook() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n{}",
            hook(
                "afterLease",
                &format!("echo $$ > {}\nsleep 300", pid_file.display()),
                ""
            )
        ),
    );
    let mut exporter = start(&cfg, &["--tls-grpc-insecure"]);
    exporter.signal(Signal::SIGTERM);
    exporter.wait_log("Executing afterLease hook");
    let pid: u32 = loop {
        if let Some(p) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break p;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    exporter.signal(Signal::SIGTERM);
    let (status, log) = exporter.wait_exit(T);
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(log.contains("stopping at once"), "{log}");
    assert!(!alive(pid), "the afterLease hook was killed");
}

#[test]
fn sighup_stops_after_the_session_ends() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let mut exporter = start(&cfg, &["--tls-grpc-insecure"]);
    let port = exporter.port;
    exporter.signal(Signal::SIGHUP);
    exporter.wait_log("received SIGHUP");
    // Still serving.
    let mut cmd = our_shell(
        dir.path(),
        port,
        &["--tls-grpc-insecure"],
        &["j", "power", "on"],
    );
    ok(&run_timeout(&mut cmd, T));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resp = rt.block_on(async {
        let target = Target::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let client = Client::dial(&target, &Dial::default()).await.unwrap();
        client.end_session().await.unwrap()
    });
    assert!(resp.success);
    let (status, log) = exporter.wait_exit(T);
    assert_eq!(status.code(), Some(129), "{log}");
}

#[test]
fn a_shell_that_vanishes_leaves_the_exporter_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let exporter = start(&cfg, &["--tls-grpc-insecure"]);
    let started = dir.path().join("started");
    let mut cmd = our_shell(
        dir.path(),
        exporter.port,
        &["--tls-grpc-insecure"],
        &[
            "sh",
            "-c",
            &format!("touch {}; j power on; sleep 60", started.display()),
        ],
    );
    // Killed with SIGKILL below, it cannot remove its local socket: keep that in `dir`.
    cmd.env("XDG_RUNTIME_DIR", dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut shell = cmd.spawn().unwrap();
    let shell_pid = shell.id();
    let deadline = std::time::Instant::now() + T;
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the shell never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let family = descendants(shell_pid);
    let _ = shell.kill();
    let _ = shell.wait();
    for p in family {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), Signal::SIGKILL);
    }
    let mut cmd = our_shell(
        dir.path(),
        exporter.port,
        &["--tls-grpc-insecure"],
        &["sh", "-c", "j power off && echo fine"],
    );
    assert!(ok(&run_timeout(&mut cmd, T)).contains("fine"));
}

#[test]
fn ctrl_c_while_waiting_for_the_exporter_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(
        dir.path(),
        &format!("hooks:\n{}", hook("beforeLease", "sleep 60", "")),
    );
    let exporter = start(&cfg, &["--tls-grpc-insecure"]);
    let mut cmd = our_shell(
        dir.path(),
        exporter.port,
        &["--tls-grpc-insecure"],
        &["echo", "ran"],
    );
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut shell = cmd.spawn().unwrap();
    let pid = shell.id();
    // Wait until it says it is waiting for the hook (its SIGINT handler is in place by then).
    let stdout = shell.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("Waiting for beforeLease hook") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(T).expect("the shell waits for the hook");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGINT);
    let out = wait_output_stderr(shell, T);
    let stdout = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Error: Cancelled by user."));
    assert!(!stdout.contains("ran"), "{stdout}");
}

/// Waits for a child whose stdout is already taken; collects its stderr.
fn wait_output_stderr(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
    use std::io::Read;
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("jmp shell did not exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: err.join().unwrap(),
    }
}

#[test]
fn a_missing_hook_script_is_reported_at_start_and_when_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("hooks/prepare.sh");
    let cfg = direct_config(
        dir.path(),
        &format!(
            "hooks:\n  beforeLease:\n    script: {}\n    onFailure: warn\n",
            missing.display()
        ),
    );
    let exporter = start(&cfg, &["--tls-grpc-insecure"]);
    let problem = format!(
        "Error executing hook: hook script '{}' does not exist",
        missing.display()
    );
    let mut cmd = our_shell(
        dir.path(),
        exporter.port,
        &["--tls-grpc-insecure"],
        &["echo", "ran"],
    );
    let out = ok(&run_timeout(&mut cmd, T));
    assert!(
        out.contains(&format!("Warning: beforeLease hook warning: {problem}")),
        "{out}"
    );
    assert!(out.contains("ran\n"), "{out}");
    let log = exporter.log();
    assert!(
        log.contains(&format!(
            "WARNING  [jumpstarter_cli.jmp.run] beforeLease hook ({}:13:5): {problem}",
            cfg.display()
        )),
        "{log}"
    );
}

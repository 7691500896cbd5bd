//! What deploy/ promises, run as a newcomer would: the certificate recipe of deploy/README.md
//! (run as it is printed) gives a leaf that `jmp run` serves and `jmp shell --tls-grpc` trusts;
//! direct mode says that a config's endpoint and token are ignored; controller mode gives up
//! with exit code 4 when the controller refuses the token, and keeps retrying when the
//! controller is only unreachable.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jumpstarter_testkit::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(120);

/// The exit code of `jmp run` when the controller refuses the exporter's token.
const EXIT_TOKEN_REFUSED: i32 = 4;

/// The shell block of deploy/README.md that makes the TLS certificate.
fn readme_recipe() -> String {
    let readme = std::fs::read_to_string(workspace_root().join("deploy/README.md")).unwrap();
    let mut blocks = readme.split("```").skip(1).step_by(2);
    let block = blocks
        .find(|b| b.contains("openssl req"))
        .expect("deploy/README.md has a block with `openssl req`");
    block.strip_prefix('\n').unwrap_or(block).to_string()
}

/// Runs the README's recipe as printed, with only what a reader fills in replaced: no `sudo`
/// (a function that runs its arguments), the TLS directory, the exporter `<name>`, and the
/// host's name and address (here: localhost and 127.0.0.1). Returns (cert, key).
fn run_recipe(dir: &Path) -> (PathBuf, PathBuf) {
    let recipe = readme_recipe();
    for placeholder in [
        "<name>",
        "exporter1.lab",
        "192.0.2.10",
        "/etc/jumpstarter/tls",
    ] {
        assert!(recipe.contains(placeholder), "{placeholder}: {recipe}");
    }
    let tls = dir.join("tls");
    let script = recipe
        .replace("/etc/jumpstarter/tls", tls.to_str().unwrap())
        .replace("<name>", "demo")
        .replace("exporter1.lab", "localhost")
        .replace("192.0.2.10", "127.0.0.1");
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c"])
        .arg(format!("sudo() {{ \"$@\"; }}\n{script}"))
        .current_dir(dir);
    ok(&run_timeout(&mut cmd, T));
    (tls.join("demo.crt"), tls.join("demo.key"))
}

#[test]
fn readme_certificate_recipe_gives_a_leaf_that_jmp_run_serves_and_jmp_shell_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = run_recipe(dir.path());
    // A leaf, not a CA: what strict verifiers (webpki, ours) want from a server certificate.
    let mut x509 = Command::new("openssl");
    x509.args([
        "x509",
        "-noout",
        "-ext",
        "basicConstraints,extendedKeyUsage,subjectAltName",
    ])
    .arg("-in")
    .arg(&cert);
    let ext = ok(&run_timeout(&mut x509, T));
    assert!(ext.contains("CA:FALSE"), "{ext}");
    assert!(!ext.contains("CA:TRUE"), "{ext}");
    assert!(ext.contains("TLS Web Server Authentication"), "{ext}");
    assert!(ext.contains("IP Address:127.0.0.1"), "{ext}");

    let cfg = direct_config(dir.path(), "");
    let mut run = Command::new(jmp());
    clean(&mut run);
    run.env("PATH", path_with_ours())
        .current_dir(dir.path())
        .arg("run")
        .arg("--exporter-config")
        .arg(&cfg)
        .args(["--tls-grpc-listener", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key);
    let exporter = RunningExporter::start(&mut run, None);

    // jmp shell --tls-grpc trusts the certificate through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH,
    // and `j power on` inside works.
    let mut shell = Command::new(jmp());
    clean(&mut shell);
    shell
        .current_dir(dir.path())
        .env("PATH", path_with_ours())
        .env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &cert)
        .arg("shell")
        .arg("--tls-grpc")
        .arg(format!("127.0.0.1:{}", exporter.port))
        .args(["--", "sh", "-c", "j power on && echo powered-on"]);
    let out = run_timeout(&mut shell, T);
    assert!(
        ok(&out).contains("powered-on"),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Our j straight to the listener, the same way.
    let mut j_cmd = Command::new(j());
    clean(&mut j_cmd);
    j_cmd
        .current_dir(dir.path())
        .env("JUMPSTARTER_HOST", format!("127.0.0.1:{}", exporter.port))
        .env("JMP_DRIVERS_ALLOW", "UNSAFE")
        .env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &cert)
        .args(["power", "on"]);
    ok(&run_timeout(&mut j_cmd, T));
}

fn direct_run(cfg: &Path) -> RunningExporter {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env("PATH", path_with_ours())
        .env_remove("JMP_ENDPOINT")
        .env_remove("JMP_TOKEN")
        .arg("run")
        .arg("--exporter-config")
        .arg(cfg)
        .args(["--tls-grpc-listener", "127.0.0.1:0", "--tls-grpc-insecure"]);
    RunningExporter::start(&mut cmd, None)
}

const IGNORED: &str = "the config's endpoint and token are ignored";

#[test]
fn direct_mode_warns_once_that_endpoint_and_token_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    // A seed-style config (endpoint and token, as `jmp admin create exporter` writes them).
    let cfg = direct_config(
        dir.path(),
        "endpoint: grpc.jumpstarter.example.com:443\ntoken: eyJhbGciOiJFUzI1NiJ9.e30.c2ln\n",
    );
    let mut exporter = direct_run(&cfg);
    exporter.signal(Signal::SIGTERM);
    let (status, log) = exporter.wait_exit(T);
    assert_eq!(status.code(), Some(143), "{log}");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(IGNORED)).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("WARN"), "{log}");
    assert!(lines[0].contains("--tls-grpc-listener"), "{log}");

    // Without endpoint and token: no such warning.
    let other = tempfile::tempdir().unwrap();
    let mut exporter = direct_run(&direct_config(other.path(), ""));
    exporter.signal(Signal::SIGTERM);
    let (_, log) = exporter.wait_exit(T);
    assert!(!log.contains(IGNORED), "{log}");
}

/// Our `jmp-controller serve` in `dir` and the config of exporter `name` it issued (with a
/// MockPower); returns both.
fn controller_and_exporter(dir: &Path, names: &[&str]) -> (Controller, Vec<PathBuf>) {
    let ctl = Controller::start(&dir.join("data"));
    let paths = names
        .iter()
        .map(|name| {
            let path = dir.join(format!("{name}.yaml"));
            ok(&ctl.admin(&["create", "exporter", name, "--out", path.to_str().unwrap()]));
            let text = std::fs::read_to_string(&path).unwrap().replace(
                "export: {}\n",
                "export:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n",
            );
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    (ctl, paths)
}

/// The `token:` value of an exporter config.
fn token_of(cfg: &Path) -> String {
    let text = std::fs::read_to_string(cfg).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a token line")
        .trim()
        .to_string()
}

fn with_token(cfg: &Path, token: &str) {
    let old = token_of(cfg);
    let text = std::fs::read_to_string(cfg).unwrap().replace(&old, token);
    std::fs::write(cfg, text).unwrap();
}

fn controller_run(home: &Path, cfg: &Path) -> Proc {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env("HOME", home)
        .env("PATH", path_with_ours())
        .env("JMP_LOG", "info")
        .env_remove("JMP_ENDPOINT")
        .env_remove("JMP_TOKEN")
        .env_remove("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
        .arg("run")
        .arg("--exporter-config")
        .arg(cfg);
    Proc::spawn(&mut cmd, "jmp run (controller mode)")
}

/// `jmp run` on `cfg` exits with code 4 within a bounded time, after three refusals, with one
/// error line that names the refusal and says what to fix.
fn assert_refused(home: &Path, cfg: &Path, reason: &str) {
    let start = Instant::now();
    let mut run = controller_run(home, cfg);
    let status = run.wait(Duration::from_secs(60));
    let took = start.elapsed();
    let log = run.output();
    assert_eq!(status.code(), Some(EXIT_TOKEN_REFUSED), "{log}");
    // Three tries with the normal back-off (0.5 s, 1 s) in between.
    assert!(took < Duration::from_secs(30), "{took:?}\n{log}");
    assert!(took >= Duration::from_millis(1400), "{took:?}\n{log}");
    let retries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Register failed") && l.contains(" of 3 times); reconnecting"))
        .collect();
    assert_eq!(retries.len(), 2, "{log}");
    assert!(retries.iter().all(|l| l.contains(reason)), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    let e = errors[0];
    assert!(
        e.contains("exporter stopped: the controller at 127.0.0.1:")
            && e.contains("refused this exporter's credentials 3 times")
            && e.contains(reason)
            && e.contains("check token, endpoint and metadata"),
        "{log}"
    );
}

#[test]
fn wrong_token_exits_with_its_own_code_after_three_tries() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, cfgs) = controller_and_exporter(dir.path(), &["e1", "e2"]);
    let (e1, e2) = (&cfgs[0], &cfgs[1]);
    let e2_token = token_of(e2);

    // A token no authenticator accepts (the issue's case): UNKNOWN "failed to authenticate
    // token" from the controller.
    with_token(
        e1,
        "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2Vsc2V3aGVyZSJ9.c2ln",
    );
    assert_refused(dir.path(), e1, "failed to authenticate token");
    // Another exporter's valid token: PERMISSION_DENIED.
    with_token(e1, &e2_token);
    assert_refused(dir.path(), e1, "permission denied for exporter default/e1");
    // The controller saw the tries and nothing else broke: the right token registers.
    let mut good = controller_run(dir.path(), e2);
    good.wait_for("registered with the controller at", T);
    good.signal(Signal::SIGTERM);
    assert_eq!(good.wait(T).code(), Some(143), "{}", good.output());
    drop(ctl);
}

#[test]
fn unreachable_controller_is_retried_with_back_off_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, cfgs) = controller_and_exporter(dir.path(), &["e1"]);
    drop(ctl);
    // The controller is gone and its port is free: every try fails to connect.
    let port = free_port();
    let text = std::fs::read_to_string(&cfgs[0]).unwrap();
    let endpoint = text
        .lines()
        .find_map(|l| l.strip_prefix("endpoint: "))
        .unwrap()
        .trim()
        .to_string();
    std::fs::write(
        &cfgs[0],
        text.replace(&endpoint, &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let mut run = controller_run(dir.path(), &cfgs[0]);
    // 0.5 + 1 + 2 + 4 s of back-off: five tries, more than the three refusals allowed.
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "jmp run gave up on an unreachable controller:\n{}",
        run.output()
    );
    run.signal(Signal::SIGTERM);
    let status = run.wait(T);
    let log = run.output();
    assert_eq!(status.code(), Some(143), "{log}");
    let tries = log
        .lines()
        .filter(|l| l.contains("cannot reach the controller") && l.contains("reconnecting in"))
        .count();
    assert!(tries >= 4, "{log}");
    assert!(!log.contains("refused this exporter"), "{log}");
}

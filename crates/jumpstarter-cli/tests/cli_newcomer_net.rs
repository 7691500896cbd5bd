//! TLS trust, endpoints and dial hints, run as a newcomer would (issue 14 items 1, 6, 13c,
//! 16f, 16g): `jmp run` with a certificate made by deploy/README's `openssl req -x509` recipe,
//! `jmp shell --tls-grpc` and `j` against it, TLS/plaintext mismatches, endpoints in grpc's
//! forms for `jmp` and `jmp run` against a real controller, and `jmp config client
//! create/edit` refusing malformed endpoints.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use jumpstarter_testkit::ctl::JmpLab;
use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(120);

/// deploy/README's recipe (CA:TRUE, as `openssl req -x509` makes by default), with `san` as
/// the subjectAltName: `(cert, key)` in `dir`.
fn openssl_recipe(dir: &Path, name: &str, san: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = run_timeout(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "3650"])
            .args(["-subj", "/CN=exporter1", "-addext"])
            .arg(format!("subjectAltName={san}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt),
        T,
    );
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    let shown = run_timeout(
        Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&crt),
        T,
    );
    assert!(
        ok(&shown).contains("CA:TRUE"),
        "the recipe makes a CA certificate"
    );
    (crt, key)
}

fn jmp_run(cfg: &Path, extra: &[&str]) -> RunningExporter {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env("PATH", path_with_ours())
        .env("JMP_LOG", "info")
        .arg("run")
        .arg("--exporter-config")
        .arg(cfg)
        .args(["--tls-grpc-listener", "127.0.0.1:0"])
        .args(extra);
    RunningExporter::start(&mut cmd, None)
}

/// `jmp shell --tls-grpc ADDR ARGS -- j power on` with `env`.
fn shell(addr: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env("PATH", path_with_ours())
        .env_remove("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
        .args(["shell", "--tls-grpc", addr])
        .args(args)
        .args(["--", "j", "power", "on"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_timeout(&mut cmd, T)
}

/// `j power on` against `JUMPSTARTER_HOST=ADDR` with `env`.
fn j_power_on(addr: &str, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(j());
    clean(&mut cmd);
    cmd.env("JUMPSTARTER_HOST", addr)
        .env("JMP_DRIVERS_ALLOW", "UNSAFE")
        .env_remove("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
        .args(["power", "on"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_timeout(&mut cmd, T)
}

fn fails_with(out: &Output, needle: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
    assert!(!err.contains("Other("), "debug dump in:\n{err}");
    assert!(!err.contains("OtherError"), "debug dump in:\n{err}");
    err
}

#[test]
fn the_deploy_recipe_certificate_is_trusted_as_its_own_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let (crt, key) = openssl_recipe(dir.path(), "ex", "DNS:localhost,IP:127.0.0.1");
    let exporter = jmp_run(
        &cfg,
        &[
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--passphrase",
            "pw",
        ],
    );
    let addr = format!("127.0.0.1:{}", exporter.port);
    let pass = Path::new("pw");
    let roots = ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", crt.as_path());

    // jmp shell with the flag, then with JMP_GRPC_PASSPHRASE only (16f), by IP and by name.
    ok(&shell(&addr, &["--passphrase", "pw"], &[roots]));
    ok(&shell(&addr, &[], &[roots, ("JMP_GRPC_PASSPHRASE", pass)]));
    let by_name = format!("localhost:{}", exporter.port);
    ok(&shell(
        &by_name,
        &[],
        &[roots, ("JMP_GRPC_PASSPHRASE", pass)],
    ));
    // No passphrase at all: refused by the exporter, as before.
    fails_with(&shell(&addr, &[], &[roots]), "Authentication failed");
    // j over TCP with the same trust.
    ok(&j_power_on(&addr, &[roots, ("JMP_GRPC_PASSPHRASE", pass)]));

    // The certificate is not trusted: a readable reason, no debug dump.
    let (other, _) = openssl_recipe(dir.path(), "other", "DNS:localhost,IP:127.0.0.1");
    let err = fails_with(
        &shell(
            &addr,
            &["--passphrase", "pw"],
            &[("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", other.as_path())],
        ),
        "invalid peer certificate: the certificate is a CA certificate (CA:TRUE) used as a \
         server certificate, and it is not itself trusted here",
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    fails_with(
        &j_power_on(
            &addr,
            &[
                ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", other.as_path()),
                ("JMP_GRPC_PASSPHRASE", pass),
            ],
        ),
        "not itself trusted here",
    );
}

#[test]
fn names_are_still_checked_for_a_trusted_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let (crt, key) = openssl_recipe(dir.path(), "lab", "DNS:exporter1.lab,IP:192.0.2.10");
    let exporter = jmp_run(
        &cfg,
        &[
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let addr = format!("127.0.0.1:{}", exporter.port);
    let roots = ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", crt.as_path());
    fails_with(
        &shell(&addr, &[], &[roots]),
        "invalid peer certificate: it is not valid for 127.0.0.1 (it names exporter1.lab, \
         192.0.2.10)",
    );
    fails_with(
        &j_power_on(&addr, &[roots]),
        "it is not valid for 127.0.0.1",
    );
    // JMP_GRPC_INSECURE=1 skips verification for jmp shell, as upstream.
    ok(&shell(
        &addr,
        &[],
        &[roots, ("JMP_GRPC_INSECURE", Path::new("1"))],
    ));
}

#[test]
fn tls_and_plaintext_mismatches_say_which_flag_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let (crt, key) = openssl_recipe(dir.path(), "ex", "DNS:localhost,IP:127.0.0.1");
    let roots = ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", crt.as_path());
    {
        let tls = jmp_run(
            &cfg,
            &[
                "--tls-cert",
                crt.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
        );
        let addr = format!("127.0.0.1:{}", tls.port);
        let err = fails_with(
            &shell(&addr, &["--tls-grpc-insecure"], &[roots]),
            &format!("the exporter at {addr} speaks TLS; drop --tls-grpc-insecure"),
        );
        assert!(!err.contains("h2 protocol error"), "{err}");
        fails_with(
            &j_power_on(&addr, &[("JMP_GRPC_INSECURE", Path::new("1"))]),
            &format!("the exporter at {addr} speaks TLS: unset JMP_GRPC_INSECURE"),
        );
    }
    let plain = jmp_run(&cfg, &["--tls-grpc-insecure"]);
    let addr = format!("127.0.0.1:{}", plain.port);
    fails_with(
        &shell(&addr, &[], &[roots]),
        &format!(
            "the exporter at {addr} speaks plaintext gRPC, not TLS (it runs with \
             --tls-grpc-insecure); add --tls-grpc-insecure"
        ),
    );
    fails_with(
        &j_power_on(&addr, &[roots]),
        "the server speaks plaintext gRPC, not TLS; set JMP_GRPC_INSECURE=1",
    );
    ok(&shell(&addr, &["--tls-grpc-insecure"], &[]));
}

#[test]
fn endpoints_take_grpc_forms_for_clients_and_exporters() {
    let lab = JmpLab::new();
    let e1 = lab.exporter_config("e1", &[]);
    let client = lab.client_config("alice");
    let yaml = std::fs::read_to_string(&client).unwrap();
    let port = yaml
        .lines()
        .find_map(|l| l.strip_prefix("endpoint: 127.0.0.1:"))
        .expect("endpoint line")
        .trim()
        .to_owned();
    // The exporter's endpoint written with a scheme, as a newcomer might.
    let edited = std::fs::read_to_string(&e1).unwrap().replace(
        &format!("endpoint: 127.0.0.1:{port}"),
        &format!("endpoint: https://127.0.0.1:{port}"),
    );
    std::fs::write(&e1, edited).unwrap();
    let (_exporter, log) = lab.exporter(jmp(), &e1, "scheme");
    lab.wait_status("e1", "Available", &log);

    let get = |endpoint: &str| {
        let mut cmd = Command::new(jmp());
        clean(&mut cmd);
        cmd.env("HOME", &lab.root)
            .env("JMP_ENDPOINT", endpoint)
            .args(["get", "exporters", "--client", "alice"]);
        run_timeout(&mut cmd, T)
    };
    for form in [
        format!("https://127.0.0.1:{port}"),
        format!("dns:///127.0.0.1:{port}"),
        format!("127.0.0.1:{port}"),
    ] {
        let out = get(&form);
        assert!(ok(&out).contains("e1"), "{form}: {}", text(&out.stdout));
    }
    // No port: 443, as grpc (not a socket path).
    let err = fails_with(&get("127.0.0.1"), "127.0.0.1:443");
    assert!(!err.contains("No such file"), "{err}");
    let err = fails_with(&get("not an endpoint"), "$JMP_ENDPOINT: invalid endpoint");
    assert_eq!(err.lines().count(), 1, "{err}");

    // An exporter config with `endpoint: 127.0.0.1` dials port 443.
    let bad = lab.root.join("e443.yaml");
    let no_port = std::fs::read_to_string(&e1)
        .unwrap()
        .replace(&format!("https://127.0.0.1:{port}"), "127.0.0.1");
    std::fs::write(&bad, no_port).unwrap();
    let mut run = Command::new(jmp());
    clean(&mut run);
    run.env("HOME", &lab.root)
        .args(["run", "--exporter-config"])
        .arg(&bad);
    let mut p = Proc::spawn(&mut run, "jmp run (port 443)");
    p.wait_for("cannot reach the controller at 127.0.0.1:443", T);
    p.kill();
    // A malformed one: one line with the file position.
    let malformed = std::fs::read_to_string(&bad)
        .unwrap()
        .replace("endpoint: 127.0.0.1", "endpoint: 127.0.0.1:http");
    std::fs::write(&bad, malformed).unwrap();
    let mut run = Command::new(jmp());
    clean(&mut run);
    run.env("HOME", &lab.root)
        .args(["run", "--exporter-config"])
        .arg(&bad);
    let err = fails_with(
        &run_timeout(&mut run, T),
        "invalid endpoint '127.0.0.1:http': the port 'http' is not a number",
    );
    assert!(err.contains(&format!("{}:", bad.display())), "{err}");
}

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

fn config_cmd(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(jmp());
    clean(&mut c);
    c.env("JMP_CLIENT_CONFIG_HOME", root)
        .env("HOME", root)
        .env_remove("VISUAL")
        .env_remove("EDITOR")
        .args(args);
    c
}

#[test]
fn config_create_refuses_malformed_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cfg");
    let tok = jwt();
    let create = |alias: &str, endpoint: &str| {
        run_timeout(
            &mut config_cmd(
                &root,
                &[
                    "config",
                    "client",
                    "create",
                    alias,
                    "--namespace",
                    "ns",
                    "--name",
                    "n",
                    "--endpoint",
                    endpoint,
                    "--token",
                    &tok,
                    "--allow",
                    "",
                    "--nointeractive",
                ],
            ),
            T,
        )
    };
    let err = fails_with(&create("c1", "not an endpoint"), "");
    assert_eq!(
        err,
        "Error: invalid endpoint 'not an endpoint': a host name cannot contain spaces \
         (expected HOST[:PORT], e.g. jumpstarter.example.com:443)\n"
    );
    assert!(!root.join("clients/c1.yaml").exists());
    fails_with(&create("c1", "ctl:0"), "port 0 cannot be dialled");
    // A scheme is dropped from what is written, so upstream reads the file too.
    ok(&create("c1", "https://ctl.example.com:8082"));
    let written = std::fs::read_to_string(root.join("clients/c1.yaml")).unwrap();
    assert!(
        written.contains("\nendpoint: ctl.example.com:8082\n"),
        "{written}"
    );
    ok(&create("c2", "dns:///ctl.example.com"));

    let exporter = |alias: &str, endpoint: &str| {
        run_timeout(
            &mut config_cmd(
                &root,
                &[
                    "config",
                    "exporter",
                    "create",
                    alias,
                    "--namespace",
                    "ns",
                    "--name",
                    "e",
                    "--endpoint",
                    endpoint,
                    "--token",
                    "t",
                    "--nointeractive",
                ],
            ),
            T,
        )
    };
    let err = fails_with(&exporter("e1", "not an endpoint"), "invalid endpoint");
    assert_eq!(err.lines().count(), 1, "{err}");
    ok(&exporter("e1", "[::1]:1443"));
}

#[test]
fn config_client_edit_validates_the_edited_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cfg");
    let tok = jwt();
    ok(&run_timeout(
        &mut config_cmd(
            &root,
            &[
                "config",
                "client",
                "create",
                "c1",
                "--namespace",
                "ns",
                "--name",
                "n",
                "--endpoint",
                "ctl:1443",
                "--token",
                &tok,
                "--allow",
                "",
                "--nointeractive",
            ],
        ),
        T,
    ));
    let file = root.join("clients/c1.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    let line = original
        .lines()
        .position(|l| l.starts_with("endpoint:"))
        .unwrap()
        + 1;
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i \"$SED\" \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let edit = |sed: &str| {
        run_timeout(
            config_cmd(&root, &["config", "client", "edit", "c1"])
                .env("EDITOR", &editor)
                .env("SED", sed),
            T,
        )
    };
    let invalid = PathBuf::from(format!("{}.invalid", file.display()));
    for (sed, message) in [
        (
            "s/^endpoint:/endpont:/",
            format!(
                "{}:{line}:1: unknown key `endpont` in the ClientConfig",
                file.display()
            ),
        ),
        (
            "s/^endpoint: .*/endpoint: not an endpoint/",
            format!(
                "{}:{line}:11: invalid endpoint 'not an endpoint': a host name cannot contain \
                 spaces",
                file.display()
            ),
        ),
        (
            "/^endpoint:/d",
            format!("{}:1:1: the ClientConfig has no endpoint", file.display()),
        ),
    ] {
        let err = fails_with(&edit(sed), &message);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("{} is unchanged", file.display())),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), original, "{sed}");
        assert!(invalid.is_file(), "the edit is kept");
        std::fs::remove_file(&invalid).unwrap();
    }
    // A valid edit replaces the file.
    ok(&edit("s/^endpoint: .*/endpoint: dns:\\/\\/\\/ctl:2/"));
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("\nendpoint: dns:///ctl:2\n")
    );
}

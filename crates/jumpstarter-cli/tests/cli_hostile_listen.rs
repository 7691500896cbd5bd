//! Hostile connections against a real `jmp run` (direct mode, TLS, passphrase), with small
//! limits from `JMP_*` variables: silent connections past the connection cap neither stop an
//! open client nor, once they time out, `j power on`; a passphrase flood backs off and logs a
//! bounded number of lines; bad limit values are usage errors; an expired certificate is served
//! with a warning.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use jumpstarter_core::Client;
use jumpstarter_core::transport::{Dial, Target};
use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(120);

fn run_cmd(cfg: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env("PATH", path_with_ours())
        .env("JMP_LOG", "info")
        .arg("run")
        .arg("--exporter-config")
        .arg(cfg)
        .args(["--tls-grpc-listener", "127.0.0.1:0"])
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn dial(ca: &std::path::Path, passphrase: &str) -> Dial {
    let roots = jumpstarter_core::tls::roots_from_pem_file(ca).unwrap();
    Dial {
        tls: Some(
            jumpstarter_core::tls::client_config(&jumpstarter_core::tls::ServerTrust::Roots(
                std::sync::Arc::new(roots),
            ))
            .unwrap(),
        ),
        passphrase: Some(passphrase.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_and_passphrase_floods_against_jmp_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let (ca, cert, key) = write_ca(dir.path(), "run");
    let mut exporter = RunningExporter::start(
        &mut run_cmd(
            &cfg,
            &[
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
                "--passphrase",
                "pw",
            ],
            &[
                ("JMP_MAX_CONNECTIONS", "16"),
                ("JMP_HANDSHAKE_TIMEOUT", "1.5"),
                ("JMP_PASSPHRASE_FAILURES", "3"),
                ("JMP_PASSPHRASE_MAX_BACKOFF", "1"),
            ],
        ),
        None,
    );
    let port = exporter.port;
    let target = Target::parse(&format!("127.0.0.1:{port}"));
    // A client connected before the flood, holding a log stream (so it is never idle).
    let legit = Client::dial(&target, &dial(&ca, "pw")).await.unwrap();
    let _logs = legit.log_stream().await.unwrap();

    // 60 silent connections (nothing at all) against a cap of 16.
    let silent: Vec<_> = (0..60)
        .map(|_| {
            let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let start = Instant::now();
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = tcp.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                start.elapsed()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The open client keeps working during the flood.
    legit.get_status().await.unwrap();
    let mut at_once = 0;
    for t in silent {
        let took = tokio::task::spawn_blocking(move || t.join().unwrap())
            .await
            .unwrap();
        assert!(took < Duration::from_secs(5), "{took:?}");
        at_once += usize::from(took < Duration::from_millis(800));
    }
    assert!(at_once >= 60 - 15, "only {at_once} closed at once");
    // Once they are gone, j power on works.
    let mut j_cmd = Command::new(j());
    clean(&mut j_cmd);
    j_cmd
        .current_dir(dir.path())
        .env("JUMPSTARTER_HOST", format!("127.0.0.1:{port}"))
        .env("JMP_DRIVERS_ALLOW", "UNSAFE")
        .env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca)
        .env("JMP_GRPC_PASSPHRASE", "pw")
        .args(["power", "on"]);
    ok(&run_timeout(&mut j_cmd, T));

    // A passphrase flood on one connection: three plain failures, then back-off.
    let guesser = jumpstarter_core::transport::H2Channel::dial(&target, &dial(&ca, "guess"))
        .await
        .unwrap();
    let mut stub =
        jumpstarter_protocol::v1::exporter_service_client::ExporterServiceClient::with_origin(
            guesser.clone(),
            guesser.origin(),
        );
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..1000 {
        let e = stub
            .get_status(jumpstarter_protocol::v1::GetStatusRequest {})
            .await
            .unwrap_err();
        *codes.entry(format!("{:?}", e.code())).or_insert(0) += 1;
    }
    assert_eq!(codes.get("Unauthenticated"), Some(&3), "{codes:?}");
    assert_eq!(codes.get("ResourceExhausted"), Some(&997), "{codes:?}");
    // The burst's summary once it is over; the legit client never noticed.
    let log = exporter.wait_log("failed passphrase attempts from 127.0.0.1");
    legit.get_status().await.unwrap();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count("authentication failed: invalid or missing passphrase"),
        1,
        "{log}"
    );
    assert_eq!(
        count("3 failed passphrase attempts from 127.0.0.1"),
        1,
        "{log}"
    );
    assert!(
        log.contains("(997 more refused while backing off)"),
        "{log}"
    );
    assert!(count("passphrase") <= 3, "{log}");
    // The connection flood: one line when the cap was hit, a few about silent connections.
    assert_eq!(
        count(
            "limit reached: 16 connections served at once per exporter listener (JMP_MAX_CONNECTIONS)"
        ),
        1,
        "{log}"
    );
    assert!(
        count("sending no request within 1.5 s (JMP_HANDSHAKE_TIMEOUT)") <= 2,
        "{log}"
    );
    assert!(log.lines().count() < 40, "{log}");
}

#[test]
fn bad_limit_values_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    for (var, value) in [
        ("JMP_MAX_CONNECTIONS", "0"),
        ("JMP_IDLE_TIMEOUT", "soon"),
        ("JMP_PASSPHRASE_FAILURES", "-1"),
    ] {
        let out = run_timeout(
            &mut run_cmd(&cfg, &["--tls-grpc-insecure"], &[(var, value)]),
            T,
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("Error: {var}={value:?} is not valid")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn an_expired_certificate_is_served_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 3, 1);
    params.not_after = rcgen::date_time_ymd(2020, 3, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.path().join("old.pem"), dir.path().join("old.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let mut exporter = RunningExporter::start(
        &mut run_cmd(
            &cfg,
            &[
                "--tls-cert",
                c.to_str().unwrap(),
                "--tls-key",
                k.to_str().unwrap(),
            ],
            &[],
        ),
        None,
    );
    let log = exporter.wait_log("expired on");
    assert!(
        log.contains(&format!(
            "the TLS certificate {}: expired on 2020-03-01 00:00:00 UTC",
            c.display()
        )),
        "{log}"
    );
    // Served anyway (a client that does not check the certificate gets in).
    let dial = Dial {
        tls: Some(
            jumpstarter_core::tls::client_config(
                &jumpstarter_core::tls::ServerTrust::AnyCertificate,
            )
            .unwrap(),
        ),
        passphrase: None,
    };
    let target = Target::parse(&format!("127.0.0.1:{}", exporter.port));
    Client::dial(&target, &dial)
        .await
        .unwrap()
        .get_status()
        .await
        .unwrap();
}

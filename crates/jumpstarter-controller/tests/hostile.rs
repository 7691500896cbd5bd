//! Hostile connections against the controller's TLS port, through real sockets: silent
//! connections (nothing, a TLS handshake and then nothing) past the connection cap do not stop
//! it answering ListLeases on an open connection, and once they time out it serves new
//! connections and accepts exporters again. Also: bad `JMP_*` values stop `jmp-controller
//! serve` with a usage error, and an expired certificate is served with a warning.

use std::io::Read;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jumpstarter_controller::{Options, admin, open_store};
use jumpstarter_core::limits::Limits;
use jumpstarter_core::transport::{Dial, H2Channel, Target};
use jumpstarter_protocol::client_v1::ListLeasesRequest;
use jumpstarter_protocol::client_v1::client_service_client::ClientServiceClient;
use jumpstarter_protocol::v1::controller_service_client::ControllerServiceClient;
use jumpstarter_protocol::v1::{DriverInstanceReport, RegisterRequest};
use tonic::Request;

fn with<T>(token: &str, kind: &str, name: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    let md = r.metadata_mut();
    md.insert("authorization", format!("Bearer {token}").parse().unwrap());
    md.insert("jumpstarter-kind", kind.parse().unwrap());
    md.insert("jumpstarter-namespace", "default".parse().unwrap());
    md.insert("jumpstarter-name", name.parse().unwrap());
    r
}

/// Connects and, if `tls` is given, completes a TLS handshake; then says nothing. A thread
/// reads until the controller closes; the result is how long that took.
fn silent(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> std::thread::JoinHandle<Duration> {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut conn = tls.map(|config| {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut c = rustls::ClientConnection::new(config, name).unwrap();
        while c.is_handshaking() {
            if c.complete_io(&mut tcp).is_err() {
                break;
            }
        }
        c
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        loop {
            let n = match conn.as_mut() {
                Some(c) => rustls::Stream::new(c, &mut tcp).read(&mut buf),
                None => tcp.read(&mut buf),
            };
            match n {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_past_the_cap_do_not_stop_the_controller() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let limits = Limits {
        controller_max_connections: 12,
        handshake_timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let running = jumpstarter_controller::start_with_limits(
        Options {
            data_dir: dir.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: Some("127.0.0.1:0".into()),
            tls_cert: None,
            tls_key: None,
            token_lifetime: Duration::from_secs(3600),
            rotated_token_lifetime: Duration::from_secs(3600),
            offline_after: Duration::from_secs(60),
        },
        limits.clone(),
    )
    .await
    .unwrap();
    let addr = running.local_addr;
    let (store, keys) = open_store(&dir).await.unwrap();
    let client = admin::create_client(&store, &keys, "default", "c", Default::default())
        .await
        .unwrap();
    let exporter = admin::create_exporter(&store, &keys, "default", "e", Default::default())
        .await
        .unwrap();
    let roots = jumpstarter_core::tls::roots_from_pem_file(&dir.join("tls/cert.pem")).unwrap();
    let tls = jumpstarter_core::tls::client_config(&jumpstarter_core::tls::ServerTrust::Roots(
        Arc::new(roots),
    ))
    .unwrap();
    let dial = Dial {
        tls: Some(tls.clone()),
        passphrase: None,
    };
    let target = Target::parse(&running.endpoint);
    let list = |ch: H2Channel| {
        let token = client.token.clone();
        async move {
            let origin = ch.origin();
            ClientServiceClient::with_origin(ch, origin)
                .list_leases(with(
                    &token,
                    "Client",
                    "c",
                    ListLeasesRequest {
                        parent: "namespaces/default".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(|r| r.into_inner().leases.len())
        }
    };

    // A client connected before the flood.
    let before = H2Channel::dial(&target, &dial).await.unwrap();
    assert_eq!(list(before.clone()).await.unwrap(), 0);
    // Silent connections, half of them after a TLS handshake, many more than the cap.
    let silent_conns: Vec<_> = (0..40)
        .map(|i| silent(addr, (i % 2 == 1).then(|| tls.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The open connection still gets answers.
    assert_eq!(list(before.clone()).await.unwrap(), 0);
    // Every silent connection is closed: at once past the cap, else at the handshake timeout.
    let mut at_once = 0;
    for t in silent_conns {
        let took = tokio::task::spawn_blocking(move || t.join().unwrap())
            .await
            .unwrap();
        assert!(took < Duration::from_secs(4), "{took:?}");
        if took < Duration::from_millis(700) {
            at_once += 1;
        }
    }
    assert!(at_once >= 40 - 11, "only {at_once} refused at once");
    // New connections are served: ListLeases and an exporter registering.
    let after = H2Channel::dial(&target, &dial).await.unwrap();
    assert_eq!(list(after).await.unwrap(), 0);
    let ch = H2Channel::dial(&target, &dial).await.unwrap();
    let origin = ch.origin();
    ControllerServiceClient::with_origin(ch, origin)
        .register(with(
            &exporter.token,
            "Exporter",
            "e",
            RegisterRequest {
                labels: Default::default(),
                reports: vec![DriverInstanceReport {
                    uuid: uuid::Uuid::new_v4().to_string(),
                    ..Default::default()
                }],
            },
        ))
        .await
        .unwrap();
    assert_eq!(list(before).await.unwrap(), 0);
    store.close().await;
    running.shutdown(Duration::from_secs(2)).await;
}

#[test]
fn bad_limit_values_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("JMP_CONTROLLER_MAX_CONNECTIONS", "lots"),
        ("JMP_HANDSHAKE_TIMEOUT", "0"),
    ] {
        let mut cmd = Command::new(jumpstarter_testkit::controller_bin());
        cmd.args(["serve", "--data-dir"])
            .arg(tmp.path())
            .args(["--listen", "127.0.0.1:0"])
            .env(var, value);
        let out = jumpstarter_testkit::run(&mut cmd, Duration::from_secs(30));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert_eq!(text.trim().lines().count(), 1, "{text}");
        assert!(text.starts_with(&format!("Error: {var}=")), "{text}");
    }
}

#[tokio::test]
async fn an_expired_certificate_is_served_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (tmp.path().join("old.pem"), tmp.path().join("old.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let extra = [
        "--tls-cert",
        c.to_str().unwrap(),
        "--tls-key",
        k.to_str().unwrap(),
    ];
    let ctl = jumpstarter_testkit::Controller::start_with(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        &extra,
    );
    let out = ctl.proc.output();
    let warning = format!(
        "the TLS certificate {}: expired on 2021-01-01 00:00:00 UTC",
        c.display()
    );
    assert!(out.contains(&warning), "{out}");
    // Still serving: over TLS without checking the certificate, a call with an empty parent
    // gets the controller's answer.
    let tls =
        jumpstarter_core::tls::client_config(&jumpstarter_core::tls::ServerTrust::AnyCertificate)
            .unwrap();
    let dial = Dial {
        tls: Some(tls),
        passphrase: None,
    };
    let ch = H2Channel::dial(&Target::parse(&ctl.endpoint), &dial)
        .await
        .unwrap();
    let origin = ch.origin();
    let e = ClientServiceClient::with_origin(ch, origin)
        .list_leases(ListLeasesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("identifier"), "{e:?}");
}

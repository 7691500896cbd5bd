//! Controller channels from config `tls:` and `grpcOptions`: a real TLS server on loopback,
//! reached with the CA from `tls.ca`, with insecure TLS, and refused without trust.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use jumpstarter_config::{ChannelOptions, ClientConfig, Env, GrpcOptionValue, TlsConfig};
use jumpstarter_core::channel::{ChannelError, ChannelSettings};
use jumpstarter_core::session::{ListenOptions, Session};
use jumpstarter_core::tree::DriverTree;
use jumpstarter_core::{LogHub, tls};
use jumpstarter_protocol::v1::exporter_service_client::ExporterServiceClient;

struct Ca {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn make_ca(dir: &Path, name: &str, hosts: &[&str]) -> Ca {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
    let cert_path = dir.join(format!("{name}-cert.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    Ca {
        ca_pem: ca.pem(),
        server: tls::server_config(&cert_path, &key_path).unwrap(),
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn serve_tls(server: Arc<rustls::ServerConfig>) -> (Session, String) {
    let session = Session::new(
        DriverTree::composite(vec![]),
        LogHub::new(),
        uuid::Uuid::new_v4(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = session.serve_tcp(listener, Some(server), &ListenOptions::default());
    std::mem::forget(handle); // lives until the test's runtime ends
    (session, format!("127.0.0.1:{port}"))
}

async fn get_report(settings: &ChannelSettings) -> Result<usize, String> {
    let ch = settings.connect().await.map_err(|e| e.to_string())?;
    let mut stub = settings.limit(
        ExporterServiceClient::new(ch),
        ExporterServiceClient::max_decoding_message_size,
        ExporterServiceClient::max_encoding_message_size,
    );
    let r = stub.get_report(()).await.map_err(|e| e.to_string())?;
    Ok(r.into_inner().reports.len())
}

fn no_env() -> Env {
    Env::from_pairs(Vec::<(String, String)>::new())
}

#[tokio::test]
async fn ca_from_config_insecure_and_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_ca(dir.path(), "good", &["127.0.0.1", "ctl.test"]);
    let other = make_ca(dir.path(), "other", &["127.0.0.1"]);
    let (_session, endpoint) = serve_tls(good.server.clone()).await;

    // tls.ca: base64 of the PEM CA.
    let with_ca = TlsConfig {
        ca: b64(&good.ca_pem),
        ..Default::default()
    };
    let s =
        ChannelSettings::new(&endpoint, &with_ca, ChannelOptions::default(), &no_env()).unwrap();
    assert_eq!(get_report(&s).await.unwrap(), 1);

    // Another CA: the handshake fails with a message naming the endpoint.
    let wrong = TlsConfig {
        ca: b64(&other.ca_pem),
        ..Default::default()
    };
    let s = ChannelSettings::new(&endpoint, &wrong, ChannelOptions::default(), &no_env()).unwrap();
    let err = get_report(&s).await.unwrap_err();
    assert!(
        err.contains(&format!("cannot connect to {endpoint}")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // tls.insecure: encrypted, any certificate accepted (upstream semantics).
    let insecure = TlsConfig {
        insecure: true,
        ..Default::default()
    };
    let s =
        ChannelSettings::new(&endpoint, &insecure, ChannelOptions::default(), &no_env()).unwrap();
    assert_eq!(get_report(&s).await.unwrap(), 1);
    // ... and the same through JUMPSTARTER_GRPC_INSECURE=1.
    let env = Env::from_pairs([("JUMPSTARTER_GRPC_INSECURE", "1")]);
    let s = ChannelSettings::new(&endpoint, &wrong, ChannelOptions::default(), &env).unwrap();
    assert_eq!(get_report(&s).await.unwrap(), 1);

    // System/default roots: GRPC_DEFAULT_SSL_ROOTS_FILE_PATH is honoured through
    // tls::default_roots; here the test CA is not a system root, so it must fail.
    let ca_file = dir.path().join("roots.pem");
    std::fs::write(&ca_file, &good.ca_pem).unwrap();
    let env = Env::from_pairs([("JUMPSTARTER_FORCE_SYSTEM_CERTS", "1")]);
    if let Ok(s) = ChannelSettings::new(
        &endpoint,
        &TlsConfig::default(),
        ChannelOptions::default(),
        &env,
    ) {
        assert!(get_report(&s).await.is_err());
    }
    // With FORCE_SYSTEM_CERTS the configured CA still counts.
    let s = ChannelSettings::new(&endpoint, &with_ca, ChannelOptions::default(), &env).unwrap();
    assert_eq!(get_report(&s).await.unwrap(), 1);
}

#[tokio::test]
async fn grpc_options_reach_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    // The certificate names only ctl.test: connecting to 127.0.0.1 needs the name override.
    let ca = make_ca(dir.path(), "named", &["ctl.test"]);
    let (_session, endpoint) = serve_tls(ca.server.clone()).await;
    let tls_cfg = TlsConfig {
        ca: b64(&ca.ca_pem),
        ..Default::default()
    };
    let s =
        ChannelSettings::new(&endpoint, &tls_cfg, ChannelOptions::default(), &no_env()).unwrap();
    assert!(get_report(&s).await.is_err());

    let mut cfg = ClientConfig::new("c", Some("ns".into()), "n".into());
    cfg.endpoint = Some(endpoint.clone());
    cfg.token = Some("t".into());
    cfg.tls = tls_cfg;
    cfg.grpc_options = jumpstarter_config::GrpcOptions::from([
        (
            "grpc.ssl_target_name_override".to_owned(),
            GrpcOptionValue::Str("ctl.test".into()),
        ),
        (
            "grpc.keepalive_time_ms".to_owned(),
            GrpcOptionValue::Int(1000),
        ),
        ("grpc.unheard_of".to_owned(), GrpcOptionValue::Int(1)),
    ]);
    let s = ChannelSettings::for_client(&cfg, &no_env()).unwrap();
    assert_eq!(s.options.keepalive_time, std::time::Duration::from_secs(1));
    assert_eq!(get_report(&s).await.unwrap(), 1);

    // A receive limit smaller than the report: the call fails with RESOURCE_EXHAUSTED-like text.
    cfg.grpc_options.insert(
        "grpc.max_receive_message_length".into(),
        GrpcOptionValue::Int(1),
    );
    let s = ChannelSettings::for_client(&cfg, &no_env()).unwrap();
    let err = get_report(&s).await.unwrap_err();
    assert!(
        err.contains("message length too large") || err.contains("exceeds"),
        "{err}"
    );

    // The H2Channel path (router tunnels, direct mode) uses the same settings.
    cfg.grpc_options
        .shift_remove("grpc.max_receive_message_length");
    let s = ChannelSettings::for_client(&cfg, &no_env()).unwrap();
    let h2 = s.h2(&endpoint).await.unwrap();
    let mut stub = ExporterServiceClient::with_origin(h2.clone(), h2.origin());
    assert_eq!(
        stub.get_report(())
            .await
            .unwrap()
            .into_inner()
            .reports
            .len(),
        1
    );
}

#[test]
fn bad_settings_are_reported_clearly() {
    let bad_ca = TlsConfig {
        ca: "not base64!".into(),
        ..Default::default()
    };
    let err = ChannelSettings::new("h:1", &bad_ca, ChannelOptions::default(), &no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("tls.ca is not base64"), "{err}");
    let insecure = TlsConfig {
        insecure: true,
        ..Default::default()
    };
    // No port is grpc's 443; a malformed endpoint is refused with the reason.
    let s =
        ChannelSettings::new("no-port", &insecure, ChannelOptions::default(), &no_env()).unwrap();
    assert_eq!(s.endpoint, "no-port:443");
    let err = ChannelSettings::new("no port", &insecure, ChannelOptions::default(), &no_env())
        .unwrap_err();
    assert!(matches!(err, ChannelError::Endpoint { .. }), "{err}");
    assert!(err.to_string().contains("expected HOST[:PORT]"), "{err}");
    let mut cfg = ClientConfig::new("c", None, "n".into());
    let err = ChannelSettings::for_client(&cfg, &no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no endpoint"), "{err}");
    // A client config without a token: named, with what to do.
    cfg.endpoint = Some("ctl:1".into());
    let err = ChannelSettings::for_client(&cfg, &no_env())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "the client config from the environment (JMP_NAME, JMP_NAMESPACE) has no token; set it in \
         the file (jmp config client create) or with JMP_TOKEN"
    );
}

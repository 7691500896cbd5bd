//! Hostile connections against session listeners, through real sockets on loopback: silent
//! connections (nothing, the HTTP/2 preface only, TLS and then nothing) are closed within the
//! handshake timeout; idle connections are closed, busy ones never; the connection cap refuses
//! extra connections at once and keeps existing ones; streams per connection are bounded; and
//! passphrase guessing backs off per address. Limits are passed explicitly (small values).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jumpstarter_core::limits::Limits;
use jumpstarter_core::session::{ListenOptions, ServerHandle, Session};
use jumpstarter_core::transport::{H2Channel, Target};
use jumpstarter_core::tree::DriverTree;
use jumpstarter_core::{LogHub, tls};
use jumpstarter_protocol::v1::ExporterStatus;
use jumpstarter_protocol::v1::exporter_service_client::ExporterServiceClient;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

fn limits() -> Limits {
    Limits {
        handshake_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_secs(30),
        max_connections: 64,
        ..Limits::default()
    }
}

fn session() -> Session {
    let s = Session::new(
        DriverTree::composite(vec![]),
        LogHub::new(),
        uuid::Uuid::new_v4(),
    );
    s.set_status(ExporterStatus::LeaseReady, "");
    s
}

struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn make_tls(dir: &Path) -> Tls {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let mut roots = tls::Roots::empty();
    assert_eq!(roots.add_parsable_certificates([cert.der().clone()]).0, 1);
    Tls {
        server: tls::server_config(&c, &k).unwrap(),
        client: tls::client_config(&tls::ServerTrust::Roots(Arc::new(roots))).unwrap(),
    }
}

async fn tcp(
    s: &Session,
    tls: Option<Arc<rustls::ServerConfig>>,
    options: &ListenOptions,
    limits: &Limits,
) -> (ServerHandle, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (
        s.serve_tcp_with_limits(listener, tls, options, limits),
        addr,
    )
}

/// How long until the peer closes `conn` (whatever it sends first is read and dropped); `None`
/// when it is still open after `limit`.
async fn closed_after(mut conn: impl AsyncRead + Unpin, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_all)
        .await
        .ok()
        .map(|()| start.elapsed())
}

async fn get_status(ch: &H2Channel) -> Result<i32, tonic::Status> {
    let mut stub = ExporterServiceClient::with_origin(ch.clone(), ch.origin());
    Ok(stub
        .get_status(jumpstarter_protocol::v1::GetStatusRequest::default())
        .await?
        .into_inner()
        .status)
}

async fn tls_connect(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(client.clone())
        .connect(tls::server_name("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn silent_connections_are_closed_within_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let tls = make_tls(dir.path());
    let l = limits();
    let s = session();
    let unix_path = dir.path().join("socket");
    let _unix = s.serve_unix_with_limits(&unix_path, &l).unwrap();
    let (_plain, plain) = tcp(&s, None, &ListenOptions::default(), &l).await;
    let (_tls, tls_addr) = tcp(&s, Some(tls.server.clone()), &ListenOptions::default(), &l).await;

    let mut waits = Vec::new();
    for _ in 0..10 {
        // Nothing at all, then the preface only: unix socket and plain TCP.
        for preface in [false, true] {
            let mut u = tokio::net::UnixStream::connect(&unix_path).await.unwrap();
            let mut t = tokio::net::TcpStream::connect(plain).await.unwrap();
            if preface {
                u.write_all(PREFACE).await.unwrap();
                t.write_all(PREFACE).await.unwrap();
            }
            waits.push(tokio::spawn(closed_after(u, Duration::from_secs(5))));
            waits.push(tokio::spawn(closed_after(t, Duration::from_secs(5))));
        }
        // TLS port: no ClientHello; TLS and then nothing; TLS and the preface only.
        let t = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
        waits.push(tokio::spawn(closed_after(t, Duration::from_secs(5))));
        let t = tls_connect(tls_addr, &tls.client).await;
        waits.push(tokio::spawn(closed_after(t, Duration::from_secs(5))));
        let mut t = tls_connect(tls_addr, &tls.client).await;
        t.write_all(PREFACE).await.unwrap();
        waits.push(tokio::spawn(closed_after(t, Duration::from_secs(5))));
    }
    for w in waits {
        let took = w
            .await
            .unwrap()
            .expect("a silent connection is still open after 5 s");
        assert!(
            took < l.handshake_timeout + Duration::from_millis(900),
            "closed after {took:?}"
        );
        assert!(
            took >= l.handshake_timeout / 2,
            "closed too early: {took:?}"
        );
    }
    // The listeners still serve.
    let ch = H2Channel::connect(&Target::Unix(unix_path.clone()))
        .await
        .unwrap();
    assert_eq!(
        get_status(&ch).await.unwrap(),
        ExporterStatus::LeaseReady as i32
    );
    let ch = H2Channel::connect(&Target::parse(&plain.to_string()))
        .await
        .unwrap();
    get_status(&ch).await.unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed_but_a_stream_keeps_one_open() {
    let l = Limits {
        idle_timeout: Duration::from_millis(800),
        ..limits()
    };
    let s = session();
    let (_h, addr) = tcp(&s, None, &ListenOptions::default(), &l).await;
    let target = Target::parse(&addr.to_string());

    let idle = H2Channel::connect(&target).await.unwrap();
    get_status(&idle).await.unwrap();
    let busy = H2Channel::connect(&target).await.unwrap();
    let mut stub = ExporterServiceClient::with_origin(busy.clone(), busy.origin());
    let logs = stub.log_stream(()).await.unwrap().into_inner();

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(idle.is_closed(), "an idle connection is still open");
    assert!(
        !busy.is_closed(),
        "a connection with a stream open was closed"
    );
    assert_eq!(
        get_status(&busy).await.unwrap(),
        ExporterStatus::LeaseReady as i32
    );
    // Once the stream ends, that connection is idle too.
    drop(logs);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(
        busy.is_closed(),
        "the connection stayed open after its stream ended"
    );
    // A new connection is served.
    let fresh = H2Channel::connect(&target).await.unwrap();
    get_status(&fresh).await.unwrap();
}

#[tokio::test]
async fn the_connection_cap_refuses_extra_connections_and_keeps_existing_ones() {
    let l = Limits {
        max_connections: 12,
        handshake_timeout: Duration::from_millis(1500),
        ..limits()
    };
    let s = session();
    let dir = tempfile::tempdir().unwrap();
    let unix_path = dir.path().join("socket");
    let _unix = s.serve_unix_with_limits(&unix_path, &l).unwrap();
    let (_h, addr) = tcp(&s, None, &ListenOptions::default(), &l).await;
    for target in [
        Target::parse(&addr.to_string()),
        Target::Unix(unix_path.clone()),
    ] {
        // A legit client first, then silent connections up to the cap and beyond it.
        let legit = H2Channel::connect(&target).await.unwrap();
        get_status(&legit).await.unwrap();
        let connect = || async {
            match &target {
                Target::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await.unwrap())
                    as Box<dyn AsyncRead + Send + Unpin>,
                _ => Box::new(tokio::net::TcpStream::connect(addr).await.unwrap()),
            }
        };
        let mut held = Vec::new();
        for _ in 0..l.max_connections - 1 {
            held.push(connect().await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Past the cap: closed at once.
        for _ in 0..40 {
            let extra = connect().await;
            let took = closed_after(extra, Duration::from_millis(1000))
                .await
                .expect("a connection past the cap was not closed at once");
            assert!(took < Duration::from_millis(500), "{took:?}");
        }
        // The legit connection keeps working.
        assert_eq!(
            get_status(&legit).await.unwrap(),
            ExporterStatus::LeaseReady as i32
        );
        // Once the silent ones time out, new connections are served again.
        for conn in held {
            closed_after(conn, Duration::from_secs(5))
                .await
                .expect("a silent connection was not closed");
        }
        let again = H2Channel::connect(&target).await.unwrap();
        get_status(&again).await.unwrap();
        get_status(&legit).await.unwrap();
    }
}

#[tokio::test]
async fn streams_per_connection_are_bounded() {
    let l = Limits {
        max_streams_per_connection: 3,
        ..limits()
    };
    let s = session();
    let (_h, addr) = tcp(&s, None, &ListenOptions::default(), &l).await;
    let ch = H2Channel::connect(&Target::parse(&addr.to_string()))
        .await
        .unwrap();
    get_status(&ch).await.unwrap();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stub = ExporterServiceClient::with_origin(ch.clone(), ch.origin());
        streams.push(stub.log_stream(()).await.unwrap().into_inner());
    }
    // A fourth call on the same connection waits for a free stream...
    let pending = tokio::spawn({
        let ch = ch.clone();
        async move { get_status(&ch).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !pending.is_finished(),
        "a call past the stream limit was served"
    );
    // ...and goes through as soon as one ends.
    streams.pop();
    let r = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the waiting call never ran")
        .unwrap();
    r.unwrap();
    // Other connections were never affected.
    let other = H2Channel::connect(&Target::parse(&addr.to_string()))
        .await
        .unwrap();
    get_status(&other).await.unwrap();
}

/// An HTTP/2 channel to `addr` from the local address `from`, sending `passphrase`.
async fn channel_from(from: &str, addr: SocketAddr, passphrase: &str) -> H2Channel {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let io = socket.connect(addr).await.unwrap();
    io.set_nodelay(true).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        jumpstarter_protocol::metadata::PASSPHRASE,
        passphrase.parse().unwrap(),
    );
    H2Channel::handshake_with(io, format!("http://{addr}").parse().unwrap(), headers, None)
        .await
        .unwrap()
}

#[tokio::test]
async fn passphrase_guessing_backs_off_per_address() {
    let l = Limits {
        passphrase_failures: 3,
        passphrase_max_backoff: Duration::from_secs(2),
        ..limits()
    };
    let s = session();
    let options = ListenOptions {
        passphrase: Some("open sesame".into()),
        keepalive: false,
        ..Default::default()
    };
    let (_h, addr) = tcp(&s, None, &options, &l).await;

    // A flood of wrong guesses on one connection.
    let guesser = channel_from("127.0.0.1", addr, "guess").await;
    let (mut wrong, mut refused) = (0, 0);
    let start = Instant::now();
    for _ in 0..500 {
        let e = get_status(&guesser).await.unwrap_err();
        match e.code() {
            tonic::Code::Unauthenticated => {
                assert_eq!(e.message(), "invalid or missing passphrase");
                wrong += 1;
            }
            tonic::Code::ResourceExhausted => {
                assert!(
                    e.message()
                        .starts_with("too many wrong passphrases from 127.0.0.1: retry in ")
                        && e.message().contains("JMP_PASSPHRASE_FAILURES"),
                    "{}",
                    e.message()
                );
                refused += 1;
            }
            other => panic!("{other:?}: {}", e.message()),
        }
    }
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!((wrong, refused), (3, 497));
    // While backing off even the right passphrase is refused from that address...
    let right = channel_from("127.0.0.1", addr, "open sesame").await;
    assert_eq!(
        get_status(&right).await.unwrap_err().code(),
        tonic::Code::ResourceExhausted
    );
    // ...but not from another one.
    let other = channel_from("127.0.0.2", addr, "open sesame").await;
    get_status(&other).await.unwrap();
    // After the back-off the right passphrase works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    get_status(&right).await.unwrap();
    // The next guess is a plain failure again (the right passphrase ended the burst).
    assert_eq!(
        get_status(&guesser).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
}

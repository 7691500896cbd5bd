//! Hostile use of the controller's API through real TLS sockets: Dial spam whose router
//! streams are never joined, streams outliving their lease, a rotated token used again, and
//! megabyte strings echoed in errors.
//!
//! The limits of this test process: a 6 s handshake (pairing) timeout and 8 pending Dials per
//! lease, installed before the first controller starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jumpstarter_controller::auth::Keys;
use jumpstarter_controller::store::Store;
use jumpstarter_controller::{Options, Running, admin, open_store};
use jumpstarter_core::controller::{PairError, RouterStream, router_stream};
use jumpstarter_core::limits::{self, Limits};
use jumpstarter_core::transport::{Dial, H2Channel, Target};
use jumpstarter_protocol::client_v1::client_service_client::ClientServiceClient;
use jumpstarter_protocol::client_v1::{
    CreateLeaseRequest, DeleteLeaseRequest, GetLeaseRequest, Lease, ListExportersRequest,
    ListLeasesRequest, RotateTokenRequest,
};
use jumpstarter_protocol::v1::controller_service_client::ControllerServiceClient;
use jumpstarter_protocol::v1::{
    DialRequest, DialResponse, DriverInstanceReport, ExporterStatus, ListenRequest, ListenResponse,
    RegisterRequest, ReportStatusRequest, StatusRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Request, Status};

const PAIRING: Duration = Duration::from_secs(6);
const MAX_PENDING: usize = 8;

fn install_limits() {
    limits::set_global(Limits {
        handshake_timeout: PAIRING,
        max_pending_dials: MAX_PENDING,
        ..Limits::default()
    });
    assert_eq!(limits::global().handshake_timeout, PAIRING);
}

struct Ctl {
    _tmp: tempfile::TempDir,
    _running: Running,
    store: Store,
    keys: Keys,
    dial: Dial,
    target: Target,
}

#[derive(Clone)]
struct Who {
    token: String,
    kind: &'static str,
    name: String,
}

fn with<T>(who: &Who, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    let md = r.metadata_mut();
    md.insert(
        "authorization",
        format!("Bearer {}", who.token).parse().unwrap(),
    );
    md.insert("jumpstarter-kind", who.kind.parse().unwrap());
    md.insert("jumpstarter-namespace", "default".parse().unwrap());
    md.insert("jumpstarter-name", who.name.parse().unwrap());
    r
}

impl Ctl {
    async fn new() -> Ctl {
        install_limits();
        let tmp = tempfile::tempdir().unwrap();
        let dir: PathBuf = tmp.path().join("data");
        let running = jumpstarter_controller::start(Options {
            data_dir: dir.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: Some("127.0.0.1:0".into()),
            tls_cert: None,
            tls_key: None,
            token_lifetime: Duration::from_secs(3600),
            rotated_token_lifetime: Duration::from_secs(600),
            offline_after: Duration::from_secs(60),
        })
        .await
        .unwrap();
        let (store, keys) = open_store(&dir).await.unwrap();
        let roots = jumpstarter_core::tls::roots_from_pem_file(&dir.join("tls/cert.pem")).unwrap();
        let tls = jumpstarter_core::tls::client_config(&jumpstarter_core::tls::ServerTrust::Roots(
            Arc::new(roots),
        ))
        .unwrap();
        let target = Target::parse(&running.endpoint);
        Ctl {
            _tmp: tmp,
            _running: running,
            store,
            keys,
            dial: Dial {
                tls: Some(tls),
                passphrase: None,
            },
            target,
        }
    }

    async fn channel(&self) -> H2Channel {
        H2Channel::dial(&self.target, &self.dial).await.unwrap()
    }

    async fn controller(&self) -> ControllerServiceClient<H2Channel> {
        let ch = self.channel().await;
        let o = ch.origin();
        ControllerServiceClient::with_origin(ch, o)
    }

    async fn clients(&self) -> ClientServiceClient<H2Channel> {
        let ch = self.channel().await;
        let o = ch.origin();
        ClientServiceClient::with_origin(ch, o)
    }

    async fn client(&self, name: &str) -> Who {
        let c = admin::create_client(&self.store, &self.keys, "default", name, Default::default())
            .await
            .unwrap();
        Who {
            token: c.token,
            kind: "Client",
            name: name.into(),
        }
    }

    /// A registered, available exporter labelled board=rpi with its Status stream open.
    async fn exporter(
        &self,
        name: &str,
    ) -> (
        Who,
        tonic::Streaming<jumpstarter_protocol::v1::StatusResponse>,
    ) {
        let labels = [("board".to_string(), "rpi".to_string())].into();
        let e = admin::create_exporter(&self.store, &self.keys, "default", name, labels)
            .await
            .unwrap();
        let who = Who {
            token: e.token,
            kind: "Exporter",
            name: name.into(),
        };
        let mut c = self.controller().await;
        c.register(with(
            &who,
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
        let status = c
            .status(with(&who, StatusRequest {}))
            .await
            .unwrap()
            .into_inner();
        c.report_status(with(
            &who,
            ReportStatusRequest {
                status: ExporterStatus::Available as i32,
                message: None,
                release_lease: None,
            },
        ))
        .await
        .unwrap();
        (who, status)
    }

    /// A ready lease of `client` on the exporter, with the exporter's Listen stream.
    async fn ready_lease(
        &self,
        client: &Who,
        exporter: &Who,
        id: &str,
    ) -> tonic::Streaming<ListenResponse> {
        self.clients()
            .await
            .create_lease(with(
                client,
                CreateLeaseRequest {
                    parent: "namespaces/default".into(),
                    lease_id: id.into(),
                    lease: Some(Lease {
                        selector: "board=rpi".into(),
                        duration: Some(prost_types::Duration {
                            seconds: 3600,
                            nanos: 0,
                        }),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let l = self
                .clients()
                .await
                .get_lease(with(
                    client,
                    GetLeaseRequest {
                        name: format!("namespaces/default/leases/{id}"),
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            if l.exporter.is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "lease {id} never ready: {l:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut c = self.controller().await;
        c.report_status(with(
            exporter,
            ReportStatusRequest {
                status: ExporterStatus::LeaseReady as i32,
                message: None,
                release_lease: None,
            },
        ))
        .await
        .unwrap();
        c.listen(with(
            exporter,
            ListenRequest {
                lease_name: id.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
    }

    async fn dial_lease(&self, client: &Who, id: &str) -> Result<DialResponse, Status> {
        self.controller()
            .await
            .dial(with(
                client,
                DialRequest {
                    lease_name: id.into(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn join(&self, m: &ListenResponse) -> RouterStream {
        router_stream(&m.router_endpoint, &m.router_token, &self.dial)
            .await
            .unwrap()
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

async fn next_listen(s: &mut tonic::Streaming<ListenResponse>) -> ListenResponse {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("no Listen message within 10 s")
        .unwrap()
        .unwrap()
}

/// Dial spam without joining: at most `max_pending_dials` are accepted at once (then
/// RESOURCE_EXHAUSTED naming JMP_MAX_PENDING_DIALS); the router ends every stream nobody
/// joined after the pairing timeout, which frees its connection and its Dial slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_unjoined_dials_are_bounded_and_time_out() {
    let ctl = Ctl::new().await;
    let alice = ctl.client("alice").await;
    let (e1, _status) = ctl.exporter("e1").await;
    let mut listen = ctl.ready_lease(&alice, &e1, "l1").await;
    let baseline = open_fds();

    // The exporter side joins each Dial's stream; the client side never does.
    let mut waiting = Vec::new();
    for _ in 0..MAX_PENDING {
        ctl.dial_lease(&alice, "l1").await.unwrap();
        let m = next_listen(&mut listen).await;
        waiting.push(ctl.join(&m).await);
    }
    let e = ctl.dial_lease(&alice, "l1").await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("JMP_MAX_PENDING_DIALS"), "{e:?}");
    assert!(
        e.message().contains("limit reached: 8 unpaired Dials"),
        "{e:?}"
    );
    assert!(
        open_fds() >= baseline + MAX_PENDING,
        "each waiting stream holds a connection"
    );

    // Every unjoined stream is ended by the router after the pairing timeout (not left
    // waiting for ever), so waiting on it ends without the test's own deadline.
    let started = Instant::now();
    for w in waiting {
        match w.paired(Duration::from_secs(30)).await {
            Err(PairError::Ended) | Err(PairError::Io(_)) => {}
            Err(PairError::Timeout(_)) => panic!("the router kept an unjoined stream open"),
            Ok(_) => panic!("an unjoined stream paired"),
        }
    }
    assert!(
        started.elapsed() < PAIRING + Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Their connections are gone (ours and the controller's ends).
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds() > baseline + 2 {
        assert!(
            Instant::now() < deadline,
            "{} descriptors open, {baseline} before the spam",
            open_fds()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The slots are free again, and a Dial that both sides join still pairs.
    let d = ctl.dial_lease(&alice, "l1").await.unwrap();
    let m = next_listen(&mut listen).await;
    let mut exporter_side = ctl.join(&m).await;
    let mut client_side = router_stream(&d.router_endpoint, &d.router_token, &ctl.dial)
        .await
        .unwrap();
    client_side.write_all(b"hello").await.unwrap();
    client_side.flush().await.unwrap();
    let mut buf = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), exporter_side.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello");
}

/// The end of a lease ends its router streams at once: a paired one (both sides see the
/// stream fail) and one still waiting for its partner; a token minted for the lease is
/// refused by the router afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_lease_end_ends_its_router_streams() {
    let ctl = Ctl::new().await;
    let bob = ctl.client("bob").await;
    let (e2, _status) = ctl.exporter("e2").await;
    let mut listen = ctl.ready_lease(&bob, &e2, "l2").await;

    let d = ctl.dial_lease(&bob, "l2").await.unwrap();
    let m = next_listen(&mut listen).await;
    let mut exporter_side = ctl.join(&m).await;
    let mut client_side = router_stream(&d.router_endpoint, &d.router_token, &ctl.dial)
        .await
        .unwrap();
    client_side.write_all(b"x").await.unwrap();
    client_side.flush().await.unwrap();
    let mut one = [0u8; 1];
    exporter_side.read_exact(&mut one).await.unwrap();

    ctl.dial_lease(&bob, "l2").await.unwrap();
    let m = next_listen(&mut listen).await;
    let unjoined = ctl.join(&m).await;
    let spare = ctl.dial_lease(&bob, "l2").await.unwrap();

    ctl.clients()
        .await
        .delete_lease(with(
            &bob,
            DeleteLeaseRequest {
                name: "namespaces/default/leases/l2".into(),
            },
        ))
        .await
        .unwrap();
    let started = Instant::now();
    // Well before the pairing timeout would have ended the unjoined one.
    let bound = PAIRING / 2;
    let mut rest = Vec::new();
    let n = tokio::time::timeout(bound, exporter_side.read_to_end(&mut rest)).await;
    assert!(
        n.is_ok(),
        "the paired stream outlived its lease by {bound:?}"
    );
    let n = tokio::time::timeout(bound, client_side.read_to_end(&mut rest)).await;
    assert!(n.is_ok(), "the paired stream outlived its lease");
    match unjoined.paired(bound).await {
        Err(PairError::Ended) | Err(PairError::Io(_)) => {}
        Err(PairError::Timeout(_)) => panic!("the waiting stream outlived its lease"),
        Ok(_) => panic!("paired after the lease ended"),
    }
    assert!(started.elapsed() < PAIRING, "{:?}", started.elapsed());
    // A token of the ended lease no longer opens a stream; the lease cannot be dialed.
    let e = match router_stream(&spare.router_endpoint, &spare.router_token, &ctl.dial).await {
        Err(jumpstarter_core::controller::ControllerError::Status(s)) => s,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a stream of an ended lease was accepted"),
    };
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("has ended"), "{e:?}");
    let e = ctl.dial_lease(&bob, "l2").await.unwrap_err();
    assert_eq!(e.message(), "lease not active");
}

async fn list_leases(ctl: &Ctl, who: &Who) -> Result<(), Status> {
    ctl.clients()
        .await
        .list_leases(with(
            who,
            ListLeasesRequest {
                parent: "namespaces/default".into(),
                ..Default::default()
            },
        ))
        .await
        .map(|_| ())
}

async fn rotate(ctl: &Ctl, who: &Who) -> Result<(String, i64), Status> {
    ctl.clients()
        .await
        .rotate_token(with(
            who,
            RotateTokenRequest {
                parent: "namespaces/default".into(),
            },
        ))
        .await
        .map(|r| {
            let r = r.into_inner();
            (r.token, r.expiry.map_or(0, |t| t.seconds))
        })
}

/// RotateToken revokes the token it replaces: the old one is UNAUTHENTICATED from then on
/// (it can no longer call anything, nor mint further tokens), the new one works and lives
/// the rotation lifetime; tokens of other records (admin-made configs) are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rotated_tokens_are_revoked() {
    let ctl = Ctl::new().await;
    let carol = ctl.client("carol").await;
    let dave = ctl.client("dave").await;
    let (e3, _status) = ctl.exporter("e3").await;
    list_leases(&ctl, &carol).await.unwrap();

    let now = jumpstarter_controller::model::now_secs();
    let (t1, expiry) = rotate(&ctl, &carol).await.unwrap();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "expiry {expiry}, now {now}: the rotation lifetime is 600 s here"
    );
    let new = Who {
        token: t1,
        ..carol.clone()
    };
    list_leases(&ctl, &new).await.unwrap();
    for _ in 0..2 {
        let e = list_leases(&ctl, &carol).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        assert!(e.message().contains("revoked"), "{e:?}");
    }
    // The stolen old token cannot mint a fresh one.
    let e = rotate(&ctl, &carol).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // Rotating again revokes the second token too.
    let (t2, _) = rotate(&ctl, &new).await.unwrap();
    assert_eq!(
        list_leases(&ctl, &new).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let newer = Who { token: t2, ..carol };
    list_leases(&ctl, &newer).await.unwrap();
    // The stored record holds the newest token (what `admin config` prints).
    let rec = ctl.store.client("default", "carol").await.unwrap().unwrap();
    assert_eq!(rec.token, newer.token);
    assert_eq!(rec.token_generation, 2);
    // Other credentials, made by the admin before any rotation, keep working.
    list_leases(&ctl, &dave).await.unwrap();
    ctl.controller()
        .await
        .report_status(with(
            &e3,
            ReportStatusRequest {
                status: ExporterStatus::Available as i32,
                message: None,
                release_lease: None,
            },
        ))
        .await
        .unwrap();
}

/// Megabyte strings from a client come back clipped in errors (200 characters, an ellipsis
/// and the original length), and a request over the controller's message limit is refused
/// before it is decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_long_strings_are_clipped_in_errors() {
    let ctl = Ctl::new().await;
    let erin = ctl.client("erin").await;
    let huge = "a".repeat(3 << 20);
    let clipped = |e: &Status| {
        assert!(e.message().len() < 1000, "{} bytes", e.message().len());
        assert!(
            e.message().contains(&format!("… ({} bytes)", 3 << 20)),
            "{}",
            e.message()
        );
    };
    let e = ctl
        .clients()
        .await
        .list_exporters(with(
            &erin,
            ListExportersRequest {
                parent: "namespaces/default".into(),
                filter: huge.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    clipped(&e);
    let e = ctl
        .clients()
        .await
        .create_lease(with(
            &erin,
            CreateLeaseRequest {
                parent: "namespaces/default".into(),
                lease_id: String::new(),
                lease: Some(Lease {
                    selector: format!("board in (x, {huge})"),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap_err();
    clipped(&e);
    let e = ctl
        .clients()
        .await
        .get_lease(with(
            &erin,
            GetLeaseRequest {
                name: format!("namespaces/default/leases/{huge}"),
            },
        ))
        .await
        .unwrap_err();
    clipped(&e);
    let e = ctl
        .clients()
        .await
        .list_leases(with(
            &erin,
            ListLeasesRequest {
                parent: huge.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    clipped(&e);
    let e = ctl.dial_lease(&erin, &huge).await.unwrap_err();
    clipped(&e);

    // Over the 4 MiB message limit: refused, and the message does not echo the request.
    let e = ctl
        .clients()
        .await
        .list_exporters(with(
            &erin,
            ListExportersRequest {
                parent: "namespaces/default".into(),
                filter: "b".repeat(5 << 20),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    assert!(e.message().len() < 1000);
    // The controller still answers.
    list_leases(&ctl, &erin).await.unwrap();
}

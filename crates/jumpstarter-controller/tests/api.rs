//! The controller's gRPC API against real TLS, SQLite and router streams, with a scripted
//! exporter speaking the wire protocol: scheduling (FIFO, no double lease, expiry), Listen/
//! Dial/router pairing, and every kind of bad input with upstream's codes and texts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jumpstarter_controller::auth::Keys;
use jumpstarter_controller::store::Store;
use jumpstarter_controller::{Options, Running, admin, open_store};
use jumpstarter_core::transport::{Dial, H2Channel, Target};
use jumpstarter_protocol::client_v1::client_service_client::ClientServiceClient;
use jumpstarter_protocol::client_v1::{
    CreateLeaseRequest, DeleteLeaseRequest, GetLeaseRequest, Lease, ListExportersRequest,
    ListLeasesRequest,
};
use jumpstarter_protocol::v1::controller_service_client::ControllerServiceClient;
use jumpstarter_protocol::v1::router_service_client::RouterServiceClient;
use jumpstarter_protocol::v1::{
    DialRequest, DriverInstanceReport, ExporterStatus, FrameType, ListenRequest, RegisterRequest,
    ReportStatusRequest, StatusRequest, StatusResponse, StreamRequest,
};
use tonic::{Code, Request, Status};

struct Ctl {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    running: Option<Running>,
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

async fn start(dir: &Path) -> Running {
    jumpstarter_controller::start(Options {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: Some("127.0.0.1:0".into()),
        tls_cert: None,
        tls_key: None,
        token_lifetime: Duration::from_secs(3600),
        rotated_token_lifetime: Duration::from_secs(600),
        offline_after: Duration::from_secs(60),
    })
    .await
    .unwrap()
}

impl Ctl {
    async fn new() -> Ctl {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let running = start(&dir).await;
        let (store, keys) = open_store(&dir).await.unwrap();
        let roots = jumpstarter_core::tls::roots_from_pem_file(&dir.join("tls/cert.pem")).unwrap();
        let tls = jumpstarter_core::tls::client_config(&jumpstarter_core::tls::ServerTrust::Roots(
            Arc::new(roots),
        ))
        .unwrap();
        let target = Target::parse(&running.endpoint);
        Ctl {
            _tmp: tmp,
            dir,
            running: Some(running),
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
        {
            let ch = self.channel().await;
            let o = ch.origin();
            ControllerServiceClient::with_origin(ch, o)
        }
    }

    async fn clients(&self) -> ClientServiceClient<H2Channel> {
        {
            let ch = self.channel().await;
            let o = ch.origin();
            ClientServiceClient::with_origin(ch, o)
        }
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

    async fn exporter_identity(&self, name: &str, labels: &[(&str, &str)]) -> Who {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let e = admin::create_exporter(&self.store, &self.keys, "default", name, labels)
            .await
            .unwrap();
        Who {
            token: e.token,
            kind: "Exporter",
            name: name.into(),
        }
    }

    /// Registers an exporter, reports it Available and opens its Status stream.
    async fn exporter(&self, name: &str, labels: &[(&str, &str)]) -> FakeExporter {
        let who = self.exporter_identity(name, labels).await;
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
        let fake = FakeExporter {
            who,
            c,
            status: Box::pin(status),
        };
        fake.report(ExporterStatus::Available).await;
        fake
    }

    async fn create(&self, who: &Who, lease: Lease, id: &str) -> Result<Lease, Status> {
        self.clients()
            .await
            .create_lease(with(
                who,
                CreateLeaseRequest {
                    parent: "namespaces/default".into(),
                    lease_id: id.into(),
                    lease: Some(lease),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn get(&self, who: &Who, name: &str) -> Lease {
        self.clients()
            .await
            .get_lease(with(
                who,
                GetLeaseRequest {
                    name: format!("namespaces/default/leases/{name}"),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits until `pred` holds for the lease (event-driven server; bounded for safety).
    async fn wait_lease(&self, who: &Who, name: &str, pred: impl Fn(&Lease) -> bool) -> Lease {
        for _ in 0..600 {
            let l = self.get(who, name).await;
            if pred(&l) {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "lease {name} never reached the state: {:?}",
            self.get(who, name).await
        );
    }
}

struct FakeExporter {
    who: Who,
    c: ControllerServiceClient<H2Channel>,
    status: std::pin::Pin<Box<tonic::Streaming<StatusResponse>>>,
}

impl FakeExporter {
    async fn report(&self, s: ExporterStatus) {
        self.c
            .clone()
            .report_status(with(
                &self.who,
                ReportStatusRequest {
                    status: s as i32,
                    message: Some(format!("{s:?}")),
                    release_lease: None,
                },
            ))
            .await
            .unwrap();
    }

    async fn next_status(&mut self) -> StatusResponse {
        tokio::time::timeout(Duration::from_secs(30), self.status.next())
            .await
            .expect("no Status message within 30 s")
            .unwrap()
            .unwrap()
    }
}

fn conds(l: &Lease) -> Vec<String> {
    l.conditions
        .iter()
        .map(|c| {
            format!(
                "{}={}:{}",
                c.r#type.clone().unwrap_or_default(),
                c.status.clone().unwrap_or_default(),
                c.reason.clone().unwrap_or_default()
            )
        })
        .collect()
}

fn lease(selector: &str, secs: i64) -> Lease {
    Lease {
        selector: selector.into(),
        duration: Some(prost_types::Duration {
            seconds: secs,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn ready(l: &Lease) -> bool {
    conds(l).iter().any(|c| c == "Ready=True:Ready")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_leases_are_served_first_come_first_served_and_never_twice() {
    let ctl = Ctl::new().await;
    let (alice, bob, carol) = (
        ctl.client("alice").await,
        ctl.client("bob").await,
        ctl.client("carol").await,
    );
    let mut e1 = ctl.exporter("e1", &[("board", "rpi")]).await;
    assert!(!e1.next_status().await.leased);

    ctl.create(&alice, lease("board=rpi", 3600), "l1")
        .await
        .unwrap();
    let l1 = ctl.wait_lease(&alice, "l1", ready).await;
    assert_eq!(
        l1.exporter.as_deref(),
        Some("namespaces/default/exporters/e1")
    );
    assert_eq!(conds(&l1), ["Ready=True:Ready"]);
    let s = e1.next_status().await;
    assert!(s.leased);
    assert_eq!(s.lease_name.as_deref(), Some("l1"));
    assert_eq!(s.client_name.as_deref(), Some("alice"));

    // bob first, then carol: both wait.
    ctl.create(&bob, lease("board=rpi", 1), "l2").await.unwrap();
    ctl.create(&carol, lease("board=rpi", 3600), "l3")
        .await
        .unwrap();
    for (who, name) in [(&bob, "l2"), (&carol, "l3")] {
        let l = ctl
            .wait_lease(who, name, |l| !l.conditions.is_empty())
            .await;
        assert_eq!(conds(&l), ["Pending=True:NotAvailable"], "{name}");
        assert_eq!(
            l.conditions[0].message.as_deref(),
            Some("There are 1 approved exporters, (i.e. ) but all of them are already leased")
        );
    }

    // alice releases: bob (first in line) gets it, carol keeps waiting.
    ctl.clients()
        .await
        .delete_lease(with(
            &alice,
            DeleteLeaseRequest {
                name: "namespaces/default/leases/l1".into(),
            },
        ))
        .await
        .unwrap();
    let l1 = ctl
        .wait_lease(&alice, "l1", |l| l.effective_end_time.is_some())
        .await;
    assert_eq!(conds(&l1), ["Ready=False:Released"]);
    // Deleting twice is FAILED_PRECONDITION, like upstream.
    let e = ctl
        .clients()
        .await
        .delete_lease(with(
            &alice,
            DeleteLeaseRequest {
                name: "namespaces/default/leases/l1".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.message(),
        "lease \"namespaces/default/leases/l1\" has already been released"
    );

    let l2 = ctl.wait_lease(&bob, "l2", |l| l.exporter.is_some()).await;
    assert_eq!(
        l2.exporter.as_deref(),
        Some("namespaces/default/exporters/e1")
    );
    // The exporter hears "not leased" before the next lease.
    let s = e1.next_status().await;
    assert!(!s.leased, "{s:?}");
    let s = e1.next_status().await;
    assert_eq!(s.lease_name.as_deref(), Some("l2"));

    // bob's lease lasts one second, then carol's turn.
    let l2 = ctl
        .wait_lease(&bob, "l2", |l| l.effective_end_time.is_some())
        .await;
    assert_eq!(
        conds(&l2),
        ["Pending=True:NotAvailable", "Ready=False:Expired"]
    );
    let l3 = ctl.wait_lease(&carol, "l3", |l| l.exporter.is_some()).await;
    assert_eq!(
        conds(&l3),
        ["Pending=True:NotAvailable", "Ready=True:Ready"]
    );

    // Never two active leases on one exporter: the store refuses it outright.
    let active = ctl
        .store
        .leases(Some("default"))
        .await
        .unwrap()
        .into_iter()
        .filter(|l| !l.ended && l.st_exporter.is_some())
        .count();
    assert_eq!(active, 1);

    // Listing: filter by the lease's labels, only active by default, pagination.
    let list = ctl
        .clients()
        .await
        .list_leases(with(
            &carol,
            ListLeasesRequest {
                parent: "namespaces/default".into(),
                page_size: 2,
                only_active: Some(false),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.leases.len(), 2);
    assert!(!list.next_page_token.is_empty());
    let rest = ctl
        .clients()
        .await
        .list_leases(with(
            &carol,
            ListLeasesRequest {
                parent: "namespaces/default".into(),
                page_size: 2,
                page_token: list.next_page_token,
                only_active: Some(false),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.leases.len(), 1);
    assert!(rest.next_page_token.is_empty());
    let active = ctl
        .clients()
        .await
        .list_leases(with(
            &carol,
            ListLeasesRequest {
                parent: "namespaces/default".into(),
                filter: "board=rpi".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        active
            .leases
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["namespaces/default/leases/l3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_pairs_client_and_exporter_through_the_router_once() {
    let ctl = Ctl::new().await;
    let alice = ctl.client("alice").await;
    let bob = ctl.client("bob").await;
    let mut e1 = ctl.exporter("e1", &[("board", "rpi")]).await;
    e1.next_status().await;
    ctl.create(&alice, lease("board=rpi", 3600), "l1")
        .await
        .unwrap();
    assert!(e1.next_status().await.leased);

    let mut controller = ctl.controller().await;
    // Not listening yet: UNAVAILABLE, which clients retry.
    e1.report(ExporterStatus::LeaseReady).await;
    let e = controller
        .dial(with(
            &alice,
            DialRequest {
                lease_name: "l1".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(e.message(), "exporter is not listening on lease l1");

    let mut listen =
        e1.c.clone()
            .listen(with(
                &e1.who,
                ListenRequest {
                    lease_name: "l1".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
    // Someone else's lease.
    let e = controller
        .dial(with(
            &bob,
            DialRequest {
                lease_name: "l1".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unknown, "permission denied")
    );

    let dial = controller
        .dial(with(
            &alice,
            DialRequest {
                lease_name: "l1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let pushed = listen.next().await.unwrap().unwrap();
    assert_eq!(pushed.router_token, dial.router_token);
    assert_eq!(pushed.router_endpoint, dial.router_endpoint);

    let router_stream = |token: String, frames: Vec<StreamRequest>| {
        let ch = ctl.channel();
        async move {
            let ch = ch.await;
            let o = ch.origin();
            let mut r = RouterServiceClient::with_origin(ch, o);
            let mut req =
                Request::new(futures::stream::iter(frames).chain(futures::stream::pending()));
            req.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            r.stream(req).await
        }
    };
    let data = |b: &'static [u8]| StreamRequest {
        payload: bytes::Bytes::from_static(b),
        frame_type: FrameType::Data as i32,
    };
    let mut a = router_stream(dial.router_token.clone(), vec![data(b"from client")])
        .await
        .unwrap()
        .into_inner();
    let mut b = router_stream(
        pushed.router_token.clone(),
        vec![
            data(b"from exporter"),
            StreamRequest {
                payload: Default::default(),
                frame_type: FrameType::Goaway as i32,
            },
        ],
    )
    .await
    .unwrap()
    .into_inner();
    let got = b.next().await.unwrap().unwrap();
    assert_eq!(&got.payload[..], b"from client");
    let got = a.next().await.unwrap().unwrap();
    assert_eq!(&got.payload[..], b"from exporter");
    let got = a.next().await.unwrap().unwrap();
    assert_eq!(got.frame_type, FrameType::Goaway as i32);

    // A spent token, a forged one and none at all.
    let e = router_stream(dial.router_token.clone(), vec![])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let other = Ctl::new().await;
    let (forged, _) = other.keys.mint_router().unwrap();
    let e = router_stream(forged, vec![]).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unauthenticated, "invalid jwt token")
    );
    let ch = ctl.channel().await;
    let o = ch.origin();
    let mut r = RouterServiceClient::with_origin(ch, o);
    let e = r
        .stream(Request::new(futures::stream::empty()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(
        e.message().starts_with("missing or invalid authorization"),
        "{e:?}"
    );
}

/// The router relays bytes, not decoded messages: a large payload that spans many HTTP/2
/// frames arrives whole and in order, frame types pass through, both sides see a clean end
/// (grpc-status OK) after the other's last frame, and compressed streams are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_relays_frames_unchanged_to_a_clean_end() {
    let ctl = Ctl::new().await;
    let (token, _) = ctl.keys.mint_router().unwrap();
    let open = |frames: Vec<StreamRequest>, encoding: Option<&'static str>| {
        let ch = ctl.channel();
        let token = token.clone();
        async move {
            let ch = ch.await;
            let o = ch.origin();
            let mut r = RouterServiceClient::with_origin(ch, o);
            let mut req = Request::new(futures::stream::iter(frames));
            req.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            if let Some(e) = encoding {
                req.metadata_mut()
                    .insert("grpc-encoding", e.parse().unwrap());
            }
            r.stream(req).await
        }
    };
    let e = open(vec![], Some("gzip")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    assert!(e.message().contains("uncompressed"), "{e:?}");

    let big: bytes::Bytes = (0..3 * 1024 * 1024 + 17)
        .map(|i: u32| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let frame = |payload: bytes::Bytes, t: FrameType| StreamRequest {
        payload,
        frame_type: t as i32,
    };
    let from_a = vec![
        frame(bytes::Bytes::from_static(b"one"), FrameType::Data),
        frame(big.clone(), FrameType::Data),
        frame(bytes::Bytes::new(), FrameType::Goaway),
    ];
    let from_b = vec![
        frame(bytes::Bytes::from_static(b"two"), FrameType::Data),
        frame(bytes::Bytes::new(), FrameType::Ping),
    ];
    // The first side's request ends before its partner arrives; nothing is lost.
    let a = open(from_a.clone(), None).await.unwrap().into_inner();
    let b = open(from_b.clone(), None).await.unwrap().into_inner();
    let collect = |s: tonic::Streaming<jumpstarter_protocol::v1::StreamResponse>| async move {
        tokio::time::timeout(Duration::from_secs(30), s.collect::<Vec<_>>())
            .await
            .expect("the router did not end the stream")
            .into_iter()
            .map(|r| r.map(|f| (f.payload, f.frame_type)))
            .collect::<Result<Vec<_>, Status>>()
    };
    let (got_a, got_b) = tokio::join!(collect(a), collect(b));
    let sent = |v: Vec<StreamRequest>| {
        v.into_iter()
            .map(|f| (f.payload, f.frame_type))
            .collect::<Vec<_>>()
    };
    assert_eq!(got_a.unwrap(), sent(from_b));
    assert_eq!(got_b.unwrap(), sent(from_a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_identities_get_upstreams_codes() {
    let ctl = Ctl::new().await;
    let alice = ctl.client("alice").await;
    let e1 = ctl.exporter_identity("e1", &[]).await;
    let list = |who: Option<Who>| {
        let c = ctl.clients();
        async move {
            let req = ListExportersRequest {
                parent: "namespaces/default".into(),
                ..Default::default()
            };
            let req = match &who {
                Some(w) => with(w, req),
                None => {
                    let mut r = Request::new(req);
                    r.metadata_mut()
                        .insert("jumpstarter-kind", "Client".parse().unwrap());
                    r
                }
            };
            c.await.list_exporters(req).await
        }
    };
    assert!(list(Some(alice.clone())).await.is_ok());

    let e = list(None).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unauthenticated, "missing authorization header")
    );

    // Expired.
    let c = ctl.store.client("default", "alice").await.unwrap().unwrap();
    let (expired, _) = ctl
        .keys
        .mint_internal("client", "default", "alice", &c.uid, Duration::ZERO)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = list(Some(Who {
        token: expired,
        ..alice.clone()
    }))
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unknown);
    assert!(e.message().contains("token is expired"), "{e:?}");

    // Signed by another controller.
    let other = Ctl::new().await;
    let (forged, _) = other
        .keys
        .mint_internal(
            "client",
            "default",
            "alice",
            &c.uid,
            Duration::from_secs(60),
        )
        .unwrap();
    let e = list(Some(Who {
        token: forged,
        ..alice.clone()
    }))
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unknown);
    assert!(e.message().contains("failed to verify signature"), "{e:?}");

    // An exporter's token presented as a client, and an exporter calling client RPCs.
    let e = list(Some(Who {
        token: e1.token.clone(),
        ..alice.clone()
    }))
    .await
    .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::PermissionDenied,
            "permission denied for client default/alice"
        )
    );
    let e = list(Some(e1.clone())).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "object kind mismatch")
    );
    let e = list(Some(Who {
        name: "nobody".into(),
        ..alice.clone()
    }))
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unknown);
    assert_eq!(
        e.message(),
        "client default/nobody: clients.jumpstarter.dev \"nobody\" not found"
    );

    // A deleted and re-created client has a new uid: the old token is worthless.
    ctl.store.delete_client("default", "alice").await.unwrap();
    ctl.client("alice").await;
    let e = list(Some(alice.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lease_requests_fail_like_upstream() {
    let ctl = Ctl::new().await;
    let alice = ctl.client("alice").await;
    let e = ctl
        .create(&alice, lease("a in (", 60), "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown);
    assert!(
        e.message().starts_with("failed to parse label selector"),
        "{e:?}"
    );
    let e = ctl.create(&alice, lease("a>1", 60), "").await.unwrap_err();
    assert!(
        e.message()
            .starts_with("unsupported label selector operator"),
        "{e:?}"
    );
    let e = ctl
        .create(&alice, lease("a=1,a=2", 60), "")
        .await
        .unwrap_err();
    assert!(
        e.message().contains("multiple equality requirements"),
        "{e:?}"
    );
    let e = ctl.create(&alice, lease("", 60), "").await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::InvalidArgument,
            "one of selector or exporter_name is required"
        )
    );
    let e = ctl
        .create(
            &alice,
            Lease {
                selector: "a=1".into(),
                ..Default::default()
            },
            "",
        )
        .await
        .unwrap_err();
    assert!(e.message().starts_with("duration is required"), "{e:?}");

    ctl.create(&alice, lease("a=1", 60), "mine").await.unwrap();
    let e = ctl
        .create(&alice, lease("a=1", 60), "mine")
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::Unknown,
            "leases.jumpstarter.dev \"mine\" already exists"
        )
    );

    // A lease that can never be satisfied ends at once.
    let by_name = Lease {
        exporter_name: Some("ghost".into()),
        ..lease("", 60)
    };
    let l = ctl.create(&alice, by_name, "ghost-lease").await.unwrap();
    assert_eq!(l.selector, "<none>");
    let l = ctl
        .wait_lease(&alice, "ghost-lease", |l| l.effective_end_time.is_some())
        .await;
    assert_eq!(conds(&l), ["Unsatisfiable=True:ExporterNotFound"]);
    assert_eq!(
        l.conditions[0].message.as_deref(),
        Some("Requested exporter ghost was not found")
    );
    let l = ctl
        .wait_lease(&alice, "mine", |l| l.effective_end_time.is_some())
        .await;
    assert_eq!(conds(&l), ["Unsatisfiable=True:NoAccess"]);
    let message = l.conditions[0].message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with("No exporter in namespace default matches the selector "),
        "{message}"
    );
    assert!(!message.contains("policy"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_locked_databases_are_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let running = start(&dir).await;
    // A second controller on the same data directory.
    let e = jumpstarter_controller::start(Options {
        data_dir: dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        tls_cert: None,
        tls_key: None,
        token_lifetime: Duration::from_secs(60),
        rotated_token_lifetime: Duration::from_secs(600),
        offline_after: Duration::from_secs(60),
    })
    .await
    .err()
    .unwrap();
    assert!(e.to_string().contains("already running"), "{e}");
    running.shutdown(Duration::from_secs(1)).await;

    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("controller.db"),
        b"this is not a database, just text",
    )
    .unwrap();
    let e = open_store(&bad).await.err().unwrap().to_string();
    assert!(e.contains("controller.db"), "{e}");
    assert!(e.contains("move it away"), "{e}");
    // Nothing was overwritten.
    assert_eq!(
        std::fs::read(bad.join("controller.db")).unwrap(),
        b"this is not a database, just text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_a_controller_restart() {
    let mut ctl = Ctl::new().await;
    let alice = ctl.client("alice").await;
    let mut e1 = ctl.exporter("e1", &[("board", "rpi")]).await;
    e1.next_status().await;
    ctl.create(&alice, lease("board=rpi", 3600), "l1")
        .await
        .unwrap();
    ctl.wait_lease(&alice, "l1", ready).await;
    let addr = ctl.running.as_ref().unwrap().local_addr;
    ctl.running
        .take()
        .unwrap()
        .shutdown(Duration::from_secs(1))
        .await;
    let running = jumpstarter_controller::start(Options {
        data_dir: ctl.dir.clone(),
        listen: addr,
        advertise: Some(addr.to_string()),
        tls_cert: None,
        tls_key: None,
        token_lifetime: Duration::from_secs(3600),
        rotated_token_lifetime: Duration::from_secs(600),
        offline_after: Duration::from_secs(60),
    })
    .await
    .unwrap();
    ctl.running = Some(running);
    let l = ctl.get(&alice, "l1").await;
    assert_eq!(conds(&l), ["Ready=True:Ready"]);
    // The exporter reconnects and is told about its lease first thing.
    let mut c = ctl.controller().await;
    let mut status = c
        .status(with(&e1.who, StatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    let s = status.next().await.unwrap().unwrap();
    assert_eq!(s.lease_name.as_deref(), Some("l1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanishing_peers_re_registration_and_lease_updates() {
    let ctl = Ctl::new().await;
    let alice = ctl.client("alice").await;
    let bob = ctl.client("bob").await;
    let mut e1 = ctl.exporter("e1", &[("board", "rpi")]).await;
    e1.next_status().await;
    // Registering again (a restarted exporter) replaces the devices; nothing else changes.
    let mut c = ctl.controller().await;
    c.register(with(
        &e1.who,
        RegisterRequest {
            labels: [("jumpstarter.dev/extra".to_string(), "x".to_string())].into(),
            reports: vec![DriverInstanceReport {
                uuid: "second".into(),
                ..Default::default()
            }],
        },
    ))
    .await
    .unwrap();
    let stored = ctl.store.exporter("default", "e1").await.unwrap().unwrap();
    assert_eq!(stored.devices.unwrap()[0].uuid, "second");
    assert_eq!(
        stored
            .labels
            .get("jumpstarter.dev/extra")
            .map(String::as_str),
        Some("x")
    );
    assert_eq!(stored.labels.get("board").map(String::as_str), Some("rpi"));

    ctl.create(&alice, lease("board=rpi", 3600), "l1")
        .await
        .unwrap();
    assert!(e1.next_status().await.leased);
    e1.report(ExporterStatus::LeaseReady).await;

    // UpdateLease: a new duration moves the end; transfer to bob; the old owner loses Dial.
    let mut update = ctl.get(&alice, "l1").await;
    update.duration = Some(prost_types::Duration {
        seconds: 7200,
        nanos: 0,
    });
    let updated = ctl
        .clients()
        .await
        .update_lease(with(
            &alice,
            jumpstarter_protocol::client_v1::UpdateLeaseRequest {
                lease: Some(Lease {
                    name: update.name.clone(),
                    duration: update.duration,
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.duration.unwrap().seconds, 7200);
    let e = ctl
        .clients()
        .await
        .update_lease(with(
            &alice,
            jumpstarter_protocol::client_v1::UpdateLeaseRequest {
                lease: Some(Lease {
                    name: update.name.clone(),
                    begin_time: Some(prost_types::Timestamp {
                        seconds: 1,
                        nanos: 0,
                    }),
                    duration: update.duration,
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "cannot update BeginTime: lease has already started"
    );
    ctl.clients()
        .await
        .update_lease(with(
            &alice,
            jumpstarter_protocol::client_v1::UpdateLeaseRequest {
                lease: Some(Lease {
                    name: update.name.clone(),
                    client: Some("namespaces/default/clients/bob".into()),
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await
        .unwrap();
    let s = e1.next_status().await;
    assert_eq!(s.client_name.as_deref(), Some("bob"), "{s:?}");

    let mut listen =
        e1.c.clone()
            .listen(with(
                &e1.who,
                ListenRequest {
                    lease_name: "l1".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
    let mut controller = ctl.controller().await;
    let e = controller
        .dial(with(
            &alice,
            DialRequest {
                lease_name: "l1".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.message(), "permission denied");
    let dial = controller
        .dial(with(
            &bob,
            DialRequest {
                lease_name: "l1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let pushed = listen.next().await.unwrap().unwrap();

    // The client half vanishes mid-stream: the exporter half ends too.
    let open = |token: String| {
        let ch = ctl.channel();
        async move {
            let ch = ch.await;
            let o = ch.origin();
            let mut r = RouterServiceClient::with_origin(ch, o);
            let (tx, rx) = tokio::sync::mpsc::channel::<StreamRequest>(4);
            let mut req = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            req.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            (tx, r.stream(req).await.unwrap().into_inner())
        }
    };
    let (client_tx, client_rx) = open(dial.router_token).await;
    let (_exporter_tx, mut exporter_rx) = open(pushed.router_token).await;
    client_tx
        .send(StreamRequest {
            payload: bytes::Bytes::from_static(b"hello"),
            frame_type: FrameType::Data as i32,
        })
        .await
        .unwrap();
    let got = exporter_rx.next().await.unwrap().unwrap();
    assert_eq!(&got.payload[..], b"hello");
    drop(client_tx);
    drop(client_rx);
    let end = tokio::time::timeout(Duration::from_secs(30), exporter_rx.next())
        .await
        .expect("the exporter half did not end");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_served_without_credentials() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let ctl = Ctl::new().await;
    let ch = ctl.channel().await;
    let origin = ch.origin();
    let mut health = HealthClient::with_origin(ch, origin);
    let r = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

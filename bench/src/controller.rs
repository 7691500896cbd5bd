//! Distributed mode: our controller (release build of `jmp-controller`, its own process) with
//! simulated exporters and clients speaking the real wire protocol over TLS. Upstream's
//! controller needs Kubernetes, so there is no upstream column for these rows.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jumpstarter_core::controller::{Identity, LeaseClient, router_stream};
use jumpstarter_core::transport::{Dial, H2Channel, Target};
use jumpstarter_protocol::client_v1::Lease;
use jumpstarter_protocol::v1::controller_service_client::ControllerServiceClient;
use jumpstarter_protocol::v1::{
    DriverInstanceReport, ExporterStatus, ListenRequest, RegisterRequest, ReportStatusRequest,
    StatusRequest, StatusResponse,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::measure::{Row, free_port, median, path_with, release_bin, time_runs};
use crate::{Env, Target as Goal, target};

struct Daemon {
    child: Child,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let endpoint = format!("127.0.0.1:{port}");
        let child = Command::new(release_bin("jmp-controller"))
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", &endpoint, "--advertise", &endpoint])
            .env("JMP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start jmp-controller (cargo build --release -p jumpstarter-controller)");
        let d = Daemon {
            child,
            endpoint,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.dir.path().join("tls/cert.pem").exists()
            || std::net::TcpStream::connect(&d.endpoint).is_err()
        {
            assert!(Instant::now() < deadline, "jmp-controller did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn dial(&self) -> Dial {
        let roots =
            jumpstarter_core::tls::roots_from_pem_file(&self.dir.path().join("tls/cert.pem"))
                .unwrap();
        let tls = jumpstarter_core::tls::client_config(&jumpstarter_core::tls::ServerTrust::Roots(
            Arc::new(roots),
        ))
        .unwrap();
        Dial {
            tls: Some(tls),
            passphrase: None,
        }
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

async fn identities(dir: &Path, clients: &[String], exporters: &[String]) -> Vec<Identity> {
    let (store, keys) = jumpstarter_controller::open_store(dir).await.unwrap();
    let mut out = Vec::new();
    for c in clients {
        let r = jumpstarter_controller::admin::create_client(
            &store,
            &keys,
            "default",
            c,
            Default::default(),
        )
        .await
        .unwrap();
        out.push(Identity {
            token: r.token,
            kind: "Client",
            namespace: "default".into(),
            name: c.clone(),
        });
    }
    for e in exporters {
        let labels = [("bench".to_string(), "yes".to_string())].into();
        let r = jumpstarter_controller::admin::create_exporter(&store, &keys, "default", e, labels)
            .await
            .unwrap();
        out.push(Identity {
            token: r.token,
            kind: "Exporter",
            namespace: "default".into(),
            name: e.clone(),
        });
    }
    store.close().await;
    out
}

/// An exporter speaking the wire protocol: registered, AVAILABLE, Status stream open.
struct Sim {
    who: Identity,
    c: ControllerServiceClient<H2Channel>,
    status: tonic::Streaming<StatusResponse>,
}

impl Sim {
    async fn start(endpoint: &str, dial: &Dial, who: Identity) -> Sim {
        let ch = H2Channel::dial(&Target::parse(endpoint), dial)
            .await
            .unwrap();
        let origin = ch.origin();
        let mut c = ControllerServiceClient::with_origin(ch, origin);
        c.register(who.request(RegisterRequest {
            labels: Default::default(),
            reports: vec![DriverInstanceReport {
                uuid: "00000000-0000-0000-0000-000000000001".into(),
                ..Default::default()
            }],
        }))
        .await
        .unwrap();
        let status = c
            .status(who.request(StatusRequest {}))
            .await
            .unwrap()
            .into_inner();
        let s = Sim { who, c, status };
        s.report(ExporterStatus::Available).await;
        s
    }

    async fn report(&self, status: ExporterStatus) {
        self.c
            .clone()
            .report_status(self.who.request(ReportStatusRequest {
                status: status as i32,
                message: None,
                release_lease: None,
            }))
            .await
            .unwrap();
    }

    async fn next(&mut self) -> StatusResponse {
        self.status.next().await.unwrap().unwrap()
    }
}

fn lease(selector: &str) -> Lease {
    Lease {
        selector: selector.into(),
        duration: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// A 2-thread runtime, a fresh controller, and the identities of client `alice` and exporter
/// `e1` (label bench=yes).
fn one_client_one_exporter() -> (tokio::runtime::Runtime, Daemon, Dial, Vec<Identity>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let daemon = Daemon::start();
    let dial = daemon.dial();
    let ids = rt.block_on(identities(
        daemon.dir.path(),
        &["alice".into()],
        &["e1".into()],
    ));
    (rt, daemon, dial, ids)
}

/// `e1` registered and Available (its first status seen), and `alice`'s lease client.
async fn sim_and_client(daemon: &Daemon, dial: &Dial, ids: &[Identity]) -> (Sim, LeaseClient) {
    let mut sim = Sim::start(&daemon.endpoint, dial, ids[1].clone()).await;
    sim.next().await;
    let client = LeaseClient::connect(&daemon.endpoint, dial.clone(), ids[0].clone())
        .await
        .unwrap();
    (sim, client)
}

pub fn controller(env: &Env, rows: &mut Vec<Row>, targets: &mut Vec<Goal>) {
    eprintln!("controller: leases, 1000 exporters...");
    let (rt, daemon, dial, ids) = one_client_one_exporter();
    let n = env.n(10, 50);

    let (assigned, ready, rate) = rt.block_on(async {
        let (mut sim, client) = sim_and_client(&daemon, &dial, &ids).await;
        // Lease -> exporter told (Status stream) and -> client sees Ready (tight polling).
        let mut assigned = Vec::new();
        let mut ready = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let l = client.create_lease(lease("bench=yes"), "").await.unwrap();
            let s = sim.next().await;
            assert!(s.leased);
            assigned.push(t.elapsed().as_secs_f64() * 1000.0);
            client
                .wait_ready(&l.name, Duration::from_micros(200))
                .await
                .unwrap();
            ready.push(t.elapsed().as_secs_f64() * 1000.0);
            client.delete_lease(&l.name).await.unwrap();
            assert!(!sim.next().await.leased);
        }
        // Leases created and released per second (one client, sequential round trips).
        let k = n * 4;
        let t = Instant::now();
        for _ in 0..k {
            let l = client.create_lease(lease("bench=yes"), "").await.unwrap();
            sim.next().await;
            client.delete_lease(&l.name).await.unwrap();
            sim.next().await;
        }
        let rate = k as f64 / t.elapsed().as_secs_f64();

        (median(assigned), median(ready), rate)
    });
    rows.push(Row::new(
        "controller: lease created -> exporter told (Status stream), median",
        format!("{assigned:.1} ms"),
        "n/a (Kubernetes)".into(),
        0.0,
    ));
    rows.push(Row::new(
        "controller: lease created -> client sees Ready, median",
        format!("{ready:.1} ms"),
        "n/a (Kubernetes)".into(),
        0.0,
    ));
    rows.push(Row::new(
        "controller: leases created and released per second (one client)",
        format!("{rate:.0}/s"),
        "n/a (Kubernetes)".into(),
        0.0,
    ));
    target(
        targets,
        format!("lease Ready within 50 ms of an exporter being free: {ready:.1} ms"),
        ready <= 50.0,
    );
    shell_through_controller(env, &daemon, rows);
    drop(daemon);

    // 1,000 registered exporters with open Status streams.
    let daemon = Daemon::start();
    let count = env.n(200, 1000);
    let names: Vec<String> = (0..count).map(|i| format!("sim-{i:04}")).collect();
    let ids = rt.block_on(identities(daemon.dir.path(), &[], &names));
    let idle = daemon.rss_mb();
    let sims = rt.block_on(async {
        let mut sims = Vec::new();
        for who in ids {
            sims.push(Sim::start(&daemon.endpoint, &daemon.dial(), who).await);
        }
        sims
    });
    std::thread::sleep(Duration::from_secs(2));
    let rss = daemon.rss_mb();
    drop(sims);
    rows.push(Row::new(
        &format!("controller memory with {count} registered exporters (idle: {idle:.0} MB)"),
        format!("{rss:.0} MB"),
        "n/a (Kubernetes)".into(),
        0.0,
    ));
    if count == 1000 {
        target(
            targets,
            format!("1,000 exporters in under 200 MB: {rss:.0} MB"),
            rss < 200.0,
        );
    }
}

/// Router throughput: a lease, Dial, Listen, the two router streams, bytes one way.
pub fn router(env: &Env, rows: &mut Vec<Row>, targets: &mut Vec<Goal>) {
    eprintln!("router: one stream...");
    let (rt, daemon, dial, ids) = one_client_one_exporter();
    let mbps = rt.block_on(async {
        let (mut sim, client) = sim_and_client(&daemon, &dial, &ids).await;
        let l = client.create_lease(lease("bench=yes"), "").await.unwrap();
        sim.next().await;
        sim.report(ExporterStatus::LeaseReady).await;
        let mut listen = sim
            .c
            .clone()
            .listen(sim.who.request(ListenRequest {
                lease_name: l.name.rsplit('/').next().unwrap().to_string(),
            }))
            .await
            .unwrap()
            .into_inner();
        let size: usize = if env.quick { 256 << 20 } else { 2 << 30 };
        let d2 = dial.clone();
        let exporter_side = tokio::spawn(async move {
            let m = listen.next().await.unwrap().unwrap();
            let io = router_stream(&m.router_endpoint, &m.router_token, &d2)
                .await
                .unwrap();
            drain(io).await
        });
        let ch = {
            // Dial through the controller, then the client's half of the tunnel.
            let ch = H2Channel::dial(&Target::parse(&daemon.endpoint), &dial)
                .await
                .unwrap();
            let origin = ch.origin();
            let mut c = ControllerServiceClient::with_origin(ch, origin);
            c.dial(
                client_identity(&ids).request(jumpstarter_protocol::v1::DialRequest {
                    lease_name: l.name.rsplit('/').next().unwrap().to_string(),
                }),
            )
            .await
            .unwrap()
            .into_inner()
        };
        let mut io = router_stream(&ch.router_endpoint, &ch.router_token, &dial)
            .await
            .unwrap();
        let t = Instant::now();
        fill(&mut io, size).await;
        // Dropping the stream now would cancel it (and the router ends both sides at once):
        // keep it until the exporter side has read everything.
        let got = exporter_side.await.unwrap();
        drop(io);
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(got, size);
        size as f64 / secs / 1e6
    });
    let floor = rt.block_on(tls_relay_floor(
        &daemon,
        &dial,
        if env.quick { 256 << 20 } else { 2 << 30 },
    ));
    rows.push(Row::new(
        "router: one stream, client -> exporter, TLS on loopback",
        format!("{mbps:.0} MB/s"),
        "n/a (Kubernetes)".into(),
        0.0,
    ));
    rows.push(Row::new(
        "reference: bare TLS byte relay (no HTTP/2, no gRPC), same hops and certificate",
        format!("{floor:.0} MB/s"),
        "-".into(),
        0.0,
    ));
    target(
        targets,
        format!("router throughput at least 1 GB/s on loopback: {mbps:.0} MB/s"),
        mbps >= 1000.0,
    );
}

/// Reads to the end in 1 MiB reads; returns the byte count.
async fn drain(mut from: impl AsyncRead + Unpin) -> usize {
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    loop {
        let n = from.read(&mut buf).await.unwrap();
        if n == 0 {
            return got;
        }
        got += n;
    }
}

/// Writes `size` bytes in 1 MiB writes, then shuts the writer down.
async fn fill(to: &mut (impl AsyncWrite + Unpin), size: usize) {
    let chunk = vec![7u8; 1 << 20];
    let mut sent = 0usize;
    while sent < size {
        to.write_all(&chunk).await.unwrap();
        sent += chunk.len();
    }
    to.shutdown().await.unwrap();
}

/// What the machine allows a relay: sender -> TLS -> relay -> TLS -> receiver over loopback
/// TCP, moving bytes with 1 MiB buffers and nothing else (the controller's certificate, the
/// same TLS stack and provider). The router does this plus HTTP/2 and gRPC framing.
async fn tls_relay_floor(daemon: &Daemon, dial: &Dial, size: usize) -> f64 {
    use tokio::net::{TcpListener, TcpStream};
    let tls_dir = daemon.dir.path().join("tls");
    let server =
        jumpstarter_core::tls::server_config(&tls_dir.join("cert.pem"), &tls_dir.join("key.pem"))
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(dial.tls.clone().unwrap());
    let name = jumpstarter_core::tls::server_name("127.0.0.1").unwrap();
    let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (sink_addr, relay_addr) = (sink.local_addr().unwrap(), relay.local_addr().unwrap());
    let a = acceptor.clone();
    let receiver = tokio::spawn(async move {
        let (tcp, _) = sink.accept().await.unwrap();
        drain(a.accept(tcp).await.unwrap()).await
    });
    let (c, n) = (connector.clone(), name.clone());
    let relay_task = tokio::spawn(async move {
        let (tcp, _) = relay.accept().await.unwrap();
        let mut from = acceptor.accept(tcp).await.unwrap();
        let tcp = TcpStream::connect(sink_addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut to = c.connect(n, tcp).await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = from.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            to.write_all(&buf[..k]).await.unwrap();
        }
        to.shutdown().await.unwrap();
        // Read what the sink sends back (TLS session tickets) until it closes: closing this
        // socket with unread data would reset the connection under the sink.
        let mut rest = [0u8; 4096];
        while matches!(to.read(&mut rest).await, Ok(n) if n > 0) {}
    });
    let tcp = TcpStream::connect(relay_addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let t = Instant::now();
    fill(&mut tls, size).await;
    let got = receiver.await.unwrap();
    relay_task.await.unwrap();
    assert_eq!(got, size);
    size as f64 / t.elapsed().as_secs_f64() / 1e6
}

/// `jmp shell --client C --selector S -- j power on` end to end against our controller and our
/// exporter (`jmp run` in controller mode, its own process): ours (with our `j`) against
/// upstream's `jmp` (with upstream's `j`), same client config, same controller, same exporter.
fn shell_through_controller(env: &Env, daemon: &Daemon, rows: &mut Vec<Row>) {
    eprintln!("controller: jmp shell --client -- j power on...");
    let data = daemon.dir.path();
    let home = tempfile::tempdir().unwrap();
    let admin = |args: &[&str]| {
        let st = Command::new(release_bin("jmp-controller"))
            .arg("admin")
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "jmp-controller admin {args:?}");
    };
    let exporter = home.path().join("shell-e1.yaml");
    let client = home.path().join("shell-client.yaml");
    admin(&[
        "create",
        "exporter",
        "shell-e1",
        "--label",
        "bench=shell",
        "--out",
        exporter.to_str().unwrap(),
    ]);
    admin(&[
        "create",
        "client",
        "shell-client",
        "--unsafe",
        "--out",
        client.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&exporter).unwrap().replace(
        "export: {}\n",
        "export:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n",
    );
    std::fs::write(&exporter, text).unwrap();
    let mut run = Command::new(&env.our_jmp)
        .args(["run", "--exporter-config"])
        .arg(&exporter)
        .env("JMP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let shell = |jmp: &Path, bin_dir: &Path| {
        let mut c = Command::new(jmp);
        c.env("PATH", path_with(bin_dir))
            .env("HOME", home.path())
            .env("_JMP_SUPPRESS_DRIVER_WARNINGS", "1")
            .args(["shell", "--client-config"])
            .arg(&client)
            .args(["--selector", "bench=shell", "--", "j", "power", "on"]);
        c
    };
    // The first (untimed) run of each waits for the exporter to register.
    let ours = median(time_runs(env.n(10, 30), || {
        shell(&env.our_jmp, env.our_j.parent().unwrap())
    }));
    let up = median(time_runs(env.n(2, 5), || shell(&env.up_jmp, &env.venv_bin)));
    let _ = run.kill();
    let _ = run.wait();
    rows.push(Row::new(
        "`jmp shell --client C --selector S -- j power on` through our controller and router (median wall time)",
        format!("{ours:.1} ms"),
        format!("{up:.0} ms"),
        up / ours,
    ));
}

fn client_identity(ids: &[Identity]) -> Identity {
    ids.iter().find(|i| i.kind == "Client").cloned().unwrap()
}

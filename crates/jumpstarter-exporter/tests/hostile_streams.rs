//! Hostile clients of a direct-mode exporter over TCP (in process, real sockets): slow echo
//! readers and abandoned uploads across sessions. The exporter's buffered bytes
//! (`jumpstarter_core::stream::gauges`) stay bounded during the attack and return to zero
//! after it; RSS is checked coarsely. The tests run one at a time (the gauges are global).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jumpstarter_config::ExporterConfig;
use jumpstarter_core::Client;
use jumpstarter_core::limits::DEFAULT_STREAM_BUFFER;
use jumpstarter_core::logs::LogHub;
use jumpstarter_core::stream::{self, Gauges, MAX_FRAME};
use jumpstarter_core::transport::{Dial, Target};
use jumpstarter_exporter::Exporter;
use jumpstarter_exporter::direct::{Control, DirectOptions};
use jumpstarter_protocol::v1::ExporterStatus;
use tokio::io::AsyncWriteExt;
use tonic::codegen::Bytes;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const T: Duration = Duration::from_secs(30);

struct Running {
    addr: SocketAddr,
    control: Control,
    session: jumpstarter_core::Session,
    task: tokio::task::JoinHandle<jumpstarter_exporter::direct::Outcome>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.control.force();
        self.task.abort();
    }
}

async fn start() -> Running {
    let text = "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {name: hostile}\nexport:\n  echo:\n    type: jumpstarter_driver_network.driver.EchoNetwork\n  storage:\n    type: jumpstarter_driver_opendal.driver.MockStorageMux\n";
    let config = ExporterConfig::parse(text, Path::new("hostile.yaml")).unwrap();
    let exporter = Exporter::new(config, jumpstarter_drivers::builtin())
        .await
        .unwrap();
    let options = DirectOptions {
        host: "127.0.0.1".into(),
        port: 0,
        tls: None,
        passphrase: None,
    };
    let direct = exporter.start_direct(options, LogHub::new()).await.unwrap();
    let session = direct.session().clone();
    let addr = direct.local_addr();
    let control = Control::new();
    let task = tokio::spawn(direct.run(control.clone()));
    Running {
        addr,
        control,
        session,
        task,
    }
}

impl Running {
    /// A client of a session that is LEASE_READY with a status version above `after`.
    async fn ready_client(&self, after: u64) -> Client {
        let deadline = Instant::now() + T;
        loop {
            let s = self.session.status();
            if s.status == ExporterStatus::LeaseReady && s.version > after {
                break;
            }
            assert!(Instant::now() < deadline, "never LEASE_READY");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let target = Target::Tcp {
            host: "127.0.0.1".into(),
            port: self.addr.port(),
        };
        Client::dial(&target, &Dial::default()).await.unwrap()
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn settled() -> Gauges {
    let mut last = stream::gauges();
    let deadline = Instant::now() + T;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = stream::gauges();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

async fn released() {
    let deadline = Instant::now() + T;
    loop {
        let g = stream::gauges();
        if g == Gauges::default() {
            return;
        }
        assert!(Instant::now() < deadline, "not released: {g:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_slow_echo_readers_cost_a_bounded_buffer_each() {
    let _serial = SERIAL.lock().await;
    let r = start().await;
    let client = r.ready_client(0).await;
    const STREAMS: usize = 8;
    const PER_STREAM: usize = 64 << 20;
    let written = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..STREAMS {
        let s = client.get("echo").unwrap().stream("connect").await.unwrap();
        let (rd, mut wr) = tokio::io::split(s);
        let written = written.clone();
        writers.push(tokio::spawn(async move {
            let chunk = vec![0xa5u8; MAX_FRAME];
            for _ in 0..PER_STREAM / MAX_FRAME {
                wr.write_all(&chunk).await.unwrap();
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            wr.shutdown().await.unwrap();
            wr
        }));
        readers.push(rd);
    }
    // Nobody reads yet: the exporter holds at most the bound per stream, and the writers
    // are held back.
    let g = settled().await;
    assert_eq!(g.bridges, STREAMS, "{g:?}");
    let bound = STREAMS * (DEFAULT_STREAM_BUFFER + MAX_FRAME);
    assert!(
        g.buffered_bytes > 0 && g.buffered_bytes <= bound,
        "{g:?}, bound {bound}"
    );
    let w = written.load(Ordering::SeqCst);
    assert!(
        w < (STREAMS * PER_STREAM) as u64,
        "no backpressure: {w} bytes written"
    );
    // (No RSS check here: the client in this process buffers its own unsent frames.)
    // The slow readers start reading: every byte comes back, then the end.
    let reads = readers.into_iter().map(|mut rd| {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0usize;
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut rd, &mut buf)
                    .await
                    .unwrap();
                if n == 0 {
                    break;
                }
                assert!(buf[..n].iter().all(|b| *b == 0xa5));
                total += n;
            }
            (rd, total)
        })
    });
    let reads = tokio::time::timeout(T * 4, futures::future::join_all(reads))
        .await
        .expect("the readers finish");
    let mut halves = Vec::new();
    for (r, w) in reads.into_iter().zip(writers) {
        let (rd, total) = r.unwrap();
        assert_eq!(total, PER_STREAM);
        halves.push(rd.unsplit(w.await.unwrap()));
    }
    drop(halves);
    released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_abandoned_uploads_do_not_survive_the_session() {
    let _serial = SERIAL.lock().await;
    let r = start().await;
    let rss_start = rss_kib();
    let mut version = 0;
    for round in 0..3 {
        let client = r.ready_client(version).await;
        let mut pushers = Vec::new();
        for _ in 0..4 {
            let mut res = client.get("storage").unwrap().resource(None).await.unwrap();
            pushers.push(tokio::spawn(async move {
                let chunk = Bytes::from(vec![0x3cu8; MAX_FRAME]);
                for _ in 0..128 {
                    if res.stream.send_data(chunk.clone()).await.is_err() {
                        break;
                    }
                }
                std::future::pending::<()>().await;
                drop(res);
            }));
        }
        let g = settled().await;
        assert!(
            g.buffered_bytes > 0 && g.buffered_bytes <= 4 * (DEFAULT_STREAM_BUFFER + MAX_FRAME),
            "round {round}: {g:?}"
        );
        // The client ends the session with its streams still open: nothing survives it.
        // (On a fresh connection: the stalled uploads hold this one's HTTP/2 connection
        // window, so a call queued behind them would wait.)
        let ender = r.ready_client(0).await;
        let resp = tokio::time::timeout(T, ender.end_session())
            .await
            .expect("EndSession answers")
            .unwrap();
        assert!(resp.success, "{resp:?}");
        version = r.session.status().version;
        released().await;
        for p in pushers {
            p.abort();
        }
        drop(client);
        released().await;
    }
    let grown = rss_kib().saturating_sub(rss_start);
    assert!(grown < 256 * 1024, "RSS grew by {grown} KiB");
}

//! Stream churn against a real `jmp run`: rounds of 5,000 byte streams open at once (over 20
//! connections, under the per-connection stream limit), each used and then dropped. The
//! exporter's memory reaches a plateau after the first rounds instead of creeping up round
//! after round.

use std::process::Command;
use std::time::{Duration, Instant};

use jumpstarter_core::Client;
use jumpstarter_core::transport::{Dial, Target};
use jumpstarter_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_stream_churn_does_not_creep() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .env("PATH", path_with_ours())
        .arg("run")
        .arg("--exporter-config")
        .arg(&cfg)
        .args(["--tls-grpc-listener", "127.0.0.1:0", "--tls-grpc-insecure"]);
    let exporter = RunningExporter::start(&mut cmd, None);
    let target = Target::parse(&format!("127.0.0.1:{}", exporter.port));
    let dial = Dial {
        tls: None,
        passphrase: None,
    };
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(Client::dial(&target, &dial).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while clients[0].get_status().await.unwrap().status
        != jumpstarter_protocol::v1::ExporterStatus::LeaseReady as i32
    {
        assert!(Instant::now() < deadline, "never LEASE_READY");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut rss = Vec::new();
    for _round in 0..6 {
        let opened = futures::future::join_all(clients.iter().flat_map(|c| {
            (0..250).map(move |_| async move {
                let mut s = c.get("echo").unwrap().stream("connect").await.unwrap();
                s.write_all(b"ping").await.unwrap();
                let mut b = [0u8; 4];
                s.read_exact(&mut b).await.unwrap();
                assert_eq!(&b, b"ping");
                s
            })
        }))
        .await;
        assert_eq!(opened.len(), 5000);
        drop(opened);
        // Let the exporter see every stream end.
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss.push(rss_kib(exporter.pid()));
    }
    // Allocators keep a high-water mark; what matters is that later rounds add (almost)
    // nothing. Eager 256 KiB read buffers per stream made every round add about 50 MiB.
    let settled = rss[2];
    let last = *rss.last().unwrap();
    eprintln!("exporter RSS per round (KiB): {rss:?}");
    assert!(
        last <= settled + 32 * 1024,
        "exporter RSS per round (KiB): {rss:?}"
    );
    // The exporter still serves.
    let power = clients[0].get("power").unwrap();
    power.call("on", vec![]).await.unwrap();
}

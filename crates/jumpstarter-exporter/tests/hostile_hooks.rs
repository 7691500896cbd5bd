//! Hooks that leave processes behind: background jobs, and daemons that left the hook's
//! process group with `setsid`. None may outlive the hook. Real hooks, real processes, a real
//! direct-mode session over TCP; every wait is bounded.

use std::path::Path;
use std::time::{Duration, Instant};

use jumpstarter_config::ExporterConfig;
use jumpstarter_core::logs::LogHub;
use jumpstarter_core::session::StatusState;
use jumpstarter_core::transport::{Dial, Target};
use jumpstarter_core::{Client, Session};
use jumpstarter_exporter::Exporter;
use jumpstarter_exporter::direct::{Control, DirectOptions, Outcome};
use jumpstarter_protocol::v1::ExporterStatus;
use jumpstarter_testkit::alive;
use tokio::sync::broadcast;

const T: Duration = Duration::from_secs(60);

/// A sleep duration no other process uses: its argv is the marker the test looks for.
fn marker(n: u32) -> String {
    format!("{}.{}{n}", 4000 + n, std::process::id())
}

/// Live (not zombie) processes with `arg` in their argv.
fn with_arg(arg: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if !cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()) {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                .is_some_and(|st| st == "Z" || st == "X")
        });
        if !zombie {
            found.push(pid);
        }
    }
    found
}

/// Waits (at most 10 s: the hook's end already stopped them, this only absorbs signal
/// delivery) until no process carries any of `args`.
async fn assert_gone(args: &[&str], when: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<(String, Vec<i32>)> = args
            .iter()
            .map(|a| (a.to_string(), with_arg(a)))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for (_, pids) in &left {
                for p in pids {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            panic!("processes survived {when}: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_file(path: &Path, lines: usize) -> Vec<i32> {
    tokio::time::timeout(T, async {
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                let pids: Vec<i32> = text
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                if pids.len() >= lines {
                    return pids;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the hook wrote its pids")
}

async fn until(updates: &mut broadcast::Receiver<StatusState>, want: ExporterStatus) {
    tokio::time::timeout(T, async {
        loop {
            if updates.recv().await.expect("status updates").status == want {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {want:?} within {T:?}"));
}

fn config(hooks: &str) -> ExporterConfig {
    let text = format!(
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {{name: hostile}}\nexport:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\nhooks:\n{hooks}"
    );
    ExporterConfig::parse(&text, Path::new("hostile.yaml")).unwrap()
}

fn hook(kind: &str, script: &str) -> String {
    let mut s = format!("  {kind}:\n    script: |\n");
    for line in script.lines() {
        s.push_str(&format!("      {line}\n"));
    }
    s.push_str("    onFailure: warn\n");
    s
}

/// A hook script that leaves a background job and a `setsid` daemon running and records
/// their pids in `pids`.
fn leaving(bg: &str, daemon: &str, pids: &Path) -> String {
    format!(
        "(sleep {bg}) &\necho $! >> {p}\nsetsid sleep {daemon} &\necho $! >> {p}\necho left two behind",
        p = pids.display()
    )
}

struct Direct {
    session: Session,
    addr: std::net::SocketAddr,
    control: Control,
    task: tokio::task::JoinHandle<Outcome>,
}

async fn start(hooks: &str) -> (Direct, broadcast::Receiver<StatusState>) {
    let exporter = Exporter::new(config(hooks), jumpstarter_drivers::builtin())
        .await
        .unwrap();
    let options = DirectOptions {
        host: "127.0.0.1".into(),
        port: 0,
        tls: None,
        passphrase: None,
    };
    let direct = exporter.start_direct(options, LogHub::new()).await.unwrap();
    let updates = direct.session().status_updates();
    let session = direct.session().clone();
    let addr = direct.local_addr();
    let control = Control::new();
    let task = tokio::spawn(direct.run(control.clone()));
    (
        Direct {
            session,
            addr,
            control,
            task,
        },
        updates,
    )
}

#[tokio::test]
async fn background_jobs_and_setsid_daemons_of_hooks_end_with_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let before_pids = dir.path().join("before");
    let after_pids = dir.path().join("after");
    let (m1, m2, m3, m4) = (marker(1), marker(2), marker(3), marker(4));
    let hooks = format!(
        "{}{}",
        hook("beforeLease", &leaving(&m1, &m2, &before_pids)),
        hook("afterLease", &leaving(&m3, &m4, &after_pids)),
    );
    let (direct, mut updates) = start(&hooks).await;
    until(&mut updates, ExporterStatus::LeaseReady).await;
    // The hook did start them (so the check below means something)...
    let pids = wait_file(&before_pids, 2).await;
    assert_eq!(pids.len(), 2);
    // ...and by the time the lease is ready none is left.
    assert_gone(&[&m1, &m2], "the beforeLease hook").await;
    assert!(pids.iter().all(|p| !alive(*p)), "{pids:?}");
    assert_eq!(
        direct.session.status().status,
        ExporterStatus::LeaseReady,
        "a clean hook exit stays a success"
    );

    let client = Client::dial(
        &Target::Tcp {
            host: "127.0.0.1".into(),
            port: direct.addr.port(),
        },
        &Dial::default(),
    )
    .await
    .unwrap();
    let resp = tokio::time::timeout(T, client.end_session())
        .await
        .unwrap()
        .unwrap();
    assert!(resp.success, "{resp:?}");
    let pids = wait_file(&after_pids, 2).await;
    assert_eq!(pids.len(), 2);
    assert_gone(&[&m3, &m4], "the afterLease hook").await;

    direct.control.stop();
    assert_eq!(
        tokio::time::timeout(T, direct.task).await.unwrap().unwrap(),
        Outcome::Stopped
    );
}

#[tokio::test]
async fn stopping_the_exporter_during_a_hook_takes_its_daemons_along() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let (m1, m2, m3) = (marker(5), marker(6), marker(7));
    // The hook's daemons, then the hook itself blocks until it is stopped.
    let script = format!("{}\nsleep {m3}", leaving(&m1, &m2, &pids));
    let (direct, mut updates) = start(&hook("beforeLease", &script)).await;
    until(&mut updates, ExporterStatus::BeforeLeaseHook).await;
    let started = wait_file(&pids, 2).await;
    assert!(started.iter().all(|p| alive(*p)), "{started:?}");
    direct.control.stop();
    assert_eq!(
        tokio::time::timeout(T, direct.task).await.unwrap().unwrap(),
        Outcome::Stopped
    );
    assert_gone(&[&m1, &m2, &m3], "the exporter's stop").await;
}

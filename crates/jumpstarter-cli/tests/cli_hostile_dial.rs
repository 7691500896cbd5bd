//! Dial spam against a real `jmp run` exporter in controller mode (our controller in this
//! process): hundreds of Dials whose router streams the client never joins. Each holds a
//! connection on the exporter and one on the controller; they must all be released when the
//! lease ends (or, on the exporter, when the pairing timeout passes), and the next client
//! must be served as usual.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jumpstarter_controller::{admin, open_store};
use jumpstarter_core::controller::{Identity, LeaseClient};
use jumpstarter_core::limits::{self, Limits};
use jumpstarter_core::transport::{Dial, H2Channel, Target};
use jumpstarter_protocol::client_v1::Lease;
use jumpstarter_protocol::v1::DialRequest;
use jumpstarter_protocol::v1::controller_service_client::ControllerServiceClient;
use jumpstarter_testkit::ctl::{CtlLab, Kill};
use jumpstarter_testkit::*;

const SPAM: usize = 300;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits (bounded) until `pred` holds; panics with `what` and the exporter's log if not.
fn wait_for(what: &str, timeout: Duration, log: &Path, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "{what} (after {timeout:?})\nexporter log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Client {
    leases: LeaseClient,
    target: Target,
    dial: Dial,
    who: Identity,
}

fn client(lab: &CtlLab, name: &str) -> Client {
    lab.rt.block_on(async {
        let (store, keys) = open_store(&lab.data).await.unwrap();
        let c = match store.client("default", name).await.unwrap() {
            Some(c) => c,
            None => admin::create_client(&store, &keys, "default", name, Default::default())
                .await
                .unwrap(),
        };
        let (endpoint, _) = admin::endpoint_and_ca(&store, None).await.unwrap();
        store.close().await;
        let roots =
            jumpstarter_core::tls::roots_from_pem_file(&lab.data.join("tls/cert.pem")).unwrap();
        let tls = jumpstarter_core::tls::client_config(&jumpstarter_core::tls::ServerTrust::Roots(
            Arc::new(roots),
        ))
        .unwrap();
        let dial = Dial {
            tls: Some(tls),
            passphrase: None,
        };
        let who = Identity {
            token: c.token,
            kind: "Client",
            namespace: "default".into(),
            name: name.into(),
        };
        let leases = LeaseClient::connect(&endpoint, dial.clone(), who.clone())
            .await
            .unwrap();
        Client {
            leases,
            target: Target::parse(&endpoint),
            dial,
            who,
        }
    })
}

impl Client {
    fn lease(&self, lab: &CtlLab, id: &str, selector: &str) {
        lab.rt.block_on(async {
            let lease = Lease {
                selector: selector.into(),
                duration: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                ..Default::default()
            };
            self.leases.create_lease(lease, id).await.unwrap();
            self.leases
                .wait_ready(id, Duration::from_millis(100))
                .await
                .unwrap();
        });
    }

    /// `n` Dials of lease `id` whose router streams this client never opens.
    fn spam(&self, lab: &CtlLab, id: &str, n: usize) {
        lab.rt.block_on(async {
            let ch = H2Channel::dial(&self.target, &self.dial).await.unwrap();
            let o = ch.origin();
            let mut c = ControllerServiceClient::with_origin(ch, o);
            let mut done = 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            while done < n {
                assert!(Instant::now() < deadline, "only {done} Dials accepted");
                let r = c
                    .dial(self.who.request(DialRequest {
                        lease_name: id.into(),
                    }))
                    .await;
                match r {
                    Ok(_) => done += 1,
                    // The exporter's Listen queue is short: let it catch up.
                    Err(e) if e.message().contains("listener buffer full") => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("Dial failed: {e:?}"),
                }
            }
        });
    }

    fn release(&self, lab: &CtlLab, id: &str) {
        lab.rt.block_on(self.leases.delete_lease(id)).unwrap();
    }
}

fn exporter(
    lab: &CtlLab,
    name: &str,
    board: &str,
    env: &[(&str, &str)],
) -> (Kill, std::path::PathBuf) {
    let config = lab.exporter_config(name, &[("board", board)]);
    let log = lab.root.join(format!("exporter-{name}.log"));
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env_remove("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
        .env_remove("JUMPSTARTER_FORCE_SYSTEM_CERTS")
        .env("HOME", &lab.root)
        .envs(env.iter().copied())
        .args(["run", "--exporter-config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let child = Kill(cmd.spawn().unwrap());
    lab.wait_status(name, "Available", &log);
    (child, log)
}

/// Dial spam without joining, then the lease ends: the exporter's and the controller's
/// descriptors return to where they were, and `jmp shell --client ... -- j power on` works
/// on the same exporter. A second exporter with a short pairing timeout closes unjoined
/// streams by itself while the lease still runs.
#[test]
fn hostile_dial_spam_is_released_with_the_lease() {
    // Neither the controller's pairing timeout nor its Dial bound interferes here: only the
    // lease's end (and, for the second exporter, the exporter's own timeout) may clean up.
    limits::set_global(Limits {
        handshake_timeout: Duration::from_secs(120),
        max_pending_dials: 1000,
        ..Limits::default()
    });
    let lab = CtlLab::new();
    let (e1, log) = exporter(
        &lab,
        "e1",
        "rpi",
        &[
            ("JMP_HANDSHAKE_TIMEOUT", "120"),
            ("JMP_MAX_PENDING_DIALS", "1000"),
        ],
    );
    let pid = e1.0.id();
    let alice = client(&lab, "alice");
    alice.lease(&lab, "spam", "board=rpi");
    lab.wait_status("e1", "LeaseReady", &log);
    std::thread::sleep(Duration::from_millis(300));
    let (exporter_before, ours_before) = (fds(pid), fds(std::process::id()));

    alice.spam(&lab, "spam", SPAM);
    // The attack holds a connection per Dial on the exporter...
    wait_for(
        "the exporter did not open a router connection per Dial",
        Duration::from_secs(60),
        &log,
        || fds(pid) >= exporter_before + SPAM * 9 / 10,
    );
    assert!(fds(std::process::id()) >= ours_before + SPAM * 9 / 10);

    // ...until the lease ends.
    alice.release(&lab, "spam");
    wait_for(
        &format!(
            "the exporter kept its router connections after the lease ended ({} open, {exporter_before} before)",
            fds(pid)
        ),
        Duration::from_secs(30),
        &log,
        || fds(pid) <= exporter_before + 10,
    );
    wait_for(
        &format!(
            "the controller kept router connections after the lease ended ({} open, {ours_before} before)",
            fds(std::process::id())
        ),
        Duration::from_secs(30),
        &log,
        || fds(std::process::id()) <= ours_before + 10,
    );
    lab.wait_status("e1", "Available", &log);

    // The next client is served as usual.
    let alice_config = lab.client_config("alice2");
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env("HOME", &lab.root)
        .env_remove("JMP_CLIENT_CONFIG_HOME")
        .env_remove("JMP_CLIENT")
        .env_remove("JMP_CLIENT_CONFIG")
        .env("PATH", path_with_ours())
        .arg("shell")
        .arg("--client-config")
        .arg(&alice_config)
        .args(["--selector", "board=rpi", "--", "j", "power", "on"]);
    let o = run_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "{}{}\nexporter:\n{}",
        text(&o.stdout),
        text(&o.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    drop(e1);

    // An exporter with a 2 s pairing timeout lets unjoined streams go by itself.
    let (e2, log2) = exporter(
        &lab,
        "e2",
        "x86",
        &[
            ("JMP_HANDSHAKE_TIMEOUT", "2"),
            ("JMP_MAX_PENDING_DIALS", "1000"),
        ],
    );
    let pid2 = e2.0.id();
    let bob = client(&lab, "bob");
    bob.lease(&lab, "spam2", "board=x86");
    lab.wait_status("e2", "LeaseReady", &log2);
    std::thread::sleep(Duration::from_millis(300));
    let before = fds(pid2);
    let started = Instant::now();
    bob.spam(&lab, "spam2", 50);
    wait_for(
        &format!(
            "the exporter kept unjoined router streams past its pairing timeout ({} open, {before} before)",
            fds(pid2)
        ),
        Duration::from_secs(30),
        &log2,
        || fds(pid2) <= before + 10,
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    bob.release(&lab, "spam2");
}

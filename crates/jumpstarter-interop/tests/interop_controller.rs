//! Our exporter (`jmp run` in controller mode) against our controller (in process), driven
//! by upstream 0.9.0's `jmp shell` with upstream's and our `j`: registration, status, Listen,
//! router tunnels into the exporter's session, release.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use jumpstarter_testkit::ctl::{CtlLab, Kill};
use jumpstarter_testkit::*;

/// The controller lab plus our exporter and upstream's shell.
struct Lab(CtlLab);

impl std::ops::Deref for Lab {
    type Target = CtlLab;
    fn deref(&self) -> &CtlLab {
        &self.0
    }
}

impl Lab {
    fn new() -> Lab {
        Lab(CtlLab::new())
    }

    fn our_exporter(&self, config: &Path) -> (Kill, PathBuf) {
        let log = self.root.join("exporter.log");
        let mut cmd = Command::new(jmp());
        clean(&mut cmd);
        cmd.args(["run", "--exporter-config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(self.root.join("exporter.err")).unwrap());
        let child = cmd.spawn().unwrap();
        (Kill(child), self.root.join("exporter.err"))
    }

    fn upstream_shell(&self, client: &Path, path: &str, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(upstream_jmp());
        clean(&mut cmd);
        cmd.env("HOME", &self.root)
            .env("PATH", path)
            .args(["shell", "--client-config"])
            .arg(client)
            .args(args);
        run_timeout(&mut cmd, Duration::from_secs(120))
    }
}

#[test]
fn our_exporter_serves_upstream_shells_through_our_controller() {
    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi")]);
    let alice = lab.client_config("alice");
    let (_exporter, log) = lab.our_exporter(&e1);
    lab.wait_status("e1", "Available", &log);

    // Upstream shell and upstream j.
    let o = lab.upstream_shell(
        &alice,
        &path_with_upstream(),
        &["--selector", "board=rpi", "--", "j", "power", "on"],
    );
    assert!(
        o.status.success(),
        "{}{}\nexporter:\n{}",
        text(&o.stdout),
        text(&o.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // After the lease the exporter is available again (afterLease, release, report).
    lab.wait_status("e1", "Available", &log);

    // Upstream shell, our j, by name; the exit code comes back.
    let o = lab.upstream_shell(
        &alice,
        &path_with_ours(),
        &["--name", "e1", "--", "sh", "-c", "j power off && exit 5"],
    );
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}{}\nexporter:\n{}",
        text(&o.stdout),
        text(&o.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    lab.wait_status("e1", "Available", &log);
}

#[test]
fn our_client_library_leases_dials_and_calls_our_exporter() {
    use jumpstarter_core::controller::{Identity, LeaseClient};
    use jumpstarter_core::transport::Dial;
    use jumpstarter_protocol::client_v1::Lease;

    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi")]);
    let alice = lab.client_config("alice");
    let (_exporter, log) = lab.our_exporter(&e1);
    lab.wait_status("e1", "Available", &log);

    // What a client config holds (the config layer builds this from clients/*.yaml).
    let text = std::fs::read_to_string(&alice).unwrap();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap()
            .trim()
            .to_string()
    };
    let roots = jumpstarter_core::tls::roots_from_pem_file(&lab.data.join("tls/cert.pem")).unwrap();
    let tls = jumpstarter_core::tls::client_config(&jumpstarter_core::tls::ServerTrust::Roots(
        std::sync::Arc::new(roots),
    ))
    .unwrap();
    let who = Identity {
        token: field("token:"),
        kind: "Client",
        namespace: "default".into(),
        name: "alice".into(),
    };
    let endpoint = field("endpoint:");
    lab.rt.block_on(async {
        let c = LeaseClient::connect(
            &endpoint,
            Dial {
                tls: Some(tls),
                passphrase: None,
            },
            who,
        )
        .await
        .unwrap();
        let exporters = c.list_exporters("board=rpi").await.unwrap();
        assert_eq!(exporters.len(), 1);
        let lease = c
            .create_lease(
                Lease {
                    selector: "board=rpi".into(),
                    duration: Some(prost_types::Duration {
                        seconds: 600,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                "",
            )
            .await
            .unwrap();
        let ready = c
            .wait_ready(&lease.name, Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(
            ready.exporter.as_deref(),
            Some("namespaces/default/exporters/e1")
        );
        let client = c.connect_exporter(&lease.name).await.unwrap();
        let power = client.get("power").expect("power driver");
        power.call("on", vec![]).await.unwrap();
        power.call("off", vec![]).await.unwrap();
        drop(client);
        c.delete_lease(&lease.name).await.unwrap();
        // The scheduler ends it right after; then it is no longer active.
        let mut active = usize::MAX;
        for _ in 0..200 {
            active = c.list_leases("", true).await.unwrap().len();
            if active == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(active, 0);

        // A name that can never be satisfied fails at once.
        let l = c
            .create_lease(
                Lease {
                    exporter_name: Some("ghost".into()),
                    duration: Some(prost_types::Duration {
                        seconds: 60,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                "",
            )
            .await
            .unwrap();
        let e = c
            .wait_ready(&l.name, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot be satisfied"), "{e}");
    });
    lab.wait_status("e1", "Available", &log);
}

/// Upstream's shell ends the session it created (EndSession) and waits for AVAILABLE: our
/// exporter runs the afterLease hook right then, so upstream's shell shows its output and
/// returns only after it.
#[test]
fn upstream_shell_ends_the_session_and_sees_our_after_lease_hook() {
    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi")]);
    let mark = lab.root.join("after-ran");
    let text_before = std::fs::read_to_string(&e1).unwrap();
    assert!(
        text_before.contains("  afterLease: null\n"),
        "{text_before}"
    );
    let hook = format!(
        "  afterLease:\n    script: |\n      sleep 0.3; echo AFTER-HOOK-OUTPUT; touch {}\n",
        mark.display()
    );
    std::fs::write(&e1, text_before.replace("  afterLease: null\n", &hook)).unwrap();
    let alice = lab.client_config("alice");
    let (_exporter, log) = lab.our_exporter(&e1);
    lab.wait_status("e1", "Available", &log);
    let o = lab.upstream_shell(
        &alice,
        &path_with_upstream(),
        &["--selector", "board=rpi", "--", "j", "power", "on"],
    );
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        o.status.success(),
        "{all}\nexporter:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        mark.exists(),
        "the hook had not run when the shell returned:\n{all}"
    );
    assert!(all.contains("AFTER-HOOK-OUTPUT"), "{all}");
    lab.wait_status("e1", "Available", &log);
}

//! Direct mode in-process: listeners (plain, TLS, passphrase), the hook status walk, EndSession,
//! every `onFailure` mode, timeouts, floods, and bad peers. Clients are real gRPC clients over
//! TCP; hooks are real processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jumpstarter_config::ExporterConfig;
use jumpstarter_core::logs::LogHub;
use jumpstarter_core::session::StatusState;
use jumpstarter_core::transport::{Dial, Target};
use jumpstarter_core::{Client, ClientError, Session};
use jumpstarter_exporter::Exporter;
use jumpstarter_exporter::direct::{Control, DirectOptions, Outcome};
use jumpstarter_exporter::hooks::HookKind;
use jumpstarter_protocol::v1::{ExporterStatus, LogSource};
use jumpstarter_testkit::{alive, write_ca};
use tokio::sync::broadcast;

const T: Duration = Duration::from_secs(60);

struct Running {
    addr: SocketAddr,
    hook_socket: PathBuf,
    session: Session,
    updates: broadcast::Receiver<StatusState>,
    control: Control,
    task: Option<tokio::task::JoinHandle<Outcome>>,
}

impl Running {
    fn target(&self) -> Target {
        Target::Tcp {
            host: "127.0.0.1".into(),
            port: self.addr.port(),
        }
    }

    async fn client(&self) -> Client {
        Client::dial(&self.target(), &Dial::default())
            .await
            .unwrap()
    }

    /// Status updates until (and including) `want`.
    async fn until(&mut self, want: ExporterStatus) -> Vec<StatusState> {
        let mut seen = Vec::new();
        tokio::time::timeout(T, async {
            loop {
                let s = self.updates.recv().await.expect("status updates");
                let done = s.status == want;
                seen.push(s);
                if done {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {want:?} within {T:?}; saw {seen:?}"));
        seen
    }

    async fn stop(mut self) -> Outcome {
        self.control.stop();
        let task = self.task.take().unwrap();
        tokio::time::timeout(T, task).await.unwrap().unwrap()
    }

    async fn wait(mut self) -> Outcome {
        let task = self.task.take().unwrap();
        tokio::time::timeout(T, task).await.unwrap().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.control.force();
    }
}

fn config(hooks: &str) -> ExporterConfig {
    let text = format!(
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {{name: direct}}\nmotd: Welcome\nexport:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n{hooks}"
    );
    ExporterConfig::parse(&text, Path::new("direct.yaml")).unwrap()
}

async fn start_with(hooks: &str, options: DirectOptions) -> Running {
    let exporter = Exporter::new(config(hooks), jumpstarter_drivers::builtin())
        .await
        .unwrap();
    let direct = exporter.start_direct(options, LogHub::new()).await.unwrap();
    let updates = direct.session().status_updates();
    let session = direct.session().clone();
    let addr = direct.local_addr();
    let hook_socket = direct.hook_socket().to_owned();
    let control = Control::new();
    let task = tokio::spawn(direct.run(control.clone()));
    Running {
        addr,
        hook_socket,
        session,
        updates,
        control,
        task: Some(task),
    }
}

fn plain() -> DirectOptions {
    DirectOptions {
        host: "127.0.0.1".into(),
        port: 0,
        tls: None,
        passphrase: None,
    }
}

async fn start(hooks: &str) -> Running {
    start_with(hooks, plain()).await
}

fn walk(states: &[StatusState]) -> Vec<(ExporterStatus, String)> {
    states
        .iter()
        .map(|s| (s.status, s.message.clone()))
        .collect()
}

fn hook_yaml(kind: &str, script: &str, extra: &str) -> String {
    let mut s = format!("  {kind}:\n    script: |\n");
    for line in script.lines() {
        s.push_str(&format!("      {line}\n"));
    }
    for line in extra.lines() {
        s.push_str(&format!("    {line}\n"));
    }
    s
}

fn hooks(before: Option<(&str, &str)>, after: Option<(&str, &str)>) -> String {
    let mut s = String::from("hooks:\n");
    if let Some((script, extra)) = before {
        s.push_str(&hook_yaml("beforeLease", script, extra));
    }
    if let Some((script, extra)) = after {
        s.push_str(&hook_yaml("afterLease", script, extra));
    }
    s
}

/// Collects LogStream records until one matches `last`.
async fn logs_until(
    client: &Client,
    last: impl Fn(&str) -> bool,
) -> Vec<(String, String, Option<i32>)> {
    let mut stream = Box::pin(client.log_stream().await.unwrap());
    let mut got = Vec::new();
    tokio::time::timeout(T, async {
        while let Some(r) = stream.next().await {
            let r = r.unwrap();
            let done = last(&r.message);
            got.push((r.severity, r.message, r.source));
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("log record not seen; got {got:?}"));
    got
}

#[tokio::test]
async fn hooks_walk_the_status_and_end_session_waits_for_after_lease() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("after-ran");
    let env_file = dir.path().join("env");
    let before = format!(
        "echo preparing the board\necho \"lease=$LEASE_NAME client=[$CLIENT_NAME]\"\nenv > {}\necho 'Board ready for tests' > \"$JMP_MOTD_FILE\"",
        env_file.display()
    );
    let after = format!("echo cleaning up\nsleep 0.3\ntouch {}", mark.display());
    let mut r = start(&hooks(Some((&before, "")), Some((&after, "")))).await;
    let seen = r.until(ExporterStatus::LeaseReady).await;
    assert_eq!(
        walk(&seen),
        [
            (
                ExporterStatus::BeforeLeaseHook,
                "Running beforeLease hook".into()
            ),
            (ExporterStatus::LeaseReady, "Ready for commands".into()),
        ]
    );
    assert_eq!(seen[1].version, 2);

    let client = r.client().await;
    let status = client.get_status().await.unwrap();
    assert_eq!(status.status, ExporterStatus::LeaseReady as i32);
    assert_eq!(status.status_version, 2);
    assert_eq!(
        status.previous_status,
        Some(ExporterStatus::BeforeLeaseHook as i32)
    );
    assert_eq!(client.motd(), "Welcome\nBoard ready for tests");

    // Hook lines reach LogStream readers with the hook's source; system lines are SYSTEM.
    let logs = logs_until(&client, |m| m == "beforeLease hook completed successfully").await;
    let hook_lines: Vec<&str> = logs
        .iter()
        .filter(|l| l.2 == Some(LogSource::BeforeLeaseHook as i32))
        .map(|l| l.1.as_str())
        .collect();
    assert_eq!(
        hook_lines,
        ["preparing the board", "lease=standalone client=[]"]
    );
    assert!(
        logs.iter()
            .any(|l| l.1.starts_with("Session server started on 127.0.0.1:")
                && l.2 == Some(LogSource::System as i32))
    );

    // The hook environment.
    let env = std::fs::read_to_string(&env_file).unwrap();
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
    };
    assert_eq!(
        var("JUMPSTARTER_HOST").as_deref(),
        Some(r.hook_socket.to_str().unwrap())
    );
    assert_eq!(var("JMP_DRIVERS_ALLOW").as_deref(), Some("UNSAFE"));
    assert_eq!(var("TERM").as_deref(), Some("dumb"));
    assert_eq!(var("DEBIAN_FRONTEND").as_deref(), Some("noninteractive"));
    assert_eq!(var("GIT_TERMINAL_PROMPT").as_deref(), Some("0"));
    assert_eq!(var("LEASE_NAME").as_deref(), Some("standalone"));
    assert_eq!(var("CLIENT_NAME").as_deref(), Some(""));
    assert!(var("JMP_MOTD_FILE").is_some());
    assert!(var("PS1").is_none());

    // EndSession returns once afterLease is done, with AVAILABLE already reported.
    let mut log_stream = Box::pin(client.log_stream().await.unwrap());
    let resp = client.end_session().await.unwrap();
    assert!(resp.success);
    assert_eq!(
        resp.message.as_deref(),
        Some("Session ended, afterLease hook completed")
    );
    assert!(mark.exists(), "afterLease ran before EndSession returned");
    let status = client.get_status().await.unwrap();
    assert_eq!(status.status, ExporterStatus::Available as i32);
    assert_eq!(status.message.as_deref(), Some("Available for new lease"));
    let seen = r.until(ExporterStatus::Available).await;
    assert_eq!(
        walk(&seen),
        [
            (
                ExporterStatus::AfterLeaseHook,
                "Running afterLease hooks".into()
            ),
            (ExporterStatus::Available, "Available for new lease".into()),
        ]
    );
    assert_eq!(seen[1].version, 4);
    let after_line = tokio::time::timeout(T, async {
        while let Some(r) = log_stream.next().await {
            let r = r.unwrap();
            if r.source == Some(LogSource::AfterLeaseHook as i32) {
                return r.message;
            }
        }
        panic!("LogStream ended")
    })
    .await
    .unwrap();
    assert_eq!(after_line, "cleaning up");

    // Driver calls are refused between sessions; the next session runs beforeLease again.
    let power = client.get("power").unwrap();
    let err = power.call("on", vec![]).await.unwrap_err();
    assert!(err.as_call().unwrap().is_not_ready(), "{err}");
    let seen = r.until(ExporterStatus::LeaseReady).await;
    assert_eq!(
        walk(&seen),
        [
            (
                ExporterStatus::BeforeLeaseHook,
                "Running beforeLease hook".into()
            ),
            (ExporterStatus::LeaseReady, "Ready for commands".into()),
        ]
    );
    assert_eq!(seen[1].version, 6);
    power.call("on", vec![]).await.unwrap();

    // Stopping runs afterLease again.
    std::fs::remove_file(&mark).unwrap();
    assert_eq!(r.stop().await, Outcome::Stopped);
    assert!(mark.exists(), "afterLease ran at shutdown");
}

#[tokio::test]
async fn without_hooks_the_session_is_ready_at_once_and_sessions_repeat() {
    let mut r = start("").await;
    let seen = r.until(ExporterStatus::LeaseReady).await;
    assert_eq!(
        walk(&seen),
        [(ExporterStatus::LeaseReady, "Ready for commands".into())]
    );
    let client = r.client().await;
    let power = client.get("power").unwrap();
    power.call("on", vec![]).await.unwrap();
    assert_eq!(power.call("get_state", vec![]).await.unwrap(), "on");
    let resp = client.end_session().await.unwrap();
    assert_eq!(
        (resp.success, resp.message.as_deref()),
        (true, Some("Session ended"))
    );
    // A second EndSession while the session is over.
    let again = client.end_session().await.unwrap();
    assert_eq!(again.message.as_deref(), Some("Session already ended"));
    r.until(ExporterStatus::LeaseReady).await;
    assert_eq!(power.call("get_state", vec![]).await.unwrap(), "on");
    assert_eq!(r.stop().await, Outcome::Stopped);
}

#[tokio::test]
async fn before_lease_warn_continues_with_a_hook_warning() {
    let mut r = start(&hooks(
        Some(("echo about to fail\nexit 3", "onFailure: warn")),
        None,
    ))
    .await;
    let seen = r.until(ExporterStatus::LeaseReady).await;
    assert_eq!(
        seen.last().unwrap().message,
        "[HOOK_WARNING] beforeLease hook warning: Hook failed with exit code 3"
    );
    let client = r.client().await;
    let logs = logs_until(&client, |m| m.contains("on_failure=warn")).await;
    let warning = logs.last().unwrap();
    assert_eq!(
        warning,
        &(
            "WARNING".to_owned(),
            "Hook failed with exit code 3 (on_failure=warn, continuing)".to_owned(),
            Some(LogSource::BeforeLeaseHook as i32)
        )
    );
    client
        .get("power")
        .unwrap()
        .call("on", vec![])
        .await
        .unwrap();
    r.stop().await;
}

#[tokio::test]
async fn before_lease_end_lease_fails_the_session_until_end_session() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("after");
    let after = format!("touch {}", mark.display());
    let mut r = start(&hooks(
        Some(("exit 4", "onFailure: endLease")),
        Some((&after, "")),
    ))
    .await;
    let seen = r.until(ExporterStatus::BeforeLeaseHookFailed).await;
    assert_eq!(
        seen.last().unwrap().message,
        "beforeLease hook failed (on_failure=endLease): Hook failed with exit code 4"
    );
    let client = r.client().await;
    let err = client
        .get("power")
        .unwrap()
        .call("on", vec![])
        .await
        .unwrap_err();
    assert!(err.as_call().unwrap().is_not_ready(), "{err}");
    // EndSession ends the failed session without afterLease; the next one fails again.
    let resp = client.end_session().await.unwrap();
    assert_eq!(
        resp.message.as_deref(),
        Some("Session ended (afterLease hook skipped: beforeLease hook failed)")
    );
    assert!(!mark.exists());
    r.until(ExporterStatus::BeforeLeaseHookFailed).await;
    // Stopping skips afterLease too (the session failed).
    assert_eq!(r.stop().await, Outcome::Stopped);
    assert!(!mark.exists());
}

#[tokio::test]
async fn before_lease_exit_stops_the_exporter() {
    let mut r = start(&hooks(Some(("exit 5", "onFailure: exit")), None)).await;
    let seen = r.until(ExporterStatus::BeforeLeaseHookFailed).await;
    let failed =
        "beforeLease hook failed (on_failure=exit, shutting down): Hook failed with exit code 5";
    assert_eq!(seen.last().unwrap().message, failed);
    // Clients can read the failure for a moment before the exporter goes.
    let client = r.client().await;
    let status = client.get_status().await.unwrap();
    assert_eq!(status.status, ExporterStatus::BeforeLeaseHookFailed as i32);
    assert_eq!(status.message.as_deref(), Some(failed));
    let seen = r.until(ExporterStatus::Offline).await;
    assert_eq!(
        walk(&seen),
        [(
            ExporterStatus::Offline,
            "Exporter shutting down due to beforeLease hook failure".into()
        )]
    );
    let addr = r.addr;
    assert_eq!(r.wait().await, Outcome::HookExit(HookKind::BeforeLease));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn after_lease_failure_modes() {
    // warn
    let mut r = start(&hooks(None, Some(("exit 6", "onFailure: warn")))).await;
    r.until(ExporterStatus::LeaseReady).await;
    let client = r.client().await;
    let resp = client.end_session().await.unwrap();
    assert_eq!(
        resp.message.as_deref(),
        Some("Session ended, afterLease hook warning: Hook failed with exit code 6")
    );
    let seen = r.until(ExporterStatus::Available).await;
    assert_eq!(
        seen.last().unwrap().message,
        "[HOOK_WARNING] afterLease hook warning: Hook failed with exit code 6"
    );
    r.stop().await;

    // endLease: reported, and the exporter goes on with a new session.
    let mut r = start(&hooks(None, Some(("exit 7", "onFailure: endLease")))).await;
    r.until(ExporterStatus::LeaseReady).await;
    let client = r.client().await;
    let resp = client.end_session().await.unwrap();
    assert!(resp.success);
    let status = client.get_status().await.unwrap();
    assert_eq!(status.status, ExporterStatus::AfterLeaseHookFailed as i32);
    assert_eq!(
        status.message.as_deref(),
        Some("afterLease hook failed (on_failure=endLease): Hook failed with exit code 7")
    );
    r.until(ExporterStatus::LeaseReady).await;
    r.stop().await;

    // exit: the exporter stops.
    let mut r = start(&hooks(None, Some(("exit 8", "onFailure: exit")))).await;
    r.until(ExporterStatus::LeaseReady).await;
    let client = r.client().await;
    let resp = client.end_session().await.unwrap();
    assert_eq!(
        resp.message.as_deref(),
        Some("Session ended, afterLease hook failed: Hook failed with exit code 8")
    );
    let seen = r.until(ExporterStatus::Offline).await;
    assert_eq!(
        seen.last().unwrap().message,
        "Exporter shutting down due to afterLease hook failure"
    );
    assert_eq!(r.wait().await, Outcome::HookExit(HookKind::AfterLease));
}

async fn read_pids(path: &Path) -> Vec<i32> {
    tokio::time::timeout(T, async {
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                let pids: Vec<i32> = text
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                if pids.len() == 2 {
                    return pids;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the hook wrote its pids")
}

#[tokio::test]
async fn a_hook_that_never_exits_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // A child that ignores SIGTERM, so the group needs SIGKILL too.
    let script = format!(
        "sh -c 'trap \"\" TERM; while :; do sleep 1; done' &\necho $! $$ > {}.tmp\nmv {}.tmp {}\necho waiting forever\nwait",
        pids.display(),
        pids.display(),
        pids.display()
    );
    let mut r = start(&hooks(Some((&script, "timeout: 1\nonFailure: warn")), None)).await;
    let got = read_pids(&pids).await;
    let seen = r.until(ExporterStatus::LeaseReady).await;
    assert_eq!(
        seen.last().unwrap().message,
        "[HOOK_WARNING] beforeLease hook warning: Hook timed out after 1 seconds"
    );
    for pid in got {
        assert!(
            !alive(pid),
            "process {pid} of the hook survived its timeout"
        );
    }
    r.stop().await;
}

#[tokio::test]
async fn stopping_interrupts_before_lease_and_force_interrupts_after_lease() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let mark = dir.path().join("after");
    let before = format!(
        "sleep 300 &\necho $! $$ > {p}.tmp\nmv {p}.tmp {p}\nwait",
        p = pids.display()
    );
    let after = format!("touch {}\nsleep 300", mark.display());
    let mut r = start(&hooks(Some((&before, "")), Some((&after, "")))).await;
    let got = read_pids(&pids).await;
    r.control.stop();
    r.until(ExporterStatus::AfterLeaseHook).await;
    for pid in &got {
        assert!(!alive(*pid), "beforeLease survived the stop");
    }
    tokio::time::timeout(T, async {
        while !mark.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    r.control.force();
    let seen = r.until(ExporterStatus::AfterLeaseHookFailed).await;
    assert_eq!(
        seen.last().unwrap().message,
        "afterLease hook failed: Hook interrupted: the exporter is stopping"
    );
    assert_eq!(r.wait().await, Outcome::Stopped);
}

#[tokio::test]
async fn missing_and_unreadable_scripts_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sh");
    let mut r = start(&format!(
        "hooks:\n  beforeLease:\n    script: {}\n    onFailure: warn\n  afterLease:\n    script: {}\n    onFailure: endLease\n",
        missing.display(),
        dir.path().display()
    ))
    .await;
    let seen = r.until(ExporterStatus::LeaseReady).await;
    assert_eq!(
        seen.last().unwrap().message,
        format!(
            "[HOOK_WARNING] beforeLease hook warning: Error executing hook: hook script '{}' does not exist",
            missing.display()
        )
    );
    let client = r.client().await;
    client.end_session().await.unwrap();
    let status = client.get_status().await.unwrap();
    assert_eq!(
        status.message.unwrap(),
        format!(
            "afterLease hook failed (on_failure=endLease): Error executing hook: hook script '{}' is not a regular file",
            dir.path().display()
        )
    );
    r.stop().await;
}

#[tokio::test]
async fn a_flooding_hook_is_rate_limited_and_the_exporter_keeps_serving() {
    let script = "i=0; while [ $i -lt 100000 ]; do echo flood line $i; i=$((i+1)); done; sleep 300";
    let mut r = start(&hooks(Some((script, "timeout: 3\nonFailure: warn")), None)).await;
    let seen_hook = r.until(ExporterStatus::BeforeLeaseHook).await;
    assert_eq!(seen_hook.len(), 1);
    // Served while the hook floods.
    let client = r.client().await;
    let status = client.get_status().await.unwrap();
    assert_eq!(status.status, ExporterStatus::BeforeLeaseHook as i32);
    let logs = logs_until(&client, |m| m.contains("lines of hook output suppressed")).await;
    assert!(
        logs.iter()
            .any(|l| l.1.starts_with("flood line ")
                && l.2 == Some(LogSource::BeforeLeaseHook as i32))
    );
    let seen = r.until(ExporterStatus::LeaseReady).await;
    assert_eq!(
        seen.last().unwrap().message,
        "[HOOK_WARNING] beforeLease hook warning: Hook timed out after 3 seconds"
    );
    r.stop().await;
}

#[tokio::test]
async fn passphrase_is_required_on_tcp_but_not_on_the_hook_socket() {
    let r = start_with(
        "",
        DirectOptions {
            passphrase: Some("s3cret".into()),
            ..plain()
        },
    )
    .await;
    let dial = |p: Option<&str>| Dial {
        tls: None,
        passphrase: p.map(str::to_owned),
    };
    for wrong in [None, Some("nope"), Some("s3cret ")] {
        match Client::dial(&r.target(), &dial(wrong)).await {
            Err(ClientError::Unauthenticated(m)) => assert_eq!(m, "invalid or missing passphrase"),
            other => panic!("{wrong:?}: {other:?}"),
        }
    }
    let client = Client::dial(&r.target(), &dial(Some("s3cret")))
        .await
        .unwrap();
    client.get_status().await.unwrap();
    // Streaming calls are refused with the same status.
    let bare = jumpstarter_core::transport::H2Channel::dial(&r.target(), &dial(None))
        .await
        .unwrap();
    let mut stub =
        jumpstarter_protocol::v1::exporter_service_client::ExporterServiceClient::with_origin(
            bare.clone(),
            bare.origin(),
        );
    let err = stub.log_stream(()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    // The hook socket takes no passphrase.
    let local = Client::connect(&Target::Unix(r.hook_socket.clone()))
        .await
        .unwrap();
    local.get_status().await.unwrap();
    // Wrong passphrases cost nothing: the session still serves.
    client.get_status().await.unwrap();
    r.stop().await;
}

#[tokio::test]
async fn tls_listener_with_trusted_wrong_and_no_certificates() {
    use jumpstarter_core::tls;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = write_ca(dir.path(), "good");
    let (other_ca, _, _) = write_ca(dir.path(), "other");
    let r = start_with(
        "",
        DirectOptions {
            tls: Some(tls::server_config(&cert, &key).unwrap()),
            passphrase: Some("pw".into()),
            ..plain()
        },
    )
    .await;
    let with_roots = |roots: &Path| Dial {
        tls: Some(
            tls::client_config(&tls::ServerTrust::Roots(Arc::new(
                tls::roots_from_pem_file(roots).unwrap(),
            )))
            .unwrap(),
        ),
        passphrase: Some("pw".into()),
    };
    // A client trusting another CA fails the handshake, clearly.
    let err = Client::dial(&r.target(), &with_roots(&other_ca))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TLS handshake with 127.0.0.1:") && err.contains("certificate"),
        "{err}"
    );
    // A plaintext client gets no session either.
    assert!(
        Client::dial(
            &r.target(),
            &Dial {
                tls: None,
                passphrase: Some("pw".into())
            }
        )
        .await
        .is_err()
    );
    // A client that connects, sends garbage and goes.
    {
        use tokio::io::AsyncWriteExt;
        let mut raw = tokio::net::TcpStream::connect(r.addr).await.unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    }
    // The trusted client works, as does one that does not check the certificate.
    let client = Client::dial(&r.target(), &with_roots(&ca)).await.unwrap();
    client.get_status().await.unwrap();
    let any = Dial {
        tls: Some(tls::client_config(&tls::ServerTrust::AnyCertificate).unwrap()),
        passphrase: Some("pw".into()),
    };
    let client2 = Client::dial(&r.target(), &any).await.unwrap();
    client2.get_status().await.unwrap();
    // Wrong passphrase over TLS.
    let mut bad = with_roots(&ca);
    bad.passphrase = Some("wrong".into());
    assert!(matches!(
        Client::dial(&r.target(), &bad).await,
        Err(ClientError::Unauthenticated(_))
    ));
    r.stop().await;
}

#[tokio::test]
async fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let exporter = Exporter::new(config(""), jumpstarter_drivers::builtin())
        .await
        .unwrap();
    let err = match exporter
        .start_direct(DirectOptions { port, ..plain() }, LogHub::new())
        .await
    {
        Err(e) => e.to_string(),
        Ok(_) => panic!("bound a port in use"),
    };
    assert_eq!(
        err,
        format!("cannot listen on 127.0.0.1:{port}: Address already in use (os error 98)")
    );
}

#[tokio::test]
async fn clients_that_vanish_do_not_disturb_the_session() {
    let mut r = start("").await;
    r.until(ExporterStatus::LeaseReady).await;
    // Connect and close at once; connect and stay silent; a LogStream dropped mid-way.
    drop(tokio::net::TcpStream::connect(r.addr).await.unwrap());
    let _silent = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    {
        let c = r.client().await;
        let mut s = Box::pin(c.log_stream().await.unwrap());
        let _ = s.next().await;
    }
    let c = r.client().await;
    c.get("power").unwrap().call("on", vec![]).await.unwrap();
    assert!(r.session.status().accepts_calls());
    r.stop().await;
}

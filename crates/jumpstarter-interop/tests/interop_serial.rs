//! Serial interop with upstream Jumpstarter 0.9.0, both ways, on loop:// and on a pty standing
//! in for a device:
//! * upstream's Python `PySerialClient` and upstream's `j serial pipe` against our exporter;
//! * our `j serial pipe` and our Rust client (with the `Console` expect helper) against
//!   upstream's exporter (`jmp shell --exporter-config` from the pinned venv).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jumpstarter_core::Client;
use jumpstarter_core::client::Code;
use jumpstarter_core::transport::Target;
use jumpstarter_drivers::serial::testing::PtyDevice;
use jumpstarter_drivers::serial::{ExpectError, SerialClient};
use jumpstarter_testkit::*;
use tokio::io::AsyncReadExt;

const T: Duration = Duration::from_secs(120);
const E: Duration = Duration::from_secs(30);

/// An exporter config with a `loop` driver on loop:// and a `dev` driver on `device`.
fn config(dir: &Path, device: &Path) -> PathBuf {
    let path = dir.join("serial.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata:
  namespace: default
  name: serial
export:
  loop:
    type: jumpstarter_driver_pyserial.driver.PySerial
    config:
      url: \"loop://\"
  dev:
    type: jumpstarter_driver_pyserial.driver.PySerial
    config:
      url: \"{}\"
      baudrate: 9600
",
            device.display()
        ),
    )
    .unwrap();
    path
}

/// A device that answers each line `L` with `got:<L in capitals>`.
fn shouting_device() -> PtyDevice {
    PtyDevice::with_line_responder(|line| {
        Some([b"got:", &line.to_ascii_uppercase()[..], b"\r\n"].concat())
    })
    .unwrap()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

const BIDI: &str = "Bidirectional mode (auto-detected piped stdin): stdin→serial, serial→stdout (Ctrl+C to exit)\n";
const CLOSED: &str = "\nSerial connection closed normally (end of stream).\n";

/// The same `j` session script for upstream's `j` and ours: loop:// round trip, a
/// long-running pipe to the device (stopped with `signal`), fire-and-forget, and a usage
/// error.
///
/// The long-running pipe comes before fire-and-forget on purpose: a client that ended its
/// input and then left keeps its stream open on our exporter until the device next talks
/// (the session only notices a vanished client when it has something to send it), and that
/// stale stream would take the device's answer away from a later pipe. See the report of the
/// serial work for the session-side fix.
fn pipe_script(signal: &str) -> String {
    format!(
        "printf 'hello serial\\n' | j loop pipe > loop.out 2> loop.err; echo \"loop-rc=$?\"; \
         printf 'ready\\n' | j dev pipe -o dev.log 2> dev.err & pid=$!; \
         for i in $(seq 1200); do grep -q 'got:READY' dev.log 2>/dev/null && break; sleep 0.05; done; \
         kill -{signal} $pid; wait $pid; echo \"dev-rc=$?\"; \
         printf 'fire\\n' | j dev pipe --no-output 2> fire.err; echo \"fire-rc=$?\"; \
         j loop pipe -i --no-input </dev/null 2> conflict.err; echo \"conflict-rc=$?\""
    )
}

fn check_pipe_results(dir: &Path, stdout: &str, dev: &PtyDevice) {
    assert!(stdout.contains("loop-rc=0\n"), "{stdout}");
    assert!(stdout.contains("fire-rc=0\n"), "{stdout}");
    assert!(stdout.contains("conflict-rc=1\n"), "{stdout}");
    assert_eq!(read(dir, "loop.out"), "hello serial\n");
    assert_eq!(read(dir, "loop.err"), format!("{BIDI}{CLOSED}"));
    assert_eq!(
        read(dir, "fire.err"),
        "Fire-and-forget mode (auto-detected piped stdin): stdin→serial, no output (exits at EOF)\n"
    );
    assert_eq!(read(dir, "dev.log"), "got:READY\r\n");
    assert!(
        read(dir, "dev.err").starts_with(
            "Bidirectional mode (auto-detected piped stdin) with logging to dev.log... (Ctrl+C to exit)\n"
        ),
        "{}",
        read(dir, "dev.err")
    );
    assert_eq!(
        read(dir, "conflict.err"),
        "Usage: j loop pipe [OPTIONS]\nTry 'j loop pipe --help' for help.\n\nError: Cannot use both --input and --no-input\n"
    );
    assert!(dev.wait_for(b"ready\nfire\n", E), "{:?}", dev.received());
}

#[test]
fn python_client_against_our_exporter() {
    let dev = shouting_device();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), dev.path());
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .current_dir(dir.path())
        .arg("shell")
        .arg("--exporter-config")
        .arg(&cfg)
        .arg("--")
        .arg(py())
        .arg(script("serial_client.py"))
        .args(["loop", "dev"]);
    let out = ok(&run_timeout(&mut cmd, T));
    // The summary is the last JSON line (the exporter's log lines are interleaved).
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or("");
    let json: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["client_class"], "PySerialClient", "{json}");
    assert_eq!(json["pexpect_loop"], true, "{json}");
    assert_eq!(json["pexpect_device"], true, "{json}");
    // close() ends the blocked receive the way upstream's does: end of stream.
    assert_eq!(json["after_close"], "EndOfStream", "{json}");
    assert_eq!(json["missing_arg"][0], "DriverError", "{json}");
    assert!(
        json["missing_arg"][1]
            .as_str()
            .unwrap()
            .contains("PySerial.set_dtr() missing 1 required positional argument: 'value'"),
        "{json}"
    );
    for (key, line) in [("device_set_dtr", "DTR"), ("device_set_rts", "RTS")] {
        assert_eq!(json[key][0], "DriverError", "{json}");
        let msg = json[key][1].as_str().unwrap();
        assert!(
            msg.contains(&format!("cannot set {line} on {}", dev.path().display())),
            "{msg}"
        );
        assert!(msg.contains("Inappropriate ioctl for device"), "{msg}");
    }
    assert!(dev.wait_for(b"ping\nsecond line\n", E));
}

#[test]
fn upstream_j_pipe_against_our_exporter() {
    let dev = shouting_device();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), dev.path());
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .current_dir(dir.path())
        .env("PATH", path_with_upstream())
        .arg("shell")
        .arg("--exporter-config")
        .arg(&cfg)
        .args(["--", "sh", "-c", &pipe_script("TERM")]);
    let out = ok(&run_timeout(&mut cmd, T));
    check_pipe_results(dir.path(), &out, &dev);
}

#[test]
fn our_j_pipe_against_upstream_exporter() {
    let dev = shouting_device();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), dev.path());
    let mut cmd = Command::new(upstream_jmp());
    clean(&mut cmd)
        .current_dir(dir.path())
        .env("PATH", path_with_ours())
        .arg("shell")
        .arg("--exporter-config")
        .arg(&cfg)
        .args(["--", "sh", "-c", &pipe_script("INT")]);
    let out = ok(&run_timeout(&mut cmd, T));
    // Ours stops on Ctrl-C (SIGINT) with upstream's message and exit code.
    assert!(out.contains("dev-rc=0\n"), "{out}");
    assert!(read(dir.path(), "dev.err").ends_with("\nStopped.\n"));
    check_pipe_results(dir.path(), &out, &dev);
}

/// Upstream's local exporter, stopped (its shell told to finish, then killed if need be) when
/// dropped, so a failing test leaves no process behind.
struct UpstreamSession {
    child: std::process::Child,
    done: PathBuf,
}

impl UpstreamSession {
    fn start(dir: &Path, cfg: &Path) -> (UpstreamSession, PathBuf) {
        let host_file = dir.join("host");
        let done = dir.join("done");
        let mut cmd = Command::new(upstream_jmp());
        clean(&mut cmd);
        cmd.current_dir(dir)
            .arg("shell")
            .arg("--exporter-config")
            .arg(cfg)
            .args([
                "--",
                "sh",
                "-c",
                &format!(
                    "echo \"$JUMPSTARTER_HOST\" > {h}.tmp && mv {h}.tmp {h}; while [ ! -e {d} ]; do sleep 0.1; done",
                    h = host_file.display(),
                    d = done.display()
                ),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let session = UpstreamSession {
            child: cmd.spawn().unwrap(),
            done,
        };
        let deadline = Instant::now() + T;
        while !host_file.exists() {
            assert!(Instant::now() < deadline, "upstream exporter did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let host = std::fs::read_to_string(&host_file).unwrap();
        (session, host.trim().into())
    }

    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = std::fs::write(&self.done, b"");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for UpstreamSession {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_and_console_against_upstream_exporter() {
    let mut dev = shouting_device();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), dev.path());
    let (mut upstream, socket) = UpstreamSession::start(dir.path(), &cfg);
    let client = Client::connect(&Target::Unix(socket)).await.unwrap();

    // loop://: the console round trip; modem lines accepted. (Upstream's close() does not end
    // loop:// streams: it only closes the last opened real port.)
    let lp = SerialClient::new(client.get("loop").unwrap().clone());
    assert_eq!(
        lp.driver.client_class(),
        jumpstarter_drivers::serial::PYSERIAL_CLIENT
    );
    let mut console = lp.console().await.unwrap();
    console.send_line("hello upstream").await.unwrap();
    let m = console.expect(r"hello (\w+)\n", E).await.unwrap();
    assert_eq!(m.group_str(1).as_deref(), Some("upstream"));
    lp.set_dtr(true).await.unwrap();
    lp.set_rts(false).await.unwrap();
    console.shutdown().await.unwrap();
    let err = console.expect("never", E).await.unwrap_err();
    assert!(matches!(err, ExpectError::Eof { .. }), "{err}");

    // The device: lines answered, modem-line errors as upstream reports them.
    let serial = SerialClient::new(client.get("dev").unwrap().clone());
    let mut console = serial.console().await.unwrap();
    console.send_line("ping").await.unwrap();
    console.expect_exact("got:PING\r\n", E).await.unwrap();
    let err = serial.set_dtr(true).await.unwrap_err();
    let call = err.as_call().unwrap();
    assert_eq!(call.code, Code::Unknown, "{err}");
    assert!(
        call.message.contains("Inappropriate ioctl for device"),
        "{err}"
    );
    // The stream survived the failed call; close() ends it (normally).
    console.send_line("still").await.unwrap();
    console.expect_exact("got:STILL\r\n", E).await.unwrap();
    serial.close().await.unwrap();
    let err = console.expect("never", E).await.unwrap_err();
    assert!(matches!(err, ExpectError::Eof { .. }), "{err}");

    // Unplugging the device ends the stream. (Upstream sends GOAWAY before aborting the RPC,
    // so its clients see a normal end of stream; ours reports the loss as an error.) The
    // exporter keeps serving.
    let mut raw = serial.connect().await.unwrap();
    dev.hang_up();
    let mut rest = Vec::new();
    let r = tokio::time::timeout(E, raw.read_to_end(&mut rest))
        .await
        .expect("the stream ends");
    assert!(rest.is_empty(), "{r:?} {rest:?}");
    let mut console = lp.console().await.unwrap();
    console.send_line("after unplug").await.unwrap();
    console.expect_exact("after unplug\n", E).await.unwrap();
    drop(console);
    assert!(upstream.stop().is_some(), "upstream exporter did not stop");
}

//! Our `j` and our Rust client library against upstream Jumpstarter 0.9.0's exporter, started by
//! upstream's `jmp shell --exporter-config`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jumpstarter_core::Client;
use jumpstarter_core::transport::Target;
use jumpstarter_drivers::network::NetworkClient;
use jumpstarter_drivers::power::{PowerClient, PowerReading};
use jumpstarter_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(120);

/// The demo config plus an upstream Shell driver.
fn upstream_config(dir: &Path, tcp: u16, udp: u16) -> std::path::PathBuf {
    let path = demo_config(dir, tcp, udp);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "  sh:\n    type: jumpstarter_driver_shell.driver.Shell\n    config:\n      methods:\n        hello: \"echo hello $1\"\n        code: \"exit $1\"\n",
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn our_j_inside_upstream_shell() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = tcp_upper_server();
    let cfg = upstream_config(dir.path(), tcp, udp_echo_server());
    let mut cmd = Command::new(upstream_jmp());
    clean(&mut cmd);
    cmd.current_dir(dir.path())
        .env("PATH", path_with_ours())
        .arg("shell")
        .arg("--exporter-config")
        .arg(&cfg)
        .args([
            "--",
            "sh",
            "-c",
            "set -e; j power on; j power read; j alias off; j group psu2 on; j tcp address; \
             echo 'ping over tcp' | j tcp connect; echo hello-echo | j echo connect; echo 'via unix' | j unix connect; \
             j sh hello world; if j sh code 3; then exit 13; else echo \"code-exit=$?\"; fi; \
             if j hidden address 2>err1; then exit 10; fi; if j echo address 2>err2; then exit 11; fi; \
             if j power nosuch 2>err3; then exit 12; fi; cat err1 err2 err3; \
             j tcp forward-tcp 0 > addr & pid=$!; \
             for i in $(seq 100); do [ -s addr ] && break; sleep 0.05; done; \
             python3 -c \"import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1]))); s.sendall(b'forwarded'); s.shutdown(socket.SHUT_WR); print(s.recv(100).decode())\" $(cut -d: -f2 addr); \
             kill -INT $pid; wait $pid; echo \"forward-exit=$?\"",
        ]);
    let out = ok(&run_timeout(&mut cmd, T));
    let reading = "voltage=0.0 V  current=0.0 A  apparent_power=0.0 VA\nvoltage=5.0 V  current=2.0 A  apparent_power=10.0 VA\n";
    assert!(out.contains(reading), "{out}");
    assert!(out.contains(&format!("127.0.0.1:{tcp}\n")), "{out}");
    assert!(out.contains("PING OVER TCP\n"), "{out}");
    assert!(out.contains("hello-echo\n"), "{out}");
    assert!(out.contains("VIA UNIX\n"), "{out}");
    // Native shell commands: the script's output, and its exit code as j's.
    assert!(out.contains("\nhello world\n"), "{out}");
    assert!(out.contains("\ncode-exit=3\n"), "{out}");
    assert!(
        out.contains("Error: enable_address mode is not true in the exporter configuration"),
        "{out}"
    );
    assert!(
        out.contains("echo has no direct address: its driver does not export `address`"),
        "{out}"
    );
    assert!(out.contains("No such command 'nosuch'"), "{out}");
    assert!(out.contains("FORWARDED\nforward-exit=0\n"), "{out}");
}

/// Upstream's local exporter, stopped (its shell told to finish, then killed if need be) when
/// dropped, so a failing test leaves no process behind.
struct UpstreamSession {
    child: std::process::Child,
    done: std::path::PathBuf,
}

impl UpstreamSession {
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

/// Starts upstream's local exporter; returns it and its session socket path.
fn upstream_session(dir: &Path, cfg: &Path) -> (UpstreamSession, std::path::PathBuf) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_library_against_upstream_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = tcp_upper_server();
    let cfg = upstream_config(dir.path(), tcp, udp_echo_server());
    let (mut upstream, socket) = upstream_session(dir.path(), &cfg);

    let client = Client::connect(&Target::Unix(socket)).await.unwrap();
    assert_eq!(
        client.root().description(),
        Some("Demo exporter for interop tests")
    );
    let power = PowerClient::new(client.get("power").unwrap().clone());
    assert_eq!(power.driver.description(), Some("Main PSU"));
    assert_eq!(
        power.driver.methods_description()["on"],
        "Turn it on (custom)"
    );
    assert_eq!(client.get("alias").unwrap().uuid(), power.driver.uuid());
    power.on().await.unwrap();
    let readings: Vec<PowerReading> = power
        .read()
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(
        readings,
        [
            PowerReading {
                voltage: 0.0,
                current: 0.0
            },
            PowerReading {
                voltage: 5.0,
                current: 2.0
            }
        ]
    );
    PowerClient::new(client.get("group.psu2").unwrap().clone())
        .off()
        .await
        .unwrap();

    // Upstream's error codes reach the Rust client unchanged.
    let err = power.driver.call("read", vec![]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "DriverCall 'read' failed with gRPC NOT_FOUND: method read missing marker marker_drivercall"
    );
    let err = power
        .driver
        .call("on", vec![serde_json::json!(1)])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "DriverCall 'on' failed with gRPC UNKNOWN: MockPower.on() takes 1 positional argument but 2 were given"
    );
    let hidden = NetworkClient::new(client.get("hidden").unwrap().clone());
    assert!(
        hidden
            .address()
            .await
            .unwrap_err()
            .as_call()
            .unwrap()
            .is_invalid_argument()
    );

    // Byte streams: echo (Python never ends the RPC; EOF is the GOAWAY frame), TCP, UDP.
    let echo = NetworkClient::new(client.get("echo").unwrap().clone());
    let mut s = echo.connect().await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    s.write_all(&[9u8; 200_000]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest.len(), 200_000);

    let tcp_net = NetworkClient::new(client.get("tcp").unwrap().clone());
    assert_eq!(
        tcp_net.address().await.unwrap(),
        format!("tcp://127.0.0.1:{tcp}")
    );
    let mut s = tcp_net.connect().await.unwrap();
    s.write_all(b"ping over tcp").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"PING OVER TCP");

    let unix = NetworkClient::new(client.get("unix").unwrap().clone());
    let mut s = unix.connect().await.unwrap();
    s.write_all(b"ping over unix").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"PING OVER UNIX");

    let udp = NetworkClient::new(client.get("udp").unwrap().clone());
    let mut s = udp.connect().await.unwrap();
    for d in [&b"d1"[..], b"d2"] {
        s.write_all(d).await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], [&b"echo:"[..], d].concat());
    }
    drop(s);

    // Generic streaming call on a driver without a native Rust client.
    let sh = client.get("sh").unwrap();
    let items = sh
        .streaming_call_collect(
            "call_method",
            vec![
                serde_json::json!("hello"),
                serde_json::json!({}),
                serde_json::json!("x"),
            ],
        )
        .await
        .unwrap();
    // Items are [stdout, stderr, returncode]; how output is chunked depends on timing.
    let stdout: String = items.iter().map(|i| i[0].as_str().unwrap()).collect();
    assert_eq!(stdout, "hello x\n");
    assert_eq!(items.last().unwrap()[2], serde_json::json!(0));
    assert!(
        items[..items.len() - 1].iter().all(|i| i[2].is_null()),
        "{items:?}"
    );

    assert!(upstream.stop().is_some(), "upstream exporter did not stop");
}

//! `PySerial` through a real session: loop://, a pty standing in for a tty, socket://, and
//! config errors.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jumpstarter_config::ExporterConfig;
use jumpstarter_core::client::{Code, DriverStream};
use jumpstarter_core::testing::{Served, serve_with_logs};
use jumpstarter_core::{ClientError, DriverTree, Instance, Level, LogHub, Logger};
use nix::sys::termios::{self, BaudRate, ControlFlags, LocalFlags};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::testing::PtyDevice;
use super::*;

const T: Duration = Duration::from_secs(20);

fn driver(config: SerialConfig, hub: &LogHub) -> Instance {
    let logger = hub.driver_logger("PySerial", Level::Debug);
    Instance::new(
        Arc::new(PySerial::new(config, logger).expect("driver builds")),
        PYSERIAL,
    )
}

async fn serve_drivers(drivers: Vec<(&str, SerialConfig)>) -> (Served, LogHub) {
    let hub = LogHub::new();
    let tree = DriverTree::composite(
        drivers
            .into_iter()
            .map(|(name, cfg)| (name, driver(cfg, &hub)))
            .collect(),
    );
    (serve_with_logs(tree, hub.clone()).await.unwrap(), hub)
}

fn client(served: &Served, name: &str) -> SerialClient {
    SerialClient::new(served.client.get(name).unwrap().clone())
}

fn logs(hub: &LogHub) -> Vec<String> {
    hub.subscribe().0.into_iter().map(|r| r.message).collect()
}

async fn read_some(s: &mut DriverStream) -> Vec<u8> {
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .expect("read in time")
        .unwrap();
    buf[..n].to_vec()
}

async fn read_n(s: &mut DriverStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(T, s.read_exact(&mut buf))
        .await
        .expect("read in time")
        .unwrap();
    buf
}

fn call_code(err: &ClientError) -> Code {
    err.as_call().expect("a call error").code
}

#[tokio::test]
async fn loop_echoes_and_ends_after_the_clients_input() {
    let (served, hub) = serve_drivers(vec![("serial", SerialConfig::new("loop://"))]).await;
    let serial = client(&served, "serial");
    assert_eq!(serial.driver.client_class(), PYSERIAL_CLIENT);
    let mut s = serial.connect().await.unwrap();
    s.write_all(b"hello").await.unwrap();
    assert_eq!(read_n(&mut s, 5).await, b"hello");
    s.write_all(b"bye").await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"bye");
    // Modem lines and close are accepted (and do nothing) on loop://.
    serial.set_dtr(true).await.unwrap();
    serial.set_rts(false).await.unwrap();
    serial.close().await.unwrap();
    let logs = logs(&hub);
    assert!(
        logs.contains(&"Connecting to loop://, baudrate: 115200".to_owned()),
        "{logs:?}"
    );
    // Upstream logs disconnections of real ports only.
    assert!(
        !logs.iter().any(|l| l.starts_with("Disconnected")),
        "{logs:?}"
    );
    served.shutdown().await;
}

/// `value` is taken as Python takes its truth; anything else, null included, is refused with
/// the driver's own text (INVALID_ARGUMENT), and a missing one is Python's TypeError.
#[tokio::test]
async fn modem_line_values_are_checked_by_the_driver() {
    let (served, _hub) = serve_drivers(vec![("serial", SerialConfig::new("loop://"))]).await;
    let serial = client(&served, "serial");
    for ok in [json!(true), json!(0), json!(2.5)] {
        serial.driver.call("set_dtr", vec![ok]).await.unwrap();
    }
    for (bad, shown) in [
        (json!(null), "null"),
        (json!("yes"), "\"yes\""),
        (json!([1]), "[1]"),
    ] {
        let err = serial.driver.call("set_rts", vec![bad]).await.unwrap_err();
        assert_eq!(call_code(&err), Code::InvalidArgument, "{err}");
        assert_eq!(
            err.as_call().unwrap().message,
            format!("set_rts: value must be a boolean, got {shown}")
        );
    }
    let err = serial.driver.call("set_dtr", vec![]).await.unwrap_err();
    assert_eq!(
        err.as_call().unwrap().message,
        "PySerial.set_dtr() missing 1 required positional argument: 'value'"
    );
    served.shutdown().await;
}

#[tokio::test]
async fn close_ends_active_streams_and_later_connects_work() {
    let (served, _hub) = serve_drivers(vec![("serial", SerialConfig::new("loop://"))]).await;
    let serial = client(&served, "serial");
    let mut a = serial.connect().await.unwrap();
    let mut b = serial.connect().await.unwrap();
    a.write_all(b"x").await.unwrap();
    assert_eq!(read_n(&mut a, 1).await, b"x");
    let blocked = tokio::spawn(async move {
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.map(|_| rest)
    });
    serial.close().await.unwrap();
    // Both streams end normally (end of stream), as when upstream closes the port.
    let rest = tokio::time::timeout(T, blocked).await.unwrap().unwrap();
    assert_eq!(rest.unwrap(), b"");
    let mut rest = Vec::new();
    tokio::time::timeout(T, a.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let mut c = serial.connect().await.unwrap();
    c.write_all(b"again").await.unwrap();
    assert_eq!(read_n(&mut c, 5).await, b"again");
    served.shutdown().await;
}

/// Structure, not speed: with `cps` every byte travels alone (one frame per byte, in order);
/// without it a write comes back in one piece.
#[tokio::test]
async fn cps_sends_one_byte_at_a_time() {
    let mut slow = SerialConfig::new("loop://");
    slow.cps = serde_json::Number::from_f64(2000.0);
    let (served, hub) =
        serve_drivers(vec![("slow", slow), ("fast", SerialConfig::new("loop://"))]).await;
    let mut s = client(&served, "slow").connect().await.unwrap();
    s.write_all(b"abcdef").await.unwrap();
    let mut reads = Vec::new();
    while reads.len() < 6 {
        reads.push(read_some(&mut s).await);
    }
    assert_eq!(
        reads,
        [b"a", b"b", b"c", b"d", b"e", b"f"].map(|b| b.to_vec())
    );
    let mut f = client(&served, "fast").connect().await.unwrap();
    f.write_all(b"abcdef").await.unwrap();
    assert_eq!(read_some(&mut f).await, b"abcdef");
    assert!(
        logs(&hub).contains(&"Connecting to loop://, baudrate: 115200, cps: 2000.0".to_owned()),
        "{:?}",
        logs(&hub)
    );
    served.shutdown().await;
}

fn pty_config(dev: &PtyDevice) -> SerialConfig {
    SerialConfig::new(dev.path().to_string_lossy())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pty_carries_bytes_both_ways_with_the_configured_line_settings() {
    let dev = PtyDevice::open().unwrap();
    let before = dev.termios().unwrap();
    assert!(before.control_flags.contains(ControlFlags::HUPCL));
    let mut cfg = pty_config(&dev);
    cfg.baudrate = 9600;
    cfg.disable_hupcl = true;
    let url = cfg.url.clone();
    let (served, hub) = serve_drivers(vec![("serial", cfg)]).await;
    let serial = client(&served, "serial");
    let mut s = serial.connect().await.unwrap();

    let t = dev.termios().unwrap();
    assert_eq!(termios::cfgetospeed(&t), BaudRate::B9600);
    assert_eq!(termios::cfgetispeed(&t), BaudRate::B9600);
    assert!(!t.control_flags.contains(ControlFlags::HUPCL));
    assert!(!t.control_flags.contains(ControlFlags::PARENB));
    assert!(!t.control_flags.contains(ControlFlags::CSTOPB));
    assert_eq!(t.control_flags & ControlFlags::CSIZE, ControlFlags::CS8);
    assert!(
        !t.local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO)
    );

    s.write_all(b"to the device\n").await.unwrap();
    assert!(dev.wait_for(b"to the device\n", T));
    dev.write(b"from the device\r\n").unwrap();
    assert_eq!(read_n(&mut s, 17).await, b"from the device\r\n");
    let binary: Vec<u8> = (0..=255u8).collect();
    s.write_all(&binary).await.unwrap();
    assert!(dev.wait_for(&binary, T));

    // The client's end of input is not the end of the line: the device keeps talking.
    s.shutdown().await.unwrap();
    dev.write(b"still here").unwrap();
    assert_eq!(read_n(&mut s, 10).await, b"still here");
    drop(s);

    let logs = logs(&hub);
    assert!(
        logs.contains(&format!("Connecting to {url}, baudrate: 9600")),
        "{logs:?}"
    );
    assert!(
        logs.contains(&format!("Disabled HUPCL on {url}")),
        "{logs:?}"
    );
    // The session drops the stream once it notices the client is gone. The client had ended
    // its input already, so that is when the device next talks and the bytes have nowhere to go.
    let deadline = tokio::time::Instant::now() + T;
    while !crate::serial::tests::logs(&hub).contains(&format!("Disconnected from {url}")) {
        assert!(tokio::time::Instant::now() < deadline, "no disconnect log");
        dev.write(b".").unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served.shutdown().await;
}

/// Linux ptys have no modem control lines: TIOCMBIS fails with ENOTTY. The driver reports it
/// as an error (UNKNOWN, like upstream's OSError) that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modem_lines_on_a_pty_are_a_clear_error() {
    let dev = PtyDevice::open().unwrap();
    let (served, _hub) = serve_drivers(vec![("serial", pty_config(&dev))]).await;
    let serial = client(&served, "serial");
    let mut s = serial.connect().await.unwrap();
    for (err, line) in [
        (serial.set_dtr(true).await.unwrap_err(), "DTR"),
        (serial.set_rts(false).await.unwrap_err(), "RTS"),
    ] {
        assert_eq!(call_code(&err), Code::Unknown, "{err}");
        let msg = &err.as_call().unwrap().message;
        assert!(
            msg.starts_with(&format!("cannot set {line} on {}", dev.path().display())),
            "{msg}"
        );
        assert!(msg.contains("Inappropriate ioctl for device"), "{msg}");
        assert!(msg.contains("pseudo-terminals never have them"), "{msg}");
    }
    // Bad arguments are the client's fault.
    let err = serial
        .driver
        .call("set_dtr", vec![json!("yes")])
        .await
        .unwrap_err();
    assert_eq!(call_code(&err), Code::InvalidArgument, "{err}");
    let err = serial.driver.call("set_rts", vec![]).await.unwrap_err();
    assert_eq!(
        err.as_call().unwrap().message,
        "PySerial.set_rts() missing 1 required positional argument: 'value'"
    );
    // The failed calls left the active stream alone.
    dev.write(b"ok").unwrap();
    assert_eq!(read_n(&mut s, 2).await, b"ok");
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_releases_the_tty_and_ends_the_stream() {
    let dev = PtyDevice::open().unwrap();
    let (served, _hub) = serve_drivers(vec![("serial", pty_config(&dev))]).await;
    let serial = client(&served, "serial");
    let mut s = serial.connect().await.unwrap();
    let reader = tokio::spawn(async move {
        let mut rest = Vec::new();
        let r = s.read_to_end(&mut rest).await.map(|_| rest);
        (r, s)
    });
    serial.close().await.unwrap();
    let (rest, mut s) = tokio::time::timeout(T, reader).await.unwrap().unwrap();
    assert_eq!(rest.unwrap(), b"");
    // Writing after close reaches nobody (the stream is over); a new stream works.
    let _ = s.write_all(b"late").await;
    let mut s2 = serial.connect().await.unwrap();
    s2.write_all(b"new").await.unwrap();
    assert!(dev.wait_for(b"new", T));
    assert!(!dev.received().windows(4).any(|w| w == b"late"));
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_device_ends_its_stream_with_an_error_and_the_exporter_goes_on() {
    let mut dev = PtyDevice::open().unwrap();
    let (served, _hub) = serve_drivers(vec![
        ("serial", pty_config(&dev)),
        ("loop", SerialConfig::new("loop://")),
    ])
    .await;
    let serial = client(&served, "serial");
    let mut s = serial.connect().await.unwrap();
    dev.write(b"booting").unwrap();
    assert_eq!(read_n(&mut s, 7).await, b"booting");
    dev.hang_up();
    let mut rest = Vec::new();
    let err = tokio::time::timeout(T, s.read_to_end(&mut rest))
        .await
        .expect("the stream ends")
        .unwrap_err();
    assert!(err.to_string().contains("device disconnected"), "{err}");
    // The session keeps serving: other drivers, and calls to this one.
    serial.close().await.unwrap();
    let err = serial.connect().await.unwrap_err();
    assert_eq!(call_code(&err), Code::Unknown, "{err}");
    let mut l = client(&served, "loop").connect().await.unwrap();
    l.write_all(b"alive").await.unwrap();
    assert_eq!(read_n(&mut l, 5).await, b"alive");
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cps_throttled_writes_reach_a_pty_complete_and_in_order() {
    let dev = PtyDevice::open().unwrap();
    let mut cfg = pty_config(&dev);
    cfg.cps = Some(5000.into());
    let (served, hub) = serve_drivers(vec![("serial", cfg)]).await;
    let mut s = client(&served, "serial").connect().await.unwrap();
    s.write_all(b"slow ").await.unwrap();
    s.write_all(b"and steady").await.unwrap();
    assert!(dev.wait_for(b"slow and steady", T));
    assert_eq!(dev.received(), b"slow and steady");
    assert!(
        logs(&hub).iter().any(|l| l.ends_with(", cps: 5000")),
        "{:?}",
        logs(&hub)
    );
    served.shutdown().await;
}

async fn tcp_echo() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) if &buf[..n] == b"hang up" => return,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn socket_urls_talk_tcp() {
    let (port, _server) = tcp_echo().await;
    let url = format!("socket://127.0.0.1:{port}");
    let (served, _hub) = serve_drivers(vec![("serial", SerialConfig::new(&url))]).await;
    let serial = client(&served, "serial");
    let mut s = serial.connect().await.unwrap();
    s.write_all(b"over tcp").await.unwrap();
    assert_eq!(read_n(&mut s, 8).await, b"over tcp");
    // Like pyserial's socket handler: no half-close toward the server...
    s.shutdown().await.unwrap();
    serial.set_dtr(true).await.unwrap();
    // ...and the server closing the connection is a lost connection, not an end of stream.
    let mut s = serial.connect().await.unwrap();
    s.write_all(b"hang up").await.unwrap();
    let mut rest = Vec::new();
    let err = tokio::time::timeout(T, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("device disconnected"), "{err}");
    served.shutdown().await;
}

#[tokio::test]
async fn missing_devices() {
    let missing = "/dev/jumpstarter-no-such-tty";
    // check_present: building fails and says which device.
    let err = PySerial::new(SerialConfig::new(missing), Logger::detached("t"))
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("could not open port {missing}: ")),
        "{msg}"
    );
    assert!(msg.contains("check_present: false"), "{msg}");
    // A closed TCP port is missing too.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("socket://127.0.0.1:{closed}");
    let err = PySerial::new(SerialConfig::new(&url), Logger::detached("t"))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with(&format!("could not open port {url}: ")),
        "{err}"
    );
    // Without it the driver builds, and connect fails cleanly.
    let mut lazy = SerialConfig::new(missing);
    lazy.check_present = false;
    let mut lazy_tcp = SerialConfig::new(&url);
    lazy_tcp.check_present = false;
    let (served, _hub) = serve_drivers(vec![("tty", lazy), ("tcp", lazy_tcp)]).await;
    for name in ["tty", "tcp"] {
        let err = client(&served, name).connect().await.unwrap_err();
        assert_eq!(call_code(&err), Code::Unknown, "{err}");
        assert!(
            err.as_call()
                .unwrap()
                .message
                .starts_with("could not open port"),
            "{err}"
        );
        // ...and the driver keeps answering.
        client(&served, name).close().await.unwrap();
    }
    served.shutdown().await;
}

fn build(yaml_config: &str) -> Result<DriverTree, String> {
    let text = format!(
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {{namespace: default, name: t}}\nexport:\n  serial:\n    type: {PYSERIAL}\n    config:\n{yaml_config}"
    );
    let cfg = ExporterConfig::parse(&text, Path::new("e.yaml")).map_err(|e| e.to_string())?;
    DriverTree::from_config(&cfg, crate::builtin().drivers(), &LogHub::new())
        .map_err(|e| e.to_string())
}

#[test]
fn config_errors_point_into_the_file() {
    let loop_ok = build("      url: loop://\n      baudrate: 9600\n      cps: 10\n");
    assert!(loop_ok.is_ok(), "{:?}", loop_ok.err());
    assert!(build("      url: loop://\n      baudrate: \"57600\"\n").is_ok());

    let cases = [
        (
            "      url: /dev/jumpstarter-no-such-tty\n",
            "e.yaml:8:7: config.url: could not open port /dev/jumpstarter-no-such-tty: ",
        ),
        (
            "      url: rfc2217://lab:2217\n",
            "e.yaml:8:7: config.url: unsupported serial URL `rfc2217://lab:2217`: ",
        ),
        (
            "      url: hwgrep://0403:6001\n",
            "e.yaml:8:7: config.url: unsupported serial URL `hwgrep://0403:6001`: ",
        ),
        (
            "      url: loop://\n      parity: N\n",
            "e.yaml:9:7: config.parity: unknown field `parity`",
        ),
        ("      baudrate: 9600\n", "config: missing field `url`"),
        (
            "      url: loop://\n      baudrate: 0\n",
            "e.yaml:9:17: config.baudrate: the baud rate must be a positive whole number",
        ),
        (
            "      url: loop://\n      cps: fast\n",
            "e.yaml:9:12: config.cps: ",
        ),
    ];
    for (config, want) in cases {
        let err = build(config).err().unwrap();
        assert!(err.contains(want), "{config}: {err}\nwanted: {want}");
    }
    let err = build("      url: spy:///dev/ttyUSB0\n").err().unwrap();
    assert!(
        err.ends_with(
            "supported forms: a device path (e.g. /dev/ttyUSB0), loop://, or socket://HOST:PORT"
        ),
        "{err}"
    );
    // check_present: false defers the missing device to connect time.
    assert!(build("      url: /dev/jumpstarter-no-such-tty\n      check_present: false\n").is_ok());
}

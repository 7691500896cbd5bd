//! Helpers for tests that run the real binaries and the pinned upstream Python packages.
#![allow(dead_code)]

pub mod ctl;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_owned()
}

/// The venv with upstream Jumpstarter 0.9.0 (`scripts/setup-interop-venv.sh`). Interop tests
/// never skip: without the venv they fail and say how to create it.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("JMP_INTEROP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    assert!(
        venv.join("bin/python").is_file(),
        "the upstream Jumpstarter 0.9.0 venv is missing at {}: run scripts/setup-interop-venv.sh",
        venv.display()
    );
    venv
}

pub fn py() -> PathBuf {
    venv().join("bin/python")
}

pub fn upstream_jmp() -> PathBuf {
    venv().join("bin/jmp")
}

pub fn upstream_j() -> PathBuf {
    venv().join("bin/j")
}

pub fn jmp() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jmp"))
}

pub fn j() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_j"))
}

pub fn script(name: &str) -> PathBuf {
    workspace_root().join("tests/interop").join(name)
}

/// A PATH with our binaries first (so `j` inside a shell is ours).
pub fn path_with_ours() -> String {
    let ours = jmp().parent().unwrap().to_owned();
    format!(
        "{}:{}",
        ours.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A PATH with the upstream venv first (so `j` inside a shell is upstream's).
pub fn path_with_upstream() -> String {
    format!(
        "{}:{}",
        venv().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Environment every test command gets: no inherited shell/session state.
pub fn clean(cmd: &mut Command) -> &mut Command {
    for k in [
        "JUMPSTARTER_HOST",
        "JMP_DRIVERS_ALLOW",
        "JMP_DRIVERS_UNSAFE",
        "JMP_LEASE",
        "JMP_GRPC_INSECURE",
        "JMP_GRPC_PASSPHRASE",
        "JUMPSTARTER_GRPC_INSECURE",
        "RUST_LOG",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("TERM", "dumb")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
}

/// Runs a command with a deadline; panics (after killing it) when the deadline passes.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    wait_output(child, timeout, &format!("{cmd:?}"))
}

pub fn wait_output(mut child: Child, timeout: Duration, what: &str) -> Output {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
            let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
            panic!("timed out after {timeout:?}: {what}\nstdout:\n{out}\nstderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A TCP server that answers each connection with the upper-cased bytes it received, after
/// the client shuts down its write side. Returns the port.
pub fn tcp_upper_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = c.read_to_end(&mut buf);
                let _ = c.write_all(&buf.to_ascii_uppercase());
            });
        }
    });
    port
}

/// A UDP server that echoes each datagram back, prefixed with `echo:`. Returns the port.
pub fn udp_echo_server() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                return;
            };
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&reply, from);
        }
    });
    port
}

/// A unix socket server that answers like [`tcp_upper_server`], at `dir/unix.sock`.
pub fn unix_upper_server(dir: &Path) -> PathBuf {
    let path = dir.join("unix.sock");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = c.read_to_end(&mut buf);
                let _ = c.write_all(&buf.to_ascii_uppercase());
            });
        }
    });
    path
}

/// The exporter config used by the interop tests: every issue-2 driver, an alias and a
/// nested composite, with TCP/UDP drivers pointing at local test servers.
pub fn demo_config(dir: &Path, tcp_port: u16, udp_port: u16) -> PathBuf {
    let unix = unix_upper_server(dir);
    let path = dir.join("demo.yaml");
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata:
  namespace: default
  name: demo
description: Demo exporter for interop tests
export:
  power:
    type: jumpstarter_driver_power.driver.MockPower
    description: Main PSU
    methods_description:
      "on": Turn it on (custom)
  sync:
    type: jumpstarter_driver_power.driver.SyncMockPower
  echo:
    type: jumpstarter_driver_network.driver.EchoNetwork
  tcp:
    type: jumpstarter_driver_network.driver.TcpNetwork
    config:
      host: 127.0.0.1
      port: {tcp_port}
  hidden:
    type: jumpstarter_driver_network.driver.TcpNetwork
    config:
      host: 127.0.0.1
      port: {tcp_port}
      enable_address: false
  udp:
    type: jumpstarter_driver_network.driver.UdpNetwork
    config:
      host: 127.0.0.1
      port: {udp_port}
  unix:
    type: jumpstarter_driver_network.driver.UnixNetwork
    config:
      path: {unix}
  group:
    children:
      psu2:
        type: jumpstarter_driver_power.driver.MockPower
  alias:
    ref: power
"#,
            unix = unix.display()
        ),
    )
    .unwrap();
    path
}

pub const GIB: usize = 1 << 30;

/// Writes a 1 GiB image (a pseudo-random 4 MiB block, 256 times, each with its index so no two
/// blocks are equal) and returns its sha256.
pub fn write_gib(path: &Path) -> String {
    use sha2::Digest;
    use std::io::Write;
    let mut block: Vec<u8> = (0..(4u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut sha = sha2::Sha256::new();
    for i in 0..(GIB / block.len()) {
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        f.write_all(&block).unwrap();
        sha.update(&block);
    }
    f.flush().unwrap();
    hex::encode(sha.finalize())
}

/// sha256 of a file, decoded with `e` first if given.
pub async fn sha256_of(path: &Path, e: Option<jumpstarter_core::Encoding>) -> (String, u64) {
    use sha2::Digest;
    let file = tokio::fs::File::open(path).await.unwrap();
    let mut r: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> = match e {
        Some(e) => jumpstarter_core::resource::encoding::decoder(e, file),
        None => Box::pin(file),
    };
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = tokio::io::AsyncReadExt::read(&mut r, &mut buf)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        total += n as u64;
    }
    (hex::encode(sha.finalize()), total)
}

/// A free TCP port on 127.0.0.1 (for upstream's `jmp run`, which wants a real port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test CA and a server certificate for `localhost` / `127.0.0.1` signed by it:
/// `(ca.pem, cert.pem, key.pem)` in `dir`, names prefixed with `name`.
pub fn write_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

/// Every descendant of `pid` (children first found, then theirs), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat"))
                && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.to_owned())
                && let Some(ppid) = rest
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u32>().ok())
            {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("");
        state != "Z" && state != "X"
    })
}

fn send(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// A running `jmp run` (ours or upstream's) with its stderr collected. Dropping it stops it
/// (SIGTERM, again, then SIGKILL for it and every process it started), so a failing test
/// leaves nothing behind.
pub struct RunningExporter {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    pub port: u16,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RunningExporter {
    /// Starts `cmd` (a `jmp run ...` command) and waits until it listens on TCP. Ours says
    /// where in its first log line (port 0 allowed); for upstream's, give `port`.
    pub fn start(cmd: &mut Command, port: Option<u16>) -> RunningExporter {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut running = RunningExporter {
            child,
            log,
            port: port.unwrap_or(0),
            reader: Some(reader),
        };
        match port {
            Some(p) => {
                let deadline = Instant::now() + Duration::from_secs(60);
                while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                    if let Ok(Some(status)) = running.child.try_wait() {
                        panic!("exporter exited with {status}:\n{}", running.log());
                    }
                    assert!(
                        Instant::now() < deadline,
                        "exporter never listened:\n{}",
                        running.log()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            None => {
                let log = running.wait_log("Session server started on 127.0.0.1:");
                let port = log
                    .split("Session server started on 127.0.0.1:")
                    .nth(1)
                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|p| p.parse().ok())
                    .expect("port in the start line");
                running.port = port;
            }
        }
        running
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; returns the log.
    pub fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader catch up with the last lines.
                std::thread::sleep(Duration::from_millis(100));
                let log = self.log();
                if log.contains(needle) {
                    return log;
                }
                panic!("exporter exited ({status}) before logging {needle:?}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged within 60 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        send(self.child.id(), sig);
    }

    /// Waits for the exporter to exit; returns its status and complete log.
    pub fn wait_exit(&mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "exporter still running after {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunningExporter {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id();
        let mut family = descendants(pid);
        for _ in 0..2 {
            send(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                for d in descendants(pid) {
                    if !family.contains(&d) {
                        family.push(d);
                    }
                }
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for d in family {
            send(d, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// An exporter config with a MockPower, an echo network driver and `extra` appended (hooks).
pub fn direct_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("direct.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata:\n  namespace: default\n  name: direct\nexport:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n  echo:\n    type: jumpstarter_driver_network.driver.EchoNetwork\n{extra}"
        ),
    )
    .unwrap();
    path
}

//! Exporters: configs for the interop tests and a running `jmp run` with its log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::unix_upper_server;
use crate::process::{descendants, send};

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

    /// The process id of `jmp run`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr collected so far.
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
                // Let the reader catch up with the last lines (5 s at most: a process it
                // started may hold stderr open).
                let caught_up = Instant::now() + Duration::from_secs(5);
                while Instant::now() < caught_up
                    && !self.reader.as_ref().is_none_or(|r| r.is_finished())
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
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

    /// Sends `sig` to `jmp run`.
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

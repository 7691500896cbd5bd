//! Measuring tools: timing commands, driving exporters, memory, and the raw socket floor.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jumpstarter_drivers::network::NetworkClient;
use jumpstarter_drivers::power::PowerClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One line of the results table.
pub struct Row {
    pub what: String,
    pub ours: String,
    pub upstream: String,
    /// How many times better ours is (upstream / ours for times, ours / upstream for rates).
    pub factor: f64,
}

impl Row {
    pub fn new(what: &str, ours: String, upstream: String, factor: f64) -> Row {
        Row {
            what: what.to_owned(),
            ours,
            upstream,
            factor,
        }
    }
}

/// A binary next to this one (the release build of `jmp` and `j`).
pub fn release_bin(name: &str) -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join(name)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn p90(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

/// Wall time of `n` runs of a command (after one warm-up run), in milliseconds.
/// `$PATH` with `dir` in front (so a shell's `j` is the one in `dir`).
pub fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

pub fn time_runs(n: usize, mut make: impl FnMut() -> Command) -> Vec<f64> {
    let run = |cmd: &mut Command| {
        let st = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run benchmark command");
        assert!(st.success(), "benchmark command failed: {cmd:?}");
    };
    run(&mut make());
    (0..n)
        .map(|_| {
            let mut cmd = make();
            let t = Instant::now();
            run(&mut cmd);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// A long-running `jmp shell` (ours or upstream's) whose child publishes JUMPSTARTER_HOST.
pub struct Shell {
    child: Child,
    pub host: String,
    done: PathBuf,
    _dir: tempfile::TempDir,
}

impl Shell {
    pub fn start(jmp: &Path, config: &Path) -> Shell {
        Self::start_with_env(jmp, config, &[])
    }

    /// [`Shell::start`] with extra environment for `jmp` (and so for its exporter).
    pub fn start_with_env(jmp: &Path, config: &Path, env: &[(&str, &Path)]) -> Shell {
        let dir = tempfile::tempdir().unwrap();
        let host_file = dir.path().join("host");
        let done = dir.path().join("done");
        let script = format!(
            "echo \"$JUMPSTARTER_HOST\" > {h}.tmp && mv {h}.tmp {h}; while [ ! -e {d} ]; do sleep 0.1; done",
            h = host_file.display(),
            d = done.display()
        );
        let child = Command::new(jmp)
            .envs(env.iter().copied())
            .env("TERM", "dumb")
            .arg("shell")
            .arg("--exporter-config")
            .arg(config)
            .args(["--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start jmp shell");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !host_file.exists() {
            assert!(Instant::now() < deadline, "exporter did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let host = std::fs::read_to_string(&host_file)
            .unwrap()
            .trim()
            .to_owned();
        Shell {
            child,
            host,
            done,
            _dir: dir,
        }
    }

    /// Resident and peak memory of the `jmp shell` process (it hosts the exporter), in MB.
    pub fn memory_mb(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
    }

    pub fn stop(self) {
        // Drop does the work.
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.done, b"");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one of the Python halves and returns the JSON it prints last.
pub fn py_json(
    python: &Path,
    script: &Path,
    args: &[&str],
    host: Option<&str>,
) -> serde_json::Value {
    let mut cmd = Command::new(python);
    cmd.arg(script).args(args).env("TERM", "dumb");
    match host {
        Some(h) => cmd
            .env("JUMPSTARTER_HOST", h)
            .env("JMP_DRIVERS_ALLOW", "UNSAFE"),
        None => cmd.env_remove("JUMPSTARTER_HOST"),
    };
    let out = cmd.output().expect("run python benchmark");
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("{}")).expect("python benchmark output")
}

/// DriverCall round trips with our client, in microseconds (after a warm-up).
pub async fn rust_drivercalls(power: &PowerClient, n: usize) -> Vec<f64> {
    for _ in 0..200 {
        power.on().await.unwrap();
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        power.on().await.unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples
}

/// Echo throughput with our client: writes `total` bytes in `chunk`-byte writes while reading
/// them back concurrently. MB/s (10^6 bytes, counted once).
pub async fn rust_echo(net: &NetworkClient, total: usize, chunk: usize) -> f64 {
    let stream = net.connect().await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0usize;
        while got < total {
            let n = rd.read(&mut buf).await.unwrap();
            assert!(n > 0, "echo ended early");
            got += n;
        }
        got
    });
    let data = vec![b'x'; chunk];
    let mut sent = 0;
    while sent < total {
        wr.write_all(&data).await.unwrap();
        sent += chunk;
    }
    let got = reader.await.unwrap();
    assert!(got >= total);
    total as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// The floor for any request/response between two processes here: a 64-byte ping-pong over a
/// unix socket with blocking I/O (no runtime, no HTTP/2, no protobuf). Median, µs.
pub fn raw_uds_floor(n: usize) -> f64 {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pp.sock");
    let mut server = Command::new(std::env::current_exe().unwrap())
        .arg("--pingpong-server")
        .arg(&path)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("ping-pong server: {e}"),
        }
    };
    let (b, mut r) = ([1u8; 64], [0u8; 64]);
    let mut v = Vec::with_capacity(n);
    for i in 0..n + 1000 {
        let t = Instant::now();
        s.write_all(&b).unwrap();
        s.read_exact(&mut r).unwrap();
        if i >= 1000 {
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(s);
    let _ = server.wait();
    median(v)
}

/// The other end of [`raw_uds_floor`] (runs in a child process).
pub fn pingpong_server(path: &Path) {
    use std::io::{Read, Write};
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    let (mut s, _) = l.accept().unwrap();
    let mut b = [0u8; 64];
    while s.read_exact(&mut b).is_ok() {
        if s.write_all(&b).is_err() {
            return;
        }
    }
}

/// A `jmp run --tls-grpc-listener` (ours or upstream's) on a free port, stopped (SIGTERM, then
/// SIGKILL for it and its descendants) when dropped.
pub struct RunExporter {
    child: Child,
    pub port: u16,
    pub started: Instant,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RunExporter {
    pub fn start(jmp: &Path, config: &Path) -> RunExporter {
        let port = free_port();
        let started = Instant::now();
        let child = Command::new(jmp)
            .env("TERM", "dumb")
            .arg("run")
            .arg("--exporter-config")
            .arg(config)
            .args([
                "--tls-grpc-listener",
                &format!("127.0.0.1:{port}"),
                "--tls-grpc-insecure",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start jmp run");
        RunExporter {
            child,
            port,
            started,
        }
    }

    /// Waits until GetStatus over TCP says LEASE_READY; returns the time since the start (ms).
    pub fn wait_ready(&self) -> f64 {
        use jumpstarter_core::Client;
        use jumpstarter_core::transport::{Dial, Target};
        let target = Target::Tcp {
            host: "127.0.0.1".into(),
            port: self.port,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(c) = Client::dial(&target, &Dial::default()).await
                    && let Ok(s) = c.get_status().await
                    && s.status == jumpstarter_protocol::v1::ExporterStatus::LeaseReady as i32
                {
                    return self.started.elapsed().as_secs_f64() * 1000.0;
                }
                assert!(Instant::now() < deadline, "jmp run did not become ready");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    }

    /// Resident memory of the process and its descendants (upstream forks a serving child), MB.
    pub fn tree_rss_mb(&self) -> f64 {
        let mut pids = vec![self.child.id()];
        let mut i = 0;
        while i < pids.len() {
            let parent = pids[i];
            if let Ok(entries) = std::fs::read_dir("/proc") {
                for e in entries.flatten() {
                    let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                        continue;
                    };
                    let ppid = std::fs::read_to_string(format!("/proc/{p}/stat"))
                        .ok()
                        .and_then(|s| {
                            s.rsplit_once(')')
                                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
                        });
                    if ppid == Some(parent) && !pids.contains(&p) {
                        pids.push(p);
                    }
                }
            }
            i += 1;
        }
        pids.iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .sum::<f64>()
            / 1024.0
    }

    /// SIGTERM and wait (upstream forwards it to its serving child).
    pub fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunExporter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

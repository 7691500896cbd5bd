//! Side-by-side benchmarks: jumpstarter-rs and upstream Jumpstarter 0.9.0, in one run.
//!
//! Run through `bench/run.sh`, which builds the release binaries, prepares the upstream venv,
//! and writes BENCHMARKS.md. Every figure compares the same work on both sides on this machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jumpstarter_core::testing::serve;
use jumpstarter_core::{DriverTree, Instance, Logger};
use jumpstarter_drivers::network::{ECHO_NETWORK, EchoNetwork, NetworkClient};
use jumpstarter_drivers::power::{MOCK_POWER, MockPower, PowerClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Opts {
    venv: PathBuf,
    out: Option<PathBuf>,
    quick: bool,
}

fn parse_opts() -> Opts {
    let mut venv = PathBuf::from(".venv");
    let mut out = None;
    let mut quick = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--venv" => venv = args.next().expect("--venv PATH").into(),
            "--out" => out = Some(args.next().expect("--out PATH").into()),
            "--quick" => quick = true,
            other => panic!("unknown argument {other}"),
        }
    }
    Opts { venv, out, quick }
}

fn release_bin(name: &str) -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join(name)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn p90(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

/// Wall time of `n` runs of a command (after one warm-up), in milliseconds.
fn time_runs(n: usize, mut make: impl FnMut() -> Command) -> Vec<f64> {
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
struct Shell {
    child: Child,
    host: String,
    done: PathBuf,
    _dir: tempfile::TempDir,
}

impl Shell {
    fn start(jmp: &Path, config: &Path) -> Shell {
        let dir = tempfile::tempdir().unwrap();
        let host_file = dir.path().join("host");
        let done = dir.path().join("done");
        let child = Command::new(jmp)
            .env("TERM", "dumb")
            .arg("shell")
            .arg("--exporter-config")
            .arg(config)
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
    fn memory_mb(&self) -> (f64, f64) {
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

    fn stop(mut self) {
        std::fs::write(&self.done, b"").unwrap();
        let _ = self.child.wait();
    }
}

fn py_json(python: &Path, script: &Path, args: &[&str], host: Option<&str>) -> serde_json::Value {
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

/// DriverCall round trips with our client, in microseconds.
async fn rust_drivercalls(power: &PowerClient, n: usize) -> Vec<f64> {
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
async fn rust_echo(net: &NetworkClient, total: usize, chunk: usize) -> f64 {
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

struct Row {
    what: String,
    ours: String,
    upstream: String,
    ratio: String,
}

fn ratio(slow: f64, fast: f64) -> String {
    format!("{:.0}x", slow / fast)
}

fn main() {
    let opts = parse_opts();
    let venv = std::fs::canonicalize(&opts.venv).expect("venv (run scripts/setup-interop-venv.sh)");
    let root = std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap();
    let config = root.join("bench/exporter.yaml");
    let our_jmp = release_bin("jmp");
    let our_j = release_bin("j");
    let up_jmp = venv.join("bin/jmp");
    let up_j = venv.join("bin/j");
    let python = venv.join("bin/python");
    let q = opts.quick;
    let mut rows = Vec::new();

    // 1. `j power on` inside an existing shell.
    eprintln!("j power on inside a shell...");
    let ours_shell = Shell::start(&our_jmp, &config);
    let up_shell = Shell::start(&up_jmp, &config);
    let ours = median(time_runs(if q { 20 } else { 100 }, || {
        let mut c = Command::new(&our_j);
        c.args(["power", "on"])
            .env("JUMPSTARTER_HOST", &ours_shell.host)
            .env("JMP_DRIVERS_ALLOW", "UNSAFE");
        c
    }));
    let up = median(time_runs(if q { 3 } else { 10 }, || {
        let mut c = Command::new(&up_j);
        c.args(["power", "on"])
            .env("JUMPSTARTER_HOST", &up_shell.host)
            .env("JMP_DRIVERS_ALLOW", "UNSAFE")
            .env("_JMP_SUPPRESS_DRIVER_WARNINGS", "1");
        c
    }));
    rows.push(Row {
        what: "`j power on` inside a shell (median wall time, process start to exit)".into(),
        ours: format!("{ours:.1} ms"),
        upstream: format!("{up:.0} ms"),
        ratio: ratio(up, ours),
    });

    // 5. Exporter memory (measured now, with both exporters idle after some calls).
    let (ours_rss, ours_peak) = ours_shell.memory_mb();
    let (up_rss, up_peak) = up_shell.memory_mb();

    // 3b/4b. Cross-implementation: the Python client against our exporter.
    eprintln!("Python client against our exporter...");
    let py_vs_ours = py_json(
        &python,
        &root.join("bench/py/drivercall.py"),
        &["host", if q { "300" } else { "2000" }],
        Some(&ours_shell.host),
    );
    let py_vs_up = py_json(
        &python,
        &root.join("bench/py/drivercall.py"),
        &["host", if q { "300" } else { "2000" }],
        Some(&up_shell.host),
    );
    let py_echo_ours = py_json(
        &python,
        &root.join("bench/py/echo.py"),
        &["host", "200000000"],
        Some(&ours_shell.host),
    );
    let py_echo_up = py_json(
        &python,
        &root.join("bench/py/echo.py"),
        &["host", "200000000"],
        Some(&up_shell.host),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Our client against upstream's exporter (unix socket), for the cross rows.
    let (rust_vs_up, rust_echo_up) = rt.block_on(async {
        let client = jumpstarter_core::Client::connect(&jumpstarter_core::transport::Target::Unix(
            up_shell.host.clone().into(),
        ))
        .await
        .unwrap();
        let power = PowerClient::new(client.get("power").unwrap().clone());
        let calls = median(rust_drivercalls(&power, if q { 300 } else { 2000 }).await);
        let echo = NetworkClient::new(client.get("echo").unwrap().clone());
        (calls, rust_echo(&echo, 200_000_000, 64 * 1024).await)
    });
    ours_shell.stop();
    up_shell.stop();

    // 2. `jmp shell --exporter-config X -- j power on`, end to end.
    eprintln!("jmp shell -- j power on...");
    let path_ours = format!(
        "{}:{}",
        our_j.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let path_up = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ours = median(time_runs(if q { 10 } else { 30 }, || {
        let mut c = Command::new(&our_jmp);
        c.env("PATH", &path_ours)
            .arg("shell")
            .arg("--exporter-config")
            .arg(&config)
            .args(["--", "j", "power", "on"]);
        c
    }));
    let up = median(time_runs(if q { 2 } else { 5 }, || {
        let mut c = Command::new(&up_jmp);
        c.env("PATH", &path_up)
            .env("TERM", "dumb")
            .arg("shell")
            .arg("--exporter-config")
            .arg(&config)
            .args(["--", "j", "power", "on"]);
        c
    }));
    rows.push(Row {
        what: "`jmp shell --exporter-config X -- j power on` (median wall time)".into(),
        ours: format!("{ours:.1} ms"),
        upstream: format!("{up:.0} ms"),
        ratio: ratio(up, ours),
    });

    // 3. DriverCall round trip, client and exporter in one process, unix socket.
    eprintln!("DriverCall round trips...");
    let (rust_calls, rust_p90) = rt.block_on(async {
        let driver = Arc::new(MockPower::new(Logger::detached("driver.MockPower")));
        let served = serve(DriverTree::composite(vec![(
            "power",
            Instance::new(driver, MOCK_POWER),
        )]))
        .await
        .unwrap();
        let power = PowerClient::new(served.client.get("power").unwrap().clone());
        let samples = rust_drivercalls(&power, if q { 2000 } else { 20000 }).await;
        served.shutdown().await;
        (median(samples.clone()), p90(samples))
    });
    let py = py_json(
        &python,
        &root.join("bench/py/drivercall.py"),
        &["inprocess", if q { "300" } else { "3000" }],
        None,
    );
    let py_med = py["median_us"].as_f64().unwrap();
    rows.push(Row {
        what:
            "DriverCall round trip, in-process exporter + client over a unix socket (median; p90)"
                .into(),
        ours: format!("{rust_calls:.0} µs; {rust_p90:.0} µs"),
        upstream: format!("{py_med:.0} µs; {:.0} µs", py["p90_us"].as_f64().unwrap()),
        ratio: ratio(py_med, rust_calls),
    });
    rows.push(Row {
        what: "DriverCall round trip, Python client -> exporter in a `jmp shell` (median)".into(),
        ours: format!(
            "{:.0} µs (our exporter)",
            py_vs_ours["median_us"].as_f64().unwrap()
        ),
        upstream: format!(
            "{:.0} µs (upstream exporter)",
            py_vs_up["median_us"].as_f64().unwrap()
        ),
        ratio: ratio(
            py_vs_up["median_us"].as_f64().unwrap(),
            py_vs_ours["median_us"].as_f64().unwrap(),
        ),
    });
    rows.push(Row {
        what: "DriverCall round trip, our Rust client -> upstream exporter (median)".into(),
        ours: format!("{rust_vs_up:.0} µs"),
        upstream: format!(
            "{:.0} µs (Python client)",
            py_vs_up["median_us"].as_f64().unwrap()
        ),
        ratio: ratio(py_vs_up["median_us"].as_f64().unwrap(), rust_vs_up),
    });

    // 4. Echo stream throughput.
    eprintln!("echo stream throughput...");
    let total: usize = if q { 1 << 30 } else { 4 << 30 };
    let (rust_echo_mb, rust_echo_64k) = rt.block_on(async {
        let driver = Arc::new(EchoNetwork::new(Logger::detached("driver.EchoNetwork")));
        let served = serve(DriverTree::composite(vec![(
            "echo",
            Instance::new(driver, ECHO_NETWORK),
        )]))
        .await
        .unwrap();
        let echo = NetworkClient::new(served.client.get("echo").unwrap().clone());
        let big = rust_echo(&echo, total, 1 << 20).await;
        let small = rust_echo(&echo, total / 4, 64 * 1024).await;
        served.shutdown().await;
        (big, small)
    });
    let py_echo = py_json(
        &python,
        &root.join("bench/py/echo.py"),
        &["inprocess", "300000000"],
        None,
    );
    let py_echo_mb = py_echo["mb_per_s"].as_f64().unwrap();
    rows.push(Row {
        what: format!("Echo stream, in-process exporter + client ({} GiB both ways; ours with 1 MiB and 64 KiB writes, upstream 64 KiB)", total >> 30),
        ours: format!("{rust_echo_mb:.0} MB/s; {rust_echo_64k:.0} MB/s"),
        upstream: format!("{py_echo_mb:.0} MB/s"),
        ratio: ratio(rust_echo_mb, py_echo_mb),
    });
    rows.push(Row {
        what: "Echo stream, Python client -> exporter in a `jmp shell` (200 MB)".into(),
        ours: format!(
            "{:.0} MB/s (our exporter)",
            py_echo_ours["mb_per_s"].as_f64().unwrap()
        ),
        upstream: format!(
            "{:.0} MB/s (upstream exporter)",
            py_echo_up["mb_per_s"].as_f64().unwrap()
        ),
        ratio: ratio(
            py_echo_ours["mb_per_s"].as_f64().unwrap(),
            py_echo_up["mb_per_s"].as_f64().unwrap(),
        ),
    });
    rows.push(Row {
        what: "Echo stream, our Rust client -> upstream exporter (200 MB, 64 KiB writes)".into(),
        ours: format!("{rust_echo_up:.0} MB/s"),
        upstream: format!(
            "{:.0} MB/s (Python client)",
            py_echo_up["mb_per_s"].as_f64().unwrap()
        ),
        ratio: ratio(rust_echo_up, py_echo_up["mb_per_s"].as_f64().unwrap()),
    });
    rows.push(Row {
        what: "Exporter memory: the `jmp shell` process hosting the exporter, after the calls above (RSS; peak)".into(),
        ours: format!("{ours_rss:.1} MB; {ours_peak:.1} MB"),
        upstream: format!("{up_rss:.0} MB; {up_peak:.0} MB"),
        ratio: ratio(up_rss, ours_rss),
    });

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str("jumpstarter-rs against upstream Jumpstarter 0.9.0 (the pinned PyPI packages), measured side by\n");
    md.push_str("side in one run by `bench/run.sh` (the harness is `bench/src/main.rs`; the Python halves are in\n");
    md.push_str(
        "`bench/py/`). Both sides use the same exporter config, `bench/exporter.yaml`.\n\n",
    );
    md.push_str(&format!(
        "Machine: {cores} cores, {cpu}. Command: `bench/run.sh{}`.\n\n",
        if q { " --quick" } else { "" }
    ));
    md.push_str("| What | jumpstarter-rs | upstream 0.9.0 | factor |\n|---|---|---|---|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.what, r.ours, r.upstream, r.ratio
        ));
    }
    md.push_str("\nNotes\n\n");
    md.push_str("* Wall times include process start-up; that is what a user of `j` waits for.\n");
    md.push_str("* \"In-process\" means the exporter session and the client share one process and talk over a\n  unix socket, as upstream's `serve()` test helper does.\n");
    md.push_str("* Echo throughput counts the bytes sent once; the same bytes also travel back.\n");
    md.push_str("* Memory is the resident set of the `jmp shell` process that hosts the exporter (the child\n  shell is not counted for either side).\n");
    print!("{md}");
    if let Some(out) = opts.out {
        std::fs::write(out, md).unwrap();
    }
}

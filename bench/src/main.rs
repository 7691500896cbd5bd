//! Side-by-side benchmarks: jumpstarter-rs and upstream Jumpstarter 0.9.0, in one run.
//!
//! Run through `bench/run.sh`, which builds the release binaries, prepares the upstream venv,
//! and writes BENCHMARKS.md. Every figure compares the same work on both sides on this machine.

mod controller;
mod measure;
mod pyhost;
mod storage;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use jumpstarter_core::testing::serve;
use jumpstarter_core::transport::Target as SessionTarget;
use jumpstarter_core::{Client, DriverTree, Instance, Logger};
use jumpstarter_drivers::network::{ECHO_NETWORK, EchoNetwork, NetworkClient};
use jumpstarter_drivers::power::{MOCK_POWER, MockPower, PowerClient};
use measure::*;

struct Opts {
    venv: PathBuf,
    out: Option<PathBuf>,
    quick: bool,
    /// Run only one group of benchmarks (`--only core|pyhost|controller|router`).
    only: Option<String>,
}

fn parse_opts() -> Opts {
    let mut opts = Opts {
        venv: PathBuf::from(".venv"),
        out: None,
        quick: false,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--venv" => opts.venv = args.next().expect("--venv PATH").into(),
            "--out" => opts.out = Some(args.next().expect("--out PATH").into()),
            "--quick" => opts.quick = true,
            "--only" => {
                let what = args.next().expect("--only core|pyhost|controller|router");
                assert!(
                    ["core", "pyhost", "controller", "router"].contains(&what.as_str()),
                    "--only knows: core, pyhost, controller, router"
                );
                opts.only = Some(what);
            }
            "--pingpong-server" => {
                pingpong_server(Path::new(&args.next().expect("--pingpong-server PATH")));
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    opts
}

/// An issue's performance target and whether this run met it.
struct Target {
    text: String,
    met: bool,
}

fn target(targets: &mut Vec<Target>, text: String, met: bool) {
    targets.push(Target { text, met });
}

/// Everything a measurement needs to know about the two sides.
struct Env {
    config: PathBuf,
    our_jmp: PathBuf,
    our_j: PathBuf,
    up_jmp: PathBuf,
    up_j: PathBuf,
    python: PathBuf,
    py_dir: PathBuf,
    venv_bin: PathBuf,
    quick: bool,
}

impl Env {
    /// `quick` or `full` iteration counts.
    fn n(&self, quick: usize, full: usize) -> usize {
        if self.quick { quick } else { full }
    }

    fn py(&self, script: &str, args: &[&str], host: Option<&str>) -> serde_json::Value {
        py_json(&self.python, &self.py_dir.join(script), args, host)
    }
}

fn single_threaded() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn two_threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let opts = parse_opts();
    let venv = std::fs::canonicalize(&opts.venv).expect("venv (run scripts/setup-interop-venv.sh)");
    let root = std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap();
    let env = Env {
        config: root.join("bench/exporter.yaml"),
        our_jmp: release_bin("jmp"),
        our_j: release_bin("j"),
        up_jmp: venv.join("bin/jmp"),
        up_j: venv.join("bin/j"),
        python: venv.join("bin/python"),
        py_dir: root.join("bench/py"),
        venv_bin: venv.join("bin"),
        quick: opts.quick,
    };
    let load_before = loadavg();
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let run = |group: &str| opts.only.as_deref().is_none_or(|o| o == group);
    if run("core") {
        cli_latency(&env, &mut rows, &mut targets);
        driver_calls(&env, &mut rows, &mut targets);
        streams(&env, &mut rows, &mut targets);
        memory(&env, &mut rows, &mut targets);
        direct_mode(&env, &mut rows);
        storage::storage(&env, &mut rows, &mut targets);
        storage::serial(&env, &mut rows);
    }
    if run("pyhost") {
        pyhost::pyhost(&env, &mut rows);
    }
    if run("controller") {
        controller::controller(&env, &mut rows, &mut targets);
    }
    if run("controller") || run("router") {
        controller::router(&env, &mut rows, &mut targets);
    }

    let md = render(&rows, &targets, opts.quick, &load_before);
    print!("{md}");
    if let Some(out) = opts.out {
        std::fs::write(out, md).unwrap();
    }
}

/// `j power on` inside a shell, and `jmp shell ... -- j power on` end to end.
fn cli_latency(env: &Env, rows: &mut Vec<Row>, targets: &mut Vec<Target>) {
    eprintln!("j power on inside a shell...");
    let ours_shell = Shell::start(&env.our_jmp, &env.config);
    let up_shell = Shell::start(&env.up_jmp, &env.config);
    let j = |bin: &Path, host: &str| {
        let mut c = Command::new(bin);
        c.args(["power", "on"])
            .env("JUMPSTARTER_HOST", host)
            .env("JMP_DRIVERS_ALLOW", "UNSAFE")
            .env("_JMP_SUPPRESS_DRIVER_WARNINGS", "1");
        c
    };
    let ours = median(time_runs(env.n(20, 100), || {
        j(&env.our_j, &ours_shell.host)
    }));
    let up = median(time_runs(env.n(3, 10), || j(&env.up_j, &up_shell.host)));
    target(
        targets,
        format!("`j power on` under 5 ms median (upstream ~1.2 s): {ours:.1} ms"),
        ours < 5.0,
    );
    rows.push(Row::new(
        "`j power on` inside a shell (median wall time, process start to exit)",
        format!("{ours:.1} ms"),
        format!("{up:.0} ms"),
        up / ours,
    ));
    ours_shell.stop();
    up_shell.stop();

    eprintln!("jmp shell -- j power on...");
    let shell = |jmp: &Path, bin_dir: &Path| {
        let mut c = Command::new(jmp);
        c.env("PATH", path_with(bin_dir))
            .arg("shell")
            .arg("--exporter-config")
            .arg(&env.config)
            .args(["--", "j", "power", "on"]);
        c
    };
    let ours = median(time_runs(env.n(10, 30), || {
        shell(&env.our_jmp, env.our_j.parent().unwrap())
    }));
    let up = median(time_runs(env.n(2, 5), || shell(&env.up_jmp, &env.venv_bin)));
    rows.push(Row::new(
        "`jmp shell --exporter-config X -- j power on` (median wall time)",
        format!("{ours:.1} ms"),
        format!("{up:.0} ms"),
        up / ours,
    ));
}

/// DriverCall round trips: in-process (both runtime flavours), across processes, and mixed.
fn driver_calls(env: &Env, rows: &mut Vec<Row>, targets: &mut Vec<Target>) {
    eprintln!("DriverCall round trips...");
    let n = env.n(2000, 20000);
    let in_process = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let driver = Arc::new(MockPower::new(Logger::detached("driver.MockPower")));
            let tree = DriverTree::composite(vec![("power", Instance::new(driver, MOCK_POWER))]);
            let served = serve(tree).await.unwrap();
            let power = PowerClient::new(served.client.get("power").unwrap().clone());
            let samples = rust_drivercalls(&power, n).await;
            served.shutdown().await;
            (median(samples.clone()), p90(samples))
        })
    };
    let (ct, ct90) = in_process(&single_threaded());
    let (mt, mt90) = in_process(&two_threads());
    target(
        targets,
        format!(
            "DriverCall round trip under 50 µs median (upstream ~1.1 ms): {ct:.0} µs in one process on a single-threaded runtime; {mt:.0} µs on a 2-thread runtime"
        ),
        ct < 50.0,
    );
    let py = env.py(
        "drivercall.py",
        &["inprocess", &env.n(300, 3000).to_string()],
        None,
    );
    let (py_med, py90) = (
        py["median_us"].as_f64().unwrap(),
        py["p90_us"].as_f64().unwrap(),
    );
    rows.push(Row::new(
        "DriverCall round trip, exporter and client in one process over a unix socket (median; p90); ours on a single-threaded runtime",
        format!("{ct:.0} µs; {ct90:.0} µs"),
        format!("{py_med:.0} µs; {py90:.0} µs"),
        py_med / ct,
    ));
    rows.push(Row::new(
        "The same, ours on a 2-thread runtime (cross-thread wake-ups on every hop)",
        format!("{mt:.0} µs; {mt90:.0} µs"),
        format!("{py_med:.0} µs; {py90:.0} µs"),
        py_med / mt,
    ));

    // Across processes: the client in this process, the exporter in a `jmp shell`.
    let ours_shell = Shell::start(&env.our_jmp, &env.config);
    let up_shell = Shell::start(&env.up_jmp, &env.config);
    let calls = env.n(300, 2000).to_string();
    let rust_to = |host: &str| {
        single_threaded().block_on(async {
            let client = Client::connect(&SessionTarget::Unix(host.into()))
                .await
                .unwrap();
            let power = PowerClient::new(client.get("power").unwrap().clone());
            median(rust_drivercalls(&power, n).await)
        })
    };
    let rust_ours = rust_to(&ours_shell.host);
    let rust_up = rust_to(&up_shell.host);
    let py_ours = env.py("drivercall.py", &["host", &calls], Some(&ours_shell.host))["median_us"]
        .as_f64()
        .unwrap();
    let py_up = env.py("drivercall.py", &["host", &calls], Some(&up_shell.host))["median_us"]
        .as_f64()
        .unwrap();
    ours_shell.stop();
    up_shell.stop();
    let floor = raw_uds_floor(n);
    rows.push(Row::new(
        &format!(
            "DriverCall round trip between processes: client -> exporter in a `jmp shell` (median). For reference, a raw 64-byte unix-socket ping-pong between two processes takes {floor:.0} µs here"
        ),
        format!("{rust_ours:.0} µs (Rust client)"),
        format!("{py_up:.0} µs (Python client)"),
        py_up / rust_ours,
    ));
    rows.push(Row::new(
        "Mixed: the Python client -> our exporter / our Rust client -> upstream's exporter (median)",
        format!("{py_ours:.0} µs / {rust_up:.0} µs"),
        format!("{py_up:.0} µs (Python -> upstream)"),
        py_up / py_ours,
    ));
}

/// Echo stream throughput: in-process, and both clients against both exporters.
fn streams(env: &Env, rows: &mut Vec<Row>, targets: &mut Vec<Target>) {
    eprintln!("echo stream throughput...");
    let total: usize = if env.quick { 1 << 30 } else { 4 << 30 };
    let (big, small) = two_threads().block_on(async {
        let driver = Arc::new(EchoNetwork::new(Logger::detached("driver.EchoNetwork")));
        let tree = DriverTree::composite(vec![("echo", Instance::new(driver, ECHO_NETWORK))]);
        let served = serve(tree).await.unwrap();
        let echo = NetworkClient::new(served.client.get("echo").unwrap().clone());
        let big = rust_echo(&echo, total, 1 << 20).await;
        let small = rust_echo(&echo, total / 4, 64 * 1024).await;
        served.shutdown().await;
        (big, small)
    });
    target(
        targets,
        format!(
            "Echo stream at least 1 GB/s (upstream ~75 MB/s): {:.0} MB/s in one process",
            big.max(small)
        ),
        big.max(small) >= 1000.0,
    );
    let py = env.py("echo.py", &["inprocess", "300000000"], None)["mb_per_s"]
        .as_f64()
        .unwrap();
    rows.push(Row::new(
        &format!(
            "Echo stream, exporter and client in one process ({} GiB each way; ours with 1 MiB / 64 KiB writes, upstream 64 KiB)",
            total >> 30
        ),
        format!("{big:.0} MB/s / {small:.0} MB/s"),
        format!("{py:.0} MB/s"),
        big / py,
    ));

    let ours_shell = Shell::start(&env.our_jmp, &env.config);
    let up_shell = Shell::start(&env.up_jmp, &env.config);
    let rust_to = |host: &str| {
        two_threads().block_on(async {
            let client = Client::connect(&SessionTarget::Unix(host.into()))
                .await
                .unwrap();
            let echo = NetworkClient::new(client.get("echo").unwrap().clone());
            rust_echo(&echo, 1 << 30, 1 << 20).await
        })
    };
    let rust_ours = rust_to(&ours_shell.host);
    let rust_up = rust_to(&up_shell.host);
    let py_ours = env.py("echo.py", &["host", "200000000"], Some(&ours_shell.host))["mb_per_s"]
        .as_f64()
        .unwrap();
    let py_up = env.py("echo.py", &["host", "200000000"], Some(&up_shell.host))["mb_per_s"]
        .as_f64()
        .unwrap();
    ours_shell.stop();
    up_shell.stop();
    rows.push(Row::new(
        "Echo stream between processes: client -> exporter in a `jmp shell` (ours: Rust client, 1 GiB; upstream: Python client, 200 MB)",
        format!("{rust_ours:.0} MB/s"),
        format!("{py_up:.0} MB/s"),
        rust_ours / py_up,
    ));
    rows.push(Row::new(
        "Mixed: the Python client -> our exporter / our Rust client -> upstream's exporter",
        format!("{py_ours:.0} MB/s / {rust_up:.0} MB/s"),
        format!("{py_up:.0} MB/s (Python -> upstream)"),
        py_ours / py_up,
    ));
}

/// Resident memory of the process hosting the exporter, idle and after work.
fn memory(env: &Env, rows: &mut Vec<Row>, targets: &mut Vec<Target>) {
    eprintln!("exporter memory...");
    let ours_shell = Shell::start(&env.our_jmp, &env.config);
    let up_shell = Shell::start(&env.up_jmp, &env.config);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (ours_idle, _) = ours_shell.memory_mb();
    let (up_idle, _) = up_shell.memory_mb();
    // Some calls and a 256 MiB stream through each, then measure again.
    for shell in [&ours_shell, &up_shell] {
        two_threads().block_on(async {
            let client = Client::connect(&SessionTarget::Unix(shell.host.clone().into()))
                .await
                .unwrap();
            let power = PowerClient::new(client.get("power").unwrap().clone());
            rust_drivercalls(&power, 500).await;
            let echo = NetworkClient::new(client.get("echo").unwrap().clone());
            rust_echo(&echo, 256 << 20, 64 * 1024).await;
        });
    }
    let (ours_rss, ours_peak) = ours_shell.memory_mb();
    let (up_rss, up_peak) = up_shell.memory_mb();
    ours_shell.stop();
    up_shell.stop();
    target(
        targets,
        format!(
            "Exporter RSS under 10 MB (upstream ~120 MB): {ours_idle:.1} MB idle; {ours_rss:.1} MB after a 256 MiB stream (freed buffers the allocator keeps)"
        ),
        ours_idle < 10.0,
    );
    rows.push(Row::new(
        "Exporter memory, the `jmp shell` process hosting it: idle / after 500 calls and a 256 MiB stream (RSS; peak)",
        format!("{ours_idle:.1} MB / {ours_rss:.1} MB; {ours_peak:.1} MB"),
        format!("{up_idle:.0} MB / {up_rss:.0} MB; {up_peak:.0} MB"),
        up_idle / ours_idle,
    ));
}

/// Direct mode: `jmp run --tls-grpc-listener` start-up, a direct shell end to end, and the idle
/// exporter's memory.
fn direct_mode(env: &Env, rows: &mut Vec<Row>) {
    eprintln!("jmp run start to ready...");
    let ready = |jmp: &Path, n: usize| {
        let samples: Vec<f64> = (0..n)
            .map(|_| {
                let exporter = RunExporter::start(jmp, &env.config);
                let ms = exporter.wait_ready();
                exporter.stop();
                ms
            })
            .collect();
        median(samples)
    };
    // One warm-up each (page cache), then the measured runs.
    ready(&env.our_jmp, 1);
    ready(&env.up_jmp, 1);
    let ours = ready(&env.our_jmp, env.n(5, 20));
    let up = ready(&env.up_jmp, env.n(2, 5));
    rows.push(Row::new(
        "`jmp run --tls-grpc-listener` start to ready (spawn until GetStatus over TCP says LEASE_READY; median)",
        format!("{ours:.1} ms"),
        format!("{up:.0} ms"),
        up / ours,
    ));

    eprintln!("jmp shell --tls-grpc -- j power on...");
    let ours_run = RunExporter::start(&env.our_jmp, &env.config);
    let up_run = RunExporter::start(&env.up_jmp, &env.config);
    ours_run.wait_ready();
    up_run.wait_ready();
    let shell = |jmp: &Path, bin_dir: &Path, port: u16| {
        let mut c = Command::new(jmp);
        c.env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("TERM", "dumb")
        .args(["shell", "--tls-grpc", &format!("127.0.0.1:{port}")])
        .args(["--tls-grpc-insecure", "--", "j", "power", "on"]);
        c
    };
    let ours = median(time_runs(env.n(10, 30), || {
        shell(&env.our_jmp, env.our_j.parent().unwrap(), ours_run.port)
    }));
    let up = median(time_runs(env.n(2, 5), || {
        shell(&env.up_jmp, &env.venv_bin, up_run.port)
    }));
    rows.push(Row::new(
        "`jmp shell --tls-grpc HOST:PORT --tls-grpc-insecure -- j power on` against a running `jmp run` of the same side (median wall time)",
        format!("{ours:.1} ms"),
        format!("{up:.0} ms"),
        up / ours,
    ));

    eprintln!("idle jmp run memory...");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let ours = ours_run.tree_rss_mb();
    let up = up_run.tree_rss_mb();
    ours_run.stop();
    up_run.stop();
    rows.push(Row::new(
        "Idle `jmp run` exporter in direct mode, after one shell session (RSS of the process tree: upstream runs a supervising parent and a serving child)",
        format!("{ours:.1} MB"),
        format!("{up:.0} MB"),
        up / ours,
    ));
}

/// The 1/5/15-minute load averages: how busy the machine was besides this run.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn render(rows: &[Row], targets: &[Target], quick: bool, load_before: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::from(
        "# Benchmarks\n\n\
         jumpstarter-rs against upstream Jumpstarter 0.9.0 (the pinned PyPI packages), measured side by\n\
         side in one run by `bench/run.sh` (the harness is `bench/src/`; the Python halves are in\n\
         `bench/py/`). Both sides use the same exporter config, `bench/exporter.yaml`.\n\n",
    );
    // The command as a user would type it (the harness's own --venv/--out left out).
    let mut shown = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--venv" | "--out" => {
                args.next();
            }
            _ => {
                shown.push(' ');
                shown.push_str(&a);
            }
        }
    }
    debug_assert_eq!(quick, shown.contains("--quick"));
    md.push_str(&format!(
        "Machine: {cores} cores, {cpu}. Command: `bench/run.sh{shown}`. Load average (1/5/15 \
         min) before the run: {load_before}; after: {}. Anything above 1 means other work shared \
         the cores during the run and slowed both sides.\n\n",
        loadavg()
    ));
    md.push_str("| What | jumpstarter-rs | upstream 0.9.0 | factor |\n|---|---|---|---|\n");
    for r in rows {
        // No factor (0) where there is nothing upstream to compare with.
        let factor = if r.factor <= 0.0 {
            "-".into()
        } else if r.factor < 10.0 {
            format!("{:.1}x", r.factor)
        } else {
            format!("{:.0}x", r.factor)
        };
        md.push_str(&format!(
            "| {} | {} | {} | {factor} |\n",
            r.what, r.ours, r.upstream
        ));
    }
    md.push_str("\nTargets from the issues, as measured in this run:\n\n");
    for t in targets {
        md.push_str(&format!(
            "* {} {}\n",
            if t.met { "Met:" } else { "Not met:" },
            t.text
        ));
    }
    md.push_str(
        "\nNotes\n\n\
         * Wall times include process start-up: that is what a user of `j` waits for.\n\
         * \"In one process\" means the exporter session and the client share a process and talk over a\n  \
         unix socket, as upstream's `serve()` test helper does. The factor compares with upstream's\n  \
         figure on the same row.\n\
         * A round trip between processes cannot beat the kernel's unix-socket ping-pong (the reference\n  \
         figure in that row); what is above it is the gRPC stack on both sides.\n\
         * Echo throughput counts the bytes once; the same bytes also travel back.\n\
         * Memory is the resident set of the `jmp shell` process that hosts the exporter (the child\n  \
         shell is not counted for either side).\n\
         * Flash and dump: the image is disk-like (per MiB, half pseudo-random, half zeros); the mock\n  \
         medium is a file in a temporary directory on the same disk for both sides. Upstream's\n  \
         exporter never finishes a compressed dump (it sends no end of stream after the last\n  \
         block), so upstream-to-upstream compressed dumps are truncated files and upstream's `j` does\n  \
         not notice; ours reports the truncation as an error, so the `our j -> upstream's exporter`\n  \
         compressed dump has no figure. Upstream's `j` sometimes crashes while exiting after a\n  \
         transfer (opendal's Python binding); such runs are repeated.\n\
         * Mixed rows compare with the upstream-to-upstream figure; below 1x means the mixed pair is\n  \
         slower than upstream alone (the Python side sets the pace).\n\
         * Driver host rows: the same upstream Python driver inside our Python driver host (client ->\n  \
         our exporter -> the host) and inside upstream's exporter; the host costs one more local hop,\n  \
         its point is that the driver works at all, next to native drivers.\n\
         * Controller rows: our `jmp-controller` in its own process, with exporters and clients that\n  \
         speak the real wire protocol over TLS. Upstream's controller needs Kubernetes, so there is\n  \
         no upstream column, except for `jmp shell --client`: ours (with our `j`) and upstream's\n  \
         (with upstream's `j`) against the same controller and the same exporter (ours).\n\
         * Router: one stream from a client through the router to an exporter, each hop TLS over\n  \
         loopback, so every byte is encrypted and decrypted twice and crosses the kernel four times\n  \
         on two shared cores. The reference row moves the same bytes over the same hops through a\n  \
         bare TLS relay with 1 MiB buffers and nothing else (no HTTP/2, no gRPC): no router can beat\n  \
         it on this machine.\n",
    );
    md
}

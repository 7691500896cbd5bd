//! Flash and dump throughput through a local session, and serial console round trips over a
//! pty: ours and upstream's, each side's `j` (or client) against its own exporter, plus the
//! mixed pairs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use jumpstarter_core::Encoding;
use jumpstarter_core::client::Client;
use jumpstarter_core::resource::encoding;
use jumpstarter_core::transport::Target as SessionTarget;
use jumpstarter_drivers::serial::SerialClient;
use jumpstarter_drivers::serial::testing::PtyDevice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::measure::*;
use crate::{Env, target, two_threads};

/// An exporter with a storage mux flasher and a serial port on `tty`.
fn config(dir: &Path, name: &str, tty: &Path) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\n\
             metadata: {{namespace: default, name: {name}}}\nexport:\n\
             \x20 storage: {{type: jumpstarter_driver_opendal.driver.MockStorageMuxFlasher}}\n\
             \x20 serial:\n    type: jumpstarter_driver_pyserial.driver.PySerial\n\
             \x20   config: {{url: {tty}, baudrate: 115200}}\n",
            tty = tty.display()
        ),
    )
    .unwrap();
    path
}

/// A disk-image-like file: per MiB, 512 KiB of pseudo-random bytes and 512 KiB of zeros (zstd
/// halves it, as it does real images).
fn write_image(path: &Path, size: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        for chunk in block[..512 << 10].chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

fn zstd_file(src: &Path, dst: &Path) {
    two_threads().block_on(async {
        let mut r = tokio::fs::File::open(src).await.unwrap();
        let mut w = encoding::encoder(Encoding::Zstd, tokio::fs::File::create(dst).await.unwrap());
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    });
}

/// `j ARGS` against the session at `host`, in `dir`.
fn j(bin: &Path, host: &str, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(dir)
        .args(args)
        .env("JUMPSTARTER_HOST", host)
        .env("JMP_DRIVERS_ALLOW", "UNSAFE")
        .env("_JMP_SUPPRESS_DRIVER_WARNINGS", "1")
        .env("TERM", "dumb");
    c
}

/// Like `time_runs`, but a run that dies by SIGABRT or SIGSEGV is run again (upstream's `j`
/// sometimes crashes while exiting after a dump: opendal's Python binding, apache/opendal#1723).
fn time_runs_retrying_crashes(n: usize, mut make: impl FnMut() -> Command) -> Vec<f64> {
    use std::os::unix::process::ExitStatusExt;
    let mut run = || {
        for _ in 0..5 {
            let mut cmd = make();
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let t = Instant::now();
            let st = cmd.status().expect("run benchmark command");
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            match st.signal() {
                Some(6 | 11) => eprintln!("  (crashed while exiting, run again: {cmd:?})"),
                _ => {
                    assert!(st.success(), "benchmark command failed: {cmd:?}");
                    return ms;
                }
            }
        }
        panic!("benchmark command kept crashing");
    };
    run();
    (0..n).map(|_| run()).collect()
}

pub fn storage(env: &Env, rows: &mut Vec<Row>, targets: &mut Vec<crate::Target>) {
    eprintln!("flash and dump throughput...");
    let size: usize = if env.quick { 256 << 20 } else { 1 << 30 };
    let mb = size as f64 / 1e6;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_image(&d.join("img.raw"), size);
    zstd_file(&d.join("img.raw"), &d.join("img.zst"));
    let zst_mb = std::fs::metadata(d.join("img.zst")).unwrap().len() as f64 / 1e6;

    let ours_dev = PtyDevice::open().unwrap();
    let up_dev = PtyDevice::open().unwrap();
    let ours = Shell::start(&env.our_jmp, &config(d, "ours", ours_dev.path()));
    let up = Shell::start(&env.up_jmp, &config(d, "upstream", up_dev.path()));
    let n = env.n(1, 3);
    // MB/s of the image (the uncompressed size) for one command.
    let rate = |bin: &Path, host: &str, args: &[&str]| {
        mb / (median(time_runs_retrying_crashes(n, || j(bin, host, d, args))) / 1000.0)
    };

    let cases: [(&str, &[&str]); 4] = [
        ("flash", &["storage", "flash", "img.raw"]),
        ("dump", &["storage", "dump", "out.raw"]),
        (
            "flash zstd",
            &["storage", "flash", "--compression", "zstd", "img.zst"],
        ),
        (
            "dump zstd",
            &["storage", "dump", "--compression", "zstd", "out.zst"],
        ),
    ];
    let mut results = Vec::new();
    for (name, args) in cases {
        eprintln!("  {name}...");
        let o = rate(&env.our_j, &ours.host, args);
        let u = rate(&env.up_j, &up.host, args);
        let up_to_ours = rate(&env.up_j, &ours.host, args);
        // Upstream's exporter never finishes a compressed dump: ours reports that as an error,
        // so the mixed figure is only taken where it completes.
        let ours_to_up = (name != "dump zstd").then(|| rate(&env.our_j, &up.host, args));
        results.push((name, o, u, up_to_ours, ours_to_up));
    }
    drop(ours);
    drop(up);

    let gib = if size >= 1 << 30 {
        format!("{} GiB", size >> 30)
    } else {
        format!("{} MiB", size >> 20)
    };
    for (name, o, u, up_to_ours, ours_to_up) in &results {
        let what = match *name {
            "flash" => format!("`j storage flash` of a {gib} image into a local session (MockStorageMuxFlasher; wall time incl. process start, MB/s of the image)"),
            "dump" => format!("`j storage dump` of the same {gib}"),
            "flash zstd" => format!("`j storage flash --compression zstd` of the same image ({zst_mb:.0} MB compressed; MB/s of the image)"),
            _ => "`j storage dump --compression zstd` (the exporter compresses; upstream's output is truncated, see notes)".to_owned(),
        };
        rows.push(Row::new(
            &what,
            format!("{o:.0} MB/s"),
            format!("{u:.0} MB/s"),
            o / u,
        ));
        rows.push(Row::new(
            &format!("Mixed, {name}: upstream's j -> our exporter / our j -> upstream's exporter"),
            match ours_to_up {
                Some(x) => format!("{up_to_ours:.0} MB/s / {x:.0} MB/s"),
                None => format!("{up_to_ours:.0} MB/s / (no complete dump)"),
            },
            format!("{u:.0} MB/s (upstream -> upstream)"),
            up_to_ours / u,
        ));
    }
    let (_, flash, up_flash, _, _) = results[0];
    target(
        targets,
        format!(
            "Uncompressed flash through a local session at least 1 GB/s and at least 10x upstream: {flash:.0} MB/s, {:.0}x",
            flash / up_flash
        ),
        flash >= 1000.0 && flash / up_flash >= 10.0,
    );
}

pub fn serial(env: &Env, rows: &mut Vec<Row>) {
    eprintln!("serial console round trips...");
    let dir = tempfile::tempdir().unwrap();
    let n = env.n(300, 3000);
    // The device answers every line at once (a DUT's shell echoing a command, say).
    let responder = || PtyDevice::with_line_responder(|line| Some([line, b"\n"].concat())).unwrap();
    let ours_dev = responder();
    let up_dev = responder();
    let ours = Shell::start(&env.our_jmp, &config(dir.path(), "ours", ours_dev.path()));
    let up = Shell::start(&env.up_jmp, &config(dir.path(), "upstream", up_dev.path()));

    let rust = |host: &str| {
        two_threads().block_on(async {
            let client = Client::connect(&SessionTarget::Unix(host.into()))
                .await
                .unwrap();
            let serial = SerialClient::new(client.get("serial").unwrap().clone());
            let mut s = serial.connect().await.unwrap();
            let mut samples = Vec::with_capacity(n);
            let mut buf = [0u8; 256];
            for i in 0..n + 50 {
                let msg = format!("ping {i}\n");
                let t = Instant::now();
                s.write_all(msg.as_bytes()).await.unwrap();
                let mut got = 0;
                while got < msg.len() {
                    let k = s.read(&mut buf[got..]).await.unwrap();
                    assert!(k > 0, "serial stream ended");
                    got += k;
                }
                assert_eq!(&buf[..got], msg.as_bytes());
                if i >= 50 {
                    samples.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            (median(samples.clone()), p90(samples))
        })
    };
    let (rust_ours, rust_ours90) = rust(&ours.host);
    let rust_up = rust(&up.host).0;
    let py = |host: &str| env.py("serial.py", &[&n.to_string()], Some(host));
    let py_up = py(&up.host);
    let py_ours = py(&ours.host)["median_us"].as_f64().unwrap();
    let (py_up, py_up90) = (
        py_up["median_us"].as_f64().unwrap(),
        py_up["p90_us"].as_f64().unwrap(),
    );
    drop(ours);
    drop(up);
    rows.push(Row::new(
        "Serial console round trip over a pty: client -> exporter in a `jmp shell` -> pty -> device answering each line (median; p90)",
        format!("{rust_ours:.0} µs; {rust_ours90:.0} µs (Rust client)"),
        format!("{py_up:.0} µs; {py_up90:.0} µs (Python client)"),
        py_up / rust_ours,
    ));
    rows.push(Row::new(
        "Mixed: the Python client -> our exporter / our Rust client -> upstream's exporter (median)",
        format!("{py_ours:.0} µs / {rust_up:.0} µs"),
        format!("{py_up:.0} µs (Python -> upstream)"),
        py_up / py_ours,
    ));
}

//! `j` storage, flasher and opendal commands against our exporter: every encoding, targets,
//! bad input (corrupt data, full and read-only targets, a client killed mid-flash, failing
//! URLs).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use jumpstarter_core::Encoding;
use jumpstarter_core::resource::encoding;
use jumpstarter_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(120);

fn config(dir: &Path) -> PathBuf {
    let fsroot = dir.join("fsroot");
    std::fs::create_dir_all(&fsroot).unwrap();
    let path = dir.join("storage.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata: {{namespace: default, name: storage}}
export:
  storage:
    type: jumpstarter_driver_opendal.driver.MockStorageMuxFlasher
  mux:
    type: jumpstarter_driver_opendal.driver.MockStorageMux
  flasher:
    type: jumpstarter_driver_opendal.driver.MockFlasher
  fs:
    type: jumpstarter_driver_opendal.driver.Opendal
    config: {{scheme: fs, kwargs: {{root: {root}}}}}
  full:
    type: jumpstarter_driver_opendal.driver.Opendal
    config: {{scheme: fs, kwargs: {{root: /dev}}}}
  procfs:
    type: jumpstarter_driver_opendal.driver.Opendal
    config: {{scheme: fs, kwargs: {{root: /proc/self}}}}
",
            root = fsroot.display()
        ),
    )
    .unwrap();
    path
}

/// Runs a shell script inside `jmp shell` (cwd: the config's directory).
fn shell(cfg: &Path, script: &str) -> std::process::Output {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .current_dir(cfg.parent().unwrap())
        .env("PATH", path_with_ours())
        .arg("shell")
        .arg("--exporter-config")
        .arg(cfg)
        .args(["--", "sh", "-c", script]);
    run_timeout(&mut cmd, T)
}

fn image(n: usize) -> Vec<u8> {
    // Compressible but not trivial: a repeated pseudo-random block.
    let block: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    block.iter().cycle().take(n).copied().collect()
}

async fn encode(e: Encoding, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = encoding::encoder(e, &mut out);
    w.write_all(data).await.unwrap();
    w.shutdown().await.unwrap();
    drop(w);
    out
}

async fn decode(e: Encoding, data: Vec<u8>) -> Vec<u8> {
    let mut r = encoding::decoder(e, std::io::Cursor::new(data));
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn flash_and_dump_with_every_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let data = image(3_000_000);
    std::fs::write(dir.path().join("img.raw"), &data).unwrap();
    let mut script = String::from("set -e; j storage flash img.raw; j storage dump out.raw; ");
    for e in Encoding::ALL {
        std::fs::write(dir.path().join(format!("img.{e}")), encode(e, &data).await).unwrap();
        script.push_str(&format!(
            "j storage flash img.{e} --compression {e}; j storage dump out.{e} --compression {up}; ",
            up = e.as_str().to_uppercase()
        ));
    }
    // The mux and the flasher interfaces too.
    script.push_str(
        "j mux host; j mux write-local-file img.gzip --compression gzip; j mux read-local-file mux.raw; j mux dut; j mux off; \
         j flasher flash -t boot:img.raw -t root:img.xz; j flasher flash img.raw; \
         j flasher dump --target boot boot.raw; j flasher dump default.raw",
    );
    let out = shell(&cfg, &script);
    ok(&out);
    // Not a terminal: no progress bar. The only line on stderr is the note about the xz file
    // flashed as is to the `root` target.
    assert_eq!(
        text(&out.stderr),
        "note: img.xz looks like xz data; it is sent as is. Pass --compression xz to decompress it on the way.\n"
    );
    assert_eq!(std::fs::read(dir.path().join("out.raw")).unwrap(), data);
    for e in Encoding::ALL {
        let dumped = std::fs::read(dir.path().join(format!("out.{e}"))).unwrap();
        assert_eq!(Encoding::from_magic(&dumped), Some(e), "dump is {e}");
        assert_eq!(decode(e, dumped).await, data, "{e}");
    }
    for f in ["mux.raw", "boot.raw", "default.raw"] {
        assert_eq!(std::fs::read(dir.path().join(f)).unwrap(), data, "{f}");
    }
}

#[tokio::test]
async fn compressed_looking_files_get_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::write(
        dir.path().join("img.bin"),
        encode(Encoding::Zstd, b"zstd inside").await,
    )
    .unwrap();
    let out = shell(&cfg, "j storage flash img.bin && j storage dump raw.bin");
    ok(&out);
    let err = text(&out.stderr);
    assert!(
        err.contains("img.bin looks like zstd data; it is sent as is. Pass --compression zstd"),
        "{err}"
    );
    // Sent as is: the medium holds the compressed bytes.
    assert_eq!(
        Encoding::from_magic(&std::fs::read(dir.path().join("raw.bin")).unwrap()),
        Some(Encoding::Zstd)
    );
}

#[tokio::test]
async fn corrupt_and_truncated_data_fail_the_flash() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let good = encode(Encoding::Xz, &image(500_000)).await;
    std::fs::write(dir.path().join("cut.xz"), &good[..good.len() / 2]).unwrap();
    std::fs::write(
        dir.path().join("junk.gz"),
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage!",
    )
    .unwrap();
    let out = shell(
        &cfg,
        "j storage flash cut.xz --compression xz; echo \"rc1=$?\"; j storage flash junk.gz --compression gzip; echo \"rc2=$?\"; \
         j flasher flash --compression xz cut.xz; echo \"rc3=$?\"; j storage host && echo alive",
    );
    let s = text(&out.stdout);
    let e = text(&out.stderr);
    assert!(
        s.contains("rc1=1\n") && s.contains("rc2=1\n") && s.contains("rc3=1\n"),
        "{s}\n{e}"
    );
    assert!(s.contains("alive"), "the exporter keeps serving: {s}");
    assert_eq!(e.matches("corrupt or truncated data").count(), 3, "{e}");
    assert!(e.contains("INVALID_ARGUMENT"), "{e}");
}

#[tokio::test]
async fn full_and_read_only_targets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::write(dir.path().join("data.bin"), image(1_000_000)).unwrap();
    let out = shell(
        &cfg,
        "j full write-from-path full data.bin; echo \"rc1=$?\"; j procfs write-from-path newfile data.bin; echo \"rc2=$?\"; \
         j fs write-from-path ok.bin data.bin && echo fine",
    );
    let s = text(&out.stdout);
    let e = text(&out.stderr);
    assert!(
        s.contains("rc1=1\n") && s.contains("rc2=1\n") && s.contains("fine"),
        "{s}\n{e}"
    );
    assert!(e.to_lowercase().contains("no space left on device"), "{e}");
    assert_eq!(
        std::fs::read(dir.path().join("fsroot/ok.bin")).unwrap(),
        image(1_000_000)
    );
}

#[tokio::test]
async fn opendal_commands() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let out = shell(
        &cfg,
        "set -e; printf 'hello opendal' | j fs write-bytes dir/a.txt; j fs read-bytes dir/a.txt; echo; \
         j fs stat dir/a.txt; j fs hash dir/a.txt; j fs hash --algo md5 dir/a.txt; \
         printf 'hello opendal' | sha256sum | cut -d' ' -f1; printf 'hello opendal' | md5sum | cut -d' ' -f1; \
         j fs copy dir/a.txt dir/b.txt; j fs rename dir/b.txt dir/c.txt; j fs create-dir empty/; \
         j fs list dir/; echo ---; j fs scan /; echo ---; j fs exists dir/c.txt && echo exists; \
         if j fs exists dir/b.txt 2>err; then exit 9; fi; cat err; \
         j fs read-into-path dir/c.txt local.txt; j fs delete dir/c.txt; j fs remove-all dir/; \
         j fs capability | grep -c '\"' ; if j fs presign-read dir/a.txt --expire-second 60 2>perr; then exit 8; fi; cat perr",
    );
    let s = ok(&out);
    assert!(s.starts_with("hello opendal\n"), "{s}");
    assert!(s.contains("\"content_length\": 13"), "{s}");
    assert!(
        s.contains("\"is_file\": true"),
        "stat prints upstream's aliases: {s}"
    );
    // Our hashes (first two) equal coreutils' (next two).
    let hashes: Vec<&str> = s
        .lines()
        .filter(|l| (l.len() == 64 || l.len() == 32) && l.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    assert_eq!(hashes.len(), 4, "{s}");
    assert_eq!((hashes[0], hashes[1]), (hashes[2], hashes[3]), "{s}");
    let listing = s.split("---").next().unwrap();
    assert!(
        listing.contains("dir/a.txt") && listing.contains("dir/c.txt"),
        "{listing}"
    );
    assert!(s.contains("exists\n"), "{s}");
    assert!(s.contains("Error: path dir/b.txt does not exist"), "{s}");
    assert!(s.contains("\n33\n"), "33 capability fields: {s}");
    assert!(
        s.contains("Error: DriverCall 'presign_read' failed with gRPC UNKNOWN"),
        "{s}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("local.txt")).unwrap(),
        b"hello opendal"
    );
    assert!(!dir.path().join("fsroot/dir").exists());
    assert!(dir.path().join("fsroot/empty").is_dir());
}

#[test]
fn a_client_killed_mid_flash_leaves_the_exporter_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    // Large enough to still be in flight when killed.
    let big = dir.path().join("big.raw");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(2 << 30).unwrap();
    let out = shell(
        &cfg,
        "j storage flash big.raw & pid=$!; sleep 0.5; kill -9 $pid; wait $pid; echo \"killed=$?\"; \
         j storage host && j storage dut && echo alive",
    );
    let s = ok(&out);
    assert!(s.contains("killed=137\n"), "{s}");
    assert!(s.contains("alive\n"), "{s}");
}

#[test]
fn flash_from_an_http_url() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("img.raw"), image(2_000_000)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "http server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Kill(std::mem::replace(
            &mut server,
            Command::new("true").spawn().unwrap(),
        ))
    };
    let url = format!("http://127.0.0.1:{port}");
    let out = shell(
        &cfg,
        &format!(
            "set -e; j storage flash {url}/img.raw; j storage dump out.raw; \
             if j storage flash {url}/missing.raw 2>e1; then exit 7; fi; \
             if j storage flash {url}/img.raw --compression gzip 2>e2; then exit 8; fi; cat e1 e2"
        ),
    );
    let s = ok(&out);
    assert_eq!(
        std::fs::read(dir.path().join("out.raw")).unwrap(),
        image(2_000_000)
    );
    assert!(s.contains("status=404"), "{s}");
    assert!(
        s.contains("compression is not supported with direct HTTP URLs"),
        "{s}"
    );
    let _ = server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_flashes_byte_identical_with_and_without_compression() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let raw = dir.path().join("big.raw");
    let want = write_gib(&raw);

    // zstd-compress it with our encoder, streaming.
    let zst = dir.path().join("big.zst");
    {
        let mut src = tokio::fs::File::open(&raw).await.unwrap();
        let mut w = encoding::encoder(Encoding::Zstd, tokio::fs::File::create(&zst).await.unwrap());
        tokio::io::copy(&mut src, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    }

    // Raw: flash, dump; then zstd both ways. Each dump is hashed and removed before the next.
    ok(&shell(
        &cfg,
        "set -e; j storage flash big.raw; j storage dump out.raw",
    ));
    let out = dir.path().join("out.raw");
    assert_eq!(
        sha256_of(&out, None).await,
        (want.clone(), GIB as u64),
        "raw"
    );
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(&raw).unwrap();

    ok(&shell(
        &cfg,
        "set -e; j storage flash --compression zstd big.zst; j storage dump out.raw; \
         j storage dump --compression zstd out.zst",
    ));
    assert_eq!(
        sha256_of(&out, None).await,
        (want.clone(), GIB as u64),
        "zstd flash"
    );
    assert_eq!(
        sha256_of(&dir.path().join("out.zst"), Some(Encoding::Zstd)).await,
        (want, GIB as u64),
        "zstd dump"
    );
}

/// A source that can be read once (a pipe, a FIFO written slowly) arrives whole: `j` must not
/// read ahead of the upload to guess its compression.
#[tokio::test]
async fn flash_from_a_pipe_or_a_slow_fifo_keeps_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let data = image(1_000_000);
    std::fs::write(dir.path().join("img.raw"), &data).unwrap();
    let script = "set -e
        cat img.raw | j storage flash /dev/stdin
        j storage dump piped.raw
        mkfifo slow.fifo
        (i=0; while [ $i -lt 40 ]; do dd if=img.raw bs=4096 skip=$i count=1 2>/dev/null; sleep 0.01; i=$((i+1)); done) > slow.fifo &
        j storage flash slow.fifo
        wait
        j storage dump fifo.raw";
    let out = shell(&cfg, script);
    ok(&out);
    assert_eq!(std::fs::read(dir.path().join("piped.raw")).unwrap(), data);
    let fifo = std::fs::read(dir.path().join("fifo.raw")).unwrap();
    assert_eq!(fifo.len(), 40 * 4096);
    assert_eq!(fifo, data[..40 * 4096]);
}

/// Killed processes leave no files behind: mock media have no name in the temporary
/// directory, and a dump has a name only once it is complete.
#[test]
fn killed_exporter_and_dump_leave_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::write(dir.path().join("img.raw"), image(32 << 20)).unwrap();
    let script = "j storage flash img.raw && j flasher flash img.raw || exit 9
        j storage dump out.raw & pid=$!
        sleep 0.1; ls -a . > during.txt; kill -9 $pid; wait
        ls -a \"$TMPDIR\" > media.txt
        kill -9 $PPID";
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .current_dir(dir.path())
        .env("PATH", path_with_ours())
        .env("TMPDIR", &tmp)
        .arg("shell")
        .arg("--exporter-config")
        .arg(&cfg)
        .args(["--", "sh", "-c", script]);
    let out = run_timeout(&mut cmd, T);
    assert_ne!(out.status.code(), Some(9), "{}", text(&out.stderr));
    let media = std::fs::read_to_string(dir.path().join("media.txt")).unwrap();
    let during = std::fs::read_to_string(dir.path().join("during.txt")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let after: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .chain(std::fs::read_dir(dir.path()).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for listing in [media.as_str(), during.as_str(), &after.join("\n")] {
        assert!(
            !listing.contains("jumpstarter-mux")
                && !listing.contains("jumpstarter-flasher")
                && !listing.contains(".jumpstarter-dump"),
            "{listing}"
        );
    }
}

//! `j <serial> pipe|start-console|call` against our exporter: loop://, a pty standing in for a
//! device, usage errors, and the console driven through a real terminal (a pty).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jumpstarter_core::LogHub;
use jumpstarter_drivers::serial::testing::PtyDevice;
use jumpstarter_exporter::Exporter;
use jumpstarter_testkit::*;
use nix::sys::termios::{LocalFlags, Termios};

const T: Duration = Duration::from_secs(60);

fn config(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("serial.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\n\
             metadata: {{namespace: default, name: serial}}\nexport:\n  serial:\n    \
             type: jumpstarter_driver_pyserial.driver.PySerial\n    config:\n      url: \"{url}\"\n"
        ),
    )
    .unwrap();
    path
}

fn shell_cmd(dir: &Path, cfg: &Path, script: &str) -> Command {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .current_dir(dir)
        .env("PATH", path_with_ours())
        .arg("shell")
        .arg("--exporter-config")
        .arg(cfg)
        .args(["--", "sh", "-c", script]);
    cmd
}

fn shell(dir: &Path, cfg: &Path, script: &str) -> std::process::Output {
    run_timeout(&mut shell_cmd(dir, cfg, script), T)
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

fn wait_file(dir: &Path, name: &str, needle: &str) {
    let deadline = Instant::now() + T;
    while !read(dir, name).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{name} never got {needle:?}: {:?}",
            read(dir, name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const BIDI: &str = "Bidirectional mode (auto-detected piped stdin): stdin→serial, serial→stdout (Ctrl+C to exit)\n";
const CLOSED: &str = "\nSerial connection closed normally (end of stream).\n";
const LOST: &str =
    "\nSerial connection lost (broken resource). The connection may have been interrupted.\n";

#[test]
fn pipe_sends_piped_stdin_and_prints_what_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "loop://");
    let out = shell(
        dir.path(),
        &cfg,
        "printf 'hello serial\\n' | j serial pipe; echo \"rc=$?\"; \
         head -c 300000 /dev/urandom > in.bin; j serial pipe < in.bin > out.bin 2>/dev/null; \
         cmp in.bin out.bin && echo same",
    );
    let stdout = ok(&out);
    let stderr = text(&out.stderr);
    assert!(stdout.contains("hello serial\nrc=0\n"), "{stdout}");
    assert!(stdout.contains("same\n"), "{stdout}");
    assert!(stderr.contains(&format!("{BIDI}{CLOSED}")), "{stderr}");
    // The exporter logs the connection like upstream.
    assert!(
        stdout.contains("[driver.PySerial] Connecting to loop://, baudrate: 115200"),
        "{stdout}"
    );
}

#[test]
fn pipe_modes_files_and_fire_and_forget() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "loop://");
    let out = shell(
        dir.path(),
        &cfg,
        "set -e; printf 'one\\n' | j serial pipe -o log 2>e1; printf 'two\\n' | j serial pipe -a -o log 2>e2; \
         cp log appended; printf 'three\\n' | j serial pipe --output log 2>/dev/null; \
         printf 'x\\n' | j serial pipe -i 2>e3; printf 'y\\n' | j serial pipe --no-output 2>e4 >fire; \
         printf 'z\\n' | j serial pipe --input --no-output 2>e5",
    );
    ok(&out);
    let d = dir.path();
    assert_eq!(read(d, "appended"), "one\ntwo\n");
    assert_eq!(read(d, "log"), "three\n");
    assert_eq!(
        read(d, "e1"),
        format!(
            "Bidirectional mode (auto-detected piped stdin) with logging to log... (Ctrl+C to exit)\n{CLOSED}"
        )
    );
    assert!(
        read(d, "e2").starts_with(
            "Bidirectional mode (auto-detected piped stdin) with logging to log... (Ctrl+C to exit)\n"
        ),
        "{}",
        read(d, "e2")
    );
    assert_eq!(
        read(d, "e3"),
        format!(
            "Bidirectional mode (forced input mode): stdin→serial, serial→stdout (Ctrl+C to exit)\n{CLOSED}"
        )
    );
    // Fire-and-forget: no output, no end-of-stream message.
    assert_eq!(
        read(d, "e4"),
        "Fire-and-forget mode (auto-detected piped stdin): stdin→serial, no output (exits at EOF)\n"
    );
    assert_eq!(read(d, "fire"), "");
    assert_eq!(
        read(d, "e5"),
        "Fire-and-forget mode (forced input mode): stdin→serial, no output (exits at EOF)\n"
    );
    assert!(text(&out.stdout).contains("x\n"));
}

#[test]
fn conflicting_pipe_options_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "loop://");
    let cases = [
        ("-i --no-input", "Cannot use both --input and --no-input"),
        (
            "--no-output -o f",
            "Cannot use both --no-output and --output",
        ),
        ("--no-output -a", "Cannot use both --no-output and --append"),
        ("-a", "--append requires --output"),
        (
            "--no-output --no-input",
            "--no-output requires stdin input (pipe stdin or use --input)",
        ),
    ];
    let script: String = cases
        .iter()
        .map(|(args, _)| {
            format!("j serial pipe {args} </dev/null 2>>errs; echo \"rc=$?\" >>errs; ")
        })
        .collect::<String>()
        + "cat errs";
    let out = ok(&shell(dir.path(), &cfg, &script));
    let expected: String = cases
        .iter()
        .map(|(_, msg)| {
            format!(
                "Usage: j serial pipe [OPTIONS]\nTry 'j serial pipe --help' for help.\n\nError: {msg}\nrc=1\n"
            )
        })
        .collect();
    assert!(out.contains(&expected), "{out}");
    // Nothing was opened or connected.
    assert!(!dir.path().join("f").exists());
    assert!(!out.contains("Connecting to"), "{out}");
}

#[test]
fn start_console_needs_a_terminal_and_call_reaches_the_other_methods() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "loop://");
    let out = shell(
        dir.path(),
        &cfg,
        "j serial start-console </dev/null; echo \"rc=$?\"; \
         j serial call set_dtr true && j serial call set_rts false && j serial call close && echo calls-ok",
    );
    let stdout = ok(&out);
    assert!(stdout.contains("rc=1\n"), "{stdout}");
    assert!(stdout.contains("calls-ok\n"), "{stdout}");
    assert!(
        text(&out.stderr).contains(
            "Error: start-console needs a terminal, but stdin is not a TTY; use `pipe` to connect the serial port to pipes or files\n"
        ),
        "{}",
        text(&out.stderr)
    );
}

/// A device that answers `got:<LINE IN CAPITALS>` to each line.
fn shouting_device() -> PtyDevice {
    PtyDevice::with_line_responder(|line| {
        Some([b"got:", &line.to_ascii_uppercase()[..], b"\r\n"].concat())
    })
    .unwrap()
}

#[test]
fn pipe_to_a_device_until_ctrl_c_and_fire_and_forget() {
    let dev = shouting_device();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &dev.path().to_string_lossy());
    let out = shell(
        dir.path(),
        &cfg,
        "printf 'ready\\n' | j serial pipe -o out.log 2>err & pid=$!; \
         for i in $(seq 600); do grep -q 'got:READY' out.log 2>/dev/null && break; sleep 0.05; done; \
         kill -INT $pid; wait $pid; echo \"rc=$?\"; cat err; \
         printf 'fire\\n' | j serial pipe --no-output 2>/dev/null; echo \"fire-rc=$?\"",
    );
    let stdout = ok(&out);
    assert!(stdout.contains("rc=0\n"), "{stdout}");
    assert!(stdout.contains("fire-rc=0\n"), "{stdout}");
    // The input ended, the device kept talking, Ctrl-C stopped it.
    assert!(
        stdout.contains(
            "Bidirectional mode (auto-detected piped stdin) with logging to out.log... (Ctrl+C to exit)\n\nStopped.\n"
        ),
        "{stdout}"
    );
    assert_eq!(read(dir.path(), "out.log"), "got:READY\r\n");
    // What fire-and-forget sent reached the device.
    assert!(dev.wait_for(b"ready\nfire\n", T), "{:?}", dev.received());
}

#[test]
fn an_unplugged_device_ends_pipe_with_connection_lost() {
    let mut dev = PtyDevice::open().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &dev.path().to_string_lossy());
    let mut cmd = shell_cmd(
        dir.path(),
        &cfg,
        "j serial pipe --no-input > out 2> err; echo \"rc=$?\"; cat err",
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    dev.write(b"booting\r\n").unwrap();
    wait_file(dir.path(), "out", "booting\r\n");
    dev.hang_up();
    let out = wait_output(child, T, "j serial pipe");
    let stdout = ok(&out);
    assert!(
        stdout.contains(&format!(
            "rc=0\nReading from serial port (read-only)... (Ctrl+C to exit)\n{LOST}"
        )),
        "{stdout}"
    );
}

/// Our exporter, in this process, for tests that run `j` on a terminal of their own.
struct LocalExporter {
    rt: tokio::runtime::Runtime,
    session: Option<jumpstarter_exporter::LocalSession>,
    _dir: tempfile::TempDir,
}

impl LocalExporter {
    fn start(url: &str) -> LocalExporter {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), url);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let session = rt.block_on(async {
            let exporter = Exporter::load(&cfg).await.unwrap();
            exporter.start_local(LogHub::new()).await.unwrap()
        });
        LocalExporter {
            rt,
            session: Some(session),
            _dir: dir,
        }
    }

    fn host(&self) -> &Path {
        self.session.as_ref().unwrap().path()
    }
}

impl Drop for LocalExporter {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.rt.block_on(s.stop());
        }
    }
}

/// `j serial start-console` with a pty as its terminal (stdin, stdout and stderr).
fn console_on(term: &PtyDevice, exporter: &LocalExporter) -> std::process::Child {
    let mut cmd = Command::new(j());
    clean(&mut cmd)
        .env("JUMPSTARTER_HOST", exporter.host())
        .env("JMP_DRIVERS_ALLOW", "UNSAFE")
        .args(["serial", "start-console"])
        .stdin(term.open_slave().unwrap())
        .stdout(term.open_slave().unwrap())
        .stderr(term.open_slave().unwrap());
    cmd.spawn().unwrap()
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + T;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("start-console did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn same_settings(a: &Termios, b: &Termios) -> bool {
    a.input_flags == b.input_flags
        && a.output_flags == b.output_flags
        && a.control_flags == b.control_flags
        && a.local_flags == b.local_flags
        && a.control_chars == b.control_chars
}

const BANNER: &[u8] = b"\r\nStarting serial port console ... exit with CTRL+B x 3 times\r\n\r\n";

#[test]
fn start_console_forwards_keys_leaves_on_three_ctrl_b_and_restores_the_terminal() {
    let exporter = LocalExporter::start("loop://");
    let term = PtyDevice::terminal().unwrap();
    let cooked = term.termios().unwrap();
    assert!(
        cooked
            .local_flags
            .contains(LocalFlags::ECHO | LocalFlags::ICANON)
    );
    let mut child = console_on(&term, &exporter);
    assert!(term.wait_for(BANNER, T), "{:?}", term.received());
    // Raw mode: no echo, no line editing, no signals from keys.
    let raw = term.termios().unwrap();
    assert!(
        !raw.local_flags
            .intersects(LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::ISIG),
        "{raw:?}"
    );
    term.clear();
    // What is typed reaches the serial port (loop:// sends it back to the screen). Ctrl-C is
    // just a byte; one or two Ctrl-B are forwarded, another key resets the count.
    term.write(b"hello\x03").unwrap();
    assert!(term.wait_for(b"hello\x03", T), "{:?}", term.received());
    term.write(b"\x02\x02x\x02").unwrap();
    term.write(b"\x02").unwrap();
    assert!(
        term.wait_for(b"hello\x03\x02\x02x\x02\x02", T),
        "{:?}",
        term.received()
    );
    term.write(b"\x02").unwrap();
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(0));
    assert!(same_settings(&term.termios().unwrap(), &cooked));
    // The third Ctrl-B was not sent.
    assert_eq!(term.received(), b"hello\x03\x02\x02x\x02\x02");
}

#[test]
fn start_console_restores_the_terminal_when_killed() {
    let exporter = LocalExporter::start("loop://");
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGTERM, 143),
        (nix::sys::signal::Signal::SIGINT, 130),
    ] {
        let term = PtyDevice::terminal().unwrap();
        let cooked = term.termios().unwrap();
        let mut child = console_on(&term, &exporter);
        assert!(term.wait_for(BANNER, T), "{:?}", term.received());
        assert!(!same_settings(&term.termios().unwrap(), &cooked));
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        let status = wait_exit(&mut child);
        assert_eq!(status.code(), Some(code), "{signal}");
        assert!(same_settings(&term.termios().unwrap(), &cooked), "{signal}");
    }
}

#[test]
fn start_console_shows_the_device_and_reports_a_lost_connection() {
    let mut dev = PtyDevice::open().unwrap();
    let exporter = LocalExporter::start(&dev.path().to_string_lossy());
    let term = PtyDevice::terminal().unwrap();
    let cooked = term.termios().unwrap();
    let mut child = console_on(&term, &exporter);
    assert!(term.wait_for(BANNER, T));
    // Typed keys reach the device, the device's output reaches the screen.
    term.write(b"ls\r").unwrap();
    assert!(dev.wait_for(b"ls\r", T), "{:?}", dev.received());
    dev.write(b"bin etc\r\n").unwrap();
    assert!(term.wait_for(b"bin etc\r\n", T), "{:?}", term.received());
    dev.hang_up();
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(1));
    assert!(same_settings(&term.termios().unwrap(), &cooked));
    // Printed after the terminal was restored, so with the usual CR-LF line ends.
    assert!(
        term.wait_for(
            b"\r\nSerial connection lost (broken resource). The connection may have been interrupted.\r\n",
            T
        ),
        "{:?}",
        String::from_utf8_lossy(&term.received())
    );
}

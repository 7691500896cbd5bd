//! `j` as a newcomer meets it (issue 14): storage targets, closed pipes, argument errors in
//! click's words, unavailable hosted drivers, progress on a terminal, `forward-unix` sockets,
//! `address` advice and one-line command lists. Every test runs the real binaries.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(90);

const CONFIG: &str = "apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata: {namespace: default, name: newcomer}
export:
  power:
    type: jumpstarter_driver_power.driver.MockPower
  echo:
    type: jumpstarter_driver_network.driver.EchoNetwork
  storage:
    type: jumpstarter_driver_opendal.driver.MockStorageMuxFlasher
  flasher:
    type: jumpstarter_driver_opendal.driver.MockFlasher
";

fn config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("exporter.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn shell_cmd(cfg: &Path, script: &str) -> Command {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .current_dir(cfg.parent().unwrap())
        .env("PATH", path_with_ours())
        .arg("shell")
        .arg("--exporter-config")
        .arg(cfg)
        .args(["--", "bash", "-c", script]);
    cmd
}

/// Runs a bash script inside `jmp shell` (cwd: the config's directory).
fn shell(cfg: &Path, script: &str) -> std::process::Output {
    run_timeout(&mut shell_cmd(cfg, script), T)
}

/// Item 7: the storage-mux flasher has upstream's `-t/--target` (named by its own error
/// message) and refuses a target by name as upstream's client does; plain flashers flash
/// by target.
#[test]
fn storage_flash_has_the_target_option_its_error_names() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), CONFIG);
    std::fs::write(dir.path().join("img.raw"), vec![7u8; 4096]).unwrap();
    let out = shell(
        &cfg,
        "j storage flash --help; echo rc=$?; j storage flash; echo rc=$?; \
         j storage flash -t main:img.raw; echo rc=$?; j storage flash --target bad; echo rc=$?; \
         j storage dump --target main out.img; echo rc=$?; test -e out.img || echo no-dump; \
         j flasher flash -t main:img.raw; echo rc=$?",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("  -t, --target <NAME:FILE> "), "{stdout}");
    assert!(
        stderr.contains("Error: FILE argument is required unless --target/-t is used\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "Error: target is not supported for StorageMuxFlasherClient, main provided\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("Error: Invalid target spec 'bad', expected name:file\n"),
        "{stderr}"
    );
    let codes: Vec<&str> = stdout.lines().filter(|l| l.starts_with("rc=")).collect();
    assert_eq!(
        codes,
        ["rc=0", "rc=1", "rc=1", "rc=1", "rc=1", "rc=0"],
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("no-dump"), "{stdout}");
}

/// Item 8: a reader that goes away ends every command quietly, with click's status 1.
#[test]
fn a_closed_pipe_ends_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), CONFIG);
    let out = shell(
        &cfg,
        "j power read -n 0 -i 0.01 2>err.txt | head -2; echo \"rc=${PIPESTATUS[0]}\"; \
         j echo connect < /dev/zero 2>err2.txt | head -c 100000 > /dev/null; echo \"rc=${PIPESTATUS[0]}\"",
    );
    let stdout = ok(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        &lines[..2],
        [
            "voltage=0.0 V  current=0.0 A  apparent_power=0.0 VA",
            "voltage=5.0 V  current=2.0 A  apparent_power=10.0 VA"
        ],
        "{stdout}"
    );
    assert_eq!(&lines[2..], ["rc=1", "rc=1"], "{stdout}");
    for f in ["err.txt", "err2.txt"] {
        let err = std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert_eq!(err, "", "{f}");
    }

    // Outside a shell: our binaries with a stdout nobody reads any more.
    for (bin, args) in [
        (jmp(), &["completion", "bash"][..]),
        (jmp(), &["version"][..]),
        (jmp(), &["config", "client", "list"][..]),
        (controller_bin(), &["--help"][..]),
    ] {
        let mut cmd = Command::new(&bin);
        clean(&mut cmd)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take()); // closed before the program writes
        let out = wait_output_no_stdout(child);
        assert!(
            out.0.code() == Some(1) || out.0.code() == Some(0),
            "{bin:?} {args:?}: {:?}",
            out.0
        );
        assert_eq!(out.1, "", "{bin:?} {args:?}");
    }
}

/// Waits for a child whose stdout was dropped; returns its status and stderr.
fn wait_output_no_stdout(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return (s, err);
        }
        assert!(std::time::Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Item 10: usage errors as upstream's click prints them, in the command they happen in.
#[test]
fn argument_errors_read_as_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), CONFIG);
    let cases: &[(&str, &str)] = &[
        (
            "j power on extra",
            "Usage: j power on [OPTIONS]\nTry 'j power on --help' for help.\n\n\
             Error: Got unexpected extra argument (extra)\n",
        ),
        (
            "j power cycle -w 1 2 3",
            "Usage: j power cycle [OPTIONS]\nTry 'j power cycle --help' for help.\n\n\
             Error: Got unexpected extra arguments (2 3)\n",
        ),
        (
            "j power cycle -w abc",
            "Usage: j power cycle [OPTIONS]\nTry 'j power cycle --help' for help.\n\n\
             Error: Invalid value for '--wait' / '-w': 'abc' is not a valid integer.\n",
        ),
        (
            "j power read -i x",
            "Usage: j power read [OPTIONS]\nTry 'j power read --help' for help.\n\n\
             Error: Invalid value for '--interval' / '-i': 'x' is not a valid float.\n",
        ),
        (
            "j power on -x",
            "Usage: j power on [OPTIONS]\nTry 'j power on --help' for help.\n\n\
             Error: No such option '-x'.\n",
        ),
        (
            "j storage flash --compression foo x",
            "Usage: j storage flash [OPTIONS] [FILE]...\nTry 'j storage flash --help' for help.\n\n\
             Error: Invalid value for '--compression': 'foo' is not one of 'gzip', 'xz', 'bz2', 'zstd'.\n",
        ),
        (
            "j echo forward-tcp",
            "Usage: j echo forward-tcp [OPTIONS] PORT\nTry 'j echo forward-tcp --help' for help.\n\n\
             Error: Missing argument 'PORT'.\n",
        ),
    ];
    for (line, want) in cases {
        let out = shell(&cfg, line);
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert_eq!(text(&out.stderr), *want, "{line}");
    }
}

/// Item 10: a hosted driver whose host could not start is reported as unavailable, with the
/// host's reason, instead of offering generic commands.
#[test]
fn an_unavailable_hosted_driver_says_so_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata: {namespace: default, name: newcomer}
driverHost:
  python: ./no-such-python3
export:
  power:
    type: jumpstarter_driver_power.driver.MockPower
  custom:
    type: vendorpackage.CustomDriver
",
    );
    let out = shell(
        &cfg,
        "j custom on; echo rc=$?; j custom; echo rc=$?; j --help; j power on; echo rc=$?",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let want = "Error: driver `custom` is unavailable: Python `./no-such-python3` (from \
                driverHost.python in the exporter config) was not found";
    assert_eq!(stderr.matches(want).count(), 2, "{stderr}");
    assert!(!stderr.contains("No such command"), "{stderr}");
    let codes: Vec<&str> = stdout.lines().filter(|l| l.starts_with("rc=")).collect();
    assert_eq!(codes, ["rc=1", "rc=1", "rc=0"], "{stdout}");
    assert!(
        stdout.contains("  custom  unavailable: Python `./no-such-python3`"),
        "{stdout}"
    );
}

/// Runs a script inside `jmp shell` under a pty (script(1)): what a terminal shows.
fn on_a_terminal(cfg: &Path, script: &str) -> String {
    let inner = format!(
        "jmp shell --exporter-config '{}' -- bash -c '{script}'",
        cfg.display()
    );
    let mut cmd = Command::new("script");
    clean(&mut cmd)
        .current_dir(cfg.parent().unwrap())
        .env("PATH", path_with_ours())
        .env("TERM", "xterm")
        .args(["-qec", &inner, "/dev/null"]);
    text(&run_timeout(&mut cmd, T).stdout)
}

/// Item 14: a transfer of unknown size shows bytes and rate without a total; a missing
/// file draws no bar, its error stands alone.
#[test]
fn progress_without_a_size_and_for_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), CONFIG);
    std::fs::write(dir.path().join("img.raw"), vec![1u8; 3 << 20]).unwrap();
    let flash = on_a_terminal(&cfg, "j storage flash img.raw");
    assert!(flash.contains("3.00 MiB/3.00 MiB"), "{flash:?}");

    // The mock medium holds what was flashed in the session (3 MiB).
    let dump = on_a_terminal(
        &cfg,
        "j storage flash img.raw >/dev/null 2>&1; j storage dump out.img; echo rc=$?",
    );
    assert!(dump.contains("3.00 MiB"), "{dump:?}");
    assert!(dump.contains("rc=0"), "{dump:?}");
    assert!(dump.contains("transfer "), "{dump:?}");
    assert!(dump.contains(" MiB/s elapsed"), "{dump:?}");
    // No total: no `N MiB/M MiB`, no bar, no remaining time.
    let totals = dump.split("B/").skip(1).filter(|s| !s.starts_with('s'));
    assert_eq!(totals.count(), 0, "{dump:?}");
    assert!(
        !dump.contains('░') && !dump.contains("remaining"),
        "{dump:?}"
    );

    let missing = on_a_terminal(&cfg, "j storage flash nosuch.img; echo rc=$?");
    assert!(!missing.contains("transfer"), "{missing:?}");
    assert!(!missing.contains("0 B/0 B"), "{missing:?}");
    let err = missing
        .lines()
        .find(|l| l.contains("nosuch.img"))
        .unwrap_or_default();
    assert!(err.starts_with("Error: nosuch.img: "), "{missing:?}");
    assert!(missing.contains("rc=1"), "{missing:?}");
}

fn j_pid(shell: &Proc) -> u32 {
    let deadline = std::time::Instant::now() + T;
    loop {
        for pid in descendants(shell.child.id()) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "j" {
                return pid;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no j process");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn forward_unix(cfg: &Path, path: &Path) -> Proc {
    let mut cmd = shell_cmd(
        cfg,
        &format!("exec j echo forward-unix '{}'", path.display()),
    );
    Proc::spawn(&mut cmd, "j echo forward-unix")
}

fn echo_through(path: &Path) {
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
}

/// Item 16b: `forward-unix` removes its socket on SIGTERM and SIGINT, and replaces a stale
/// socket file left by a killed run; a socket someone listens on is left alone.
#[test]
fn forward_unix_cleans_up_and_replaces_stale_sockets() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), CONFIG);
    let path = dir.path().join("fwd.sock");

    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut p = forward_unix(&cfg, &path);
        p.wait_for(&path.display().to_string(), T);
        echo_through(&path);
        kill(Pid::from_raw(j_pid(&p) as i32), sig).unwrap();
        let status = p.wait(T);
        assert!(status.success(), "{sig}: {status} {}", p.output());
        assert!(!path.exists(), "{sig}: the socket file is left");
    }

    // A socket file nobody listens on (what SIGKILL leaves) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut p = forward_unix(&cfg, &path);
    p.wait_for(&path.display().to_string(), T);
    echo_through(&path);
    kill(Pid::from_raw(j_pid(&p) as i32), Signal::SIGTERM).unwrap();
    assert!(p.wait(T).success(), "{}", p.output());

    // A live listener is not taken over.
    let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let out = shell(&cfg, &format!("j echo forward-unix '{}'", path.display()));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "Error: cannot listen on {}: another process is listening there\n",
            path.display()
        )
    );
    drop(live);
}

/// Item 16c: `address` on a driver without one says so, instead of blaming the exporter's
/// version.
#[test]
fn address_on_a_driver_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), CONFIG);
    let out = shell(&cfg, "j echo address");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(
        err,
        "Error: echo has no direct address: its driver does not export `address` (TCP and UDP \
         network drivers do, on exporters 0.7.1 or later)\n"
    );
    assert!(!err.contains("update exporter"), "{err}");
}

/// Item 16d: one line per command in a group's list (click's short help); the whole text in
/// the command's own help.
#[test]
fn command_lists_have_one_line_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), CONFIG);
    let out = shell(&cfg, "j echo --help; echo ---; j echo forward-unix --help");
    let stdout = ok(&out);
    let (list, unix) = stdout.split_once("---\n").unwrap();
    let commands: Vec<&str> = list
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        commands,
        [
            "  address       Direct TCP connection to remote network",
            "  forward-tcp   Forward local TCP port to remote network",
            "  forward-unix  Forward local Unix domain socket to remote network",
            "  connect       Connect stdin and stdout to the remote network",
        ],
        "{list}"
    );
    assert!(
        unix.starts_with(
            "Usage: j echo forward-unix [OPTIONS] [PATH]\n\n\
             Forward local Unix domain socket to remote network\n\n\
             PATH is the path of the Unix domain socket to listen on, defaults to a random path \
             under $XDG_RUNTIME_DIR.\n"
        ),
        "{unix}"
    );
}

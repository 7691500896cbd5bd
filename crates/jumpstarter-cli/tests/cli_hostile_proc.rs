//! Processes under attack, through the real binaries: `jmp shell`'s command dying of SIGKILL
//! or `jmp shell` being stopped while the command's children run, hooks leaving daemons
//! behind when `jmp run` is stopped by SIGTERM, and a direct-mode `beforeLease` failure that
//! must belong to one client's cycle only. Loopback only; every wait is bounded.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jumpstarter_testkit::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(120);

/// A sleep duration no other process uses: its argv is the marker the test looks for.
fn marker(n: u32) -> String {
    format!("{}.{}{n}", 5000 + n, std::process::id())
}

/// Live (not zombie) processes with `arg` in their argv.
fn with_arg(arg: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Waits (at most 10 s, for signal delivery) until no process carries any of `args`; kills
/// survivors before failing so a failing test leaves nothing behind.
fn assert_gone(args: &[&str], when: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<(&str, Vec<u32>)> = args
            .iter()
            .map(|a| (*a, with_arg(a)))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for (_, pids) in &left {
                for p in pids {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*p as i32),
                        Signal::SIGKILL,
                    );
                }
            }
            panic!("processes survived {when}: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + T;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hook(kind: &str, script: &str, extra: &str) -> String {
    let mut s = format!("  {kind}:\n    script: |\n");
    for l in script.lines() {
        s.push_str(&format!("      {l}\n"));
    }
    for l in extra.lines() {
        s.push_str(&format!("    {l}\n"));
    }
    s
}

fn local_shell(cfg: &Path, command: &[&str]) -> Command {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env("PATH", path_with_ours())
        .env("JMP_KILL_GRACE", "1")
        .arg("shell")
        .arg("--exporter-config")
        .arg(cfg)
        .arg("--")
        .args(command)
        .stdin(Stdio::null());
    cmd
}

#[test]
fn children_of_a_command_killed_by_sigkill_are_terminated() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let (bg, daemon) = (marker(1), marker(2));
    let started = dir.path().join("started");
    let script = format!(
        "sleep {bg} & setsid sleep {daemon} & touch {}; kill -9 $$",
        started.display()
    );
    let out = run_timeout(&mut local_shell(&cfg, &["sh", "-c", &script]), T);
    assert!(started.exists(), "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert_gone(&[&bg, &daemon], "the command's SIGKILL");
}

#[test]
fn children_of_a_command_that_exits_are_terminated() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), "");
    let bg = marker(3);
    let script = format!("sleep {bg} & exit 4");
    let out = run_timeout(&mut local_shell(&cfg, &["sh", "-c", &script]), T);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_gone(&[&bg], "the command's exit");
}

#[test]
fn sigterm_and_sighup_to_jmp_shell_stop_the_whole_command() {
    for sig in [Signal::SIGTERM, Signal::SIGHUP] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = direct_config(dir.path(), "");
        let (bg, daemon) = (marker(4), marker(5));
        let started = dir.path().join("started");
        // Ignores SIGTERM and SIGHUP (and so do its children): only SIGKILL ends it.
        let script = format!(
            "trap '' TERM HUP; sleep {bg} & setsid sleep {daemon} & touch {}; wait; wait",
            started.display()
        );
        let mut cmd = local_shell(&cfg, &["sh", "-c", &script]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        wait_for(&started);
        let begin = Instant::now();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        let out = wait_output(child, T, "jmp shell after a signal");
        assert_eq!(out.status.code(), Some(137), "{sig}: {}", text(&out.stderr));
        assert!(
            begin.elapsed() < Duration::from_secs(30),
            "{sig}: took {:?}",
            begin.elapsed()
        );
        assert_gone(&[&bg, &daemon], &format!("{sig} to jmp shell"));
    }
}

#[test]
fn jmp_run_stopped_by_sigterm_leaves_no_hook_process() {
    let dir = tempfile::tempdir().unwrap();
    let (b1, b2, b3, a1, a2) = (marker(6), marker(7), marker(8), marker(9), marker(10));
    let before_started = dir.path().join("before-started");
    let after_started = dir.path().join("after-started");
    let hooks = format!(
        "hooks:\n{}{}",
        hook(
            "beforeLease",
            &format!(
                "(sleep {b1}) &\nsetsid sleep {b2} &\ntouch {}\nsleep {b3}",
                before_started.display()
            ),
            "onFailure: warn",
        ),
        hook(
            "afterLease",
            &format!(
                "(sleep {a1}) &\nsetsid sleep {a2} &\ntouch {}",
                after_started.display()
            ),
            "",
        ),
    );
    let cfg = direct_config(dir.path(), &hooks);
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.current_dir(dir.path())
        .env("PATH", path_with_ours())
        .env("JMP_KILL_GRACE", "1")
        .args(["run", "--exporter-config"])
        .arg(&cfg)
        .args(["--tls-grpc-listener", "127.0.0.1:0", "--tls-grpc-insecure"]);
    let mut exporter = RunningExporter::start(&mut cmd, None);
    wait_for(&before_started);
    exporter.signal(Signal::SIGTERM);
    let (status, log) = exporter.wait_exit(T);
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(
        after_started.exists(),
        "afterLease ran on the way out:\n{log}"
    );
    assert_gone(&[&b1, &b2, &b3, &a1, &a2], "jmp run's SIGTERM");
}

#[test]
fn a_failed_before_lease_belongs_to_one_client_and_runs_again_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let fixed = dir.path().join("fixed");
    let hooks = format!(
        "hooks:\n{}",
        hook(
            "beforeLease",
            &format!(
                "echo run >> {}\ntest -e {} || {{ echo cause not fixed; exit 5; }}",
                runs.display(),
                fixed.display()
            ),
            "onFailure: endLease",
        )
    );
    let cfg = direct_config(dir.path(), &hooks);
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.current_dir(dir.path())
        .env("PATH", path_with_ours())
        .args(["run", "--exporter-config"])
        .arg(&cfg)
        .args(["--tls-grpc-listener", "127.0.0.1:0", "--tls-grpc-insecure"]);
    let exporter = RunningExporter::start(&mut cmd, None);
    let shell = || {
        let mut cmd = Command::new(jmp());
        clean(&mut cmd);
        cmd.current_dir(dir.path())
            .env("PATH", path_with_ours())
            .arg("shell")
            .arg("--tls-grpc")
            .arg(format!("127.0.0.1:{}", exporter.port))
            .arg("--tls-grpc-insecure")
            .args(["--", "sh", "-c", "j power on && echo ran"]);
        cmd
    };
    let runs_count = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    // The first client sees the failure.
    let out = run_timeout(&mut shell(), T);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "Error: beforeLease hook failed (on_failure=endLease): Hook failed with exit code 5"
        ),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("ran"));
    assert_eq!(runs_count(), 1);
    // The cause is fixed: the next client gets a new cycle, the hook runs again and passes.
    std::fs::write(&fixed, b"").unwrap();
    let out = run_timeout(&mut shell(), T);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        exporter.log()
    );
    assert!(text(&out.stdout).contains("ran"), "{}", text(&out.stdout));
    assert_eq!(runs_count(), 2, "{}", exporter.log());
}

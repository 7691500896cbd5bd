//! Helpers of the controller's integration tests: our daemon and admin CLI, upstream 0.9.0
//! processes, all in their own process groups and killed on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

pub fn venv() -> PathBuf {
    let venv = std::env::var_os("JMP_INTEROP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    assert!(
        venv.join("bin/jmp").exists(),
        "upstream jumpstarter 0.9.0 venv not found at {} (set JMP_INTEROP_VENV, see \
         scripts/setup-interop-venv.sh)",
        venv.display()
    );
    venv
}

pub fn controller_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jmp-controller"))
}

/// A child in its own process group, killed (the whole group) on drop; output collected.
pub struct Proc {
    pub child: Child,
    pub out: Arc<Mutex<String>>,
    pub what: String,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, what: &str) -> Proc {
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let out = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(pipe);
                let mut line = String::new();
                while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    out.lock().unwrap().push_str(&line);
                    line.clear();
                }
            });
        }
        Proc {
            child,
            out,
            what: what.into(),
        }
    }

    pub fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits until the output contains `needle`; panics with the output after `timeout`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let o = self.output();
            if o.contains(needle) {
                return o;
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{} exited ({s}) before printing {needle:?}:\n{}",
                    self.what,
                    self.output()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not print {needle:?} in {timeout:?}:\n{o}",
                    self.what
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pid, sig);
    }

    /// SIGKILLs the child, its process group and every descendant (upstream's `jmp run`
    /// forks its exporter into a new session, out of our process group).
    pub fn kill(&mut self) {
        let family = descendants(self.child.id());
        self.signal(nix::sys::signal::Signal::SIGKILL);
        for pid in family {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }

    /// Waits for the exit; panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader threads finish.
                std::thread::sleep(Duration::from_millis(100));
                return s;
            }
            if Instant::now() > deadline {
                let o = self.output();
                self.kill();
                panic!("{} did not exit in {timeout:?}:\n{o}", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every process below `pid` (from /proc).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...; comm may contain spaces and parentheses.
            let Some(rest) = stat.rsplit_once(')').map(|r| r.1) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok()) {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (child, parent) in &parent_of {
            if *parent == p && !out.contains(child) {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}

/// Runs a command to completion with a deadline.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let mut p = Proc::spawn(cmd, &format!("{cmd:?}"));
    let status = p.wait(timeout);
    let text = p.output();
    Output {
        status,
        stdout: text.into_bytes(),
        stderr: Vec::new(),
    }
}

/// A running `jmp-controller serve` on a temporary data directory.
pub struct Controller {
    pub proc: Proc,
    pub dir: PathBuf,
    pub endpoint: String,
}

impl Controller {
    pub fn start(dir: &Path) -> Controller {
        Self::start_on(dir, "127.0.0.1:0")
    }

    pub fn start_on(dir: &Path, listen: &str) -> Controller {
        Self::start_with(dir, listen, &[])
    }

    pub fn start_with(dir: &Path, listen: &str, extra: &[&str]) -> Controller {
        let mut cmd = Command::new(controller_bin());
        cmd.args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", listen])
            .args(extra)
            .env("JMP_LOG", "info,jumpstarter_controller=debug");
        cmd.args(["--advertise", listen]);
        let mut proc = Proc::spawn(&mut cmd, "jmp-controller serve");
        let o = proc.wait_for("jmp-controller listening on ", Duration::from_secs(30));
        let line = o
            .lines()
            .find(|l| l.contains("jmp-controller listening on "))
            .unwrap();
        let addr = line
            .split("listening on ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        Controller {
            proc,
            dir: dir.to_owned(),
            endpoint: addr,
        }
    }

    pub fn admin(&self, args: &[&str]) -> Output {
        admin(&self.dir, args)
    }
}

pub fn admin(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(controller_bin());
    cmd.arg("admin").arg("--data-dir").arg(dir).args(args);
    run(&mut cmd, Duration::from_secs(60))
}

pub fn ok(o: &Output) -> String {
    let t = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "failed ({}):\n{t}", o.status);
    t
}

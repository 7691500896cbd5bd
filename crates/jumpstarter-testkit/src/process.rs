//! Processes: a clean environment, runs with deadlines, process trees from /proc, and
//! children that are killed with everything they started when dropped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environment every test command gets: no inherited shell/session state.
pub fn clean(cmd: &mut Command) -> &mut Command {
    for k in [
        "JUMPSTARTER_HOST",
        "JMP_DRIVERS_ALLOW",
        "JMP_DRIVERS_UNSAFE",
        "JMP_LEASE",
        "JMP_GRPC_INSECURE",
        "JMP_GRPC_PASSPHRASE",
        "JUMPSTARTER_GRPC_INSECURE",
        "RUST_LOG",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("TERM", "dumb")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
}

/// Runs a command with a deadline; panics (after killing it) when the deadline passes.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    wait_output(child, timeout, &format!("{cmd:?}"))
}

/// Collects a spawned child's piped stdout and stderr until it exits; panics (after killing
/// it) when `timeout` passes, with `what` and the output so far.
pub fn wait_output(mut child: Child, timeout: Duration, what: &str) -> Output {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
            let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
            panic!("timed out after {timeout:?}: {what}\nstdout:\n{out}\nstderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// Bytes as text, lossily.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Every descendant of `pid` (children first found, then theirs), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat"))
                && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.to_owned())
                && let Some(ppid) = rest
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u32>().ok())
            {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: impl Into<i64>) -> bool {
    let pid: i64 = pid.into();
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("");
        state != "Z" && state != "X"
    })
}

/// Sends `sig` to `pid`, ignoring errors (the process may be gone).
pub(crate) fn send(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Kills a process and everything it started (upstream's `jmp run` forks into a new session)
/// when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        for pid in descendants(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child in its own process group, killed (the whole group) on drop; output collected.
pub struct Proc {
    pub child: Child,
    pub out: Arc<Mutex<String>>,
    pub what: String,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts `cmd` in its own process group, collecting its stdout and stderr.
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
        let mut readers = Vec::new();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            readers.push(std::thread::spawn(move || {
                let mut r = BufReader::new(pipe);
                let mut line = String::new();
                while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    out.lock().unwrap().push_str(&line);
                    line.clear();
                }
            }));
        }
        Proc {
            child,
            out,
            what: what.into(),
            readers,
        }
    }

    /// After the child exited: waits (5 s at most: a process it started may hold the pipes
    /// open) until the reader threads have read everything it wrote.
    fn drain(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !self.readers.iter().all(|r| r.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The output so far.
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
                self.drain();
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

    /// Sends `sig` to the child's process group.
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
                self.drain();
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

/// Runs a command to completion with a deadline, in its own process group; stdout and
/// stderr are merged (in arrival order) into `stdout`.
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

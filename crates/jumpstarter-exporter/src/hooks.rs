//! Lifecycle hooks: run a `beforeLease` / `afterLease` script and stream its output.
//!
//! What a hook gets (exporters seed, protocol notes §6.6, cli-config §4.4):
//! * the command: `script` is a file when it is one line naming an existing file, run as
//!   `<exec> <file>`; otherwise inline text run as `<exec> -c <script>`. Without `exec` the
//!   interpreter follows the file extension (`.py`: `python3`, `.bash`: `bash`) and is
//!   `/bin/sh` for everything else. A script that names a file (one word with a `/`) which is
//!   missing or unreadable fails the hook with a message saying so (upstream would hand the path
//!   to `sh -c` and report exit code 127);
//! * a pseudo-terminal as stdin, stdout and stderr (programs line-buffer their output), in a
//!   new process group;
//! * the exporter's environment plus `JUMPSTARTER_HOST` (the session's hook socket, which needs
//!   no passphrase), `JMP_DRIVERS_ALLOW=UNSAFE`, `LEASE_NAME`, `CLIENT_NAME`, `TERM=dumb`,
//!   `DEBIAN_FRONTEND=noninteractive`, `GIT_TERMINAL_PROMPT=0`, and for `beforeLease`
//!   `JMP_MOTD_FILE` (an empty private file; what the hook writes there, up to 64 KiB, is
//!   appended to the message of the day). `PS1` is removed;
//! * `timeout` seconds: then the whole process group gets SIGTERM, and SIGKILL 5 s later
//!   (`JMP_KILL_GRACE`);
//! * no process of the hook outlives it: when the hook's process exits (or times out, or the
//!   exporter stops) whatever it left running gets SIGTERM, then SIGKILL after the grace:
//!   its process group, and every process carrying its [`HOOK_TAG_VAR`] (a value unique to
//!   the run), which also finds descendants that left the group (`setsid`, double forks).
//!   Only a process that also replaced its environment escapes (no cgroups here).
//!
//! Every non-empty output line is logged into the session's log hub with the hook's
//! `LogSource`, so `LogStream` readers see it as it happens. Lines longer than 16 KiB are
//! split, and beyond 1000 lines per second lines are dropped and counted (one warning per
//! second says how many), so a hook that floods cannot flood the clients or the journal.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use jumpstarter_config::Hook;
use jumpstarter_core::logs::{Level, LogHub, Logger};
use jumpstarter_process::{Group, GroupChild, SpawnError, Tag};
use jumpstarter_protocol::v1::LogSource;
use tokio_util::sync::CancellationToken;

/// The variable that tags a hook's processes (see [`jumpstarter_process::Tag`]).
pub const HOOK_TAG_VAR: &str = "JMP_HOOK_TAG";
/// Interpreter for inline scripts and files without a known extension.
pub const DEFAULT_INTERPRETER: &str = "/bin/sh";
/// Most motd text a hook can contribute.
pub const MAX_MOTD_BYTES: u64 = 64 * 1024;
/// Longest output line; longer ones are split.
pub const MAX_LINE: usize = 16 * 1024;
/// Output lines per second that reach the log; the rest are counted.
pub const MAX_LINES_PER_SECOND: u32 = 1000;
/// How long output is still read after the hook exited (a background process may keep the
/// terminal open).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    BeforeLease,
    AfterLease,
}

impl HookKind {
    /// The config key (`beforeLease`, `afterLease`), used in every message.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::BeforeLease => "beforeLease",
            HookKind::AfterLease => "afterLease",
        }
    }

    pub fn source(self) -> LogSource {
        match self {
            HookKind::BeforeLease => LogSource::BeforeLeaseHook,
            HookKind::AfterLease => LogSource::AfterLeaseHook,
        }
    }

    /// The logger name of the hook's output lines.
    pub fn logger_name(self) -> &'static str {
        match self {
            HookKind::BeforeLease => "hooks.beforeLease",
            HookKind::AfterLease => "hooks.afterLease",
        }
    }
}

/// The lease a hook runs for, and where its `j` connects.
#[derive(Debug, Clone)]
pub struct HookEnv {
    /// The session's hook socket (`JUMPSTARTER_HOST`).
    pub socket: PathBuf,
    pub lease_name: String,
    pub client_name: String,
}

/// Why a hook failed. The texts are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("Hook failed with exit code {0}")]
    Exit(i32),
    #[error("Hook timed out after {0} seconds")]
    Timeout(u64),
    #[error("Error executing hook: {0}")]
    Start(String),
    #[error("Hook interrupted: the exporter is stopping")]
    Interrupted,
}

/// The outcome of one hook run.
#[derive(Debug)]
pub struct HookRun {
    pub result: Result<(), HookError>,
    /// What the hook wrote to `JMP_MOTD_FILE` (trimmed, non-empty).
    pub motd: Option<String>,
}

/// The argv for a hook, or why it cannot start.
pub fn command(hook: &Hook) -> Result<Vec<OsString>, HookError> {
    let trimmed = hook.script.trim();
    let single_line = !trimmed.contains('\n');
    let path = Path::new(trimmed);
    if single_line && path.is_file() {
        if let Err(e) = std::fs::File::open(path) {
            return Err(HookError::Start(format!(
                "hook script '{trimmed}' cannot be read: {e}"
            )));
        }
        let interpreter = hook
            .exec
            .clone()
            .unwrap_or_else(|| interpreter_for(path).to_owned());
        return Ok(vec![interpreter.into(), trimmed.into()]);
    }
    if single_line && names_a_file(trimmed) {
        return Err(HookError::Start(if path.exists() {
            format!("hook script '{trimmed}' is not a regular file")
        } else {
            format!("hook script '{trimmed}' does not exist")
        }));
    }
    let interpreter = hook
        .exec
        .clone()
        .unwrap_or_else(|| DEFAULT_INTERPRETER.to_owned());
    Ok(vec![
        interpreter.into(),
        "-c".into(),
        hook.script.clone().into(),
    ])
}

/// The interpreter for a script file without `exec`.
fn interpreter_for(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("py") => "python3",
        Some("bash") => "bash",
        _ => DEFAULT_INTERPRETER,
    }
}

/// Whether a one-line script is meant as a file path rather than a command: one word with a
/// `/` and nothing a shell would treat specially.
fn names_a_file(s: &str) -> bool {
    s.contains('/')
        && !s.chars().any(|c| {
            c.is_whitespace()
                || matches!(
                    c,
                    ';' | '&' | '|' | '$' | '`' | '(' | ')' | '<' | '>' | '"' | '\'' | '*' | '?'
                )
        })
}

/// A problem with a hook that can be seen before it runs (for a warning at start-up).
pub fn check(hook: &Hook) -> Option<String> {
    command(hook).err().map(|e| e.to_string())
}

/// Runs a hook to completion (exit, timeout, or `cancel`), logging its output into `logs`.
pub async fn run(
    hook: &Hook,
    kind: HookKind,
    env: &HookEnv,
    logs: &LogHub,
    cancel: &CancellationToken,
) -> HookRun {
    let output = logs.logger(kind.logger_name(), kind.source(), Level::Debug);
    let argv = match command(hook) {
        Ok(a) => a,
        Err(e) => {
            return HookRun {
                result: Err(e),
                motd: None,
            };
        }
    };
    let motd_file = match kind {
        HookKind::BeforeLease => match tempfile::Builder::new().prefix("jmp-motd-").tempfile() {
            Ok(f) => Some(f),
            Err(e) => {
                output.warning(format!("cannot create the JMP_MOTD_FILE: {e}"));
                None
            }
        },
        HookKind::AfterLease => None,
    };
    let result = execute(
        &argv,
        hook,
        env,
        motd_file.as_ref().map(|f| f.path()),
        &output,
        cancel,
    )
    .await;
    let motd = motd_file.and_then(|f| read_motd(f.path(), &output));
    HookRun { result, motd }
}

async fn execute(
    argv: &[OsString],
    hook: &Hook,
    env: &HookEnv,
    motd_file: Option<&Path>,
    output: &Logger,
    cancel: &CancellationToken,
) -> Result<(), HookError> {
    let start = |what: &str, e: &dyn std::fmt::Display| HookError::Start(format!("{what}: {e}"));
    let pty =
        nix::pty::openpty(None, None).map_err(|e| start("cannot open a pseudo-terminal", &e))?;
    let master = pty.master;
    let slave = pty.slave;
    let flags = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| start("cannot configure the pseudo-terminal", &e))?;
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )
    .map_err(|e| start("cannot configure the pseudo-terminal", &e))?;
    let stdio = || -> Result<Stdio, HookError> {
        slave
            .try_clone()
            .map(Stdio::from)
            .map_err(|e| start("cannot use the pseudo-terminal", &e))
    };

    let (program, args) = argv
        .split_first()
        .ok_or_else(|| HookError::Start("empty command".into()))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(stdio()?)
        .stdout(stdio()?)
        .stderr(stdio()?)
        .env("JUMPSTARTER_HOST", &env.socket)
        .env("JMP_DRIVERS_ALLOW", "UNSAFE")
        .env("LEASE_NAME", &env.lease_name)
        .env("CLIENT_NAME", &env.client_name)
        .env("TERM", "dumb")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("PS1")
        .env_remove("JMP_MOTD_FILE");
    if let Some(path) = motd_file {
        cmd.env("JMP_MOTD_FILE", path);
    }
    // Dropped before `disarm` (an early return, a panic, the runtime stopping), it kills
    // the hook's whole family.
    let mut child = GroupChild::spawn(&mut cmd, Group::Own, Some(Tag::new(HOOK_TAG_VAR))).map_err(
        |e| match e {
            SpawnError::Start(e) => {
                HookError::Start(format!("cannot run '{}': {e}", program.to_string_lossy()))
            }
            SpawnError::Vanished => HookError::Start("the hook exited before it started".into()),
        },
    )?;
    // Only the child keeps the terminal's slave side open: its end is our EOF.
    drop(slave);
    tracing::debug!(pid = child.pid().as_raw(), "hook started: {argv:?}");

    let mut reader =
        PtyReader::new(master).map_err(|e| start("cannot read the hook output", &e))?;
    let mut lines = Lines::new(output.clone());
    let mut buf = vec![0u8; 8192];
    let mut status: Option<io::Result<ExitStatus>> = None;
    let mut eof = false;
    let deadline = tokio::time::sleep(Duration::from_secs(hook.timeout));
    tokio::pin!(deadline);

    enum Stop {
        Done,
        Timeout,
        Cancelled,
    }
    let stop = loop {
        if status.is_some() {
            break Stop::Done;
        }
        tokio::select! {
            r = reader.read(&mut buf), if !eof => match r {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => lines.push(&buf[..n]),
            },
            s = child.wait() => status = Some(s),
            _ = &mut deadline => break Stop::Timeout,
            _ = cancel.cancelled() => break Stop::Cancelled,
        }
    };

    // Whatever the hook's process left behind (or all of it, on a timeout or a stop) is
    // stopped now, while what it prints meanwhile is still collected.
    if matches!(stop, Stop::Done)
        && let Some(left) = child.family().members().await.filter(|m| !m.is_empty())
    {
        output.warning(format!(
            "the hook left {} process(es) running; stopping them",
            left.len()
        ));
    }
    {
        let stopping = child.stop(jumpstarter_core::limits::global().kill_grace);
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                _ = &mut stopping => break,
                r = reader.read(&mut buf), if !eof => match r {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => lines.push(&buf[..n]),
                },
            }
        }
    }
    if status.is_none() {
        status = tokio::time::timeout(Duration::from_secs(1), child.wait())
            .await
            .ok();
    }
    // The rest of the output still buffered in the terminal.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while !eof {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => lines.push(&buf[..n]),
            }
        }
    })
    .await;

    let result = match stop {
        Stop::Done => match status {
            Some(Ok(s)) => match jumpstarter_process::exit::returncode(s) {
                0 => Ok(()),
                code => Err(HookError::Exit(code)),
            },
            Some(Err(e)) => Err(HookError::Start(format!("cannot wait for the hook: {e}"))),
            None => Err(HookError::Start("the hook vanished".into())),
        },
        Stop::Timeout => Err(HookError::Timeout(hook.timeout)),
        Stop::Cancelled => Err(HookError::Interrupted),
    };
    child.disarm();
    lines.finish();
    result
}

/// Reads what the hook wrote to its motd file: a regular file (no symlink, FIFO or device),
/// at most [`MAX_MOTD_BYTES`], trimmed.
fn read_motd(path: &Path, output: &Logger) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            output.warning(format!("cannot read JMP_MOTD_FILE {}: {e}", path.display()));
            return None;
        }
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        output.warning(format!(
            "JMP_MOTD_FILE {} is not a regular file, ignored",
            path.display()
        ));
        return None;
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_MOTD_BYTES).read_to_end(&mut bytes) {
        output.warning(format!("cannot read JMP_MOTD_FILE {}: {e}", path.display()));
        return None;
    }
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The controlling side of the hook's terminal, read without blocking a thread (tokio's pipe
/// reader works for any pollable descriptor).
struct PtyReader {
    rx: tokio::net::unix::pipe::Receiver,
}

impl PtyReader {
    fn new(master: std::os::fd::OwnedFd) -> io::Result<Self> {
        Ok(PtyReader {
            rx: tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(master)?,
        })
    }

    /// Reads some output; `Ok(0)` once every writer has closed the terminal (Linux reports
    /// that as EIO).
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        match self.rx.read(buf).await {
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => Ok(0),
            other => other,
        }
    }
}

/// Splits output into lines and logs them, within the line-length and rate limits.
struct Lines {
    pending: Vec<u8>,
    logger: Logger,
    window_len: Duration,
    window: Instant,
    in_window: u32,
    suppressed: u64,
}

impl Lines {
    fn new(logger: Logger) -> Self {
        Self::with_window(logger, Duration::from_secs(1))
    }

    /// `window_len` is the rate-limit window ([`MAX_LINES_PER_SECOND`] lines per window).
    fn with_window(logger: Logger, window_len: Duration) -> Self {
        Lines {
            pending: Vec::new(),
            logger,
            window_len,
            window: Instant::now(),
            in_window: 0,
            suppressed: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let line = String::from_utf8_lossy(&self.pending[start..end]).into_owned();
            self.emit(&line);
            start = end + 1;
        }
        self.pending.drain(..start);
        while self.pending.len() >= MAX_LINE {
            let line = String::from_utf8_lossy(&self.pending[..MAX_LINE]).into_owned();
            self.pending.drain(..MAX_LINE);
            self.emit(&line);
        }
    }

    fn emit(&mut self, line: &str) {
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        if self.window.elapsed() >= self.window_len {
            self.report_suppressed();
            self.window = Instant::now();
            self.in_window = 0;
        }
        if self.in_window >= MAX_LINES_PER_SECOND {
            self.suppressed += 1;
            return;
        }
        self.in_window += 1;
        self.logger.info(line);
    }

    fn report_suppressed(&mut self) {
        if self.suppressed > 0 {
            self.logger.warning(format!(
                "{} lines of hook output suppressed (more than {MAX_LINES_PER_SECOND} lines per second)",
                self.suppressed
            ));
            self.suppressed = 0;
        }
    }

    fn finish(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        let line = String::from_utf8_lossy(&rest).into_owned();
        self.emit(&line);
        self.report_suppressed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jumpstarter_config::HookFailure;

    fn hook(script: &str) -> Hook {
        Hook {
            script: script.into(),
            exec: None,
            timeout: 120,
            on_failure: HookFailure::Warn,
            at: jumpstarter_config::Source {
                file: std::sync::Arc::from(Path::new("x.yaml")),
                pos: jumpstarter_config::yaml::Pos { line: 1, col: 1 },
            },
        }
    }

    #[test]
    fn commands_for_files_and_inline_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let py = dir.path().join("hook.py");
        std::fs::write(&py, "print(1)\n").unwrap();
        let sh = dir.path().join("hook");
        std::fs::write(&sh, "echo 1\n").unwrap();
        let strs = |v: Vec<OsString>| -> Vec<String> {
            v.into_iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect()
        };
        let p = py.display().to_string();
        assert_eq!(
            strs(command(&hook(&format!("  {p}\n"))).unwrap()),
            ["python3", p.as_str()]
        );
        let s = sh.display().to_string();
        assert_eq!(strs(command(&hook(&s)).unwrap()), ["/bin/sh", s.as_str()]);
        let mut with_exec = hook(&s);
        with_exec.exec = Some("/bin/bash".into());
        assert_eq!(
            strs(command(&with_exec).unwrap()),
            ["/bin/bash", s.as_str()]
        );
        assert_eq!(
            strs(command(&hook("j power on\necho done")).unwrap()),
            ["/bin/sh", "-c", "j power on\necho done"]
        );
        assert_eq!(
            strs(command(&hook("true")).unwrap()),
            ["/bin/sh", "-c", "true"]
        );
        let missing = dir.path().join("nope.sh").display().to_string();
        assert_eq!(
            command(&hook(&missing)).unwrap_err().to_string(),
            format!("Error executing hook: hook script '{missing}' does not exist")
        );
        let d = dir.path().display().to_string();
        assert_eq!(
            check(&hook(&d)).unwrap(),
            format!("Error executing hook: hook script '{d}' is not a regular file")
        );
        // Commands with a slash stay commands.
        assert!(command(&hook("./run.sh --fast")).is_ok());
        assert!(command(&hook("echo a/b > /dev/null")).is_ok());
    }

    #[test]
    fn lines_are_split_trimmed_and_rate_limited() {
        let hub = LogHub::new();
        let mut lines = Lines::new(hub.logger("t", LogSource::BeforeLeaseHook, Level::Debug));
        lines.push(b"one\r\ntw");
        lines.push(b"o\n\n   \nthree");
        lines.finish();
        let (got, _) = hub.subscribe();
        let msgs: Vec<&str> = got.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(msgs, ["one", "two", "three"]);
        assert!(got.iter().all(|r| r.source == LogSource::BeforeLeaseHook));

        let hub = LogHub::new();
        // A window longer than the test, so the count does not depend on its speed.
        let mut lines = Lines::with_window(
            hub.logger("t", LogSource::AfterLeaseHook, Level::Debug),
            Duration::from_secs(3600),
        );
        let mut flood = Vec::new();
        for i in 0..(MAX_LINES_PER_SECOND + 500) {
            flood.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        lines.push(&flood);
        lines.push(&vec![b'x'; MAX_LINE + 10]);
        lines.finish();
        let (got, rx) = hub.subscribe();
        drop(rx);
        let last = &got.last().unwrap().message;
        assert_eq!(
            last,
            &format!(
                "502 lines of hook output suppressed (more than {MAX_LINES_PER_SECOND} lines per second)"
            )
        );
    }
}

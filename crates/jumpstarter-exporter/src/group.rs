//! Process families: the processes a hook, a driver host or `jmp shell`'s command started, and
//! stopping all of them (SIGTERM, then SIGKILL after a grace period).
//!
//! A family is a process group (the spawned process leads a new group, and everything it
//! starts stays in it unless it calls `setsid`/`setpgid`) plus, optionally, a [`Tag`]: an
//! environment variable with a value unique to one run, set in the spawned process's
//! environment. Every descendant inherits it, including those that left the group (a
//! `setsid` daemon, a double fork), so scanning `/proc/<pid>/environ` finds them; only a
//! process that replaces its environment (`env -i`, `execve` with a fresh one) escapes. This is
//! the technique of Jenkins' process-tree killer; without cgroups nothing short of it sees
//! processes that changed group.
//!
//! `PR_SET_CHILD_SUBREAPER` is deliberately not used: it would make this process the parent
//! of every orphan of every script, and they would stay zombies, since a reaper cannot tell them
//! from tokio's children (`waitpid(-1)` steals those statuses). Killed orphans are reaped by
//! init, as before.

use std::collections::HashSet;
use std::io::Read;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How long a group gets between SIGTERM and SIGKILL by default (upstream gives hooks 5 s);
/// `limits::global().kill_grace` (`JMP_KILL_GRACE`) is what callers use.
pub const TERM_GRACE: Duration = jumpstarter_core::limits::DEFAULT_KILL_GRACE;
/// The most of one `/proc/<pid>/environ` that is read (Linux caps argv + env near 2 MiB).
const MAX_ENVIRON: u64 = 8 << 20;
/// How long to wait for a family to vanish after SIGKILL (delivery is asynchronous).
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The grace period in force (`JMP_KILL_GRACE`).
pub fn kill_grace() -> Duration {
    jumpstarter_core::limits::global().kill_grace
}

/// An environment variable whose value is unique to one run (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    var: &'static str,
    value: String,
    /// `VAR=value\0`, as it appears in `/proc/<pid>/environ`.
    entry: Vec<u8>,
}

impl Tag {
    /// A fresh tag in variable `var`.
    pub fn new(var: &'static str) -> Tag {
        let value = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let entry = format!("{var}={value}\0").into_bytes();
        Tag { var, value, entry }
    }

    pub fn var(&self) -> &'static str {
        self.var
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether an environ block (`NAME=value\0...`) carries this tag.
    fn in_environ(&self, environ: &[u8]) -> bool {
        environ.split_inclusive(|&b| b == 0).any(|entry| {
            entry == self.entry.as_slice() || entry == &self.entry[..self.entry.len() - 1]
        })
    }

    /// Whether process `pid` carries this tag (false when its environment cannot be read).
    fn carried_by(&self, pid: &str) -> bool {
        let Ok(file) = std::fs::File::open(format!("/proc/{pid}/environ")) else {
            return false;
        };
        let mut environ = Vec::new();
        if file.take(MAX_ENVIRON).read_to_end(&mut environ).is_err() {
            return false;
        }
        self.in_environ(&environ)
    }
}

/// A process group and/or the processes carrying a [`Tag`].
#[derive(Debug, Clone, Default)]
pub struct Family {
    pub pgid: Option<Pid>,
    pub tag: Option<Tag>,
}

impl Family {
    pub fn group(pgid: Pid) -> Family {
        Family {
            pgid: Some(pgid),
            tag: None,
        }
    }

    pub fn new(pgid: Option<Pid>, tag: Option<Tag>) -> Family {
        Family { pgid, tag }
    }

    /// The live members (zombies do not count, nor does this process). `None` when `/proc`
    /// cannot be read (then only the group can be signalled).
    pub fn members(&self) -> Option<Vec<Pid>> {
        let me = std::process::id() as i32;
        let entries = std::fs::read_dir("/proc").ok()?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(raw) = pid.parse::<i32>() else {
                continue;
            };
            if raw == me {
                continue;
            }
            let Some((state, group)) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| state_and_group(&stat))
            else {
                continue;
            };
            if matches!(state, 'Z' | 'X') {
                continue;
            }
            let in_group = self.pgid.is_some_and(|g| g.as_raw() == group);
            if in_group || self.tag.as_ref().is_some_and(|t| t.carried_by(pid)) {
                found.push(Pid::from_raw(raw));
            }
        }
        Some(found)
    }

    /// Whether anything of the family is still running.
    pub fn running(&self) -> bool {
        if let Some(pgid) = self.pgid
            && self.tag.is_none()
            && killpg(pgid, None) == Err(Errno::ESRCH)
        {
            return false;
        }
        match self.members() {
            Some(m) => !m.is_empty(),
            None => self.pgid.is_some_and(|g| killpg(g, None).is_ok()),
        }
    }

    /// Sends `sig` to the group and to every tagged process; `done` (if given) skips the
    /// processes already signalled and records the new ones.
    fn signal(&self, sig: Signal, mut done: Option<&mut HashSet<Pid>>) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, sig);
        }
        if self.tag.is_some() {
            for pid in self.members().unwrap_or_default() {
                if let Some(done) = done.as_deref_mut()
                    && !done.insert(pid)
                {
                    continue;
                }
                let _ = kill(pid, sig);
            }
        }
    }

    /// SIGKILL to everything of the family, now (for guards and drops).
    pub fn kill_now(&self) {
        self.signal(Signal::SIGKILL, None);
    }

    /// Stops the family: SIGTERM (also to members that appear meanwhile), then SIGKILL if
    /// anything is left after `grace`. `reap` is polled meanwhile so a spawned child does
    /// not linger as a zombie. Waits (boundedly) until the family is gone.
    pub async fn stop(&self, grace: Duration, mut reap: impl FnMut()) {
        let mut termed = HashSet::new();
        self.signal(Signal::SIGTERM, Some(&mut termed));
        let deadline = Instant::now() + grace;
        loop {
            reap();
            if !self.running() {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.signal(Signal::SIGTERM, Some(&mut termed));
        }
        tracing::warn!(
            "processes of {} ignored SIGTERM, sending SIGKILL",
            self.describe()
        );
        let deadline = Instant::now() + KILL_WAIT;
        while Instant::now() < deadline {
            self.kill_now();
            reap();
            if !self.running() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn describe(&self) -> String {
        match (&self.pgid, &self.tag) {
            (Some(g), Some(t)) => format!("process group {g} (tag {}={})", t.var, t.value),
            (Some(g), None) => format!("process group {g}"),
            (None, Some(t)) => format!("tag {}={}", t.var, t.value),
            (None, None) => "nothing".into(),
        }
    }
}

/// Sends SIGKILL to the family when dropped while armed, so nothing outlives its runner (a
/// panic, or the runtime shutting down while it runs).
#[derive(Debug)]
pub struct FamilyGuard {
    pub family: Family,
    pub armed: bool,
}

impl Drop for FamilyGuard {
    fn drop(&mut self) {
        if self.armed {
            self.family.kill_now();
        }
    }
}

/// Sends SIGKILL to the group when dropped while armed, so no hook outlives its runner (a
/// panic, or the runtime shutting down while the hook runs).
#[derive(Debug)]
pub struct GroupGuard {
    pub pgid: Pid,
    pub armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Whether a process of the group is still running. Zombies do not count (an orphaned
/// grandchild stays a zombie until init reaps it).
pub fn group_running(pgid: Pid) -> bool {
    Family::group(pgid).running()
}

/// `(state, pgrp)` of a `/proc/<pid>/stat` line (`pid (comm) state ppid pgrp ...`); the
/// command name may contain spaces and parentheses, so fields are counted after the last `)`.
fn state_and_group(stat: &str) -> Option<(char, i32)> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

/// Stops the whole group: SIGTERM, then SIGKILL if anything is left after `grace` (see
/// [`Family::stop`]).
pub async fn stop_group(pgid: Pid, grace: Duration, reap: impl FnMut()) {
    Family::group(pgid).stop(grace, reap).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        assert_eq!(state_and_group("42 (sh) S 1 42 42 0 -1"), Some(('S', 42)));
        assert_eq!(
            state_and_group("43 (a) (b) c) Z 42 40 40 0"),
            Some(('Z', 40))
        );
        assert_eq!(state_and_group("garbage"), None);
    }

    #[test]
    fn tags_match_whole_entries_only() {
        let tag = Tag::new("JMP_TEST_TAG");
        let entry = format!("JMP_TEST_TAG={}", tag.value());
        assert!(tag.in_environ(format!("A=1\0{entry}\0B=2\0").as_bytes()));
        assert!(tag.in_environ(entry.as_bytes()));
        assert!(!tag.in_environ(format!("X{entry}\0").as_bytes()));
        assert!(!tag.in_environ(format!("{entry}x\0").as_bytes()));
        assert!(!tag.in_environ(b"JMP_TEST_TAG=other\0"));
        assert_ne!(Tag::new("JMP_TEST_TAG").value(), tag.value());
    }

    #[tokio::test]
    async fn a_tagged_process_that_left_the_group_is_stopped_too() {
        use std::os::unix::process::CommandExt;
        let tag = Tag::new("JMP_TEST_TAG");
        // The leader starts a process in a session of its own, then exits.
        let mut leader = std::process::Command::new("sh");
        leader
            .args(["-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"])
            .env(tag.var(), tag.value())
            .stdout(std::process::Stdio::piped())
            .process_group(0);
        let out = leader.output().unwrap();
        let escaped: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let family = Family::new(None, Some(tag.clone()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !family.members().unwrap().contains(&Pid::from_raw(escaped)) {
            assert!(
                Instant::now() < deadline,
                "the escaped process is not found"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        family.stop(Duration::from_secs(2), || {}).await;
        assert!(!family.running());
        // Another tag does not see anything.
        assert_eq!(
            Family::new(None, Some(Tag::new("JMP_TEST_TAG"))).members(),
            Some(vec![])
        );
    }
}

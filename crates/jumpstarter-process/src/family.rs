//! Process families: the processes one run (a hook, a script, a driver host, `jmp shell`'s
//! command) started, and stopping all of them (SIGTERM, then SIGKILL after a grace period).
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
//!
//! Stopping sends SIGTERM once to the group and once to each tagged process outside it (when a
//! scan first sees it), so a script's TERM handler runs once and what it starts to clean up
//! is left alone until the grace is over; then everything left gets SIGKILL.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::procfs;

/// How long [`Family::stop`] waits for a family to vanish after SIGKILL (delivery is
/// asynchronous).
pub const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often a stopping family is looked at.
const TERM_POLL: Duration = Duration::from_millis(50);
const KILL_POLL: Duration = Duration::from_millis(20);

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
        procfs::environ(pid).is_some_and(|e| self.in_environ(&e))
    }
}

/// One live member of a family, as a scan found it.
#[derive(Debug, Clone, Copy)]
struct Member {
    pid: Pid,
    /// In the family's process group (it got the group's signal).
    in_group: bool,
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

    /// Whether a scan can be skipped: a family without a tag whose group is gone (or that has
    /// no group) has no members.
    fn surely_empty(&self) -> bool {
        self.tag.is_none()
            && self
                .pgid
                .is_none_or(|g| killpg(g, None) == Err(Errno::ESRCH))
    }

    /// The live members (zombies do not count, nor does this process); `None` when `/proc`
    /// cannot be read. Blocks while it reads `/proc`.
    fn scan_blocking(&self) -> Option<Vec<Member>> {
        if self.surely_empty() {
            return Some(Vec::new());
        }
        let me = std::process::id() as i32;
        let mut found = Vec::new();
        for (name, state, group) in procfs::processes()? {
            let Ok(raw) = name.parse::<i32>() else {
                continue;
            };
            if raw == me || procfs::is_dead(state) {
                continue;
            }
            let in_group = self.pgid.is_some_and(|g| g.as_raw() == group);
            if in_group || self.tag.as_ref().is_some_and(|t| t.carried_by(&name)) {
                found.push(Member {
                    pid: Pid::from_raw(raw),
                    in_group,
                });
            }
        }
        Some(found)
    }

    /// [`Family::scan_blocking`] on one of tokio's blocking threads.
    async fn scan(&self) -> Option<Vec<Member>> {
        if self.surely_empty() {
            return Some(Vec::new());
        }
        let family = self.clone();
        match tokio::task::spawn_blocking(move || family.scan_blocking()).await {
            Ok(found) => found,
            // The blocking pool is gone (the runtime is shutting down): scan here.
            Err(_) => self.scan_blocking(),
        }
    }

    /// The live members' pids (zombies do not count, nor does this process). `None` when
    /// `/proc` cannot be read (then only the group can be signalled). Blocks while it reads
    /// `/proc`; async code uses [`Family::members`].
    pub fn members_blocking(&self) -> Option<Vec<Pid>> {
        self.scan_blocking()
            .map(|m| m.into_iter().map(|m| m.pid).collect())
    }

    /// [`Family::members_blocking`], read on a blocking thread.
    pub async fn members(&self) -> Option<Vec<Pid>> {
        self.scan()
            .await
            .map(|m| m.into_iter().map(|m| m.pid).collect())
    }

    /// Whether a scan's result means something of the family is still running.
    fn alive(&self, scan: Option<&[Member]>) -> bool {
        match scan {
            Some(m) => !m.is_empty(),
            None => self.pgid.is_some_and(|g| killpg(g, None).is_ok()),
        }
    }

    /// Whether anything of the family is still running.
    pub async fn running(&self) -> bool {
        let scan = self.scan().await;
        self.alive(scan.as_deref())
    }

    /// Sends `sig` to the group and to the scanned members outside it; `done` (if given)
    /// skips the processes already signalled and records the new ones.
    fn send(&self, sig: Signal, scan: Option<&[Member]>, mut done: Option<&mut HashSet<Pid>>) {
        for m in scan.unwrap_or_default().iter().filter(|m| !m.in_group) {
            if let Some(done) = done.as_deref_mut()
                && !done.insert(m.pid)
            {
                continue;
            }
            let _ = kill(m.pid, sig);
        }
    }

    /// SIGKILL to everything of the family, now (for guards and drops: it scans `/proc` in
    /// place when the family has a tag).
    pub fn kill_now(&self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        if self.tag.is_some() {
            let scan = self.scan_blocking();
            self.send(Signal::SIGKILL, scan.as_deref(), None);
        }
    }

    /// SIGTERM to the group, and to every tagged process outside it as soon as a scan finds
    /// it; then waits up to `grace` for the family to vanish, polling `reap` so a spawned
    /// child does not linger as a zombie. Returns whether it vanished.
    pub async fn terminate(&self, grace: Duration, mut reap: impl FnMut()) -> bool {
        let deadline = Instant::now() + grace;
        let mut termed = HashSet::new();
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, Signal::SIGTERM);
        }
        loop {
            reap();
            let scan = self.scan().await;
            self.send(Signal::SIGTERM, scan.as_deref(), Some(&mut termed));
            if !self.alive(scan.as_deref()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(TERM_POLL).await;
        }
    }

    /// SIGKILL to everything of the family, again until it is gone or `wait` has passed
    /// (polling `reap` meanwhile). Returns whether it vanished.
    pub async fn kill(&self, wait: Duration, mut reap: impl FnMut()) -> bool {
        let deadline = Instant::now() + wait;
        let mut scan = self.scan().await;
        loop {
            if let Some(pgid) = self.pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            self.send(Signal::SIGKILL, scan.as_deref(), None);
            reap();
            scan = self.scan().await;
            if !self.alive(scan.as_deref()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(KILL_POLL).await;
        }
    }

    /// Stops the family: [`Family::terminate`], then (with a warning) [`Family::kill`] for
    /// up to [`KILL_WAIT`] if anything is left after `grace`.
    pub async fn stop(&self, grace: Duration, mut reap: impl FnMut()) {
        if self.terminate(grace, &mut reap).await {
            return;
        }
        tracing::warn!(
            "processes of {} ignored SIGTERM, sending SIGKILL",
            self.describe()
        );
        self.kill(KILL_WAIT, reap).await;
    }

    /// The family in words, for messages.
    pub fn describe(&self) -> String {
        match (&self.pgid, &self.tag) {
            (Some(g), Some(t)) => format!("process group {g} (tag {}={})", t.var, t.value),
            (Some(g), None) => format!("process group {g}"),
            (None, Some(t)) => format!("tag {}={}", t.var, t.value),
            (None, None) => "nothing".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// Bounds every wait of these tests.
    const BOUND: Duration = Duration::from_secs(20);

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

    /// Moved here from `jumpstarter-exporter/src/group.rs`.
    #[tokio::test]
    async fn a_tagged_process_that_left_the_group_is_stopped_too() {
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
        while !family
            .members()
            .await
            .unwrap()
            .contains(&Pid::from_raw(escaped))
        {
            assert!(
                Instant::now() < deadline,
                "the escaped process is not found"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        family.stop(Duration::from_secs(2), || {}).await;
        assert!(!family.running().await);
        // Another tag does not see anything.
        assert_eq!(
            Family::new(None, Some(Tag::new("JMP_TEST_TAG")))
                .members()
                .await,
            Some(vec![])
        );
    }

    /// A group whose processes ignore SIGTERM is killed after the grace; one that obeys is
    /// gone well before it.
    #[tokio::test]
    async fn terminate_then_kill() {
        let mut obeying = std::process::Command::new("sh");
        obeying.args(["-c", "sleep 300"]).process_group(0);
        let mut child = obeying.spawn().unwrap();
        let family = Family::group(Pid::from_raw(child.id() as i32));
        let started = Instant::now();
        assert!(
            family
                .terminate(BOUND, || {
                    let _ = child.try_wait();
                })
                .await
        );
        assert!(started.elapsed() < BOUND / 2);
        assert!(!family.running().await);

        let mut stubborn = std::process::Command::new("sh");
        stubborn
            .args(["-c", "trap '' TERM; sleep 300 & wait; wait"])
            .process_group(0);
        let mut child = stubborn.spawn().unwrap();
        let family = Family::group(Pid::from_raw(child.id() as i32));
        // Wait until the trap is set (the background sleep exists).
        let deadline = Instant::now() + BOUND;
        while family.members().await.unwrap_or_default().len() < 2 {
            assert!(Instant::now() < deadline, "the script never started sleep");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut reap = || {
            let _ = child.try_wait();
        };
        let started = Instant::now();
        assert!(
            !family
                .terminate(Duration::from_millis(300), &mut reap)
                .await
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(family.running().await);
        assert!(family.kill(BOUND, &mut reap).await);
        assert!(!family.running().await);
        assert!(child.try_wait().unwrap().is_some());
    }

    #[tokio::test]
    async fn kill_now_and_empty_families() {
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("300").process_group(0);
        let mut child = cmd.spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let family = Family::group(pid);
        assert_eq!(family.members().await, Some(vec![pid]));
        family.kill_now();
        let deadline = Instant::now() + BOUND;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "sleep survived SIGKILL");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!family.running().await);
        assert_eq!(family.members_blocking(), Some(vec![]));
        assert!(!Family::default().running().await);
        assert_eq!(Family::default().describe(), "nothing");
        assert_eq!(family.describe(), format!("process group {pid}"));
    }
}

//! Process groups of hook scripts: is anything of the group still running, and stopping all
//! of it (SIGTERM, then SIGKILL after a grace period).

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How long a group gets between SIGTERM and SIGKILL (upstream gives hooks 5 s).
pub const TERM_GRACE: Duration = Duration::from_secs(5);

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
    if killpg(pgid, None) == Err(Errno::ESRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| state_and_group(&stat))
            .is_some_and(|(state, group)| group == pgid.as_raw() && !matches!(state, 'Z' | 'X'))
    })
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

/// Stops the whole group: SIGTERM, then SIGKILL if anything is left after `grace`. `reap`
/// is polled meanwhile so the group leader does not linger as a zombie. Waits (boundedly)
/// until the group is gone.
pub async fn stop_group(pgid: Pid, grace: Duration, mut reap: impl FnMut()) {
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        reap();
        if !group_running(pgid) {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!("process group {pgid} ignored SIGTERM, sending SIGKILL");
    let _ = killpg(pgid, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        reap();
        if !group_running(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
}

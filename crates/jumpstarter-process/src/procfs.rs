//! The little of `/proc` this crate reads: a process's state and group, and its environment.

use std::io::Read;

use nix::unistd::Pid;

/// The most of one `/proc/<pid>/environ` that is read (Linux caps argv + env near 2 MiB).
const MAX_ENVIRON: u64 = 8 << 20;

/// `(state, pgrp)` of a `/proc/<pid>/stat` line (`pid (comm) state ppid pgrp ...`); the
/// command name may contain spaces and parentheses, so fields are counted after the last `)`.
pub(crate) fn state_and_group(stat: &str) -> Option<(char, i32)> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

/// `(state, pgrp)` of process `pid`, if it exists and `/proc` can be read.
pub(crate) fn stat(pid: &str) -> Option<(char, i32)> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| state_and_group(&stat))
}

/// Whether a state letter is a zombie (or a dead process not yet gone).
pub(crate) fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X')
}

/// Whether process `pid` exists and is not a zombie (reads one file of `/proc`).
pub fn is_live(pid: Pid) -> bool {
    stat(&pid.as_raw().to_string()).is_some_and(|(state, _)| !is_dead(state))
}

/// The environment block of process `pid` (`NAME=value\0...`), at most [`MAX_ENVIRON`]
/// bytes; `None` when it cannot be read.
pub(crate) fn environ(pid: &str) -> Option<Vec<u8>> {
    let file = std::fs::File::open(format!("/proc/{pid}/environ")).ok()?;
    let mut environ = Vec::new();
    file.take(MAX_ENVIRON).read_to_end(&mut environ).ok()?;
    Some(environ)
}

/// The numeric entries of `/proc` with their state and group, `None` when `/proc` cannot be
/// read. Processes that vanish while it is read are skipped.
pub(crate) fn processes() -> Option<impl Iterator<Item = (String, char, i32)>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(entries.flatten().filter_map(|entry| {
        let name = entry.file_name().into_string().ok()?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (state, group) = stat(&name)?;
        Some((name, state, group))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved here from `jumpstarter-exporter/src/group.rs`.
    #[test]
    fn stat_lines() {
        assert_eq!(state_and_group("42 (sh) S 1 42 42 0 -1"), Some(('S', 42)));
        assert_eq!(
            state_and_group("43 (a) (b) c) Z 42 40 40 0"),
            Some(('Z', 40))
        );
        assert_eq!(state_and_group("garbage"), None);
    }

    /// Moved here from `jumpstarter-drivers/src/shell.rs`.
    #[test]
    fn proc_stat_fields() {
        assert_eq!(
            state_and_group("123 (a (b) c) S 1 456 456 0"),
            Some(('S', 456))
        );
        assert_eq!(state_and_group("garbage"), None);
        assert_eq!(state_and_group("1 (x) Z"), None);
    }

    #[test]
    fn this_process_is_live_and_a_reaped_one_is_not() {
        assert!(is_live(Pid::this()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        child.wait().unwrap();
        assert!(!is_live(pid));
        let me = std::process::id().to_string();
        assert!(environ(&me).is_some_and(|e| !e.is_empty() || std::env::vars_os().count() == 0));
        assert!(processes().unwrap().any(|(pid, _, _)| pid == me));
    }
}

//! A spawned child with its family: started in a process group of its own (or in ours), and
//! SIGKILLed with everything it started when dropped before [`GroupChild::disarm`].

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::family::{Family, Tag};

/// Which process group a child starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// A new group led by the child (the family's group).
    Own,
    /// Ours (for a command that must read our terminal): only its tag finds its family.
    Inherit,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start the process")]
    Start(#[source] io::Error),
    #[error("the process exited before it started")]
    Vanished,
}

/// A running child, its family and a drop guard: dropped while armed (a panic, an early
/// return, the runtime shutting down), it sends SIGKILL to the family at once.
#[derive(Debug)]
pub struct GroupChild {
    child: tokio::process::Child,
    pid: Pid,
    family: Family,
    armed: bool,
}

impl GroupChild {
    /// Spawns `cmd` in `group`, with `tag` (if any) in its environment.
    pub fn spawn(
        cmd: &mut tokio::process::Command,
        group: Group,
        tag: Option<Tag>,
    ) -> Result<GroupChild, SpawnError> {
        if let Some(tag) = &tag {
            cmd.env(tag.var(), tag.value());
        }
        if group == Group::Own {
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(SpawnError::Start)?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .ok_or(SpawnError::Vanished)?;
        let pgid = (group == Group::Own).then_some(pid);
        Ok(GroupChild {
            child,
            pid,
            family: Family::new(pgid, tag),
            armed: true,
        })
    }

    /// The child's pid (also its group's id with [`Group::Own`]).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    pub fn family(&self) -> &Family {
        &self.family
    }

    /// The tokio child (to take its pipes, or poll it).
    pub fn child(&mut self) -> &mut tokio::process::Child {
        &mut self.child
    }

    /// Waits for the child itself to exit (cancel safe).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Sends `sig` to the child's group, or (in our group) to the child alone while it has
    /// not been reaped.
    pub fn signal(&self, sig: Signal) {
        match self.family.pgid {
            Some(group) => {
                let _ = killpg(group, sig);
            }
            None => self.signal_child(sig),
        }
    }

    fn signal_child(&self, sig: Signal) {
        // `id()` is `None` once the child was reaped: its pid may belong to another process.
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }

    /// SIGKILL to the child and its whole family, now.
    pub fn kill_now(&self) {
        self.family.kill_now();
        self.signal_child(Signal::SIGKILL);
    }

    /// [`Family::terminate`], reaping the child meanwhile.
    pub async fn terminate(&mut self, grace: Duration) -> bool {
        let child = &mut self.child;
        self.family
            .terminate(grace, || {
                let _ = child.try_wait();
            })
            .await
    }

    /// [`Family::kill`], reaping the child meanwhile.
    pub async fn kill(&mut self, wait: Duration) -> bool {
        let child = &mut self.child;
        self.family
            .kill(wait, || {
                let _ = child.try_wait();
            })
            .await
    }

    /// [`Family::stop`], reaping the child meanwhile.
    pub async fn stop(&mut self, grace: Duration) {
        let child = &mut self.child;
        self.family
            .stop(grace, || {
                let _ = child.try_wait();
            })
            .await
    }

    /// Dropping no longer kills the family (it was stopped, or may outlive the child).
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        if self.armed {
            self.kill_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::returncode;
    use std::time::Instant;

    const BOUND: Duration = Duration::from_secs(20);

    fn sh(script: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    async fn gone(pid: Pid) {
        let deadline = Instant::now() + BOUND;
        while crate::is_live(pid) {
            assert!(Instant::now() < deadline, "{pid} still running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn own_group_with_tag() {
        let tag = Tag::new("JMP_TEST_TAG");
        let mut cmd = sh("echo \"$JMP_TEST_TAG\"; exit 7");
        cmd.stdout(std::process::Stdio::piped());
        let mut proc = GroupChild::spawn(&mut cmd, Group::Own, Some(tag.clone())).unwrap();
        assert_eq!(proc.family().pgid, Some(proc.pid()));
        let out = proc.child().stdout.take().unwrap();
        let status = tokio::time::timeout(BOUND, proc.wait()).await.unwrap();
        assert_eq!(returncode(status.unwrap()), 7);
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut { out }, &mut text)
            .await
            .unwrap();
        assert_eq!(text.trim(), tag.value());
        proc.stop(BOUND).await;
        proc.disarm();
    }

    #[tokio::test]
    async fn dropping_an_armed_child_kills_its_group() {
        let mut cmd = sh("sleep 300 & echo $!; wait");
        cmd.stdout(std::process::Stdio::piped());
        let mut proc = GroupChild::spawn(&mut cmd, Group::Own, None).unwrap();
        let leader = proc.pid();
        let mut out = tokio::io::BufReader::new(proc.child().stdout.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(
            BOUND,
            tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
        )
        .await
        .unwrap()
        .unwrap();
        let sleeper = Pid::from_raw(line.trim().parse().unwrap());
        assert!(crate::is_live(sleeper));
        drop(proc);
        gone(sleeper).await;
        // The leader is a zombie or reaped by tokio's orphan queue: not live either way.
        gone(leader).await;
    }

    #[tokio::test]
    async fn in_our_group_signals_go_to_the_child() {
        let mut cmd = sh("trap 'exit 9' HUP; echo ready; while :; do sleep 0.05; done");
        cmd.stdout(std::process::Stdio::piped());
        let mut proc = GroupChild::spawn(&mut cmd, Group::Inherit, None).unwrap();
        assert_eq!(proc.family().pgid, None);
        // The trap is set once the shell says so.
        let mut out = tokio::io::BufReader::new(proc.child().stdout.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(
            BOUND,
            tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(line, "ready\n");
        proc.signal(Signal::SIGHUP);
        let status = tokio::time::timeout(BOUND, proc.wait()).await.unwrap();
        assert_eq!(returncode(status.unwrap()), 9);
        // Reaped: signals no longer go anywhere.
        proc.signal(Signal::SIGKILL);
        proc.disarm();
    }

    #[tokio::test]
    async fn spawn_errors() {
        let mut cmd = tokio::process::Command::new("/nonexistent/jmp-no-such-program");
        match GroupChild::spawn(&mut cmd, Group::Own, None) {
            Err(SpawnError::Start(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("unexpected {other:?}"),
        }
    }
}

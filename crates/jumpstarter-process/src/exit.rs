//! Exit statuses as the codes the callers report.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The return code as Python's `subprocess` reports it: the exit status, or `-N` for death by
/// signal N (`-1` when the status is neither). The Shell driver's last item and a hook's
/// "Hook failed with exit code N" use it.
pub fn returncode(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| -s))
        .unwrap_or(-1)
}

/// The exit code as a shell reports it: the exit status, or `128+N` for death by signal N;
/// 1 when there is no status (waiting failed) or it is neither. `jmp shell` exits with it.
pub fn shell_code(status: Option<ExitStatus>) -> i32 {
    match status {
        Some(s) => s
            .code()
            .or_else(|| s.signal().map(|sig| 128 + sig))
            .unwrap_or(1),
        None => 1,
    }
}

/// The exit code of a command that could not be started, as a shell reports it: 127 when it
/// was not found, 126 otherwise.
pub fn spawn_failure_code(error: &io::Error) -> i32 {
    if error.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    fn status_of(script: &str) -> ExitStatus {
        let mut child = Command::new("sh").args(["-c", script]).spawn().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "sh did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn codes_and_signals() {
        assert_eq!(returncode(status_of("exit 0")), 0);
        assert_eq!(returncode(status_of("exit 3")), 3);
        assert_eq!(returncode(status_of("kill -9 $$")), -9);
        assert_eq!(returncode(status_of("kill -TERM $$")), -15);
        assert_eq!(shell_code(Some(status_of("exit 3"))), 3);
        assert_eq!(shell_code(Some(status_of("kill -9 $$"))), 137);
        assert_eq!(shell_code(Some(status_of("kill -HUP $$"))), 129);
        assert_eq!(shell_code(None), 1);
    }

    #[test]
    fn spawn_failures() {
        let missing = Command::new("/nonexistent/jmp-no-such-program")
            .spawn()
            .unwrap_err();
        assert_eq!(spawn_failure_code(&missing), 127);
        let dir = std::env::temp_dir();
        let not_executable = Command::new(&dir).spawn().unwrap_err();
        assert_eq!(spawn_failure_code(&not_executable), 126);
    }
}

//! Our `jmp-controller` as a process: `serve` on a temporary data directory, and `admin`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::paths::controller_bin;
use crate::process::{Proc, run};

/// A running `jmp-controller serve` on a temporary data directory.
pub struct Controller {
    pub proc: Proc,
    pub dir: PathBuf,
    pub endpoint: String,
}

impl Controller {
    /// Starts `serve` on 127.0.0.1 with a free port.
    pub fn start(dir: &Path) -> Controller {
        Self::start_on(dir, "127.0.0.1:0")
    }

    /// Starts `serve` listening on (and advertising) `listen`.
    pub fn start_on(dir: &Path, listen: &str) -> Controller {
        Self::start_with(dir, listen, &[])
    }

    /// Starts `serve` on `listen` with `extra` arguments; waits for its listening line.
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

    /// `jmp-controller admin` on this controller's data directory.
    pub fn admin(&self, args: &[&str]) -> Output {
        admin(&self.dir, args)
    }
}

/// `jmp-controller admin --data-dir DIR ARGS…`, with a 60 s deadline (output merged).
pub fn admin(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(controller_bin());
    cmd.arg("admin").arg("--data-dir").arg(dir).args(args);
    run(&mut cmd, Duration::from_secs(60))
}

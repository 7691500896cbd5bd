//! Upstream Jumpstarter 0.9.0 (`jmp run`, `jmp shell`, `j`, the Python client library)
//! against our controller and router. Needs the pinned venv (`JMP_INTEROP_VENV`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct Lab {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    ctl: Controller,
}

impl Lab {
    fn new() -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let ctl = Controller::start(&root.join("data"));
        Lab {
            _tmp: tmp,
            root,
            home,
            ctl,
        }
    }

    /// Creates an exporter with a MockPower driver; returns its config path.
    fn exporter(&self, name: &str, labels: &[&str]) -> PathBuf {
        let path = self.root.join(format!("{name}.yaml"));
        let mut args = vec!["create", "exporter", name, "--out", path.to_str().unwrap()];
        for l in labels {
            args.extend(["-l", l]);
        }
        ok(&self.ctl.admin(&args));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("export: {}\n"), "{text}");
        let text = text.replace(
            "export: {}\n",
            "export:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n",
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn client(&self, name: &str) -> PathBuf {
        let path = self.root.join(format!("client-{name}.yaml"));
        ok(&self.ctl.admin(&[
            "create",
            "client",
            name,
            "--unsafe",
            "--out",
            path.to_str().unwrap(),
        ]));
        path
    }

    fn upstream(&self, bin: &str) -> Command {
        let mut cmd = Command::new(venv().join("bin").join(bin));
        cmd.env("HOME", &self.home)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", venv().join("bin").display()),
            )
            .env("TERM", "dumb")
            .env("NO_COLOR", "1")
            .env_remove("JUMPSTARTER_HOST")
            .env_remove("JMP_LEASE")
            .env_remove("JUMPSTARTER_GRPC_INSECURE")
            .env_remove("JMP_GRPC_INSECURE");
        cmd
    }

    fn run_exporter(&self, config: &Path) -> Proc {
        let mut cmd = self.upstream("jmp");
        cmd.args(["run", "--exporter-config"]).arg(config);
        Proc::spawn(&mut cmd, "upstream jmp run")
    }

    fn exporters(&self) -> serde_json::Value {
        let o = ok(&self.ctl.admin(&["get", "exporters", "-o", "json"]));
        serde_json::from_str(&o).unwrap()
    }

    fn leases(&self) -> serde_json::Value {
        let o = ok(&self.ctl.admin(&["get", "leases", "-o", "json"]));
        serde_json::from_str(&o).unwrap()
    }

    /// Waits until the exporter is registered, online and Available.
    fn wait_available(&self, name: &str, exporter: &Proc) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let all = self.exporters();
            let e = all
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
                .unwrap();
            if e["online"] == true && e["registered"] == true && e["status"] == "Available" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "exporter {name} not available: {e}\nexporter output:\n{}",
                exporter.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn shell(&self, client: &Path, args: &[&str]) -> std::process::Output {
        let mut cmd = self.upstream("jmp");
        cmd.args(["shell", "--client-config"])
            .arg(client)
            .args(args);
        run(&mut cmd, Duration::from_secs(120))
    }
}

#[test]
fn upstream_shell_by_selector_and_by_name_runs_j_through_our_router() {
    let lab = Lab::new();
    let e1 = lab.exporter("e1", &["board=rpi"]);
    let alice = lab.client("alice");
    let exporter = lab.run_exporter(&e1);
    lab.wait_available("e1", &exporter);

    let o = lab.shell(
        &alice,
        &["--selector", "board=rpi", "--", "j", "power", "on"],
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "shell failed: {text}\ncontroller:\n{}\nexporter:\n{}",
        lab.ctl.proc.output(),
        exporter.output()
    );

    let o = lab.shell(&alice, &["--name", "e1", "--", "j", "power", "off"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // The exit code of the command comes back.
    let o = lab.shell(&alice, &["--name", "e1", "--", "sh", "-c", "exit 7"]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Both leases were released by the shell and ended with Released.
    let leases = lab.leases();
    let leases = leases.as_array().unwrap();
    assert_eq!(leases.len(), 3, "{leases:?}");
    for l in leases {
        assert_eq!(l["ended"], true, "{l}");
        assert_eq!(l["exporter"], "e1", "{l}");
        let conds: Vec<String> = serde_json::from_value(l["conditions"].clone()).unwrap();
        assert_eq!(conds, ["Ready=False:Released"], "{l}");
    }
}

#[test]
fn unsatisfiable_name_fails_fast() {
    let lab = Lab::new();
    let alice = lab.client("alice");
    let o = lab.shell(&alice, &["--name", "nope", "--", "true"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("cannot be satisfied"), "{text}");
}

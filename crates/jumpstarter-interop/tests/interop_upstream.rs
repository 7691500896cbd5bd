//! Upstream Jumpstarter 0.9.0 (`jmp run`, `jmp shell`, `j`, the Python client library)
//! against our controller and router. Needs the pinned venv (`JMP_INTEROP_VENV`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jumpstarter_testkit::*;

struct Lab {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    ctl: Controller,
}

impl Lab {
    fn new() -> Lab {
        Self::with(&[])
    }

    fn with(extra: &[&str]) -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let ctl = Controller::start_with(&root.join("data"), "127.0.0.1:0", extra);
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

    fn jmp(&self, client: &Path, args: &[&str]) -> String {
        let mut cmd = self.upstream("jmp");
        cmd.args(args).arg("--client-config").arg(client);
        let o = run(&mut cmd, Duration::from_secs(120));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "jmp {args:?} failed: {text}");
        text
    }

    /// Upstream's `jmp create lease -l SELECTOR --duration 1h --lease-id ID -o name`; returns
    /// the name it prints.
    fn create_lease(&self, client: &Path, selector: &str, id: &str) -> String {
        let args = [
            "create",
            "lease",
            "-l",
            selector,
            "--duration",
            "1h",
            "--lease-id",
            id,
            "-o",
            "name",
        ];
        self.jmp(client, &args).trim().to_string()
    }

    fn lease_state(&self, name: &str) -> serde_json::Value {
        self.leases()
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no lease {name}"))
    }

    /// Waits until the admin view of an exporter satisfies `pred`.
    fn wait_exporter(&self, name: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let all = self.exporters();
            let e = all
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
                .unwrap();
            if pred(&e) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "exporter {name} never {what}: {e}"
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

#[test]
fn upstream_cli_creates_lists_filters_and_deletes_leases() {
    let lab = Lab::new();
    let e1 = lab.exporter("e1", &["board=rpi", "env=lab"]);
    let alice = lab.client("alice");
    let exporter = lab.run_exporter(&e1);
    lab.wait_available("e1", &exporter);

    let name = lab.create_lease(&alice, "env=lab,board=rpi", "my-lease");
    assert_eq!(name, "my-lease");

    let json = lab.jmp(&alice, &["get", "leases", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let leases = v["leases"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(leases.len(), 1, "{v}");
    assert_eq!(leases[0]["name"], "my-lease", "{v}");
    // The canonical selector, as upstream renders it.
    assert_eq!(leases[0]["selector"], "board=rpi,env=lab", "{v}");

    let hit = lab.jmp(&alice, &["get", "leases", "-l", "board=rpi", "-o", "name"]);
    assert_eq!(hit.trim(), "my-lease");
    let miss = lab.jmp(&alice, &["get", "leases", "-l", "board=qemu", "-o", "name"]);
    assert_eq!(miss.trim(), "");

    let exporters = lab.jmp(&alice, &["get", "exporters", "-o", "json"]);
    assert!(exporters.contains("\"e1\""), "{exporters}");

    // Use the lease by name.
    let o = lab.shell(&alice, &["--lease", "my-lease", "--", "j", "power", "on"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(lab.lease_state("my-lease")["ended"], false);

    lab.jmp(&alice, &["delete", "leases", "my-lease"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.lease_state("my-lease")["ended"] != true {
        assert!(Instant::now() < deadline, "{}", lab.lease_state("my-lease"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let none = lab.jmp(&alice, &["get", "leases", "-o", "name"]);
    assert_eq!(none.trim(), "");
    let all = lab.jmp(&alice, &["get", "leases", "--all", "-o", "name"]);
    assert_eq!(all.trim(), "my-lease");
}

/// Three upstream CLI clients want the one exporter: leases are served in the order they
/// were asked for, one at a time, each usable by its holder through the router.
#[test]
fn competing_upstream_clients_are_served_first_come_first_served() {
    let lab = Lab::new();
    let e1 = lab.exporter("e1", &["board=rpi"]);
    let exporter = lab.run_exporter(&e1);
    lab.wait_available("e1", &exporter);
    let clients: Vec<(&str, PathBuf)> = ["alice", "bob", "carol"]
        .into_iter()
        .map(|n| (n, lab.client(n)))
        .collect();
    for (name, config) in &clients {
        let lease = format!("{name}-lease");
        assert_eq!(lab.create_lease(config, "board=rpi", &lease), lease);
    }
    let ready = |lease: &str| {
        let l = lab.lease_state(lease);
        let c: Vec<String> = serde_json::from_value(l["conditions"].clone()).unwrap();
        (c.iter().any(|c| c.starts_with("Ready=True")), l)
    };
    let wait_ready = |lease: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (r, l) = ready(lease);
            if r {
                assert_eq!(l["exporter"], "e1", "{l}");
                return;
            }
            assert!(Instant::now() < deadline, "{lease} never ready: {l}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for (i, (name, config)) in clients.iter().enumerate() {
        let lease = format!("{name}-lease");
        wait_ready(&lease);
        // Everyone behind waits.
        for (later, _) in &clients[i + 1..] {
            let (r, l) = ready(&format!("{later}-lease"));
            assert!(!r, "{later} served before {name}: {l}");
        }
        let o = lab.shell(config, &["--lease", &lease, "--", "j", "power", "on"]);
        assert!(
            o.status.success(),
            "{name}: {}{}\nexporter:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            exporter.output()
        );
        lab.jmp(config, &["delete", "leases", &lease]);
    }
}

#[test]
fn python_lease_api_drives_the_exporter() {
    let lab = Lab::new();
    let e1 = lab.exporter("e1", &["board=rpi"]);
    let alice = lab.client("alice");
    let exporter = lab.run_exporter(&e1);
    lab.wait_available("e1", &exporter);
    let script = r#"
import sys
from jumpstarter.config.client import ClientConfigV1Alpha1
config = ClientConfigV1Alpha1.from_file(sys.argv[1])
with config.lease(selector="board=rpi") as lease:
    with lease.connect() as client:
        client.power.on()
        client.power.off()
        print("POWER-OK", lease.name)
"#;
    let mut cmd = lab.upstream("python");
    cmd.arg("-c").arg(script).arg(&alice);
    let o = run(&mut cmd, Duration::from_secs(120));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}\nexporter:\n{}",
        exporter.output()
    );
    assert!(text.contains("POWER-OK"), "{text}");
}

#[test]
fn a_client_started_before_its_exporter_gets_it() {
    let lab = Lab::new();
    let e1 = lab.exporter("e1", &["board=rpi"]);
    let alice = lab.client("alice");
    let mut cmd = lab.upstream("jmp");
    cmd.args(["shell", "--client-config"]).arg(&alice).args([
        "--selector",
        "board=rpi",
        "--",
        "j",
        "power",
        "on",
    ]);
    let mut shell = Proc::spawn(&mut cmd, "upstream jmp shell");
    // The lease waits with Pending/Offline until the exporter shows up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leases = lab.leases();
        if let Some(l) = leases.as_array().unwrap().first() {
            let c: Vec<String> = serde_json::from_value(l["conditions"].clone()).unwrap();
            if c == ["Pending=True:Offline"] {
                break;
            }
        }
        assert!(Instant::now() < deadline, "{leases}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let exporter = lab.run_exporter(&e1);
    let status = shell.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "{}\nexporter:\n{}",
        shell.output(),
        exporter.output()
    );
}

#[test]
fn an_exporter_killed_mid_lease_goes_offline_and_comes_back_to_its_lease() {
    let lab = Lab::with(&["--offline-after", "3"]);
    let e1 = lab.exporter("e1", &["board=rpi"]);
    let alice = lab.client("alice");
    let mut exporter = lab.run_exporter(&e1);
    lab.wait_available("e1", &exporter);
    lab.create_lease(&alice, "board=rpi", "held");
    lab.wait_exporter("e1", "took the lease", |e| e["status"] == "LeaseReady");
    exporter.kill();
    lab.wait_exporter("e1", "went offline", |e| {
        e["online"] == false && e["status"] == "Offline"
    });
    // The lease stays (upstream semantics: nothing happens to it).
    let l = lab.lease_state("held");
    assert_eq!(l["ended"], false, "{l}");
    assert_eq!(l["exporter"], "e1", "{l}");

    let exporter = lab.run_exporter(&e1);
    lab.wait_exporter("e1", "came back", |e| {
        e["online"] == true && e["status"] == "LeaseReady"
    });
    let o = lab.shell(&alice, &["--lease", "held", "--", "j", "power", "on"]);
    assert!(
        o.status.success(),
        "{}\nexporter:\n{}",
        String::from_utf8_lossy(&o.stdout),
        exporter.output()
    );
}

#[test]
fn a_controller_restarted_mid_lease_keeps_the_lease() {
    let mut lab = Lab::new();
    let e1 = lab.exporter("e1", &["board=rpi"]);
    let alice = lab.client("alice");
    let exporter = lab.run_exporter(&e1);
    lab.wait_available("e1", &exporter);
    lab.create_lease(&alice, "board=rpi", "kept");
    lab.wait_exporter("e1", "took the lease", |e| e["status"] == "LeaseReady");

    let endpoint = lab.ctl.endpoint.clone();
    let dir = lab.ctl.dir.clone();
    lab.ctl.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(lab.ctl.proc.wait(Duration::from_secs(30)).success());
    lab.ctl = Controller::start_on(&dir, &endpoint);

    let l = lab.lease_state("kept");
    assert_eq!(l["ended"], false, "{l}");
    let o = lab.shell(&alice, &["--lease", "kept", "--", "j", "power", "on"]);
    assert!(
        o.status.success(),
        "{}\nexporter:\n{}\ncontroller:\n{}",
        String::from_utf8_lossy(&o.stdout),
        exporter.output(),
        lab.ctl.proc.output()
    );
}

//! What a newcomer meets first, run as they would: the README's controller recipe verbatim
//! (real `jmp-controller serve`, `admin`, `jmp run`, `jmp shell`), config typos, tokens that
//! are not JWTs, file modes, `admin` on a mistyped data directory, and upstream driver types
//! that are not built in.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(120);

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A user's home in a temp dir: `$HOME` for every command, no other config location set.
struct Home {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Home {
    fn new() -> Home {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        Home { _tmp: tmp, dir }
    }

    fn cmd(&self, program: PathBuf, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        clean(&mut cmd)
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("JMP_CLIENT_CONFIG_HOME")
            .env_remove("JMP_CLIENT")
            .env_remove("JMP_CLIENT_CONFIG")
            .env_remove("JMP_CONTROLLER_DATA_DIR")
            .env_remove("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
            .env_remove("JUMPSTARTER_FORCE_SYSTEM_CERTS")
            .env("PATH", path_with_ours())
            .args(args);
        cmd
    }

    /// A command line of the README (`jmp …`, `jmp-controller …`), split on spaces.
    fn run(&self, line: &str) -> Output {
        let mut words = line.split(' ');
        let program = match words.next() {
            Some("jmp") => jmp(),
            Some("jmp-controller") => controller_bin(),
            other => panic!("not one of ours: {other:?}"),
        };
        let args: Vec<&str> = words.collect();
        run_timeout(&mut self.cmd(program, &args), T)
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

fn out(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// Waits until `jmp-controller admin get exporters` shows `name` online and Available.
fn wait_available(home: &Home, data: &Path, name: &str, log: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = home.run(&format!(
            "jmp-controller admin --data-dir {} get exporters -o json",
            data.display()
        ));
        let v: serde_json::Value = serde_json::from_str(&text(&o.stdout)).unwrap_or_default();
        let ready = v
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["name"] == name && e["online"] == true && e["status"] == "Available");
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "exporter {name} never became Available: {v}\nexporter:\n{}",
            log.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The README's "Distributed mode, with our controller" block, line by line (the controller's
/// address is a free loopback port instead of ctl.lab:8082, and `export:` is added to the
/// exporter's file as the README says), then `j power on` in the leased shell.
#[test]
fn readme_controller_recipe_works_verbatim() {
    let home = Home::new();
    let data = home.file("var/lib/jumpstarter");
    let port = free_port();
    let mut ctl = home.cmd(
        controller_bin(),
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--advertise",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let mut ctl = Proc::spawn(&mut ctl, "jmp-controller serve");
    ctl.wait_for("jmp-controller listening on ", T);
    let dd = data.display();

    let o = home.run(&format!(
        "jmp-controller admin --data-dir {dd} create exporter rig1 -l board=rpi4 --out rig1.yaml"
    ));
    assert!(o.status.success(), "{}", out(&o));
    let o = home.run(&format!(
        "jmp-controller admin --data-dir {dd} create client alice --save"
    ));
    assert!(o.status.success(), "{}", out(&o));
    let alice = home.file(".config/jumpstarter/clients/alice.yaml");
    assert!(
        text(&o.stdout).contains(&format!(
            "Client configuration successfully saved to {}",
            alice.display()
        )),
        "{}",
        out(&o)
    );
    // The client may load upstream's driver packages (every built-in driver's client).
    let saved = std::fs::read_to_string(&alice).unwrap();
    assert!(
        saved.contains(
            "drivers:\n  allow:\n  - jumpstarter_driver_*\n  - jumpstarter.client.*\n  unsafe: false\n"
        ),
        "{saved}"
    );
    // Files holding tokens are owner-only; the only client became the current one.
    assert_eq!(mode(&alice), 0o600);
    assert_eq!(mode(&home.file("rig1.yaml")), 0o600);
    let user = home.file(".config/jumpstarter/config.yaml");
    assert!(
        std::fs::read_to_string(&user)
            .unwrap()
            .contains("current-client: alice"),
    );
    assert_eq!(mode(&user), 0o600);

    // "add export: to the file"
    let rig1 = std::fs::read_to_string(home.file("rig1.yaml")).unwrap();
    assert!(rig1.contains("\nexport: {}\n"), "{rig1}");
    std::fs::write(
        home.file("rig1.yaml"),
        rig1.replace(
            "\nexport: {}\n",
            "\nexport:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n",
        ),
    )
    .unwrap();
    let mut exporter = home.cmd(jmp(), &["run", "--exporter-config", "rig1.yaml"]);
    let exporter = Proc::spawn(&mut exporter, "jmp run");
    wait_available(&home, &data, "rig1", &exporter);

    let o = home.run("jmp shell --client alice --selector board=rpi4 -- j power on");
    assert!(
        o.status.success(),
        "{}\nexporter:\n{}",
        out(&o),
        exporter.output()
    );
    assert!(!text(&o.stdout).contains("not allowed"), "{}", out(&o));

    // A client created with an empty allow-list (`--allow ''`: upstream's "allow nothing")
    // gets the note that says what to set, instead of the power commands.
    let o = home.cmd(
        controller_bin(),
        &[
            "admin",
            "--data-dir",
            data.to_str().unwrap(),
            "create",
            "client",
            "bob",
            "--allow",
            "",
            "--save",
        ],
    );
    let o = run_timeout(&mut { o }, T);
    assert!(o.status.success(), "{}", out(&o));
    let bob = std::fs::read_to_string(home.file(".config/jumpstarter/clients/bob.yaml")).unwrap();
    assert!(bob.contains("  allow: []\n"), "{bob}");
    let o = home.run("jmp shell --client bob --selector board=rpi4 -- j power on");
    assert!(!o.status.success(), "{}", out(&o));
    let all = out(&o);
    assert!(
        all.contains("driver client jumpstarter_driver_power.client.PowerClient is not allowed")
            && all.contains("set JMP_DRIVERS_ALLOW=UNSAFE or a matching pattern"),
        "{all}"
    );
    drop(exporter);
    ctl.kill();
}

/// `admin` on a directory without a controller database refuses, names it and says how to
/// initialise one, and creates nothing; `--init` does create it.
#[test]
fn admin_refuses_a_data_dir_without_a_database() {
    let home = Home::new();
    let typo = home.file("var/lib/jumpstartr");
    let o = home.run(&format!(
        "jmp-controller admin --data-dir {} get clients",
        typo.display()
    ));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let err = text(&o.stderr);
    assert_eq!(
        err.trim_end(),
        format!(
            "Error: {d} holds no controller database (controller.db): check --data-dir, or \
             initialise it by running `jmp-controller serve --data-dir {d}` once (or pass \
             `admin --init`)",
            d = typo.display()
        ),
        "{}",
        out(&o)
    );
    assert!(!typo.exists(), "admin created {}", typo.display());

    // An empty directory is no database either.
    std::fs::create_dir_all(&typo).unwrap();
    let o = home.run(&format!(
        "jmp-controller admin --data-dir {} get clients",
        typo.display()
    ));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(!typo.join("controller.db").exists());

    let o = home.run(&format!(
        "jmp-controller admin --init --data-dir {} get clients",
        typo.display()
    ));
    assert!(o.status.success(), "{}", out(&o));
    assert!(typo.join("controller.db").is_file());
    let o = home.run(&format!(
        "jmp-controller admin --data-dir {} get clients",
        typo.display()
    ));
    assert!(o.status.success(), "{}", out(&o));
}

fn write(home: &Home, name: &str, text: &str) -> PathBuf {
    let p = home.file(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Misspelt keys are errors with file:line:col and the key meant, not warnings followed by a
/// misleading error later.
#[test]
fn key_typos_are_errors_naming_the_key_meant() {
    let home = Home::new();
    let exports = write(
        &home,
        "exports.yaml",
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {name: demo}\n\
         exports:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n",
    );
    let o = home.run(&format!(
        "jmp shell --exporter-config {} -- j power on",
        exports.display()
    ));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        text(&o.stderr).contains(&format!(
            "{}:4:1: unknown key `exports` in the ExporterConfig; did you mean `export`?",
            exports.display()
        )),
        "{}",
        out(&o)
    );
    assert!(!text(&o.stderr).contains("No such"), "{}", out(&o));

    let typ = write(
        &home,
        "typ.yaml",
        "metadata: {name: demo}\nexport:\n  power:\n    typ: jumpstarter_driver_power.driver.MockPower\n",
    );
    let o = home.run(&format!(
        "jmp shell --exporter-config {} -- j power on",
        typ.display()
    ));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        text(&o.stderr).contains(&format!(
            "{}:4:5: unknown key `typ` in export.power; did you mean `type`?",
            typ.display()
        )),
        "{}",
        out(&o)
    );

    // A top-level key that is no part of the schema, far from any key.
    let stray = write(
        &home,
        "stray.yaml",
        "metadata: {name: demo}\npower:\n  type: jumpstarter_driver_power.driver.MockPower\n",
    );
    let o = home.run(&format!(
        "jmp shell --exporter-config {} -- j power on",
        stray.display()
    ));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        text(&o.stderr).contains(&format!(
            "{}:2:1: unknown key `power` in the ExporterConfig; the keys here are: ",
            stray.display()
        )),
        "{}",
        out(&o)
    );

    // Client configs: where upstream refuses unknown keys, and near misses.
    let client = write(
        &home,
        "c.yaml",
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ClientConfig\nmetadata: {namespace: default, name: c}\n\
         endpont: 127.0.0.1:1\ntoken: x\n",
    );
    let o = home.run(&format!(
        "jmp get leases --client-config {}",
        client.display()
    ));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        text(&o.stderr).contains(&format!(
            "{}:4:1: unknown key `endpont` in the ClientConfig; did you mean `endpoint`?",
            client.display()
        )),
        "{}",
        out(&o)
    );
}

fn jwt() -> String {
    use base64::Engine;
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.sig",
        e(r#"{"alg":"none"}"#),
        e(r#"{"sub":"c","exp":4102444800}"#)
    )
}

/// An exporter token that is not a JWT is refused before connecting, at its position, with a
/// command that exists; the commands our error texts name exist.
#[test]
fn tokens_are_checked_and_errors_name_commands_that_exist() {
    let home = Home::new();
    let cfg = write(
        &home,
        "rig1.yaml",
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {namespace: default, name: rig1}\n\
         endpoint: 127.0.0.1:1\ntoken: xxxxx\nexport:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n",
    );
    let o = home.run(&format!("jmp run --exporter-config {}", cfg.display()));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}:5:8: the token is not a JWT (",
            cfg.display()
        )) && err.contains("`jmp-controller admin config exporter rig1` prints this exporter's config with its token"),
        "{}",
        out(&o)
    );
    // Only the shape matters: a JWT-shaped token gets as far as connecting.
    let good = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("token: xxxxx", &format!("token: {}", jwt()));
    std::fs::write(&cfg, good).unwrap();
    let mut run = home.cmd(jmp(), &["run", "--exporter-config", cfg.to_str().unwrap()]);
    let mut run = Proc::spawn(&mut run, "jmp run");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!run.output().contains("not a JWT"), "{}", run.output());
    run.kill();

    // A client config's token too, before connecting.
    let client = write(
        &home,
        "c.yaml",
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ClientConfig\nmetadata: {namespace: default, name: c}\n\
         endpoint: 127.0.0.1:1\ntoken: '******'\n",
    );
    let o = home.run(&format!(
        "jmp get leases --client-config {}",
        client.display()
    ));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        text(&o.stderr).contains(&format!(
            "{}:5:8: the token is not a JWT (",
            client.display()
        )) && text(&o.stderr)
            .contains("`jmp-controller admin config client c` prints this client's config"),
        "{}",
        out(&o)
    );

    // `jmp config client create` with a token that is not a JWT names our admin command.
    let o = home.run(
        "jmp config client create c1 --namespace default --name c1 --endpoint 127.0.0.1:1 \
         --token notajwt --allow x --nointeractive",
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        text(&o.stderr)
            .contains("`jmp-controller admin create client NAME` prints a config with one"),
        "{}",
        out(&o)
    );
    assert!(!text(&o.stderr).contains("jmp login"), "{}", out(&o));
    // And those commands exist.
    for line in [
        "jmp-controller admin create client --help",
        "jmp-controller admin config --help",
        "jmp config client create --help",
    ] {
        let o = home.run(line);
        assert!(o.status.success(), "{line}: {}", out(&o));
    }
}

/// `config.yaml` (and client configs) are written owner-only, as the README says.
#[test]
fn config_files_are_written_0600() {
    let home = Home::new();
    let o = home.run(&format!(
        "jmp config client create c1 --namespace default --name c1 --endpoint 127.0.0.1:1 \
         --token {} --allow x --nointeractive",
        jwt()
    ));
    assert!(o.status.success(), "{}", out(&o));
    let root = home.file(".config/jumpstarter");
    assert_eq!(mode(&root.join("clients/c1.yaml")), 0o600);
    let user = root.join("config.yaml");
    assert!(
        std::fs::read_to_string(&user)
            .unwrap()
            .contains("current-client: c1")
    );
    assert_eq!(mode(&user), 0o600);
    // Rewritten by `use`, a file left 0644 by upstream becomes 0600.
    std::fs::set_permissions(&user, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = home.run("jmp config client use c1");
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(mode(&user), 0o600);
}

const UPSTREAM_NETWORK: &str = "apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata: {namespace: default, name: lab}
export:
  power:
    type: jumpstarter_driver_power.driver.MockPower
  vsock:
    type: jumpstarter_driver_network.driver.VsockNetwork
    config: {cid: 3, port: 22}
  ws:
    type: jumpstarter_driver_network.driver.WebsocketNetwork
    config: {url: 'ws://127.0.0.1:9/'}
";

/// Upstream's network types that are not built in are served by the Python driver host
/// (the venv's upstream 0.9.0), next to built-in drivers, and `j` sees their reports.
#[test]
fn upstream_types_that_are_not_built_in_go_to_the_driver_host() {
    let home = Home::new();
    let cfg = write(&home, "lab.yaml", UPSTREAM_NETWORK);
    let mut cmd = home.cmd(
        jmp(),
        &[
            "shell",
            "--exporter-config",
            cfg.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "j ws address && j vsock --help && j power on",
        ],
    );
    cmd.env("JMP_DRIVER_HOST_PYTHON", py());
    let o = run_timeout(&mut cmd, Duration::from_secs(180));
    assert!(o.status.success(), "{}", out(&o));
    let stdout = text(&o.stdout);
    // `j NET address` prints the address without its scheme.
    assert!(stdout.starts_with("127.0.0.1:9/\n"), "{}", out(&o));
    // The hosted node's report: NetworkClient, so `j` gives it the network commands.
    assert!(
        stdout.contains("connect") && stdout.contains("forward-tcp"),
        "{}",
        out(&o)
    );
    assert!(!stdout.contains("unavailable"), "{}", out(&o));
    assert!(
        !text(&o.stderr).contains("unknown driver type"),
        "{}",
        out(&o)
    );
}

/// Without a Python that can host them, the node says which packages to install; the built-in
/// drivers keep working.
#[test]
fn without_a_host_the_error_names_the_package_to_install() {
    let home = Home::new();
    let cfg = write(&home, "lab.yaml", UPSTREAM_NETWORK);
    let mut cmd = home.cmd(
        jmp(),
        &[
            "shell",
            "--exporter-config",
            cfg.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "j power on && j vsock connect </dev/null; echo rc=$?",
        ],
    );
    cmd.env("JMP_DRIVER_HOST_PYTHON", home.file("no/python3"));
    let o = run_timeout(&mut cmd, T);
    let all = out(&o);
    assert!(all.contains("rc=1"), "{all}");
    assert!(
        all.contains(
            "`jumpstarter_driver_network.driver.VsockNetwork` is not built in and runs in a Python \
             driver host: install python3 and `pip install 'jumpstarter==0.9.0' \
             'jumpstarter-driver-network==0.9.0'`"
        ),
        "{all}"
    );
    // A type that exists nowhere near a built-in one is still a typo at load.
    let typo = write(
        &home,
        "typo.yaml",
        "metadata: {name: lab}\nexport:\n  echo:\n    type: jumpstarter_driver_network.driver.EchoNetwrk\n",
    );
    let o = home.run(&format!(
        "jmp shell --exporter-config {} -- true",
        typo.display()
    ));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        text(&o.stderr).contains("did you mean `jumpstarter_driver_network.driver.EchoNetwork`"),
        "{}",
        out(&o)
    );
}

//! Our controller in process (data in a tempdir) with admin-made exporter and client configs,
//! for the tests that run `jmp` in distributed mode.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jumpstarter_controller::{Options, admin, open_store};

use crate::paths::{jmp, path_with_ours};
pub use crate::process::Kill;
use crate::process::{clean, ok, run_timeout};

/// The in-process controller and its directories; shut down when dropped.
pub struct CtlLab {
    pub rt: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
    /// The lab's directory (configs, logs; `$HOME` for the processes it starts).
    pub root: PathBuf,
    /// The controller's data directory.
    pub data: PathBuf,
    running: Option<jumpstarter_controller::Running>,
}

impl CtlLab {
    /// Starts the controller on a free port with data in a new tempdir.
    pub fn new() -> CtlLab {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let tmp = tempfile::Builder::new().prefix("ctl-").tempdir().unwrap();
        let root = tmp.path().to_owned();
        let data = root.join("data");
        let running = rt
            .block_on(jumpstarter_controller::start(Options {
                data_dir: data.clone(),
                listen: "127.0.0.1:0".parse().unwrap(),
                advertise: Some("127.0.0.1:0".into()),
                tls_cert: None,
                tls_key: None,
                token_lifetime: Duration::from_secs(3600),
                rotated_token_lifetime: Duration::from_secs(600),
                offline_after: Duration::from_secs(60),
            }))
            .unwrap();
        CtlLab {
            rt,
            _tmp: tmp,
            root,
            data,
            running: Some(running),
        }
    }

    /// An exporter with the given labels and a MockPower `power`; returns its config path.
    pub fn exporter_config(&self, name: &str, labels: &[(&str, &str)]) -> PathBuf {
        let (store, keys) = self.rt.block_on(open_store(&self.data)).unwrap();
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let e = self
            .rt
            .block_on(admin::create_exporter(
                &store, &keys, "default", name, labels,
            ))
            .unwrap();
        let (endpoint, ca) = self
            .rt
            .block_on(admin::endpoint_and_ca(&store, None))
            .unwrap();
        let text = admin::exporter_config_yaml(&e, &endpoint, &ca, false).replace(
            "export: {}\n",
            "export:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n",
        );
        let path = self.root.join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        self.rt.block_on(store.close());
        path
    }

    /// A client that may load any driver; returns its config path (`client-NAME.yaml`).
    pub fn client_config(&self, name: &str) -> PathBuf {
        let (store, keys) = self.rt.block_on(open_store(&self.data)).unwrap();
        let c = self
            .rt
            .block_on(admin::create_client(
                &store,
                &keys,
                "default",
                name,
                Default::default(),
            ))
            .unwrap();
        let (endpoint, ca) = self
            .rt
            .block_on(admin::endpoint_and_ca(&store, None))
            .unwrap();
        let o = admin::ClientConfigOptions {
            unsafe_drivers: true,
            ..Default::default()
        };
        let path = self.root.join(format!("client-{name}.yaml"));
        std::fs::write(&path, admin::client_config_yaml(&c, &endpoint, &ca, &o)).unwrap();
        self.rt.block_on(store.close());
        path
    }

    /// Whether the exporter is online and registered, and its last status.
    pub fn exporter_state(&self, name: &str) -> (bool, String) {
        let (store, _) = self.rt.block_on(open_store(&self.data)).unwrap();
        let e = self
            .rt
            .block_on(store.exporter("default", name))
            .unwrap()
            .unwrap();
        self.rt.block_on(store.close());
        (e.online() && e.registered(), e.status)
    }

    /// Waits (60 s at most) until the exporter is online with `status`; `log` is shown if not.
    pub fn wait_status(&self, name: &str, status: &str, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (online, s) = self.exporter_state(name);
            if online && s == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "exporter {name} not {status} (online {online}, {s}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Default for CtlLab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for CtlLab {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.shutdown(Duration::from_secs(1)));
        }
    }
}

/// The controller lab plus our `jmp` with `$HOME` in it.
pub struct JmpLab(pub CtlLab);

impl std::ops::Deref for JmpLab {
    type Target = CtlLab;
    fn deref(&self) -> &CtlLab {
        &self.0
    }
}

impl Default for JmpLab {
    fn default() -> Self {
        Self::new()
    }
}

impl JmpLab {
    /// A new lab.
    pub fn new() -> JmpLab {
        JmpLab(CtlLab::new())
    }

    /// A client config, saved both as a file and as alias `name` under `$HOME`.
    pub fn client_config(&self, name: &str) -> PathBuf {
        let path = self.0.client_config(name);
        let dir = self.root.join(".config/jumpstarter/clients");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&path, dir.join(format!("{name}.yaml"))).unwrap();
        path
    }

    /// Starts `program run` (ours or upstream's `jmp`) on `config`; stderr goes to the
    /// returned log file.
    pub fn exporter(&self, program: PathBuf, config: &Path, tag: &str) -> (Kill, PathBuf) {
        self.exporter_env(program, config, tag, &[])
    }

    /// [`JmpLab::exporter`] with extra environment variables.
    pub fn exporter_env(
        &self,
        program: PathBuf,
        config: &Path,
        tag: &str,
        env: &[(&str, &Path)],
    ) -> (Kill, PathBuf) {
        let log = self.root.join(format!("exporter-{tag}.log"));
        let mut cmd = Command::new(program);
        clean(&mut cmd);
        cmd.env_remove("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
            .env_remove("JUMPSTARTER_FORCE_SYSTEM_CERTS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env("HOME", &self.root)
            .args(["run", "--exporter-config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.root.join("exporter.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        (Kill(cmd.spawn().unwrap()), log)
    }

    /// Our `jmp` with `$HOME` in the lab and our `j` first on `PATH`.
    pub fn jmp(&self, args: &[&str]) -> Output {
        self.program(jmp(), args)
    }

    /// `program ARGS…` (ours or upstream's `jmp`) like [`JmpLab::jmp`].
    pub fn program(&self, program: PathBuf, args: &[&str]) -> Output {
        let mut cmd = Command::new(program);
        clean(&mut cmd);
        cmd.env("HOME", &self.root)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("JMP_CLIENT_CONFIG_HOME")
            .env_remove("JMP_CLIENT")
            .env_remove("JMP_CLIENT_CONFIG")
            .env("PATH", path_with_ours())
            .args(args);
        run_timeout(&mut cmd, Duration::from_secs(120))
    }

    /// Names of the active leases of `client`, as our `jmp get leases -o name` lists them.
    pub fn active_leases(&self, client: &str) -> Vec<String> {
        let o = self.jmp(&["get", "leases", "--client", client, "-o", "name"]);
        ok(&o).lines().map(str::to_string).collect()
    }

    /// Waits until `client` holds no active lease (the controller ends released leases
    /// right after DeleteLease).
    pub fn wait_no_leases(&self, client: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let active = self.active_leases(client);
            if active.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "leases still active: {active:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Asserts success and parses stdout as JSON.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).unwrap()
}

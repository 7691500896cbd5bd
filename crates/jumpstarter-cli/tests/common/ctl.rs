//! Our controller in process (data in a tempdir) with admin-made exporter and client configs,
//! for the tests that run `jmp` in distributed mode.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use jumpstarter_controller::{Options, admin, open_store};

use super::descendants;

/// Kills a process and everything it started (upstream's `jmp run` forks into a new session)
/// when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        for pid in descendants(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

impl Drop for CtlLab {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.shutdown(Duration::from_secs(1)));
        }
    }
}

//! Drivers in the Python driver host: a DriverCall round trip and echo stream throughput
//! through our exporter's host (upstream's MockPower and EchoNetwork under a type we do not
//! build in), against the same drivers in upstream's own exporter; our Rust client on both.

use std::path::Path;

use jumpstarter_core::client::Client;
use jumpstarter_core::transport::Target as SessionTarget;
use jumpstarter_drivers::network::NetworkClient;
use jumpstarter_drivers::power::PowerClient;

use crate::measure::*;
use crate::{Env, single_threaded, two_threads};

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("pyhost.yaml");
    std::fs::write(
        &path,
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\n\
         metadata: {namespace: default, name: pyhost}\nexport:\n  hosted:\n    type: benchhost.Group\n\
         \x20   children:\n      power:\n        type: jumpstarter_driver_power.driver.MockPower\n\
         \x20       config: {log_level: WARNING}\n      echo:\n        type: jumpstarter_driver_network.driver.EchoNetwork\n",
    )
    .unwrap();
    path
}

pub fn pyhost(env: &Env, rows: &mut Vec<Row>) {
    eprintln!("driver host: DriverCall and echo...");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let vars: [(&str, &Path); 2] = [
        ("PYTHONPATH", &env.py_dir),
        ("JMP_DRIVER_HOST_PYTHON", &env.python),
    ];
    let n = env.n(300, 3000);
    let total: usize = if env.quick { 64 << 20 } else { 512 << 20 };
    let measure = |host: &str| {
        let call = single_threaded().block_on(async {
            let client = Client::connect(&SessionTarget::Unix(host.into()))
                .await
                .unwrap();
            let power = PowerClient::new(client.get("hosted.power").unwrap().clone());
            median(rust_drivercalls(&power, n).await)
        });
        let echo = two_threads().block_on(async {
            let client = Client::connect(&SessionTarget::Unix(host.into()))
                .await
                .unwrap();
            let echo = NetworkClient::new(client.get("hosted.echo").unwrap().clone());
            rust_echo(&echo, total, 64 * 1024).await
        });
        (call, echo)
    };
    let ours = Shell::start_with_env(&env.our_jmp, &cfg, &vars);
    let (our_call, our_echo) = measure(&ours.host);
    ours.stop();
    let up = Shell::start_with_env(&env.up_jmp, &cfg, &vars);
    let (up_call, up_echo) = measure(&up.host);
    up.stop();
    rows.push(Row::new(
        "DriverCall round trip to upstream's MockPower in our Python driver host (client -> our exporter -> host) vs in upstream's exporter; Rust client, median",
        format!("{our_call:.0} µs"),
        format!("{up_call:.0} µs"),
        up_call / our_call,
    ));
    rows.push(Row::new(
        &format!(
            "Echo stream to upstream's EchoNetwork in our Python driver host vs in upstream's exporter; Rust client, {} MiB in 64 KiB writes",
            total >> 20
        ),
        format!("{our_echo:.0} MB/s"),
        format!("{up_echo:.0} MB/s"),
        our_echo / up_echo,
    ));
}

//! Drivers our exporter does not implement, run in the Python driver host with the pinned
//! upstream Jumpstarter 0.9.0 (`JMP_INTEROP_VENV`): a vendor package written by the test
//! (`vendorpackage.CustomDriver` with the seed's `hello: world`), upstream driver packages we do
//! not port (jumpstarter-driver-http, jumpstarter-driver-ssh), all next to built-in drivers in
//! one tree, used by our `j` and by upstream's Python client through our `jmp shell`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(180);

/// A temp dir with the vendor package on `pkgs/` (exported through PYTHONPATH to the exporter
/// and so to its driver host, and to the Python client).
fn lab() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pkgs/vendorpackage");
    std::fs::create_dir_all(&pkg).unwrap();
    for f in ["__init__.py", "client.py"] {
        std::fs::copy(script("vendorpackage").join(f), pkg.join(f)).unwrap();
    }
    dir
}

fn write_config(dir: &Path, export: &str) -> PathBuf {
    let path = dir.join("lab.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\n\
             metadata: {{namespace: default, name: lab}}\nexport:\n{export}"
        ),
    )
    .unwrap();
    path
}

const VENDOR: &str = "  power:
    type: jumpstarter_driver_power.driver.MockPower
  custom:
    type: vendorpackage.CustomDriver
    config:
      hello: world
  bench:
    type: vendorpackage.Bench
    children:
      flasher: {type: jumpstarter_driver_opendal.driver.MockStorageMuxFlasher}
      echo: {type: jumpstarter_driver_network.driver.EchoNetwork}
";

/// `jmp shell --exporter-config cfg -- sh -c SCRIPT` in `dir`, our binaries first on PATH,
/// the venv's Python as the driver host's interpreter.
fn shell(dir: &Path, cfg: &Path, script: &str) -> String {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.current_dir(dir)
        .env("PATH", path_with_ours())
        .env("PYTHONPATH", dir.join("pkgs"))
        .env("JMP_DRIVER_HOST_PYTHON", py())
        .arg("shell")
        .arg("--exporter-config")
        .arg(cfg)
        .args(["--", "sh", "-c", script]);
    ok(&run_timeout(&mut cmd, T))
}

/// An image and its zstd form (compressed by Python's zstd binding from the venv).
fn image(dir: &Path) -> Vec<u8> {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("img.raw"), &data).unwrap();
    let mut cmd = Command::new(py());
    cmd.current_dir(dir).args([
        "-c",
        "from backports import zstd; open('img.zst','wb').write(zstd.compress(open('img.raw','rb').read()))",
    ]);
    ok(&run_timeout(&mut cmd, T));
    data
}

#[test]
fn vendor_driver_with_our_j() {
    let dir = lab();
    let cfg = write_config(dir.path(), VENDOR);
    let data = image(dir.path());
    let out = shell(
        dir.path(),
        &cfg,
        "set -e\nj custom call greet bob\nj custom stream-call count 2\nprintf 'abc' | j custom connect\n\
         j power on\nj bench flasher flash --compression zstd img.zst\nj bench flasher dump dump.raw\n\
         j custom call fail oops 2>err.txt || echo fail-rc=$?\necho done\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "world, bob", "{out}");
    assert_eq!(lines[1], r#"{"hello":"world","i":0}"#, "{out}");
    assert_eq!(lines[2], r#"{"hello":"world","i":1}"#, "{out}");
    assert!(lines[3].starts_with("abc"), "{out}");
    assert!(out.contains("fail-rc=1"), "{out}");
    assert!(out.trim_end().ends_with("done"), "{out}");
    let err = std::fs::read_to_string(dir.path().join("err.txt")).unwrap();
    assert!(err.contains("oops"), "{err}");
    assert!(std::fs::read(dir.path().join("dump.raw")).unwrap() == data);
}

#[test]
fn vendor_driver_with_upstream_python_client() {
    let dir = lab();
    let cfg = write_config(dir.path(), VENDOR);
    image(dir.path());
    let out = shell(
        dir.path(),
        &cfg,
        &format!(
            "exec '{}' '{}' '{}'",
            py().display(),
            script("driver_host_client.py").display(),
            dir.path().display()
        ),
    );
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(json["greet"], "world, alice", "{json}");
    assert_eq!(
        json["count"],
        serde_json::json!([{"i": 0.0, "hello": "world"}, {"i": 1.0, "hello": "world"}]),
        "{json}"
    );
    assert_eq!(json["echo"], "ping", "{json}");
    assert_eq!(json["dump_equal"], true, "{json}");
    assert_eq!(json["bench_echo"], "hosted echo", "{json}");
    assert_eq!(
        json["fail"],
        serde_json::json!([
            "DriverInvalidArgument",
            "DriverCall 'fail' failed with gRPC INVALID_ARGUMENT: nope"
        ]),
        "{json}"
    );
}

#[test]
fn upstream_driver_packages_next_to_native_drivers() {
    let dir = lab();
    let www = dir.path().join("www");
    let tcp = tcp_upper_server();
    let cfg = write_config(
        dir.path(),
        &format!(
            "  power:
    type: jumpstarter_driver_power.driver.MockPower
  http:
    type: jumpstarter_driver_http.driver.HttpServer
    config: {{root_dir: '{www}', host: 127.0.0.1, port: 0}}
  ssh:
    type: jumpstarter_driver_ssh.driver.SSHWrapper
    config: {{default_username: lab}}
    children:
      tcp:
        type: jumpstarter_driver_network.driver.TcpNetwork
        config: {{host: 127.0.0.1, port: {tcp}}}
  tunnel:
    ref: ssh.tcp
",
            www = www.display()
        ),
    );
    let page: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("page.bin"), &page).unwrap();
    let out = shell(
        dir.path(),
        &cfg,
        &format!(
            "exec '{}' '{}' '{}'",
            py().display(),
            script("driver_host_packages.py").display(),
            dir.path().display()
        ),
    );
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(json["http_equal"], true, "{json}");
    assert_eq!(json["download_equal"], true, "{json}");
    assert_eq!(json["http_url_prefix"], true, "{json}");
    assert_eq!(json["ssh_user"], "lab", "{json}");
    assert_eq!(json["tcp"], "THROUGH THE HOST", "{json}");
    assert_eq!(json["alias_same"], true, "{json}");
    assert_eq!(json["power"], "ok", "{json}");
    // Our j sees the hosted nodes (generic commands for client classes it does not know).
    let out = shell(
        dir.path(),
        &cfg,
        "j ssh call get_default_username && j tunnel address",
    );
    assert_eq!(out, format!("lab\n127.0.0.1:{tcp}\n"));
}

#[test]
fn missing_vendor_package_is_a_clear_error_in_j_and_the_rest_serves() {
    let dir = lab();
    let cfg = write_config(
        dir.path(),
        "  power:
    type: jumpstarter_driver_power.driver.MockPower
  relay:
    type: acme_relays.driver.Relay
    config: {channel: 3}
",
    );
    let out = shell(
        dir.path(),
        &cfg,
        "j relay call on 2>err.txt || echo rc=$?; j power on; j relay --help | head -3",
    );
    // The exporter's log (shown by the shell) says it too.
    assert!(out.contains("\nrc=1\n"), "{out}");
    assert!(
        out.contains(
            "ERROR    [exporter] driver `relay` (type `acme_relays.driver.Relay`) is unavailable: "
        ),
        "{out}"
    );
    assert!(out.contains("power on"), "{out}");
    assert!(out.contains("unavailable: "), "{out}");
    let err = std::fs::read_to_string(dir.path().join("err.txt")).unwrap();
    // j knows the node is the exporter's stand-in and prints the host's reason itself.
    assert!(
        err.starts_with("Error: driver `relay` is unavailable: the Python driver host could not start: driver `relay` (type `acme_relays.driver.Relay`): Python package `acme_relays` is not installed in "),
        "{err}"
    );
    assert!(err.contains("-m pip install 'acme-relays'"), "{err}");
}

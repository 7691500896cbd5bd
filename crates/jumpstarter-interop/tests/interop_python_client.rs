//! Upstream Jumpstarter 0.9.0 (Python client library, raw grpcio stubs, and `j`) against our
//! exporter, started by our `jmp shell --exporter-config`.

use std::process::Command;
use std::time::Duration;

use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(90);

fn our_shell(config: &std::path::Path) -> Command {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.arg("shell")
        .arg("--exporter-config")
        .arg(config)
        .arg("--");
    cmd
}

#[test]
fn schema_matches_upstream_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let fds = dir.path().join("ours.fds");
    std::fs::write(&fds, jumpstarter_protocol::FILE_DESCRIPTOR_SET).unwrap();
    let mut cmd = Command::new(py());
    cmd.arg(script("compare_schema.py")).arg(&fds);
    let out = ok(&run_timeout(&mut cmd, T));
    assert!(out.contains(", 0 differences"), "{out}");
}

#[test]
fn python_client_library_against_our_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = tcp_upper_server();
    let cfg = demo_config(dir.path(), tcp, udp_echo_server());
    let mut cmd = our_shell(&cfg);
    cmd.arg(py())
        .arg(script("client_api.py"))
        .arg(tcp.to_string());
    let out = ok(&run_timeout(&mut cmd, T));
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(
        json["wrong_kind"],
        "DriverCall 'read' failed with gRPC NOT_FOUND: method read missing marker marker_drivercall"
    );
    assert_eq!(
        json["unknown_method"],
        "DriverCall 'rescue' failed with gRPC NOT_FOUND: method rescue not found on driver"
    );
    assert_eq!(
        json["too_many_args"],
        "DriverCall 'on' failed with gRPC UNKNOWN: MockPower.on() takes 1 positional argument but 2 were given"
    );
    assert_eq!(
        json["address_disabled"],
        "DriverCall 'address' failed with gRPC INVALID_ARGUMENT: enable_address mode is not true in the exporter configuration"
    );
    let streaming = json["streaming_wrong_kind"].as_str().unwrap();
    assert!(
        streaming.starts_with("method on missing marker marker_streamingdrivercall")
            && streaming.contains("StatusCode.NOT_FOUND"),
        "{json}"
    );
    assert_eq!(json["tcp_address"], format!("tcp://127.0.0.1:{tcp}"));
}

#[test]
fn raw_grpc_against_our_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_config(dir.path(), tcp_upper_server(), udp_echo_server());
    let mut cmd = our_shell(&cfg);
    cmd.arg(py()).arg(script("raw_grpc.py"));
    let out = ok(&run_timeout(&mut cmd, T));
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(json["ok"], true);
    // Pre-order, config order, the nested child, then the alias.
    assert_eq!(
        json["names"],
        serde_json::json!([
            null, "power", "sync", "echo", "tcp", "hidden", "udp", "unix", "group", "psu2", "alias"
        ])
    );
    assert_eq!(json["status_version"], 1);
    assert_eq!(json["unknown_method"], "method nosuch not found on driver");
    assert_eq!(
        json["wrong_kind"],
        "method read missing marker marker_drivercall"
    );
    assert_eq!(
        json["arity"],
        "MockPower.off() takes 1 positional argument but 2 were given"
    );
    assert_eq!(
        json["stream_unknown_method"],
        "method nosuch not found on driver"
    );
    assert_eq!(
        json["stream_wrong_kind"],
        "method on missing marker marker_streamcall"
    );
}

#[test]
fn upstream_j_against_our_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = tcp_upper_server();
    let cfg = demo_config(dir.path(), tcp, udp_echo_server());
    let mut cmd = our_shell(&cfg);
    cmd.env("PATH", path_with_upstream()).args([
        "sh",
        "-c",
        "set -e; j power on; j power read; j alias off; j group psu2 on; j tcp address; \
         j tcp address --port; j power cycle -w 0; j power read -n 2 -i 0; \
         if j hidden address 2>err1; then exit 10; fi; if j echo address 2>err2; then exit 11; fi; \
         if j nosuch 2>err3; then exit 12; fi; cat err1 err2 err3",
    ]);
    cmd.current_dir(dir.path());
    let out = ok(&run_timeout(&mut cmd, T));
    let reading = "voltage=0.0 V  current=0.0 A  apparent_power=0.0 VA\nvoltage=5.0 V  current=2.0 A  apparent_power=10.0 VA\n";
    assert!(out.contains(reading), "{out}");
    assert!(out.contains(&reading.repeat(2)), "{out}");
    assert!(
        out.contains(&format!("\n127.0.0.1:{tcp}\n{tcp}\n")),
        "{out}"
    );
    assert!(
        out.contains("Power cycling with 0 seconds wait time..."),
        "{out}"
    );
    assert!(
        out.contains("Error: enable_address mode is not true in the exporter configuration"),
        "{out}"
    );
    assert!(
        out.contains("This exporter does not support direct connection yet"),
        "{out}"
    );
    assert!(out.contains("No such command 'nosuch'"), "{out}");
    // Driver logs of the in-process exporter reach our shell's output.
    assert!(out.contains("[driver.MockPower] power on"), "{out}");
}

//! The admin CLI on a data directory: configs in upstream's layout, saved where upstream saves
//! them, and clear errors for bad input.

use std::process::Command;
use std::time::Duration;

use jumpstarter_testkit::*;

fn admin_in(home: &std::path::Path, dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(controller_bin());
    cmd.env("HOME", home)
        .arg("admin")
        // No controller ran on this directory: create its database.
        .arg("--init")
        .arg("--data-dir")
        .arg(dir)
        .args(args);
    let o = run(&mut cmd, Duration::from_secs(60));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn admin_creates_saves_lists_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let dir = tmp.path().join("data");
    // Before the controller ever ran, the endpoint must be given.
    let (ok, out) = admin_in(&home, &dir, &["create", "client", "alice"]);
    assert!(!ok);
    assert!(out.contains("start the controller once"), "{out}");
    let (ok, out) = admin_in(
        &home,
        &dir,
        &[
            "create",
            "client",
            "alice",
            "--endpoint",
            "ctl.example.com:8082",
            "--save",
        ],
    );
    assert!(ok, "{out}");
    let path = home.join(".config/jumpstarter/clients/alice.yaml");
    assert!(
        out.contains(&format!("saved to {}", path.display())),
        "{out}"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with(
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: ClientConfig\nmetadata:\n  namespace: \
             default\n  name: alice\nendpoint: ctl.example.com:8082\ntls:\n  ca: ''\n  insecure: \
             false\ntoken: "
        ),
        "{text}"
    );
    assert!(
        text.ends_with("grpcOptions: {}\ndrivers:\n  allow:\n  - jumpstarter_driver_*\n  - jumpstarter.client.*\n  unsafe: false\nshell:\n  use_profiles: false\n"),
        "{text}"
    );

    let (ok, out) = admin_in(
        &home,
        &dir,
        &["create", "client", "alice", "--endpoint", "x:1"],
    );
    assert!(!ok);
    assert!(
        out.contains("clients.jumpstarter.dev \"alice\" already exists"),
        "{out}"
    );
    let (ok, out) = admin_in(
        &home,
        &dir,
        &["create", "exporter", "Bad_Name", "--endpoint", "x:1"],
    );
    assert!(!ok);
    assert!(out.contains("invalid name \"Bad_Name\""), "{out}");
    let (ok, out) = admin_in(
        &home,
        &dir,
        &[
            "create",
            "exporter",
            "e1",
            "-l",
            "no-equals",
            "--endpoint",
            "x:1",
        ],
    );
    assert!(!ok);
    assert!(
        out.contains("invalid label \"no-equals\": expected key=value"),
        "{out}"
    );

    let out_file = tmp.path().join("e1.yaml");
    let (ok, out) = admin_in(
        &home,
        &dir,
        &[
            "create",
            "exporter",
            "e1",
            "-l",
            "board=rpi",
            "--endpoint",
            "x:1",
            "--out",
            out_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        text.contains("\nexport: {}\nhooks:\n  beforeLease: null\n  afterLease: null\n"),
        "{text}"
    );

    let (ok, out) = admin_in(&home, &dir, &["get", "exporters", "-o", "json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "e1");
    assert_eq!(v[0]["labels"]["board"], "rpi");
    assert_eq!(v[0]["registered"], false);

    let (ok, out) = admin_in(&home, &dir, &["disable", "e1"]);
    assert!(ok && out.contains("exporter default/e1 disabled"), "{out}");
    let (ok, out) = admin_in(&home, &dir, &["delete", "exporter", "e1"]);
    assert!(ok && out.contains("deleted (with 0 leases)"), "{out}");
    let (ok, out) = admin_in(&home, &dir, &["delete", "exporter", "e1"]);
    assert!(!ok);
    assert!(
        out.contains("exporters.jumpstarter.dev \"e1\" not found"),
        "{out}"
    );
}

//! Our `jmp shell --client` and lease commands against our controller (in process) with
//! upstream 0.9.0 on the other side: upstream's exporter and `jmp get leases`, upstream's `j`
//! inside our shell. (Moved from the cli's `cli_controller.rs`.)

use std::process::Command;
use std::time::Duration;

use jumpstarter_testkit::ctl::{JmpLab as Lab, json};
use jumpstarter_testkit::*;

/// The output with `effective_duration` values blanked: the controller computes them from
/// the clock at each call.
fn elapsed_free(out: &str) -> String {
    out.lines()
        .map(|l| {
            let t = l.trim_start();
            let indent = &l[..l.len() - t.len()];
            if t.starts_with("\"effective_duration\": ") {
                format!("{indent}\"effective_duration\": X,")
            } else if t.starts_with("effective_duration: ") {
                format!("{indent}effective_duration: X")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn interop_our_shell_with_upstream_exporter_and_upstream_get_leases() {
    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi")]);
    let alice = lab.client_config("alice");
    let (_exporter, log) = lab.exporter(upstream_jmp(), &e1, "upstream");
    lab.wait_status("e1", "Available", &log);

    let o = lab.jmp(&[
        "shell",
        "--client",
        "alice",
        "--selector",
        "board=rpi",
        "--",
        "j",
        "power",
        "on",
    ]);
    assert!(
        o.status.success(),
        "{}{}\nexporter:\n{}",
        text(&o.stdout),
        text(&o.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    lab.wait_no_leases("alice");
    lab.wait_status("e1", "Available", &log);

    // Upstream's jmp lists a lease our jmp created.
    let name = ok(&lab.jmp(&[
        "create",
        "lease",
        "--client",
        "alice",
        "-l",
        "board=rpi",
        "--duration",
        "10m",
        "-o",
        "name",
    ]))
    .trim()
    .to_string();
    let o = lab.program(
        upstream_jmp(),
        &[
            "get",
            "leases",
            "--client-config",
            alice.to_str().unwrap(),
            "-o",
            "name",
        ],
    );
    assert_eq!(ok(&o).trim(), name);
    let o = lab.program(
        upstream_jmp(),
        &[
            "get",
            "leases",
            "--client-config",
            alice.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    let v = json(&o);
    assert_eq!(v["leases"][0]["selector"], "board=rpi");
    assert_eq!(v["leases"][0]["duration"], 600.0);
    // Our JSON, YAML, names and tables are upstream's, field for field.
    let config = alice.to_str().unwrap();
    for args in [
        &["get", "leases", "--client-config", config, "-o", "json"][..],
        &["get", "leases", "--client-config", config, "-o", "yaml"][..],
        &["get", "exporters", "--client-config", config, "-o", "json"][..],
        &[
            "get",
            "exporters",
            "--client-config",
            config,
            "--with",
            "leases,online",
            "-o",
            "yaml",
        ][..],
        &["get", "exporters", "--client-config", config, "-o", "name"][..],
        &[
            "get",
            "exporters",
            "--client-config",
            config,
            "--with",
            "online",
        ][..],
        &[
            "get",
            "leases",
            "--client-config",
            config,
            "-l",
            "board=rpi",
            "-o",
            "name",
        ][..],
    ] {
        let theirs = elapsed_free(&ok(&lab.program(upstream_jmp(), args)));
        let ours = elapsed_free(&ok(&lab.jmp(args)));
        assert_eq!(ours, theirs, "{args:?}");
    }
    ok(&lab.jmp(&["delete", "leases", "--client", "alice", &name]));
    lab.wait_no_leases("alice");
}

#[test]
fn interop_upstream_j_inside_our_shell() {
    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi")]);
    lab.client_config("alice");
    let (_exporter, log) = lab.exporter(jmp(), &e1, "ours");
    lab.wait_status("e1", "Available", &log);
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env("HOME", &lab.root)
        .env("PATH", path_with_upstream())
        .args([
            "shell",
            "--client",
            "alice",
            "-l",
            "board=rpi",
            "--",
            "j",
            "power",
            "on",
        ]);
    let o = run_timeout(&mut cmd, Duration::from_secs(120));
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    lab.wait_no_leases("alice");
}

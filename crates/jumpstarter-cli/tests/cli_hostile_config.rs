//! Hostile config files through the real binaries: an alias bomb and deep nesting give one
//! positioned line and exit 1 at once, in every command that loads a config.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use jumpstarter_testkit::*;

/// Ten levels of ten aliases each: 10^10 nodes if expanded naively, 700 bytes on disk.
fn bomb(doc_head: &str) -> String {
    let mut s = String::from(doc_head);
    s.push_str("x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        s.push_str(&format!(
            "x{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    s
}

fn exporter_head() -> &'static str {
    "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {namespace: default, name: bomb}\nexport: {}\n"
}

fn fails_fast_with_one_line(cmd: &mut Command, file: &Path, needle: &str) {
    let start = Instant::now();
    let out = run_timeout(cmd, Duration::from_secs(60));
    let took = start.elapsed();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(&format!("{name}:")), "{err}");
    assert!(lines[0].contains(needle), "{err}");
    // Bounded work: the old loader never finished (gigabytes of copies).
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn alias_bombs_are_refused_by_every_command_that_loads_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let ex = dir.path().join("bomb.yaml");
    std::fs::write(&ex, bomb(exporter_head())).unwrap();

    let mut shell = Command::new(jmp());
    clean(&mut shell)
        .args(["shell", "--exporter-config"])
        .arg(&ex)
        .args(["--", "true"]);
    fails_fast_with_one_line(&mut shell, &ex, "JMP_YAML_ALIAS_NODES");

    let mut run = Command::new(jmp());
    clean(&mut run).args(["run", "--exporter-config"]).arg(&ex);
    fails_fast_with_one_line(&mut run, &ex, "JMP_YAML_ALIAS_NODES");

    let client = dir.path().join("client-bomb.yaml");
    std::fs::write(
        &client,
        bomb("apiVersion: jumpstarter.dev/v1alpha1\nkind: ClientConfig\nmetadata: {namespace: default, name: c}\nendpoint: 127.0.0.1:1\ntoken: x\n"),
    )
    .unwrap();
    let mut leases = Command::new(jmp());
    clean(&mut leases)
        .args(["get", "leases", "--client-config"])
        .arg(&client);
    fails_fast_with_one_line(&mut leases, &client, "JMP_YAML_ALIAS_NODES");
}

#[test]
fn deep_nesting_is_a_positioned_error() {
    let dir = tempfile::tempdir().unwrap();
    let ex = dir.path().join("deep.yaml");
    let mut s = String::from(exporter_head());
    s.push_str("deep:\n");
    for i in 0..1000 {
        s.push_str(&" ".repeat(2 * i + 2));
        s.push_str("-\n");
    }
    std::fs::write(&ex, s).unwrap();
    let mut shell = Command::new(jmp());
    clean(&mut shell)
        .args(["shell", "--exporter-config"])
        .arg(&ex)
        .args(["--", "true"]);
    fails_fast_with_one_line(&mut shell, &ex, "JMP_YAML_MAX_DEPTH");
}

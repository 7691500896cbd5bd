//! The custom binary serves a config using the lab's driver next to built-in ones: `lab-jmp
//! shell` runs `j` (the same binary, by name) against it.

use std::process::Command;

#[test]
fn custom_exporter_binary_serves_the_lab_driver() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lab.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata: {namespace: default, name: lab}
export:
  thermo:
    type: example_thermometer.Thermometer
    config: {sensor: bench, celsius: 19.5}
  power:
    type: jumpstarter_driver_power.driver.MockPower
",
    )
    .unwrap();
    // `j` is the same binary under another name.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lab-jmp"), bin.join("j")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lab-jmp"))
        .env("PATH", path)
        .env_remove("JUMPSTARTER_HOST")
        .args(["shell", "--exporter-config"])
        .arg(&cfg)
        .args([
            "--",
            "sh",
            "-c",
            "set -e; j thermo call name; j thermo call read; j thermo call set 40; \
             j thermo call read; j thermo stream-call watch 1; j power on; j thermo temp",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The shell shows driver logs too (MockPower's "power on").
    assert!(
        stdout.starts_with("bench\n19.5\n40\n{\"celsius\":40,\"n\":0}\n"),
        "{stdout}"
    );
    assert!(stdout.contains("power on"), "{stdout}");
    // The family's own `j` command.
    assert!(stdout.ends_with("40 °C (bench)\n"), "{stdout}");
}

#[test]
fn bad_config_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lab.yaml");
    std::fs::write(
        &cfg,
        "metadata: {name: lab}\nexport:\n  thermo:\n    type: example_thermometer.Thermometer\n    config: {sensr: bench}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lab-jmp"))
        .args(["shell", "--exporter-config"])
        .arg(&cfg)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lab.yaml:5:"), "{stderr}");
    assert!(stderr.contains("sensr"), "{stderr}");
}

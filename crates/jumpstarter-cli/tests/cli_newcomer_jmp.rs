//! What a newcomer meets at `jmp`'s edges, run as a user would: mistyped commands and values
//! (click's words, only visible names suggested), the help of `jmp run`, no hook line where
//! there is no hook, and plain text in a redirected controller log.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(60);

fn jmp_err(args: &[&str]) -> (Option<i32>, String) {
    let out = run_timeout(clean(&mut Command::new(jmp())).args(args), T);
    (out.status.code(), text(&out.stderr))
}

#[test]
fn a_mistyped_command_suggests_a_visible_name_in_clicks_words() {
    let (code, err) = jmp_err(&["shel"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "Usage: jmp [OPTIONS] COMMAND [ARGS]...\nTry 'jmp --help' for help.\n\n\
         Error: No such command 'shel'. Did you mean 'shell'?\n"
    );
    // Hidden aliases (`del`, `d`) and clap's `help` are never offered.
    let (code, err) = jmp_err(&["delet"]);
    assert_eq!(code, Some(2));
    assert!(
        err.ends_with("Error: No such command 'delet'. Did you mean 'delete'?\n"),
        "{err}"
    );
    let (_, err) = jmp_err(&["config", "clien"]);
    assert!(
        err.starts_with("Usage: jmp config [OPTIONS] COMMAND [ARGS]...\nTry 'jmp config --help'"),
        "{err}"
    );
    assert!(err.ends_with("Did you mean 'client'?\n"), "{err}");
    let (_, err) = jmp_err(&["zzz"]);
    assert!(err.ends_with("Error: No such command 'zzz'.\n"), "{err}");
}

#[test]
fn a_bad_choice_names_the_option_and_the_choices() {
    let (code, err) = jmp_err(&["config", "client", "list", "-o", "path"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "Usage: jmp config client list [OPTIONS]\nTry 'jmp config client list --help' for help.\n\n\
         Error: Invalid value for '-o' / '--output': 'path' is not one of 'json', 'yaml', 'name'.\n"
    );
    let (code, err) = jmp_err(&["run", "--exporter"]);
    assert_eq!(code, Some(2));
    assert!(
        err.ends_with("Error: Option '--exporter' requires an argument.\n"),
        "{err}"
    );
}

#[test]
fn run_help_describes_controller_mode_and_direct_mode() {
    let out = run_timeout(clean(&mut Command::new(jmp())).arg("--help"), T);
    let help = ok(&out);
    let line = help
        .lines()
        .find(|l| l.trim_start().starts_with("run "))
        .unwrap();
    assert!(
        line.contains("controller") && line.contains("--tls-grpc-listener"),
        "{line}"
    );
}

fn direct(dir: &Path, hooks: &str) -> RunningExporter {
    let cfg = direct_config(dir, hooks);
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .current_dir(dir)
        .env("PATH", path_with_ours())
        .arg("run")
        .arg("--exporter-config")
        .arg(&cfg)
        .args(["--tls-grpc-listener", "127.0.0.1:0", "--tls-grpc-insecure"]);
    RunningExporter::start(&mut cmd, None)
}

fn shell(dir: &Path, port: u16) -> std::process::Output {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .current_dir(dir)
        .env("PATH", path_with_ours())
        .args(["shell", "--tls-grpc", &format!("127.0.0.1:{port}")])
        .args(["--tls-grpc-insecure", "--", "j", "power", "on"]);
    run_timeout(&mut cmd, T)
}

#[test]
fn the_hook_line_shows_only_when_there_is_a_hook_to_wait_for() {
    let dir = tempfile::tempdir().unwrap();
    let plain = direct(dir.path(), "");
    let out = shell(dir.path(), plain.port);
    let all = format!("{}{}", ok(&out), text(&out.stderr));
    assert!(!all.contains("beforeLease"), "{all}");
    drop(plain);

    let dir = tempfile::tempdir().unwrap();
    let hooked = direct(
        dir.path(),
        "hooks:\n  beforeLease:\n    script: |\n      sleep 1\n",
    );
    let out = shell(dir.path(), hooked.port);
    let all = format!("{}{}", ok(&out), text(&out.stderr));
    assert!(
        all.contains("Waiting for beforeLease hook to complete..."),
        "{all}"
    );
}

#[test]
fn a_redirected_controller_log_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Controller::start(&dir.path().join("data"));
    let log = ctl.proc.output();
    assert!(log.contains("jmp-controller listening on "), "{log}");
    assert!(!log.contains('\x1b'), "{log:?}");
}

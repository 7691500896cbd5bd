//! `j <shell> <method> ...` against our exporter's Shell driver: per-method commands, options
//! as click parses them, env, exit codes, live output and help.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(60);

const CONFIG: &str = r#"apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata: {namespace: default, name: shell-test}
export:
  sh:
    type: jumpstarter_driver_shell.driver.Shell
    config:
      methods:
        hello: "echo hello $1"
        show:
          command: 'printf "%s|" "$0" "$@"; echo; echo "FOO=$FOO BAR=$BAR"'
          description: Show what the script gets
        code: 'exit $1'
        both: 'echo out; echo err >&2; echo out2'
        wait: 'echo first; while [ ! -e "$1" ]; do sleep 0.05; done; echo second'
        die: 'kill -KILL $$'
        hang: 'sleep 300 & echo $! > "$1.tmp"; echo $$ >> "$1.tmp"; mv "$1.tmp" "$1"; wait'
        slow:
          command: 'echo started; sleep 300'
          timeout: 1
  group:
    children:
      inner:
        type: jumpstarter_driver_shell.driver.Shell
        config:
          methods: {hi: 'echo hi from inner'}
"#;

/// Our local exporter (`jmp shell --exporter-config`) kept running while `j` is run against it
/// from outside; stopped when dropped.
struct Session {
    child: Child,
    done: PathBuf,
    host: String,
    _dir: tempfile::TempDir,
}

impl Session {
    fn start(config: &str) -> Session {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("exporter.yaml");
        std::fs::write(&cfg, config).unwrap();
        let host_file = dir.path().join("host");
        let done = dir.path().join("done");
        let mut cmd = Command::new(jmp());
        clean(&mut cmd);
        cmd.arg("shell")
            .arg("--exporter-config")
            .arg(&cfg)
            .args([
                "--",
                "sh",
                "-c",
                &format!(
                    "echo \"$JUMPSTARTER_HOST\" > {h}.tmp && mv {h}.tmp {h}; while [ ! -e {d} ]; do sleep 0.1; done",
                    h = host_file.display(),
                    d = done.display()
                ),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut session = Session {
            child: cmd.spawn().unwrap(),
            done,
            host: String::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + T;
        while !host_file.exists() {
            if let Ok(Some(status)) = session.child.try_wait() {
                panic!("jmp shell exited early: {status}");
            }
            assert!(Instant::now() < deadline, "the exporter did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        session.host = std::fs::read_to_string(&host_file)
            .unwrap()
            .trim()
            .to_owned();
        session
    }

    fn j_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(j());
        clean(&mut cmd)
            .env("JUMPSTARTER_HOST", &self.host)
            .env("JMP_DRIVERS_ALLOW", "UNSAFE")
            .args(args);
        cmd
    }

    fn j(&self, args: &[&str]) -> Output {
        run_timeout(&mut self.j_cmd(args), T)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.done, b"");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn one_command_per_method_with_help() {
    let s = Session::start(CONFIG);
    let out = s.j(&["sh", "--help"]);
    let help = ok(&out);
    assert!(
        help.starts_with("Usage: j sh [OPTIONS] COMMAND [ARGS]..."),
        "{help}"
    );
    assert!(help.contains("Shell command executor"), "{help}");
    for (name, about) in [
        ("both", "Execute the both shell method"),
        ("hello", "Execute the hello shell method"),
        ("show", "Show what the script gets"),
        ("slow", "Execute the slow shell method"),
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(name) && l.trim_end().ends_with(about)),
            "{name}: {help}"
        );
    }
    assert_eq!(
        ok(&s.j(&["sh", "show", "--help"])),
        "Usage: j sh show [OPTIONS] [ARGS]...\n\n  Show what the script gets\n\nOptions:\n  \
         -e, --env TEXT  Environment variables in KEY=VALUE format\n  \
         --help          Show this message and exit.\n"
    );
    assert!(ok(&s.j(&["group", "inner", "hi", "--help"])).contains("Execute the hi shell method"));
    // A group without a command, and an unknown method, are usage errors.
    let out = s.j(&["sh"]);
    assert_eq!(code(&out), Some(1));
    assert!(text(&out.stderr).contains("Usage: j sh [OPTIONS] COMMAND [ARGS]..."));
    let out = s.j(&["sh", "nosuch"]);
    assert_eq!(code(&out), Some(1));
    assert!(
        text(&out.stderr).contains("Error: No such command 'nosuch'."),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn arguments_env_and_unknown_options_reach_the_script() {
    let s = Session::start(CONFIG);
    assert_eq!(ok(&s.j(&["sh", "hello", "world"])), "hello world\n");
    let out = s.j(&[
        "sh",
        "show",
        "-e",
        "FOO=1",
        "--env=BAR=x y",
        "--opt",
        "-h",
        "arg1",
        "-e",
        "Z",
        "--",
        "a",
    ]);
    assert_eq!(ok(&out), "show|--opt|-h|arg1|-e|Z|--|a|\nFOO=1 BAR=x y\n");
    // `--` ends the options; later -e values win.
    assert_eq!(
        ok(&s.j(&["sh", "show", "-eFOO=1", "-e", "FOO=2", "--", "-e", "X"])),
        "show|-e|X|\nFOO=2 BAR=\n"
    );
    assert_eq!(ok(&s.j(&["group", "inner", "hi"])), "hi from inner\n");
    // --log-level of the groups does not disturb the method's arguments.
    assert_eq!(
        ok(&s.j(&["--log-level", "WARNING", "sh", "show", "--", "--log-level"])),
        "show|--log-level|\nFOO= BAR=\n"
    );
}

#[test]
fn exit_codes_are_propagated() {
    let s = Session::start(CONFIG);
    for c in [0, 1, 3, 42, 255] {
        let out = s.j(&["sh", "code", &c.to_string()]);
        assert_eq!(code(&out), Some(c), "{}", text(&out.stderr));
    }
    // Death by signal N is 128+N.
    assert_eq!(code(&s.j(&["sh", "die"])), Some(137));
    // A timeout: upstream's message on stderr and code 199.
    let out = s.j(&["sh", "slow"]);
    assert_eq!(code(&out), Some(199));
    assert_eq!(text(&out.stdout), "started\n");
    assert_eq!(
        text(&out.stderr),
        "\nTimeout expired while running slow: Command '['bash', '-c', 'echo started; sleep 300', 'slow']' timed out after 1 seconds\n"
    );
}

#[test]
fn stdout_and_stderr_stay_apart() {
    let s = Session::start(CONFIG);
    let out = s.j(&["sh", "both"]);
    assert_eq!(text(&out.stdout), "out\nout2\n");
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(code(&out), Some(0));
}

#[test]
fn bad_env_values_and_blocked_names() {
    let s = Session::start(CONFIG);
    let out = s.j(&["sh", "hello", "-e", "NOEQ"]);
    assert_eq!(code(&out), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "Usage: j sh hello [OPTIONS] [ARGS]...\nTry 'j sh hello --help' for help.\n\n\
         Error: Invalid value: Invalid --env value 'NOEQ'. Use KEY=VALUE.\n"
    );
    let out = s.j(&["sh", "hello", "-e"]);
    assert_eq!(code(&out), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: Option '-e' requires an argument.\n"
    );
    for name in ["PATH", "LD_PRELOAD", "BASH_FUNC_x", "HOME"] {
        let out = s.j(&["sh", "hello", "-e", &format!("{name}=/x")]);
        assert_eq!(code(&out), Some(1));
        assert_eq!(
            text(&out.stderr),
            format!("Error: Environment variable '{name}' is blocked for security reasons\n")
        );
    }
    let out = s.j(&["sh", "hello", "-e", "1X=2"]);
    assert_eq!(code(&out), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: Invalid environment variable name: 1X\n"
    );
}

#[test]
fn output_passes_through_live() {
    let s = Session::start(CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let mut cmd = s.j_cmd(&["sh", "wait", &go.display().to_string()]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // The first line arrives while the script is blocked on the flag file.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        tx.send(first).unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        rest
    });
    let first = rx.recv_timeout(T);
    if first.is_err() {
        let _ = child.kill();
    }
    assert_eq!(first.unwrap(), "first\n");
    touch(&go);
    let out = wait_output_of(child, reader);
    assert_eq!(out.0, Some(0), "{}", out.2);
    assert_eq!(out.1, "second\n");
}

fn touch(path: &Path) {
    std::fs::write(path, b"").unwrap();
}

/// Waits (with a deadline) for `child`, whose stdout `reader` drains; returns the exit code,
/// the rest of stdout and stderr.
fn wait_output_of(
    mut child: Child,
    reader: std::thread::JoinHandle<String>,
) -> (Option<i32>, String, String) {
    let mut stderr = child.stderr.take().unwrap();
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("j did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    (status.code(), reader.join().unwrap(), err)
}

#[test]
fn config_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {namespace: default, name: x}\n\
         export:\n  sh:\n    type: jumpstarter_driver_shell.driver.Shell\n    config:\n      methods:\n        \
         a:\n          comand: echo\n",
    )
    .unwrap();
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .arg("shell")
        .arg("--exporter-config")
        .arg(&cfg)
        .args(["--", "true"]);
    let out = run_timeout(&mut cmd, T);
    assert_eq!(code(&out), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:10:11: config.methods.a", cfg.display()))
            && err.contains("unknown field `comand`"),
        "{err}"
    );
}

/// Whether a process exists and is not a zombie (orphans may stay zombies if init does not
/// reap them).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = &stat[stat.rfind(')')? + 1..];
            after
                .split_whitespace()
                .next()
                .map(|s| s != "Z" && s != "X")
        })
        .unwrap_or(false)
}

#[test]
fn killing_j_stops_the_script_and_its_children() {
    let s = Session::start(CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let mut cmd = s.j_cmd(&["sh", "hang", &pids.display().to_string()]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + T;
    while !std::fs::read_to_string(&pids).is_ok_and(|t| t.lines().count() == 2) {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the script did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let group: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(group.iter().all(|&p| running(p)));
    // As an OOM kill (or a terminal closing) would: j goes away without a word.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + T;
    while group.iter().any(|&p| running(p)) {
        assert!(Instant::now() < deadline, "{group:?} outlived the client");
        std::thread::sleep(Duration::from_millis(50));
    }
}

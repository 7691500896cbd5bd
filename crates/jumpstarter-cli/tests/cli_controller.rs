//! Our `jmp create/get/update/delete` and `jmp shell --client` against our controller
//! (in process, data in a tempdir), with our `jmp run` exporter (MockPower). The tests with
//! upstream 0.9.0's exporter and `jmp` are in jumpstarter-interop (`interop_cli_controller.rs`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jumpstarter_testkit::ctl::{JmpLab as Lab, Kill, json};
use jumpstarter_testkit::*;

#[test]
fn lease_commands_and_output_formats() {
    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi"), ("arch", "arm")]);
    lab.client_config("alice");
    let (_exporter, log) = lab.exporter(jmp(), &e1, "ours");
    lab.wait_status("e1", "Available", &log);

    // Usage errors as upstream.
    let o = lab.jmp(&["create", "lease", "--client", "alice", "--duration", "10m"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("Error: one of --selector/-l or --name/-n is required"),
        "{}",
        text(&o.stderr)
    );
    let o = lab.jmp(&["delete", "leases", "--client", "alice"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr)
            .contains("Error: One of NAMES, --selector, --all or --all-clients must be specified")
    );
    let o = lab.jmp(&["update", "lease", "--client", "alice", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("At least one of --duration, --begin-time, or --to-client"));

    // create -o name: the bare name (the CI pattern JMP_LEASE=$(jmp create lease ... -o name)).
    let o = lab.jmp(&[
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
    ]);
    let name = ok(&o).trim().to_string();
    assert!(!name.is_empty() && !name.contains('/'), "{name}");

    // get leases: table, json, yaml, name.
    let deadline = Instant::now() + Duration::from_secs(30);
    let lease = loop {
        let v = json(&lab.jmp(&["get", "leases", "--client", "alice", "-o", "json"]));
        let l = v["leases"][0].clone();
        if l["exporter"] == "e1" || Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(lease["name"], name.as_str());
    assert_eq!(lease["namespace"], "default");
    assert_eq!(lease["selector"], "board=rpi");
    assert_eq!(lease["client"], "alice");
    assert_eq!(lease["exporter"], "e1");
    assert_eq!(lease["duration"], 600.0);
    assert!(lease["effective_begin_time"].is_string(), "{lease}");
    assert!(
        lease["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        "{lease}"
    );
    let table = ok(&lab.jmp(&["get", "leases", "--client", "alice"]));
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header.iter().map(|h| h.trim()).collect::<Vec<_>>(),
        [
            "NAME",
            "SELECTOR",
            "EXPIRES AT",
            "REMAINING",
            "CLIENT",
            "EXPORTER",
            "TAGS"
        ]
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with(&name) && row.contains("board=rpi") && row.contains("alice"));
    assert!(row.contains(" e1"), "{table}");
    assert!(row.contains("9m") || row.contains("10m"), "{table}");
    let yaml = ok(&lab.jmp(&["get", "leases", "--client", "alice", "-o", "yaml"]));
    assert!(yaml.starts_with("leases:\n- "), "{yaml}");
    assert!(yaml.contains(&format!("  name: {name}\n")), "{yaml}");
    assert_eq!(lab.active_leases("alice"), std::slice::from_ref(&name));
    // -l matches the lease's selector by containment.
    let o = lab.jmp(&[
        "get",
        "leases",
        "--client",
        "alice",
        "-l",
        "board==rpi",
        "-o",
        "name",
    ]);
    assert_eq!(ok(&o).trim(), name);
    let o = lab.jmp(&["get", "leases", "--client", "alice", "-l", "board=x86"]);
    assert!(ok(&o).contains("No resources found."));

    // get exporters: plain, with leases and online, json, name, selector.
    let table = ok(&lab.jmp(&["get", "exporters", "--client", "alice"]));
    assert!(table.starts_with("NAME  LABELS"), "{table}");
    assert!(table.contains("e1    arch=arm,board=rpi"), "{table}");
    let table = ok(&lab.jmp(&[
        "get",
        "exporters",
        "--client",
        "alice",
        "--with",
        "leases,online",
    ]));
    let header = table.lines().next().unwrap();
    for col in [
        "NAME",
        "ONLINE",
        "LABELS",
        "LEASED BY",
        "LEASE STATUS",
        "RELEASE TIME",
    ] {
        assert!(header.contains(col), "{table}");
    }
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.contains("yes") && row.contains("alice") && row.contains("In-Use"),
        "{table}"
    );
    let v = json(&lab.jmp(&[
        "get",
        "exporters",
        "--client",
        "alice",
        "--with",
        "online",
        "-o",
        "json",
    ]));
    assert_eq!(v["exporters"][0]["name"], "e1");
    assert_eq!(v["exporters"][0]["online"], true);
    assert_eq!(v["exporters"][0]["labels"]["board"], "rpi");
    assert!(v["exporters"][0].get("lease").is_none(), "{v}");
    let o = lab.jmp(&[
        "get",
        "exporters",
        "--client",
        "alice",
        "-l",
        "board=x86",
        "-o",
        "name",
    ]);
    assert_eq!(ok(&o), "");
    let o = lab.jmp(&["get", "exporters", "--client", "alice", "--with", "bogus"]);
    assert_eq!(o.status.code(), Some(2));

    // update lease: the new duration comes back.
    let v = json(&lab.jmp(&[
        "update",
        "lease",
        "--client",
        "alice",
        &name,
        "--duration",
        "20m",
        "-o",
        "json",
    ]));
    assert_eq!(v["duration"], 1200.0, "{v}");
    assert_eq!(v["name"], name.as_str());

    // delete by name.
    let o = lab.jmp(&["delete", "leases", "--client", "alice", &name]);
    assert_eq!(ok(&o), format!("lease \"{name}\" deleted\n"));
    lab.wait_no_leases("alice");
    lab.wait_status("e1", "Available", &log);

    // --lease-id, a pending lease (selector nothing matches right now is Unsatisfiable, so
    // use the exporter by name), delete --all -o name.
    let o = lab.jmp(&[
        "create",
        "lease",
        "--client",
        "alice",
        "-n",
        "e1",
        "--duration",
        "1h",
        "--lease-id",
        "my-lease",
        "--tag",
        "build=42",
        "-o",
        "yaml",
    ]);
    let y = ok(&o);
    assert!(y.contains("name: my-lease\n"), "{y}");
    assert!(y.contains("exporter_name: e1\n"), "{y}");
    assert!(y.contains("  build: '42'\n"), "{y}");
    let o = lab.jmp(&[
        "delete", "leases", "--client", "alice", "--all", "-o", "name",
    ]);
    assert_eq!(ok(&o), "my-lease\n");
    lab.wait_no_leases("alice");
    let o = lab.jmp(&["delete", "leases", "--client", "alice", "--all"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("Error: no leases found matching the criteria"));
    // Unknown name: the controller's error, worded as upstream's jmp words it.
    let o = lab.jmp(&["delete", "leases", "--client", "alice", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("Error: grpc controller responded: ")
            && text(&o.stderr).contains("\"nope\" not found"),
        "{}",
        text(&o.stderr)
    );
}

/// A shell that created its lease ends the session first (EndSession): the exporter runs
/// its afterLease hook while the shell still listens, so the hook's output reaches the user
/// and the hook is done when the shell exits; a failing hook makes the shell fail.
#[test]
fn shell_ends_the_session_so_after_lease_runs_while_it_listens() {
    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi")]);
    let mark = lab.root.join("after-ran");
    let with_hook = |script: &str| {
        let text = std::fs::read_to_string(&e1).unwrap();
        assert!(text.contains("  afterLease: null\n"), "{text}");
        let hook =
            format!("  afterLease:\n    script: |\n      {script}\n    onFailure: endLease\n");
        std::fs::write(&e1, text.replace("  afterLease: null\n", &hook)).unwrap();
    };
    with_hook(&format!(
        "sleep 0.3; j power off; echo AFTER-HOOK-OUTPUT; touch {}",
        mark.display()
    ));
    lab.client_config("alice");
    // The hook's `j` is ours.
    let path = path_with_ours();
    let hook_env = [("PATH", Path::new(&path))];
    let (exporter, log) = lab.exporter_env(jmp(), &e1, "ours", &hook_env);
    lab.wait_status("e1", "Available", &log);
    let shell = || {
        lab.jmp(&[
            "shell",
            "--client",
            "alice",
            "--selector",
            "board=rpi",
            "--",
            "j",
            "power",
            "on",
        ])
    };
    let o = shell();
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        o.status.success(),
        "{all}\nexporter:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Done before the shell returned, and its output came through the shell's log stream.
    assert!(mark.exists(), "{all}");
    assert!(all.contains("AFTER-HOOK-OUTPUT"), "{all}");
    assert!(!all.contains("not found"), "{all}");
    assert!(
        all.find("Releasing Lease").unwrap() > all.find("AFTER-HOOK-OUTPUT").unwrap(),
        "the lease was released before the hook ran:\n{all}"
    );
    lab.wait_no_leases("alice");
    lab.wait_status("e1", "Available", &log);
    drop(exporter);

    // A failing afterLease hook: the command succeeded, the shell reports the hook's failure.
    let text_now = std::fs::read_to_string(&e1).unwrap();
    let start = text_now.find("  afterLease:\n").unwrap();
    let end = text_now[start..].find("    onFailure: endLease\n").unwrap() + start;
    let restored = format!(
        "{}  afterLease: null\n{}",
        &text_now[..start],
        &text_now[end + "    onFailure: endLease\n".len()..]
    );
    std::fs::write(&e1, restored).unwrap();
    with_hook("exit 3");
    let (_exporter, log) = lab.exporter_env(jmp(), &e1, "failing", &hook_env);
    lab.wait_status("e1", "Available", &log);
    let o = shell();
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(all.contains("afterLease hook failed"), "{all}");
    lab.wait_no_leases("alice");
}

#[test]
fn shell_leases_runs_j_releases_and_propagates_exit_codes() {
    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi")]);
    let alice = lab.client_config("alice");
    let (_exporter, log) = lab.exporter(jmp(), &e1, "ours");
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
    assert!(
        text(&o.stdout).contains("Releasing Lease"),
        "{}",
        text(&o.stdout)
    );
    lab.wait_no_leases("alice");
    lab.wait_status("e1", "Available", &log);

    // By name, with a config file; the child sees the lease and exporter; exit code 7.
    let o = lab.jmp(&[
        "shell",
        "--client-config",
        alice.to_str().unwrap(),
        "--name",
        "e1",
        "--",
        "sh",
        "-c",
        "test \"$JMP_EXPORTER\" = e1 && test -n \"$JMP_LEASE\" && test \"$JMP_EXPORTER_LABELS\" = board=rpi && j power off && exit 7",
    ]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    lab.wait_no_leases("alice");
    lab.wait_status("e1", "Available", &log);

    // An existing lease (--lease) is used and kept.
    let lease = ok(&lab.jmp(&[
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
    let o = lab.jmp(&[
        "shell", "--client", "alice", "--lease", &lease, "--", "j", "power", "on",
    ]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(lab.active_leases("alice"), std::slice::from_ref(&lease));
    // Without --lease/-l/-n, the only active lease is used.
    let o = lab.jmp(&[
        "shell",
        "--client",
        "alice",
        "--",
        "sh",
        "-c",
        "echo $JMP_LEASE",
    ]);
    assert_eq!(ok(&o).trim().lines().last(), Some(lease.as_str()));
    ok(&lab.jmp(&["delete", "leases", "--client", "alice", &lease]));
    lab.wait_no_leases("alice");

    // No lease and nothing to create one from: usage error.
    let o = lab.jmp(&["shell", "--client", "alice", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("no active leases found"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn shell_with_a_name_that_cannot_be_satisfied_fails_fast() {
    let lab = Lab::new();
    lab.client_config("alice");
    let started = Instant::now();
    let o = lab.jmp(&[
        "shell", "--client", "alice", "--name", "ghost", "--", "true",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains("Error: the lease cannot be satisfied"),
        "{}",
        text(&o.stderr)
    );
    // Well before any acquisition timeout (2 h by default): it did not wait for one.
    assert!(started.elapsed() < Duration::from_secs(600));
    // The lease it created was released.
    let o = lab.jmp(&["get", "leases", "--client", "alice", "-a", "-o", "json"]);
    let v = json(&o);
    for l in v["leases"].as_array().unwrap() {
        assert!(l["effective_end_time"].is_string(), "{l}");
    }
}

#[test]
fn exporter_controller_channel_takes_tls_env_and_grpc_options() {
    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi")]);
    // No CA in the file; grpcOptions set: the exporter trusts what
    // GRPC_DEFAULT_SSL_ROOTS_FILE_PATH names, as clients do.
    let original = std::fs::read_to_string(&e1).unwrap();
    let edited: String = original
        .lines()
        .map(|l| {
            if l.starts_with("  ca: ") {
                "  ca: ''".to_string()
            } else if l == "grpcOptions: {}" {
                "grpcOptions:\n  grpc.keepalive_time_ms: 20000".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let bare = lab.root.join("e1-no-ca.yaml");
    std::fs::write(&bare, edited).unwrap();

    // A bad grpcOptions value is a config error at start, naming the key.
    let broken = lab.root.join("e1-bad-options.yaml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&bare)
            .unwrap()
            .replace("keepalive_time_ms: 20000", "keepalive_time_ms: soon"),
    )
    .unwrap();
    let o = lab.program(
        jmp(),
        &["run", "--exporter-config", broken.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("grpc.keepalive_time_ms` must be a whole number"),
        "{}",
        text(&o.stderr)
    );

    // Without the variable the system store does not know our controller's certificate.
    let (untrusted, log) = lab.exporter_env(jmp(), &bare, "untrusted", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        if l.contains("cannot reach the controller") {
            assert!(l.to_lowercase().contains("certificate"), "{l}");
            break;
        }
        assert!(Instant::now() < deadline, "no TLS failure logged:\n{l}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!lab.exporter_state("e1").0);
    drop(untrusted);

    let cert = lab.data.join("tls/cert.pem");
    let (_exporter, log) = lab.exporter_env(
        jmp(),
        &bare,
        "trusted",
        &[("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", cert.as_path())],
    );
    lab.wait_status("e1", "Available", &log);
    lab.client_config("alice");
    let o = lab.jmp(&[
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
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
}

#[test]
fn ctrl_c_while_waiting_for_a_lease_releases_it() {
    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi")]);
    lab.client_config("alice");
    lab.client_config("bob");
    let (_exporter, log) = lab.exporter(jmp(), &e1, "ours");
    lab.wait_status("e1", "Available", &log);
    // Bob holds e1, so Alice's shell waits.
    let held = ok(&lab.jmp(&[
        "create",
        "lease",
        "--client",
        "bob",
        "-n",
        "e1",
        "--duration",
        "10m",
        "-o",
        "name",
    ]))
    .trim()
    .to_string();

    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env("HOME", &lab.root)
        .env("PATH", path_with_ours())
        .args(["shell", "--client", "alice", "-n", "e1", "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.active_leases("alice").is_empty() {
        assert!(Instant::now() < deadline, "alice's lease never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = wait_output(child, Duration::from_secs(30), "jmp shell");
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains("Cancelled by user."),
        "{}",
        text(&o.stderr)
    );
    lab.wait_no_leases("alice");
    // Bob's lease is untouched.
    assert_eq!(lab.active_leases("bob"), [held]);
}

#[test]
fn shell_child_gets_sighup_when_the_lease_ends() {
    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi")]);
    lab.client_config("alice");
    let (_exporter, log) = lab.exporter(jmp(), &e1, "ours");
    lab.wait_status("e1", "Available", &log);
    let o = lab.jmp(&[
        "shell",
        "--client",
        "alice",
        "-l",
        "board=rpi",
        "--duration",
        "3s",
        "--",
        "sleep",
        "60",
    ]);
    // 128 + SIGHUP.
    assert_eq!(
        o.status.code(),
        Some(129),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("ended at"), "{}", text(&o.stdout));
    lab.wait_no_leases("alice");
    lab.wait_status("e1", "Available", &log);
}

#[test]
fn shell_shows_a_spinner_only_on_a_tty() {
    use std::io::Read;
    use std::sync::{Arc, Mutex};

    let lab = Lab::new();
    let e1 = lab.exporter_config("e1", &[("board", "rpi")]);
    lab.client_config("alice");
    lab.client_config("bob");
    let (_exporter, log) = lab.exporter(jmp(), &e1, "ours");
    lab.wait_status("e1", "Available", &log);
    let held = ok(&lab.jmp(&[
        "create",
        "lease",
        "--client",
        "bob",
        "-n",
        "e1",
        "--duration",
        "10m",
        "-o",
        "name",
    ]))
    .trim()
    .to_string();

    // Alice waits on a terminal for e1.
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut cmd = Command::new(jmp());
    clean(&mut cmd);
    cmd.env("HOME", &lab.root)
        .env("PATH", path_with_ours())
        .env("TERM", "xterm")
        .args(["shell", "--client", "alice", "-n", "e1", "--", "true"])
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let child = Kill(cmd.spawn().unwrap());
    // Only the child may hold the terminal's other end, or the reader never sees its end.
    drop(cmd);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        let mut master = std::fs::File::from(pty.master);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let screen = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(screen().contains("Acquiring lease") && screen().contains("... (")) {
        assert!(Instant::now() < deadline, "no spinner:\n{}", screen());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Bob lets go; Alice gets e1, runs `true` and exits 0.
    ok(&lab.jmp(&["delete", "leases", "--client", "bob", &held]));
    let mut child = child;
    let status = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "shell did not finish:\n{}",
                screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(status.success(), "{}", screen());
    drop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !screen().contains("acquired successfully") {
        assert!(Instant::now() < deadline, "{}", screen());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(reader);
    lab.wait_no_leases("alice");

    // Not on a terminal: log lines only, no spinner frames.
    let o = lab.jmp(&["shell", "--client", "alice", "-n", "e1", "--", "true"]);
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{all}");
    assert!(
        all.contains("Acquiring lease") && !all.contains("... ("),
        "{all}"
    );
}

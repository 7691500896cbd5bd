//! `jmp shell` (local mode) and `j`: behaviour, exit codes and bad input.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jumpstarter_testkit::*;

const T: Duration = Duration::from_secs(60);

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const MINIMAL: &str = "apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata: {namespace: default, name: demo}
export:
  power:
    type: jumpstarter_driver_power.driver.MockPower
  echo:
    type: jumpstarter_driver_network.driver.EchoNetwork
";

/// Runs `jmp shell --exporter-config CONFIG -- ARGS` in the config's directory (a temp dir:
/// commands that write files never write into the source tree).
fn shell(config: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .current_dir(config.parent().expect("config in a directory"))
        .env("PATH", path_with_ours())
        .arg("shell")
        .arg("--exporter-config")
        .arg(config)
        .arg("--")
        .args(args);
    run_timeout(&mut cmd, T)
}

fn jmp_cmd(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(jmp());
    clean(&mut cmd).args(args);
    run_timeout(&mut cmd, T)
}

#[test]
fn the_main_job_power_on_inside_a_local_shell() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "e.yaml", MINIMAL);
    let out = shell(&cfg, &["j", "power", "on"]);
    let stdout = ok(&out);
    assert!(
        stdout.contains("INFO     [driver.MockPower] power on"),
        "{stdout}"
    );
}

#[test]
fn exit_codes_of_the_child_are_propagated() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "e.yaml", MINIMAL);
    assert_eq!(shell(&cfg, &["sh", "-c", "exit 3"]).status.code(), Some(3));
    assert_eq!(shell(&cfg, &["true"]).status.code(), Some(0));
    // Death by signal N is 128+N, as shells report it.
    assert_eq!(
        shell(&cfg, &["sh", "-c", "kill -TERM $$"]).status.code(),
        Some(143)
    );
    let out = shell(&cfg, &["no-such-command-here"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("cannot run 'no-such-command-here'"));
    // A failing j inside the shell fails the shell when the command says so.
    assert_eq!(shell(&cfg, &["j", "nosuch"]).status.code(), Some(1));
}

#[test]
fn child_environment_and_private_socket() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "e.yaml", MINIMAL);
    let out = ok(&shell(
        &cfg,
        &[
            "sh",
            "-c",
            "echo \"$JUMPSTARTER_HOST\"; echo \"$JMP_DRIVERS_ALLOW\"; echo \"$_JMP_SUPPRESS_DRIVER_WARNINGS\"; \
             stat -c %a \"$(dirname \"$JUMPSTARTER_HOST\")\"; test -S \"$JUMPSTARTER_HOST\" && echo socket",
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    let socket = Path::new(lines[0]);
    assert_eq!(socket.file_name().unwrap(), "socket");
    assert!(
        socket
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("jumpstarter-"),
        "{out}"
    );
    assert_eq!(&lines[1..5], ["UNSAFE", "1", "700", "socket"]);
    // The socket directory is gone after the shell exits.
    assert!(!socket.parent().unwrap().exists());
}

#[test]
fn interactive_shells_get_upstreams_arguments_and_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "e.yaml", MINIMAL);
    // Stand-in shells that report how they were started (the name decides the flavour).
    let report =
        "#!/bin/sh\nprintf 'args=%s\\n' \"$*\"; printf 'PS1=%s\\n' \"$PS1\"; j power on; exit 4\n";
    for name in ["fake-bash", "zsh"] {
        let shell = write(dir.path(), name, report);
        std::fs::set_permissions(&shell, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut cmd = Command::new(jmp());
        clean(&mut cmd)
            .env("PATH", path_with_ours())
            .env("SHELL", &shell)
            .arg("shell")
            .arg("--exporter-config")
            .arg(&cfg);
        let out = run_timeout(&mut cmd, T);
        assert_eq!(out.status.code(), Some(4));
        let s = text(&out.stdout);
        assert!(s.contains("[driver.MockPower] power on"), "{s}");
        if name == "fake-bash" {
            assert!(s.contains("args=--norc --noprofile\n"), "{s}");
            assert!(s.contains("PS1=\\[\\e[90m\\]\\W \\[\\e[93m\\]⚡\\[\\e[97m\\]local \\[\\e[93m\\]➤\\[\\e[0m\\] \n"), "{s}");
        } else {
            assert!(
                s.contains("args=--no-rcs -o inc_append_history -o share_history\n"),
                "{s}"
            );
            assert!(
                s.contains("PS1=%F{8}%1~ %F{yellow}⚡%F{white}local %F{yellow}➤%f \n"),
                "{s}"
            );
        }
    }
}

#[test]
fn exporter_alias_resolves_in_the_config_home() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("exporters")).unwrap();
    write(&dir.path().join("exporters"), "bench.yaml", MINIMAL);
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .env("PATH", path_with_ours())
        .env("JMP_CLIENT_CONFIG_HOME", dir.path())
        .args(["shell", "--exporter", "bench", "--", "j", "power", "off"]);
    ok(&run_timeout(&mut cmd, T));
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .env("JMP_CLIENT_CONFIG_HOME", dir.path())
        .args(["shell", "--exporter", "missing", "--", "true"]);
    let out = run_timeout(&mut cmd, T);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("exporter config 'missing' not found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn shell_usage_errors() {
    let out = jmp_cmd(&["shell"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Error: Specify one of: --client / --client-config, --exporter / --exporter-config, or --tls-grpc HOST:PORT"));
    let out = jmp_cmd(&["shell", "--exporter", "a", "--exporter-config", "b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("only one of --client, --client-config, --exporter, --exporter-config")
    );
    let out = jmp_cmd(&["nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    let out = jmp_cmd(&[]);
    assert_eq!(out.status.code(), Some(2));
    let out = jmp_cmd(&["version"]);
    assert!(ok(&out).starts_with("Jumpstarter v"));
}

fn load_error(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "bad.yaml", config);
    let out = shell(&cfg, &["true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    text(&out.stderr).replace(&cfg.display().to_string(), "FILE")
}

#[test]
fn malformed_yaml_names_file_line_and_column() {
    let err = load_error("metadata:\n  name: x\nexport:\n  power:\n    type: a.B\n   config: {}\n");
    assert!(
        err.starts_with("Error: Failed to load config: FILE:6:"),
        "{err}"
    );
    let err = load_error("metadata: {name: x}\nexport: [unclosed\n");
    assert!(
        err.starts_with("Error: Failed to load config: FILE:"),
        "{err}"
    );
    let err = load_error("");
    assert!(err.contains("FILE:1:1: the file is empty"), "{err}");
}

#[test]
fn wrong_api_version_and_kind() {
    let err =
        load_error("apiVersion: jumpstarter.dev/v2\nkind: ExporterConfig\nmetadata: {name: x}\n");
    assert!(
        err.contains("FILE:1:13: apiVersion must be 'jumpstarter.dev/v1alpha1'"),
        "{err}"
    );
    let err = load_error("kind: ClientConfig\nmetadata: {name: x}\n");
    assert!(
        err.contains("FILE:1:7: kind must be 'ExporterConfig', not 'ClientConfig'"),
        "{err}"
    );
}

#[test]
fn unknown_driver_type_lists_known_ones() {
    let err = load_error(
        "metadata: {name: x}\nexport:\n  p:\n    type: jumpstarter_driver_power.driver.MockPowr\n",
    );
    assert!(
        err.contains("FILE:4:11: unknown driver type `jumpstarter_driver_power.driver.MockPowr`"),
        "{err}"
    );
    assert!(
        err.contains("did you mean `jumpstarter_driver_power.driver.MockPower`"),
        "{err}"
    );
    assert!(err.contains("known types: "), "{err}");
    assert!(
        err.contains("jumpstarter_driver_network.driver.TcpNetwork"),
        "{err}"
    );
}

#[test]
fn bad_driver_config_values() {
    let err = load_error(
        "metadata: {name: x}\nexport:\n  t:\n    type: jumpstarter_driver_network.driver.TcpNetwork\n    config:\n      host: h\n      port: abc\n",
    );
    assert!(
        err.contains("FILE:7:13: config.port: `abc` is not a port number"),
        "{err}"
    );
    let err = load_error(
        "metadata: {name: x}\nexport:\n  t:\n    type: jumpstarter_driver_network.driver.TcpNetwork\n    config:\n      host: h\n",
    );
    assert!(err.contains("missing field `port`"), "{err}");
    let err = load_error(
        "metadata: {name: x}\nexport:\n  t:\n    type: jumpstarter_driver_network.driver.UnixNetwork\n    config:\n      path: /x\n      bogus: 1\n",
    );
    assert!(
        err.contains("FILE:7:7: config.bogus: unknown field `bogus`"),
        "{err}"
    );
}

#[test]
fn dangling_ref_fails_before_anything_starts() {
    let err = load_error(
        "metadata: {name: x}\nexport:\n  p:\n    type: jumpstarter_driver_power.driver.MockPower\n  a:\n    ref: nope\n",
    );
    assert!(
        err.contains("FILE:6:10: `a` references nonexistent driver `nope` (drivers: p)"),
        "{err}"
    );
}

#[test]
fn warnings_for_yaml11_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "w.yaml",
        "metadata: {name: x}\nexport:\n  p:\n    type: jumpstarter_driver_power.driver.MockPower\n    methods_description:\n      on: Turn on\n",
    );
    let out = shell(&cfg, &["j", "p", "--help"]);
    let stdout = ok(&out);
    assert!(stdout.contains("Turn on"), "{stdout}");
    assert!(
        text(&out.stderr).contains("is the boolean true in YAML 1.1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn j_outside_a_shell_or_with_a_dead_host() {
    let mut cmd = Command::new(j());
    clean(&mut cmd).args(["power", "on"]);
    let out = run_timeout(&mut cmd, T);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: the j command must be used inside a jmp shell: JUMPSTARTER_HOST not set\n"
    );
    let mut cmd = Command::new(j());
    clean(&mut cmd)
        .env("JUMPSTARTER_HOST", "/nonexistent/socket")
        .args(["power", "on"]);
    let out = run_timeout(&mut cmd, T);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("Error: Exporter did not respond to initial connection"));
}

#[test]
fn j_usage_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "e.yaml", MINIMAL);
    let out = shell(
        &cfg,
        &[
            "sh",
            "-c",
            "j --help >h1 2>&1; echo \"help=$?\"; j >h2 2>h2e; echo \"bare=$?\"; j power 2>h3; echo \"group=$?\"; \
             j power of 2>h4; echo \"typo=$?\"; j power read --bogus 2>h5; echo \"opt=$?\"; cat h1 h2e h4 h5",
        ],
    );
    let s = ok(&out);
    assert!(
        s.contains("help=0\nbare=1\ngroup=1\ntypo=1\nopt=1\n"),
        "{s}"
    );
    assert!(s.contains("Generic composite device"), "{s}");
    assert!(s.contains("Usage: j power [OPTIONS] COMMAND [ARGS]...\nTry 'j power --help' for help.\n\nError: No such command 'of'. Did you mean 'off'?"), "{s}");
    assert!(s.contains("Error: No such option '--bogus'."), "{s}");
}

#[test]
fn disallowed_drivers_are_listed_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "e.yaml", MINIMAL);
    let out = shell(
        &cfg,
        &[
            "sh",
            "-c",
            "export JMP_DRIVERS_ALLOW='jumpstarter_driver_network.*'; j --help; j echo connect </dev/null; \
             j power on; echo \"rc=$?\"",
        ],
    );
    let s = text(&out.stdout) + &text(&out.stderr);
    assert!(
        s.contains("does not match JMP_DRIVERS_ALLOW (jumpstarter_driver_network.*)"),
        "{s}"
    );
    assert!(
        s.contains(
            "Error: power: not available: driver client jumpstarter_driver_power.client.PowerClient"
        ),
        "{s}"
    );
    assert!(s.contains("rc=1"), "{s}");
}

#[test]
fn j_power_and_network_commands() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = tcp_upper_server();
    let cfg = demo_config(dir.path(), tcp, udp_echo_server());
    let out = shell(
        &cfg,
        &[
            "sh",
            "-c",
            "j power read -n 2 -i 0; j power cycle --wait 0; j tcp address --host; j tcp address --port; \
             printf 'abc' | j tcp connect; echo; printf 'xyz' | j echo connect; echo; printf 'uds' | j unix connect; echo; \
             j echo call nosuch 2>&1 || true",
        ],
    );
    let s = ok(&out);
    let reading = "voltage=0.0 V  current=0.0 A  apparent_power=0.0 VA\nvoltage=5.0 V  current=2.0 A  apparent_power=10.0 VA\n";
    assert!(s.contains(&reading.repeat(2)), "{s}");
    assert!(
        s.contains("Power cycling with 0 seconds wait time..."),
        "{s}"
    );
    assert!(s.contains("Power cycle sequence complete"), "{s}");
    assert!(
        s.contains(&format!("127.0.0.1\n{tcp}\nABC\nxyz\nUDS\n")),
        "{s}"
    );
    assert!(s.contains("No such command 'call'"), "{s}");
}

#[test]
fn forward_tcp_and_unix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_config(dir.path(), tcp_upper_server(), udp_echo_server());
    let script = "j echo forward-tcp 0 > addr & pid=$!; \
        for i in $(seq 100); do [ -s addr ] && break; sleep 0.05; done; \
        port=$(cut -d: -f2 addr); \
        python3 -c \"import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1]))); s.sendall(b'tcp-fwd'); s.shutdown(socket.SHUT_WR); print(s.recv(100).decode())\" $port; \
        kill -INT $pid; wait $pid; echo \"tcp-exit=$?\"; \
        j echo forward-unix ./fwd.sock > path & pid=$!; \
        for i in $(seq 100); do [ -s path ] && break; sleep 0.05; done; \
        python3 -c \"import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'unix-fwd'); s.shutdown(socket.SHUT_WR); print(s.recv(100).decode())\" \"$(cat path)\"; \
        kill -INT $pid; wait $pid; echo \"unix-exit=$?\"";
    let mut cmd = Command::new(jmp());
    clean(&mut cmd)
        .current_dir(dir.path())
        .env("PATH", path_with_ours())
        .arg("shell")
        .arg("--exporter-config")
        .arg(&cfg)
        .args(["--", "sh", "-c", script]);
    let s = ok(&run_timeout(&mut cmd, T));
    assert!(s.contains("tcp-fwd\ntcp-exit=0\n"), "{s}");
    assert!(s.contains("unix-fwd\nunix-exit=0\n"), "{s}");
    assert!(
        !dir.path().join("fwd.sock").exists(),
        "the unix socket is removed on exit"
    );
}

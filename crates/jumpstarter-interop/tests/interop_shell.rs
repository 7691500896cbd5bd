//! Shell and HttpPower drivers across implementations: upstream Jumpstarter 0.9.0's Python
//! client and `j` against our exporter, our `j` and Rust clients against upstream's exporter,
//! and the same calls against both exporters compared with each other.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jumpstarter_core::Client;
use jumpstarter_core::transport::Target;
use jumpstarter_drivers::shell::{ShellClient, ShellOutput};
use jumpstarter_testkit::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(120);

/// Methods listed in sorted order: upstream's `get_methods` keeps config order, ours sorts.
const SHELL_EXPORT: &str = r#"  sh:
    type: jumpstarter_driver_shell.driver.Shell
    config:
      methods:
        both: 'echo out; echo err >&2; echo out2'
        code: 'exit $1'
        hello: "echo hello $1"
        show:
          command: 'printf "%s|" "$0" "$@"; echo; echo "FOO=$FOO BAR=$BAR"'
          description: Show what the script gets
        slow:
          command: 'echo started; sleep 300'
          timeout: 1
        utf8: "printf 'h\u00e9llo \u2713 \U0001F389\\n'"
"#;

const TIMEOUT_TEXT: &str = "\nTimeout expired while running slow: Command '['bash', '-c', 'echo started; sleep 300', 'slow']' timed out after 1 seconds\n";

fn config(dir: &Path, export: &str) -> PathBuf {
    let path = dir.join("exporter.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\n\
             metadata: {{namespace: default, name: interop}}\nexport:\n{export}"
        ),
    )
    .unwrap();
    path
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Upstream,
}

impl Side {
    fn jmp(self) -> PathBuf {
        match self {
            Side::Ours => jmp(),
            Side::Upstream => upstream_jmp(),
        }
    }
    fn path(self) -> String {
        match self {
            Side::Ours => path_with_ours(),
            Side::Upstream => path_with_upstream(),
        }
    }
}

/// `jmp shell --exporter-config cfg -- ARGS` of `exporter`, with `j` from `j_side` first on
/// PATH, in `dir`.
fn in_shell(exporter: Side, j_side: Side, cfg: &Path, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(exporter.jmp());
    clean(&mut cmd)
        .current_dir(dir)
        .env("PATH", j_side.path())
        .arg("shell")
        .arg("--exporter-config")
        .arg(cfg)
        .arg("--")
        .args(args);
    run_timeout(&mut cmd, T)
}

/// The last stdout line of a helper script, as JSON.
fn summary(out: &Output) -> Value {
    let stdout = ok(out);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON summary ({e}):\n{stdout}\n{}", text(&out.stderr)))
}

#[test]
fn upstream_python_client_sees_the_same_shell_on_both_exporters() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SHELL_EXPORT);
    let script = script("shell_client.py").display().to_string();
    let py = py().display().to_string();
    let run = |side: Side| summary(&in_shell(side, side, &cfg, dir.path(), &[&py, &script]));
    let ours = run(Side::Ours);
    let upstream = run(Side::Upstream);
    assert_eq!(ours, upstream, "\nours:     {ours}\nupstream: {upstream}");

    // And what it is (the same on both).
    assert_eq!(ours["client_class"], "ShellClient");
    assert_eq!(
        ours["methods"],
        json!(["both", "code", "hello", "show", "slow", "utf8"])
    );
    assert_eq!(
        ours["methods_description"],
        json!({"show": "Show what the script gets"})
    );
    assert_eq!(
        ours["hello"],
        json!({"rc": 0.0, "rc_type": "float", "stdout": "hello world\n", "stderr": ""})
    );
    assert_eq!(ours["show"]["stdout"], "show|a b|-x|\nFOO=1 BAR=x y\n");
    assert_eq!(ours["code"]["rc"], 3.0);
    assert_eq!(ours["code"]["rc_type"], "float");
    assert_eq!(ours["both"]["stdout"], "out\nout2\n");
    assert_eq!(ours["both"]["stderr"], "err\n");
    assert_eq!(ours["utf8"]["stdout"], "h\u{e9}llo \u{2713} \u{1F389}\n");
    assert_eq!(
        ours["slow"],
        json!({"rc": 199.0, "rc_type": "float", "stdout": "started\n", "stderr": TIMEOUT_TEXT})
    );
    assert_eq!(
        ours["unknown_attribute"]["message"],
        "method nosuch not found in ['both', 'code', 'hello', 'show', 'slow', 'utf8']"
    );
    assert_eq!(
        ours["unknown_method"],
        json!({"class": "DriverInvalidArgument", "is_value_error": true,
               "message": "Method 'nosuch' not found in available methods: ['both', 'code', 'hello', 'show', 'slow', 'utf8']"})
    );
    assert_eq!(
        ours["non_string_arg"]["message"],
        "All arguments must be strings, got <class 'float'>"
    );
    for (name, err) in ours["blocked"].as_object().unwrap() {
        assert_eq!(
            err["message"],
            format!("Environment variable '{name}' is blocked for security reasons")
        );
        assert_eq!(err["class"], "DriverInvalidArgument");
    }
    for (name, err) in ours["invalid_names"].as_object().unwrap() {
        assert_eq!(
            err["message"],
            format!("Invalid environment variable name: {name}")
        );
    }
    assert_eq!(
        ours["items"],
        json!({"all_triples": true, "null_codes_before_last": true, "last_code": 0.0,
               "last_code_type": "float", "stdout": "out\nout2\n", "stderr": "err\n"})
    );
}

/// Quotes a word for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// One `j` invocation's result.
#[derive(Debug, Clone, PartialEq)]
struct JResult {
    stdout: String,
    stderr: String,
    code: String,
}

/// Runs each case as `j ARGS` inside `exporter`'s shell with `j_side`'s `j`, each with its
/// own stdout, stderr and exit code.
fn j_cases(exporter: Side, j_side: Side, cfg: &Path, cases: &[Vec<&str>]) -> Vec<JResult> {
    let dir = tempfile::tempdir().unwrap();
    let mut script = String::new();
    for (i, case) in cases.iter().enumerate() {
        let args: Vec<String> = case.iter().map(|a| sh_quote(a)).collect();
        script.push_str(&format!(
            "j {} > out.{i} 2> err.{i}; echo $? > rc.{i}\n",
            args.join(" ")
        ));
    }
    std::fs::write(dir.path().join("run.sh"), script).unwrap();
    ok(&in_shell(
        exporter,
        j_side,
        cfg,
        dir.path(),
        &["sh", "run.sh"],
    ));
    let read = |name: String| std::fs::read_to_string(dir.path().join(name)).unwrap();
    (0..cases.len())
        .map(|i| JResult {
            stdout: read(format!("out.{i}")),
            stderr: read(format!("err.{i}")),
            code: read(format!("rc.{i}")).trim().to_owned(),
        })
        .collect()
}

#[test]
fn j_shell_commands_match_upstream_in_every_combination() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SHELL_EXPORT);
    let cases: Vec<Vec<&str>> = vec![
        vec!["sh", "hello", "world"],
        vec![
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
        ],
        vec!["sh", "show", "-xe", "FOO=2", "y"],
        vec!["sh", "show", "--", "-e", "X"],
        vec!["sh", "code", "3"],
        vec!["sh", "slow"],
        vec!["sh", "both"],
        vec!["sh", "utf8"],
        vec!["sh", "hello", "-e", "NOEQ"],
        vec!["sh", "hello", "-e", "PATH=/x"],
        vec!["sh", "hello", "-e", "1X=y"],
        vec!["sh", "hello", "-e"],
        vec!["sh", "show", "--help"],
        vec!["sh", "nosuch"],
        vec!["sh", "--help"],
        vec!["sh"],
    ];
    const CODE: usize = 4;
    const SLOW: usize = 5;
    const GROUP_HELP: usize = 14;
    const GROUP_BARE: usize = 15;

    let combos = [
        (Side::Upstream, Side::Upstream),
        (Side::Ours, Side::Upstream),
        (Side::Upstream, Side::Ours),
        (Side::Ours, Side::Ours),
    ];
    let results: Vec<Vec<JResult>> = std::thread::scope(|s| {
        let handles: Vec<_> = combos
            .iter()
            .map(|&(exporter, j_side)| {
                let (cfg, cases) = (&cfg, &cases);
                s.spawn(move || j_cases(exporter, j_side, cfg, cases))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let reference = &results[0];

    // Upstream's j cannot tell our exporter from upstream's.
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(
            results[1][i], reference[i],
            "upstream j, our exporter: {case:?}"
        );
    }
    // Our j prints what upstream's prints, with two deliberate differences: it exits with the
    // script's return code (upstream 0.9.0 always exits 0), and group help is laid out by clap.
    assert_eq!(reference[CODE].code, "0");
    assert_eq!(reference[SLOW].code, "0");
    for ours in &results[2..] {
        for (i, case) in cases.iter().enumerate() {
            match i {
                CODE => {
                    assert_eq!(ours[i].code, "3");
                    assert_eq!(
                        (&ours[i].stdout, &ours[i].stderr),
                        (&reference[i].stdout, &reference[i].stderr)
                    );
                }
                SLOW => {
                    assert_eq!(ours[i].code, "199");
                    assert_eq!(
                        (&ours[i].stdout, &ours[i].stderr),
                        (&reference[i].stdout, &reference[i].stderr)
                    );
                }
                GROUP_HELP | GROUP_BARE => {
                    assert_eq!(ours[i].code, reference[i].code, "{case:?}");
                    let help = format!("{}{}", ours[i].stdout, ours[i].stderr);
                    for line in [
                        "both   Execute the both shell method",
                        "show   Show what the script gets",
                    ] {
                        assert!(help.contains(line), "{case:?}: {help}");
                    }
                }
                _ => assert_eq!(ours[i], reference[i], "our j: {case:?}"),
            }
        }
    }
    // What the reference says, for the record.
    assert_eq!(reference[0].stdout, "hello world\n");
    assert_eq!(
        reference[1].stdout,
        "show|--opt|-h|arg1|-e|Z|--|a|\nFOO=1 BAR=x y\n"
    );
    assert_eq!(reference[SLOW].stderr, TIMEOUT_TEXT);
    assert_eq!(
        reference[8].stderr,
        "Usage: j sh hello [OPTIONS] [ARGS]...\nTry 'j sh hello --help' for help.\n\n\
         Error: Invalid value: Invalid --env value 'NOEQ'. Use KEY=VALUE.\n"
    );
}

/// An exporter (`jmp shell --exporter-config`) kept running until dropped; `host` is its
/// socket.
struct Session {
    child: Child,
    done: PathBuf,
    host: PathBuf,
}

impl Session {
    fn start(side: Side, dir: &Path, cfg: &Path) -> Session {
        let host_file = dir.join("host");
        let done = dir.join("done");
        let mut cmd = Command::new(side.jmp());
        clean(&mut cmd);
        cmd.current_dir(dir)
            .arg("shell")
            .arg("--exporter-config")
            .arg(cfg)
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
            host: PathBuf::new(),
        };
        let deadline = Instant::now() + T;
        while !host_file.exists() {
            if let Ok(Some(status)) = session.child.try_wait() {
                panic!("jmp shell exited early: {status}");
            }
            assert!(Instant::now() < deadline, "the exporter did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        session.host = std::fs::read_to_string(&host_file).unwrap().trim().into();
        session
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.done, b"");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_shell_client_against_upstream_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SHELL_EXPORT);
    let session = Session::start(Side::Upstream, dir.path(), &cfg);
    let client = Client::connect(&Target::Unix(session.host.clone()))
        .await
        .unwrap();
    let sh = ShellClient::new(client.get("sh").unwrap().clone());
    assert_eq!(
        sh.get_methods().await.unwrap(),
        ["both", "code", "hello", "show", "slow", "utf8"]
    );
    assert_eq!(
        sh.driver
            .methods_description()
            .get("show")
            .map(String::as_str),
        Some("Show what the script gets")
    );
    let none = BTreeMap::new();
    assert_eq!(
        sh.call_collect("hello", &strings(&["world"]), &none)
            .await
            .unwrap(),
        ShellOutput {
            stdout: "hello world\n".into(),
            stderr: String::new(),
            code: 0
        }
    );
    let out = sh
        .call_collect(
            "show",
            &strings(&["a b", "-x"]),
            &env(&[("FOO", "1"), ("BAR", "x y")]),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "show|a b|-x|\nFOO=1 BAR=x y\n");
    assert_eq!(
        sh.call_collect("code", &strings(&["3"]), &none)
            .await
            .unwrap()
            .code,
        3
    );
    // Chunks arrive through the sinks, stdout and stderr apart.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = sh
        .call(
            "both",
            &[],
            &none,
            |s| out.push(s.to_owned()),
            |s| err.push(s.to_owned()),
        )
        .await
        .unwrap();
    assert_eq!(
        (out.concat(), err.concat(), code),
        ("out\nout2\n".into(), "err\n".into(), 0)
    );
    assert_eq!(
        sh.call_collect("utf8", &[], &none).await.unwrap().stdout,
        "h\u{e9}llo \u{2713} \u{1F389}\n"
    );
    assert_eq!(
        sh.call_collect("slow", &[], &none).await.unwrap(),
        ShellOutput {
            stdout: "started\n".into(),
            stderr: TIMEOUT_TEXT.into(),
            code: 199
        }
    );
    // Upstream's errors: INVALID_ARGUMENT with the same texts as ours.
    let err = sh
        .call_collect("hello", &[], &env(&[("LD_PRELOAD", "x")]))
        .await
        .unwrap_err();
    let call = err.as_call().unwrap();
    assert!(call.is_invalid_argument(), "{err}");
    assert_eq!(
        call.message,
        "Environment variable 'LD_PRELOAD' is blocked for security reasons"
    );
    let err = sh.call_collect("nosuch", &[], &none).await.unwrap_err();
    assert_eq!(
        err.as_call().unwrap().message,
        "Method 'nosuch' not found in available methods: ['both', 'code', 'hello', 'show', 'slow', 'utf8']"
    );
    drop(session);
}

// ---- HttpPower ---------------------------------------------------------------------------

/// One request as the test HTTP server saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    auth: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// A small HTTP/1.1 server on 127.0.0.1: fixed answers per path (404 otherwise), one request
/// per connection, every request recorded.
struct HttpServer {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl HttpServer {
    fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let log = log.clone();
                std::thread::spawn(move || answer(conn, &log));
            }
        });
        HttpServer { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(mut conn: std::net::TcpStream, seen: &Mutex<Vec<Seen>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut request_line = head.lines().next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    seen.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        auth: header("authorization"),
        content_type: header("content-type"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, reason, text) = match path.as_str() {
        "/on" | "/off" => (200, "OK", "done"),
        "/status" => (
            200,
            "OK",
            r#"{"emeter": {"voltage": "230.5"}, "meters": [{"current": 0.5}, {"current": 2}]}"#,
        ),
        "/fail" => (500, "Internal Server Error", "boom"),
        _ => (404, "Not Found", "no such path"),
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn http_power_export(port: u16) -> String {
    format!(
        r#"  power:
    type: jumpstarter_driver_http_power.driver.HttpPower
    config:
      name: bench
      power_on: {{url: "http://127.0.0.1:{port}/on", method: POST, data: "relay=1"}}
      power_off: {{url: "http://127.0.0.1:{port}/off", method: put, data: "relay=0"}}
      power_read:
        url: "http://127.0.0.1:{port}/status"
        voltage_path: emeter.voltage
        current_path: meters.-1.current
      auth: {{basic: {{user: admin, password: s3cret}}}}
  noread:
    type: jumpstarter_driver_http_power.driver.HttpPower
    config:
      power_on: {{url: "http://127.0.0.1:{port}/fail"}}
      power_off: {{url: "http://127.0.0.1:{port}/off"}}
"#
    )
}

fn expected_requests() -> Vec<Seen> {
    let auth = Some("Basic YWRtaW46czNjcmV0".to_owned());
    vec![
        Seen {
            method: "POST".into(),
            path: "/on".into(),
            auth: auth.clone(),
            content_type: None,
            body: "relay=1".into(),
        },
        Seen {
            method: "PUT".into(),
            path: "/off".into(),
            auth: auth.clone(),
            content_type: None,
            body: "relay=0".into(),
        },
        Seen {
            method: "GET".into(),
            path: "/status".into(),
            auth,
            content_type: None,
            body: String::new(),
        },
    ]
}

#[test]
fn upstream_python_client_against_our_http_power() {
    let script = script("http_power_client.py").display().to_string();
    let py = py().display().to_string();
    let run = |side: Side| {
        let server = HttpServer::start();
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &http_power_export(server.port));
        let summary = summary(&in_shell(side, side, &cfg, dir.path(), &[&py, &script]));
        (summary, server.seen())
    };
    let (ours, our_requests) = run(Side::Ours);
    let (upstream, upstream_requests) = run(Side::Upstream);

    assert_eq!(ours["client_class"], "PowerClient");
    assert_eq!(ours["on"], Value::Null);
    assert_eq!(ours["off"], Value::Null);
    assert_eq!(ours["readings_are_power_readings"], true);
    assert_eq!(
        ours["readings"],
        json!([{"voltage": 230.5, "current": 2.0}])
    );
    assert_eq!(ours["raw"], json!([{"voltage": 230.5, "current": 2.0}]));
    assert_eq!(
        ours["noread"],
        json!({"class": "DriverInvalidArgument", "message": "power_read endpoint is not configured"})
    );
    // A failing device is a plain DriverError on both (the texts differ: requests' vs ours).
    assert_eq!(ours["failing_on"]["class"], "DriverError");
    let mut same = ours.clone();
    same["failing_on"] = upstream["failing_on"].clone();
    assert_eq!(same, upstream);

    // The device sees the same requests from both exporters (three from the power driver,
    // then the failing `on` of `noread`).
    let mut expected = expected_requests();
    expected.insert(2, expected[2].clone());
    expected.push(Seen {
        method: "GET".into(),
        path: "/fail".into(),
        auth: None,
        content_type: None,
        body: String::new(),
    });
    assert_eq!(our_requests, expected);
    assert_eq!(upstream_requests, expected);
}

#[test]
fn our_j_power_against_upstream_http_power() {
    let run = |exporter: Side| {
        let server = HttpServer::start();
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &http_power_export(server.port));
        let out = in_shell(
            exporter,
            Side::Ours,
            &cfg,
            dir.path(),
            &[
                "sh",
                "-c",
                "j power on > out 2>&1 && j power off >> out 2>&1 && j power read >> out 2>&1; \
                 echo \"rc=$?\" >> out; j noread read 2> err; echo \"noread=$?\" >> out",
            ],
        );
        ok(&out);
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        (read("out"), read("err"), server.seen())
    };
    let (up_out, up_err, up_requests) = run(Side::Upstream);
    assert!(
        up_out
            .ends_with("voltage=230.5 V  current=2.0 A  apparent_power=461.0 VA\nrc=0\nnoread=1\n"),
        "{up_out}"
    );
    assert!(
        up_err.contains("power_read endpoint is not configured"),
        "{up_err}"
    );
    assert_eq!(up_requests, expected_requests());

    // Ours answers our j the same way.
    let (our_out, our_err, our_requests) = run(Side::Ours);
    assert!(
        our_out
            .ends_with("voltage=230.5 V  current=2.0 A  apparent_power=461.0 VA\nrc=0\nnoread=1\n"),
        "{our_out}"
    );
    assert_eq!(our_err, up_err);
    assert_eq!(our_requests, expected_requests());
}

//! The Shell family's tests: the env rules, the item shape, and the driver through a real
//! session.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jumpstarter_core::{ClientError, Driver, DriverError, Logger, Value};
use serde_json::json;

use super::env::parse_env;
use super::interface::parse_item;
use super::*;
use crate::py::py_str_repr;

#[test]
fn env_names_as_upstream() {
    for ok in ["FOO", "a1", "MY_VAR"] {
        assert!(check_env_name(ok).is_ok(), "{ok}");
    }
    // Identifiers upstream accepts that the default rule refuses; `*` allows them.
    let any = EnvPolicy::new(Some(&["*".to_string()])).unwrap();
    for odd in ["_x", "ÉTÉ"] {
        let err = check_env_name(odd).unwrap_err().to_string();
        assert!(
            err.contains("by default only names of ASCII letters"),
            "{err}"
        );
        assert!(any.check(odd).is_ok(), "{odd}");
    }
    for bad in ["", "1A", "A-B", "A B", "A=B", "$X"] {
        assert_eq!(
            check_env_name(bad).unwrap_err(),
            DriverError::InvalidArgument(format!("Invalid environment variable name: {bad}"))
        );
    }
    for blocked in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PATH",
        "PYTHONPATH",
        "BASH_ENV",
        "KUBECONFIG",
        "HOME",
        "LD_ANYTHING",
        "BASH_FUNC_f%%",
        "BASH_FUNC_x",
    ] {
        let err = check_env_name(blocked).unwrap_err();
        if blocked.contains('%') {
            assert!(
                err.to_string()
                    .starts_with("Invalid environment variable name")
            );
        } else {
            assert_eq!(
                err.to_string(),
                format!("Environment variable '{blocked}' is blocked for security reasons")
            );
        }
    }
    // Only exact names and prefixes are blocked.
    assert!(check_env_name("MYPATH").is_ok());
    assert!(check_env_name("Path").is_ok());
    // zsh's lowercase `path` is reserved by the default rule.
    assert!(check_env_name("path").is_err());
    assert!(
        parse_env(Some(&json!(null)), &EnvPolicy::default())
            .unwrap()
            .is_empty()
    );
    assert!(
        parse_env(Some(&json!({})), &EnvPolicy::default())
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        parse_env(Some(&json!({"A": 1})), &EnvPolicy::default()),
        Err(DriverError::InvalidArgument(_))
    ));
    assert!(matches!(
        parse_env(Some(&json!("A=1")), &EnvPolicy::default()),
        Err(DriverError::InvalidArgument(_))
    ));
}

#[test]
fn seconds_print_like_python() {
    let p = |v: Value| serde_json::from_value::<Seconds>(v).unwrap().to_string();
    assert_eq!(p(json!(300)), "300");
    assert_eq!(p(json!(1.5)), "1.5");
    assert_eq!(p(json!(2.0)), "2.0");
    assert!(serde_json::from_value::<Seconds>(json!(-1)).is_err());
    assert!(serde_json::from_value::<Seconds>(json!("5")).is_err());
}

#[test]
fn items_parse_strictly() {
    assert_eq!(parse_item(&json!(["a", "", null])), Some(("a", "", None)));
    assert_eq!(parse_item(&json!(["", "", 3.0])), Some(("", "", Some(3))));
    assert_eq!(parse_item(&json!(["", "", -9])), Some(("", "", Some(-9))));
    assert_eq!(parse_item(&json!(["", "", 1.5])), None);
    assert_eq!(parse_item(&json!(["", ""])), None);
    assert_eq!(parse_item(&json!({"a": 1})), None);
}

// ---- Through a real session -------------------------------------------------------------

use jumpstarter_config::DriverConfig;
use jumpstarter_core::testing::{Served, serve};
use jumpstarter_core::{BuildContext, DriverTree, Instance};
use std::path::Path;
use tokio::time::Instant;

/// Long enough to never fire on a loaded machine; only guards against hangs.
const GUARD: Duration = Duration::from_secs(60);

fn build(config: Value) -> Result<Arc<dyn Driver>, String> {
    let families = crate::builtin();
    let factory = families.drivers().get(SHELL).expect("Shell is registered");
    let config = DriverConfig::from_json(config);
    let ctx = BuildContext {
        type_name: SHELL,
        config: &config,
        children: &[],
        logger: Logger::detached("Shell"),
    };
    factory(&ctx).map(|b| b.driver).map_err(|e| e.to_string())
}

async fn serve_shell(config: Value) -> (Served, ShellClient) {
    let driver = build(config).unwrap();
    let tree = DriverTree::composite(vec![("sh", Instance::new(driver, SHELL))]);
    let served = serve(tree).await.unwrap();
    let sh = ShellClient::new(served.client.get("sh").unwrap().clone());
    (served, sh)
}

fn no_env() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn run(sh: &ShellClient, method: &str, args: &[&str]) -> ShellOutput {
    tokio::time::timeout(GUARD, sh.call_collect(method, &strings(args), &no_env()))
        .await
        .expect("call finished")
        .unwrap()
}

/// The raw items of a call.
async fn items(sh: &ShellClient, args: Vec<Value>) -> Result<Vec<Value>, ClientError> {
    tokio::time::timeout(GUARD, sh.driver.streaming_call_collect("call_method", args))
        .await
        .expect("call finished")
}

/// Whether a process exists and is not a zombie.
fn running(pid: i32) -> bool {
    jumpstarter_process::is_live(jumpstarter_process::Pid::from_raw(pid))
}

async fn wait_for_file(path: &Path) {
    let give_up = Instant::now() + GUARD;
    while !std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n')) {
        assert!(
            Instant::now() < give_up,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_gone(pids: &[i32]) {
    let give_up = Instant::now() + GUARD;
    while pids.iter().any(|&p| running(p)) {
        assert!(Instant::now() < give_up, "processes {pids:?} still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn invalid_argument(err: ClientError) -> String {
    let call = err.as_call().expect("a call error");
    assert!(call.is_invalid_argument(), "{call}");
    call.message.clone()
}

#[tokio::test]
async fn methods_and_descriptions_are_reported() {
    let (served, sh) = serve_shell(json!({"methods": {
        "b": "true",
        "a": {"command": "true", "description": "Say A"},
        "c": {"description": "No command"},
    }}))
    .await;
    assert_eq!(sh.driver.client_class(), SHELL_CLIENT);
    // Config order, as upstream lists them.
    assert_eq!(sh.get_methods().await.unwrap(), ["b", "a", "c"]);
    let descriptions: Vec<(&str, &str)> = sh
        .driver
        .methods_description()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(descriptions, [("a", "Say A"), ("c", "No command")]);
    // A mapping without `command` runs `echo Hello`, as upstream.
    assert_eq!(run(&sh, "c", &[]).await.stdout, "Hello\n");
    served.shutdown().await;
}

#[tokio::test]
async fn output_order_exit_code_and_item_shape() {
    let (served, sh) = serve_shell(json!({"methods": {
        "mixed": "echo one; echo two >&2; printf three; echo four >&2; exit 3",
    }}))
    .await;
    let out = run(&sh, "mixed", &[]).await;
    assert_eq!(
        out,
        ShellOutput {
            stdout: "one\nthree".into(),
            stderr: "two\nfour\n".into(),
            code: 3
        }
    );
    let items = items(&sh, vec![json!("mixed"), json!({})]).await.unwrap();
    let (last, chunks) = items.split_last().unwrap();
    assert_eq!(last, &json!(["", "", 3]));
    for item in chunks {
        let a = item.as_array().unwrap();
        assert_eq!(a.len(), 3, "{item}");
        assert!(
            a[0].is_string() && a[1].is_string() && a[2].is_null(),
            "{item}"
        );
    }
    let stdout: String = chunks.iter().map(|i| i[0].as_str().unwrap()).collect();
    let stderr: String = chunks.iter().map(|i| i[1].as_str().unwrap()).collect();
    assert_eq!(
        (stdout.as_str(), stderr.as_str()),
        ("one\nthree", "two\nfour\n")
    );
    served.shutdown().await;
}

#[tokio::test]
async fn large_and_multibyte_output_survives_any_chunking() {
    let (served, sh) = serve_shell(json!({"methods": {
        "big": "head -c 300000 /dev/zero | tr '\\0' x; for i in $(seq 3000); do printf 'é✓🎉'; done",
        "bad": "printf 'a\\377b'; printf 'c\\342\\234' >&2",
    }}))
    .await;
    let out = run(&sh, "big", &[]).await;
    let expected = format!("{}{}", "x".repeat(300_000), "é✓🎉".repeat(3000));
    assert!(
        out.stdout == expected,
        "stdout differs ({} bytes)",
        out.stdout.len()
    );
    assert_eq!(out.code, 0);
    // Invalid bytes are replaced; a truncated character at the end too.
    let out = run(&sh, "bad", &[]).await;
    assert_eq!(out.stdout, "a\u{FFFD}b");
    assert_eq!(out.stderr, "c\u{FFFD}");
    served.shutdown().await;
}

#[tokio::test]
async fn args_and_method_name_as_dollar_zero() {
    let (served, sh) = serve_shell(json!({"methods": {
        "greet": "echo \"$0|$1|$2|$#\"",
    }}))
    .await;
    let out = run(&sh, "greet", &["a b", "-x"]).await;
    assert_eq!(out.stdout, "greet|a b|-x|2\n");
    assert_eq!(run(&sh, "greet", &[]).await.stdout, "greet|||0\n");
    // Arguments must be strings.
    let err = items(&sh, vec![json!("greet"), json!({}), json!(1)])
        .await
        .unwrap_err();
    assert_eq!(
        invalid_argument(err),
        "All arguments must be strings, got <class 'float'>"
    );
    let err = items(
        &sh,
        vec![json!("greet"), json!({}), json!("ok"), json!(null)],
    )
    .await
    .unwrap_err();
    assert_eq!(
        invalid_argument(err),
        "All arguments must be strings, got <class 'NoneType'>"
    );
    // `env` is a required parameter, as in Python.
    let err = items(&sh, vec![json!("greet")]).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("Shell.call_method() missing 1 required positional argument: 'env'"),
        "{err}"
    );
    served.shutdown().await;
}

#[tokio::test]
async fn env_reaches_the_script_on_top_of_the_exporter_env() {
    let (served, sh) = serve_shell(json!({"methods": {
        "env": "echo \"$FOO|$BAR|$PATH\"",
    }}))
    .await;
    let env: BTreeMap<String, String> = [("FOO", "1"), ("BAR", "x y=z")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = sh.call_collect("env", &[], &env).await.unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    assert_eq!(out.stdout, format!("1|x y=z|{path}\n"));
    // A null env is no env.
    let items = items(&sh, vec![json!("env"), json!(null)]).await.unwrap();
    assert_eq!(items.last().unwrap()[2], json!(0));
    served.shutdown().await;
}

fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn env_deny_list_allow_list_and_invalid_names() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let (served, sh) = serve_shell(json!({"methods": {
        "touch": format!("touch '{}'", marker.display()),
    }}))
    .await;
    // Upstream's deny-list, with upstream's text.
    let blocked = [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PATH",
        "PYTHONPATH",
        "BASH_ENV",
        "KUBECONFIG",
        "HOME",
        "LD_AUDIT",
        "BASH_FUNC_x",
    ];
    for name in blocked {
        let err = items(&sh, vec![json!("touch"), json!({name: "x"})])
            .await
            .unwrap_err();
        assert_eq!(
            invalid_argument(err),
            format!("Environment variable '{name}' is blocked for security reasons")
        );
    }
    // What the shell, the loader or common tools read, and odd shapes: refused by the
    // default rule, and the message names the config key.
    for name in [
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "ENV",
        "IFS",
        "GLIBC_TUNABLES",
        "LC_ALL",
        "PERL5OPT",
        "GIT_SSH_COMMAND",
        "path",
        "_X",
        "é",
    ] {
        let err = items(&sh, vec![json!("touch"), json!({name: "x"})])
            .await
            .unwrap_err();
        let msg = invalid_argument(err);
        assert!(
            msg.starts_with(&format!(
                "Environment variable '{name}' is blocked for security reasons: "
            )) && msg.contains("`allowed_env`"),
            "{msg}"
        );
    }
    for name in ["", "1X", "A-B", "A B", "A=B", "BASH_FUNC_f%%"] {
        let err = items(&sh, vec![json!("touch"), json!({name: "x"})])
            .await
            .unwrap_err();
        assert_eq!(
            invalid_argument(err),
            format!("Invalid environment variable name: {name}")
        );
    }
    // A refused name next to valid ones still rejects the call.
    let err = items(&sh, vec![json!("touch"), json!({"OK": "1", "PS4": "/"})])
        .await
        .unwrap_err();
    invalid_argument(err);
    let err = items(&sh, vec![json!("touch"), json!({"N": 5})])
        .await
        .unwrap_err();
    assert_eq!(
        invalid_argument(err),
        "Environment variable 'N' must be a string, got float"
    );
    assert!(!marker.exists(), "a rejected call must not run the script");
    // Near misses and typical names are allowed.
    let env = env_of(&[
        ("MYPATH", "1"),
        ("ENV_VAR", "2"),
        ("LDX", "3"),
        ("version", "4"),
    ]);
    assert_eq!(sh.call_collect("touch", &[], &env).await.unwrap().code, 0);
    assert!(marker.exists());
    served.shutdown().await;
}

#[tokio::test]
async fn allowed_env_lists_names_and_prefixes() {
    let (served, sh) = serve_shell(json!({
        "methods": {"show": "echo \"$JMP_A|$EXTRA|$PATH\""},
        "allowed_env": ["JMP_*", "EXTRA", "PATH"],
    }))
    .await;
    let out = sh
        .call_collect(
            "show",
            &[],
            &env_of(&[("JMP_A", "a"), ("EXTRA", "e"), ("PATH", "/bin:/usr/bin")]),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "a|e|/bin:/usr/bin\n");
    // Not listed: refused, and the message says which key would allow it.
    let err = sh
        .call_collect("show", &[], &env_of(&[("FOO", "1")]))
        .await
        .unwrap_err();
    assert_eq!(
        invalid_argument(err),
        "Environment variable 'FOO' is blocked for security reasons: it is not in this Shell \
         driver's `allowed_env`; list it in this Shell driver's `allowed_env` config to \
         allow it"
    );
    served.shutdown().await;

    // A prefix never allows a reserved name; `*` is any name that is not reserved.
    let (served, sh) = serve_shell(json!({
        "methods": {"show": "echo \"$X_1\""},
        "allowed_env": ["*"],
    }))
    .await;
    assert_eq!(
        sh.call_collect("show", &[], &env_of(&[("X_1", "ok")]))
            .await
            .unwrap()
            .stdout,
        "ok\n"
    );
    for name in ["SHELLOPTS", "PS4", "HOME", "LD_PRELOAD"] {
        let err = sh
            .call_collect("show", &[], &env_of(&[(name, "1")]))
            .await
            .unwrap_err();
        assert!(
            invalid_argument(err).starts_with(&format!("Environment variable '{name}' is blocked")),
        );
    }
    served.shutdown().await;

    // An empty list refuses everything.
    let (served, sh) = serve_shell(json!({
        "methods": {"show": "true"},
        "allowed_env": [],
    }))
    .await;
    let err = sh
        .call_collect("show", &[], &env_of(&[("FOO", "1")]))
        .await
        .unwrap_err();
    invalid_argument(err);
    assert_eq!(
        sh.call_collect("show", &[], &no_env()).await.unwrap().code,
        0
    );
    served.shutdown().await;

    // Bad entries are config errors.
    for bad in [json!(["A-B"]), json!(["X*Y"]), json!(["**"]), json!("FOO")] {
        let err = build(json!({"methods": {"a": "true"}, "allowed_env": bad})).unwrap_err();
        assert!(err.contains("allowed_env"), "{err}");
    }
}

/// The attack: `SHELLOPTS=xtrace` makes bash trace, and tracing expands `PS4`, so
/// `$(cmd)` in it runs. Bash ignores an inherited PS4 when it runs as root, so as root the
/// script runs as `nobody` (setpriv), where the attack is real: the control call, whose
/// config allows both names explicitly, shows that it works.
#[tokio::test]
async fn the_shellopts_ps4_attack_does_not_run_the_command() {
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let marker = dir.path().join("pwned");
    let shell: Vec<&str> = if nix::unistd::geteuid().is_root() {
        vec![
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "bash",
            "-c",
        ]
    } else {
        vec!["bash", "-c"]
    };
    let attack = env_of(&[
        ("SHELLOPTS", "xtrace"),
        ("PS4", &format!("$(touch {})+ ", marker.display())),
    ]);
    let methods = json!({
        "hello": "echo hello",
        "environ": "tr '\\0' '\\n' < /proc/$$/environ",
    });
    let (served, sh) = serve_shell(json!({"methods": methods, "shell": shell})).await;
    let err = sh.call_collect("hello", &[], &attack).await.unwrap_err();
    assert!(
        invalid_argument(err)
            .starts_with("Environment variable 'PS4' is blocked for security reasons: "),
    );
    for name in ["SHELLOPTS", "PS4"] {
        let one = env_of(&[(name, attack[name].as_str())]);
        invalid_argument(sh.call_collect("hello", &[], &one).await.unwrap_err());
    }
    assert!(!marker.exists(), "the attack ran its command");
    // What does reach the script: the allowed names, and never the refused ones.
    let out = sh
        .call_collect("environ", &[], &env_of(&[("FOO", "bar")]))
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let names: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split('=').next())
        .collect();
    assert!(names.contains(&"FOO"), "{names:?}");
    assert!(
        !names.contains(&"PS4") && !names.contains(&"SHELLOPTS"),
        "{names:?}"
    );
    served.shutdown().await;

    // Control: an owner who explicitly allows both names gets the attack's effect, so the
    // check above is what stops it.
    let (served, sh) = serve_shell(json!({
        "methods": methods,
        "shell": shell,
        "allowed_env": ["SHELLOPTS", "PS4"],
    }))
    .await;
    let out = sh.call_collect("hello", &[], &attack).await.unwrap();
    assert_eq!(out.stdout, "hello\n");
    assert!(
        marker.exists(),
        "the control call did not reproduce the attack: {out:?}"
    );
    served.shutdown().await;
}

#[tokio::test]
async fn unknown_method_and_empty_script() {
    let (served, sh) = serve_shell(json!({"methods": {"b": "true", "a": "true", "e": "  "}})).await;
    let err = sh.call_collect("nosuch", &[], &no_env()).await.unwrap_err();
    assert_eq!(
        invalid_argument(err),
        "Method 'nosuch' not found in available methods: ['b', 'a', 'e']"
    );
    let err = sh.call_collect("e", &[], &no_env()).await.unwrap_err();
    assert_eq!(
        invalid_argument(err),
        "Shell script must be a non-empty string"
    );
    // get_methods takes no arguments, call_method is not unary.
    assert!(sh.driver.call("get_methods", vec![json!(1)]).await.is_err());
    assert!(sh.driver.call("call_method", vec![]).await.is_err());
    served.shutdown().await;
}

#[tokio::test]
async fn exit_codes_and_signals() {
    let (served, sh) = serve_shell(json!({"methods": {
        "code": "exit $1",
        "die": "kill -KILL $$",
    }}))
    .await;
    for code in [0, 1, 2, 42, 255] {
        assert_eq!(run(&sh, "code", &[&code.to_string()]).await.code, code);
    }
    // Death by signal N is -N, as Python reports it.
    assert_eq!(run(&sh, "die", &[]).await.code, -9);
    served.shutdown().await;
}

#[tokio::test]
async fn cwd_and_custom_shell() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let (served, sh) = serve_shell(json!({
        "methods": {"pwd": "pwd -P; echo \"$0\""},
        "shell": ["sh", "-c"],
        "cwd": cwd.display().to_string(),
    }))
    .await;
    let out = run(&sh, "pwd", &[]).await;
    assert_eq!(out.stdout, format!("{}\npwd\n", cwd.display()));
    served.shutdown().await;

    let missing = cwd.join("missing");
    let (served, sh) = serve_shell(json!({
        "methods": {"pwd": "pwd"},
        "cwd": missing.display().to_string(),
    }))
    .await;
    let err = sh.call_collect("pwd", &[], &no_env()).await.unwrap_err();
    assert_eq!(
        invalid_argument(err),
        format!("Working directory does not exist: {}", missing.display())
    );
    served.shutdown().await;
}

#[tokio::test]
async fn output_is_streamed_live() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let (served, sh) = serve_shell(json!({"methods": {
        "wait": "echo first; while [ ! -e \"$1\" ]; do sleep 0.05; done; echo second",
    }}))
    .await;
    let mut stream = Box::pin(
        sh.driver
            .streaming_call(
                "call_method",
                vec![json!("wait"), json!({}), json!(go.display().to_string())],
            )
            .await
            .unwrap(),
    );
    // The first line arrives while the script is still blocked on the flag file.
    let first = tokio::time::timeout(GUARD, stream.next())
        .await
        .expect("first chunk while the script runs")
        .unwrap()
        .unwrap();
    assert_eq!(first, json!(["first\n", "", null]));
    std::fs::write(&go, b"").unwrap();
    let mut rest = Vec::new();
    while let Some(item) = tokio::time::timeout(GUARD, stream.next()).await.unwrap() {
        rest.push(item.unwrap());
    }
    assert_eq!(rest, [json!(["second\n", "", null]), json!(["", "", 0])]);
    served.shutdown().await;
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = "sleep 300 & echo $! > \"$1.tmp\"; echo $$ >> \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; echo started; wait";
    let (served, sh) = serve_shell(json!({
        "methods": {"slow": {"command": script, "timeout": 1}},
        "timeout": 600,
    }))
    .await;
    let arg = pids.display().to_string();
    let out = run(&sh, "slow", &[&arg]).await;
    assert_eq!(out.code, TIMEOUT_CODE);
    assert_eq!(out.stdout, "started\n");
    assert_eq!(
        out.stderr,
        format!(
            "\nTimeout expired while running slow: Command '['bash', '-c', {}, 'slow', {}]' timed out after 1 seconds\n",
            py_str_repr(script),
            py_str_repr(&arg)
        )
    );
    let text = std::fs::read_to_string(&pids).unwrap();
    let group: Vec<i32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(group.len(), 2, "{text}");
    // By the time the final item is sent the group is gone: no waiting here.
    for pid in &group {
        assert!(!running(*pid), "process {pid} survived the timeout");
    }
    // The final item has upstream's shape.
    let items = items(&sh, vec![json!("slow"), json!({}), json!(arg)])
        .await
        .unwrap();
    let last = items.last().unwrap();
    assert_eq!(last[0], json!(""));
    assert_eq!(last[2], json!(199));
    served.shutdown().await;
}

#[tokio::test]
async fn a_group_that_ignores_sigterm_gets_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = "trap '' TERM; sleep 300 & echo $! > \"$1.tmp\"; echo $$ >> \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; wait; wait";
    let (served, sh) = serve_shell(json!({
        "methods": {"stubborn": script},
        "timeout": 0.5,
    }))
    .await;
    let out = run(&sh, "stubborn", &[&pids.display().to_string()]).await;
    assert_eq!(out.code, TIMEOUT_CODE);
    assert!(
        out.stderr.ends_with("timed out after 0.5 seconds\n"),
        "{}",
        out.stderr
    );
    let group: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(group.len(), 2);
    wait_gone(&group).await;
    served.shutdown().await;
}

#[tokio::test]
async fn a_client_that_goes_away_takes_the_process_group_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = "sleep 300 & echo $! > \"$1.tmp\"; echo $$ >> \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; echo started; wait";
    let (served, sh) = serve_shell(json!({"methods": {"hang": script}})).await;
    let mut stream = Box::pin(
        sh.driver
            .streaming_call(
                "call_method",
                vec![json!("hang"), json!({}), json!(pids.display().to_string())],
            )
            .await
            .unwrap(),
    );
    let first = tokio::time::timeout(GUARD, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, json!(["started\n", "", null]));
    wait_for_file(&pids).await;
    let group: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(group.iter().all(|&p| running(p)));
    drop(stream);
    wait_gone(&group).await;
    served.shutdown().await;
}

#[tokio::test]
async fn ending_the_session_stops_running_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script =
        "sleep 300 & echo $! > \"$1.tmp\"; echo $$ >> \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; wait";
    let (served, sh) = serve_shell(json!({"methods": {"hang": script}})).await;
    let stream = sh
        .driver
        .streaming_call(
            "call_method",
            vec![json!("hang"), json!({}), json!(pids.display().to_string())],
        )
        .await
        .unwrap();
    wait_for_file(&pids).await;
    let group: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    served.shutdown().await;
    wait_gone(&group).await;
    drop(stream);
}

#[test]
fn config_errors_are_positioned_and_clear() {
    let err = build(json!({"methods": {"a": "true"}, "shel": ["sh"]})).unwrap_err();
    assert!(err.contains("unknown field `shel`"), "{err}");
    let err = build(json!({"methods": {"a": {"comand": "true"}}})).unwrap_err();
    assert!(
        err.contains("config.methods.a") && err.contains("unknown field `comand`"),
        "{err}"
    );
    let err = build(json!({"methods": {"a": 5}})).unwrap_err();
    assert!(
        err.contains("config.methods.a") && err.contains("a script, or a mapping"),
        "{err}"
    );
    let err = build(json!({"shell": ["sh", "-c"]})).unwrap_err();
    assert!(err.contains("missing field `methods`"), "{err}");
    let err = build(json!({"methods": {}, "timeout": "soon"})).unwrap_err();
    assert!(err.contains("config.timeout"), "{err}");
    let err = build(json!({"methods": {"a": {"timeout": -1}}})).unwrap_err();
    assert!(err.contains("must not be negative"), "{err}");
    assert!(build(json!({"methods": {}, "timeout": 2.5, "cwd": null})).is_ok());
}

/// `method` and `env` reach the driver as they arrive: a null env is no env, and a method that
/// is not a string is named in the driver's own message (not refused by argument decoding).
#[tokio::test]
async fn null_and_odd_arguments_get_the_drivers_messages() {
    let (served, sh) = serve_shell(json!({"methods": {"hi": "echo hi $1"}})).await;
    let out = items(&sh, vec![json!("hi"), json!(null), json!("x")])
        .await
        .unwrap();
    assert_eq!(out.last(), Some(&json!(["", "", 0])));
    assert_eq!(out[0], json!(["hi x\n", "", null]));
    let err = items(&sh, vec![json!(null), json!({})]).await.unwrap_err();
    assert_eq!(
        invalid_argument(err),
        "Method 'None' not found in available methods: ['hi']"
    );
    let err = items(&sh, vec![json!(1), json!({})]).await.unwrap_err();
    assert_eq!(
        invalid_argument(err),
        "Method '1.0' not found in available methods: ['hi']"
    );
    let err = items(&sh, vec![json!("hi"), json!({}), json!(2)])
        .await
        .unwrap_err();
    assert_eq!(
        invalid_argument(err),
        "All arguments must be strings, got <class 'float'>"
    );
    let err = items(&sh, vec![json!("hi")]).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("missing 1 required positional argument: 'env'"),
        "{err}"
    );
    served.shutdown().await;
}

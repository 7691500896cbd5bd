//! Config files are shared with upstream 0.9.0: what upstream writes (every field set) we read
//! the same way, and what we write upstream reads the same way. Both `jmp config … list`
//! outputs are compared on the same directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jumpstarter_config::{ClientConfig, ExporterConfig, GrpcOptionValue};
use jumpstarter_testkit::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(120);

fn jwt() -> String {
    use base64::Engine;
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.sig",
        e(r#"{"alg":"none"}"#),
        e(r#"{"sub":"c","exp":4102444800}"#)
    )
}

fn ca_b64() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode("-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n")
}

fn with_root<'a>(cmd: &'a mut Command, root: &Path) -> &'a mut Command {
    clean(cmd).env("JMP_CLIENT_CONFIG_HOME", root)
}

fn ours(root: &Path, args: &[&str]) -> String {
    ok(&run_timeout(
        with_root(Command::new(jmp()).args(args), root),
        T,
    ))
}

fn upstream(root: &Path, args: &[&str]) -> String {
    ok(&run_timeout(
        with_root(Command::new(upstream_jmp()).args(args), root),
        T,
    ))
}

fn python(root: &Path, code: &str) -> String {
    ok(&run_timeout(
        with_root(Command::new(py()).arg("-c").arg(code), root),
        T,
    ))
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// Both tools list the same directory identically (JSON, YAML, names, table).
fn same_lists(root: &Path, kind: &str) {
    let a = json(&ours(root, &["config", kind, "list", "-o", "json"]));
    let b = json(&upstream(root, &["config", kind, "list", "-o", "json"]));
    assert_eq!(a, b, "ours:\n{a:#}\nupstream:\n{b:#}");
    assert_eq!(
        ours(root, &["config", kind, "list", "-o", "name"]),
        upstream(root, &["config", kind, "list", "-o", "name"])
    );
    assert_eq!(
        ours(root, &["config", kind, "list"]),
        upstream(root, &["config", kind, "list"])
    );
}

const UPSTREAM_FULL_CLIENT: &str = r#"
import sys
from jumpstarter.config.client import ClientConfigV1Alpha1, ClientConfigV1Alpha1Drivers, ClientConfigV1Alpha1Lease
from jumpstarter.config.common import ObjectMeta
from jumpstarter.config.tls import TLSConfigV1Alpha1
from jumpstarter.config.shell import ShellConfigV1Alpha1
from jumpstarter.config.user import UserConfigV1Alpha1, UserConfigV1Alpha1Config
c = ClientConfigV1Alpha1(
    alias="full",
    metadata=ObjectMeta(namespace="lab-ns", name="full-client"),
    endpoint="ctl.lab.example:1443",
    tls=TLSConfigV1Alpha1(ca=sys.argv[1], insecure=True),
    token=sys.argv[2],
    refresh_token="refresh-xyz",
    grpcOptions={"grpc.keepalive_time_ms": 12345, "grpc.lb_policy_name": "pick_first", "grpc.default_authority": "on"},
    drivers=ClientConfigV1Alpha1Drivers(allow=["jumpstarter_driver_*", "vendor.*", "yes"], unsafe=True),
    shell=ShellConfigV1Alpha1(use_profiles=True),
    leases=ClientConfigV1Alpha1Lease(acquisition_timeout=60, retry_timeout=12.5),
)
ClientConfigV1Alpha1.save(c)
ClientConfigV1Alpha1.save(ClientConfigV1Alpha1(alias="min", metadata=ObjectMeta(namespace=None, name="m")), sys.argv[3])
UserConfigV1Alpha1.save(UserConfigV1Alpha1(config=UserConfigV1Alpha1Config(current_client=c)))
"#;

#[test]
fn upstream_written_client_configs_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cfg");
    let min_path = dir.path().join("min.yaml");
    let code = format!(
        "import sys; sys.argv = ['x', '{}', '{}', '{}']\n{UPSTREAM_FULL_CLIENT}",
        ca_b64(),
        jwt(),
        min_path.display()
    );
    python(&root, &code);
    same_lists(&root, "client");
    let c = ClientConfig::load(&root.join("clients/full.yaml")).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.metadata.namespace.as_deref(), Some("lab-ns"));
    assert!(c.tls.insecure);
    assert!(c.tls.ca_pem().unwrap().is_some());
    assert_eq!(c.refresh_token.as_deref(), Some("refresh-xyz"));
    assert_eq!(
        c.grpc_options["grpc.keepalive_time_ms"],
        GrpcOptionValue::Int(12345)
    );
    assert_eq!(
        c.grpc_options["grpc.default_authority"],
        GrpcOptionValue::Str("on".into())
    );
    assert_eq!(c.drivers.allow, ["jumpstarter_driver_*", "vendor.*", "yes"]);
    assert!(c.drivers.unsafe_ && c.shell.use_profiles);
    assert_eq!(
        (c.leases.acquisition_timeout, c.leases.retry_timeout),
        (60, 12.5)
    );
    assert_eq!(c.token_claims().unwrap()["sub"], "c");
    // Our writer produces the same text as upstream's for the same config.
    assert_eq!(
        c.to_yaml(),
        std::fs::read_to_string(root.join("clients/full.yaml")).unwrap()
    );
    // Upstream quirk: with a null namespace it writes a file without `metadata.namespace`,
    // which it then refuses to read ("Field required"). We read it, and write the key (null),
    // which upstream reads.
    let m = ClientConfig::load(&min_path).unwrap();
    assert_eq!(m.metadata.namespace, None);
    m.save(&root.join("clients/min.yaml")).unwrap();
    assert!(
        std::fs::read_to_string(root.join("clients/min.yaml"))
            .unwrap()
            .contains("  namespace: null\n")
    );
    same_lists(&root, "client");
}

#[test]
fn our_client_configs_read_the_same_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cfg");
    let tok = jwt();
    ours(
        &root,
        &[
            "config",
            "client",
            "create",
            "c1",
            "--namespace",
            "ns",
            "--name",
            "n1",
            "-e",
            "ctl.example:443",
            "-t",
            &tok,
            "-a",
            "",
        ],
    );
    ours(
        &root,
        &[
            "config",
            "client",
            "create",
            "c2",
            "--namespace",
            "ns",
            "--name",
            "n2",
            "-e",
            "ctl.example:1443",
            "-t",
            &tok,
            "-a",
            "a.*,on",
            "--unsafe",
            "-k",
            "--nointeractive",
        ],
    );
    // Every field, including those no command sets, through the library.
    let mut full = ClientConfig::new("full", Some("ns".into()), "off".into());
    full.endpoint = Some("1:30".into());
    full.token = Some(tok.clone());
    full.refresh_token = Some("0777".into());
    full.tls.ca = ca_b64();
    full.grpc_options
        .insert("grpc.keepalive_time_ms".into(), GrpcOptionValue::Int(5000));
    full.grpc_options.insert(
        "grpc.primary_user_agent".into(),
        GrpcOptionValue::Str("yes".into()),
    );
    full.drivers.allow = vec!["x.*".into()];
    full.shell.use_profiles = true;
    full.leases.acquisition_timeout = 30;
    full.leases.retry_timeout = 0.5;
    full.save(&root.join("clients/full.yaml")).unwrap();
    same_lists(&root, "client");
    // Upstream sees our current-client and the YAML 1.1 lookalikes as strings.
    let dump = python(
        &root,
        "from jumpstarter.config.user import UserConfigV1Alpha1 as U\n\
         from jumpstarter.config.client import ClientConfigV1Alpha1 as C\n\
         print(U.load().config.current_client.alias)\n\
         c = C.load('full'); print(repr((c.metadata.name, c.endpoint, c.refresh_token, c.grpcOptions['grpc.primary_user_agent'])))",
    );
    assert_eq!(dump, "c1\n('off', '1:30', '0777', 'yes')\n");
    // And upstream's `use` reads what we wrote.
    upstream(&root, &["config", "client", "use", "full"]);
    let listed = json(&ours(&root, &["config", "client", "list", "-o", "json"]));
    assert_eq!(listed["currentConfig"], "full");
}

const UPSTREAM_FULL_EXPORTER: &str = r#"
import sys
from jumpstarter.config.exporter import ExporterConfigV1Alpha1
c = ExporterConfigV1Alpha1.model_validate({
    "apiVersion": "jumpstarter.dev/v1alpha1", "kind": "ExporterConfig",
    "metadata": {"namespace": "lab", "name": "exp-1"},
    "endpoint": "ctl:443", "token": "opaque-token",
    "tls": {"ca": sys.argv[1], "insecure": True},
    "grpcOptions": {"grpc.keepalive_time_ms": 1000, "grpc.lb_policy_name": "pick_first"},
    "description": "A bench",
    "export": {
        "power": {"type": "jumpstarter_driver_power.driver.MockPower", "description": "Power",
                  "methods_description": {"on": "Turn on"}, "config": {"log_level": "off", "n": 8, "f": 1.5, "l": [1, "yes"]}},
        "group": {"children": {"serial": {"type": "jumpstarter_driver_pyserial.driver.PySerial", "config": {"url": "loop://"}}}},
        "alias": {"ref": "power"},
    },
    "hooks": {"beforeLease": {"script": "echo hi\nj power on\n", "exec": "/bin/bash", "timeout": 30, "onFailure": "endLease"},
              "afterLease": {"script": "echo bye"}},
    "failureDetection": {"maxRapidFailures": 3, "rapidFailureWindow": 10},
})
c.alias = "full"
print(ExporterConfigV1Alpha1.save(c))
"#;

fn upstream_dump_exporter(root: &Path, path: &Path) -> Value {
    json(&python(
        root,
        &format!(
            "import json, pathlib\nfrom jumpstarter.config.exporter import ExporterConfigV1Alpha1 as E\n\
             c = E.load_path(pathlib.Path('{}'))\nprint(json.dumps(c.model_dump(mode='json', by_alias=True, exclude={{'path', 'alias'}})))",
            path.display()
        ),
    ))
}

#[test]
fn exporter_configs_round_trip_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cfg");
    let code = format!(
        "import sys; sys.argv = ['x', '{}']\n{UPSTREAM_FULL_EXPORTER}",
        ca_b64()
    );
    let written = PathBuf::from(python(&root, &code).trim());
    // We read upstream's file with every field...
    let c = ExporterConfig::load(&written).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.metadata.name, "exp-1");
    assert_eq!(c.description.as_deref(), Some("A bench"));
    assert_eq!(c.export.len(), 3);
    let hook = c.hooks.before_lease.as_ref().unwrap();
    assert_eq!(
        (hook.exec.as_deref(), hook.timeout),
        (Some("/bin/bash"), 30)
    );
    assert_eq!(hook.script, "echo hi\nj power on\n");
    assert_eq!(c.failure_detection.max_rapid_failures, 3);
    assert!(c.tls.insecure && c.tls.ca_pem().unwrap().is_some());
    // ...we write it back, and upstream reads our file as the same config.
    let ours_path = root.join("exporters/ours.yaml");
    c.save(&ours_path).unwrap();
    assert_eq!(
        upstream_dump_exporter(&root, &ours_path),
        upstream_dump_exporter(&root, &written)
    );
    // Both list the directory the same way (names and table; JSON differs only in the
    // defaults pydantic spells out inside driver nodes).
    assert_eq!(
        ours(&root, &["config", "exporter", "list", "-o", "name"]),
        upstream(&root, &["config", "exporter", "list", "-o", "name"])
    );
    assert_eq!(
        ours(&root, &["config", "exporter", "list"]),
        upstream(&root, &["config", "exporter", "list"])
    );
    // An exporter we create is one upstream reads and lists identically.
    let r2 = dir.path().join("cfg2");
    ours(
        &r2,
        &[
            "config",
            "exporter",
            "create",
            "e1",
            "--namespace",
            "ns",
            "--name",
            "en",
            "--endpoint",
            "ep:1",
            "--token",
            "t",
            "-k",
            "--nointeractive",
        ],
    );
    same_lists(&r2, "exporter");
}

#[test]
fn completion_protocol_answers_like_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cfg");
    for (mode, words, cword) in [
        ("bash_complete", "jmp conf", "1"),
        ("bash_complete", "jmp config exporter ", "3"),
        ("bash_complete", "jmp config client list -o ", "5"),
        ("zsh_complete", "jmp config exp", "2"),
    ] {
        let run = |exe: PathBuf| {
            ok(&run_timeout(
                with_root(&mut Command::new(exe), &root)
                    .env("_JMP_COMPLETE", mode)
                    .env("COMP_WORDS", words)
                    .env("COMP_CWORD", cword),
                T,
            ))
        };
        assert_eq!(run(jmp()), run(upstream_jmp()), "{mode} {words:?}");
    }
}

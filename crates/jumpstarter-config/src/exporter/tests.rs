//! Tests of loading exporter configs.

use std::path::Path;

use super::*;
use crate::error::ConfigError;

fn parse(text: &str) -> Result<ExporterConfig, ConfigError> {
    ExporterConfig::parse(text, Path::new("e.yaml"))
}

const SEED: &str = r#"apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata:
  namespace: default
  name: demo
endpoint: grpc.jumpstarter.example.com:443
token: xxxxx
grpcConfig:
  grpc.keepalive_time_ms: 20000
export:
  power:
    type: jumpstarter_driver_yepkit.driver.Ykush
    config:
      serial: "YK25838"
      port: "1"
  serial:
    type: "jumpstarter_driver_pyserial.driver.PySerial"
    config:
      url: "/dev/ttyUSB0"
      baudrate: 115200
  custom:
    type: "vendorpackage.CustomDriver"
    config:
      hello: "world"
  reference:
    ref: "power"
"#;

#[test]
fn the_seed_example_loads() {
    let c = parse(SEED).unwrap();
    assert_eq!(c.metadata.name, "demo");
    assert_eq!(c.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        c.endpoint.as_deref(),
        Some("grpc.jumpstarter.example.com:443")
    );
    assert_eq!(
        c.grpc_config.get("grpc.keepalive_time_ms"),
        Some(&GrpcOptionValue::Int(20000))
    );
    let names: Vec<_> = c.export.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["power", "serial", "custom", "reference"]);
    match &c.export[1].node {
        DriverNode::Driver {
            type_name, config, ..
        } => {
            assert_eq!(type_name, "jumpstarter_driver_pyserial.driver.PySerial");
            assert_eq!(config.to_json()["baudrate"], 115200);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&c.export[3].node, DriverNode::Proxy { target, .. } if target == "power"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn every_field() {
    let c = parse(
        r#"apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata: {namespace: lab, name: e1}
endpoint: ctl:1443
token: tok
tls: {ca: "Q0E=", insecure: true}
grpcOptions: {grpc.keepalive_time_ms: 1000, grpc.lb_policy_name: pick_first}
description: Demo exporter
motd: hello
export:
  power:
    type: jumpstarter_driver_power.driver.MockPower
    description: Main PSU
    methods_description: {"on": Turn it on}
  group:
    description: A group
    children:
      p2: {type: jumpstarter_driver_power.driver.SyncMockPower}
  alias: {ref: group.p2}
hooks:
  beforeLease: {script: "j power on", timeout: 5, onFailure: endLease}
  afterLease: {script: /opt/after.sh, exec: /bin/bash}
failureDetection: {maxRapidFailures: 3, rapidFailureWindow: 10}
"#,
    )
    .unwrap();
    assert!(c.tls.insecure);
    assert_eq!(c.tls.ca, "Q0E=");
    assert_eq!(c.description.as_deref(), Some("Demo exporter"));
    assert_eq!(c.motd.as_deref(), Some("hello"));
    let before = c.hooks.before_lease.as_ref().unwrap();
    assert_eq!(
        (before.timeout, before.on_failure),
        (5, HookFailure::EndLease)
    );
    let after = c.hooks.after_lease.as_ref().unwrap();
    assert_eq!(
        (after.timeout, after.on_failure, after.exec.as_deref()),
        (120, HookFailure::Warn, Some("/bin/bash"))
    );
    assert_eq!(
        c.failure_detection,
        FailureDetection {
            max_rapid_failures: 3,
            rapid_failure_window: 10
        }
    );
    let paths: Vec<_> = c.nodes().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["power", "group", "group.p2", "alias"]);
    let (resolved, _) = c.resolve("alias").unwrap();
    assert_eq!(resolved, "group.p2");
    match &c.export[0].node {
        DriverNode::Driver {
            methods_description,
            description,
            ..
        } => {
            assert_eq!(
                methods_description.get("on").map(String::as_str),
                Some("Turn it on")
            );
            assert_eq!(description.as_deref(), Some("Main PSU"));
        }
        other => panic!("{other:?}"),
    }
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let err = parse("metadata:\n  name: x\nexport:\n  power:\n    type: a.B\n   config: {}\n")
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("e.yaml:6:"), "{text}");
}

#[test]
fn wrong_api_version_or_kind() {
    let err = parse("apiVersion: v2\nkind: ExporterConfig\nmetadata: {name: x}\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("e.yaml:1:13: apiVersion must be 'jumpstarter.dev/v1alpha1'"),
        "{err}"
    );
    let err = parse("kind: ClientConfig\nmetadata: {name: x}\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kind must be 'ExporterConfig', not 'ClientConfig'"),
        "{err}"
    );
}

#[test]
fn empty_file_and_missing_metadata() {
    assert!(
        parse("")
            .unwrap_err()
            .to_string()
            .contains("the file is empty")
    );
    assert!(
        parse("export: {}\n")
            .unwrap_err()
            .to_string()
            .contains("metadata is required")
    );
    assert!(
        parse("metadata: {namespace: x}\n")
            .unwrap_err()
            .to_string()
            .contains("metadata.name is required")
    );
}

#[test]
fn dangling_and_cyclic_refs() {
    let err = parse("metadata: {name: x}\nexport:\n  p: {type: a.B}\n  r: {ref: nope}\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "e.yaml:4:12: `r` references nonexistent driver `nope` (drivers: p)"
    );
    let err = parse("metadata: {name: x}\nexport:\n  a: {ref: b}\n  b: {ref: a}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("reference cycle"), "{err}");
    let err = parse("metadata: {name: x}\nexport:\n  g:\n    children:\n      r: {ref: g}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("own ancestor"), "{err}");
    let err = parse("metadata: {name: x}\nexport:\n  r: {ref: r}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("cycle"), "{err}");
}

#[test]
fn proxy_type_with_config_ref() {
    let c = parse(
            "metadata: {name: x}\nexport:\n  p: {type: a.B}\n  r:\n    type: jumpstarter_driver_composite.driver.Proxy\n    config: {ref: p}\n",
        )
        .unwrap();
    assert!(matches!(&c.export[1].node, DriverNode::Proxy { target, .. } if target == "p"));
}

#[test]
fn bad_nodes_are_errors_not_empty_composites() {
    let err = parse("metadata: {name: x}\nexport:\n  p: {config: {a: 1}}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("has `config` but no `type`"), "{err}");
    let err = parse("metadata: {name: x}\nexport:\n  p: [1]\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("e.yaml:3:6:"), "{err}");
    let err = parse("metadata: {name: x}\nexport:\n  p: {type: MockPower}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a class path"), "{err}");
    let err = parse("metadata: {name: x}\nexport:\n  p: {type: a.B, config: 5}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("config must be a mapping"), "{err}");
    let err = parse("metadata: {name: x}\nexport:\n  p: {type: a.B, ref: q}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("both `type` and `ref`"), "{err}");
}

#[test]
fn hook_validation() {
    let err = parse("metadata: {name: x}\nhooks:\n  beforeLease: {timeout: 3}\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hooks.beforeLease.script is required"),
        "{err}"
    );
    let err = parse("metadata: {name: x}\nhooks:\n  afterLease: {script: x, onFailure: panic}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be one of warn, endLease, exit"), "{err}");
    let c = parse("metadata: {name: x}\nhooks:\n  before_lease: {script: x, on_failure: exit}\n")
        .unwrap();
    assert_eq!(c.hooks.before_lease.unwrap().on_failure, HookFailure::Exit);
}

#[test]
fn unknown_keys_and_yaml11_keys_warn() {
    let c = parse(
            "metadata: {name: x}\ntls: {bogus: 1}\nexport:\n  p:\n    type: a.B\n    vendor_note: {}\n    methods_description:\n      on: Turn on\n",
        )
        .unwrap();
    let msgs: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("e.yaml:2:7: unknown key `bogus` in tls is ignored")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("unknown key `vendor_note` in export.p is ignored")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("e.yaml:8:7:") && m.contains("boolean")),
        "{msgs:?}"
    );
    match &c.export[0].node {
        DriverNode::Driver {
            methods_description,
            ..
        } => {
            assert_eq!(
                methods_description.get("on").map(String::as_str),
                Some("Turn on")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn near_misses_and_stray_top_level_keys_are_errors() {
    let err = |text: &str| parse(text).unwrap_err().to_string();
    // A misspelt `export:` (upstream ignores it and serves no drivers).
    assert_eq!(
        err("metadata: {name: x}\nexports:\n  power: {type: a.B}\n"),
        "e.yaml:2:1: unknown key `exports` in the ExporterConfig; did you mean `export`?"
    );
    // Any other top-level key: the list of valid ones.
    let e = err("metadata: {name: x}\npower: {type: a.B}\n");
    assert!(
        e.starts_with("e.yaml:2:1: unknown key `power` in the ExporterConfig; the keys here are: ")
            && e.contains("export,"),
        "{e}"
    );
    // `typ:` would otherwise make an empty composite.
    assert_eq!(
        err("metadata: {name: x}\nexport:\n  power:\n    typ: a.B\n"),
        "e.yaml:4:5: unknown key `typ` in export.power; did you mean `type`?"
    );
    assert_eq!(
        err("metadata: {name: x}\nexport:\n  p:\n    type: a.B\n    confg: {}\n"),
        "e.yaml:5:5: unknown key `confg` in export.p; did you mean `config`?"
    );
    assert_eq!(
        err("metadata: {name: x}\nhooks:\n  beforelease: {script: x}\n"),
        "e.yaml:3:3: unknown key `beforelease` in hooks; did you mean `beforeLease`?"
    );
    assert_eq!(
        err("metadata: {name: x}\ntls: {insecur: true}\n"),
        "e.yaml:2:7: unknown key `insecur` in tls; did you mean `insecure`?"
    );
    // Upstream's ObjectMeta refuses unknown keys.
    assert!(
        err("metadata: {name: x, labels: {a: b}}\n")
            .starts_with("e.yaml:1:21: unknown key `labels` in metadata; the keys here are: "),
    );
    // A node with config but no type.
    assert!(
        err("metadata: {name: x}\nexport:\n  p:\n    config: {a: 1}\n")
            .contains("export.p has `config` but no `type`")
    );
    // A top-level key that holds anchors for reuse is fine (a common way to share settings).
    let c = parse(
        "metadata: {name: x}\ndefaults: &d {type: a.B, config: {port: 1}}\nexport:\n  p: *d\n",
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Everything upstream writes still loads.
    parse(
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata:\n  namespace: d\n  \
         name: x\nendpoint: e:1\ntls:\n  ca: ''\n  insecure: false\ntoken: t\ngrpcOptions: {}\n\
         description: null\nexport: {}\nhooks:\n  beforeLease: null\n  afterLease: null\n\
         failureDetection:\n  maxRapidFailures: 5\n  rapidFailureWindow: 60\nalias: x\npath: p\n",
    )
    .unwrap();
}

#[test]
fn tokens_must_look_like_jwts_for_controller_mode() {
    let c = parse("metadata: {name: rig1}\nendpoint: e:1\ntoken: xxxxx\n").unwrap();
    let e = c.check_token().unwrap_err().to_string();
    assert!(
        e.starts_with("e.yaml:3:8: the token is not a JWT (")
            && e.contains("`jmp-controller admin config exporter rig1`"),
        "{e}"
    );
    let mut c = c;
    c.apply_env(&crate::Env::from_pairs([("JMP_TOKEN", "a.b")]));
    let e = c.check_token().unwrap_err().to_string();
    assert!(e.starts_with("$JMP_TOKEN: the token is not a JWT ("), "{e}");
    // header.payload.signature, the payload a JSON object.
    c.token = Some("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".into());
    c.check_token().unwrap();
    c.token = None;
    c.check_token().unwrap();
}

#[test]
fn empty_nodes_are_composites() {
    let c = parse("metadata: {name: x}\nexport:\n  a:\n  b: {}\n").unwrap();
    assert!(matches!(c.export[0].node, DriverNode::Composite { .. }));
    assert!(matches!(c.export[1].node, DriverNode::Composite { .. }));
}

//! Hostile configuration files: alias bombs, deep nesting, huge files, long `ref:` chains, and
//! property tests on arbitrary and mutated input. Every test name contains `hostile`, so a long
//! run is `PROPTEST_CASES=100000 cargo test -p jumpstarter-config hostile`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use jumpstarter_config::exporter::DriverNode;
use jumpstarter_config::yaml::{self, ParseLimits};
use jumpstarter_config::{ClientConfig, ConfigError, ExporterConfig, UserConfig};
use proptest::prelude::*;

/// Runs `f` on a thread of its own and fails if it takes longer than `limit` (the thread is
/// left behind; the test binary ends it when it exits).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("bounded".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(e) => panic!("did not finish within {limit:?}: {e}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The classic "billion laughs": ten times ten times ... nine levels, about 650 bytes,
/// 10^9 strings when expanded.
fn alias_bomb(prefix: &str) -> String {
    let mut text = String::from(prefix);
    text.push_str("a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for level in 1..=9 {
        let prev = level - 1;
        let items = vec![format!("*a{prev}"); 10].join(",");
        writeln!(text, "a{level}: &a{level} [{items}]").unwrap();
    }
    text
}

/// One line, `FILE:LINE:COL: message`, naming the limit's variable.
fn assert_positioned(err: &ConfigError, file: &Path, var: &str) -> (usize, usize) {
    let text = err.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(text.contains(var), "names {var}: {text}");
    let at = err
        .source_pos()
        .unwrap_or_else(|| panic!("positioned: {text}"));
    assert_eq!(&*at.file, file, "{text}");
    assert!(
        text.starts_with(&format!("{}:{}: ", file.display(), at.pos)),
        "{text}"
    );
    (at.pos.line, at.pos.col)
}

#[test]
fn hostile_alias_bomb_is_refused_quickly_by_every_config_kind() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = alias_bomb(
        "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {name: x}\n",
    );
    assert!(exporter.len() < 800, "{}", exporter.len());
    let files = [
        ("exporter.yaml", exporter),
        (
            "client.yaml",
            alias_bomb(
                "apiVersion: jumpstarter.dev/v1alpha1\nkind: ClientConfig\nmetadata: {name: x}\n",
            ),
        ),
        ("config.yaml", alias_bomb("kind: UserConfig\n")),
    ];
    for (name, text) in files {
        let path = write(dir.path(), name, &text);
        let p = path.clone();
        let started = Instant::now();
        let err = within(Duration::from_secs(20), move || match name {
            "exporter.yaml" => ExporterConfig::load(&p).map(|_| ()),
            "client.yaml" => ClientConfig::load(&p).map(|_| ()),
            _ => UserConfig::load(&p).map(|_| ()),
        })
        .expect_err("the bomb must not load");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let (line, col) = assert_positioned(&err, &path, "JMP_YAML_ALIAS_NODES");
        // The alias that went over the budget: on one of the aliasing lines, at a `*`.
        let bad_line = text.lines().nth(line - 1).unwrap();
        assert!(bad_line.starts_with('a'), "{err}");
        assert_eq!(bad_line.as_bytes()[col - 1], b'*', "{err}");
        assert!(err.to_string().contains("limit reached: 100000 "), "{err}");
    }
}

#[test]
fn hostile_alias_budget_follows_its_limits() {
    // Long strings copied by aliases are bounded by bytes, not only by nodes.
    let long = "x".repeat(1 << 20);
    let mut text = format!("s: &s \"{long}\"\nl: [");
    text.push_str(&vec!["*s"; 40].join(","));
    text.push_str("]\n");
    let err = yaml::parse(&text).unwrap_err();
    assert!(err.message.contains("JMP_YAML_ALIAS_BYTES"), "{err:?}");
    assert_eq!(err.pos.line, 2);
    // The same document within a larger budget loads, and the copies are real.
    let roomy = ParseLimits {
        alias_bytes: 64 << 20,
        ..ParseLimits::default()
    };
    let doc = yaml::parse_with(&text, roomy).unwrap();
    let root = doc.root.unwrap();
    let l = root.get("l").unwrap().to_json();
    assert_eq!(l.as_array().unwrap().len(), 40);
    assert_eq!(l[39].as_str().unwrap().len(), 1 << 20);
    // A small node budget refuses what the default allows.
    let small = ParseLimits {
        alias_nodes: 8,
        ..ParseLimits::default()
    };
    let text = "a: &a [1, 2]\nb: [*a, *a]\n";
    assert!(yaml::parse(text).is_ok());
    let err = yaml::parse_with(text, small).unwrap_err();
    assert!(
        err.message.contains("limit reached: 8 YAML nodes"),
        "{err:?}"
    );
    assert_eq!((err.pos.line, err.pos.col), (2, 9), "{err:?}");
}

#[test]
fn hostile_ordinary_anchors_and_merge_keys_still_load() {
    let mut text = String::from(
        "metadata: {name: x}\ncommon: &common {host: h, port: 1, labels: &labels {a: b}}\nexport:\n",
    );
    for i in 0..200 {
        writeln!(
            text,
            "  d{i}: {{type: a.B, config: {{<<: *common, port: {i}, labels: *labels}}}}"
        )
        .unwrap();
    }
    let cfg = ExporterConfig::parse(&text, Path::new("e.yaml")).unwrap();
    assert_eq!(cfg.export.len(), 200);
    let DriverNode::Driver { config, .. } = &cfg.export[7].node else {
        panic!("a driver")
    };
    assert_eq!(
        config.to_json(),
        serde_json::json!({"host": "h", "port": 7, "labels": {"a": "b"}})
    );
}

#[test]
fn hostile_merge_keys_order_and_precedence_like_pyyaml() {
    // PyYAML: merged entries come first, the mapping's own keys win, an earlier mapping of a
    // merge list wins over a later one, a repeated key keeps its first place.
    let doc = yaml::parse(
        "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nm:\n  w: 0\n  <<: [*a, *b]\n  x: 9\n  w: 5\n",
    )
    .unwrap();
    let m = doc.root.unwrap().get("m").unwrap().to_json();
    let pairs: Vec<(String, i64)> = m
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
        .collect();
    let want: Vec<(String, i64)> = [("y", 1), ("z", 2), ("x", 9), ("w", 5)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(pairs, want);
    assert_eq!(doc.warnings.len(), 1, "{:?}", doc.warnings);
}

#[test]
fn hostile_deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = |text: String| {
        let started = Instant::now();
        let err = within(Duration::from_secs(20), move || {
            ExporterConfig::parse(&text, Path::new("deep.yaml")).map(|_| ())
        })
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        err
    };
    // Block nesting (`- - - ...` is a list in a list in a list): our limit, at the collection
    // one level past it.
    let err = deep(format!("{}1\n", "- ".repeat(100_000)));
    assert_eq!(
        assert_positioned(&err, Path::new("deep.yaml"), "JMP_YAML_MAX_DEPTH"),
        (1, 2 * 128 + 1),
        "{err}"
    );
    let mut text = String::new();
    for level in 0..200 {
        writeln!(text, "{}k{level}:", "  ".repeat(level)).unwrap();
    }
    let err = deep(text);
    assert_eq!(
        assert_positioned(&err, Path::new("deep.yaml"), "JMP_YAML_MAX_DEPTH"),
        (129, 2 * 128 + 1),
        "{err}"
    );
    // Flow nesting: the scanner's own bound (255 levels) is met first, while it looks ahead.
    for open in ["[", "{a: ", "[{a: "] {
        let text = format!("{}1", open.repeat(100_000));
        let err = deep(text);
        let message = err.to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.starts_with("deep.yaml:1:") && message.contains("nested too deep"),
            "{message}"
        );
    }
    // Flow inside block nesting: our limit again.
    let err = deep(format!("{}{}1", "- ".repeat(100), "[".repeat(100)));
    assert_eq!(
        assert_positioned(&err, Path::new("deep.yaml"), "JMP_YAML_MAX_DEPTH"),
        (1, 200 + 28 + 1),
        "{err}"
    );
    // Exactly at the limit everything works, including walking and dropping the tree on a
    // test thread's small stack.
    let text = format!("{}1{}", "[".repeat(128), "]".repeat(128));
    let root = yaml::parse(&text).unwrap().root.unwrap();
    let json = root.to_json();
    assert_eq!(json.to_string().len(), text.len());
    let text = format!(
        "metadata: {{name: x}}\nexport:\n  d: {{type: a.B, config: {{deep: {}1{}}}}}\n",
        "[".repeat(124),
        "]".repeat(124)
    );
    let cfg = ExporterConfig::parse(&text, Path::new("e.yaml")).unwrap();
    let DriverNode::Driver { config, .. } = &cfg.export[0].node else {
        panic!("a driver")
    };
    let _: serde_json::Value = config.parse().unwrap();
}

#[test]
fn hostile_aliases_cannot_nest_past_the_depth_limit() {
    // Each anchor holds the previous one 100 levels down: depth adds up through aliases.
    let mut text = String::from("a0: &a0 1\n");
    for i in 1..=20 {
        writeln!(
            text,
            "a{i}: &a{i} {}*a{}{}",
            "[".repeat(100),
            i - 1,
            "]".repeat(100)
        )
        .unwrap();
    }
    let err = yaml::parse(&text).unwrap_err();
    assert!(err.message.contains("JMP_YAML_MAX_DEPTH"), "{err:?}");
    assert_eq!(err.pos.line, 3, "{err:?}");
    assert_eq!(err.pos.col, "a2: &a2 ".len() + 101, "{err:?}");
}

fn big_exporter(drivers: usize) -> String {
    let mut text = String::with_capacity(drivers * 60);
    text.push_str("apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {name: big}\nexport:\n");
    for i in 0..drivers {
        writeln!(
            text,
            "  d{i}:\n    type: jumpstarter_driver_power.driver.MockPower\n    config: {{n: {i}}}"
        )
        .unwrap();
    }
    text
}

#[test]
fn hostile_forty_thousand_drivers_load_in_linear_time() {
    let text = big_exporter(40_000);
    let cfg = within(Duration::from_secs(20), move || {
        ExporterConfig::parse(&text, Path::new("big.yaml")).unwrap()
    });
    assert_eq!(cfg.export.len(), 40_000);
    assert_eq!(cfg.export[39_999].name, "d39999");
    assert!(cfg.warnings.is_empty());
    let index = cfg.index().unwrap();
    assert_eq!(index.nodes().len(), 40_000);
}

#[test]
fn hostile_forty_thousand_keys_load_in_linear_time() {
    // In a driver's config, in `tls:` (unknown keys: warnings), and repeated keys.
    let mut text = String::from("metadata: {name: x}\nexport:\n  d:\n    type: a.B\n    config:\n");
    for i in 0..40_000 {
        writeln!(text, "      k{i}: {i}").unwrap();
    }
    text.push_str("tls:\n");
    for i in 0..40_000 {
        writeln!(text, "  unknown{i}: {i}").unwrap();
    }
    for i in 0..20_000 {
        writeln!(text, "  dup: {i}").unwrap();
    }
    let cfg = within(Duration::from_secs(20), move || {
        ExporterConfig::parse(&text, Path::new("keys.yaml")).unwrap()
    });
    let DriverNode::Driver { config, .. } = &cfg.export[0].node else {
        panic!("a driver")
    };
    assert_eq!(config.keys().len(), 40_000);
    assert_eq!(config.to_json()["k39999"], 39_999);
    // 40,000 unknown keys + `dup` once, 19,999 duplicates.
    assert_eq!(cfg.warnings.len(), 40_001 + 19_999);
}

#[test]
fn hostile_forty_thousand_refs_resolve_in_linear_time() {
    // One driver, then 40,000 refs each naming the one before: a chain 40,000 long.
    let mut text = String::from("metadata: {name: x}\nexport:\n  d: {type: a.B}\n  r0: {ref: d}\n");
    for i in 1..40_000 {
        writeln!(text, "  r{i}: {{ref: r{}}}", i - 1).unwrap();
    }
    let cfg = within(Duration::from_secs(20), move || {
        ExporterConfig::parse(&text, Path::new("refs.yaml")).unwrap()
    });
    let index = cfg.index().unwrap();
    for path in ["r0", "r20000", "r39999"] {
        let (target, _) = index.resolve(path).unwrap();
        assert_eq!(target, "d");
    }
}

fn ref_chain(len: usize, end: &str) -> String {
    let mut text = String::from("metadata: {name: x}\nexport:\n  d: {type: a.B}\n");
    for i in 0..len {
        let target = if i + 1 == len {
            end.to_owned()
        } else {
            format!("r{}", i + 1)
        };
        writeln!(text, "  r{i}: {{ref: {target}}}").unwrap();
    }
    text
}

#[test]
fn hostile_a_chain_of_a_thousand_refs_resolves_or_fails_accurately() {
    // r0 -> r1 -> ... -> r999 -> d
    let cfg = ExporterConfig::parse(&ref_chain(1000, "d"), Path::new("c.yaml")).unwrap();
    assert_eq!(cfg.index().unwrap().resolve("r0").unwrap().0, "d");
    assert_eq!(cfg.resolve("r0").unwrap().0, "d");
    // r999 -> r0: a cycle of a thousand, named as one, the message kept short.
    let err = ExporterConfig::parse(&ref_chain(1000, "r0"), Path::new("c.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("c.yaml:4:13: `r0` is part of a reference cycle: r0 -> r1 -> r2 -> r3 -> ... (993 more) ... -> r997 -> r998 -> r999 -> r0"),
        "{err}"
    );
    assert!(err.len() < 200, "{err}");
    // r999 -> nowhere: the ref that names the missing driver is the one reported.
    let err = ExporterConfig::parse(&ref_chain(1000, "nope"), Path::new("c.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("c.yaml:1003:15: `r999` references nonexistent driver `nope` (the end of the chain of references r0 -> "),
        "{err}"
    );
    assert!(err.ends_with("(drivers: d)"), "{err}");
    // A chain that runs into a cycle it is not part of.
    let err = ExporterConfig::parse(
        "metadata: {name: x}\nexport:\n  s: {ref: a}\n  a: {ref: b}\n  b: {ref: a}\n",
        Path::new("c.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "c.yaml:3:12: `s` leads into a reference cycle: s -> a -> b -> a"
    );
}

#[test]
fn hostile_a_missing_ref_among_many_drivers_gives_a_short_message() {
    let mut text = big_exporter(5_000);
    text.push_str("  r: {ref: nope}\n");
    let err = ExporterConfig::parse(&text, Path::new("m.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`r` references nonexistent driver `nope`"),
        "{err}"
    );
    assert!(err.ends_with(", d19, and 4980 more)"), "{err}");
}

// ---- property tests -------------------------------------------------------------------------

const EXPORTER: &str = r#"apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata:
  namespace: default
  name: demo
endpoint: grpc.example.com:443
token: "tok"
tls: {ca: "", insecure: false}
grpcConfig:
  grpc.keepalive_time_ms: 20000
base: &base {host: 127.0.0.1, port: 5000}
export:
  power:
    type: jumpstarter_driver_power.driver.MockPower
    description: PSU
    methods_description: {"on": Power on}
    config: {<<: *base, labels: {a: b}, log_level: DEBUG}
  group:
    children:
      net: {type: jumpstarter_driver_network.driver.TcpNetwork, config: *base}
      alias: {ref: power}
  top: {ref: group.net}
hooks:
  beforeLease: {script: "echo hi", timeout: 5, onFailure: endLease}
failureDetection: {maxRapidFailures: 3, rapidFailureWindow: 10}
"#;

const CLIENT: &str = r#"apiVersion: jumpstarter.dev/v1alpha1
kind: ClientConfig
metadata: {namespace: default, name: c1}
endpoint: grpc.example.com:443
token: tok
tls: {ca: "", insecure: true}
grpcOptions: {grpc.lb_policy_name: pick_first}
drivers: {allow: [jumpstarter_driver_power], unsafe: false}
shell: {use_profiles: false}
leases: {acquisition_timeout: 60}
"#;

const USER: &str =
    "apiVersion: jumpstarter.dev/v1alpha1\nkind: UserConfig\nconfig:\n  current-client: c1\n";

/// Characters that matter to YAML, for mutations.
const SIGNIFICANT: &[&str] = &[
    "&a ",
    "*a",
    "*base",
    "<<: ",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ": ",
    "- ",
    "!!",
    "!x ",
    "'",
    "\"",
    "#",
    "|",
    ">",
    "\n",
    "  ",
    "\t",
    "?",
    "%",
    "@",
    "`",
    "---\n",
    "...\n",
    "ref: power",
    "\\",
    "\u{feff}",
    "\0",
    "é",
    "0x",
    "1e3",
    "on",
];

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, String),
    Delete(usize, usize),
    Replace(usize, String),
    Duplicate(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let piece = prop_oneof![
        prop::sample::select(SIGNIFICANT).prop_map(str::to_owned),
        "\\PC{1,4}",
    ];
    prop_oneof![
        (any::<usize>(), piece.clone()).prop_map(|(at, s)| Mutation::Insert(at, s)),
        (any::<usize>(), 1usize..12).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), piece).prop_map(|(at, s)| Mutation::Replace(at, s)),
        (any::<usize>(), 1usize..40, 1usize..6)
            .prop_map(|(at, n, k)| Mutation::Duplicate(at, n, k)),
    ]
}

/// Applies mutations at character boundaries (positions are taken modulo the length).
fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for m in mutations {
        let len = chars.len().max(1);
        match m {
            Mutation::Insert(at, s) => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            Mutation::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            Mutation::Replace(at, s) => {
                let at = at % len;
                let end = (at + s.chars().count()).min(chars.len());
                chars.splice(at.min(end)..end, s.chars());
            }
            Mutation::Duplicate(at, n, k) => {
                let at = at % len;
                let end = (at + n).min(chars.len());
                let piece: Vec<char> = chars[at.min(end)..end].to_vec();
                for _ in 0..*k {
                    chars.splice(end..end, piece.iter().copied());
                }
            }
        }
    }
    chars.into_iter().collect()
}

/// A load either succeeds or fails with an error pointing into the text.
fn loads_or_points_into(
    result: Result<(), ConfigError>,
    text: &str,
    file: &str,
) -> Result<(), TestCaseError> {
    if let Err(err) = result {
        let message = err.to_string();
        let Some(at) = err.source_pos() else {
            return Err(TestCaseError::fail(format!("no position: {message}")));
        };
        prop_assert_eq!(&*at.file, Path::new(file), "{}", message);
        let lines = text.split('\n').count();
        prop_assert!(
            at.pos.line >= 1 && at.pos.line <= lines + 1,
            "line {} of {}: {}",
            at.pos.line,
            lines,
            message
        );
        prop_assert!(at.pos.col >= 1, "{}", message);
        prop_assert!(
            message.starts_with(&format!("{file}:{}:{}: ", at.pos.line, at.pos.col)),
            "{}",
            message
        );
    }
    Ok(())
}

/// YAML-ish text built from the pieces that matter, in any order.
fn yamlish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(SIGNIFICANT).prop_map(str::to_owned),
            "[a-z]{1,5}",
            "[0-9.:_+-]{1,6}",
            Just("\n  ".to_owned()),
            Just("&b [*a, *a, *a, *a]\n".to_owned()),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn hostile_arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let result = ExporterConfig::parse(&text, Path::new("p.yaml")).map(|_| ());
        loads_or_points_into(result, &text, "p.yaml")?;
        if let Err(e) = yaml::parse(&text) {
            prop_assert!(e.pos.line >= 1 && e.pos.col >= 1);
        }
    }

    #[test]
    fn hostile_yamlish_text_never_panics(text in yamlish()) {
        match yaml::parse(&text) {
            Ok(doc) => {
                if let Some(root) = doc.root {
                    let _ = root.to_json();
                }
            }
            Err(e) => prop_assert!(e.pos.line >= 1 && e.pos.col >= 1, "{:?}", e),
        }
        let result = ClientConfig::parse(&text, Path::new("c.yaml")).map(|_| ());
        loads_or_points_into(result, &text, "c.yaml")?;
    }

    #[test]
    fn hostile_mutated_exporter_configs_load_or_point_at_the_error(
        mutations in prop::collection::vec(mutation(), 1..6)
    ) {
        let text = mutate(EXPORTER, &mutations);
        let result = ExporterConfig::parse(&text, Path::new("e.yaml"));
        if let Ok(cfg) = &result {
            // Whatever loaded can be walked: every ref resolves, every config converts.
            let index = cfg.index().unwrap();
            for (path, entry) in index.nodes() {
                if let DriverNode::Proxy { .. } = entry.node {
                    prop_assert!(index.resolve(path).is_some(), "{}", path);
                }
                if let DriverNode::Driver { config, .. } = &entry.node {
                    let _ = config.to_json();
                    let _ = config.parse::<serde_json::Value>();
                }
            }
        }
        loads_or_points_into(result.map(|_| ()), &text, "e.yaml")?;
    }

    #[test]
    fn hostile_mutated_client_and_user_configs_load_or_point_at_the_error(
        mutations in prop::collection::vec(mutation(), 1..6)
    ) {
        let text = mutate(CLIENT, &mutations);
        loads_or_points_into(ClientConfig::parse(&text, Path::new("c.yaml")).map(|_| ()), &text, "c.yaml")?;
        let text = mutate(USER, &mutations);
        loads_or_points_into(UserConfig::parse(&text, Path::new("u.yaml")).map(|_| ()), &text, "u.yaml")?;
    }

    #[test]
    fn hostile_nested_aliases_cost_at_most_the_budget(
        levels in 1usize..12,
        fan in 1usize..12,
        nodes in 1usize..5000,
    ) {
        // levels of `fan` aliases each: fan^levels copies, refused or loaded within `nodes`.
        let mut text = String::from("a0: &a0 [x]\n");
        for l in 1..=levels {
            let items = vec![format!("*a{}", l - 1); fan].join(", ");
            text.push_str(&format!("a{l}: &a{l} [{items}]\n"));
        }
        let limits = ParseLimits { alias_nodes: nodes, ..ParseLimits::default() };
        match yaml::parse_with(&text, limits) {
            Ok(doc) => {
                fn count(n: &yaml::Node) -> usize {
                    1 + match &n.value {
                        yaml::Value::Seq(items) => items.iter().map(count).sum(),
                        yaml::Value::Map(entries) => entries.iter().map(|(k, v)| count(k) + count(v)).sum(),
                        _ => 0,
                    }
                }
                let root = doc.root.unwrap();
                let written = text.matches('*').count() + text.lines().count() * 2 + 2;
                prop_assert!(count(&root) <= nodes + written, "{} nodes for a budget of {}", count(&root), nodes);
            }
            Err(e) => prop_assert!(e.message.contains("JMP_YAML_ALIAS_NODES"), "{:?}", e),
        }
    }
}

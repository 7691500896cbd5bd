//! Writing YAML that PyYAML (YAML 1.1) and our reader both read back unchanged.
//!
//! Block style like PyYAML's `safe_dump(sort_keys=False)`: mappings in the given order, list
//! items at the indentation of their key, `{}` and `[]` for empty collections. A string is
//! written plain only when it would read back as the same string under YAML 1.1 rules (so
//! `on`, `yes`, `0777`, `1:30`, `1_000` and `null` are quoted); otherwise single-quoted, or
//! double-quoted with escapes when it holds line breaks or control characters.

use serde_json::Value;

use crate::yaml::resolve_plain;

/// Renders a JSON value (normally an object) as a YAML document.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => emit_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => emit_seq(items, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

/// Renders a JSON value with every mapping's keys sorted (PyYAML's default `sort_keys=True`).
pub fn to_yaml_sorted(value: &Value) -> String {
    to_yaml(&sorted(value))
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn indent(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn is_collection(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
}

fn emit_map(map: &serde_json::Map<String, Value>, at: usize, out: &mut String) {
    for (i, (k, v)) in map.iter().enumerate() {
        // The first entry of a map inside a list item follows the `- ` directly.
        if i > 0 || !out.ends_with("- ") {
            indent(at, out);
        }
        out.push_str(&string(k));
        out.push(':');
        emit_value_after_key(v, at, out);
    }
}

fn emit_value_after_key(v: &Value, at: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            emit_map(m, at + 2, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            emit_seq(items, at, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn emit_seq(items: &[Value], at: usize, out: &mut String) {
    for item in items {
        if !out.ends_with("- ") {
            indent(at, out);
        }
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => emit_map(m, at + 2, out),
            Value::Array(inner) if !inner.is_empty() => emit_seq(inner, at + 2, out),
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
    debug_assert!(
        items
            .iter()
            .all(|i| !is_collection(i) || out.ends_with('\n'))
    );
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if n.is_f64() {
                float(n.as_f64().unwrap_or(0.0))
            } else {
                n.to_string()
            }
        }
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// A float the way PyYAML writes one: always with a dot (`300.0`, `1.0e+20`), so YAML 1.1
/// reads it back as a float and not as a string.
fn float(x: f64) -> String {
    if x.is_nan() {
        return ".nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        };
    }
    let s = format!("{x:?}"); // shortest round-trip: "300.0", "0.5", "1e20", "1.5e-7"
    match s.split_once('e') {
        None => s,
        Some((m, e)) => {
            let m = if m.contains('.') {
                m.to_owned()
            } else {
                format!("{m}.0")
            };
            let e = if e.starts_with('-') {
                e.to_owned()
            } else {
                format!("+{e}")
            };
            format!("{m}e{e}")
        }
    }
}

/// PyYAML 1.1's implicit int, float, timestamp, merge and value resolvers in one pattern.
fn pyyaml_implicit() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        let int = r"[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+";
        let float = r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)";
        let timestamp = r"[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?";
        regex::Regex::new(&format!("^(?:{int}|{float}|{timestamp}|<<|=)$"))
            .unwrap_or_else(|e| unreachable!("constant pattern: {e}"))
    })
}

/// Whether a string can be written without quotes and read back as the same string.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if resolve_plain(s).is_some() {
        return false;
    }
    // What PyYAML's implicit resolvers would read as something else (int, float, timestamp,
    // merge, value) is quoted, as PyYAML quotes it; a lease name like `01a2006e-...` is not.
    if pyyaml_implicit().is_match(s) {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.ends_with(':') {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.contains(":\t") {
        return false;
    }
    s.chars()
        .all(|c| c.is_ascii_graphic() || c == ' ' || (!c.is_ascii() && !c.is_control()))
}

/// A string scalar: plain, single-quoted, or double-quoted with escapes.
pub fn string(s: &str) -> String {
    if plain_ok(s) {
        return s.to_owned();
    }
    let needs_double = s
        .chars()
        .any(|c| c.is_control() || c == '\u{feff}' || c == '\u{85}' || c == '\u{2028}');
    if !needs_double {
        return format!("'{}'", s.replace('\'', "''"));
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' => {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02X}"));
                } else {
                    out.push_str(&format!("\\u{n:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;
    use serde_json::json;

    fn reparse(text: &str) -> Value {
        yaml::parse(text)
            .unwrap_or_else(|e| panic!("{text}\n{e:?}"))
            .root
            .map(|n| n.to_json())
            .unwrap_or(Value::Null)
    }

    #[test]
    fn layout_matches_pyyaml() {
        let v = json!({
            "apiVersion": "jumpstarter.dev/v1alpha1",
            "metadata": {"namespace": "ns", "name": "n1"},
            "endpoint": "ctl.example:443",
            "tls": {"ca": "", "insecure": false},
            "grpcOptions": {},
            "drivers": {"allow": [""], "unsafe": false},
            "leases": {"retry_timeout": 300.0},
            "list": [{"a": 1, "b": [1, 2]}, "x"],
            "none": null,
        });
        let text = to_yaml(&v);
        assert_eq!(
            text,
            "apiVersion: jumpstarter.dev/v1alpha1\nmetadata:\n  namespace: ns\n  name: n1\n\
             endpoint: ctl.example:443\ntls:\n  ca: ''\n  insecure: false\ngrpcOptions: {}\n\
             drivers:\n  allow:\n  - ''\n  unsafe: false\nleases:\n  retry_timeout: 300.0\n\
             list:\n- a: 1\n  b:\n  - 1\n  - 2\n- x\nnone: null\n"
        );
        assert_eq!(reparse(&text), v);
    }

    #[test]
    fn plain_where_pyyaml_writes_plain() {
        for s in [
            "01a2006e-cbfd-73f3-8e31-d6dc17040a19",
            "1e3x",
            "board=rpi",
            "a-1",
        ] {
            assert_eq!(string(s), s);
        }
    }

    #[test]
    fn yaml_11_lookalikes_are_quoted() {
        for s in [
            "on",
            "Off",
            "yes",
            "NO",
            "y",
            "true",
            "null",
            "~",
            "0777",
            "1:30",
            "1_000",
            "1e3",
            "2026-11-21T23:26:30Z",
            "2026-11-21",
            "2026-1-2 3:04:05.5 +01:00",
            "<<",
            "=",
            ".5",
            "0x1F",
            "-1",
            "+1",
            "12.",
            "a: b",
            "#x",
            "- x",
            "x #y",
            "'q'",
            "\"d\"",
            " lead",
            "trail ",
            "line\nbreak",
            "tab\there",
            "é",
            "\u{1}",
            "*ref",
            "&a",
            "!tag",
            "%x",
            "@x",
            "key:",
            "[x]",
            "{x}",
            "",
            "..",
            ".inf",
        ] {
            let text = to_yaml(&json!({ s: s }));
            assert_eq!(reparse(&text), json!({ s: s }), "{s:?} -> {text}");
        }
        assert_eq!(string("on"), "'on'");
        assert_eq!(string("it's"), "it's");
        assert_eq!(string("'it's'"), "'''it''s'''");
        assert_eq!(string("a\nb"), "\"a\\nb\"");
        assert_eq!(string("jumpstarter_driver_*"), "jumpstarter_driver_*");
    }

    #[test]
    fn floats_keep_a_dot() {
        assert_eq!(float(300.0), "300.0");
        assert_eq!(float(0.5), "0.5");
        assert_eq!(float(1e20), "1.0e+20");
        assert_eq!(float(1.5e-7), "1.5e-07".replace("e-07", "e-7"));
        for x in [300.0, 0.5, 1e20, 1.5e-7, -2.25] {
            assert_eq!(reparse(&to_yaml(&json!({ "x": x })))["x"], json!(x));
        }
    }

    #[test]
    fn sorted_keys() {
        assert_eq!(
            to_yaml_sorted(&json!({"b": 1, "a": {"d": 1, "c": 2}})),
            "a:\n  c: 2\n  d: 1\nb: 1\n"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_string_round_trips(s in "\\PC{0,12}|[ -~\\n\\t]{0,12}") {
            let v = json!({ "k": s.clone(), s.clone(): [s.clone()] });
            let text = to_yaml(&v);
            proptest::prop_assert_eq!(reparse(&text), v, "{}", text);
        }
    }
}

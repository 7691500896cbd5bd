//! Kubernetes label selectors: the string syntax (`k=v,k!=v,k in (a,b),!k,k>5`), matching,
//! the structured form stored with a lease (matchLabels + matchExpressions) and its canonical
//! rendering (sorted by key, `<none>` when empty), with the error texts of the Go controller.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::text::clip;

/// Operators of one requirement of a selector string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement of a parsed selector string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

/// A parsed selector string: requirements ANDed. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

/// Why a selector string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// Why a label key or value is invalid (the Go controller's texts). Each holds the text,
/// quoted and clipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("invalid label value: {0}: must be no more than 63 characters")]
    ValueTooLong(String),
    #[error(
        "invalid label value: {0}: a valid label must be an empty string or consist of \
         alphanumeric characters, '-', '_' or '.', and must start and end with an \
         alphanumeric character"
    )]
    Value(String),
    #[error("invalid label key {0}: prefix part must be a lowercase RFC 1123 subdomain")]
    KeyPrefix(String),
    #[error(
        "invalid label key {0}: name part must consist of alphanumeric characters, '-', \
         '_' or '.', and must start and end with an alphanumeric character"
    )]
    KeyName(String),
}

impl From<LabelError> for SelectorError {
    fn from(e: LabelError) -> Self {
        SelectorError(e.to_string())
    }
}

fn quoted(s: &str) -> String {
    format!("{:?}", clip(s))
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9-_.]` beginning and ending
/// with an alphanumeric character.
pub fn validate_value(v: &str) -> Result<(), LabelError> {
    if v.is_empty() {
        return Ok(());
    }
    if v.len() > 63 {
        return Err(LabelError::ValueTooLong(quoted(v)));
    }
    let ok = v.chars().all(is_name_char)
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        return Err(LabelError::Value(quoted(v)));
    }
    Ok(())
}

/// A qualified name: optional DNS-subdomain prefix (≤253) and `/`, then a name (≤63).
pub fn validate_key(k: &str) -> Result<(), LabelError> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err(LabelError::KeyPrefix(quoted(k)));
        }
    }
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(is_name_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        return Err(LabelError::KeyName(quoted(k)));
    }
    Ok(())
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.s[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }
    fn eat(&mut self, t: &str) -> bool {
        if self.s[self.pos..].starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }
    /// A bare word: anything up to whitespace or one of `=!<>(),`.
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || "=!<>(),".contains(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }
    fn at_end_of_requirement(&mut self) -> bool {
        self.skip_ws();
        matches!(self.peek(), None | Some(','))
    }
}

impl Selector {
    /// Parses the Kubernetes selector syntax. Set-based and numeric operators are accepted;
    /// [`to_label_selector`] decides what a lease may use.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let mut lx = Lexer { s, pos: 0 };
        let mut requirements = Vec::new();
        lx.skip_ws();
        if lx.peek().is_none() {
            return Ok(Selector::default());
        }
        loop {
            requirements.push(parse_requirement(&mut lx)?);
            lx.skip_ws();
            match lx.peek() {
                None => break,
                Some(',') => {
                    lx.pos += 1;
                }
                Some(c) => {
                    return Err(SelectorError(format!(
                        "found '{c}', expected: ',' or 'end of string'"
                    )));
                }
            }
        }
        Ok(Selector { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

fn parse_requirement(lx: &mut Lexer<'_>) -> Result<Requirement, SelectorError> {
    lx.skip_ws();
    if lx.eat("!") {
        lx.skip_ws();
        let key = lx.word().to_string();
        validate_key(&key)?;
        if !lx.at_end_of_requirement() {
            return Err(SelectorError(format!(
                "unable to parse requirement: found '{}', expected: ',' or 'end of string'",
                lx.peek().unwrap_or(' ')
            )));
        }
        return Ok(Requirement {
            key,
            op: Op::DoesNotExist,
            values: vec![],
        });
    }
    let key = lx.word().to_string();
    if key.is_empty() {
        return Err(SelectorError(format!(
            "unable to parse requirement: found '{}', expected: identifier",
            lx.peek().unwrap_or(' ')
        )));
    }
    validate_key(&key)?;
    if lx.at_end_of_requirement() {
        return Ok(Requirement {
            key,
            op: Op::Exists,
            values: vec![],
        });
    }
    let op = if lx.eat("==") || lx.eat("=") {
        Op::Equals
    } else if lx.eat("!=") {
        Op::NotEquals
    } else if lx.eat(">") {
        Op::GreaterThan
    } else if lx.eat("<") {
        Op::LessThan
    } else {
        match lx.word() {
            "in" => Op::In,
            "notin" => Op::NotIn,
            other => {
                return Err(SelectorError(format!(
                    "unable to parse requirement: found '{}', expected: in, notin, =, \
                     ==, !=, gt, lt",
                    clip(other)
                )));
            }
        }
    };
    lx.skip_ws();
    let values = match op {
        Op::In | Op::NotIn => {
            if !lx.eat("(") {
                return Err(SelectorError(format!(
                    "unable to parse requirement: found '{}', expected: '('",
                    lx.peek().unwrap_or(' ')
                )));
            }
            let mut values = Vec::new();
            loop {
                lx.skip_ws();
                let v = lx.word().to_string();
                validate_value(&v)?;
                values.push(v);
                lx.skip_ws();
                if lx.eat(",") {
                    continue;
                }
                if lx.eat(")") {
                    break;
                }
                return Err(SelectorError(
                    "unable to parse requirement: expected ',' or ')' in a value list".into(),
                ));
            }
            values
        }
        _ => {
            let v = lx.word().to_string();
            if matches!(op, Op::GreaterThan | Op::LessThan) {
                if v.parse::<i64>().is_err() {
                    return Err(SelectorError(format!(
                        "for 'Gt', 'Lt' operators, the value must be an integer: {:?}",
                        clip(&v)
                    )));
                }
            } else {
                validate_value(&v)?;
            }
            vec![v]
        }
    };
    Ok(Requirement { key, op, values })
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let got = labels.get(&self.key);
        match self.op {
            Op::Equals | Op::In => got.is_some_and(|v| self.values.contains(v)),
            Op::NotEquals | Op::NotIn => got.is_none_or(|v| !self.values.contains(v)),
            Op::Exists => got.is_some(),
            Op::DoesNotExist => got.is_none(),
            Op::GreaterThan | Op::LessThan => {
                let (Some(got), Some(want)) = (
                    got.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == Op::GreaterThan {
                    got > want
                } else {
                    got < want
                }
            }
        }
    }
}

/// One `matchExpressions` entry of a structured selector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expression {
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// The structured selector stored with a lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<Expression>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether `labels` satisfy the selector (unknown operators match nothing).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let got = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => got.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => got.is_none_or(|v| !e.values.contains(v)),
                    "Exists" => got.is_some(),
                    "DoesNotExist" => got.is_none(),
                    _ => false,
                }
            })
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical Kubernetes string: requirements sorted by key, values sorted, `<none>`
    /// when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.match_labels {
            parts.push((k.clone(), format!("{k}={v}")));
        }
        for e in &self.match_expressions {
            let mut values = e.values.clone();
            values.sort();
            values.dedup();
            let text = match e.operator.as_str() {
                "In" => format!("{} in ({})", e.key, values.join(",")),
                "NotIn" => format!("{} notin ({})", e.key, values.join(",")),
                "Exists" => e.key.clone(),
                "DoesNotExist" => format!("!{}", e.key),
                other => format!("{} {other} ({})", e.key, values.join(",")),
            };
            parts.push((e.key.clone(), text));
        }
        if parts.is_empty() {
            return f.write_str("<none>");
        }
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        let texts: Vec<String> = parts.into_iter().map(|p| p.1).collect();
        f.write_str(&texts.join(","))
    }
}

/// Converts a lease selector string into the structured form, as CreateLease does:
/// equalities become matchLabels (conflicting values are an error), `!=` accumulate into one
/// `NotIn` per key, `>`/`<` are rejected.
pub fn to_label_selector(s: &str) -> Result<LabelSelector, SelectorError> {
    let parsed = Selector::parse(s)
        .map_err(|e| SelectorError(format!("failed to parse label selector: {e}")))?;
    let mut out = LabelSelector::default();
    let mut not_in: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in parsed.requirements {
        match r.op {
            Op::Equals => {
                let v = r.values.into_iter().next().unwrap_or_default();
                if let Some(old) = out.match_labels.get(&r.key)
                    && *old != v
                {
                    return Err(SelectorError(format!(
                        "invalid selector: label {} cannot have multiple equality requirements \
                         with different values ({} and {})",
                        clip(&r.key),
                        clip(old),
                        clip(&v)
                    )));
                }
                out.match_labels.insert(r.key, v);
            }
            Op::NotEquals => {
                let entry = not_in.entry(r.key).or_default();
                for v in r.values {
                    if !entry.contains(&v) {
                        entry.push(v);
                    }
                }
            }
            Op::In | Op::NotIn | Op::Exists | Op::DoesNotExist => {
                let operator = match r.op {
                    Op::In => "In",
                    Op::NotIn => "NotIn",
                    Op::Exists => "Exists",
                    _ => "DoesNotExist",
                };
                out.match_expressions.push(Expression {
                    key: r.key,
                    operator: operator.into(),
                    values: r.values,
                });
            }
            Op::GreaterThan | Op::LessThan => {
                let op = if r.op == Op::GreaterThan { "gt" } else { "lt" };
                return Err(SelectorError(format!(
                    "unsupported label selector operator: {op}"
                )));
            }
        }
    }
    for (key, values) in not_in {
        out.match_expressions.push(Expression {
            key,
            operator: "NotIn".into(),
            values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_matches_every_operator() {
        let l = labels(&[("board", "rpi"), ("rev", "4"), ("env", "lab")]);
        for (sel, want) in [
            ("", true),
            ("board=rpi", true),
            ("board==rpi", true),
            ("board!=rpi", false),
            ("missing!=x", true),
            ("board in (rpi, qemu)", true),
            ("board notin (rpi)", false),
            ("missing notin (rpi)", true),
            ("board", true),
            ("!board", false),
            ("!missing", true),
            ("rev>3", true),
            ("rev<3", false),
            ("board=rpi,env=lab", true),
            ("board=rpi, env=prod", false),
            ("example.com/x=1", false),
        ] {
            assert_eq!(Selector::parse(sel).unwrap().matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn rejects_malformed_selectors() {
        for bad in [
            "board=",
            "=rpi",
            "board in rpi",
            "board in (rpi",
            "a b",
            "rev>x",
            "Bad Key=1",
            "x=-bad",
        ] {
            if bad == "board=" {
                // An empty value is valid Kubernetes syntax.
                assert!(Selector::parse(bad).is_ok());
                continue;
            }
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lease_selectors_render_canonically() {
        let s = to_label_selector("env=prod,board=rpi").unwrap();
        assert_eq!(s.to_string(), "board=rpi,env=prod");
        assert_eq!(
            to_label_selector("a!=b").unwrap().to_string(),
            "a notin (b)"
        );
        assert_eq!(
            to_label_selector("a!=c,a!=b,a!=c").unwrap().to_string(),
            "a notin (b,c)"
        );
        assert_eq!(
            to_label_selector("z in (b,a),!y,x").unwrap().to_string(),
            "x,!y,z in (a,b)"
        );
        assert_eq!(LabelSelector::default().to_string(), "<none>");
    }

    #[test]
    fn lease_selector_errors_are_upstreams() {
        let e = to_label_selector("a=1,a=2").unwrap_err().0;
        assert_eq!(
            e,
            "invalid selector: label a cannot have multiple equality requirements with \
             different values (1 and 2)"
        );
        assert!(
            to_label_selector("a>1")
                .unwrap_err()
                .0
                .starts_with("unsupported label selector operator")
        );
        assert!(
            to_label_selector("a in (")
                .unwrap_err()
                .0
                .starts_with("failed to parse label selector: ")
        );
    }
}

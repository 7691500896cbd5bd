//! YAML documents as trees of nodes that remember where they came from.
//!
//! Parsing is done by `saphyr-parser`; this module only builds the tree and resolves plain
//! scalars. Resolution follows YAML 1.1 as PyYAML's `SafeLoader` does, because upstream
//! Jumpstarter reads every config file with PyYAML and the same file must mean the same thing
//! to both: `on`/`off`/`yes`/`no` are booleans, `0755` is octal, `1:30` is 90, `1e3` is a
//! string. Where YAML 1.1 gives a surprising meaning (a boolean mapping key, an octal number)
//! a [`Warning`] is recorded so the CLI can tell the user.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

/// A position in a source file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl From<&saphyr_parser::Marker> for Pos {
    fn from(m: &saphyr_parser::Marker) -> Self {
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// A resolved YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A value plus where it was written and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    /// The source text of a scalar (empty for collections).
    pub raw: String,
    /// True for plain (unquoted) scalars.
    pub plain: bool,
}

/// Something in a file that is valid but probably not what was meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub pos: Pos,
    pub message: String,
}

/// A syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The text of a mapping key: strings as they are, other scalars as written.
    pub fn key_text(&self) -> &str {
        match &self.value {
            Value::Str(s) => s,
            _ => &self.raw,
        }
    }

    /// Looks up a key in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_text() == key)
            .map(|(_, v)| v)
    }

    /// Converts to JSON. Non-finite floats (`.inf`, `.nan`) become null, like upstream's
    /// value encoding would make them.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    J::from(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    J::from(v)
                } else {
                    serde_json::Number::from_f64(*i as f64).map_or(J::Null, J::Number)
                }
            }
            Value::Float(x) => serde_json::Number::from_f64(*x).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_text().to_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Finds the node at a path of mapping keys and list indexes (as produced by
    /// `serde_path_to_error`), returning the deepest node reached.
    pub fn locate<'a>(&'a self, path: &[PathSegment]) -> &'a Node {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.value) {
                (PathSegment::Key(k), Value::Map(entries)) => entries
                    .iter()
                    .find(|(key, _)| key.key_text() == k)
                    .map(|(_, v)| v),
                (PathSegment::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

/// A parsed file: its single document (None when the file holds no document) and warnings.
#[derive(Debug)]
pub struct Document {
    pub root: Option<Node>,
    pub warnings: Vec<Warning>,
}

/// Parses one YAML document.
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    let mut builder = Builder {
        anchors: HashMap::new(),
        warnings: Vec::new(),
    };
    let mut parser = Parser::new_from_str(text);
    let mut root = None;
    let mut documents = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| SyntaxError {
            pos: Pos::from(e.marker()),
            message: e.info().to_owned(),
        })?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        pos: Pos::from(&span.start),
                        message: "expected a single YAML document, found another one".into(),
                    });
                }
                let (first, first_span) = next_event(&mut parser, &span)?;
                if matches!(first, Event::DocumentEnd | Event::StreamEnd) {
                    continue;
                }
                root = Some(builder.node(&mut parser, first, first_span)?);
            }
            other => {
                return Err(SyntaxError {
                    pos: Pos::from(&span.start),
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        }
    }
    Ok(Document {
        root,
        warnings: builder.warnings,
    })
}

fn next_event<'a>(
    parser: &mut Parser<'a, saphyr_parser::StrInput<'a>>,
    at: &Span,
) -> Result<(Event<'a>, Span), SyntaxError> {
    match parser.next_event() {
        Some(Ok(ev)) => Ok(ev),
        Some(Err(e)) => Err(SyntaxError {
            pos: Pos::from(e.marker()),
            message: e.info().to_owned(),
        }),
        None => Err(SyntaxError {
            pos: Pos::from(&at.end),
            message: "unexpected end of input".into(),
        }),
    }
}

struct Builder {
    anchors: HashMap<usize, Node>,
    warnings: Vec<Warning>,
}

impl Builder {
    fn node<'a>(
        &mut self,
        parser: &mut Parser<'a, saphyr_parser::StrInput<'a>>,
        event: Event<'a>,
        span: Span,
    ) -> Result<Node, SyntaxError> {
        let pos = Pos::from(&span.start);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let node = self.scalar(text, style, tag.as_deref(), pos)?;
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                Ok(node)
            }
            Event::Alias(id) => self.anchors.get(&id).cloned().ok_or(SyntaxError {
                pos,
                message: "alias refers to an unknown anchor".into(),
            }),
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (ev, sp) = next_event(parser, &span)?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(parser, ev, sp)?);
                }
                let node = Node {
                    value: Value::Seq(items),
                    pos,
                    raw: String::new(),
                    plain: false,
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                Ok(node)
            }
            Event::MappingStart(anchor, _tag) => {
                let mut entries: Vec<(Node, Node)> = Vec::new();
                let mut merged: Vec<(Node, Node)> = Vec::new();
                loop {
                    let (ev, sp) = next_event(parser, &span)?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(parser, ev, sp)?;
                    let (vev, vsp) = next_event(parser, &span)?;
                    let value = self.node(parser, vev, vsp)?;
                    if key.plain && key.raw == "<<" {
                        self.merge(&value, &mut merged)?;
                        continue;
                    }
                    self.check_key(&key, &entries);
                    entries.retain(|(k, _)| k.key_text() != key.key_text());
                    entries.push((key, value));
                }
                // Merged keys never override keys written in the mapping itself.
                for (k, v) in merged {
                    if !entries.iter().any(|(e, _)| e.key_text() == k.key_text()) {
                        entries.push((k, v));
                    }
                }
                let node = Node {
                    value: Value::Map(entries),
                    pos,
                    raw: String::new(),
                    plain: false,
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                Ok(node)
            }
            other => Err(SyntaxError {
                pos,
                message: format!("unexpected YAML event {other:?}"),
            }),
        }
    }

    fn merge(&mut self, value: &Node, into: &mut Vec<(Node, Node)>) -> Result<(), SyntaxError> {
        let sources: Vec<&Node> = match &value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) => items.iter().collect(),
            _ => {
                return Err(SyntaxError {
                    pos: value.pos,
                    message: "a merge key (<<) needs a mapping or a list of mappings".into(),
                });
            }
        };
        for src in sources {
            let Value::Map(entries) = &src.value else {
                return Err(SyntaxError {
                    pos: src.pos,
                    message: "a merge key (<<) needs a mapping or a list of mappings".into(),
                });
            };
            for (k, v) in entries {
                if !into.iter().any(|(e, _)| e.key_text() == k.key_text()) {
                    into.push((k.clone(), v.clone()));
                }
            }
        }
        Ok(())
    }

    fn check_key(&mut self, key: &Node, existing: &[(Node, Node)]) {
        match &key.value {
            Value::Str(_) => {}
            Value::Bool(b) => self.warnings.push(Warning {
                pos: key.pos,
                message: format!(
                    "key `{}` is the boolean {} in YAML 1.1 (upstream Jumpstarter reads it as `{}`); \
                     it is used here as the string \"{}\", quote it to be unambiguous",
                    key.raw,
                    b,
                    if *b { "True" } else { "False" },
                    key.raw
                ),
            }),
            Value::Null if key.raw.is_empty() => self.warnings.push(Warning {
                pos: key.pos,
                message: "empty mapping key".into(),
            }),
            _ => {}
        }
        if existing.iter().any(|(k, _)| k.key_text() == key.key_text()) {
            self.warnings.push(Warning {
                pos: key.pos,
                message: format!(
                    "duplicate key `{}`: the later value replaces the earlier one",
                    key.key_text()
                ),
            });
        }
    }

    fn scalar(
        &mut self,
        text: Cow<'_, str>,
        style: ScalarStyle,
        tag: Option<&Tag>,
        pos: Pos,
    ) -> Result<Node, SyntaxError> {
        let plain = style == ScalarStyle::Plain;
        let raw = text.into_owned();
        let value = match tag {
            Some(tag) if tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!" => {
                match tag.suffix.as_str() {
                    "str" => Value::Str(raw.clone()),
                    "null" => Value::Null,
                    "bool" => match resolve_plain(&raw) {
                        Some(v @ Value::Bool(_)) => v,
                        _ => return Err(bad_tag(pos, &raw, "bool")),
                    },
                    "int" => match resolve_plain(&raw) {
                        Some(v @ Value::Int(_)) => v,
                        _ => return Err(bad_tag(pos, &raw, "int")),
                    },
                    "float" => match resolve_plain(&raw) {
                        Some(Value::Int(i)) => Value::Float(i as f64),
                        Some(v @ Value::Float(_)) => v,
                        _ => return Err(bad_tag(pos, &raw, "float")),
                    },
                    other => {
                        return Err(SyntaxError {
                            pos,
                            message: format!("unsupported tag !!{other}"),
                        });
                    }
                }
            }
            Some(tag) => {
                return Err(SyntaxError {
                    pos,
                    message: format!(
                        "unsupported tag {}{} (only standard YAML tags are accepted)",
                        tag.handle, tag.suffix
                    ),
                });
            }
            None if plain => resolve_plain(&raw).unwrap_or_else(|| Value::Str(raw.clone())),
            None => Value::Str(raw.clone()),
        };
        if plain && let Value::Int(i) = value {
            let digits = raw.trim_start_matches(['+', '-']);
            if digits.len() > 1 && digits.starts_with('0') && digits.as_bytes()[1].is_ascii_digit()
            {
                self.warnings.push(Warning {
                    pos,
                    message: format!(
                        "`{raw}` is the octal number {i} in YAML 1.1 (as upstream Jumpstarter reads it); \
                         quote it if you meant a string"
                    ),
                });
            }
        }
        Ok(Node {
            value,
            pos,
            raw,
            plain,
        })
    }
}

fn bad_tag(pos: Pos, raw: &str, tag: &str) -> SyntaxError {
    SyntaxError {
        pos,
        message: format!("`{raw}` is not a valid !!{tag}"),
    }
}

/// Resolves a plain scalar with PyYAML's YAML 1.1 implicit resolvers. `None` means "string".
pub fn resolve_plain(s: &str) -> Option<Value> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Some(Value::Bool(true));
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Some(Value::Bool(false));
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(Value::Float(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(Value::Float(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(Value::Float(f64::NAN)),
        _ => {}
    }
    resolve_int(s)
        .map(Value::Int)
        .or_else(|| resolve_float(s).map(Value::Float))
}

fn split_sign(s: &str) -> (i128, &str) {
    match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        Some(b'+') => (1, &s[1..]),
        _ => (1, s),
    }
}

fn digits_in(s: &str, radix: u32) -> Option<i128> {
    let cleaned: String = s.chars().filter(|c| *c != '_').collect();
    if cleaned.is_empty() {
        return None;
    }
    i128::from_str_radix(&cleaned, radix).ok()
}

fn resolve_int(s: &str) -> Option<i128> {
    let (sign, body) = split_sign(s);
    if body.is_empty() {
        return None;
    }
    let value = if let Some(b) = body.strip_prefix("0b") {
        b.chars()
            .all(|c| matches!(c, '0' | '1' | '_'))
            .then_some(())?;
        digits_in(b, 2)?
    } else if let Some(h) = body.strip_prefix("0x") {
        h.chars()
            .all(|c| c.is_ascii_hexdigit() || c == '_')
            .then_some(())?;
        digits_in(h, 16)?
    } else if body == "0" {
        0
    } else if let Some(o) = body.strip_prefix('0') {
        o.chars()
            .all(|c| matches!(c, '0'..='7' | '_'))
            .then_some(())?;
        digits_in(o, 8)?
    } else if body.contains(':') {
        // Sexagesimal: [1-9][0-9_]*(:[0-5]?[0-9])+
        let mut parts = body.split(':');
        let head = parts.next()?;
        let first = head.as_bytes().first()?;
        if !(b'1'..=b'9').contains(first) || !head.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return None;
        }
        let mut total = digits_in(head, 10)?;
        for part in parts {
            if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            if part.len() == 2 && part.as_bytes()[0] > b'5' {
                return None;
            }
            total = total * 60 + part.parse::<i128>().ok()?;
        }
        total
    } else {
        let first = body.as_bytes()[0];
        if !(b'1'..=b'9').contains(&first) || !body.chars().all(|c| c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        digits_in(body, 10)?
    };
    Some(sign * value)
}

fn resolve_float(s: &str) -> Option<f64> {
    let (sign, body) = split_sign(s);
    let sign = sign as f64;
    if body.contains(':') {
        // [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*
        let (int_part, frac) = body.split_once('.')?;
        let mut parts = int_part.split(':');
        let head = parts.next()?;
        if head.is_empty() || !head.as_bytes()[0].is_ascii_digit() {
            return None;
        }
        let mut total = digits_in(head, 10)? as f64;
        for part in parts {
            if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        if !frac.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return None;
        }
        let frac: String = frac.chars().filter(|c| *c != '_').collect();
        let f = if frac.is_empty() {
            0.0
        } else {
            format!("0.{frac}").parse::<f64>().ok()?
        };
        return Some(sign * (total + f));
    }
    // [0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?  or  \.[0-9_]+([eE][-+][0-9]+)?
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac) = mantissa.split_once('.')?;
    if int_part.is_empty() {
        if frac.is_empty() || !frac.as_bytes()[0].is_ascii_digit() {
            return None;
        }
    } else if !int_part.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    if !int_part.chars().all(|c| c.is_ascii_digit() || c == '_')
        || !frac.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    if let Some(e) = exponent {
        let digits = e.strip_prefix(['+', '-'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let text: String = body.chars().filter(|c| *c != '_').collect();
    let text = if text.starts_with('.') {
        format!("0{text}")
    } else {
        text
    };
    text.parse::<f64>().ok().map(|v| sign * v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn root(text: &str) -> Node {
        parse(text).unwrap().root.unwrap()
    }

    #[test]
    fn yaml11_scalars_resolve_like_pyyaml() {
        let cases: &[(&str, Value)] = &[
            ("on", Value::Bool(true)),
            ("Off", Value::Bool(false)),
            ("yes", Value::Bool(true)),
            ("NO", Value::Bool(false)),
            ("~", Value::Null),
            ("0755", Value::Int(493)),
            ("0", Value::Int(0)),
            ("-12", Value::Int(-12)),
            ("1_000", Value::Int(1000)),
            ("0x1F", Value::Int(31)),
            ("0b101", Value::Int(5)),
            ("1:30", Value::Int(90)),
            ("1.5", Value::Float(1.5)),
            ("1.", Value::Float(1.0)),
            (".5", Value::Float(0.5)),
            ("1.0e+3", Value::Float(1000.0)),
            ("-.inf", Value::Float(f64::NEG_INFINITY)),
        ];
        for (text, want) in cases {
            assert_eq!(resolve_plain(text).as_ref(), Some(want), "{text}");
        }
        // Strings in YAML 1.1, whatever YAML 1.2 says.
        for text in [
            "1e3", "08", "0o17", "y", "n", "hello", "1.0e3", "12:70", "+", "0x",
        ] {
            assert_eq!(resolve_plain(text), None, "{text}");
        }
        assert!(matches!(resolve_plain(".nan"), Some(Value::Float(x)) if x.is_nan()));
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let n = root("a: 'on'\nb: \"0755\"\nc: on\n");
        assert_eq!(n.get("a").unwrap().value, Value::Str("on".into()));
        assert_eq!(n.get("b").unwrap().value, Value::Str("0755".into()));
        assert_eq!(n.get("c").unwrap().value, Value::Bool(true));
    }

    #[test]
    fn positions_are_one_based() {
        let n = root("top:\n  inner: 5\n");
        let inner = n.get("top").unwrap().get("inner").unwrap();
        assert_eq!(inner.pos, Pos { line: 2, col: 10 });
    }

    #[test]
    fn boolean_keys_are_kept_as_text_with_a_warning() {
        let doc = parse("methods_description:\n  on: turn it on\n").unwrap();
        let n = doc.root.unwrap();
        let md = n.get("methods_description").unwrap();
        assert_eq!(md.get("on").unwrap().as_str(), Some("turn it on"));
        assert_eq!(doc.warnings.len(), 1);
        assert!(doc.warnings[0].message.contains("boolean"));
        assert_eq!(doc.warnings[0].pos, Pos { line: 2, col: 3 });
    }

    #[test]
    fn octal_and_duplicates_warn() {
        let doc = parse("a: 0644\na: 1\n").unwrap();
        assert_eq!(doc.warnings.len(), 2);
        assert_eq!(doc.root.unwrap().get("a").unwrap().value, Value::Int(1));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let n = root("base: &b {host: x, port: 1}\nuse:\n  <<: *b\n  port: 2\nsame: *b\n");
        let used = n.get("use").unwrap();
        assert_eq!(used.get("host").unwrap().as_str(), Some("x"));
        assert_eq!(used.get("port").unwrap().value, Value::Int(2));
        assert_eq!(
            n.get("same").unwrap().get("port").unwrap().value,
            Value::Int(1)
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1);
        let err = parse("key: value\n  bad: indent\n").unwrap_err();
        assert_eq!(err.pos.line, 2, "{err:?}");
    }

    #[test]
    fn empty_and_multi_document_files() {
        assert!(parse("").unwrap().root.is_none());
        assert!(parse("# only a comment\n").unwrap().root.is_none());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn unknown_tags_are_rejected() {
        assert!(parse("a: !python/object foo\n").is_err());
        assert_eq!(root("a: !!str 5\n").get("a").unwrap().as_str(), Some("5"));
    }

    #[test]
    fn locate_follows_paths() {
        let n = root("config:\n  list: [a, {port: x}]\n");
        let found = n.locate(&[
            PathSegment::Key("config".into()),
            PathSegment::Key("list".into()),
            PathSegment::Index(1),
            PathSegment::Key("port".into()),
        ]);
        assert_eq!(found.as_str(), Some("x"));
        // A path that leaves the tree stops at the deepest node that exists.
        let partial = n.locate(&[
            PathSegment::Key("config".into()),
            PathSegment::Key("nope".into()),
        ]);
        assert_eq!(partial.pos, n.get("config").unwrap().pos);
    }

    proptest! {
        #[test]
        fn parser_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn yaml_like_input_never_panics(text in "([a-z]{1,4}: [-:.0-9a-z\\[\\]{},&*!'\"]{0,8}\n {0,4}){0,8}") {
            let _ = parse(&text);
        }

        #[test]
        fn decimal_ints_round_trip(i in -1_000_000_000i64..1_000_000_000) {
            prop_assert_eq!(resolve_plain(&i.to_string()), Some(Value::Int(i as i128)));
        }
    }
}

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
use std::sync::{OnceLock, RwLock};

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
    /// Where the anchored nodes (`&name`) start, in document order.
    pub anchors: Vec<Pos>,
}

/// What one document may cost, whatever its text: how deep it may nest and how much its anchors
/// and aliases may copy.
///
/// Aliases are expanded (an alias becomes a copy of its anchor's node, so a document stays a
/// plain tree that every consumer can walk), which would make a few hundred bytes of nested
/// aliases (a "billion laughs" file) worth gigabytes. Every copy is charged to a budget before
/// it is made, so such a file is refused at the alias that goes over it, having cost no more
/// than the budget. Depth is bounded so that no consumer of a document (building, comparing,
/// converting, dropping it) can run out of stack; an alias counts with its anchor's depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Levels of nested sequences and mappings.
    pub max_depth: usize,
    /// Nodes copied for anchors and aliases in one document.
    pub alias_nodes: usize,
    /// Bytes of scalar text copied for anchors and aliases in one document.
    pub alias_bytes: usize,
}

/// Default of [`ParseLimits::max_depth`].
pub const DEFAULT_MAX_DEPTH: usize = 128;
/// Default of [`ParseLimits::alias_nodes`].
pub const DEFAULT_ALIAS_NODES: usize = 100_000;
/// Default of [`ParseLimits::alias_bytes`].
pub const DEFAULT_ALIAS_BYTES: usize = 16 << 20;

/// The environment variable and description of each limit (the same as jumpstarter-core's
/// `limits` module lists, which checks that they agree).
pub const MAX_DEPTH_LIMIT: (&str, &str) =
    ("JMP_YAML_MAX_DEPTH", "levels of nesting in a YAML file");
pub const ALIAS_NODES_LIMIT: (&str, &str) = (
    "JMP_YAML_ALIAS_NODES",
    "YAML nodes copied by anchors and aliases per file",
);
pub const ALIAS_BYTES_LIMIT: (&str, &str) = (
    "JMP_YAML_ALIAS_BYTES",
    "bytes of YAML text copied by anchors and aliases per file",
);

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_depth: DEFAULT_MAX_DEPTH,
            alias_nodes: DEFAULT_ALIAS_NODES,
            alias_bytes: DEFAULT_ALIAS_BYTES,
        }
    }
}

impl ParseLimits {
    /// The defaults, overridden by the variables `lookup` knows. A value that is not a whole
    /// number greater than 0 (`K`, `M`, `G` suffixes allowed) keeps the default; daemons check
    /// the same variables strictly at start (jumpstarter-core's `Limits::from_env`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ParseLimits {
        let get = |(var, _): (&str, &str), default: usize| {
            lookup(var)
                .and_then(|text| parse_count(&text))
                .unwrap_or(default)
        };
        ParseLimits {
            max_depth: get(MAX_DEPTH_LIMIT, DEFAULT_MAX_DEPTH),
            alias_nodes: get(ALIAS_NODES_LIMIT, DEFAULT_ALIAS_NODES),
            alias_bytes: get(ALIAS_BYTES_LIMIT, DEFAULT_ALIAS_BYTES),
        }
    }

    /// The defaults overridden by the process environment.
    pub fn from_env() -> ParseLimits {
        ParseLimits::from_lookup(|var| std::env::var(var).ok())
    }
}

fn parse_count(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1usize << 10),
        (i, 'm' | 'M') => (&text[..i], 1 << 20),
        (i, 'g' | 'G') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    let n: usize = digits.trim().parse().ok()?;
    n.checked_mul(unit).filter(|n| *n > 0)
}

static LIMITS_SET: RwLock<Option<ParseLimits>> = RwLock::new(None);
static LIMITS_FROM_ENV: OnceLock<ParseLimits> = OnceLock::new();

/// Installs the limits [`parse`] uses in this process (jumpstarter-core's `limits::set_global`
/// calls it).
pub fn set_limits(limits: ParseLimits) {
    *LIMITS_SET.write().unwrap_or_else(|e| e.into_inner()) = Some(limits);
}

/// The limits [`parse`] uses: what [`set_limits`] installed, else the environment's.
pub fn limits() -> ParseLimits {
    let set = *LIMITS_SET.read().unwrap_or_else(|e| e.into_inner());
    set.unwrap_or_else(|| *LIMITS_FROM_ENV.get_or_init(ParseLimits::from_env))
}

/// The text for a limit that was reached, worded as jumpstarter-core's `Limits::exceeded`.
fn limit_reached(value: usize, (var, what): (&str, &str)) -> String {
    format!("limit reached: {value} {what} ({var})")
}

/// Parses one YAML document with the process's [`limits`].
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    parse_with(text, limits())
}

/// Parses one YAML document within the given limits.
pub fn parse_with(text: &str, limits: ParseLimits) -> Result<Document, SyntaxError> {
    let mut builder = Builder {
        anchors: HashMap::new(),
        anchored: Vec::new(),
        warnings: Vec::new(),
        limits,
        copied_nodes: 0,
        copied_bytes: 0,
    };
    let mut parser = Parser::new_from_str(text);
    let mut root = None;
    let mut documents = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(scan_error)?;
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
                root = Some(builder.node(&mut parser, first, first_span, 0)?.0);
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
        anchors: builder.anchored,
    })
}

fn next_event<'a>(
    parser: &mut Parser<'a, saphyr_parser::StrInput<'a>>,
    at: &Span,
) -> Result<(Event<'a>, Span), SyntaxError> {
    match parser.next_event() {
        Some(Ok(ev)) => Ok(ev),
        Some(Err(e)) => Err(scan_error(e)),
        None => Err(SyntaxError {
            pos: Pos::from(&at.end),
            message: "unexpected end of input".into(),
        }),
    }
}

fn scan_error(e: saphyr_parser::ScanError) -> SyntaxError {
    let message = match e.info() {
        // The scanner's own bound (it counts flow levels in a byte), met before ours when
        // `[` and `{` nest past it.
        "recursion limit exceeded" => {
            "`[` and `{` nested too deep (the YAML scanner stops at 255 levels)".to_owned()
        }
        info => info.to_owned(),
    };
    SyntaxError {
        pos: Pos::from(e.marker()),
        message,
    }
}

/// What a built node weighs: its nodes, its scalar bytes and its height (0 for a scalar).
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
    height: usize,
}

impl Size {
    fn scalar(raw: &str) -> Size {
        Size {
            nodes: 1,
            bytes: raw.len(),
            height: 0,
        }
    }

    /// Adds a child to a collection's size (which starts as `Size::collection()`).
    fn add(&mut self, child: Size) {
        self.nodes = self.nodes.saturating_add(child.nodes);
        self.bytes = self.bytes.saturating_add(child.bytes);
        self.height = self.height.max(child.height.saturating_add(1));
    }

    fn collection() -> Size {
        Size {
            nodes: 1,
            bytes: 0,
            height: 1,
        }
    }
}

struct Builder {
    anchors: HashMap<usize, (Node, Size)>,
    anchored: Vec<Pos>,
    warnings: Vec<Warning>,
    limits: ParseLimits,
    copied_nodes: usize,
    copied_bytes: usize,
}

impl Builder {
    /// Builds the node that starts with `event`; `depth` is the number of collections around it.
    fn node<'a>(
        &mut self,
        parser: &mut Parser<'a, saphyr_parser::StrInput<'a>>,
        event: Event<'a>,
        span: Span,
        depth: usize,
    ) -> Result<(Node, Size), SyntaxError> {
        let pos = Pos::from(&span.start);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let node = self.scalar(text, style, tag.as_deref(), pos)?;
                let size = Size::scalar(&node.raw);
                self.anchor(anchor, &node, size)?;
                Ok((node, size))
            }
            Event::Alias(id) => {
                let unknown = || SyntaxError {
                    pos,
                    message: "alias refers to an unknown anchor".into(),
                };
                let size = self.anchors.get(&id).ok_or_else(unknown)?.1;
                if depth.saturating_add(size.height) > self.limits.max_depth {
                    return Err(SyntaxError {
                        pos,
                        message: format!(
                            "this alias nests its anchor's content too deep; {}",
                            limit_reached(self.limits.max_depth, MAX_DEPTH_LIMIT)
                        ),
                    });
                }
                self.charge(size, pos)?;
                // Charged first, copied second: the budget bounds what copying costs.
                let copy = self.anchors.get(&id).ok_or_else(unknown)?.0.clone();
                Ok((copy, size))
            }
            Event::SequenceStart(anchor, _tag) => {
                self.enter(depth, pos)?;
                let mut items = Vec::new();
                let mut size = Size::collection();
                loop {
                    let (ev, sp) = next_event(parser, &span)?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    let (item, item_size) = self.node(parser, ev, sp, depth + 1)?;
                    size.add(item_size);
                    items.push(item);
                }
                let node = Node {
                    value: Value::Seq(items),
                    pos,
                    raw: String::new(),
                    plain: false,
                };
                self.anchor(anchor, &node, size)?;
                Ok((node, size))
            }
            Event::MappingStart(anchor, _tag) => {
                self.enter(depth, pos)?;
                let mut size = Size::collection();
                // The mapping's own keys (a repeated key keeps its first place and takes the
                // later value, as in a Python dict), and what merge keys bring in.
                let mut own: Vec<(Node, Node)> = Vec::new();
                let mut own_index: HashMap<String, usize> = HashMap::new();
                let mut merged: Vec<(Node, Node)> = Vec::new();
                loop {
                    let (ev, sp) = next_event(parser, &span)?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let (key, key_size) = self.node(parser, ev, sp, depth + 1)?;
                    let (vev, vsp) = next_event(parser, &span)?;
                    let (value, value_size) = self.node(parser, vev, vsp, depth + 1)?;
                    size.add(key_size);
                    size.add(value_size);
                    if key.plain && key.raw == "<<" {
                        merge(value, &mut merged)?;
                        continue;
                    }
                    self.check_key(&key);
                    match own_index.get(key.key_text()) {
                        Some(&i) => {
                            self.warnings.push(Warning {
                                pos: key.pos,
                                message: format!(
                                    "duplicate key `{}`: the later value replaces the earlier one",
                                    key.key_text()
                                ),
                            });
                            own[i].1 = value;
                        }
                        None => {
                            own_index.insert(key.key_text().to_owned(), own.len());
                            own.push((key, value));
                        }
                    }
                }
                let entries = if merged.is_empty() {
                    own
                } else {
                    // As PyYAML does: merged entries first, then the mapping's own, so its own
                    // keys win; each key keeps the place where it first appears.
                    let mut index: HashMap<String, usize> = HashMap::new();
                    let mut entries: Vec<(Node, Node)> = Vec::new();
                    for (k, v) in merged.into_iter().chain(own) {
                        match index.get(k.key_text()) {
                            Some(&i) => entries[i].1 = v,
                            None => {
                                index.insert(k.key_text().to_owned(), entries.len());
                                entries.push((k, v));
                            }
                        }
                    }
                    entries
                };
                let node = Node {
                    value: Value::Map(entries),
                    pos,
                    raw: String::new(),
                    plain: false,
                };
                self.anchor(anchor, &node, size)?;
                Ok((node, size))
            }
            other => Err(SyntaxError {
                pos,
                message: format!("unexpected YAML event {other:?}"),
            }),
        }
    }

    /// Checks that a collection starting at `pos` inside `depth` others is allowed.
    fn enter(&self, depth: usize, pos: Pos) -> Result<(), SyntaxError> {
        if depth >= self.limits.max_depth {
            return Err(SyntaxError {
                pos,
                message: format!(
                    "sequences and mappings nested too deep; {}",
                    limit_reached(self.limits.max_depth, MAX_DEPTH_LIMIT)
                ),
            });
        }
        Ok(())
    }

    /// Remembers an anchored node (a copy, charged to the budget).
    fn anchor(&mut self, anchor: usize, node: &Node, size: Size) -> Result<(), SyntaxError> {
        if anchor != 0 {
            self.charge(size, node.pos)?;
            self.anchors.insert(anchor, (node.clone(), size));
            self.anchored.push(node.pos);
        }
        Ok(())
    }

    /// Charges a copy of `size` to the document's budget, refusing it past the limits.
    fn charge(&mut self, size: Size, pos: Pos) -> Result<(), SyntaxError> {
        self.copied_nodes = self.copied_nodes.saturating_add(size.nodes);
        self.copied_bytes = self.copied_bytes.saturating_add(size.bytes);
        let over = if self.copied_nodes > self.limits.alias_nodes {
            Some(limit_reached(self.limits.alias_nodes, ALIAS_NODES_LIMIT))
        } else if self.copied_bytes > self.limits.alias_bytes {
            Some(limit_reached(self.limits.alias_bytes, ALIAS_BYTES_LIMIT))
        } else {
            None
        };
        match over {
            Some(limit) => Err(SyntaxError {
                pos,
                message: format!(
                    "anchors and aliases expand to too much (an alias bomb?); {limit}"
                ),
            }),
            None => Ok(()),
        }
    }

    fn check_key(&mut self, key: &Node) {
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

/// Adds what a merge key's value brings in, in PyYAML's order: a mapping's entries, or those
/// of a list of mappings, the last mapping first (so that earlier mappings win).
fn merge(value: Node, into: &mut Vec<(Node, Node)>) -> Result<(), SyntaxError> {
    let bad = |pos| SyntaxError {
        pos,
        message: "a merge key (<<) needs a mapping or a list of mappings".into(),
    };
    match value.value {
        Value::Map(entries) => into.extend(entries),
        Value::Seq(items) => {
            if let Some(item) = items.iter().find(|i| !matches!(i.value, Value::Map(_))) {
                return Err(bad(item.pos));
            }
            for item in items.into_iter().rev() {
                if let Value::Map(entries) = item.value {
                    into.extend(entries);
                }
            }
        }
        _ => return Err(bad(value.pos)),
    }
    Ok(())
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

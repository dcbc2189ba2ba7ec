//! Calico's label selector language: parsing with error columns, evaluation against a label map,
//! and the rewrites the policy IR needs (prefixing label keys for namespace and service-account
//! selectors, AND-ing in namespace scope).
//!
//! Grammar, loosest binding first (as Calico's parser has it):
//!
//! ```text
//! or    := and ( "||" and )*
//! and   := op ( "&&" op )*
//! op    := "!"* ( "(" or ")" | all() | global() | has(KEY)
//!               | KEY ( "==" | "!=" | contains | "starts with" | "ends with" ) STRING
//!               | KEY ( in | "not in" ) "{" [ STRING ( "," STRING )* [","] ] "}" )
//! ```
//!
//! Keys are letters, digits, `_ . / -`; strings are in single or double quotes, with no escapes.
//! An empty selector means `all()`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The label every namespaced entity carries with its namespace's name.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// The label a workload endpoint carries with its orchestrator (set even when empty).
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
/// The label a workload endpoint carries with its service account's name.
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";
/// Prefix of the labels an entity inherits from its namespace.
pub const NAMESPACE_LABEL_PREFIX: &str = "pcns.";
/// Prefix of the labels an endpoint inherits from its service account.
pub const SERVICE_ACCOUNT_LABEL_PREFIX: &str = "pcsa.";
/// Label (under the prefixes above) that holds the namespace's or service account's own name.
pub const NAME_LABEL: &str = "projectcalico.org/name";

/// Calico refuses longer label keys in selectors.
const MAX_KEY_LEN: usize = 512;

/// How deep parentheses may nest. The parser, and everything that walks a selector after it
/// (evaluation, printing, the rewrites below), recurses once per level, so a selector nested
/// thousands deep would overflow the stack; hand-written and generated selectors alike stay
/// within a handful of levels, since `&&` and `||` chains need none.
pub const MAX_NESTING: usize = 64;

/// A parsed selector. `Display` prints a canonical form that parses back to an equal selector.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    root: Node,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Node {
    All,
    Global,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Not(Box<Node>),
    /// Two or more terms, none of them an `And`.
    And(Vec<Node>),
    /// Two or more terms, none of them an `Or`.
    Or(Vec<Node>),
}

/// Why a selector did not parse, and where: `column` counts characters of the selector from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct SelectorError {
    pub column: usize,
    pub message: String,
}

impl Selector {
    /// Parses Calico's selector syntax; the empty string (or only spaces) means `all()`.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let tokens = tokenize(input)?;
        let mut parser = Parser { tokens, pos: 0 };
        if parser.peek().tok == Tok::Eof {
            return Ok(Selector::all());
        }
        let root = parser.or(0)?;
        let next = parser.peek();
        if next.tok != Tok::Eof {
            let message = if next.tok == Tok::RParen {
                "this ')' has no matching '('".to_string()
            } else {
                format!(
                    "unexpected {} after a complete expression; join expressions with && or ||",
                    next.tok.describe()
                )
            };
            return Err(SelectorError {
                column: next.column,
                message,
            });
        }
        Ok(Selector { root })
    }

    /// Matches everything.
    pub fn all() -> Selector {
        Selector { root: Node::All }
    }

    /// `key == 'value'`.
    pub fn label_eq(key: &str, value: &str) -> Selector {
        Selector {
            root: Node::Eq(key.to_string(), value.to_string()),
        }
    }

    /// `has(key)`.
    pub fn has(key: &str) -> Selector {
        Selector {
            root: Node::Has(key.to_string()),
        }
    }

    /// `key in { values }`.
    pub fn label_in<I: IntoIterator<Item = S>, S: Into<String>>(key: &str, values: I) -> Selector {
        Selector {
            root: Node::In(
                key.to_string(),
                values.into_iter().map(Into::into).collect(),
            ),
        }
    }

    /// `key not in { values }`: also matches entities without the label.
    pub fn label_not_in<I: IntoIterator<Item = S>, S: Into<String>>(
        key: &str,
        values: I,
    ) -> Selector {
        Selector {
            root: Node::NotIn(
                key.to_string(),
                values.into_iter().map(Into::into).collect(),
            ),
        }
    }

    /// True for the selector that matches everything (`all()` or empty).
    pub fn is_all(&self) -> bool {
        self.root == Node::All
    }

    /// Both selectors must match. `all()` on either side disappears.
    pub fn and(self, other: Selector) -> Selector {
        match (self.root, other.root) {
            (Node::All, root) | (root, Node::All) => Selector { root },
            (a, b) => Selector {
                root: join(Node::And, a, b),
            },
        }
    }

    /// Either selector may match.
    pub fn or(self, other: Selector) -> Selector {
        Selector {
            root: join(Node::Or, self.root, other.root),
        }
    }

    /// Matches what `self` does not.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Selector {
        Selector {
            root: negate(self.root),
        }
    }

    /// Evaluates the selector against an entity's labels. `global()` matches entities that are
    /// not in a namespace (no `projectcalico.org/namespace` label).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.root.matches(labels)
    }

    /// The same selector with `prefix` put in front of every label key, as Calico does to turn a
    /// namespace selector into a selector on an entity's `pcns.` labels.
    pub fn prefix_labels(&self, prefix: &str) -> Selector {
        Selector {
            root: self.root.map_keys(&|k| format!("{prefix}{k}")),
        }
    }

    /// A `key == 'value'` every match must satisfy (the root, or a term of a root `&&`), for
    /// indexes that look up by label before evaluating whole selectors.
    pub fn required_label(&self) -> Option<(&str, &str)> {
        fn eq(n: &Node) -> Option<(&str, &str)> {
            match n {
                Node::Eq(k, v) => Some((k.as_str(), v.as_str())),
                _ => None,
            }
        }
        match &self.root {
            Node::And(terms) => terms.iter().find_map(eq),
            n => eq(n),
        }
    }

    /// True if `global()` appears anywhere.
    pub fn uses_global(&self) -> bool {
        self.root.any(&|n| matches!(n, Node::Global))
    }

    /// True if the selector is exactly `global()`.
    pub fn is_global(&self) -> bool {
        self.root == Node::Global
    }

    /// Every label key the selector looks at, sorted.
    pub fn label_keys(&self) -> BTreeSet<&str> {
        let mut keys = BTreeSet::new();
        self.root.collect_keys(&mut keys);
        keys
    }

    /// Rewrites a namespace selector into a selector on entities, the way Calico does: keys get
    /// the `pcns.` prefix, `all()` becomes "is in some namespace" and `global()` becomes "is in
    /// no namespace".
    pub fn to_entity_namespace_selector(&self) -> Selector {
        let prefixed = self
            .root
            .map_keys(&|k| format!("{NAMESPACE_LABEL_PREFIX}{k}"));
        Selector {
            root: prefixed.replace_leaves(&|n| match n {
                Node::All => Some(Node::Has(NAMESPACE_LABEL.to_string())),
                Node::Global => Some(negate(Node::Has(NAMESPACE_LABEL.to_string()))),
                _ => None,
            }),
        }
    }

    /// Rewrites a service-account selector into a selector on endpoints: keys get the `pcsa.`
    /// prefix and `all()` becomes "has some service account".
    pub fn to_entity_service_account_selector(&self) -> Selector {
        let prefixed = self
            .root
            .map_keys(&|k| format!("{SERVICE_ACCOUNT_LABEL_PREFIX}{k}"));
        Selector {
            root: prefixed.replace_leaves(&|n| match n {
                Node::All => Some(Node::Has(SERVICE_ACCOUNT_LABEL.to_string())),
                _ => None,
            }),
        }
    }
}

impl Default for Selector {
    fn default() -> Self {
        Selector::all()
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Selector, SelectorError> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({:?})", self.to_string())
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Selector::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Combines two nodes under `And` or `Or`, flattening nested nodes of the same kind so that the
/// canonical printing parses back to the same tree.
fn join(make: fn(Vec<Node>) -> Node, a: Node, b: Node) -> Node {
    join_all(make, vec![a, b])
}

/// Combines any number of terms as `join` does two, in one pass (joining a long chain two at
/// a time would copy the terms so far at each step): one term is itself, none is `all()`. A
/// first term of the same kind lends its terms' vector, so that `and` or `or` in a loop (a
/// Kubernetes selector's matchLabels, one at a time) adds each term in constant time.
fn join_all(make: fn(Vec<Node>) -> Node, terms: Vec<Node>) -> Node {
    if terms.len() <= 1 {
        return terms.into_iter().next().unwrap_or(Node::All);
    }
    // The terms of a node of the kind being made; any other node as it is.
    let inner = |n: Node| -> Result<Vec<Node>, Node> {
        match (make(Vec::new()), n) {
            (Node::And(_), Node::And(inner)) | (Node::Or(_), Node::Or(inner)) => Ok(inner),
            (_, n) => Err(n),
        }
    };
    let mut flat: Vec<Node> = Vec::new();
    for n in terms {
        match inner(n) {
            Ok(terms) if flat.is_empty() => flat = terms,
            Ok(terms) => flat.extend(terms),
            Err(n) => flat.push(n),
        }
    }
    make(flat)
}

fn negate(n: Node) -> Node {
    match n {
        Node::Not(inner) => *inner,
        n => Node::Not(Box::new(n)),
    }
}

impl Node {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let get = |k: &String| labels.get(k).map(String::as_str);
        match self {
            Node::All => true,
            Node::Global => !labels.contains_key(NAMESPACE_LABEL),
            Node::Has(k) => labels.contains_key(k),
            Node::Eq(k, v) => get(k) == Some(v.as_str()),
            Node::Ne(k, v) => get(k) != Some(v.as_str()),
            Node::Contains(k, v) => get(k).is_some_and(|l| l.contains(v.as_str())),
            Node::StartsWith(k, v) => get(k).is_some_and(|l| l.starts_with(v.as_str())),
            Node::EndsWith(k, v) => get(k).is_some_and(|l| l.ends_with(v.as_str())),
            Node::In(k, set) => get(k).is_some_and(|l| set.contains(l)),
            Node::NotIn(k, set) => !get(k).is_some_and(|l| set.contains(l)),
            Node::Not(n) => !n.matches(labels),
            Node::And(ns) => ns.iter().all(|n| n.matches(labels)),
            Node::Or(ns) => ns.iter().any(|n| n.matches(labels)),
        }
    }

    fn map_keys(&self, f: &dyn Fn(&str) -> String) -> Node {
        match self {
            Node::All => Node::All,
            Node::Global => Node::Global,
            Node::Has(k) => Node::Has(f(k)),
            Node::Eq(k, v) => Node::Eq(f(k), v.clone()),
            Node::Ne(k, v) => Node::Ne(f(k), v.clone()),
            Node::Contains(k, v) => Node::Contains(f(k), v.clone()),
            Node::StartsWith(k, v) => Node::StartsWith(f(k), v.clone()),
            Node::EndsWith(k, v) => Node::EndsWith(f(k), v.clone()),
            Node::In(k, s) => Node::In(f(k), s.clone()),
            Node::NotIn(k, s) => Node::NotIn(f(k), s.clone()),
            Node::Not(n) => Node::Not(Box::new(n.map_keys(f))),
            Node::And(ns) => Node::And(ns.iter().map(|n| n.map_keys(f)).collect()),
            Node::Or(ns) => Node::Or(ns.iter().map(|n| n.map_keys(f)).collect()),
        }
    }

    /// Replaces the leaves for which `f` returns a node, keeping the tree canonical.
    fn replace_leaves(&self, f: &dyn Fn(&Node) -> Option<Node>) -> Node {
        match self {
            Node::Not(n) => negate(n.replace_leaves(f)),
            Node::And(ns) => join_all(Node::And, ns.iter().map(|n| n.replace_leaves(f)).collect()),
            Node::Or(ns) => join_all(Node::Or, ns.iter().map(|n| n.replace_leaves(f)).collect()),
            leaf => f(leaf).unwrap_or_else(|| leaf.clone()),
        }
    }

    fn any(&self, f: &dyn Fn(&Node) -> bool) -> bool {
        f(self)
            || match self {
                Node::Not(n) => n.any(f),
                Node::And(ns) | Node::Or(ns) => ns.iter().any(|n| n.any(f)),
                _ => false,
            }
    }

    fn collect_keys<'a>(&'a self, keys: &mut BTreeSet<&'a str>) {
        match self {
            Node::All | Node::Global => {}
            Node::Has(k)
            | Node::Eq(k, _)
            | Node::Ne(k, _)
            | Node::Contains(k, _)
            | Node::StartsWith(k, _)
            | Node::EndsWith(k, _)
            | Node::In(k, _)
            | Node::NotIn(k, _) => {
                keys.insert(k);
            }
            Node::Not(n) => n.collect_keys(keys),
            Node::And(ns) | Node::Or(ns) => ns.iter().for_each(|n| n.collect_keys(keys)),
        }
    }

    fn is_atom(&self) -> bool {
        matches!(self, Node::All | Node::Global | Node::Has(_))
    }
}

/// Quotes a value with single quotes, or double quotes when it contains a single quote (the
/// language has no escapes, so a value with both kinds cannot be written).
fn quoted(v: &str) -> String {
    if v.contains('\'') {
        format!("\"{v}\"")
    } else {
        format!("'{v}'")
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &BTreeSet<String>| s.iter().map(|v| quoted(v)).collect::<Vec<_>>().join(", ");
        match self {
            Node::All => f.write_str("all()"),
            Node::Global => f.write_str("global()"),
            Node::Has(k) => write!(f, "has({k})"),
            Node::Eq(k, v) => write!(f, "{k} == {}", quoted(v)),
            Node::Ne(k, v) => write!(f, "{k} != {}", quoted(v)),
            Node::Contains(k, v) => write!(f, "{k} contains {}", quoted(v)),
            Node::StartsWith(k, v) => write!(f, "{k} starts with {}", quoted(v)),
            Node::EndsWith(k, v) => write!(f, "{k} ends with {}", quoted(v)),
            Node::In(k, s) => write!(f, "{k} in {{{}}}", set(s)),
            Node::NotIn(k, s) => write!(f, "{k} not in {{{}}}", set(s)),
            Node::Not(n) if n.is_atom() => write!(f, "!{n}"),
            Node::Not(n) => write!(f, "!({n})"),
            Node::And(ns) => {
                for (i, n) in ns.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" && ")?;
                    }
                    match n {
                        Node::Or(_) => write!(f, "({n})")?,
                        n => write!(f, "{n}")?,
                    }
                }
                Ok(())
            }
            Node::Or(ns) => {
                for (i, n) in ns.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" || ")?;
                    }
                    write!(f, "{n}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    Not,
    And,
    Or,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    All,
    Global,
    Has(String),
    Label(String),
    Str(String),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::Comma => "','".into(),
            Tok::Eq => "'=='".into(),
            Tok::Ne => "'!='".into(),
            Tok::Not => "'!'".into(),
            Tok::And => "'&&'".into(),
            Tok::Or => "'||'".into(),
            Tok::In => "'in'".into(),
            Tok::NotIn => "'not in'".into(),
            Tok::Contains => "'contains'".into(),
            Tok::StartsWith => "'starts with'".into(),
            Tok::EndsWith => "'ends with'".into(),
            Tok::All => "all()".into(),
            Tok::Global => "global()".into(),
            Tok::Has(k) => format!("has({k})"),
            Tok::Label(k) => format!("label {k:?}"),
            Tok::Str(v) => format!("string {}", quoted(v)),
            Tok::Eof => "end of selector".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based character column where the token starts.
    column: usize,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

fn tokenize(input: &str) -> Result<Vec<Token>, SelectorError> {
    let chars: Vec<char> = input.chars().collect();
    let err = |i: usize, message: String| SelectorError {
        column: i + 1,
        message,
    };
    // Calico skips spaces and tabs only; weft also skips line breaks, which YAML block scalars
    // keep, so that a long selector can be folded over lines.
    let skip_ws = |mut i: usize| {
        while i < chars.len() && chars[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let word_at = |i: usize, word: &str| -> bool {
        let w: Vec<char> = word.chars().collect();
        chars.len() >= i + w.len() && chars[i..i + w.len()] == w[..]
    };
    // A keyword ends at a character that cannot continue a label.
    let boundary = |i: usize| i >= chars.len() || !is_key_char(chars[i]);
    let key_at = |i: usize| -> Result<(String, usize), SelectorError> {
        let mut end = i;
        while end < chars.len() && is_key_char(chars[end]) {
            end += 1;
        }
        if end == i {
            let found = chars
                .get(i)
                .map_or("the end of the selector".to_string(), |c| format!("{c:?}"));
            return Err(err(
                i,
                format!(
                    "expected a label key (letters, digits, '_', '.', '/', '-') but found {found}"
                ),
            ));
        }
        if end - i > MAX_KEY_LEN {
            return Err(err(
                i,
                format!("label key is longer than {MAX_KEY_LEN} characters"),
            ));
        }
        Ok((chars[i..end].iter().collect(), end))
    };

    let mut tokens: Vec<Token> = Vec::new();
    let mut i = skip_ws(0);
    while i < chars.len() {
        let start = i;
        let after_label = matches!(
            tokens.last(),
            Some(Token {
                tok: Tok::Label(_),
                ..
            })
        );
        let tok = match chars[i] {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '{' => {
                i += 1;
                Tok::LBrace
            }
            '}' => {
                i += 1;
                Tok::RBrace
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            q @ ('"' | '\'') => {
                let close = chars[i + 1..].iter().position(|&c| c == q).ok_or_else(|| {
                    err(
                        i,
                        format!("this string has no closing {q}; end it with {q} (there are no escapes)"),
                    )
                })?;
                let value: String = chars[i + 1..i + 1 + close].iter().collect();
                i += close + 2;
                Tok::Str(value)
            }
            '=' if word_at(i, "==") => {
                i += 2;
                Tok::Eq
            }
            '=' => return Err(err(i, "expected '==' but found a single '='".into())),
            '!' if word_at(i, "!=") => {
                i += 2;
                Tok::Ne
            }
            '!' => {
                i += 1;
                Tok::Not
            }
            '&' if word_at(i, "&&") => {
                i += 2;
                Tok::And
            }
            '&' => return Err(err(i, "expected '&&' but found a single '&'".into())),
            '|' if word_at(i, "||") => {
                i += 2;
                Tok::Or
            }
            '|' => return Err(err(i, "expected '||' but found a single '|'".into())),
            _ if after_label => {
                // Right after a label only an operator may follow.
                let two_words = |first: &str, second: &str| -> Option<usize> {
                    if !word_at(i, first) {
                        return None;
                    }
                    let j = skip_ws(i + first.chars().count());
                    (word_at(j, second) && boundary(j + second.chars().count()))
                        .then(|| j + second.chars().count())
                };
                if word_at(i, "contains") && boundary(i + 8) {
                    i += 8;
                    Tok::Contains
                } else if let Some(end) = two_words("starts", "with") {
                    i = end;
                    Tok::StartsWith
                } else if let Some(end) = two_words("ends", "with") {
                    i = end;
                    Tok::EndsWith
                } else if let Some(end) = two_words("not", "in") {
                    i = end;
                    Tok::NotIn
                } else if word_at(i, "in") && boundary(i + 2) {
                    i += 2;
                    Tok::In
                } else {
                    let label = match &tokens.last().map(|t| &t.tok) {
                        Some(Tok::Label(k)) => k.clone(),
                        _ => String::new(),
                    };
                    return Err(err(
                        i,
                        format!(
                            "expected an operator after label {label:?}: ==, !=, in, not in, contains, starts with or ends with"
                        ),
                    ));
                }
            }
            _ => {
                let call = |name: &str| word_at(i, name) && word_at(i + name.len(), "(");
                if call("has") {
                    let j = skip_ws(i + 4);
                    let (key, end) = key_at(j)?;
                    let close = skip_ws(end);
                    if close >= chars.len() || chars[close] != ')' {
                        return Err(err(close, format!("expected ')' to close has({key}")));
                    }
                    i = close + 1;
                    Tok::Has(key)
                } else if call("all") || call("global") {
                    let global = call("global");
                    let j = skip_ws(i + if global { 7 } else { 4 });
                    if j >= chars.len() || chars[j] != ')' {
                        let name = if global { "global" } else { "all" };
                        return Err(err(j, format!("expected ')': {name}() takes no arguments")));
                    }
                    i = j + 1;
                    if global {
                        Tok::Global
                    } else {
                        Tok::All
                    }
                } else {
                    let (key, end) = key_at(i)?;
                    i = end;
                    Tok::Label(key)
                }
            }
        };
        tokens.push(Token {
            tok,
            column: start + 1,
        });
        i = skip_ws(i);
    }
    tokens.push(Token {
        tok: Tok::Eof,
        column: chars.len() + 1,
    });
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    /// `depth`: how many parentheses enclose this expression.
    fn or(&mut self, depth: usize) -> Result<Node, SelectorError> {
        let mut terms = vec![self.and(depth)?];
        while self.peek().tok == Tok::Or {
            self.next();
            terms.push(self.and(depth)?);
        }
        Ok(join_all(Node::Or, terms))
    }

    fn and(&mut self, depth: usize) -> Result<Node, SelectorError> {
        let mut terms = vec![self.op(depth)?];
        while self.peek().tok == Tok::And {
            self.next();
            terms.push(self.op(depth)?);
        }
        Ok(join_all(Node::And, terms))
    }

    fn op(&mut self, depth: usize) -> Result<Node, SelectorError> {
        let mut negated = false;
        while self.peek().tok == Tok::Not {
            self.next();
            negated = !negated;
        }
        let t = self.next();
        let node = match t.tok {
            Tok::All => Node::All,
            Tok::Global => Node::Global,
            Tok::Has(k) => Node::Has(k),
            Tok::LParen => {
                if depth >= MAX_NESTING {
                    return Err(SelectorError {
                        column: t.column,
                        message: format!(
                            "parentheses nest more than {MAX_NESTING} deep here; write the expression with fewer levels (&& and || chains need no parentheses)"
                        ),
                    });
                }
                let inner = self.or(depth + 1)?;
                let close = self.next();
                if close.tok != Tok::RParen {
                    return Err(SelectorError {
                        column: close.column,
                        message: format!(
                            "expected ')' to close the '(' at column {} but found {}",
                            t.column,
                            close.tok.describe()
                        ),
                    });
                }
                inner
            }
            Tok::Label(key) => self.comparison(key)?,
            other => {
                return Err(SelectorError {
                    column: t.column,
                    message: format!(
                        "expected a label, has(), all(), global(), '!' or '(' but found {}",
                        other.describe()
                    ),
                })
            }
        };
        Ok(if negated { negate(node) } else { node })
    }

    fn comparison(&mut self, key: String) -> Result<Node, SelectorError> {
        let op = self.next();
        let k = key.clone();
        let expect_string = |p: &mut Parser, what: &str| -> Result<String, SelectorError> {
            let t = p.next();
            match t.tok {
                Tok::Str(v) => Ok(v),
                other => Err(SelectorError {
                    column: t.column,
                    message: format!(
                        "expected a quoted value after {what} but found {}; write e.g. {k} {what} 'value'",
                        other.describe()
                    ),
                }),
            }
        };
        Ok(match op.tok {
            Tok::Eq => Node::Eq(key, expect_string(self, "==")?),
            Tok::Ne => Node::Ne(key, expect_string(self, "!=")?),
            Tok::Contains => Node::Contains(key, expect_string(self, "contains")?),
            Tok::StartsWith => Node::StartsWith(key, expect_string(self, "starts with")?),
            Tok::EndsWith => Node::EndsWith(key, expect_string(self, "ends with")?),
            Tok::In | Tok::NotIn => {
                let open = self.next();
                if open.tok != Tok::LBrace {
                    return Err(SelectorError {
                        column: open.column,
                        message: format!(
                            "expected '{{' after {} but found {}; write e.g. {key} in {{'a', 'b'}}",
                            op.tok.describe(),
                            open.tok.describe()
                        ),
                    });
                }
                let mut values = BTreeSet::new();
                loop {
                    let t = self.next();
                    match t.tok {
                        Tok::RBrace => break,
                        Tok::Str(v) => {
                            values.insert(v);
                            let sep = self.next();
                            match sep.tok {
                                Tok::Comma => continue,
                                Tok::RBrace => break,
                                other => {
                                    return Err(SelectorError {
                                        column: sep.column,
                                        message: format!(
                                            "expected ',' or '}}' in the set but found {}",
                                            other.describe()
                                        ),
                                    })
                                }
                            }
                        }
                        other => {
                            return Err(SelectorError {
                                column: t.column,
                                message: format!(
                                    "expected a quoted value or '}}' in the set but found {}",
                                    other.describe()
                                ),
                            })
                        }
                    }
                }
                if op.tok == Tok::In {
                    Node::In(key, values)
                } else {
                    Node::NotIn(key, values)
                }
            }
            // The tokenizer only lets operators follow a label, so this is the end of input.
            other => {
                return Err(SelectorError {
                    column: op.column,
                    message: format!(
                        "expected an operator after label {key:?} but found {}",
                        other.describe()
                    ),
                })
            }
        })
    }
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

    fn m(sel: &str, pairs: &[(&str, &str)]) -> bool {
        Selector::parse(sel)
            .unwrap_or_else(|e| panic!("{sel}: {e}"))
            .matches(&labels(pairs))
    }

    fn err(sel: &str) -> (usize, String) {
        let e = Selector::parse(sel).unwrap_err();
        (e.column, e.message)
    }

    #[test]
    fn empty_means_all() {
        assert!(Selector::parse("").unwrap().is_all());
        assert!(Selector::parse("  \t").unwrap().is_all());
        assert!(m("", &[]));
        assert!(m("all()", &[("a", "b")]));
    }

    #[test]
    fn equality_and_inequality() {
        assert!(m("app == 'web'", &[("app", "web")]));
        assert!(m("app == \"web\"", &[("app", "web")]));
        assert!(!m("app == 'web'", &[("app", "db")]));
        assert!(!m("app == 'web'", &[]));
        assert!(m("app != 'web'", &[("app", "db")]));
        // A missing label is "not equal", as in Calico.
        assert!(m("app != 'web'", &[]));
        assert!(!m("app != 'web'", &[("app", "web")]));
    }

    #[test]
    fn sets() {
        assert!(m("tier in {'a', 'b'}", &[("tier", "b")]));
        assert!(!m("tier in {'a', 'b'}", &[("tier", "c")]));
        assert!(!m("tier in {'a'}", &[]));
        assert!(m("tier not in {'a', 'b'}", &[("tier", "c")]));
        assert!(m("tier not in {'a'}", &[]));
        assert!(!m("tier notin {'a'}", &[("tier", "a")]));
        assert!(!m("tier in {}", &[("tier", "a")]));
        assert!(m("tier in {'a',}", &[("tier", "a")]));
    }

    #[test]
    fn has_and_string_operators() {
        assert!(m("has(app)", &[("app", "")]));
        assert!(!m("has(app)", &[]));
        assert!(m("!has(app)", &[]));
        assert!(m("has( app )", &[("app", "x")]));
        assert!(m("name contains 'eb'", &[("name", "web")]));
        assert!(!m("name contains 'x'", &[]));
        assert!(m("name starts with 'we'", &[("name", "web")]));
        assert!(!m("name starts with 'eb'", &[("name", "web")]));
        assert!(m("name ends with 'eb'", &[("name", "web")]));
        assert!(!m("name ends  with 'we'", &[("name", "web")]));
    }

    #[test]
    fn keys_may_hold_dots_slashes_and_dashes() {
        assert!(m("k8s.io/app-name_x == 'v'", &[("k8s.io/app-name_x", "v")]));
        // Words that are operators elsewhere are fine as keys.
        assert!(m("has == 'x'", &[("has", "x")]));
        assert!(m("in in {'x'}", &[("in", "x")]));
    }

    #[test]
    fn global_matches_entities_outside_namespaces() {
        assert!(m("global()", &[("app", "x")]));
        assert!(!m("global()", &[(NAMESPACE_LABEL, "prod")]));
        assert!(Selector::parse("global()").unwrap().is_global());
        assert!(Selector::parse("a == 'b' || global()")
            .unwrap()
            .uses_global());
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        // a || b && c == a || (b && c)
        let s = "a == '1' || b == '1' && c == '1'";
        assert!(m(s, &[("a", "1")]));
        assert!(!m(s, &[("b", "1")]));
        assert!(m(s, &[("b", "1"), ("c", "1")]));
        let s = "(a == '1' || b == '1') && c == '1'";
        assert!(!m(s, &[("a", "1")]));
        assert!(m(s, &[("a", "1"), ("c", "1")]));
    }

    #[test]
    fn negation_applies_to_one_operation() {
        // !a == 'x' && b == 'y' is (!(a == 'x')) && b == 'y'
        let s = "!a == 'x' && b == 'y'";
        assert!(m(s, &[("b", "y")]));
        assert!(!m(s, &[("a", "x"), ("b", "y")]));
        assert!(m("!!has(a)", &[("a", "1")]));
        assert!(m("!(a == '1' || b == '1')", &[("c", "1")]));
        assert!(!m("!(a == '1' || b == '1')", &[("b", "1")]));
    }

    #[test]
    fn display_is_canonical_and_reparses() {
        for s in [
            "app == 'web'",
            "a == '1' || b == '1' && c == '1'",
            "(a == '1' || b == '1') && !(c in {'x', 'y'})",
            "!has(x) && y not in {\"it's\"} || z starts with 'q'",
            "a ends with 'b' && ((c contains 'd'))",
            "!!(a == 'b')",
            "global() || all()",
            "!a != 'b'",
        ] {
            let sel = Selector::parse(s).unwrap();
            let printed = sel.to_string();
            let again = Selector::parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
            assert_eq!(sel, again, "{s} printed as {printed}");
            assert_eq!(printed, again.to_string());
        }
        assert_eq!(
            Selector::parse("(a=='1'||b=='2')&&c in {'y','x'}")
                .unwrap()
                .to_string(),
            "(a == '1' || b == '2') && c in {'x', 'y'}"
        );
        assert_eq!(
            Selector::parse("a == '1' && (b == '2' && c == '3')")
                .unwrap()
                .to_string(),
            "a == '1' && b == '2' && c == '3'"
        );
        assert_eq!(
            Selector::parse("v == \"it's\"").unwrap().to_string(),
            "v == \"it's\""
        );
    }

    #[test]
    fn and_drops_all_and_flattens() {
        let a = Selector::parse("a == '1'").unwrap();
        let b = Selector::parse("b == '1' && c == '1'").unwrap();
        assert_eq!(Selector::all().and(a.clone()), a);
        assert_eq!(a.clone().and(Selector::all()), a);
        let ab = a.and(b);
        assert_eq!(ab.to_string(), "a == '1' && b == '1' && c == '1'");
        assert_eq!(ab, Selector::parse(&ab.to_string()).unwrap());
        let or = Selector::parse("x == '1' || y == '1'").unwrap();
        let combined = or.and(Selector::has("z"));
        assert_eq!(combined.to_string(), "(x == '1' || y == '1') && has(z)");
        assert!(combined.matches(&labels(&[("y", "1"), ("z", "")])));
        assert!(!combined.matches(&labels(&[("y", "1")])));
    }

    #[test]
    fn prefixing_rewrites_every_key() {
        let s = Selector::parse("env == 'prod' && !has(x) || t in {'a'}").unwrap();
        let p = s.prefix_labels("pcns.");
        assert_eq!(
            p.to_string(),
            "pcns.env == 'prod' && !has(pcns.x) || pcns.t in {'a'}"
        );
        assert!(p.matches(&labels(&[("pcns.env", "prod")])));
        assert!(!p.matches(&labels(&[("env", "prod")])));
        assert_eq!(
            p.label_keys().into_iter().collect::<Vec<_>>(),
            vec!["pcns.env", "pcns.t", "pcns.x"]
        );
    }

    #[test]
    fn namespace_selector_rewrite_follows_calico() {
        let all = Selector::parse("all()")
            .unwrap()
            .to_entity_namespace_selector();
        assert_eq!(all.to_string(), "has(projectcalico.org/namespace)");
        let global = Selector::parse("global()")
            .unwrap()
            .to_entity_namespace_selector();
        assert_eq!(global.to_string(), "!has(projectcalico.org/namespace)");
        let named = Selector::parse("projectcalico.org/name == 'shop'")
            .unwrap()
            .to_entity_namespace_selector();
        assert_eq!(named.to_string(), "pcns.projectcalico.org/name == 'shop'");
        let sa = Selector::parse("all()")
            .unwrap()
            .to_entity_service_account_selector();
        assert_eq!(sa.to_string(), "has(projectcalico.org/serviceaccount)");
    }

    #[test]
    fn error_columns_point_at_the_problem() {
        assert_eq!(err("app = 'web'").0, 5);
        assert_eq!(err("app == web").0, 8);
        assert!(err("app == web").1.contains("quoted value after =="));
        assert_eq!(err("app == 'web").0, 8);
        assert!(err("app == 'web").1.contains("no closing '"));
        assert_eq!(err("app 'web'").0, 5);
        assert!(err("app 'web'").1.contains("operator after label \"app\""));
        assert_eq!(err("a == 'b' & c == 'd'").0, 10);
        assert_eq!(err("a == 'b' | c == 'd'").0, 10);
        assert_eq!(err("a == 'b' &&").0, 12);
        assert!(err("a == 'b' &&").1.contains("end of selector"));
        assert_eq!(err("(a == 'b'").0, 10);
        assert!(err("(a == 'b'").1.contains("column 1"));
        assert_eq!(err("a == 'b')").0, 9);
        assert_eq!(err("a == 'b' c == 'd'").0, 10);
        assert_eq!(err("a in 'x'").0, 6);
        assert_eq!(err("a in {'x' 'y'}").0, 11);
        assert_eq!(err("a in {x}").0, 7);
        assert_eq!(err("has(a").0, 6);
        assert_eq!(err("has()").0, 5);
        assert_eq!(err("all(x)").0, 5);
        assert_eq!(err("@").0, 1);
        // Columns count characters, not bytes.
        assert_eq!(err("é == 'x'").0, 1);
        assert_eq!(err("a == 'é' b").0, 10);
        let long = "k".repeat(513);
        assert!(err(&format!("has({long})")).1.contains("longer than 512"));
    }

    #[test]
    fn nesting_past_the_limit_is_refused_at_the_parenthesis_that_goes_too_deep() {
        let nested = |depth: usize| format!("{}a == 'b'{}", "(".repeat(depth), ")".repeat(depth));
        assert!(m(&nested(MAX_NESTING), &[("a", "b")]));
        // 5,000 deep overflowed the stack before there was a limit.
        for depth in [MAX_NESTING + 1, 5_000, 100_000] {
            let (column, message) = err(&nested(depth));
            assert_eq!(column, MAX_NESTING + 1, "{message}");
            assert!(message.contains("more than 64 deep"), "{message}");
        }
        // Each level as deep as a tree can go: a negation, a chain of the other kind.
        let mut sel = "a == 'x'".to_string();
        for i in 0..MAX_NESTING {
            let op = if i % 2 == 0 { "||" } else { "&&" };
            sel = format!("k{i} == 'v' {op} !({sel})");
        }
        let parsed = Selector::parse(&sel).unwrap();
        // Everything that walks the tree afterwards: printing, parsing the print, the rewrites,
        // evaluation, comparison.
        let again = Selector::parse(&parsed.to_string()).unwrap();
        assert_eq!(parsed, again);
        let ns = parsed.to_entity_namespace_selector();
        assert_eq!(ns, Selector::parse(&ns.to_string()).unwrap());
        // The label a == 'x' decides the innermost term, and every level passes it on: with
        // the odd levels' own labels set, the whole matches exactly when a == 'x'.
        let odd: Vec<(String, &str)> = (1..MAX_NESTING)
            .step_by(2)
            .map(|i| (format!("k{i}"), "v"))
            .collect();
        let mut with_a: BTreeMap<String, String> = odd
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let without_a = with_a.clone();
        with_a.insert("a".into(), "x".into());
        assert!(parsed.matches(&with_a));
        assert!(!parsed.matches(&without_a));
        assert_eq!(parsed.label_keys().len(), MAX_NESTING + 1);
        let too_deep = format!("k == 'v' || !({sel})");
        assert!(err(&too_deep).1.contains("more than 64 deep"));
    }

    #[test]
    fn long_chains_parse_in_linear_time() {
        // 200,000 terms took minutes when each `||` copied the terms before it; one pass
        // over them takes well under a second even unoptimised, so this bound only fails
        // on quadratic work.
        let n = 200_000;
        for op in [" || ", " && "] {
            let sel = (0..n)
                .map(|i| format!("a == 'v{i}'"))
                .collect::<Vec<_>>()
                .join(op);
            let started = std::time::Instant::now();
            let parsed = Selector::parse(&sel).unwrap();
            let rewritten = parsed.to_entity_namespace_selector();
            let took = started.elapsed();
            assert!(
                took < std::time::Duration::from_secs(20),
                "{n} terms joined by {op} took {took:?}"
            );
            assert_eq!(parsed.label_keys().len(), 1);
            assert_eq!(rewritten.to_string().matches(op).count(), n - 1);
            assert_eq!(parsed.matches(&labels(&[("a", "v199999")])), op == " || ");
        }
        // One term at a time, as a Kubernetes selector's matchLabels are joined.
        let started = std::time::Instant::now();
        let mut sel = Selector::all();
        for i in 0..n {
            sel = sel.and(Selector::label_eq(&format!("k{i}"), "v"));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert_eq!(sel.label_keys().len(), n);
    }

    #[test]
    fn serde_uses_the_canonical_string() {
        let sel = Selector::parse("a=='b'").unwrap();
        assert_eq!(serde_json::to_string(&sel).unwrap(), "\"a == 'b'\"");
        let back: Selector = serde_json::from_str("\"a == 'b'\"").unwrap();
        assert_eq!(back, sel);
        assert!(serde_json::from_str::<Selector>("\"a = 'b'\"").is_err());
    }
}

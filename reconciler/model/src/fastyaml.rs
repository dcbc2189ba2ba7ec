//! A reader for the YAML that manifests are written in, several times faster than libyaml
//! behind serde_yaml: block mappings and sequences, one-line flow collections, plain and quoted
//! one-line scalars, comments. It answers `None` for anything else (anchors, tags, block
//! scalars, multi-line scalars, directives, tabs...), and its deserializer fails on whatever it
//! would resolve differently from serde_yaml; the caller then reads the file with serde_yaml,
//! which also gives the positions of real errors. So on success it yields exactly what
//! serde_yaml would, only sooner: `tests::same_as_serde_yaml` holds the two to each other.
//!
//! Scalars resolve as serde_yaml resolves them (YAML 1.2 core schema): in a typed field a plain
//! scalar is the type's value; where the type asks for "anything" (untagged enums, `Value`),
//! empty and `null`/`Null`/`NULL`/`~` are null, `true`/`false` (three spellings each) booleans,
//! decimal integers numbers, and other number forms (hex, octal, floats) are left to
//! serde_yaml.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// A node of a document. Keys are nodes too, though only scalars are read as keys.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'t> {
    Scalar(Cow<'t, str>, Style),
    Seq(Vec<Node<'t>>),
    Map(Vec<(Node<'t>, Node<'t>)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Style {
    Plain,
    Quoted,
}

/// Nesting deeper than this is left to serde_yaml (which refuses it past 128 levels), so that
/// this reader's recursion is bounded whatever the input.
const MAX_DEPTH: usize = 48;

/// YAML limits an implicit key to 1024 characters; longer ones are serde_yaml's to refuse.
const MAX_KEY: usize = 1000;

/// The documents of `text`, or None if it holds anything this reader leaves to serde_yaml.
pub(crate) fn documents(text: &str) -> Option<Vec<Node<'_>>> {
    if !printable(text) {
        return None;
    }
    let mut docs = Vec::new();
    let mut lines: Vec<Line<'_>> = Vec::new();
    let mut separators = 0;
    for raw in text.split('\n') {
        let content = raw.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = raw.len() - content.len();
        if indent == 0 {
            if content.trim_end_matches(' ') == "---" {
                if !lines.is_empty() {
                    docs.push(document(&mut lines)?);
                } else if separators > 0 || !docs.is_empty() {
                    return None; // an empty document
                }
                separators += 1;
                continue;
            }
            // Directives, document ends, content after a marker.
            if content.starts_with('%') || content.starts_with("...") || content.starts_with("---")
            {
                return None;
            }
        }
        lines.push(Line {
            indent,
            text: content.trim_end_matches(' '),
        });
    }
    if !lines.is_empty() {
        docs.push(document(&mut lines)?);
    } else if separators > 0 {
        return None;
    }
    Some(docs)
}

/// No tabs, carriage returns, byte order marks or characters YAML does not allow in a stream
/// (libyaml refuses those, so this reader must not accept them), and none of the line
/// breaks of YAML 1.1 that are not line feeds (NEL, LS, PS: libyaml breaks lines there, this
/// reader would not).
fn printable(text: &str) -> bool {
    let ascii_ok = text
        .bytes()
        .all(|b| (b >= 0x20 && b != 0x7f) || b == b'\n' || b >= 0x80);
    ascii_ok
        && (text.is_ascii()
            || !text.chars().any(|c| {
                matches!(
                    c,
                    '\u{80}'
                        ..='\u{9f}'
                            | '\u{2028}'
                            | '\u{2029}'
                            | '\u{feff}'
                            | '\u{fffe}'
                            | '\u{ffff}'
                )
            }))
}

fn document<'t>(lines: &mut Vec<Line<'t>>) -> Option<Node<'t>> {
    let mut p = Parser { lines, at: 0 };
    if p.lines[0].indent != 0 {
        return None;
    }
    let node = p.block(0, 0)?;
    if p.at != p.lines.len() {
        return None;
    }
    lines.clear();
    Some(node)
}

/// A line with content, less its indentation and trailing spaces.
struct Line<'t> {
    indent: usize,
    text: &'t str,
}

struct Parser<'l, 't> {
    lines: &'l mut Vec<Line<'t>>,
    at: usize,
}

impl<'t> Parser<'_, 't> {
    fn peek(&self) -> Option<&Line<'t>> {
        self.lines.get(self.at)
    }

    /// The block collection starting at the current line, whose indentation is `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> Option<Node<'t>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let line = self.peek()?;
        if line.indent != indent {
            return None;
        }
        if is_item(line.text) {
            self.sequence(indent, depth)
        } else {
            self.mapping(indent, depth)
        }
    }

    fn mapping(&mut self, indent: usize, depth: usize) -> Option<Node<'t>> {
        let mut entries = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || is_item(line.text) {
                return None;
            }
            let text = line.text;
            let (key, rest) = split_key(text)?;
            self.at += 1;
            let value = if rest.is_empty() {
                self.nested(indent, true, depth)?
            } else {
                let value = inline_value(rest)?;
                self.no_continuation(indent)?;
                value
            };
            entries.push((key, value));
        }
        Some(Node::Map(entries))
    }

    fn sequence(&mut self, indent: usize, depth: usize) -> Option<Node<'t>> {
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || !is_item(line.text) {
                // A mapping key at the sequence's own indentation ends a compact sequence
                // (`key:\n- a\nnext: b`); the caller decides whether that is allowed.
                if line.indent == indent && !is_item(line.text) {
                    break;
                }
                return None;
            }
            let rest = line.text[1..].trim_start_matches(' ');
            if rest.is_empty() {
                self.at += 1;
                items.push(self.nested(indent, false, depth)?);
                continue;
            }
            let column = indent + (line.text.len() - rest.len());
            if is_item(rest) {
                return None; // `- - a`
            }
            if split_key(rest).is_some() {
                // `- key: value` opens a mapping whose keys sit at `column`.
                self.lines[self.at] = Line {
                    indent: column,
                    text: rest,
                };
                items.push(self.mapping(column, depth + 1)?);
                continue;
            }
            self.at += 1;
            items.push(inline_value(rest)?);
            self.no_continuation(indent)?;
        }
        Some(Node::Seq(items))
    }

    /// The value of a key or item with nothing after it on its line: a block collection on the
    /// lines below, or null. A key's sequence may sit at the key's own indentation.
    fn nested(&mut self, indent: usize, compact_ok: bool, depth: usize) -> Option<Node<'t>> {
        match self.peek() {
            Some(l) if l.indent > indent => {
                let n = l.indent;
                self.block(n, depth + 1)
            }
            Some(l) if compact_ok && l.indent == indent && is_item(l.text) => {
                self.sequence(indent, depth + 1)
            }
            _ => Some(Node::Scalar(Cow::Borrowed(""), Style::Plain)),
        }
    }

    /// After a one-line value, a more indented line would continue a multi-line scalar (or be
    /// an error): either way serde_yaml's to read.
    fn no_continuation(&self, indent: usize) -> Option<()> {
        match self.peek() {
            Some(l) if l.indent > indent => None,
            _ => Some(()),
        }
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// `key: rest` or `key:` with a plain or quoted key; rest is what follows, comment removed.
fn split_key(text: &str) -> Option<(Node<'_>, &str)> {
    let (key, after) = match text.as_bytes()[0] {
        b'"' | b'\'' => {
            let (key, len) = quoted(text)?;
            (key, &text[len..])
        }
        _ => {
            if !plain_start(text) {
                return None;
            }
            let b = text.as_bytes();
            let mut i = 0;
            loop {
                if i == b.len() {
                    return None;
                }
                if b[i] == b':' && (i + 1 == b.len() || b[i + 1] == b' ') {
                    break;
                }
                if b[i] == b'#' && i > 0 && b[i - 1] == b' ' {
                    return None;
                }
                i += 1;
            }
            let key = text[..i].trim_end_matches(' ');
            if key.len() > MAX_KEY {
                return None;
            }
            (Node::Scalar(Cow::Borrowed(key), Style::Plain), &text[i..])
        }
    };
    let rest = after.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some((key, strip_comment_start(rest.trim_start_matches(' '))))
}

/// `rest` with nothing but a comment becomes empty.
fn strip_comment_start(rest: &str) -> &str {
    if rest.starts_with('#') {
        ""
    } else {
        rest
    }
}

/// Whether a plain scalar may start with `text` in block context.
fn plain_start(text: &str) -> bool {
    let b = text.as_bytes();
    match b[0] {
        b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%'
        | b'@' | b'`' | b'"' | b'\'' => false,
        b'-' | b'?' | b':' => b.len() > 1 && b[1] != b' ',
        _ => true,
    }
}

/// A value on the rest of a line: a flow collection, a quoted scalar or a plain scalar.
fn inline_value(text: &str) -> Option<Node<'_>> {
    match text.as_bytes()[0] {
        b'[' | b'{' => {
            let mut f = Flow { text, at: 0 };
            let node = f.node(0)?;
            f.spaces();
            f.rest_is_comment()?;
            Some(node)
        }
        b'"' | b'\'' => {
            let (node, len) = quoted(text)?;
            let after = &text[len..];
            let rest = after.trim_start_matches(' ');
            (rest.is_empty() || (rest.starts_with('#') && after.starts_with(' '))).then_some(node)
        }
        _ => {
            if !plain_start(text) || text.starts_with("? ") || text.starts_with(": ") {
                return None;
            }
            let b = text.as_bytes();
            let mut end = b.len();
            for i in 0..b.len() {
                if b[i] == b'#' && i > 0 && b[i - 1] == b' ' {
                    end = i;
                    break;
                }
                // `a: b` on a value's line is an error in YAML; serde_yaml says so.
                if b[i] == b':' && (i + 1 == b.len() || b[i + 1] == b' ') {
                    return None;
                }
            }
            let v = text[..end].trim_end_matches(' ');
            Some(Node::Scalar(Cow::Borrowed(v), Style::Plain))
        }
    }
}

/// A single- or double-quoted scalar that ends on its line, and the bytes it took.
fn quoted(text: &str) -> Option<(Node<'_>, usize)> {
    let b = text.as_bytes();
    let q = b[0];
    let mut i = 1;
    let mut owned: Option<String> = None;
    let mut run = 1; // start of the text not yet copied into `owned`
    loop {
        let c = *b.get(i)?;
        if c == q {
            if q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&text[run..=i]);
                i += 2;
                run = i;
                continue;
            }
            let value = match owned {
                None => Cow::Borrowed(&text[1..i]),
                Some(mut s) => {
                    s.push_str(&text[run..i]);
                    Cow::Owned(s)
                }
            };
            return Some((Node::Scalar(value, Style::Quoted), i + 1));
        }
        if c == b'\\' && q == b'"' {
            let unescaped = match *b.get(i + 1)? {
                b'\\' => '\\',
                b'"' => '"',
                b'/' => '/',
                b'n' => '\n',
                b't' => '\t',
                b'r' => '\r',
                b'0' => '\0',
                b' ' => ' ',
                _ => return None,
            };
            let s = owned.get_or_insert_with(String::new);
            s.push_str(&text[run..i]);
            s.push(unescaped);
            i += 2;
            run = i;
            continue;
        }
        i += 1;
    }
}

/// A flow collection on one line.
struct Flow<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Flow<'t> {
    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn spaces(&mut self) {
        while self.byte() == Some(b' ') {
            self.at += 1;
        }
    }

    fn rest_is_comment(&self) -> Option<()> {
        let rest = &self.text[self.at..];
        (rest.is_empty() || (rest.starts_with('#') && self.text[..self.at].ends_with(' ')))
            .then_some(())
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.spaces();
        (self.byte()? == c).then(|| self.at += 1)
    }

    fn node(&mut self, depth: usize) -> Option<Node<'t>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.spaces();
        match self.byte()? {
            b'[' => {
                self.at += 1;
                self.entries(b']', |f| f.node(depth + 1)).map(Node::Seq)
            }
            b'{' => {
                self.at += 1;
                self.entries(b'}', |f| {
                    let key = f.scalar()?;
                    f.expect(b':')?;
                    if f.byte()? != b' ' {
                        return None;
                    }
                    Some((key, f.node(depth + 1)?))
                })
                .map(Node::Map)
            }
            _ => self.scalar(),
        }
    }

    /// The entries of a flow collection up to `close` (its opening bracket read already), each
    /// read by `entry`, separated by commas.
    fn entries<T>(
        &mut self,
        close: u8,
        mut entry: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        loop {
            self.spaces();
            if self.byte()? == close {
                self.at += 1;
                return Some(out);
            }
            out.push(entry(self)?);
            self.spaces();
            match self.byte()? {
                b',' => self.at += 1,
                c if c == close => {}
                _ => return None, // `[a: b]` and the like
            }
        }
    }

    fn scalar(&mut self) -> Option<Node<'t>> {
        self.spaces();
        let rest = &self.text[self.at..];
        match rest.as_bytes().first()? {
            b'"' | b'\'' => {
                let (node, len) = quoted(rest)?;
                self.at += len;
                Some(node)
            }
            _ => {
                if !plain_start(rest) {
                    return None;
                }
                let b = rest.as_bytes();
                let mut end = 0;
                while end < b.len() {
                    match b[end] {
                        b',' | b'[' | b']' | b'{' | b'}' => break,
                        b':' => {
                            if b.get(end + 1) == Some(&b' ') {
                                break;
                            }
                            return None; // `a:b` or `a:` before an indicator
                        }
                        b'#' if end > 0 && b[end - 1] == b' ' => return None,
                        _ => end += 1,
                    }
                }
                let v = rest[..end].trim_end_matches(' ');
                if v.is_empty() {
                    return None;
                }
                self.at += end;
                Some(Node::Scalar(Cow::Borrowed(v), Style::Plain))
            }
        }
    }
}

/// Why this reader declined: never shown, the caller reads the file with serde_yaml instead.
#[derive(Debug)]
pub(crate) struct Declined(String);

impl fmt::Display for Declined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Declined {}

impl de::Error for Declined {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Declined(msg.to_string())
    }
}

fn declined<T>(why: &str) -> Result<T, Declined> {
    Err(Declined(why.to_string()))
}

/// Deserializes a node the way serde_yaml deserializes the same YAML.
pub(crate) struct De<'n, 't>(pub(crate) &'n Node<'t>);

impl<'n, 't> De<'n, 't> {
    fn plain(&self) -> Option<&'n str> {
        match self.0 {
            Node::Scalar(s, Style::Plain) => Some(s),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        self.plain().is_some_and(is_null)
    }

    fn visit_str<V: Visitor<'t>>(&self, v: V) -> Result<V::Value, Declined> {
        match self.0 {
            Node::Scalar(Cow::Borrowed(s), _) => v.visit_borrowed_str(s),
            Node::Scalar(Cow::Owned(s), _) => v.visit_str(s),
            _ => declined("not a scalar"),
        }
    }

    /// A plain decimal integer, as serde_yaml reads it; other number forms are declined.
    fn int<T: std::str::FromStr>(&self) -> Result<T, Declined> {
        let Some(s) = self.plain() else {
            return declined("not a plain scalar");
        };
        if !is_decimal(s) {
            return declined("not a decimal integer");
        }
        s.parse().or_else(|_| declined("out of range"))
    }
}

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn bool_of(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `0`, or digits not starting with 0, with an optional `-`: the integers this reader resolves
/// itself (YAML 1.2 reads `012` as a string, `+1`, `0x1f`, `0o17` and `0b1` as numbers).
fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

/// `012`, `-007`: digits after a leading zero, a string in YAML 1.2.
fn leading_zero_digits(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Whether serde_yaml could read a plain scalar as a number of a form not resolved here.
fn maybe_number(s: &str) -> bool {
    let b = s.as_bytes()[0];
    (b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.'))
        && (s.parse::<f64>().is_ok()
            || s.trim_start_matches(['+', '-']).starts_with("0x")
            || s.trim_start_matches(['+', '-']).starts_with("0o")
            || s.trim_start_matches(['+', '-']).starts_with("0b")
            || s.starts_with('+')
            || matches!(
                s.trim_start_matches(['+', '-']),
                ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN"
            ))
}

macro_rules! int_methods {
    ($($method:ident => $visit:ident($ty:ty),)*) => {
        $(
            fn $method<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
                v.$visit(self.int::<$ty>()?)
            }
        )*
    };
}

impl<'t> de::Deserializer<'t> for De<'_, 't> {
    type Error = Declined;

    fn deserialize_any<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        match self.0 {
            Node::Seq(items) => v.visit_seq(Items(items.iter())),
            Node::Map(entries) => v.visit_map(Entries {
                entries: entries.iter(),
                value: None,
            }),
            Node::Scalar(_, Style::Quoted) => self.visit_str(v),
            Node::Scalar(s, Style::Plain) => {
                if is_null(s) {
                    return v.visit_unit();
                }
                if let Some(b) = bool_of(s) {
                    return v.visit_bool(b);
                }
                if is_decimal(s) {
                    return match (s.parse::<u64>(), s.parse::<i64>()) {
                        (Ok(n), _) => v.visit_u64(n),
                        (_, Ok(n)) => v.visit_i64(n),
                        _ => declined("a wide integer"),
                    };
                }
                if leading_zero_digits(s) {
                    return self.visit_str(v);
                }
                if maybe_number(s) {
                    return declined("a number form left to serde_yaml");
                }
                self.visit_str(v)
            }
        }
    }

    fn deserialize_bool<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        match self.plain().and_then(bool_of) {
            Some(b) => v.visit_bool(b),
            None => declined("not a boolean"),
        }
    }

    int_methods! {
        deserialize_i8 => visit_i64(i64),
        deserialize_i16 => visit_i64(i64),
        deserialize_i32 => visit_i64(i64),
        deserialize_i64 => visit_i64(i64),
        deserialize_u8 => visit_u64(u64),
        deserialize_u16 => visit_u64(u64),
        deserialize_u32 => visit_u64(u64),
        deserialize_u64 => visit_u64(u64),
    }

    fn deserialize_f32<V: Visitor<'t>>(self, _: V) -> Result<V::Value, Declined> {
        declined("floats are left to serde_yaml")
    }

    fn deserialize_f64<V: Visitor<'t>>(self, _: V) -> Result<V::Value, Declined> {
        declined("floats are left to serde_yaml")
    }

    fn deserialize_char<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        self.visit_str(v)
    }

    fn deserialize_str<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        self.visit_str(v)
    }

    fn deserialize_string<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        self.visit_str(v)
    }

    fn deserialize_bytes<V: Visitor<'t>>(self, _: V) -> Result<V::Value, Declined> {
        declined("bytes")
    }

    fn deserialize_byte_buf<V: Visitor<'t>>(self, _: V) -> Result<V::Value, Declined> {
        declined("bytes")
    }

    fn deserialize_option<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        if self.is_null() {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        if self.is_null() {
            v.visit_unit()
        } else {
            declined("not null")
        }
    }

    fn deserialize_unit_struct<V: Visitor<'t>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Declined> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'t>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Declined> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        match self.0 {
            Node::Seq(items) => v.visit_seq(Items(items.iter())),
            Node::Scalar(s, Style::Plain) if s.is_empty() => v.visit_seq(Items([].iter())),
            _ => declined("not a sequence"),
        }
    }

    fn deserialize_tuple<V: Visitor<'t>>(self, _: usize, v: V) -> Result<V::Value, Declined> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'t>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, Declined> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        match self.0 {
            Node::Map(entries) => v.visit_map(Entries {
                entries: entries.iter(),
                value: None,
            }),
            Node::Scalar(s, Style::Plain) if s.is_empty() => v.visit_map(Entries {
                entries: [].iter(),
                value: None,
            }),
            _ => declined("not a mapping"),
        }
    }

    fn deserialize_struct<V: Visitor<'t>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Declined> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'t>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Declined> {
        // serde_yaml reads a scalar as a unit variant (other variants need YAML tags).
        match self.0 {
            Node::Scalar(s, _) if !s.is_empty() => {
                let s: &str = s;
                v.visit_enum(s.into_deserializer())
            }
            _ => declined("an enum that is not a scalar"),
        }
    }

    fn deserialize_identifier<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        self.visit_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        v.visit_unit()
    }

    fn deserialize_i128<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        v.visit_i128(self.int::<i128>()?)
    }

    fn deserialize_u128<V: Visitor<'t>>(self, v: V) -> Result<V::Value, Declined> {
        v.visit_u128(self.int::<u128>()?)
    }
}

struct Items<'n, 't>(std::slice::Iter<'n, Node<'t>>);

impl<'t> de::SeqAccess<'t> for Items<'_, 't> {
    type Error = Declined;

    fn next_element_seed<T: DeserializeSeed<'t>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Declined> {
        self.0.next().map(|n| seed.deserialize(De(n))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'n, 't> {
    entries: std::slice::Iter<'n, (Node<'t>, Node<'t>)>,
    value: Option<&'n Node<'t>>,
}

impl<'t> de::MapAccess<'t> for Entries<'_, 't> {
    type Error = Declined;

    fn next_key_seed<K: DeserializeSeed<'t>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Declined> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(De(k)).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'t>>(&mut self, seed: V) -> Result<V::Value, Declined> {
        match self.value.take() {
            Some(v) => seed.deserialize(De(v)),
            None => declined("a value before its key"),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every document this reader accepts reads, as serde_yaml's `Value`, exactly as serde_yaml
    /// reads it.
    fn same(text: &str) -> bool {
        let Some(docs) = documents(text) else {
            return false;
        };
        let theirs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(text)
            .map(|d| serde_yaml::Value::deserialize(d).expect("serde_yaml reads it"))
            .collect();
        assert_eq!(docs.len(), theirs.len(), "documents of {text:?}");
        for (node, theirs) in docs.iter().zip(&theirs) {
            match serde_yaml::Value::deserialize(De(node)) {
                Ok(ours) => assert_eq!(&ours, theirs, "in {text:?}"),
                Err(_) => return false,
            }
        }
        true
    }

    use serde::Deserialize;

    #[test]
    fn same_as_serde_yaml() {
        let accepted = [
            "a: 1\nb: two\nc:\n  d: [x, 'y', \"z\"]\n  e: {f: g, h: 10.0.0.1/32}\n",
            "k:\n- a\n- b: c\n  d: e\n-\n  f: g\nnext: 3\n",
            "list: []\nmap: {}\nempty:\nnull: ~\nt: true\nf: False\nneg: -5\nzero: 0\n",
            "s: 012\nip: 10.96.0.1\nport: 8080\nname: \"http\" # named\nq: 'it''s'\n",
            "a: b # comment\n# whole line\n\n  # indented comment\nc: d\n",
            "---\na: 1\n---\nb: 2\n",
            "a:\n  - x\n  - y\nb:\n    c: d\n",
            "esc: \"a\\\"b\\\\c\\n\"\nurl: http://x/y\n",
            "a: [[1, 2], [3]]\nb: {c: {d: e}}\n",
            "- a\n- b\n",
        ];
        for text in accepted {
            assert!(same(text), "declined {text:?}");
        }
    }

    #[test]
    fn leaves_the_rest_to_serde_yaml() {
        let declined = [
            "a: &x 1\nb: *x\n",
            "a: !tag 1\n",
            "a: |\n  text\n",
            "a: >\n  text\n",
            "a: plain\n  continued\n",
            "a: \"two\n  lines\"\n",
            "a:\tb\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: [1,\n  2]\n",
            "a: b: c\n",
            "? complex\n: key\n",
            "a: 1\n...\n",
            "--- a: 1\n",
            "---\n---\na: 1\n",
        ];
        for text in declined {
            assert!(documents(text).is_none(), "accepted {text:?}");
        }
        // Read, but resolved by serde_yaml: other number forms where the type takes anything.
        for text in ["a: 0x1f\n", "a: 1.5\n", "a: +3\n", "a: .inf\n", "a: 1e3\n"] {
            assert!(!same(text), "resolved {text:?} itself");
        }
    }

    #[test]
    fn deep_nesting_is_left_to_serde_yaml() {
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(&" ".repeat(i * 2));
            text.push_str("a:\n");
        }
        assert!(documents(&text).is_none());
        let flow = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
        assert!(documents(&flow).is_none());
    }

    use crate::rng::Rng;

    /// Scalars as manifests hold them, and some that look like other types.
    const WORDS: &[&str] = &[
        "http",
        "TCP",
        "app1",
        "10.96.0.1",
        "10.0.0.0/8",
        "8080",
        "0",
        "-3",
        "012",
        "true",
        "False",
        "null",
        "~",
        "yes",
        "1.5",
        "0x1f",
        "+4",
        "a:b",
        "a b",
        "x#y",
        "-x",
        "kns.team-01",
        "projectcalico.org/v3",
        "has(app)",
        "app == 'x'",
        "it's",
        "say \"hi\"",
        "é",
        ".inf",
        "1e3",
        "99999999999999999999",
        "[x]",
        "{y}",
        "a,b",
        "",
        "@x",
        "*x",
        "&x",
        "!x",
        "- x",
        "? x",
        ": x",
        "#x",
        "|",
        ">",
    ];

    /// A random scalar, written plain, single- or double-quoted.
    fn scalar(r: &mut Rng) -> String {
        let w = WORDS[r.below(WORDS.len())];
        match r.below(3) {
            0 => w.to_string(),
            1 => format!("'{}'", w.replace('\'', "''")),
            _ => format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\"")),
        }
    }

    fn key(r: &mut Rng) -> String {
        let keys = [
            "name", "port", "spec", "a b", "80", "x-y", "'q'", "\"d\"", "null",
        ];
        keys[r.below(keys.len())].to_string()
    }

    fn flow(r: &mut Rng, depth: usize) -> String {
        match if depth > 2 { 0 } else { r.below(3) } {
            0 => scalar(r),
            1 => {
                let items: Vec<String> = (0..r.below(4)).map(|_| flow(r, depth + 1)).collect();
                format!("[{}]", items.join(", "))
            }
            _ => {
                let items: Vec<String> = (0..r.below(4))
                    .map(|_| format!("{}: {}", key(r), flow(r, depth + 1)))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
        }
    }

    /// A block mapping or sequence at `indent`, in the styles kubectl and people write.
    fn block(r: &mut Rng, out: &mut String, indent: usize, depth: usize, seq: bool) {
        let pad = " ".repeat(indent);
        for i in 0..1 + r.below(4) {
            let head = if seq {
                format!("{pad}- ")
            } else {
                format!("{pad}{}:", key(r))
            };
            let comment = if r.below(8) == 0 { " # note" } else { "" };
            match if depth > 3 { r.below(2) } else { r.below(5) } {
                0 => {
                    let sep = if seq { "" } else { " " };
                    out.push_str(&format!("{head}{sep}{}{comment}\n", scalar(r)));
                }
                1 => {
                    let sep = if seq { "" } else { " " };
                    out.push_str(&format!("{head}{sep}{}{comment}\n", flow(r, 0)));
                }
                2 if seq => {
                    // `- key: value` with the mapping's other keys under the first.
                    let mut inner = String::new();
                    block(r, &mut inner, indent + 2, depth + 1, false);
                    out.push_str(&format!("{head}{}", &inner[indent + 2..]));
                }
                2 | 3 => {
                    out.push_str(&format!("{}{comment}\n", head.trim_end()));
                    let nested_seq = r.below(2) == 0;
                    // A key's sequence at the key's own indentation, as kubectl writes it.
                    let at = if nested_seq && !seq && r.below(2) == 0 {
                        indent
                    } else {
                        indent + 2 + 2 * r.below(2)
                    };
                    block(r, out, at, depth + 1, nested_seq);
                }
                _ => out.push_str(&format!("{}\n", head.trim_end())),
            }
            if i == 0 && r.below(10) == 0 {
                out.push_str("\n# a comment line\n");
            }
        }
    }

    #[test]
    fn generated_documents_read_as_serde_yaml_reads_them() {
        let (mut read, mut valid_docs) = (0, 0);
        let cases = 3000;
        for seed in 0..cases {
            let mut r = Rng(seed);
            let mut text = String::new();
            for d in 0..1 + r.below(3) {
                if d > 0 || r.below(2) == 0 {
                    text.push_str("---\n");
                }
                let seq = r.below(5) == 0;
                block(&mut r, &mut text, 0, 0, seq);
            }
            // Only YAML serde_yaml reads (and so a user could have loaded) is compared.
            let valid = serde_yaml::Deserializer::from_str(&text)
                .all(|d| serde_yaml::Value::deserialize(d).is_ok());
            if !valid {
                assert!(
                    documents(&text).is_none_or(|docs| docs
                        .iter()
                        .any(|n| serde_yaml::Value::deserialize(De(n)).is_err())),
                    "seed {seed}: serde_yaml refuses what this reader accepts:\n{text}"
                );
                continue;
            }
            valid_docs += 1;
            if same(&text) {
                read += 1;
            } else if std::env::var_os("SHOW").is_some() {
                eprintln!("---- declined seed {seed}\n{text}");
            }
        }
        // Most of what serde_yaml reads is within this reader's subset: the test is not vacuous.
        eprintln!("{read} of {valid_docs} valid texts read here");
        assert!(
            read * 2 > valid_docs,
            "only {read} of {valid_docs} valid texts read here"
        );
    }
}

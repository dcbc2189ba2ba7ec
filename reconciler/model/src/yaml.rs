//! Where things are in a YAML file. yaml_serde reports a line and column for its own errors
//! (syntax, wrong types, unknown or missing fields) but exposes no positions for values that
//! deserialized fine. We get those the way yaml_serde itself does: deserialize the document again
//! with a seed that walks a path and returns an error when it reaches the node; yaml_serde stamps
//! the error with the node's start. No extra dependency, and valid input pays only for one cheap
//! header pass per document (which also yields the document's own start, by the same trick).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use smallvec::SmallVec;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

/// A line and column, both counted from 1 (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// One step of a path into a document. A key weft names (`spec`, `ingress`) is borrowed, not
/// copied: the validator makes a path for every field it looks at, wrong or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(Cow<'static, str>),
    Index(usize),
}

/// A path into a document, printed as `spec.ingress[0].source.nets[1]`. Paths this deep or
/// less live inline: making one for each field checked (most of them never printed) costs no
/// allocation, where a Vec of Strings cost one per step at each step (4 million of the 8
/// million allocations of loading 10,000 endpoints, policies and services).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(SmallVec<[Seg; 8]>);

impl Path {
    pub fn root() -> Path {
        Path(SmallVec::new())
    }

    /// `self` and then the key `k`: a name weft writes (`&'static str`, not copied) or one
    /// read from a document (a `String`).
    pub fn key(&self, k: impl Into<Cow<'static, str>>) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.into()));
        p
    }

    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// `self` followed by `rest`.
    pub fn join(&self, rest: &Path) -> Path {
        let mut p = self.clone();
        p.0.extend(rest.0.iter().cloned());
        p
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The message yaml_serde puts in errors raised by our own seeds.
const FOUND: &str = "weft: position probe";

/// Where `e` is in the text `lines` describes, as an editor counts (`Lines::editor_pos`).
fn pos_of(lines: &Lines<'_>, e: &serde_yaml::Error) -> Option<Pos> {
    e.location().map(|l| {
        lines.editor_pos(Pos {
            line: l.line(),
            column: l.column(),
        })
    })
}

/// `message` with each "line L column C" in it replaced by `f`'s position.
fn map_message_positions(message: &str, f: impl Fn(Pos) -> Pos) -> String {
    let number = |s: &str| -> Option<(usize, usize)> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        Some((s[..digits].parse().ok()?, digits))
    };
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "line ".len()..];
        let parsed = number(after).and_then(|(line, n)| {
            let tail = after[n..].strip_prefix(" column ")?;
            let (column, m) = number(tail)?;
            Some((Pos { line, column }, &tail[m..]))
        });
        match parsed {
            Some((p, tail)) => {
                let e = f(p);
                out.push_str(&format!("line {} column {}", e.line, e.column));
                rest = tail;
            }
            None => {
                out.push_str("line ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// What positions in a text need to be told as an editor tells them, found in one pass: the
/// parser breaks lines also at a carriage return alone, NEL, LS and PS (YAML 1.1), editors at
/// line feeds only; and the parser puts the end of a text without a final line break at the
/// start of a line past the last.
pub struct Lines<'t> {
    text: &'t str,
    /// Found when first asked: a locator is made for every file, most never asked.
    found: std::cell::OnceCell<Breaks>,
}

struct Breaks {
    /// The text has line breaks other than LF and CR LF.
    odd: bool,
    /// Where the text ends, as an editor counts.
    end: Pos,
}

impl<'t> Lines<'t> {
    pub fn new(text: &'t str) -> Lines<'t> {
        Lines {
            text,
            found: std::cell::OnceCell::new(),
        }
    }

    fn found(&self) -> &Breaks {
        self.found.get_or_init(|| {
            let text = self.text;
            let b = text.as_bytes();
            let odd = b
                .iter()
                .enumerate()
                .any(|(i, &c)| c == b'\r' && b.get(i + 1) != Some(&b'\n'))
                || (!text.is_ascii() && text.contains(['\u{85}', '\u{2028}', '\u{2029}']));
            let last = text.rfind('\n').map_or(0, |i| i + 1);
            let end = Pos {
                line: b.iter().filter(|&&c| c == b'\n').count() + 1,
                column: text[last..].chars().count() + 1,
            };
            Breaks { odd, end }
        })
    }

    /// Whether the text has line breaks other than LF and CR LF.
    fn odd(&self) -> bool {
        self.found().odd
    }

    /// `pos` as the parser counts lines made the position of the same character as an editor
    /// counts them (a CR LF is one break for both). The same position for a text with no
    /// other breaks, as nearly every file is; a position past the end is the end.
    pub fn editor_pos(&self, pos: Pos) -> Pos {
        let found = self.found();
        if !found.odd {
            return pos.min(found.end);
        }
        let (mut line, mut column) = (1, 1);
        let mut editor = Pos { line: 1, column: 1 };
        let mut chars = self.text.chars().peekable();
        while let Some(c) = chars.next() {
            if (line, column) >= (pos.line, pos.column) {
                break;
            }
            let crlf = c == '\r' && chars.peek() == Some(&'\n');
            if crlf {
                chars.next();
            }
            if crlf || matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}') {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
            if crlf || c == '\n' {
                editor.line += 1;
                editor.column = 1;
            } else {
                editor.column += 1;
            }
        }
        editor
    }
}

/// The position of the node at `path` in document `doc` of `text`. If the path leads nowhere
/// (a key that is absent, an index past the end) the position of the deepest node that exists
/// is returned, which is where the missing thing belongs.
#[cfg(test)]
pub fn locate(text: &str, doc: usize, path: &Path) -> Option<Pos> {
    locate_in(&Lines::new(text), doc, path)
}

/// `locate` in the text `lines` describes.
fn locate_in(lines: &Lines<'_>, doc: usize, path: &Path) -> Option<Pos> {
    let de = serde_yaml::Deserializer::from_str(lines.text).nth(doc)?;
    match Probe(&path.0).deserialize(de) {
        Ok(()) => None,
        Err(e) => pos_of(lines, &e),
    }
}

struct Probe<'p>(&'p [Seg]);

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0.split_first() {
            // Every visit method of `Found` fails, so yaml_serde reports this node's start.
            None => d.deserialize_any(Found),
            Some((Seg::Key(k), rest)) => d.deserialize_map(KeyWalker { key: k, rest }),
            Some((Seg::Index(i), rest)) => d.deserialize_seq(IndexWalker { index: *i, rest }),
        }
    }
}

struct Found;

impl Visitor<'_> for Found {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FOUND)
    }
}

struct KeyWalker<'p> {
    key: &'p str,
    rest: &'p [Seg],
}

impl<'de> Visitor<'de> for KeyWalker<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FOUND)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Loose>()? {
            if matches!(&key, Loose::Str(k) if k == self.key) {
                return map.next_value_seed(Probe(self.rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        // Not there: fail here, so the position is the mapping's.
        Err(de::Error::custom(FOUND))
    }
}

struct IndexWalker<'p> {
    index: usize,
    rest: &'p [Seg],
}

impl<'de> Visitor<'de> for IndexWalker<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FOUND)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for _ in 0..self.index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(FOUND));
            }
        }
        match seq.next_element_seed(Probe(self.rest))? {
            Some(()) => Ok(()),
            None => Err(de::Error::custom(FOUND)),
        }
    }
}

/// A scalar read as text whatever its YAML type; anything else is consumed and forgotten. Used
/// to read apiVersion, kind and names before we know which type to deserialize into.
#[derive(Debug, Clone, PartialEq)]
pub enum Loose {
    Str(String),
    Null,
    Other,
}

impl Loose {
    fn into_string(self) -> Option<String> {
        match self {
            Loose::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> de::Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Loose, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("anything")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Loose, E> {
                Ok(Loose::Str(s.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Loose, E> {
                Ok(Loose::Str(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Loose, E> {
                Ok(Loose::Str(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Loose, E> {
                Ok(Loose::Str(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Loose, E> {
                Ok(Loose::Str(b.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Loose, E> {
                Ok(Loose::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Loose, E> {
                Ok(Loose::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Loose, D::Error> {
                Loose::deserialize(d)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_enum<A: de::EnumAccess<'de>>(self, e: A) -> Result<Loose, A::Error> {
                let (_, v): (IgnoredAny, _) = e.variant()?;
                de::VariantAccess::newtype_variant::<IgnoredAny>(v)?;
                Ok(Loose::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// What the header pass learns about a resource before its type is known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// The entries of `items`, for `kind: List`.
    pub items: Option<Vec<Header>>,
    /// False if the document (or list item) is not a mapping at all.
    pub is_mapping: bool,
}

impl<'de> de::Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Header, D::Error> {
        d.deserialize_any(HeaderVisitor)
    }
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut h = Header {
            is_mapping: true,
            ..Header::default()
        };
        while let Some(key) = map.next_key::<Loose>()? {
            match key.into_string().as_deref() {
                Some("apiVersion") => h.api_version = map.next_value::<Loose>()?.into_string(),
                Some("kind") => h.kind = map.next_value::<Loose>()?.into_string(),
                Some("metadata") => {
                    let m = map.next_value::<MetaHeader>()?;
                    h.name = m.name;
                    h.namespace = m.namespace;
                }
                Some("items") => h.items = Some(map.next_value::<ItemHeaders>()?.0),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(h)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Header, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Header::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Header, E> {
        Ok(Header::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Header, E> {
        Ok(Header::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Header, E> {
        Ok(Header::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Header, E> {
        Ok(Header::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Header, E> {
        Ok(Header::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Header, E> {
        Ok(Header::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<Header, E> {
        Ok(Header::default())
    }
}

#[derive(Default)]
struct MetaHeader {
    name: Option<String>,
    namespace: Option<String>,
}

impl<'de> de::Deserialize<'de> for MetaHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MetaHeader, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetaHeader;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("metadata")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetaHeader, A::Error> {
                let mut m = MetaHeader::default();
                while let Some(key) = map.next_key::<Loose>()? {
                    match key.into_string().as_deref() {
                        Some("name") => m.name = map.next_value::<Loose>()?.into_string(),
                        Some("namespace") => m.namespace = map.next_value::<Loose>()?.into_string(),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(m)
            }
        }
        // Anything that is not a mapping is left for the typed pass to complain about.
        match Loose::deserialize_with_map(d, V) {
            Ok(m) => Ok(m),
            Err(e) => Err(e),
        }
    }
}

#[derive(Default)]
struct ItemHeaders(Vec<Header>);

impl<'de> de::Deserialize<'de> for ItemHeaders {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ItemHeaders, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ItemHeaders;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of resources")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ItemHeaders, A::Error> {
                let mut items = Vec::new();
                while let Some(h) = seq.next_element::<Header>()? {
                    items.push(h);
                }
                Ok(ItemHeaders(items))
            }
        }
        Loose::deserialize_with_seq(d, V)
    }
}

impl Loose {
    /// Runs `v` if the node is a mapping; any other node is consumed and yields the default.
    fn deserialize_with_map<'de, D, V>(d: D, v: V) -> Result<V::Value, D::Error>
    where
        D: Deserializer<'de>,
        V: Visitor<'de>,
        V::Value: Default,
    {
        d.deserialize_any(OrDefault(v))
    }

    fn deserialize_with_seq<'de, D, V>(d: D, v: V) -> Result<V::Value, D::Error>
    where
        D: Deserializer<'de>,
        V: Visitor<'de>,
        V::Value: Default,
    {
        d.deserialize_any(OrDefault(v))
    }
}

/// Delegates mappings and sequences to the inner visitor and turns every other node into the
/// default value, so that the header pass never fails on content.
struct OrDefault<V>(V);

impl<'de, V> Visitor<'de> for OrDefault<V>
where
    V: Visitor<'de>,
    V::Value: Default,
{
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(seq)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
}

/// One document of a file, as the header pass saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum DocHeader {
    /// Nothing but comments, or an explicit null.
    Empty,
    /// A node starting at `start`.
    Node { start: Pos, header: Header },
}

/// A YAML error with its position and a message without the position in it.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub pos: Option<Pos>,
    pub message: String,
}

/// The headers of the documents of `text` read from its lines, without the YAML parser, for
/// the common shape of a manifest: block mappings whose top-level keys start at column 0, plain
/// `apiVersion` and `kind` values, and a block `metadata` with plain `name` and `namespace`.
/// None for anything else (flow style, quoting, anchors, tags, directives, tabs, lists, empty
/// documents...): then `scan_headers` reads them. The loader parses each document afterwards
/// and checks what it found against this, so a wrong guess costs time, not correctness.
pub fn quick_headers(text: &str) -> Option<Vec<(Pos, Header)>> {
    fn plain(v: &str) -> Option<String> {
        let v = match v.find(" #") {
            Some(i) => &v[..i],
            None => v,
        }
        .trim_end_matches(' ');
        let ok = !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-' | b'_'));
        ok.then(|| v.to_string())
    }
    /// `key: rest` with a plain key.
    fn key_line(line: &str) -> Option<(&str, &str)> {
        let colon = line.find(':')?;
        let (key, rest) = (&line[..colon], &line[colon + 1..]);
        let ok = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-' | b'_'));
        (ok && (rest.is_empty() || rest.starts_with(' ')))
            .then(|| (key, rest.trim_start_matches(' ')))
    }
    if text.contains('\t') || text.contains('\r') {
        return None;
    }
    let mut docs: Vec<(Pos, Header)> = Vec::new();
    let mut current: Option<(Pos, Header)> = None;
    // Inside metadata: the indentation of its keys, once known.
    let mut in_meta: Option<Option<usize>> = None;
    let mut separators = 0;
    for (i, line) in text.split('\n').enumerate() {
        let content = line.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if indent == 0 {
            in_meta = None;
            if line == "---" {
                match current.take() {
                    Some(doc) => docs.push(doc),
                    // An empty document, or content before the first marker.
                    None if separators > 0 || !docs.is_empty() => return None,
                    None => {}
                }
                separators += 1;
                continue;
            }
            if line.starts_with("- ") || line == "-" {
                // An item of a top-level key's sequence (kubectl's compact style).
                current.as_ref()?;
                continue;
            }
            let (key, rest) = key_line(line)?;
            let (_, h) = current.get_or_insert_with(|| {
                (
                    Pos {
                        line: i + 1,
                        column: 1,
                    },
                    Header {
                        is_mapping: true,
                        ..Header::default()
                    },
                )
            });
            match key {
                "apiVersion" if h.api_version.is_none() => h.api_version = Some(plain(rest)?),
                "kind" if h.kind.is_none() => h.kind = Some(plain(rest)?),
                "metadata" if rest.is_empty() || rest.starts_with('#') => in_meta = Some(None),
                "apiVersion" | "kind" | "metadata" | "items" => return None,
                _ if rest.starts_with(['&', '*', '!', '"', '\'']) => return None,
                _ => {}
            }
            continue;
        }
        let Some(meta) = in_meta.as_mut() else {
            continue;
        };
        let n = *meta.get_or_insert(indent);
        if indent < n {
            return None;
        }
        if indent > n {
            continue;
        }
        let (key, rest) = key_line(content)?;
        let (_, h) = current.as_mut()?;
        match key {
            "name" if h.name.is_none() => h.name = Some(plain(rest)?),
            "namespace" if h.namespace.is_none() => h.namespace = Some(plain(rest)?),
            "name" | "namespace" => return None,
            _ => {}
        }
    }
    match current {
        Some(doc) => docs.push(doc),
        None if separators > 0 => return None,
        None => {}
    }
    (!docs.is_empty()).then_some(docs)
}

/// Reads every document's header and start. Stops at the first syntax error, because the YAML
/// parser cannot find its way past one; the documents before it are still returned.
pub fn scan_headers(text: &str) -> (Vec<DocHeader>, Option<YamlError>) {
    let lines = Lines::new(text);
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let cell = RefCell::new(None);
        match HeaderSeed(&cell).deserialize(de) {
            Ok(()) => docs.push(DocHeader::Empty),
            Err(e) => match (cell.into_inner(), pos_of(&lines, &e)) {
                (Some(header), Some(start)) => docs.push(DocHeader::Node { start, header }),
                _ => return (docs, Some(yaml_error(text, &e))),
            },
        }
    }
    (docs, None)
}

/// Whether `line` is a document marker: `---` or `...` at the start of the line, then a space,
/// a tab or the line's end. YAML forbids both inside any scalar or collection (a block scalar
/// ends there, a quoted one is an error), so a file splits into its documents at them without
/// parsing it.
fn marker(line: &str) -> Option<&'static str> {
    let line = line.trim_end_matches(['\n', '\r']);
    let ends = |rest: &str| rest.is_empty() || rest.starts_with([' ', '\t']);
    if let Some(rest) = line.strip_prefix("---") {
        return ends(rest).then_some("---");
    }
    line.strip_prefix("...")
        .filter(|rest| ends(rest))
        .map(|_| "...")
}

/// One document of a file as its lines hold it, found without parsing (`parts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Lines of the file above it.
    pub lines_above: usize,
    /// Its bytes in the file.
    pub range: std::ops::Range<usize>,
}

/// Splits a file at its document markers, for reading a file with a syntax error document by
/// document: a part is a `---` and what follows it, up to and with a `...`. Directives,
/// comments and blank lines go with the part after them.
pub fn parts(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let (mut start, mut lines_above, mut offset) = (0, 0, 0);
    // Whether the part so far holds more than directives, comments and blank lines.
    let mut content = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let end = offset + line.len();
        match marker(line) {
            Some("---") if content => {
                parts.push(Part {
                    lines_above,
                    range: start..offset,
                });
                (start, lines_above) = (offset, i);
            }
            Some("---") => content = true,
            Some(_) => {
                parts.push(Part {
                    lines_above,
                    range: start..end,
                });
                (start, lines_above, content) = (end, i + 1, false);
            }
            None => {
                let t = line.trim_start_matches([' ', '\t']);
                if !(t.trim_end().is_empty() || t.starts_with('#') || line.starts_with('%')) {
                    content = true;
                }
            }
        }
        offset = end;
    }
    if start < text.len() {
        parts.push(Part {
            lines_above,
            range: start..text.len(),
        });
    }
    parts
}

/// `text` with the lines of each part that `emptied` picks made empty (a `---` or `...` on them
/// is kept, so each stays a document of its own and the next starts where it did): a line and
/// column in it are the same line and column of `text`.
pub fn without_parts(text: &str, parts: &[Part], emptied: impl Fn(usize) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in parts.iter().enumerate() {
        let part = &text[part.range.clone()];
        if !emptied(i) {
            out.push_str(part);
            continue;
        }
        for line in part.split_inclusive('\n') {
            if let Some(m) = marker(line) {
                out.push_str(m);
            }
            if line.ends_with("\r\n") {
                out.push_str("\r\n");
            } else if line.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

/// Reads the header of the node it is given, keeps it in the cell, then fails so that yaml_serde
/// tells us where the node starts. Empty documents succeed and leave the cell empty.
struct HeaderSeed<'c>(&'c RefCell<Option<Header>>);

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        *self.0.borrow_mut() = Some(HeaderVisitor.visit_map(map)?);
        Err(de::Error::custom(FOUND))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        *self.0.borrow_mut() = Some(HeaderVisitor.visit_seq(seq)?);
        Err(de::Error::custom(FOUND))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        *self.0.borrow_mut() = Some(Header::default());
        Err(de::Error::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.visit_str("")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.visit_str("")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.visit_str("")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.visit_str("")
    }
}

/// Splits a yaml_serde error about `text` into its position and its message without "at
/// line L column C"; positions (the message's own too) as an editor counts (`editor_pos`).
pub fn yaml_error(text: &str, e: &serde_yaml::Error) -> YamlError {
    yaml_error_below(text, 0, e)
}

/// `yaml_error` for `text` that starts `lines_above` lines into a file: positions are the
/// file's.
pub(crate) fn yaml_error_below(text: &str, lines_above: usize, e: &serde_yaml::Error) -> YamlError {
    let mut message = e.to_string();
    if let Some(l) = e.location() {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(at) = message.find(&suffix) {
            message.replace_range(at..at + suffix.len(), "");
        }
    }
    let lines = Lines::new(text);
    let pos = pos_of(&lines, e);
    if lines.odd() || lines_above > 0 {
        message = map_message_positions(&message, |p| {
            let p = lines.editor_pos(p);
            Pos {
                line: p.line + lines_above,
                column: p.column,
            }
        });
    }
    // libyaml's words for a tab where indentation is ("found character that cannot start any
    // token") do not say what is wrong.
    let at = pos.and_then(|p| text.lines().nth(p.line - 1)?.chars().nth(p.column - 1));
    if at == Some('\t') {
        message =
            "a tab in indentation: YAML indents with spaces only; replace the tab with spaces"
                .into();
    }
    YamlError {
        pos: pos.map(|p| Pos {
            line: p.line + lines_above,
            column: p.column,
        }),
        message: improve_message(&message),
    }
}

/// serde's "invalid type: <found>, expected <wanted>" in words that say what to write:
/// "a list where a number is wanted; write a whole number". None for other messages.
fn invalid_type(message: &str) -> Option<String> {
    let at = message.find("invalid type: ")?;
    let (prefix, rest) = (&message[..at], &message[at + "invalid type: ".len()..]);
    let (found, wanted) = rest.split_once(", expected ")?;
    let found = match found {
        "sequence" => "a list".to_string(),
        "map" => "a mapping".to_string(),
        "unit value" => "nothing (null)".to_string(),
        f if f.starts_with("string ") => format!("text {}", &f["string ".len()..]),
        f if f.starts_with("integer ") => format!("the number {}", &f["integer ".len()..]),
        f if f.starts_with("floating point ") => {
            format!("the number {}", &f["floating point ".len()..])
        }
        f if f.starts_with("boolean ") => f["boolean ".len()..].to_string(),
        f => f.to_string(),
    };
    let wanted = wanted.trim_end_matches('.');
    let write = match wanted {
        "i64" | "i32" | "u64" | "u32" | "u16" | "u8" | "usize" => "a whole number".to_string(),
        "f64" | "f32" => "a number".to_string(),
        "a string" | "string" => {
            "text (quote it if it looks like a number or a boolean)".to_string()
        }
        "a boolean" | "bool" => "true or false".to_string(),
        "a sequence" => "a list (`[a, b]`, or one `- item` per line)".to_string(),
        w if w.starts_with("struct ") || w == "a map" => {
            "a mapping (`key: value` lines)".to_string()
        }
        w => w.to_string(),
    };
    Some(format!(
        "{prefix}{found} is not what goes here; write {write}"
    ))
}

/// serde's "unknown field `x`, expected one of `a`, `b`, ..." lists every field, which for
/// FelixConfiguration is almost two hundred names. Suggest the closest one instead when the list
/// is long.
fn improve_message(message: &str) -> String {
    if let Some(m) = invalid_type(message) {
        return m;
    }
    let Some(rest) = message
        .find("unknown field `")
        .map(|at| &message[at + "unknown field `".len()..])
    else {
        return message.to_string();
    };
    let Some(end) = rest.find('`') else {
        return message.to_string();
    };
    let field = &rest[..end];
    let prefix = &message[..message.find("unknown field `").unwrap_or(0)];
    let expected: Vec<&str> = rest[end + 1..].split('`').skip(1).step_by(2).collect();
    let best = expected
        .iter()
        .map(|cand| {
            (
                edit_distance(&field.to_lowercase(), &cand.to_lowercase()),
                *cand,
            )
        })
        .min();
    let mut out = format!("{prefix}unknown field `{field}`");
    match best {
        Some((d, cand)) if d <= 2.max(field.len() / 4) => {
            out.push_str(&format!("; did you mean `{cand}`?"))
        }
        _ if !expected.is_empty() && expected.len() <= 12 => out.push_str(&format!(
            "; write one of {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => out.push_str("; see the schema for the fields this resource has"),
    }
    out
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// How many bytes of a file `Locator` may parse again to place problems, beyond `MIN_LOCATES`
/// parses of the whole file: enough for every problem of a file that people are fixing, not
/// for each of twenty thousand bad values in a file of 400 KiB (which took minutes).
pub const LOCATE_BYTES: usize = 16 << 20;

/// Parses of the whole file `Locator` allows however large the file is.
pub const MIN_LOCATES: usize = 4;

/// Finds where values are in one file's text, within a budget. serde_yaml gives no positions
/// for values that deserialized fine, so each position costs a parse of the file up to the
/// document (`locate`), and a file with thousands of problems was parsed thousands of times.
/// Once the budget is spent `locate` answers None, and callers place the problem where its
/// resource or document starts instead.
pub struct Locator<'t> {
    text: &'t str,
    lines: Lines<'t>,
    /// Bytes that may still be parsed.
    left: std::cell::Cell<usize>,
}

impl<'t> Locator<'t> {
    pub fn new(text: &'t str) -> Locator<'t> {
        Locator {
            text,
            lines: Lines::new(text),
            left: std::cell::Cell::new(LOCATE_BYTES.max(MIN_LOCATES * text.len())),
        }
    }

    /// Takes one parse of the file from the budget, if there is enough left.
    fn spend(&self) -> bool {
        let cost = self.text.len().max(1);
        let left = self.left.get();
        if left < cost {
            return false;
        }
        self.left.set(left - cost);
        true
    }

    /// `locate` within the budget.
    pub fn locate(&self, doc: usize, path: &Path) -> Option<Pos> {
        if !self.spend() {
            return None;
        }
        locate_in(&self.lines, doc, path)
    }

    /// The deserializer of document `doc`, parsed afresh, within the budget.
    pub fn nth_document(&self, doc: usize) -> Option<serde_yaml::Deserializer<'t>> {
        if !self.spend() {
            return None;
        }
        serde_yaml::Deserializer::from_str(self.text).nth(doc)
    }

    /// Where each of the `n` items of the sequence at `path` starts. Probing each item would
    /// parse the document once per item, which is quadratic in the length of `kind: List`
    /// files that `kubectl get -o yaml` writes. So the items of a block sequence are found by
    /// scanning lines for the dash column of the first item; the scan is trusted only if it
    /// finds exactly `n` items and agrees with a probe of the last one, and each item is
    /// probed otherwise (while the budget lasts).
    pub fn sequence_item_positions(&self, doc: usize, path: &Path, n: usize) -> Vec<Option<Pos>> {
        let probe = |i: usize| self.locate(doc, &path.index(i));
        if n == 0 {
            return Vec::new();
        }
        let (Some(first), last) = (probe(0), probe(n - 1)) else {
            return (0..n).map(probe).collect();
        };
        match scan_block_sequence(self.text, first, n) {
            Some(found) if found.len() == n && found.last().copied() == last => {
                found.into_iter().map(Some).collect()
            }
            _ => (0..n).map(probe).collect(),
        }
    }
}

/// Finds item starts of the block sequence whose first item's content starts at `first`.
/// Returns None where the layout is not the plain `- key: value` form this understands.
fn scan_block_sequence(text: &str, first: Pos, n: usize) -> Option<Vec<Pos>> {
    let lines: Vec<&str> = text.lines().collect();
    let line: Vec<char> = lines.get(first.line - 1)?.chars().collect();
    // Left of the content: spaces, then the dash, then only spaces back to the margin.
    let mut dash = first.column.checked_sub(2)?;
    while line.get(dash) == Some(&' ') {
        dash = dash.checked_sub(1)?;
    }
    if line.get(dash) != Some(&'-') || line[..dash].iter().any(|c| *c != ' ') {
        return None;
    }
    let mut found = vec![first];
    for (i, text_line) in lines.iter().enumerate().skip(first.line) {
        if found.len() == n {
            break;
        }
        let chars: Vec<char> = text_line.chars().collect();
        let indent = chars.iter().take_while(|c| **c == ' ').count();
        match chars.get(indent) {
            None | Some('#') => continue,
            _ if indent < dash => break,
            Some('-') if indent == dash && chars.get(indent + 1).is_none_or(|c| *c == ' ') => {
                let content = indent
                    + 1
                    + chars[indent + 1..]
                        .iter()
                        .take_while(|c| **c == ' ')
                        .count();
                match chars.get(content) {
                    None | Some('#') => return None,
                    _ => found.push(Pos {
                        line: i + 1,
                        column: content + 1,
                    }),
                }
            }
            _ if indent == dash => break,
            _ => {}
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the parser's header pass says, for comparison.
    fn parsed(text: &str) -> Vec<(Pos, Header)> {
        let (docs, err) = scan_headers(text);
        assert!(err.is_none());
        docs.into_iter()
            .filter_map(|d| match d {
                DocHeader::Node { start, header } => Some((start, header)),
                DocHeader::Empty => None,
            })
            .collect()
    }

    #[test]
    fn quick_headers_agree_with_the_parser_or_decline() {
        let manifest = "# a service\n---\napiVersion: v1 # core\nkind: Service\nmetadata:\n  labels:\n    name: not-this\n  name: web\n  namespace: shop\nspec:\n  ports:\n  - port: 80\n---\n\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\nendpoints:\n- addresses:\n  - 10.0.0.1\n";
        let quick = quick_headers(manifest).expect("a plain manifest");
        assert_eq!(quick, parsed(manifest));
        assert_eq!(quick.len(), 2);
        assert_eq!(
            quick[0].1.name.as_deref(),
            Some("web"),
            "metadata's own name, not a label"
        );
        for other in [
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n",
            "apiVersion: v1\nkind: \"Service\"\nmetadata:\n  name: web\n",
            "apiVersion: v1\nkind: List\nitems: []\n",
            "apiVersion: v1\nkind: Service\n---\n",
            "- a\n- b\n",
            "apiVersion: v1\nkind: Service\nmetadata:\n\tname: web\n",
            "apiVersion: v1\nkind: Service\nkind: Pod\n",
            "%YAML 1.2\n---\napiVersion: v1\n",
        ] {
            assert_eq!(quick_headers(other), None, "{other:?}");
        }
    }

    fn p(line: usize, column: usize) -> Option<Pos> {
        Some(Pos { line, column })
    }

    fn path(s: &[&str]) -> Path {
        s.iter()
            .fold(Path::root(), |p, seg| match seg.parse::<usize>() {
                Ok(n) => p.index(n),
                Err(_) => p.key(seg.to_string()),
            })
    }

    const TWO_DOCS: &str = "\
# leading comment
apiVersion: v1
kind: A
spec:
  ingress:
    - action: Allow
      source:
        nets: [10.0.0.0/8, \"10.0.0.300/8\"]
    - action: Deny
      source:
        nets:
          - 1.2.3.4
          - 5.6.7.8
---
apiVersion: v1
kind: B
spec:
  selector: app == 'x'
  list:
  - a: 1
  - {b: 2, c: 3}
";

    #[test]
    fn serdes_words_say_what_to_write() {
        let m = |s| invalid_type(s).expect("translated");
        assert_eq!(
            m("spec.ports: invalid type: map, expected a sequence"),
            "spec.ports: a mapping is not what goes here; write a list (`[a, b]`, or one `- item` per line)"
        );
        assert_eq!(
            m("invalid type: string \"seventy\", expected i64"),
            "text \"seventy\" is not what goes here; write a whole number"
        );
        assert_eq!(
            m("invalid type: integer `3`, expected a string"),
            "the number `3` is not what goes here; write text (quote it if it looks like a number or a boolean)"
        );
        assert_eq!(invalid_type("unknown field `x`"), None);
    }

    #[test]
    fn a_tab_in_indentation_is_named_as_a_tab() {
        let text = "metadata:\n\tname: x\n";
        let e = serde_yaml::from_str::<serde_yaml::Value>(text).expect_err("a tab");
        let err = yaml_error(text, &e);
        assert_eq!(err.pos, Some(Pos { line: 2, column: 1 }));
        assert!(
            err.message.contains("a tab in indentation"),
            "{}",
            err.message
        );
    }

    #[test]
    fn positions_are_an_editors_where_yaml_breaks_lines_elsewhere() {
        let p = |line, column| Pos { line, column };
        // Line feeds and CR LF: YAML's lines are an editor's.
        let editor_pos = |text, pos| Lines::new(text).editor_pos(pos);
        assert_eq!(editor_pos("a: 1\r\nb: [\n", p(2, 4)), p(2, 4));
        // A CR alone and an LS break YAML lines, not an editor's.
        let text = "a: 1\rb: 2\u{2028}c: [\nd";
        assert_eq!(editor_pos(text, p(2, 1)), p(1, 6), "b");
        assert_eq!(editor_pos(text, p(3, 4)), p(1, 14), "[");
        assert_eq!(editor_pos(text, p(4, 1)), p(2, 1), "d");
        // Past the end is the end.
        assert_eq!(editor_pos(text, p(9, 1)), p(2, 2));
        let e = serde_yaml::from_str::<serde_yaml::Value>("a: 1\rb: [\n").expect_err("unclosed");
        let err = yaml_error("a: 1\rb: [\n", &e);
        let pos = err.pos.expect("a position");
        assert_eq!(pos.line, 2, "{pos:?} {}", err.message);
        assert!(!err.message.contains("line 3"), "{}", err.message);
    }

    #[test]
    fn locate_finds_nested_nodes_in_every_document() {
        assert_eq!(locate(TWO_DOCS, 0, &path(&[])), p(2, 1));
        assert_eq!(locate(TWO_DOCS, 0, &path(&["kind"])), p(3, 7));
        assert_eq!(
            locate(TWO_DOCS, 0, &path(&["spec", "ingress", "0"])),
            p(6, 7)
        );
        assert_eq!(
            locate(
                TWO_DOCS,
                0,
                &path(&["spec", "ingress", "0", "source", "nets", "1"])
            ),
            p(8, 28)
        );
        assert_eq!(
            locate(
                TWO_DOCS,
                0,
                &path(&["spec", "ingress", "1", "source", "nets", "1"])
            ),
            p(13, 13)
        );
        assert_eq!(locate(TWO_DOCS, 1, &path(&[])), p(15, 1));
        assert_eq!(locate(TWO_DOCS, 1, &path(&["spec", "selector"])), p(18, 13));
        assert_eq!(
            locate(TWO_DOCS, 1, &path(&["spec", "list", "1", "c"])),
            p(21, 15)
        );
    }

    #[test]
    fn locate_falls_back_to_the_nearest_existing_node() {
        // A missing key points at the mapping that should hold it.
        assert_eq!(locate(TWO_DOCS, 1, &path(&["spec", "tier"])), p(18, 3));
        // An index past the end points at the sequence.
        assert_eq!(locate(TWO_DOCS, 1, &path(&["spec", "list", "5"])), p(20, 3));
        assert_eq!(locate(TWO_DOCS, 7, &path(&[])), None);
    }

    #[test]
    fn headers_and_document_starts() {
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- kind: Namespace\n  metadata: {name: a}\n- 42\n---\n  kind: Tier\n  metadata:\n    name: t\n    namespace: 7\n---\nnull\n---\n- 1\n";
        let (docs, err) = scan_headers(text);
        assert_eq!(err, None);
        assert_eq!(docs.len(), 5);
        assert_eq!(docs[0], DocHeader::Empty);
        let DocHeader::Node { start, header } = &docs[1] else {
            panic!("{docs:?}")
        };
        assert_eq!(*start, Pos { line: 4, column: 1 });
        assert_eq!(header.kind.as_deref(), Some("List"));
        let items = header.items.as_ref().unwrap();
        assert_eq!(items[0].kind.as_deref(), Some("Namespace"));
        assert_eq!(items[0].name.as_deref(), Some("a"));
        assert!(!items[1].is_mapping);
        let DocHeader::Node { start, header } = &docs[2] else {
            panic!()
        };
        assert_eq!(
            *start,
            Pos {
                line: 11,
                column: 3
            }
        );
        assert_eq!(header.namespace.as_deref(), Some("7"));
        assert_eq!(docs[3], DocHeader::Empty);
        let DocHeader::Node { header, .. } = &docs[4] else {
            panic!()
        };
        assert!(!header.is_mapping);
    }

    #[test]
    fn syntax_errors_stop_the_scan_with_a_position() {
        let text = "kind: A\n---\nkind: B\n  bad: indentation\n---\nkind: C\n";
        let (docs, err) = scan_headers(text);
        assert_eq!(docs.len(), 1);
        let err = err.unwrap();
        assert_eq!(err.pos, p(4, 6));
        assert!(!err.message.contains("line 4 column 6"), "{}", err.message);
        assert!(
            err.message.contains("mapping values are not allowed"),
            "{}",
            err.message
        );
    }

    /// The parts of `text` as text, with the lines above each.
    fn split(text: &str) -> Vec<(usize, &str)> {
        parts(text)
            .into_iter()
            .map(|p| (p.lines_above, &text[p.range]))
            .collect()
    }

    #[test]
    fn files_split_into_documents_at_markers_only() {
        assert_eq!(
            split("a: 1\n---\nb: [\n---  # third\nc: 3\n"),
            [
                (0, "a: 1\n"),
                (1, "---\nb: [\n"),
                (3, "---  # third\nc: 3\n")
            ]
        );
        // Not markers: indented, inside a line, or followed by more than a space.
        let one = "a: |\n  ---\n  text\nb: \"x\n  --- y\"\nc: ---\n---x: 1\n";
        assert_eq!(split(one), [(0, one)]);
        // A directive, comments and blank lines go with the document after them; `...` ends
        // the one it closes.
        assert_eq!(
            split("# head\n\n%YAML 1.2\n---\na: 1\n...\n# next\nb: 2\n"),
            [
                (0, "# head\n\n%YAML 1.2\n---\na: 1\n...\n"),
                (6, "# next\nb: 2\n")
            ]
        );
        assert_eq!(split(""), []);
    }

    #[test]
    fn emptied_documents_keep_their_lines_and_markers() {
        let text = "a: 1\r\n---\r\nb: [\r\n  c\r\n--- {d: [}\r\n...\r\ne: 5";
        let p = parts(text);
        assert_eq!(p.len(), 4);
        let out = without_parts(text, &p, |i| i > 0);
        assert_eq!(out, "a: 1\r\n---\r\n\r\n\r\n---\r\n...\r\n");
        assert_eq!(out.lines().count(), text.lines().count() - 1);
        // What is left parses: one document, then two empty ones.
        let (docs, err) = scan_headers(&out);
        assert_eq!(err, None);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1], DocHeader::Empty);
    }

    #[test]
    fn errors_of_a_part_are_placed_in_the_file() {
        let part = "---\nkind: B\n  bad: indentation\n";
        let e = serde_yaml::Deserializer::from_str(part)
            .map(|de| IgnoredAny::deserialize(de).unwrap_err())
            .next()
            .unwrap();
        let e = yaml_error_below(part, 10, &e);
        assert_eq!(e.pos, p(13, 6));
        let unclosed = "---\na: \"x\n";
        let e = serde_yaml::Deserializer::from_str(unclosed)
            .map(|de| IgnoredAny::deserialize(de).unwrap_err())
            .next()
            .unwrap();
        // The message's own positions move too.
        let e = yaml_error_below(unclosed, 10, &e);
        assert_eq!(e.pos, p(13, 1));
        assert!(
            e.message
                .contains("while scanning a quoted scalar at line 12 column 4"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_field_messages_suggest_the_nearest_field() {
        assert_eq!(
            improve_message("spec: unknown field `selectr`, expected one of `tier`, `order`, `selector`, `types`"),
            "spec: unknown field `selectr`; did you mean `selector`?"
        );
        assert_eq!(
            improve_message("spec: unknown field `zzz`, expected `a` or `b`"),
            "spec: unknown field `zzz`; write one of `a`, `b`"
        );
        assert_eq!(
            improve_message("missing field `name`"),
            "missing field `name`"
        );
    }

    #[test]
    fn item_positions_of_block_and_flow_sequences() {
        let block =
            "items:\n- a: 1\n  # comment\n\n  b: |\n    - not an item\n-   c: 2\n- d: 3\nnext: x\n";
        assert_eq!(
            Locator::new(block).sequence_item_positions(0, &path(&["items"]), 3),
            vec![p(2, 3), p(7, 5), p(8, 3)]
        );
        let indented = "top:\n  items:\n    - {a: 1}\n    - b: 2\n";
        assert_eq!(
            Locator::new(indented).sequence_item_positions(0, &path(&["top", "items"]), 2),
            vec![p(3, 7), p(4, 7)]
        );
        // Layouts the scan does not understand fall back to probing each item.
        let flow = "items: [{a: 1}, {b: 2}, {c: 3}]\n";
        assert_eq!(
            Locator::new(flow).sequence_item_positions(0, &path(&["items"]), 3),
            vec![p(1, 9), p(1, 17), p(1, 25)]
        );
        let lone_dash = "items:\n-\n  a: 1\n-\n  b: 2\n";
        assert_eq!(
            Locator::new(lone_dash).sequence_item_positions(0, &path(&["items"]), 2),
            vec![p(3, 3), p(5, 3)]
        );
    }

    #[test]
    fn paths_print_like_kubectl() {
        assert_eq!(
            path(&["spec", "ingress", "0", "source", "nets", "1"]).to_string(),
            "spec.ingress[0].source.nets[1]"
        );
        assert_eq!(Path::root().key("items").index(2).to_string(), "items[2]");
    }
}

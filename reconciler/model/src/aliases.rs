//! How far a file's YAML aliases may expand, checked before serde_yaml reads the file into
//! types. serde_yaml replays an anchored node at every alias to it, and aliases may point at
//! nodes that hold aliases themselves: a few hundred KiB of anchors nine levels deep are
//! billions of values ("billion laughs"), which took the daemon's memory until the allocator
//! failed. serde_yaml's own limit (a hundred alias jumps per event of the document) bounds the
//! jumps, not what each one replays.
//!
//! The check walks every document as serde_yaml would expand it, counting values and the bytes
//! of their text, and stops as soon as either passes what the file's size allows: a file
//! without aliases never holds more values than bytes, so the budget only binds when aliases
//! multiply the content, and a floor leaves room for small files that reuse an anchor often.
//! The walk allocates nothing, so its cost is bounded by the budget too, and every later pass
//! over the file (headers, typed values, positions) expands no more than it did.
//!
//! Only files that fastyaml declined come here (it declines anchors and aliases), and only
//! those with a `*` in them, which every alias starts with.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

use crate::yaml::{self, Pos};

/// The values every file may expand to, whatever its size: room for a small file that
/// reuses a block of rules in many places.
pub(crate) const FLOOR_VALUES: u64 = 16_384;

/// The bytes of scalar text every file may expand to, whatever its size.
pub(crate) const FLOOR_BYTES: u64 = 1 << 20;

/// Beyond the floors, values per byte of the file: a file without aliases has fewer values
/// than bytes (each takes at least a character and a separator).
const VALUES_PER_BYTE: u64 = 1;

/// Beyond the floors, bytes of scalar text per byte of the file.
const BYTES_PER_BYTE: u64 = 4;

/// What a file's aliases may expand it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    pub(crate) values: u64,
    pub(crate) bytes: u64,
}

impl Limit {
    pub(crate) fn for_file(len: usize) -> Limit {
        let len = len as u64;
        Limit {
            values: FLOOR_VALUES + VALUES_PER_BYTE * len,
            bytes: FLOOR_BYTES + BYTES_PER_BYTE * len,
        }
    }
}

/// The file's aliases expand it past its limit: where the walk was when it ran out, and what.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TooLarge {
    pub(crate) pos: Option<Pos>,
    pub(crate) message: String,
}

/// The message serde_yaml carries back from the walk, to tell its own errors from ours.
const SPENT: &str = "weft: alias expansion budget spent";

/// Walks every document of `text` as serde_yaml expands it. Err when the expansion passes
/// `limit`; Ok otherwise, including for text that does not parse (the later passes report
/// that with its position).
pub(crate) fn check(text: &str, limit: Limit) -> Result<(), TooLarge> {
    if !text.contains('*') {
        return Ok(());
    }
    let budget = Budget {
        values: Cell::new(limit.values),
        bytes: Cell::new(limit.bytes),
        ran_out: Cell::new(None),
    };
    for de in serde_yaml::Deserializer::from_str(text) {
        let Err(e) = Count(&budget).deserialize(de) else {
            continue;
        };
        let Some(what) = budget.ran_out.get() else {
            // A syntax error: the documents after it are not read by anyone.
            return Ok(());
        };
        return Err(too_large(limit, what, yaml::yaml_error(text, &e)));
    }
    Ok(())
}

/// What `check` says when `limit` ran out of `what`, with the walk's error `e`.
fn too_large(limit: Limit, what: Ran, e: yaml::YamlError) -> TooLarge {
    // serde_yaml says where in the expanded document the walk was, as a path.
    let at = e
        .message
        .strip_suffix(SPENT)
        .and_then(|p| p.strip_suffix(": "))
        .map(|path| format!(" (the limit was reached at {path})"))
        .unwrap_or_default();
    let (limit, unit) = match what {
        Ran::Values => (limit.values, "values"),
        Ran::Bytes => (limit.bytes, "bytes of text"),
    };
    TooLarge {
        pos: e.pos,
        message: format!(
            "the aliases in this file expand it to more than {limit} {unit}, the most weft reads from a file of its size{at}; an alias re-reads its anchor's whole node each time, so write the values out or alias fewer of them"
        ),
    }
}

/// Walks each part of a file that does not parse as a whole (`yaml::parts`) on its own, with
/// one budget for them all, as `check` walks a file: the syntax error of each part that does
/// not parse, at its place in the file, or Err when the aliases of the parts that do expand
/// past `limit`.
pub(crate) fn syntax_errors(
    text: &str,
    parts: &[yaml::Part],
    limit: Limit,
) -> Result<Vec<Option<yaml::YamlError>>, TooLarge> {
    let budget = Budget {
        values: Cell::new(limit.values),
        bytes: Cell::new(limit.bytes),
        ran_out: Cell::new(None),
    };
    let mut errors = Vec::with_capacity(parts.len());
    for part in parts {
        let at = &text[part.range.clone()];
        let mut error = None;
        for de in serde_yaml::Deserializer::from_str(at) {
            let Err(e) = Count(&budget).deserialize(de) else {
                continue;
            };
            let e = yaml::yaml_error_below(at, part.lines_above, &e);
            if let Some(what) = budget.ran_out.get() {
                return Err(too_large(limit, what, e));
            }
            // The parser cannot find its way past a syntax error: the part ends here.
            error = Some(e);
            break;
        }
        errors.push(error);
    }
    Ok(errors)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ran {
    Values,
    Bytes,
}

/// What is left to expand.
struct Budget {
    values: Cell<u64>,
    bytes: Cell<u64>,
    ran_out: Cell<Option<Ran>>,
}

impl Budget {
    /// Takes one value of `len` bytes of text from the budget.
    fn take<E: de::Error>(&self, len: usize) -> Result<(), E> {
        let (values, bytes) = (self.values.get(), self.bytes.get());
        let len = len as u64;
        let ran = if values == 0 {
            Ran::Values
        } else if bytes < len {
            Ran::Bytes
        } else {
            self.values.set(values - 1);
            self.bytes.set(bytes - len);
            return Ok(());
        };
        self.ran_out.set(Some(ran));
        Err(E::custom(SPENT))
    }
}

/// Visits a node and everything under it, taking each value from the budget.
struct Count<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.0.take(0)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.0.take(0)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.0.take(0)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.0.take(0)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.0.take(0)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.0.take(0)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.take(s.len())
    }
    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<(), E> {
        self.0.take(b.len())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.take(0)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.0.take(0)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        Count(self.0).deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        Count(self.0).deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.take(0)?;
        while seq.next_element_seed(Count(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.take(0)?;
        while map.next_key_seed(Count(self.0))?.is_some() {
            map.next_value_seed(Count(self.0))?;
        }
        Ok(())
    }
    /// A tagged node (`!tag value`).
    fn visit_enum<A: EnumAccess<'de>>(self, e: A) -> Result<(), A::Error> {
        let ((), v) = e.variant_seed(Count(self.0))?;
        de::VariantAccess::newtype_variant_seed(v, Count(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(values: u64, bytes: u64) -> Limit {
        Limit { values, bytes }
    }

    #[test]
    fn counts_every_value_an_alias_replays() {
        // 1 mapping, 2 keys, the anchored sequence (1 + 3) and its replay (1 + 3): 11.
        let text = "a: &x [p, q, r]\nb: *x\n";
        assert_eq!(check(text, limit(11, 100)), Ok(()));
        let e = check(text, limit(10, 100)).unwrap_err();
        // Ran out in the replay, which serde_yaml places at the anchor's node.
        assert_eq!(
            e.pos,
            Some(Pos {
                line: 1,
                column: 14
            })
        );
        assert!(e.message.contains("more than 10 values"), "{}", e.message);
        assert!(e.message.contains("reached at b[2]"), "{}", e.message);
        // The text: a, p, q, r, b, p, q, r.
        assert_eq!(check(text, limit(100, 8)), Ok(()));
        let e = check(text, limit(100, 7)).unwrap_err();
        assert!(
            e.message.contains("more than 7 bytes of text"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_billion_laughs_stops_at_the_budget() {
        // Ten levels of ten aliases each: 10^10 values.
        let mut text = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n".to_string();
        for i in 1..10 {
            let prev = format!("*l{}", i - 1);
            let items = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("l{i}: &l{i} [{items}]\n"));
        }
        let started = std::time::Instant::now();
        let e = check(&text, Limit::for_file(text.len())).unwrap_err();
        assert!(e.message.contains("values"), "{}", e.message);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn files_without_aliases_are_not_walked_and_syntax_is_left_to_the_parser() {
        assert_eq!(check("a: [b, c]\n", limit(0, 0)), Ok(()));
        assert_eq!(
            check("a: *x\n", limit(100, 100)),
            Ok(()),
            "an unknown anchor"
        );
        assert_eq!(check("a: [*x\n", limit(100, 100)), Ok(()));
        // A file's documents share its budget: 9 values each.
        let two = "a: &x [1, 2]\nb: *x\n---\na: &x [1, 2]\nb: *x\n";
        assert_eq!(check(two, limit(18, 100)), Ok(()));
        let e = check(two, limit(17, 100)).unwrap_err();
        assert_eq!(
            e.pos,
            Some(Pos {
                line: 4,
                column: 11
            })
        );
    }
}

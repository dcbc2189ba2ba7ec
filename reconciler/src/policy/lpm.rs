//! Step functions over a bit space as longest-prefix-match entries: the few prefixes that a
//! step function's boundaries need, longer prefixes overriding shorter ones. A port range
//! 1-65535 is two prefixes (the whole space, then port 0), not the 16 of a plain cover. `show`
//! writes rulesets this way for people.

use std::collections::HashMap;
use std::hash::Hash;

/// One LPM entry: the top `len` bits of `bits` (left-aligned in the space) map to `value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix<V> {
    /// The first value the prefix covers.
    pub base: u64,
    /// How many leading bits of the space are fixed.
    pub len: u8,
    pub value: V,
}

/// Encodes the step function `steps` over `[0, 2^bits)` as prefixes. `steps` holds the start of
/// every segment with its value, sorted by start, beginning at 0. A lookup of `x` among the
/// returned prefixes by longest match yields the value of the segment containing `x`.
pub fn encode<V: Copy + Eq + Hash>(bits: u8, steps: &[(u64, V)]) -> Vec<Prefix<V>> {
    assert!(
        bits <= 63 && !steps.is_empty() && steps[0].0 == 0,
        "a step function starts at 0"
    );
    debug_assert!(steps.windows(2).all(|w| w[0].0 < w[1].0));
    let mut out = Vec::new();
    encode_node(bits, steps, 0, 0, None, &mut out);
    out
}

fn encode_node<V: Copy + Eq + Hash>(
    bits: u8,
    steps: &[(u64, V)],
    base: u64,
    len: u8,
    inherited: Option<V>,
    out: &mut Vec<Prefix<V>>,
) {
    let size = 1u64 << (bits - len);
    let end = base + size; // exclusive
                           // Segments overlapping [base, end): from the one containing base to the last starting before end.
    let first = steps.partition_point(|s| s.0 <= base) - 1;
    let last = steps.partition_point(|s| s.0 < end) - 1;
    if first == last {
        let v = steps[first].1;
        if inherited != Some(v) {
            out.push(Prefix {
                base,
                len,
                value: v,
            });
        }
        return;
    }
    // Give the node the value that covers most of it, so that children override as little as
    // possible.
    let mut cover: HashMap<V, u64> = HashMap::new();
    for i in first..=last {
        let lo = steps[i].0.max(base);
        let hi = if i + 1 < steps.len() {
            steps[i + 1].0.min(end)
        } else {
            end
        };
        *cover.entry(steps[i].1).or_default() += hi - lo;
    }
    let mut best = steps[first].1;
    let mut best_len = 0;
    for &(_, v) in &steps[first..=last] {
        let c = cover[&v];
        // Ties go to the inherited value (no entry needed), then to the first segment's.
        if c > best_len || (c == best_len && Some(v) == inherited) {
            best = v;
            best_len = c;
        }
    }
    if inherited != Some(best) {
        out.push(Prefix {
            base,
            len,
            value: best,
        });
    }
    let half = size / 2;
    encode_node(bits, steps, base, len + 1, Some(best), out);
    encode_node(bits, steps, base + half, len + 1, Some(best), out);
}

/// Looks `x` up among `prefixes` by longest match (the kernel's LPM trie, for tests).
pub fn lookup<V: Copy>(bits: u8, prefixes: &[Prefix<V>], x: u64) -> Option<V> {
    prefixes
        .iter()
        .filter(|p| p.len == 0 || (x >> (bits - p.len)) == (p.base >> (bits - p.len)))
        .max_by_key(|p| p.len)
        .map(|p| p.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bits: u8, steps: &[(u64, u32)]) -> Vec<Prefix<u32>> {
        let prefixes = encode(bits, steps);
        let max = 1u64 << bits;
        // Every boundary and its neighbours, plus a spread of points.
        let mut points: Vec<u64> = steps
            .iter()
            .flat_map(|s| [s.0.saturating_sub(1), s.0, (s.0 + 1).min(max - 1)])
            .collect();
        points.extend((0..64).map(|i| i * (max / 64)));
        points.push(max - 1);
        for x in points {
            let want = steps[steps.partition_point(|s| s.0 <= x) - 1].1;
            assert_eq!(
                lookup(bits, &prefixes, x),
                Some(want),
                "x={x} prefixes={prefixes:?}"
            );
        }
        prefixes
    }

    #[test]
    fn a_constant_is_one_entry() {
        assert_eq!(check(16, &[(0, 7)]).len(), 1);
    }

    #[test]
    fn port_range_1_to_65535_is_two_entries() {
        let p = check(16, &[(0, 0), (1, 1)]);
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn single_port_is_two_entries() {
        let p = check(16, &[(0, 0), (80, 1), (81, 0)]);
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn arbitrary_ranges_round_trip() {
        check(
            16,
            &[
                (0, 0),
                (1000, 1),
                (2001, 0),
                (3000, 2),
                (3001, 3),
                (60000, 0),
            ],
        );
        check(
            24,
            &[
                (0, 5),
                (6 << 16, 1),
                ((6 << 16) + 80, 2),
                ((6 << 16) + 81, 1),
                (7 << 16, 5),
            ],
        );
    }

    #[test]
    fn pseudo_random_step_functions_round_trip() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let n = (next() % 12) as usize;
            let mut starts: Vec<u64> = (0..n).map(|_| next() % 65536).collect();
            starts.push(0);
            starts.sort();
            starts.dedup();
            let steps: Vec<(u64, u32)> = starts
                .into_iter()
                .map(|s| (s, (next() % 3) as u32))
                .collect();
            check(16, &steps);
        }
    }
}

//! A ruleset for people: what `weft diff` and `weft dump` print of weft_pol_rs. The cells are
//! decoded back into step functions and each is written as the few prefixes that cover it
//! (longer prefixes override shorter ones), so a port range reads as a range, not as cells.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::classify::{Compiled, Decision, Steps, PROTO_PORT_BITS, RS_F_CTX};
use super::lpm;
use super::tables::{self, Cells};

/// A prefix of the (protocol, port) space: `bits` leading bits of `base`.
fn port_prefix(base: u64, bits: u8, what: &str) -> String {
    let proto = (base >> 16) as u8;
    let port = (base & 0xffff) as u16;
    if bits == 0 {
        return "any".into();
    }
    if bits < 8 {
        return format!("proto {proto}/{bits}");
    }
    let pbits = u32::from(bits) - 8;
    if pbits == 0 {
        return format!("proto {proto}");
    }
    let lo = port;
    let hi = port | ((1u32 << (16 - pbits)) - 1) as u16;
    if proto == 1 {
        let (t, c) = (lo >> 8, lo & 0xff);
        return if pbits <= 8 {
            format!("icmp type {t}")
        } else {
            format!("icmp type {t} code {c}")
        };
    }
    if lo == hi {
        format!("proto {proto} {what} {lo}")
    } else {
        format!("proto {proto} {what} {lo}-{hi}")
    }
}

fn prefixes<V: Copy + Eq + std::hash::Hash>(steps: &Steps<V>, bits: u8) -> Vec<lpm::Prefix<V>> {
    lpm::encode(bits, steps)
}

/// One line per fact of the ruleset, prefixed with `ruleset <id>`. `rules` names rule ids.
pub fn render(id: u32, cells: &Cells, rules: &BTreeMap<u32, String>) -> Vec<String> {
    let head = format!("ruleset {id:#010x}");
    let c: Compiled = match tables::decode(cells) {
        Ok(c) => c,
        Err(e) => return vec![format!("{head} unreadable: {e}")],
    };
    let mut out = vec![format!(
        "{head} {} cells, {} functions{}",
        cells.len(),
        c.functions.len(),
        if c.flags & RS_F_CTX != 0 {
            ", uses context"
        } else {
            ""
        }
    )];
    for p in prefixes(&c.addr, 32) {
        out.push(format!(
            "{head} peer {}/{} -> class {}",
            Ipv4Addr::from(p.base as u32),
            p.len,
            p.value
        ));
    }
    for (l, steps) in c.ctx.iter().enumerate() {
        let local = c
            .locals
            .get(l)
            .map_or("other".to_string(), |a| Ipv4Addr::from(*a).to_string());
        for p in prefixes(steps, PROTO_PORT_BITS) {
            out.push(format!(
                "{head} local {local} {} -> context {}",
                port_prefix(p.base, p.len, "sport"),
                p.value
            ));
        }
    }
    let contexts = usize::from(c.contexts);
    for (cc, f) in c.background.iter().enumerate() {
        out.push(format!("{head} background context {cc} -> function {f}"));
    }
    for (i, row) in c.rows.iter().enumerate() {
        if let Some(f) = row {
            out.push(format!(
                "{head} class {} context {} -> function {f}",
                i / contexts,
                i % contexts
            ));
        }
    }
    for (i, f) in c.functions.iter().enumerate() {
        for p in prefixes(f, PROTO_PORT_BITS) {
            let what = match p.value {
                Decision::Defer => "background".to_string(),
                Decision::Verdict(v) => format!(
                    "{} rule {:#010x}{}{}",
                    if v.allow {
                        "allow"
                    } else if v.no_match {
                        "no-match"
                    } else {
                        "deny"
                    },
                    v.rule_id,
                    if v.log { " log" } else { "" },
                    rules
                        .get(&v.rule_id)
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                ),
            };
            out.push(format!(
                "{head} function {i} {} -> {what}",
                port_prefix(p.base, p.len, "port")
            ));
        }
    }
    out
}

//! A compiled ruleset as the entries of the kernel's classifier maps, under its id.

use std::net::Ipv4Addr;

use crate::bpf::maps::{
    self, Entries, Plain, PolAddrKey, PolClass, PolCtxKey, PolVerdict, PolVerdictKey,
};

use super::classify::Compiled;

/// The entries of the three classifier maps for one ruleset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RulesetEntries {
    pub addr: Entries,
    pub ctx: Entries,
    pub verdict: Entries,
}

impl RulesetEntries {
    pub fn len(&self) -> usize {
        self.addr.len() + self.ctx.len() + self.verdict.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn be(addr: u32) -> u32 {
    maps::addr_be(Ipv4Addr::from(addr))
}

pub fn entries(ruleset: u32, c: &Compiled) -> RulesetEntries {
    let mut out = RulesetEntries::default();
    for (net, class) in &c.addr {
        let k = PolAddrKey {
            prefixlen: 32 + u32::from(net.len),
            ruleset,
            addr: be(net.addr),
        };
        let v = PolClass {
            class: *class,
            flags: c.flags,
        };
        out.addr
            .insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
    }
    for (local, p) in &c.ctx {
        let port = (p.base & 0xffff) as u16;
        let k = PolCtxKey {
            prefixlen: 64 + u32::from(p.len),
            ruleset,
            local_addr: be(*local),
            proto: (p.base >> 16) as u8,
            sport: port.to_be_bytes(),
            pad: 0,
        };
        out.ctx.insert(
            k.as_bytes().to_vec(),
            u32::from(p.value).as_bytes().to_vec(),
        );
    }
    for (aclass, cclass, p) in &c.verdicts {
        let port = (p.base & 0xffff) as u16;
        let k = PolVerdictKey {
            prefixlen: 80 + u32::from(p.len),
            ruleset,
            aclass: *aclass,
            cclass: *cclass,
            proto: (p.base >> 16) as u8,
            dport: port.to_be_bytes(),
            pad: [0; 3],
        };
        let v = PolVerdict {
            action: if p.value.allow {
                maps::ACT_ALLOW
            } else {
                maps::ACT_DENY
            },
            flags: if p.value.log { maps::VERDICT_F_LOG } else { 0 },
            pad: 0,
            rule_id: p.value.rule_id,
        };
        out.verdict
            .insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
    }
    out
}

/// A ruleset's id: a hash of its entries, so equal policy gets the same id (and is shared), a
/// changed one a new id. Never 0 (the programs read 0 as "no ruleset").
pub fn ruleset_id(c: &Compiled) -> u32 {
    // FNV-1a over a canonical encoding of the compiled tables.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(u64::from(c.flags));
    for (n, class) in &c.addr {
        eat(u64::from(n.addr) << 8 | u64::from(n.len));
        eat(u64::from(*class));
    }
    eat(u64::MAX);
    for (local, p) in &c.ctx {
        eat(u64::from(*local));
        eat(p.base << 8 | u64::from(p.len));
        eat(u64::from(p.value));
    }
    eat(u64::MAX);
    for (a, cc, p) in &c.verdicts {
        eat(u64::from(*a) << 16 | u64::from(*cc));
        eat(p.base << 8 | u64::from(p.len));
        eat(u64::from(p.value.allow)
            | u64::from(p.value.log) << 1
            | u64::from(p.value.rule_id) << 8);
    }
    let id = (h ^ (h >> 32)) as u32;
    if id == 0 {
        1
    } else {
        id
    }
}

//! Host endpoints: which of the host's interfaces a HostEndpoint covers, and the rulesets of
//! each (Calico's four stages, both directions; `policy::resolve::Stage`), with the failsafe
//! ports that no policy can close.
//!
//! An interface is covered by, in this order of precedence (as Calico's endpoint manager
//! resolves them): a HostEndpoint naming it, one without interfaceName whose expectedIPs
//! include one of its addresses, one with interfaceName "*". Loopback, workload interfaces and
//! weft's own devices are never host endpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use weft_model::{Config, HostEndpoint, Item};

use super::{read, v4_hosts, Desired, DesiredError, NAT_IN, NAT_OUT};
use crate::bpf::maps::{self, Failsafe4Key, HepValue, XdpHost4Key, XdpSrc4Key, XdpSrcValue};
use crate::facts::HostFacts;
use crate::policy::resolve::{Direction, Endpoint, PolicyIndex, Stage};
use crate::warning::Warning;

/// A host interface a HostEndpoint covers.
pub struct Covered<'c> {
    pub hep: &'c Item<HostEndpoint>,
    pub iface: String,
    pub ifindex: u32,
}

/// A host endpoint weft programs, for status and dumps.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HostEndpointSummary {
    pub name: String,
    pub iface: String,
    pub ifindex: u32,
    /// Each stage's ruleset in each direction; 0 where no policy of the stage selects it.
    pub rulesets: Vec<(Stage, Direction, u32)>,
}

impl HostEndpointSummary {
    /// The key of its rules in `Desired::rules`, for one stage.
    pub fn rules_key(name: &str, iface: &str, stage: Stage) -> String {
        format!("HostEndpoint {name} on {iface} ({})", stage.as_str())
    }
}

/// The interfaces of this node's host endpoints. `workload_ifaces` are never host endpoints.
pub fn covered<'c>(
    cfg: &'c Config,
    facts: &HostFacts,
    workload_ifaces: &BTreeMap<&str, String>,
    warnings: &mut Vec<Warning>,
) -> Vec<Covered<'c>> {
    let mine: Vec<&Item<HostEndpoint>> = cfg
        .host_endpoints
        .iter()
        .filter(|h| h.value.node() == facts.node)
        .collect();
    if mine.is_empty() {
        return Vec::new();
    }
    let named = |i: &str| -> Vec<&'c Item<HostEndpoint>> {
        mine.iter()
            .filter(|h| h.value.interface_name() == Some(i))
            .copied()
            .collect()
    };
    for h in &mine {
        if let Some(i) = h.value.interface_name().filter(|i| *i != "*") {
            if !facts.links.contains_key(i) {
                warnings.push(Warning::resource(
                    format!("HostEndpoint {}", h.value.metadata.name),
                    format!(
                        "{}: HostEndpoint {}: interface {i} does not exist on node {}; it is policed once it appears",
                        h.source, h.value.metadata.name, facts.node
                    ),
                ));
            }
        }
    }
    let mut out = Vec::new();
    for (iface, &ifindex) in &facts.links {
        let name = iface.as_str();
        if name == "lo" || name == NAT_IN || name == NAT_OUT || workload_ifaces.contains_key(name) {
            continue;
        }
        let addrs: BTreeSet<Ipv4Addr> = facts.link_addrs.get(&ifindex).cloned().unwrap_or_default();
        let by_ip = |h: &&&Item<HostEndpoint>| {
            h.value.interface_name().is_none()
                && v4_hosts(h.value.expected_ips())
                    .iter()
                    .any(|a| addrs.contains(a))
        };
        let candidates: Vec<&Item<HostEndpoint>> = {
            let n = named(name);
            if !n.is_empty() {
                n
            } else {
                let e: Vec<_> = mine.iter().filter(by_ip).copied().collect();
                if !e.is_empty() {
                    e
                } else {
                    named("*")
                }
            }
        };
        let Some(first) = candidates.iter().min_by_key(|h| &h.value.metadata.name) else {
            continue;
        };
        if candidates.len() > 1 {
            let names: Vec<&str> = candidates
                .iter()
                .map(|h| h.value.metadata.name.as_str())
                .collect();
            warnings.push(Warning::resource(
                format!("HostEndpoint {}", first.value.metadata.name),
                format!(
                    "HostEndpoints {} all cover interface {name} on node {}: {} is used (the first by name)",
                    names.join(", "),
                    facts.node,
                    first.value.metadata.name
                ),
            ));
        }
        out.push(Covered {
            hep: first,
            iface: iface.clone(),
            ifindex,
        });
    }
    out
}

/// A host endpoint as policy sees it on `c`'s interface: its labels, named ports and
/// profiles; its local addresses are its expected ones and the interface's (every host
/// address for "*", so that one wildcard endpoint has one set of rulesets).
fn endpoint(cfg: &Config, c: &Covered, facts: &HostFacts) -> Endpoint {
    let hep = &c.hep.value;
    let mut addrs: BTreeSet<u32> = v4_hosts(hep.expected_ips())
        .iter()
        .map(|a| u32::from(*a))
        .collect();
    if hep.interface_name() == Some("*") {
        addrs.extend(facts.host_addrs.iter().map(|a| u32::from(*a)));
    } else if let Some(own) = facts.link_addrs.get(&c.ifindex) {
        addrs.extend(own.iter().map(|a| u32::from(*a)));
    }
    Endpoint {
        labels: cfg.host_endpoint_labels(hep),
        addrs: addrs.into_iter().collect(),
        named_ports: read::hep_ports(&hep.spec.ports),
        profiles: hep.spec.profiles.clone(),
    }
}

/// The rulesets of the host endpoints on `covered`, in weft_hep, and their summaries.
pub fn rulesets(
    cfg: &Config,
    facts: &HostFacts,
    covered: &[Covered],
    index: &PolicyIndex,
    cache: &mut crate::policy::Cache,
    d: &mut Desired,
    add: &mut impl FnMut(&'static str, maps::Entry),
) -> Result<(), DesiredError> {
    for c in covered {
        let name = c.hep.value.metadata.name.clone();
        let ep = endpoint(cfg, c, facts);
        let mut ids: BTreeMap<(Stage, Direction), u32> = BTreeMap::new();
        for (stage, dir) in [
            (Stage::Normal, Direction::Ingress),
            (Stage::Normal, Direction::Egress),
            (Stage::Forward, Direction::Ingress),
            (Stage::Forward, Direction::Egress),
            (Stage::PreDnat, Direction::Ingress),
            (Stage::Untracked, Direction::Ingress),
            (Stage::Untracked, Direction::Egress),
        ] {
            let (spec, info) = index.stage_ruleset(&ep, dir, stage);
            // A stage no policy takes part in has no ruleset: forwarded traffic passes, and
            // there is no pre-DNAT or untracked stage. The normal stage always has one.
            if stage != Stage::Normal && spec.groups.is_empty() {
                ids.insert((stage, dir), 0);
                continue;
            }
            let key = HostEndpointSummary::rules_key(&name, &c.iface, stage);
            let cells = super::keep_ruleset(
                cache,
                d,
                key,
                dir,
                (crate::policy::spec_key(&spec), &spec),
                info,
            )?;
            if stage == Stage::Untracked && dir == Direction::Ingress {
                for (map, kv) in xdp_fast_path(c.ifindex, &cells) {
                    add(map, kv);
                }
            }
            ids.insert((stage, dir), cells.id());
        }
        let id = |s, d| ids[&(s, d)];
        let v = HepValue {
            flags: 0,
            ruleset_in: id(Stage::Normal, Direction::Ingress),
            ruleset_out: id(Stage::Normal, Direction::Egress),
            ruleset_fwd_in: id(Stage::Forward, Direction::Ingress),
            ruleset_fwd_out: id(Stage::Forward, Direction::Egress),
            ruleset_prednat: id(Stage::PreDnat, Direction::Ingress),
            ruleset_untracked_in: id(Stage::Untracked, Direction::Ingress),
            ruleset_untracked_out: id(Stage::Untracked, Direction::Egress),
        };
        add(maps::HEP, maps::entry(&c.ifindex, &v));
        d.host_endpoints.push(HostEndpointSummary {
            name,
            iface: c.iface.clone(),
            ifindex: c.ifindex,
            rulesets: ids.into_iter().map(|((s, d), id)| (s, d, id)).collect(),
        });
    }
    Ok(())
}

/// XDP's per-source verdicts for interface `ifindex`, where its untracked ingress ruleset
/// `cells` decides by the source address alone: whole addresses in weft_xdp_host4, prefixes in
/// weft_xdp_src4, each with its map's name. None otherwise (XDP then walks the ruleset).
pub fn xdp_fast_path(
    ifindex: u32,
    cells: &crate::policy::tables::Cells,
) -> Vec<(&'static str, maps::Entry)> {
    let Some(steps) = crate::policy::tables::decode(cells)
        .ok()
        .and_then(|c| crate::policy::classify::by_address_only(&c))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in crate::policy::lpm::encode(32, &steps) {
        let addr = maps::addr_be(Ipv4Addr::from(p.base as u32));
        let v = XdpSrcValue {
            rule_id: p.value.rule_id,
            drop: u8::from(!p.value.allow && !p.value.no_match),
            pad: [0; 3],
        };
        out.push(if p.len == 32 {
            (
                maps::XDP_HOST4,
                maps::entry(&XdpHost4Key { ifindex, addr }, &v),
            )
        } else {
            let k = XdpSrc4Key {
                prefixlen: 32 + u32::from(p.len),
                ifindex,
                addr,
            };
            (maps::XDP_SRC4, maps::entry(&k, &v))
        });
    }
    out
}

/// The failsafe ports of this node's FelixConfiguration, as weft_failsafe4 entries and the
/// weft_fs_ports words that say which ports have any.
pub fn failsafes(cfg: &Config, facts: &HostFacts, add: &mut impl FnMut(&'static str, maps::Entry)) {
    let felix = cfg.felix_for_node(&facts.node);
    let mut words: BTreeMap<u32, u64> = BTreeMap::new();
    for (dir, ports) in [
        (maps::FS_IN, felix.failsafe_inbound_host_ports()),
        (maps::FS_OUT, felix.failsafe_outbound_host_ports()),
    ] {
        for p in ports {
            let (addr, len) = match p.net {
                None => (Ipv4Addr::UNSPECIFIED, 0),
                Some(weft_model::Cidr::V4 { addr, len }) => (addr, len),
                // An IPv6 network restricts an IPv4 failsafe to nothing.
                Some(weft_model::Cidr::V6 { .. }) => continue,
            };
            let net = crate::policy::flat::Net4::new(u32::from(addr), len);
            let k = Failsafe4Key {
                prefixlen: 32 + u32::from(len),
                dir,
                proto: p.protocol,
                port: p.port,
                addr: maps::addr_be(Ipv4Addr::from(net.addr)),
            };
            add(maps::FAILSAFE4, maps::entry(&k, &1u32));
            let (word, bit) = maps::fs_word(dir, p.protocol, p.port);
            *words.entry(word).or_default() |= bit;
        }
    }
    for (word, bits) in words {
        add(maps::FS_PORTS, maps::entry(&word, &bits));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::flat::{proto_port, Flow};

    use crate::testdir::config as load;

    fn hep(name: &str, iface: Option<&str>, ips: &[&str]) -> String {
        let iface = iface
            .map(|i| format!("  interfaceName: \"{i}\"\n"))
            .unwrap_or_default();
        let ips = if ips.is_empty() {
            String::new()
        } else {
            format!("  expectedIPs: [{}]\n", ips.join(", "))
        };
        format!("apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: {name}\n  labels:\n    edge: \"true\"\nspec:\n  node: n1\n{iface}{ips}")
    }

    /// lo, a workload interface, eth0 (10.0.0.1), eth1 (10.0.1.1), eth2 (10.0.2.1).
    fn facts() -> HostFacts {
        let mut f = HostFacts::fixture(
            "n1",
            &[
                ("lo", 1),
                ("calia", 5),
                ("eth0", 2),
                ("eth1", 3),
                ("eth2", 4),
            ],
        );
        for (i, a) in [(2, [10, 0, 0, 1]), (3, [10, 0, 1, 1]), (4, [10, 0, 2, 1])] {
            f.link_addrs.insert(i, BTreeSet::from([Ipv4Addr::from(a)]));
            f.host_addrs.insert(Ipv4Addr::from(a));
        }
        f
    }

    fn coverage(cfg: &Config) -> (Vec<(String, String)>, Vec<Warning>) {
        let workloads = BTreeMap::from([("calia", "w".to_string())]);
        let mut warnings = Vec::new();
        let c = covered(cfg, &facts(), &workloads, &mut warnings)
            .into_iter()
            .map(|c| (c.iface, c.hep.value.metadata.name.clone()))
            .collect();
        (c, warnings)
    }

    #[test]
    fn a_named_interface_beats_expected_ips_which_beat_the_wildcard() {
        let cfg = load(&[
            &hep("all", Some("*"), &[]),
            &hep("by-ip", None, &["10.0.1.1"]),
            &hep("named", Some("eth0"), &[]),
            &hep("gone", Some("eth9"), &[]),
        ]);
        let (c, warnings) = coverage(&cfg);
        assert_eq!(
            c,
            [
                ("eth0".to_string(), "named".to_string()),
                ("eth1".to_string(), "by-ip".to_string()),
                ("eth2".to_string(), "all".to_string()),
            ],
            "lo and the workload's interface are never host endpoints"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.to_string().contains("interface eth9 does not exist")),
            "{warnings:?}"
        );
    }

    #[test]
    fn without_a_host_endpoint_nothing_is_covered() {
        let other_node = hep("x", Some("*"), &[]).replace("node: n1", "node: n2");
        assert!(coverage(&load(&[&other_node])).0.is_empty());
    }

    /// The verdict of `stage`'s ruleset of host endpoint `name` for TCP from `peer` to `port`.
    fn verdict(
        cfg: &Config,
        stage: Stage,
        dir: Direction,
        peer: [u8; 4],
        port: u16,
    ) -> Option<(bool, bool)> {
        let index = PolicyIndex::new(cfg, crate::desired::entities(cfg));
        let workloads = BTreeMap::new();
        let f = facts();
        let c = covered(cfg, &f, &workloads, &mut Vec::new());
        let ep = endpoint(cfg, &c[0], &f);
        let (spec, _) = index.stage_ruleset(&ep, dir, stage);
        if stage != Stage::Normal && spec.groups.is_empty() {
            return None;
        }
        let v = spec.evaluate(&Flow {
            peer: u32::from_be_bytes(peer),
            local: 0,
            sport: proto_port(6, 40000),
            dport: proto_port(6, port),
        });
        Some((v.allow, v.no_match))
    }

    const POLICIES: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: ssh-from-admin
spec:
  selector: edge == 'true'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      source: {nets: [192.0.2.0/24]}
      destination: {ports: [2222]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: block-scanner
spec:
  selector: edge == 'true'
  doNotTrack: true
  applyOnForward: true
  types: [Ingress]
  ingress:
    - action: Deny
      source: {nets: [203.0.113.7/32]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: node-ports
spec:
  selector: edge == 'true'
  preDNAT: true
  applyOnForward: true
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      destination: {ports: [30080]}
"#;

    #[test]
    fn each_stage_takes_its_own_policies_and_only_the_normal_stage_denies_by_default() {
        let cfg = load(&[&hep("eth0", Some("eth0"), &[]), POLICIES]);
        let (ingress, egress) = (Direction::Ingress, Direction::Egress);
        // Normal: the host's own traffic; what no rule allows is denied, in both directions.
        assert_eq!(
            verdict(&cfg, Stage::Normal, ingress, [192, 0, 2, 9], 2222),
            Some((true, false))
        );
        assert_eq!(
            verdict(&cfg, Stage::Normal, ingress, [198, 51, 100, 9], 2222),
            Some((false, false))
        );
        assert_eq!(
            verdict(&cfg, Stage::Normal, egress, [192, 0, 2, 9], 443),
            Some((false, false)),
            "no egress policy: the host's own egress is denied"
        );
        // Forward: no applyOnForward policy of the normal kind selects it: no ruleset.
        assert_eq!(
            verdict(&cfg, Stage::Forward, ingress, [192, 0, 2, 9], 80),
            None
        );
        // Untracked and pre-DNAT: what they do not decide goes on.
        assert_eq!(
            verdict(&cfg, Stage::Untracked, ingress, [203, 0, 113, 7], 22),
            Some((false, false))
        );
        assert_eq!(
            verdict(&cfg, Stage::Untracked, ingress, [192, 0, 2, 9], 22),
            Some((false, true))
        );
        assert_eq!(
            verdict(&cfg, Stage::Untracked, egress, [192, 0, 2, 9], 22),
            None
        );
        assert_eq!(
            verdict(&cfg, Stage::PreDnat, ingress, [198, 51, 100, 9], 30080),
            Some((true, false))
        );
        assert_eq!(
            verdict(&cfg, Stage::PreDnat, ingress, [198, 51, 100, 9], 30081),
            Some((false, true))
        );
    }

    #[test]
    fn apply_on_forward_puts_a_policy_in_the_forward_stage_as_well() {
        let aof = POLICIES.replacen(
            "  types: [Ingress]\n",
            "  applyOnForward: true\n  types: [Ingress]\n",
            1,
        );
        let cfg = load(&[&hep("eth0", Some("eth0"), &[]), &aof]);
        assert_eq!(
            verdict(
                &cfg,
                Stage::Forward,
                Direction::Ingress,
                [192, 0, 2, 9],
                2222
            ),
            Some((true, false))
        );
        assert_eq!(
            verdict(
                &cfg,
                Stage::Forward,
                Direction::Ingress,
                [198, 51, 100, 9],
                80
            ),
            Some((false, false)),
            "a selecting applyOnForward policy ends its tier in deny"
        );
        assert_eq!(
            verdict(&cfg, Stage::Forward, Direction::Egress, [192, 0, 2, 9], 80),
            None
        );
    }

    #[test]
    fn failsafes_default_to_calicos_and_an_empty_list_turns_them_off() {
        let entries = |cfg: &Config| {
            let mut out = Vec::new();
            failsafes(cfg, &facts(), &mut |m, kv| {
                if m == maps::FAILSAFE4 {
                    out.push(kv)
                }
            });
            out
        };
        let defaults = entries(&load(&[&hep("eth0", Some("eth0"), &[])]));
        assert_eq!(defaults.len(), 18, "nine inbound, nine outbound");
        let ssh = Failsafe4Key {
            prefixlen: 32,
            dir: maps::FS_IN,
            proto: 6,
            port: 22,
            addr: 0,
        };
        assert!(defaults
            .iter()
            .any(|(k, _)| k.as_slice() == maps::Plain::as_bytes(&ssh)));
        let off = load(&[
            &hep("eth0", Some("eth0"), &[]),
            "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  failsafeInboundHostPorts: []\n  failsafeOutboundHostPorts:\n    - {protocol: UDP, port: 53, net: 10.0.0.0/8}\n",
        ]);
        let off = entries(&off);
        assert_eq!(off.len(), 1);
        let dns = Failsafe4Key {
            prefixlen: 40,
            dir: maps::FS_OUT,
            proto: 17,
            port: 53,
            addr: maps::addr_be(Ipv4Addr::new(10, 0, 0, 0)),
        };
        assert_eq!(off[0].0.as_slice(), maps::Plain::as_bytes(&dns));
    }

    #[test]
    fn the_failsafe_bitmap_has_a_bit_for_each_port_and_no_other() {
        let cfg = load(&[&hep("eth0", Some("eth0"), &[])]);
        let mut words: BTreeMap<u32, u64> = BTreeMap::new();
        let mut keys = Vec::new();
        failsafes(&cfg, &facts(), &mut |m, (k, v)| {
            if m == maps::FS_PORTS {
                let word: u32 = maps::Plain::from_bytes(&k).expect("word");
                words.insert(word, maps::Plain::from_bytes(&v).expect("bits"));
            } else {
                keys.push(maps::Plain::from_bytes(&k).expect("failsafe key"));
            }
        });
        let keys: Vec<Failsafe4Key> = keys;
        let bits = |dir, proto, port| {
            let (w, b) = maps::fs_word(dir, proto, port);
            words.get(&w).is_some_and(|x| x & b != 0)
        };
        for k in &keys {
            assert!(bits(k.dir, k.proto, k.port), "{k:?}");
        }
        let set: u32 = words.values().map(|w| w.count_ones()).sum();
        assert_eq!(
            set as usize,
            keys.len(),
            "one bit per (direction, protocol, port)"
        );
        assert!(bits(maps::FS_IN, 6, 22), "SSH in");
        assert!(!bits(maps::FS_IN, 17, 22), "not UDP 22");
        assert!(!bits(maps::FS_OUT, 6, 22), "not SSH out");
        assert!(!bits(maps::FS_IN, 6, 23), "not the port beside it");
    }
}

//! What the pure stages say about the BPF objects weft manages: tc hooks and how programs are
//! attached to them, cgroup hooks, the objects and what identifies a loaded program, and the
//! conntrack timeouts the collector applies. Only values: the kernel side (`bpf::link`,
//! `bpf::load`, `bpf::ctgc`) acts on them, and the pure stages (desired, plan, state)
//! describe with them, importing nothing that touches the kernel.

use std::time::Duration;

use crate::abi;

/// Each object's identity (build.rs: a hash of the object's bytes), without its skeleton.
mod wep {
    include!(concat!(env!("OUT_DIR"), "/weft_wep.id.rs"));
}
mod hep {
    include!(concat!(env!("OUT_DIR"), "/weft_hep.id.rs"));
}
mod ctlb {
    include!(concat!(env!("OUT_DIR"), "/weft_ctlb.id.rs"));
}

/// A hook of an interface: tc's two, and XDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// Packets the interface receives (`tc ... ingress`).
    Ingress,
    /// Packets the interface sends (`tc ... egress`).
    Egress,
    /// Packets the interface receives, before an skb exists. Always a link (a pinned
    /// bpf_link, as TCX's are), whatever the tc hooks use: `AttachMode::Tcx` in the state
    /// (the driver's XDP where it has one), or `AttachMode::XdpGeneric`.
    Xdp,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Ingress => "ingress",
            Hook::Egress => "egress",
            Hook::Xdp => "xdp",
        }
    }
}

/// How programs are attached (FelixConfiguration BPFAttachType).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    #[default]
    Tcx,
    Tc,
    /// XDP only: a link in the kernel's generic (skb) mode. What weft's XDP sends back out
    /// of a veth (NodePort acceleration's XDP_TX) reaches the peer in the driver's mode only
    /// where the peer runs NAPI (an XDP program or GRO of its own), which weft cannot see to
    /// from this side; in generic mode it always does. Observed only on veths: elsewhere the
    /// mode is the kernel's choice, and reads as `Tcx`.
    #[serde(rename = "xdp-generic")]
    XdpGeneric,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Tc => "tc",
            AttachMode::XdpGeneric => "xdp-generic",
        }
    }

    /// A pinned bpf_link (TCX or XDP), as opposed to a legacy tc filter.
    pub fn is_link(self) -> bool {
        self != AttachMode::Tc
    }
}

/// The cgroup hooks weft attaches connect-time load balancing to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupHook {
    Connect4,
    Sendmsg4,
    Recvmsg4,
}

impl CgroupHook {
    pub const ALL: [CgroupHook; 3] = [
        CgroupHook::Connect4,
        CgroupHook::Sendmsg4,
        CgroupHook::Recvmsg4,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CgroupHook::Connect4 => "connect4",
            CgroupHook::Sendmsg4 => "sendmsg4",
            CgroupHook::Recvmsg4 => "recvmsg4",
        }
    }

    pub fn parse(s: &str) -> Option<CgroupHook> {
        CgroupHook::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

/// DefaultEndpointToHostAction (Calico's default: Drop).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum EpToHost {
    #[default]
    Drop,
    Return,
    Accept,
}

impl EpToHost {
    /// As weft_ep_to_host_action holds it (WEFT_EP_TO_HOST_*, weft_bpf.h).
    pub(crate) fn code(self) -> u8 {
        match self {
            EpToHost::Drop => abi::EP_TO_HOST_DROP,
            EpToHost::Return => abi::EP_TO_HOST_RETURN,
            EpToHost::Accept => abi::EP_TO_HOST_ACCEPT,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            abi::EP_TO_HOST_DROP => EpToHost::Drop,
            abi::EP_TO_HOST_RETURN => EpToHost::Return,
            abi::EP_TO_HOST_ACCEPT => EpToHost::Accept,
            _ => return None,
        })
    }
}

/// bpfEnforceRPF (Calico's default: Loose).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Rpf {
    Disabled,
    Strict,
    #[default]
    Loose,
}

impl Rpf {
    /// As weft_rpf holds it (WEFT_RPF_*, weft_bpf.h).
    pub(crate) fn code(self) -> u8 {
        match self {
            Rpf::Disabled => abi::RPF_DISABLED,
            Rpf::Strict => abi::RPF_STRICT,
            Rpf::Loose => abi::RPF_LOOSE,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            abi::RPF_DISABLED => Rpf::Disabled,
            abi::RPF_STRICT => Rpf::Strict,
            abi::RPF_LOOSE => Rpf::Loose,
            _ => return None,
        })
    }
}

/// The settings compiled into every program's .rodata (bpf-src/include/weft_settings.h).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProgramSettings {
    pub ep_to_host: EpToHost,
    /// Connect-time load balancing translates UDP too.
    pub ctlb_udp: bool,
    /// The network namespace connect-time load balancing serves (0: any).
    pub netns_cookie: u64,
    /// Flows may come from other nodes through the fleet's tunnel (vxlan.calico).
    pub tunnel: bool,
    /// bpfEnforceRPF.
    pub rpf: Rpf,
    /// The MSS workloads' TCP handshakes are clamped to while the tunnel is up (0: none).
    pub mss_clamp: u16,
    /// bpfExternalServiceMode DSR (with the tunnel).
    pub dsr: bool,
    /// bpfExternalServiceAcceleration XDP (with the tunnel): what XDP needs to send a flow on
    /// through the tunnel itself.
    pub xdp_accel: Option<XdpAccel>,
}

/// The tunnel as XDP's NodePort acceleration writes its headers: vxlan.calico's VNI and port,
/// and this node's VTEP (weft_settings.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct XdpAccel {
    pub vni: u32,
    pub port: u16,
    /// vxlan.calico's MTU: larger packets are the stack's to answer.
    pub mtu: u16,
    /// xdpEnabled: XDP also runs host endpoints' untracked ingress stage (else tc alone).
    pub untracked: bool,
    pub vtep: std::net::Ipv4Addr,
    #[serde(serialize_with = "ser_mac")]
    pub vtep_mac: [u8; 6],
}

fn ser_mac<S: serde::Serializer>(mac: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::state::mac_string(mac))
}

/// The BPF objects weft loads, one per hook family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Object {
    /// bpf-src/weft_wep.bpf.c: workload interfaces.
    Wep,
    /// bpf-src/weft_hep.bpf.c: data interfaces and bpfout.weft.
    Hep,
    /// bpf-src/weft_ctlb.bpf.c: connect-time load balancing on a cgroup.
    Ctlb,
}

impl Object {
    pub const ALL: [Object; 3] = [Object::Wep, Object::Hep, Object::Ctlb];

    pub fn name(self) -> &'static str {
        match self {
            Object::Wep => "weft_wep",
            Object::Hep => "weft_hep",
            Object::Ctlb => "weft_ctlb",
        }
    }

    /// FNV-1a of the object's bytes, as built into this weft.
    pub fn id(self) -> u64 {
        match self {
            Object::Wep => wep::OBJECT_ID,
            Object::Hep => hep::OBJECT_ID,
            Object::Ctlb => ctlb::OBJECT_ID,
        }
    }

    pub fn programs(self) -> &'static [&'static str] {
        match self {
            Object::Wep => &["weft_from_wep", "weft_to_wep"],
            Object::Hep => &[
                "weft_from_hep",
                "weft_to_hep",
                "weft_from_nat",
                "weft_from_tun",
                "weft_xdp",
            ],
            Object::Ctlb => &["weft_connect4", "weft_sendmsg4", "weft_recvmsg4"],
        }
    }

    /// The object a program of this weft comes from.
    pub fn of_program(program: &str) -> Option<Object> {
        Object::ALL
            .into_iter()
            .find(|o| o.programs().contains(&program))
    }
}

/// What a loaded program is: which build of which object, with which settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProgramIdentity {
    pub object_id: u64,
    pub settings: ProgramSettings,
}

impl ProgramIdentity {
    /// The identity of `object`'s programs as this weft would load them with `settings`.
    pub fn current(object: Object, settings: ProgramSettings) -> Self {
        ProgramIdentity {
            object_id: object.id(),
            settings,
        }
    }

    pub fn describe(&self) -> String {
        let mut s = format!(
            "object {:#018x} ep-to-host={:?}",
            self.object_id, self.settings.ep_to_host
        )
        .to_lowercase();
        if self.settings.ctlb_udp {
            s += " ctlb-udp";
        }
        if self.settings.tunnel {
            s += " tunnel";
        }
        if self.settings.dsr {
            s += " dsr";
        }
        if let Some(x) = self.settings.xdp_accel {
            s += &format!(
                " xdp-accel(vni={} port={} mtu={} vtep={} {}{})",
                x.vni,
                x.port,
                x.mtu,
                x.vtep,
                crate::state::mac_string(&x.vtep_mac),
                if x.untracked { "" } else { " untracked-in-tc" }
            );
        }
        if self.settings.mss_clamp != 0 {
            s += &format!(" mss-clamp={}", self.settings.mss_clamp);
        }
        if self.settings.rpf != Rpf::Loose {
            s += &format!(" rpf={:?}", self.settings.rpf).to_lowercase();
        }
        s
    }
}

/// How long an idle flow lives, by its state (Calico's BPFConntrackTimeouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CtTimeouts {
    /// Nothing younger than this is deleted, whatever its state: a flow being set up may not
    /// have all its entries yet.
    pub creation_grace: Duration,
    pub tcp_syn_sent: Duration,
    pub tcp_established: Duration,
    pub tcp_fins_seen: Duration,
    pub tcp_reset_seen: Duration,
    pub udp: Duration,
    pub generic: Duration,
    pub icmp: Duration,
}

impl Default for CtTimeouts {
    /// Calico's defaults.
    fn default() -> Self {
        let s = Duration::from_secs;
        CtTimeouts {
            creation_grace: s(10),
            tcp_syn_sent: s(20),
            tcp_established: s(3600),
            tcp_fins_seen: s(30),
            tcp_reset_seen: s(40),
            udp: s(60),
            generic: s(600),
            icmp: s(5),
        }
    }
}

impl CtTimeouts {
    /// The timeouts a FelixConfiguration asks for. `Auto` takes Calico's default: weft tracks
    /// connections itself, so there is no netfilter setting to inherit.
    pub fn from_config(t: &weft_model::ConntrackTimeouts) -> Self {
        let d = CtTimeouts::default();
        let pick = |v: &weft_model::ConntrackTimeout, default: Duration| match v {
            weft_model::ConntrackTimeout::After(x) => *x,
            weft_model::ConntrackTimeout::Auto => default,
        };
        CtTimeouts {
            creation_grace: pick(&t.creation_grace_period, d.creation_grace),
            tcp_syn_sent: pick(&t.tcp_syn_sent, d.tcp_syn_sent),
            tcp_established: pick(&t.tcp_established, d.tcp_established),
            tcp_fins_seen: pick(&t.tcp_fins_seen, d.tcp_fins_seen),
            tcp_reset_seen: pick(&t.tcp_reset_seen, d.tcp_reset_seen),
            udp: pick(&t.udp, d.udp),
            generic: pick(&t.generic, d.generic),
            icmp: pick(&t.icmp, d.icmp),
        }
    }
}

//! Why packets were accepted or dropped: mirrors `enum weft_reason` in
//! bpf-src/include/weft_reasons.h (append only; the indexes are pinned counters).

/// Reason names by index, as `weft dump counters` shows them.
pub const REASONS: &[&str] = &[
    "accept-policy",
    "accept-conntrack",
    "accept-related-icmp",
    "accept-arp",
    "drop-policy",
    "drop-short-packet",
    "drop-bad-ipv4",
    "drop-fragment",
    "drop-spoofed-source",
    "drop-ethertype",
    "drop-endpoint-to-host",
    "drop-no-interface-entry",
    "drop-conntrack-full",
    "drop-ipv6",
    "accept-nat",
    "reject-no-backend",
    "drop-source-range",
    "drop-nat",
    "accept-host",
];

pub const ACCEPT_POLICY: usize = 0;
pub const ACCEPT_CT: usize = 1;
pub const ACCEPT_RELATED: usize = 2;
pub const ACCEPT_ARP: usize = 3;
pub const DROP_POLICY: usize = 4;
pub const DROP_SHORT: usize = 5;
pub const DROP_BAD_IP: usize = 6;
pub const DROP_FRAGMENT: usize = 7;
pub const DROP_SPOOFED: usize = 8;
pub const DROP_ETHERTYPE: usize = 9;
pub const DROP_EP_TO_HOST: usize = 10;
pub const DROP_NO_IFACE: usize = 11;
pub const DROP_CT_FULL: usize = 12;
pub const DROP_IPV6: usize = 13;
pub const ACCEPT_NAT: usize = 14;
pub const REJECT_NO_BACKEND: usize = 15;
pub const DROP_SRC_RANGE: usize = 16;
pub const DROP_NAT: usize = 17;
pub const ACCEPT_HOST: usize = 18;

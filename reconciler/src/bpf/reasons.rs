//! Why packets were accepted or dropped: `enum weft_reason` of bpf-src/include/weft_reasons.h
//! (append only; the indexes are pinned counters). The indexes are generated from the header
//! (`crate::abi`); the names are weft's own, checked against them by the tests below.

/// Reason names by index, as `weft dump counters` shows them.
pub const REASONS: [&str; MAX] = [
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
    "accept-failsafe",
    "accept-untracked",
    "drop-untracked",
    "drop-prednat",
    "drop-rpf",
    "accept-xdp-forward",
];

// The indexes, generated from weft_reasons.h (see `crate::abi`).
pub use crate::abi::{
    REASON_ACCEPT_ARP as ACCEPT_ARP, REASON_ACCEPT_CT as ACCEPT_CT,
    REASON_ACCEPT_FAILSAFE as ACCEPT_FAILSAFE, REASON_ACCEPT_HOST as ACCEPT_HOST,
    REASON_ACCEPT_NAT as ACCEPT_NAT, REASON_ACCEPT_POLICY as ACCEPT_POLICY,
    REASON_ACCEPT_RELATED as ACCEPT_RELATED, REASON_ACCEPT_UNTRACKED as ACCEPT_UNTRACKED,
    REASON_ACCEPT_XDP_FWD as ACCEPT_XDP_FWD, REASON_DROP_BAD_IP as DROP_BAD_IP,
    REASON_DROP_CT_FULL as DROP_CT_FULL, REASON_DROP_EP_TO_HOST as DROP_EP_TO_HOST,
    REASON_DROP_ETHERTYPE as DROP_ETHERTYPE, REASON_DROP_FRAGMENT as DROP_FRAGMENT,
    REASON_DROP_IPV6 as DROP_IPV6, REASON_DROP_NAT as DROP_NAT,
    REASON_DROP_NO_IFACE as DROP_NO_IFACE, REASON_DROP_POLICY as DROP_POLICY,
    REASON_DROP_PREDNAT as DROP_PREDNAT, REASON_DROP_RPF as DROP_RPF,
    REASON_DROP_SHORT as DROP_SHORT, REASON_DROP_SPOOFED as DROP_SPOOFED,
    REASON_DROP_SRC_RANGE as DROP_SRC_RANGE, REASON_DROP_UNTRACKED as DROP_UNTRACKED,
    REASON_MAX as MAX, REASON_REJECT_NO_BACKEND as REJECT_NO_BACKEND,
};

// Every reason has a name, and the counters have room for every reason.
const _: () = assert!(REASONS.len() == MAX);
const _: () = assert!(MAX < crate::abi::COUNTERS_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_is_at_its_reasons_index() {
        for (index, name) in [
            (ACCEPT_POLICY, "accept-policy"),
            (ACCEPT_CT, "accept-conntrack"),
            (ACCEPT_RELATED, "accept-related-icmp"),
            (ACCEPT_ARP, "accept-arp"),
            (DROP_POLICY, "drop-policy"),
            (DROP_SHORT, "drop-short-packet"),
            (DROP_BAD_IP, "drop-bad-ipv4"),
            (DROP_FRAGMENT, "drop-fragment"),
            (DROP_SPOOFED, "drop-spoofed-source"),
            (DROP_ETHERTYPE, "drop-ethertype"),
            (DROP_EP_TO_HOST, "drop-endpoint-to-host"),
            (DROP_NO_IFACE, "drop-no-interface-entry"),
            (DROP_CT_FULL, "drop-conntrack-full"),
            (DROP_IPV6, "drop-ipv6"),
            (ACCEPT_NAT, "accept-nat"),
            (REJECT_NO_BACKEND, "reject-no-backend"),
            (DROP_SRC_RANGE, "drop-source-range"),
            (DROP_NAT, "drop-nat"),
            (ACCEPT_HOST, "accept-host"),
            (ACCEPT_FAILSAFE, "accept-failsafe"),
            (ACCEPT_UNTRACKED, "accept-untracked"),
            (DROP_UNTRACKED, "drop-untracked"),
            (DROP_PREDNAT, "drop-prednat"),
            (DROP_RPF, "drop-rpf"),
            (ACCEPT_XDP_FWD, "accept-xdp-forward"),
        ] {
            assert_eq!(REASONS[index], name);
        }
    }
}

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The map objects. Their layouts are in weft_maps.h. The loader sets every max_entries from
 * FelixConfiguration (BPFMapSize*) before load (reconciler/src/bpf/maps.rs, each map's spec),
 * and reuses the maps pinned under weft's bpffs root, so every program shares one instance of
 * each. The sizes here are what an empty FelixConfiguration gives, so the object loaded as it
 * is (bpftool, the verifier's checks) is sized like weft's default: a test holds each to it.
 */
#ifndef WEFT_DEFS_MAPS_H
#define WEFT_DEFS_MAPS_H

#include "weft_bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 512000);
	__type(key, struct weft_ct4_key);
	__type(value, struct weft_ct4_value);
} weft_ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1000);
	__type(key, __u32); /* ifindex */
	__type(value, struct weft_iface_value);
} weft_iface SEC(".maps");

/* The fleet's tunnel (weft_maps.h): other nodes' VTEP MACs, and flows they forwarded here. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct weft_vtep_key);
	__type(value, __u32); /* tunnel address, network order */
} weft_vtep4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tunnel address, network order */
	__type(value, struct weft_node4_value);
} weft_node4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WEFT_XDP_FIB_SLOTS);
	__type(key, __u32);
	__type(value, struct weft_xdp_fib);
} weft_xdp_fib SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct weft_ct4_key);
	__type(value, struct weft_tun_flow);
} weft_tun_flows4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_dsr_optout4_key);
	__type(value, __u32); /* unused */
} weft_dsr_optout4 SEC(".maps");

/* Fragmented datagrams' ports, from their first fragment (weft_maps.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct weft_frag4_key);
	__type(value, struct weft_frag4_value);
} weft_frags4 SEC(".maps");

/* Host endpoints' rulesets (weft_maps.h), by ifindex; looked up only where weft_iface says
 * WEFT_IFACE_F_HEP. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1000);
	__type(key, __u32); /* ifindex */
	__type(value, struct weft_hep_value);
} weft_hep SEC(".maps");

/* XDP's per-source verdicts (weft_maps.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_xdp_src4_key);
	__type(value, struct weft_xdp_src_value);
} weft_xdp_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_xdp_host4_key);
	__type(value, struct weft_xdp_src_value);
} weft_xdp_host4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} weft_xdp_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WEFT_XDP_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct weft_xdp_cache);
} weft_xdp_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WEFT_XDP_CTR_SLOTS);
	__type(key, __u32);
	__type(value, struct weft_xdp_ctr);
} weft_xdp_ctrs SEC(".maps");

/* The failsafe ports' bitmap (weft_maps.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WEFT_FS_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} weft_fs_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_failsafe4_key);
	__type(value, __u32); /* unused */
} weft_failsafe4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_route4_key);
	__type(value, struct weft_route_value);
} weft_rt4 SEC(".maps");

/* A local workload's address -> the interface it must come from: the anti-spoofing check on
 * every packet a workload sends, an exact match (weft_rt4 is an LPM trie, several times
 * dearer per lookup). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);   /* address, network order */
	__type(value, __u32); /* ifindex */
} weft_wladdr4 SEC(".maps");

/*
 * A ruleset's cells (weft_maps.h): the template of weft_pol_rs's inner maps. Each ruleset's
 * array has exactly its own number of cells (BPF_F_INNER_MAP lets them differ); weft writes
 * them through a mapping (BPF_F_MMAPABLE: one copy, no syscall per cell, which the kernel
 * refuses for BPF_F_RDONLY_PROG maps) and freezes them; programs only read them.
 */
struct weft_pol_cells {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
	/* Sizes rather than types: clang would only forward-declare the cell in its BTF here. */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct weft_pol_cell));
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4000);
	__type(key, __u32); /* ruleset id */
	__array(values, struct weft_pol_cells);
} weft_pol_rs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 6000); /* six hooks per interface */
	__type(key, struct weft_counters_key);
	__type(value, struct weft_counters);
} weft_ctrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* rule id */
	__type(value, __u64); /* packets that a rule decided */
} weft_rule_ctrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_nat_fe4_key);
	__type(value, struct weft_nat_fe_value);
} weft_nat_fe4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_nat_be_key);
	__type(value, struct weft_nat_be4_value);
} weft_nat_be4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_nat_src4_key);
	__type(value, __u32);
} weft_nat_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct weft_nat_aff4_key);
	__type(value, struct weft_nat_aff4_value);
} weft_nat_aff4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 50300);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_nat_be_key); /* (svc_id, slot) */
	__type(value, struct weft_nat_be4_value);
} weft_maglev4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct weft_ctlb_rev4_key);
	__type(value, struct weft_nat_be4_value); /* the frontend */
} weft_ctlb_rev4 SEC(".maps");

/* Flow logs and packet traces (weft_maps.h, events.h); sized by bpfExportBufferSizeMB. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} weft_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} weft_trace SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WEFT_LOST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} weft_ring_lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1000);
	__type(key, __u32); /* ifindex */
	__type(value, struct weft_trace_filter);
} weft_trace_flt SEC(".maps");

/*
 * Per-CPU scratch space for what the BPF stack (512 bytes) cannot hold. Only tc ingress
 * programs write it (ICMP replies), and those never nest on one CPU; `zero` is never written.
 */
struct weft_scratch {
	struct weft_counters zero; /* the initial value of a new counters entry */
	__u8 icmp[96];             /* the ICMP message being checksummed */
	struct bpf_fib_lookup fib; /* the reverse-path check's route lookup */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct weft_scratch);
} weft_scratch SEC(".maps");

#endif /* WEFT_DEFS_MAPS_H */

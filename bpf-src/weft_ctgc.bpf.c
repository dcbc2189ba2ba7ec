// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Conntrack garbage collection: one pass over weft_ct4 inside the kernel, deleting the flows
 * that have been idle longer than their state's timeout (BPFConntrackTimeouts). A service
 * flow's two entries go together: when the reverse entry (the flow's legs) expires, the
 * forward entry is rebuilt from it and deleted too; a forward entry whose reverse entry is gone
 * (evicted by the LRU) is deleted on sight.
 *
 * Userspace runs it with BPF_PROG_TEST_RUN, passing the timeouts in and reading the tallies
 * back through the context (struct weft_ctgc_args). A userspace sweep must copy every entry
 * out of the kernel (Calico's costs over a core at 4M entries); here each entry costs one
 * callback.
 */
#include "weft_bpf.h"
#include "weft_defs_maps.h"
#include "conntrack.h"

/* now - then, or 0 where `then` is later (an entry touched after the pass began). */
WEFT_INLINE __u64 weft_age(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}

/* Why an entry has expired (a WEFT_CTGC_* index into weft_ctgc_args.expired), or -1. */
WEFT_INLINE int weft_ctgc_expired(const struct weft_ct4_key *k, const struct weft_ct4_value *v,
				  const struct weft_ctgc_args *a)
{
	__u64 age = weft_age(a->now_ns, v->last_seen_ns);
	__u8 fa = v->leg_a.tcp_flags, fb = v->leg_b.tcp_flags;

	/* A flow being set up may not have all its entries yet: leave it be. */
	if (weft_age(a->now_ns, v->created_ns) < a->timeout_ns[WEFT_CTGC_GRACE])
		return -1;
	switch (k->proto) {
	case IPPROTO_TCP:
		if (((fa | fb) & WEFT_CT_LEG_RST) && age > a->timeout_ns[WEFT_CTGC_TCP_RST])
			return WEFT_CTGC_TCP_RST;
		if ((fa & WEFT_CT_LEG_FIN) && (fb & WEFT_CT_LEG_FIN) && age > a->timeout_ns[WEFT_CTGC_TCP_FINS])
			return WEFT_CTGC_TCP_FINS;
		/* Both sides have acknowledged: established (a flow picked up mid-way included). */
		if ((fa & WEFT_CT_LEG_ACK) && (fb & WEFT_CT_LEG_ACK)) {
			if (age > a->timeout_ns[WEFT_CTGC_TCP_ESTABLISHED])
				return WEFT_CTGC_TCP_ESTABLISHED;
		} else if (age > a->timeout_ns[WEFT_CTGC_TCP_SYN_SENT]) {
			return WEFT_CTGC_TCP_SYN_SENT;
		}
		return -1;
	case IPPROTO_UDP:
		return age > a->timeout_ns[WEFT_CTGC_UDP] ? WEFT_CTGC_UDP : -1;
	case IPPROTO_ICMP:
		return age > a->timeout_ns[WEFT_CTGC_ICMP] ? WEFT_CTGC_ICMP : -1;
	}
	return age > a->timeout_ns[WEFT_CTGC_GENERIC] ? WEFT_CTGC_GENERIC : -1;
}

/* The forward entry of a service flow, rebuilt from its reverse entry: the tuple the client
 * sent, to the frontend. */
WEFT_INLINE void weft_ctgc_fwd_key(struct weft_ct4_key *fwd, const struct weft_ct4_key *rev,
				   const struct weft_ct4_value *v)
{
	bool client_is_a = !(v->flags & WEFT_CT_F_B_ORIGINATED);
	__u32 client = client_is_a ? rev->addr_a : rev->addr_b;
	__u16 client_port = client_is_a ? rev->port_a : rev->port_b;

	if (v->nat_orig_saddr) {
		client = v->nat_orig_saddr;
		client_port = v->nat_orig_sport;
	}
	weft_ct4_key_of(fwd, client, v->nat_orig_daddr, client_port, v->nat_orig_dport, rev->proto);
}

static long weft_ctgc_visit(void *map, struct weft_ct4_key *k, struct weft_ct4_value *v,
			    struct weft_ctgc_args *a)
{
	struct weft_ct4_key other;
	struct weft_ct4_value *rev;
	int why;

	a->scanned++;
	if (v->type == WEFT_CT_NAT_FWD) {
		/* Its lifetime is the reverse entry's, which carries the traffic's timestamps. */
		other = v->nat_rev_key;
		rev = bpf_map_lookup_elem(&weft_ct4, &other);
		if (rev && rev->type == WEFT_CT_NAT_REV)
			return 0;
		if (weft_age(a->now_ns, v->created_ns) < a->timeout_ns[WEFT_CTGC_GRACE])
			return 0;
		if (!bpf_map_delete_elem(&weft_ct4, k))
			a->expired[WEFT_CTGC_NAT_ORPHAN]++;
		return 0;
	}
	why = weft_ctgc_expired(k, v, a);
	if (why < 0 || why >= WEFT_CTGC_SLOTS)
		return 0;
	if (v->type == WEFT_CT_NAT_REV) {
		weft_ctgc_fwd_key(&other, k, v);
		if (!bpf_map_delete_elem(&weft_ct4, &other))
			a->nat_fwd_deleted++;
	}
	if (!bpf_map_delete_elem(&weft_ct4, k))
		a->expired[why]++;
	return 0;
}

SEC("syscall")
int weft_ctgc(struct weft_ctgc_args *ctx)
{
	struct weft_ctgc_args a;

	__builtin_memcpy(&a, ctx, sizeof(a));
	a.now_ns = bpf_ktime_get_ns();
	a.scanned = 0;
	a.nat_fwd_deleted = 0;
	for (int i = 0; i < WEFT_CTGC_SLOTS; i++)
		a.expired[i] = 0;
	bpf_for_each_map_elem(&weft_ct4, weft_ctgc_visit, &a, 0);
	__builtin_memcpy(ctx, &a, sizeof(a));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

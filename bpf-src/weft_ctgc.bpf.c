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

/*
 * What keeps the verifier's cost small, on every kernel: the verifier checks a
 * bpf_for_each_map_elem callback as a loop body (since Linux 6.7 it re-walks it until its states
 * converge), and the cost of that multiplies with every branch whose outcome it must remember.
 * So the callback remembers nothing:
 * - the pass's timeouts and tallies live in a global (a map value, whose contents the verifier
 *   does not track), not on the caller's stack, so every walk of the callback starts in the same
 *   state and the second walk is pruned at once;
 * - the decision of whether and why an entry expired is a global function over scalars, which
 *   the verifier checks once, on its own, whatever calls it.
 * `weft verifier` prints what this costs on the running kernel; a test keeps it far inside the
 * budget.
 *
 * One sweep runs at a time (they share the global): the daemon's collector thread, or
 * `weft gc`.
 */
struct weft_ctgc_args weft_ctgc_pass;

/* now - then, or 0 where `then` is later (an entry touched after the pass began). */
WEFT_INLINE __u64 weft_age(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}

/*
 * Why an entry has expired (a WEFT_CTGC_* index into weft_ctgc_args.expired), or -1: from its
 * protocol, its legs' TCP flags, how long it has been idle and how old it is. A global function:
 * verified once, apart from its callers.
 */
__noinline long weft_ctgc_why(__u32 proto, __u32 flags_a, __u32 flags_b, __u64 idle, __u64 age)
{
	const __u64 *t = weft_ctgc_pass.timeout_ns;

	/* A flow being set up may not have all its entries yet: leave it be. */
	if (age < t[WEFT_CTGC_GRACE])
		return -1;
	switch (proto) {
	case IPPROTO_TCP:
		if (((flags_a | flags_b) & WEFT_CT_LEG_RST) && idle > t[WEFT_CTGC_TCP_RST])
			return WEFT_CTGC_TCP_RST;
		if ((flags_a & flags_b & WEFT_CT_LEG_FIN) && idle > t[WEFT_CTGC_TCP_FINS])
			return WEFT_CTGC_TCP_FINS;
		/* Both sides have acknowledged: established (a flow picked up mid-way included). */
		if (flags_a & flags_b & WEFT_CT_LEG_ACK)
			return idle > t[WEFT_CTGC_TCP_ESTABLISHED] ? WEFT_CTGC_TCP_ESTABLISHED : -1;
		return idle > t[WEFT_CTGC_TCP_SYN_SENT] ? WEFT_CTGC_TCP_SYN_SENT : -1;
	case IPPROTO_UDP:
		return idle > t[WEFT_CTGC_UDP] ? WEFT_CTGC_UDP : -1;
	case IPPROTO_ICMP:
		return idle > t[WEFT_CTGC_ICMP] ? WEFT_CTGC_ICMP : -1;
	}
	return idle > t[WEFT_CTGC_GENERIC] ? WEFT_CTGC_GENERIC : -1;
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

static long weft_ctgc_visit(void *map, struct weft_ct4_key *k, struct weft_ct4_value *v, void *ctx)
{
	struct weft_ctgc_args *a = &weft_ctgc_pass;
	struct weft_ct4_key other;
	struct weft_ct4_value *rev;
	/* 64 bits wide, as the index it becomes: a narrower type is widened after its bounds
	 * check, in a register the verifier knows no bounds of. */
	__u64 why;

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
	why = weft_ctgc_why(k->proto, v->leg_a.tcp_flags, v->leg_b.tcp_flags,
			    weft_age(a->now_ns, v->last_seen_ns), weft_age(a->now_ns, v->created_ns));
	/* -1 (nothing expired) is out of range too. */
	if (why >= WEFT_CTGC_SLOTS)
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
	struct weft_ctgc_args *a = &weft_ctgc_pass;

	__builtin_memcpy(a->timeout_ns, ctx->timeout_ns, sizeof(a->timeout_ns));
	a->now_ns = bpf_ktime_get_ns();
	a->scanned = 0;
	a->nat_fwd_deleted = 0;
	for (int i = 0; i < WEFT_CTGC_SLOTS; i++)
		a->expired[i] = 0;
	bpf_for_each_map_elem(&weft_ct4, weft_ctgc_visit, NULL, 0);
	__builtin_memcpy(ctx, a, sizeof(*a));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Policy: the lookups of a compiled ruleset (see weft_maps.h): an address walk, a function walk
 * (and two more with the context stage) of at most eight cells each, whatever the number of
 * rules, prefixes or ports behind the ruleset.
 */
#ifndef WEFT_POLICY_H
#define WEFT_POLICY_H

#include "weft_bpf.h"

/* A flow as a ruleset sees it: from the endpoint, in the flow's direction. */
struct weft_flow4 {
	__u32 peer;  /* the other side's address */
	__u32 local; /* the endpoint's address */
	__u16 sport; /* the originator's port */
	__u16 dport; /* the responder's port; ICMP: type << 8 | code */
	__u8 proto;
	__u8 pad[3];
};

struct weft_policy_result {
	__u8 action;  /* WEFT_ACT_* */
	__u8 flags;   /* WEFT_VERDICT_F_* */
	__u32 rule_id;
};

/* Word i of a ruleset's tables (words are numbered across cells); false beyond the cells. */
WEFT_INLINE bool weft_pol_word(void *cells, __u32 i, __u32 *out)
{
	__u32 ci = i / WEFT_POL_CELL_WORDS;
	struct weft_pol_cell *c = bpf_map_lookup_elem(cells, &ci);

	if (!c)
		return false;
	*out = c->w[i % WEFT_POL_CELL_WORDS];
	return true;
}

/*
 * The value of the trie at `entry` for `key`, a `bits`-bit value (32 or 24): one node per 4
 * bits, so at most 8 cells whatever the trie holds. False for a malformed trie.
 */
WEFT_INLINE bool weft_pol_walk(void *cells, __u32 entry, __u32 key, __u32 bits, __u32 *out)
{
	__u32 shift = bits;

	for (int i = 0; i < 32 / WEFT_POL_STRIDE; i++) {
		struct weft_pol_cell *c;

		if (entry & WEFT_POL_LEAF)
			break;
		if (shift < WEFT_POL_STRIDE)
			return false;
		shift -= WEFT_POL_STRIDE;
		c = bpf_map_lookup_elem(cells, &entry);
		if (!c)
			return false;
		entry = c->w[(key >> shift) % WEFT_POL_CELL_WORDS];
	}
	if (!(entry & WEFT_POL_LEAF))
		return false;
	*out = entry & ~WEFT_POL_LEAF;
	return true;
}

/* Decides a new flow with ruleset `ruleset`; anything missing or malformed denies. */
WEFT_INLINE void weft_policy4_walk(__u32 ruleset, const struct weft_flow4 *f, struct weft_policy_result *r)
{
	__u32 dport_key = (__u32)f->proto << 16 | f->dport;
	__u32 zero = 0, aclass, cclass = 0, root, v, at, ci;
	struct weft_pol_cell *h, *c;
	void *cells;

	r->action = WEFT_ACT_DENY;
	r->flags = 0;
	r->rule_id = 0;
	/* No ruleset (or a malformed one): fail closed. */
	cells = bpf_map_lookup_elem(&weft_pol_rs, &ruleset);
	if (!cells)
		return;
	h = bpf_map_lookup_elem(cells, &zero);
	if (!h)
		return;
	if (!weft_pol_walk(cells, h->w[WEFT_POL_H_ADDR_ROOT], bpf_ntohl(f->peer), 32, &aclass))
		return;
	if (h->w[WEFT_POL_H_FLAGS] & WEFT_RS_F_CTX) {
		__u32 n = h->w[WEFT_POL_H_LOCALS], addr = bpf_ntohl(f->local), local = n;

		if (n <= WEFT_POL_INLINE_LOCALS) {
			/* The endpoint's few addresses are in the header. */
			for (int i = WEFT_POL_INLINE_LOCALS - 1; i >= 0; i--)
				if (i < n && h->w[WEFT_POL_H_LOCAL0 + i] == addr)
					local = i;
		} else if (!weft_pol_walk(cells, h->w[WEFT_POL_H_LOCAL_ROOT], addr, 32, &local)) {
			return;
		}
		if (!weft_pol_word(cells, h->w[WEFT_POL_H_CTX_ROOTS] + local, &root))
			return;
		if (!weft_pol_walk(cells, root, (__u32)f->proto << 16 | f->sport, 24, &cclass))
			return;
	}
	at = h->w[WEFT_POL_H_ROWS] + aclass * h->w[WEFT_POL_H_CONTEXTS] + cclass;
	if (!weft_pol_word(cells, at, &root) || !weft_pol_walk(cells, root, dport_key, 24, &v))
		return;
	at = h->w[WEFT_POL_H_VERDICTS] + 2 * v;
	ci = at / WEFT_POL_CELL_WORDS;
	c = bpf_map_lookup_elem(cells, &ci);
	if (!c)
		return;
	r->action = c->w[at % WEFT_POL_CELL_WORDS] & 0xff;
	r->flags = (c->w[at % WEFT_POL_CELL_WORDS] >> 8) & 0xff;
	r->rule_id = c->w[(at + 1) % WEFT_POL_CELL_WORDS];
}

/*
 * weft_policy4_walk as a global function: the verifier checks it once, on its own, and each
 * call costs the caller's verification one call rather than the walk's every path. (Inlined
 * at its two call sites, the walk made weft_to_wep cost Linux 6.1's verifier over a third of
 * its limit.)
 */
__noinline int weft_policy4(__u32 ruleset, const struct weft_flow4 *f, struct weft_policy_result *r)
{
	if (!f || !r)
		return 0;
	weft_policy4_walk(ruleset, f, r);
	return 0;
}

WEFT_INLINE void weft_count_rule(__u32 rule_id)
{
	__u64 *n = bpf_map_lookup_elem(&weft_rule_ctrs, &rule_id);

	if (n) {
		*n += 1;
	} else {
		__u64 one = 1;
		bpf_map_update_elem(&weft_rule_ctrs, &rule_id, &one, BPF_NOEXIST);
	}
}

#endif /* WEFT_POLICY_H */

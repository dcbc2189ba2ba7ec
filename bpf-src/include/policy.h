/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Policy: the classifier lookups of a compiled ruleset (see weft_maps.h). The cost is three LPM
 * lookups at most, whatever the number of rules behind the ruleset.
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

WEFT_INLINE void weft_policy4(__u32 ruleset, const struct weft_flow4 *f, struct weft_policy_result *r)
{
	struct weft_pol4_addr_key ak = {
		.prefixlen = 64,
		.ruleset = ruleset,
		.addr = f->peer,
	};
	struct weft_pol_vrdct_key vk = {
		.prefixlen = 32 + 32 + 16 + 24,
		.ruleset = ruleset,
		.proto = f->proto,
		.dport = { f->dport >> 8, f->dport & 0xff },
	};
	struct weft_pol_class *c;
	struct weft_pol_verdict *v;

	r->action = WEFT_ACT_DENY;
	r->flags = 0;
	r->rule_id = 0;
	/* No ruleset (or one half deleted): fail closed. */
	c = bpf_map_lookup_elem(&weft_pol4_addr, &ak);
	if (!c)
		return;
	vk.aclass = c->class;
	if (c->flags & WEFT_RS_F_CTX) {
		struct weft_pol4_ctx_key ck = {
			.prefixlen = 32 + 56,
			.ruleset = ruleset,
			.local_addr = f->local,
			.proto = f->proto,
			.sport = { f->sport >> 8, f->sport & 0xff },
		};
		__u32 *cc = bpf_map_lookup_elem(&weft_pol4_ctx, &ck);

		if (!cc) {
			/* Not one of the endpoint's addresses: the entries for any other (0). */
			ck.local_addr = 0;
			cc = bpf_map_lookup_elem(&weft_pol4_ctx, &ck);
		}
		if (cc)
			vk.cclass = *cc;
	}
	v = bpf_map_lookup_elem(&weft_pol_vrdct, &vk);
	if (!v)
		return;
	r->action = v->action;
	r->flags = v->flags;
	r->rule_id = v->rule_id;
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

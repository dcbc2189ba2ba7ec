/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-interface, per-hook packet counters by reason (weft_reasons.h). */
#ifndef WEFT_COUNTERS_H
#define WEFT_COUNTERS_H

#include "weft_bpf.h"

/* Notes why a packet got its verdict (counted once, on the way out of weft_tc). */
WEFT_INLINE int weft_verdict(__u32 *reason, __u32 why, int rc)
{
	*reason = why;
	return rc;
}

WEFT_INLINE void weft_count(__u32 ifindex, __u32 hook, __u32 reason)
{
	struct weft_counters_key k = { .ifindex = ifindex, .hook = hook };
	struct weft_counters *c = bpf_map_lookup_elem(&weft_ctrs, &k);

	if (!c) {
		__u32 zero_key = 0;
		struct weft_scratch *s = bpf_map_lookup_elem(&weft_scratch, &zero_key);

		if (!s)
			return;
		bpf_map_update_elem(&weft_ctrs, &k, &s->zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&weft_ctrs, &k);
		if (!c)
			return;
	}
	if (reason < WEFT_COUNTERS_MAX)
		c->packets[reason] += 1;
}

#endif /* WEFT_COUNTERS_H */

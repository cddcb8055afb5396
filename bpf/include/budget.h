/* The budget for a hot flow (--max-rate): at most so many new packets a second start being
 * traced. The rest of a busy flow costs the filter and the tracking map, not the ring buffer
 * and userspace. It is asked only when a matching packet would start (new_packet): a packet is
 * traced whole or left out whole, and one already traced goes on unaffected.
 *
 * A token bucket holding one second of tokens, kept as the time it is full again (full_at, the
 * "theoretical arrival time" of GCRA): one word, no lock.
 *
 * One bucket for the node, not one per CPU. A flow's packets are mostly handled on one CPU (its
 * sender's, or its receive queue's): per-CPU buckets would give one flow 1/ncpus of the rate,
 * and sample a busy CPU's packets less than a quiet one's. One bucket samples every matching
 * packet alike.
 *
 * A token is taken with an atomic add (kernels before 5.12 have no compare-and-swap in BPF,
 * but all have the add). Two CPUs taking the last token at once both get it and the bucket goes
 * into debt, which the next tokens pay back: over time the rate is exact, and a burst is at most
 * the bucket plus one packet per CPU. The refill of a full bucket (full_at in the past) is a
 * plain store, which a charge racing it can be lost to: at most one packet per CPU more, when
 * traffic starts. Every packet is either started or counted (STAT_OVER_BUDGET) either way. */
#pragma once

#include "maps.h"

static __always_inline struct budget *budget_get(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&budget, &zero);
}

/* Whether the bucket holds a token at now (full_at as read). */
static __always_inline bool budget_has_token(__u64 full_at, __u64 now)
{
	/* Full since full_at: as if full now. */
	if ((__s64)(full_at - now) < 0)
		full_at = now;
	return full_at - now + CFG.budget_interval_ns <= CFG.budget_depth_ns;
}

/* Takes a token for a packet about to start at now: false when none is left. */
static __always_inline bool budget_take(__u64 now)
{
	if (!CFG.budget_interval_ns)
		return true;
	struct budget *b = budget_get();
	if (!b)
		return true;
	__u64 full_at = b->full_at;
	if (!budget_has_token(full_at, now))
		return false;
	if ((__s64)(full_at - now) < 0)
		b->full_at = now;
	__sync_fetch_and_add(&b->full_at, CFG.budget_interval_ns);
	return true;
}

/* Whether a packet starting now would get a token, without taking it. */
static __always_inline bool budget_left(__u64 now)
{
	if (!CFG.budget_interval_ns)
		return true;
	struct budget *b = budget_get();
	return !b || budget_has_token(b->full_at, now);
}

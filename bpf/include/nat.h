/* Learning what NAT rewrites a tracked packet into, so the reply to a MASQUERADEd request,
 * addressed to the node and not to the pod the user named, is still matched; and what no NAT
 * rewrites, a packet's identity (same_life), which tells a reused sk_buff from its old packet. */
#pragma once

#include "maps.h"

/* A learned flow older than this no longer matches: NAT mappings of a finished flow are reused. */
#define LEARNED_TTL_NS (120ULL * 1000000000ULL)

static __always_inline void flow_of(const struct packet *p, struct flow_key *k)
{
	__builtin_memcpy(k->saddr, p->saddr, 16);
	__builtin_memcpy(k->daddr, p->daddr, 16);
	k->sport = p->sport;
	k->dport = p->dport;
	k->proto = p->proto;
	k->family = p->family;
	k->_pad = 0;
}

static __always_inline bool flow_equal(const struct flow_key *a, const struct flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
#pragma unroll
	for (int i = 0; i < sizeof(*a) / 8; i++)
		if (x[i] != y[i])
			return false;
	return true;
}

static __always_inline bool learned_fresh(struct flow_key *k, __u64 now)
{
	__u64 *ts = bpf_map_lookup_elem(&learned, k);
	if (!ts)
		return false;
	if (now - *ts > LEARNED_TTL_NS) {
		bpf_map_delete_elem(&learned, k);
		return false;
	}
	return true;
}

/* Whether p's flow, either way round, is one a tracked packet was rewritten into. k is
 * working space. */
static __always_inline bool learned_match(const struct packet *p, struct flow_key *k)
{
	struct gates *g = gates_get();
	if (!g || !g->learned || !p->family)
		return false;
	__u64 now = bpf_ktime_get_ns();
	flow_of(p, k);
	if (learned_fresh(k, now))
		return true;
	__builtin_memcpy(k->saddr, p->daddr, 16);
	__builtin_memcpy(k->daddr, p->saddr, 16);
	k->sport = p->dport;
	k->dport = p->sport;
	return learned_fresh(k, now);
}

/* Learns k, and then its addresses alone (k is changed): a route lookup carries no ports to
 * match on. */
static __always_inline void learn(struct flow_key *k)
{
	__u64 now = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&learned, k, &now, BPF_ANY))
		return;
	k->sport = 0;
	k->dport = 0;
	k->proto = 0;
	bpf_map_update_elem(&learned, k, &now, BPF_ANY);
	struct gates *g = gates_get();
	if (g)
		__sync_fetch_and_add(&g->learned, 1);
	count(STAT_LEARNED);
}

static __always_inline void identity_of(const struct packet *p, struct track *t)
{
	t->seq = p->proto == IPPROTO_TCP ? p->tcp_seq : p->icmp_seq;
	t->ip_id = p->ip_id;
}

/* Whether p can be the packet t was tracking, NAT or not. */
static __always_inline bool same_life(const struct track *t, const struct packet *p)
{
	__be32 seq = p->proto == IPPROTO_TCP ? p->tcp_seq : p->icmp_seq;
	return t->flow.family == p->family && t->flow.proto == p->proto && t->ip_id == p->ip_id &&
	       t->seq == seq;
}

/* Following an sk_buff: a packet that matches starts being tracked, and each later hook that
 * sees its sk_buff reports a hop, until it is freed. on_skb is the body of every sk_buff hook. */
#pragma once

#include "maps.h"
#include "parse.h"
#include "filter.h"
#include "nat.h"
#include "emit.h"
#include "budget.h"
#include "leftout.h"

/* Forgets a tracked sk_buff. */
static __always_inline void untrack(__u64 key)
{
	if (bpf_map_delete_elem(&tracked, &key))
		return;
	struct gates *g = gates_get();
	if (g)
		__sync_fetch_and_add(&g->tracked, -1);
}

/* A packet not tracked yet: report it and track it if it matches. Whole packets are left
 * out, never hops: over the budget (--max-rate), or under overload (the ring three quarters
 * full, or full), a new packet is not started (leave_out). */
static __always_inline void new_packet(struct scratch *sc, struct sighting *s, struct packet *flow, int rd)
{
	if (s->parsed)
		return;
	if (!filter_match(flow) && !(s->encap && filter_match(&sc->p)) && !learned_match(flow, &sc->k))
		return;
	sc->nt.first_ts = bpf_ktime_get_ns();
	sc->nt.flags = 0;
	flow_of(flow, &sc->nt.flow);
	identity_of(flow, &sc->nt);
	if (!budget_take(sc->nt.first_ts)) {
		leave_out(left_key(s->key, rd), left_of(&sc->nt), STAT_OVER_BUDGET, s->encap, s->freed, rd);
		return;
	}
	if (ring_filling() || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + sizeof(struct event) >
				      bpf_ringbuf_query(&events, BPF_RB_RING_SIZE)) {
		leave_out(left_key(s->key, rd), left_of(&sc->nt), STAT_SKIPPED, s->encap, s->freed, rd);
		return;
	}
	sc->left_out = 0;
	if (!s->freed) {
		/* Raised before the entry exists: a CPU that sees the entry sees the count. */
		struct gates *g = gates_get();
		if (g)
			__sync_fetch_and_add(&g->tracked, 1);
		if (bpf_map_update_elem(&tracked, &s->key, &sc->nt, BPF_ANY))
			count(STAT_TRACK_FULL);
	}
	if (!emit(sc, s, true, false)) {
		/* Lost its first event after all (another CPU filled the ring): left out whole, and
		 * counted as such, so that every matching packet is traced or counted. */
		sc->left_out = STAT_SKIPPED;
		count(STAT_SKIPPED);
		if (s->freed)
			return;
		sc->nt.flags = TRACK_SKIPPED;
		/* Only if still there: one freed meanwhile must not come back uncounted (gates). */
		bpf_map_update_elem(&tracked, &s->key, &sc->nt, BPF_EXIST);
	}
}

/* A tracked packet: report the hop, learn the flow NAT rewrote it into, forget it when freed.
 * An event the full ring could not take leaves a mark, so the next one says hops are missing. */
static __always_inline void tracked_packet(struct scratch *sc, struct sighting *s, struct packet *flow,
					   struct track *t)
{
	if (t->flags & TRACK_SKIPPED) {
		sc->left_out = STAT_SKIPPED;
		if (s->freed)
			untrack(s->key);
		return;
	}
	sc->left_out = 0;
	bool gap = t->flags & TRACK_GAP;
	if (!s->parsed) {
		flow_of(flow, &sc->k);
		if (!flow_equal(&sc->k, &t->flow)) {
			t->flow = sc->k;
			learn(&sc->k);
		}
	}
	if (s->freed) {
		untrack(s->key);
	} else if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + sizeof(struct event) >
		   bpf_ringbuf_query(&events, BPF_RB_RING_SIZE)) {
		t->flags |= TRACK_GAP;
		count(STAT_LOST);
		return;
	} else if (gap) {
		t->flags &= ~TRACK_GAP;
	}
	if (!emit(sc, s, false, gap) && !s->freed)
		t->flags |= TRACK_GAP;
}

/* The whole path of an sk_buff hook, for a tracked packet (t) or one quick_reject let through,
 * which may be one left out (lo, found where: leftout.h) that left_out_same could not tell. */
static __always_inline void track_skb(struct scratch *sc, struct sk_buff *skb, struct net_device *dev,
				      __u32 kind, bool at_data, int rd, __u64 location, __u32 reason,
				      struct track *t, struct left lo, int where, bool learned)
{
	bool left = where != LEFT_NONE;
	struct sighting s = {
		.skb = skb, .dev = dev, .key = (__u64)skb, .location = location, .kind = kind,
		.reason = reason, .freed = kind == EV_DROP || kind == EV_CONSUME,
	};

	__builtin_memset(&sc->p, 0, sizeof(sc->p));
	__builtin_memset(&sc->inner, 0, sizeof(sc->inner));
	/* A packet not tracked is read no further than it can match; a tracked one (or one left
	 * out) is read whole, tunnels and all. */
	struct parse_gate g = {};
	if (!t && !left) {
		g.on = true;
		g.learned = learned;
		g.tunnels = kind == EV_RECEIVE || kind == EV_QUEUE;
	}
	sc->vni = 0;
	s.parsed = parse_skb(skb, at_data, rd, &sc->p, &sc->inner, &sc->vni, &s.encap, g);
	/* The flow is what the user follows: the carried packet when there is one. */
	struct packet *flow = s.encap ? &sc->inner : &sc->p;

	if (left) {
		__u64 k = left_key(s.key, rd);
		if (s.parsed != PARSE_NOT_IP && (s.parsed || left_same_life(lo, flow))) {
			left_out_hop(k, lo, where, s.freed);
			return;
		}
		/* Another packet: the one left out was freed where no tracepoint sees. */
		left_forget(k, where);
	}
	if (!t) {
		new_packet(sc, &s, flow, rd);
		return;
	}
	/* A tracked address carrying another packet: the old one was freed where no tracepoint
	 * sees (TCP's pure ACKs are), and this is a new packet. */
	if (s.parsed == PARSE_NOT_IP || (!s.parsed && !same_life(t, flow))) {
		untrack(s.key);
		new_packet(sc, &s, flow, rd);
		return;
	}
	tracked_packet(sc, &s, flow, t);
}

/* Every sk_buff hook. Most sk_buffs on a node are not the traced flow, and while nothing is
 * tracked they are turned away before any map but gates is touched. */
static __always_inline void on_skb(struct sk_buff *skb, struct net_device *dev, __u32 kind,
				   bool at_data, int rd, __u64 location, __u32 reason)
{
	struct gates *g = gates_get();
	if (!g)
		return;
	__u64 key = (__u64)skb;
	struct track *t = 0;
	struct left lo = {};
	int where = LEFT_NONE;
	if (g->tracked)
		t = bpf_map_lookup_elem(&tracked, &key);
	bool learned = g->learned != 0;
	/* A tunnel packet is first seen where it enters or leaves a device. */
	bool tunnels = kind == EV_RECEIVE || kind == EV_QUEUE;
	if (!t) {
		/* consume_skb frees a packet that was followed, or one whose life ends here having
		 * passed no other hook: a copy (clone) that a socket read (copy.go). Any other packet
		 * not followed is not one to start, and its headers, often cold in this CPU's cache
		 * by now (another CPU received it), are not read: the free of most packets of other
		 * flows costs a look at the sk_buff. */
		if (kind == EV_CONSUME && !skb_is_clone(skb, rd)) {
			/* A packet left out is forgotten: whatever the sk_buff carries now, it is freed. */
			__u64 k;
			if (g->left_out && (where = left_find(g, k = left_key(key, rd), &lo)))
				left_out_hop(k, lo, where, true);
			return;
		}
		struct quick4 h;
		bool v4;
		if (quick_reject(skb, at_data, rd, tunnels, learned, &h, &v4))
			return;
		/* The budget spent, a hot flow's packets cost little more than the filter: a packet
		 * left out, a look at its slot and at what quick_reject read at each hop; a new one,
		 * what quick_reject read where it is all it takes. k: the sk_buff's address as a
		 * number (left_key), once read. */
		__u64 k = 0;
		if (g->left_out && (where = left_find(g, k = left_key(key, rd), &lo))) {
			if (left_out_same(&h, v4, lo)) {
				left_out_hop(k, lo, where, kind == EV_DROP || kind == EV_CONSUME);
				return;
			}
		} else if (!learned && CFG.budget_interval_ns &&
			   over_budget_quick(&h, v4, key, k, kind, tunnels, rd)) {
			return;
		}
	}
	struct scratch *sc = enter();
	if (!sc)
		return;
	track_skb(sc, skb, dev, kind, at_data, rd, location, reason, t, lo, where, learned);
	sc->busy = 0;
}

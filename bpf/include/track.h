/* Following an sk_buff: a packet that matches starts being tracked, and each later hook that
 * sees its sk_buff reports a hop, until it is freed. on_skb is the body of every sk_buff hook. */
#pragma once

#include "maps.h"
#include "parse.h"
#include "filter.h"
#include "nat.h"
#include "emit.h"
#include "budget.h"

/* Forgets a tracked sk_buff. */
static __always_inline void untrack(__u64 key)
{
	if (bpf_map_delete_elem(&tracked, &key))
		return;
	struct gates *g = gates_get();
	if (g)
		__sync_fetch_and_add(&g->tracked, -1);
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

/* For a packet left out (left_out), whether the sk_buff still carries it, from its IPv4
 * header and the 8 bytes after it read as quick_reject reads them: what same_life compares
 * (protocol, IP ID, TCP or ICMP echo sequence) without the whole parse. false is "not known":
 * IPv6, IP options, a fragment, a flow carried in a tunnel (TRACK_ENCAP), or another packet
 * (the whole path then decides). */
static __always_inline bool left_out_same(struct sk_buff *skb, bool at_data, int rd, const struct track *t)
{
	if (t->flow.family != 4 || (t->flags & TRACK_ENCAP))
		return false;
	if (KREAD(rd, skb, protocol) != bpf_htons(ETH_P_IP))
		return false;
	unsigned char *l3 = l3_of(skb, at_data, rd);
	if (!l3)
		return false;
	struct {
		struct iphdr ip;
		__u32 l4[2];
	} __attribute__((aligned(8))) h;
	if (rd != RD_CAST) {
		if (bpf_probe_read_kernel(&h, sizeof(h), l3))
			return false;
	} else {
		/* As quick_read4: loads within the members of an ipv6hdr-typed window. */
		const __u8 *w = bpf_rdonly_cast(l3, bpf_core_type_id_kernel(struct ipv6hdr));
		__u8 *frag = (__u8 *)&h.ip.frag_off;
		h.ip.ihl_version = w[0];
		h.ip.id = *(const __u16 *)(w + 4);
		frag[0] = w[6];
		frag[1] = w[7];
		h.ip.protocol = w[9];
		h.l4[0] = *(const __u32 *)(w + 20);
		h.l4[1] = *(const __u32 *)(w + 24);
	}
	if (h.ip.ihl_version != 0x45 || (h.ip.frag_off & bpf_htons(0x3fff)))
		return false;
	const __u8 *l4 = (const __u8 *)h.l4;
	__be32 seq = 0;
	if (h.ip.protocol == IPPROTO_TCP)
		seq = h.l4[1];
	else if (h.ip.protocol == IPPROTO_ICMP && (l4[0] == 8 || l4[0] == 0))
		seq = *(const __be16 *)(l4 + 6);
	return t->flow.proto == h.ip.protocol && t->ip_id == h.ip.id && t->seq == seq;
}

/* What a packet left out is counted as (STAT_SKIPPED, STAT_OVER_BUDGET) goes to this CPU's
 * route lookups (on_fib). */
static __always_inline void left_out_on_cpu(__u32 reason)
{
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (sc)
		sc->left_out = reason;
}

/* A hop of a packet left out: it tells this CPU's route lookups; its free forgets it. */
static __always_inline void left_out_hop(__u64 key, const struct track *lo, bool freed)
{
	left_out_on_cpu(lo->flags & TRACK_OVER_BUDGET ? STAT_OVER_BUDGET : STAT_SKIPPED);
	if (freed)
		bpf_map_delete_elem(&left_out, &key);
}

/* Leaves a new packet out, counted once as reason, and remembered (nt) until it is freed: its
 * later hops then cost one lookup, and it cannot start halfway along its path. */
static __always_inline void leave_out(__u64 key, struct track *nt, __u32 reason, bool encap, bool freed)
{
	count(reason);
	left_out_on_cpu(reason);
	if (freed)
		return;
	nt->flags = (reason == STAT_OVER_BUDGET ? TRACK_OVER_BUDGET : 0) | (encap ? TRACK_ENCAP : 0);
	/* Set before the entry exists: a CPU that sees the entry sees the flag. */
	struct gates *g = gates_get();
	if (g && !g->left_out)
		g->left_out = 1;
	bpf_map_update_elem(&left_out, &key, nt, BPF_ANY);
}

/* A packet not tracked yet: report it and track it if it matches. Whole packets are left
 * out, never hops: over the budget (--max-rate), or under overload (the ring three quarters
 * full, or full), a new packet is not started (leave_out). */
static __always_inline void new_packet(struct scratch *sc, struct sighting *s, struct packet *flow)
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
		leave_out(s->key, &sc->nt, STAT_OVER_BUDGET, s->encap, s->freed);
		return;
	}
	if (ring_filling() || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + sizeof(struct event) >
				      bpf_ringbuf_query(&events, BPF_RB_RING_SIZE)) {
		leave_out(s->key, &sc->nt, STAT_SKIPPED, s->encap, s->freed);
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

/* A new packet while the budget has no token left, when its IPv4 header and the 16 bytes
 * after it (one read, as quick_reject's) say all that new_packet would learn from the whole
 * parse: a plain TCP, UDP or ICMP packet, in no tunnel, no NAT learned. It is then left out
 * at the cost of that read, and true is returned; false leaves it to the whole path (a token is
 * left, or it takes more to know). */
static __always_inline bool over_budget_quick(struct sk_buff *skb, __u32 kind, bool at_data, int rd, bool tunnels)
{
	if (KREAD(rd, skb, protocol) != bpf_htons(ETH_P_IP))
		return false;
	unsigned char *l3 = l3_of(skb, at_data, rd);
	if (!l3)
		return false;
	struct {
		struct iphdr ip;
		__u32 l4[2];
		__u8 tun[8];
	} __attribute__((aligned(8))) h;
	if (rd != RD_CAST) {
		if (bpf_probe_read_kernel(&h, sizeof(h), l3))
			return false;
	} else {
		/* As quick_read4: loads within the members of an ipv6hdr-typed window. */
		const __u8 *w = bpf_rdonly_cast(l3, bpf_core_type_id_kernel(struct ipv6hdr));
		__u8 *frag = (__u8 *)&h.ip.frag_off;
		__u32 *tun = (__u32 *)h.tun;
		h.ip.ihl_version = w[0];
		h.ip.id = *(const __u16 *)(w + 4);
		frag[0] = w[6];
		frag[1] = w[7];
		h.ip.protocol = w[9];
		h.ip.saddr = *(const __u32 *)(w + 12);
		h.ip.daddr = *(const __u32 *)(w + 16);
		h.l4[0] = *(const __u32 *)(w + 20);
		h.l4[1] = *(const __u32 *)(w + 24);
		tun[0] = *(const __u32 *)(w + 28);
		tun[1] = *(const __u32 *)(w + 32);
	}
	__u8 proto = h.ip.protocol;
	if (h.ip.ihl_version != 0x45 || (h.ip.frag_off & bpf_htons(0x3fff)) ||
	    (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP) ||
	    (tunnels && proto == IPPROTO_UDP && udp_tunnel(h.tun)))
		return false;
	/* As parse_l3 fills it, for what filter_match, flow_of and identity_of read. */
	const struct l4hdr *l4 = (const struct l4hdr *)h.l4;
	struct packet p = {.family = 4, .proto = proto, .ip_id = h.ip.id};
	__builtin_memcpy(p.saddr, &h.ip.saddr, 4);
	__builtin_memcpy(p.daddr, &h.ip.daddr, 4);
	if (proto != IPPROTO_ICMP) {
		p.sport = l4->source;
		p.dport = l4->dest;
		if (proto == IPPROTO_TCP)
			p.tcp_seq = l4->seq;
	} else if (l4->type == 8 || l4->type == 0) {
		p.sport = l4->echo_id;
		p.dport = l4->echo_id;
		p.icmp_seq = l4->echo_seq;
	}
	if (!filter_match(&p))
		return true; /* not a packet to start, as the whole path would find */
	__u64 now = bpf_ktime_get_ns();
	if (budget_left(now))
		return false;
	struct track nt = {.first_ts = now};
	flow_of(&p, &nt.flow);
	identity_of(&p, &nt);
	leave_out((__u64)skb, &nt, STAT_OVER_BUDGET, false, kind == EV_DROP || kind == EV_CONSUME);
	return true;
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
 * which may be one left out (lo) that left_out_same could not tell. */
static __always_inline void track_skb(struct scratch *sc, struct sk_buff *skb, struct net_device *dev,
				      __u32 kind, bool at_data, int rd, __u64 location, __u32 reason,
				      struct track *t, struct track *lo, bool learned)
{
	/* A flag, not !lo: the verifier refuses the two pointers or-ed into one test. */
	bool left = lo != 0;
	barrier_var(left);
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
	s.parsed = parse_skb(skb, at_data, rd, &sc->p, &sc->inner, &s.encap, g);
	/* The flow is what the user follows: the carried packet when there is one. */
	struct packet *flow = s.encap ? &sc->inner : &sc->p;

	if (lo) {
		if (s.parsed != PARSE_NOT_IP && (s.parsed || same_life(lo, flow))) {
			left_out_hop(s.key, lo, s.freed);
			return;
		}
		/* Another packet: the one left out was freed where no tracepoint sees. */
		bpf_map_delete_elem(&left_out, &s.key);
	}
	if (!t) {
		new_packet(sc, &s, flow);
		return;
	}
	/* A tracked address carrying another packet: the old one was freed where no tracepoint
	 * sees (TCP's pure ACKs are), and this is a new packet. */
	if (s.parsed == PARSE_NOT_IP || (!s.parsed && !same_life(t, flow))) {
		untrack(s.key);
		new_packet(sc, &s, flow);
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
	struct track *t = 0, *lo = 0;
	if (g->tracked)
		t = bpf_map_lookup_elem(&tracked, &key);
	bool learned = g->learned != 0;
	/* A tunnel packet is first seen where it enters or leaves a device. */
	bool tunnels = kind == EV_RECEIVE || kind == EV_QUEUE;
	if (!t) {
		if (quick_reject(skb, at_data, rd, tunnels, learned))
			return;
		/* The budget spent, a hot flow's packets cost little more than the filter: a packet
		 * left out, a lookup and a look at its IP header at each hop; a new one, that look
		 * where it is all it takes. */
		if (g->left_out && (lo = bpf_map_lookup_elem(&left_out, &key))) {
			if (left_out_same(skb, at_data, rd, lo)) {
				left_out_hop(key, lo, kind == EV_DROP || kind == EV_CONSUME);
				return;
			}
		} else if (!learned && CFG.budget_interval_ns && over_budget_quick(skb, kind, at_data, rd, tunnels)) {
			return;
		}
	}
	struct scratch *sc = enter();
	if (!sc)
		return;
	track_skb(sc, skb, dev, kind, at_data, rd, location, reason, t, lo, learned);
	sc->busy = 0;
}

/* Packets left out whole (over the budget, or under overload): remembered until they are freed,
 * so one cannot start halfway along its path and each is counted once, and told apart at their
 * later hops from what quick_reject already read of their headers where it is all it takes.
 *
 * Where one is remembered (maps.h): a slot of left_slots, the one a hash of its sk_buff's
 * address picks, when it is free; else left_out, an LRU hash. A slot is claimed with a
 * compare-and-swap from 0, so of two CPUs claiming one at once only one gets it (the other's
 * packet goes to left_out); it is written after, and read only at later hops of the same
 * packet, which the kernel's own hand-over of the sk_buff orders after it. A slot holding an
 * address is only ever written at a hop of an sk_buff at that address, that is of the packet
 * it remembers, or of a new one that reuses the memory of one freed where no tracepoint saw
 * it: both replace or clear it with plain stores, without racing anyone. Compare-and-swap is
 * 5.12+: only the bpf_rdonly_cast builds (6.2+) claim slots; the others use left_out, and look
 * in both. */
#pragma once

#include "maps.h"
#include "parse.h"
#include "filter.h"
#include "nat.h"
#include "budget.h"

/* Where a packet left out was found. */
enum { LEFT_NONE = 0, LEFT_IN_SLOT = 1, LEFT_IN_LRU = 2 };

/* An sk_buff's address as a plain number. The verifier lets no arithmetic but addition and
 * subtraction touch a typed pointer (tp_btf's sk_buff), and depending on the kernel a copy of
 * it on the stack is still one or has become a number: read back through a helper, it is a
 * number on every kernel. raw_tp's sk_buff is one already. 0 when it could not be read. */
static __always_inline __u64 left_key(__u64 key, int rd)
{
	if (rd == RD_PROBE)
		return key;
	__u64 k = 0;
	bpf_probe_read_kernel(&k, sizeof(k), &key);
	return k;
}

/* The slot of the sk_buff at k (left_key). */
static __always_inline struct left_slot *left_slot_of(__u64 k)
{
	/* sk_buffs are slab objects, 256 bytes apart or more: Fibonacci hashing spreads them. */
	__u32 i = (__u32)((k * 0x9E3779B97F4A7C15ULL) >> (64 - LEFT_SLOTS_BITS));
	return bpf_map_lookup_elem(&left_slots, &i);
}

/* Whether the sk_buff at k (left_key) carries a packet left out: LEFT_NONE, or where it is,
 * its entry copied into *l. */
static __always_inline int left_find(const struct gates *g, __u64 k, struct left *l)
{
	if (!k)
		return LEFT_NONE;
	struct left_slot *s = left_slot_of(k);
	if (s && s->skb == k) {
		*l = s->l;
		return LEFT_IN_SLOT;
	}
	if (!g->left_lru)
		return LEFT_NONE;
	struct left *e = bpf_map_lookup_elem(&left_out, &k);
	if (!e)
		return LEFT_NONE;
	*l = *e;
	return LEFT_IN_LRU;
}

/* Forgets the packet left out at k (left_key), found where. */
static __always_inline void left_forget(__u64 k, int where)
{
	if (!k)
		return;
	if (where == LEFT_IN_SLOT) {
		struct left_slot *s = left_slot_of(k);
		if (s && s->skb == k)
			s->skb = 0;
	} else if (where == LEFT_IN_LRU) {
		bpf_map_delete_elem(&left_out, &k);
	}
}

/* Remembers the packet left out at k (left_key; see the top of this file). */
static __always_inline void left_remember(__u64 k, struct left l, int rd)
{
	struct gates *g = gates_get();
	/* Set before the entry exists: a CPU that sees the entry sees the flag. */
	if (g && !g->left_out)
		g->left_out = 1;
	if (rd == RD_CAST && k) {
		struct left_slot *s = left_slot_of(k);
		if (s) {
			__u64 held = s->skb;
			/* Its own slot, left by a packet freed where no tracepoint saw it; or a free one. */
			if (held == k || (!held && __sync_val_compare_and_swap(&s->skb, 0, k) == 0)) {
				s->l = l;
				return;
			}
		}
	}
	if (g && !g->left_lru)
		g->left_lru = 1;
	bpf_map_update_elem(&left_out, &k, &l, BPF_ANY);
}

/* For a packet left out (l), whether the sk_buff still carries it, from what quick_reject read
 * of its IPv4 header and the 8 bytes after it (h, when v4): what same_life compares (protocol,
 * IP ID, TCP or ICMP echo sequence) without the whole parse. false is "not known": IPv6, IP
 * options, a fragment, a flow carried in a tunnel (LEFT_ENCAP), or another packet (the whole
 * path then decides). */
static __always_inline bool left_out_same(const struct quick4 *h, bool v4, struct left l)
{
	if (!v4 || (l.flags & (LEFT_V6 | LEFT_ENCAP)))
		return false;
	if (h->ip.ihl_version != 0x45 || (h->ip.frag_off & bpf_htons(0x3fff)))
		return false;
	const struct l4hdr *l4 = (const struct l4hdr *)h->udp;
	__be32 seq = 0;
	if (h->ip.protocol == IPPROTO_TCP)
		seq = l4->seq;
	else if (h->ip.protocol == IPPROTO_ICMP && (l4->type == 8 || l4->type == 0))
		seq = l4->echo_seq;
	return l.proto == h->ip.protocol && l.ip_id == h->ip.id && l.seq == seq;
}

/* Whether l can be the packet the sk_buff now carries (p, parsed whole), NAT or not. */
static __always_inline bool left_same_life(struct left l, const struct packet *p)
{
	__be32 seq = p->proto == IPPROTO_TCP ? p->tcp_seq : p->icmp_seq;
	return ((l.flags & LEFT_V6) ? 6 : 4) == p->family && l.proto == p->proto && l.ip_id == p->ip_id &&
	       l.seq == seq;
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

/* A hop of a packet left out (found where): it tells this CPU's route lookups; its free
 * forgets it. */
static __always_inline void left_out_hop(__u64 k, struct left l, int where, bool freed)
{
	left_out_on_cpu(l.flags & LEFT_OVER_BUDGET ? STAT_OVER_BUDGET : STAT_SKIPPED);
	if (freed)
		left_forget(k, where);
}

/* Leaves a new packet out, counted once as reason, and remembered (l, its identity; flags are
 * set here) until it is freed: its later hops then cost a look at its slot, and it cannot start
 * halfway along its path. */
static __always_inline void leave_out(__u64 k, struct left l, __u32 reason, bool encap, bool freed, int rd)
{
	count(reason);
	left_out_on_cpu(reason);
	if (freed)
		return;
	l.flags |= (reason == STAT_OVER_BUDGET ? LEFT_OVER_BUDGET : 0) | (encap ? LEFT_ENCAP : 0);
	left_remember(k, l, rd);
}

/* What is remembered of a packet left out, from its tracking entry (new_packet's). */
static __always_inline struct left left_of(const struct track *t)
{
	return (struct left){.seq = t->seq, .ip_id = t->ip_id, .proto = t->flow.proto,
			     .flags = t->flow.family == 6 ? LEFT_V6 : 0};
}

/* match_oneway for an IPv4 packet that quick_reject let through, from src to dst with ports
 * sport and dport (TCP and UDP: other protocols have none to match). */
static __always_inline bool match_ports4(__be32 src, __be32 dst, __be16 sport, __be16 dport, __u8 proto)
{
	const volatile struct filter *f = &CFG.filter;
	if (!match4(src, dst))
		return false;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return true;
	return (!f->sport || f->sport == sport) && (!f->dport || f->dport == dport);
}

/* A new packet while the budget has no token left, when what quick_reject read of its IPv4
 * header and the 16 bytes after it (h, when v4) says all that new_packet would learn from the
 * whole parse: a plain TCP, UDP or ICMP packet, in no tunnel, no NAT learned. It is then left
 * out at no further read of the packet, and true is returned; false leaves it to the whole
 * path (a token is left, or it takes more to know). k: key's left_key, or 0 if not read yet. */
static __always_inline bool over_budget_quick(const struct quick4 *h, bool v4, __u64 key, __u64 k, __u32 kind,
					      bool tunnels, int rd)
{
	if (!v4)
		return false;
	__u8 proto = h->ip.protocol;
	if (h->ip.ihl_version != 0x45 || (h->ip.frag_off & bpf_htons(0x3fff)) ||
	    (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP) ||
	    (tunnels && proto == IPPROTO_UDP && udp_tunnel(h->tun)))
		return false;
	const struct l4hdr *l4 = (const struct l4hdr *)h->udp;
	struct left l = {.proto = proto, .ip_id = h->ip.id};
	if (proto == IPPROTO_TCP)
		l.seq = l4->seq;
	else if (proto == IPPROTO_ICMP && (l4->type == 8 || l4->type == 0))
		l.seq = l4->echo_seq;
	/* What filter_match would say after the whole parse: quick_reject has checked the family,
	 * the protocol and that the addresses match one way or the other; the ports are left. */
	if (!match_ports4(h->ip.saddr, h->ip.daddr, l4->source, l4->dest, proto) &&
	    !match_ports4(h->ip.daddr, h->ip.saddr, l4->dest, l4->source, proto))
		return true; /* not a packet to start, as the whole path would find */
	if (budget_left(bpf_ktime_get_ns()))
		return false;
	leave_out(k ? k : left_key(key, rd), l, STAT_OVER_BUDGET, false, kind == EV_DROP || kind == EV_CONSUME, rd);
	return true;
}

/* Packets left out whole (over the budget, or under overload): remembered in left_out until
 * they are freed, so one cannot start halfway along its path and each is counted once, and
 * told apart at their later hops from one read of their headers where it is all it takes. */
#pragma once

#include "maps.h"
#include "parse.h"
#include "filter.h"
#include "nat.h"
#include "budget.h"

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

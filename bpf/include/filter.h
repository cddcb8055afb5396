/* The user's filter (CFG.filter): the full match on a parsed packet, and quick_reject, which
 * turns away a packet of another flow after one read of its IP header. */
#pragma once

#include "maps.h"
#include "parse.h"

/* The filter's addresses as 32-bit words, for packets read as words. */
#define FILTER_WORD(field, i) (((const volatile __u32 *)CFG.filter.field)[i])

/* Whether src and dst, 16 bytes each as in struct packet (IPv4 in the first four, the rest
 * zero), are the filter's, one way round. */
static __always_inline bool match6(const __u32 *src, const __u32 *dst)
{
#pragma unroll
	for (int i = 0; i < 4; i++)
		if ((src[i] & FILTER_WORD(src_mask, i)) != FILTER_WORD(src, i) ||
		    (dst[i] & FILTER_WORD(dst_mask, i)) != FILTER_WORD(dst, i))
			return false;
	return true;
}

static __always_inline bool match_addrs(const __u8 *src, const __u8 *dst)
{
	__u32 s[4], d[4];
	__builtin_memcpy(s, src, 16);
	__builtin_memcpy(d, dst, 16);
	return match6(s, d);
}

static __always_inline bool match_oneway(const struct packet *p, const __u8 *src, const __u8 *dst,
					 __be16 sport, __be16 dport)
{
	const volatile struct filter *f = &CFG.filter;
	if (!match_addrs(src, dst))
		return false;
	/* A port names a TCP or UDP flow, even when the protocol was left open. */
	if ((f->sport || f->dport) && p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return false;
	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
		if (f->sport && f->sport != sport)
			return false;
		if (f->dport && f->dport != dport)
			return false;
	}
	return true;
}

static __always_inline bool filter_match(const struct packet *p)
{
	const volatile struct filter *f = &CFG.filter;
	if (!p->family)
		return false;
	if (f->family && f->family != p->family)
		return false;
	if (f->proto && f->proto != p->proto)
		return false;
	return match_oneway(p, p->saddr, p->daddr, p->sport, p->dport) ||
	       match_oneway(p, p->daddr, p->saddr, p->dport, p->sport);
}

static __always_inline bool match4(__be32 src, __be32 dst)
{
	return (src & FILTER_WORD(src_mask, 0)) == FILTER_WORD(src, 0) &&
	       (dst & FILTER_WORD(dst_mask, 0)) == FILTER_WORD(dst, 0);
}

/* Whether a transport protocol rules a packet out whatever its addresses. */
static __always_inline bool proto_rejects(__u8 proto)
{
	const volatile struct filter *f = &CFG.filter;
	if (f->proto && f->proto != proto)
		return true;
	/* A port names a TCP or UDP flow (match_oneway). */
	return (f->sport || f->dport) && proto != IPPROTO_TCP && proto != IPPROTO_UDP;
}

/* Aligned: the addresses are compared as 32-bit words, and the verifier wants stack loads
 * aligned. */
struct quick4 {
	struct iphdr ip;
	__u8 udp[8];
	__u8 tun[8];
} __attribute__((aligned(8)));

struct quick6 {
	struct ipv6hdr ip;
	__u8 udp[8];
	__u8 tun[8];
} __attribute__((aligned(8)));

/* Reads what quick_reject looks at of an IPv4 packet at l3 into h: the IP header and the 8
 * bytes after it (ports, or ICMP's type and echo sequence, or TCP's sequence number, which the
 * left-out path compares: leftout.h), and the tunnel bytes only where tunnels are looked for.
 * Non-zero when it could not. */
static __always_inline long quick_read4(unsigned char *l3, struct quick4 *h, bool tunnels, int rd)
{
	if (rd != RD_CAST)
		return bpf_probe_read_kernel(h, tunnels ? sizeof(*h) : sizeof(h->ip) + sizeof(h->udp), l3);
	/* Plain loads through a read-only BTF pointer, which the verifier checks against the type
	 * it is cast to: struct ipv6hdr, 40 bytes of plain fields, is a window over the IPv4, UDP
	 * and tunnel headers (36 bytes). Byte loads, 16-bit ones inside payload_len, or 32-bit ones
	 * inside one address field, stay within a member, as every kernel's verifier wants. */
	const __u8 *w = bpf_rdonly_cast(l3, bpf_core_type_id_kernel(struct ipv6hdr));
	__u8 *frag = (__u8 *)&h->ip.frag_off;
	__u32 *l4 = (__u32 *)h->udp;
	h->ip.ihl_version = w[0];
	h->ip.id = *(const __u16 *)(w + 4);
	frag[0] = w[6];
	frag[1] = w[7];
	h->ip.protocol = w[9];
	h->ip.saddr = *(const __u32 *)(w + 12);
	h->ip.daddr = *(const __u32 *)(w + 16);
	l4[0] = *(const __u32 *)(w + 20);
	l4[1] = *(const __u32 *)(w + 24);
	if (tunnels) {
		/* Inside daddr: two words, not eight bytes (each load is range-checked). */
		__u32 *tun = (__u32 *)h->tun;
		tun[0] = *(const __u32 *)(w + 28);
		tun[1] = *(const __u32 *)(w + 32);
	}
	return 0;
}

/* The same for IPv6: 56 bytes, through two 40-byte windows. */
static __always_inline long quick_read6(unsigned char *l3, struct quick6 *h, bool tunnels, int rd)
{
	if (rd != RD_CAST)
		return bpf_probe_read_kernel(h, tunnels ? sizeof(*h) : sizeof(h->ip), l3);
	const __u8 *w = bpf_rdonly_cast(l3, bpf_core_type_id_kernel(struct ipv6hdr));
	__u32 *addrs = (__u32 *)&h->ip.saddr;
	h->ip.priority_version = w[0];
	h->ip.nexthdr = w[6];
#pragma unroll
	for (int i = 0; i < 8; i++)
		addrs[i] = *(const __u32 *)(w + 8 + 4 * i);
	if (tunnels) {
		const __u8 *next = bpf_rdonly_cast(l3 + sizeof(struct ipv6hdr),
						   bpf_core_type_id_kernel(struct ipv6hdr));
		__u32 *tun = (__u32 *)h->tun;
		tun[0] = *(const __u32 *)(next + 8);
		tun[1] = *(const __u32 *)(next + 12);
	}
	return 0;
}

/* The cheap answer for an sk_buff not tracked: true when it surely is not a packet to start
 * (what new_packet would decide after the whole parse), from skb->protocol and one read of the
 * IP header (quick_read4/6), plus the 16 bytes after it where tunnels are looked for (tunnels:
 * does UDP carry VXLAN or Geneve?). false means "parse it all": it may match, carry a packet that does, or be
 * something this shortcut does not read (IP options, IPv6 extension headers). learned: NAT
 * translations were learned, so any address may be a translated one (false, once the IPv4
 * header is read). What was read of an IPv4 packet is left in h, for the left-out path
 * (leftout.h), and *v4 says so. */
static __always_inline bool quick_reject(struct sk_buff *skb, bool at_data, int rd, bool tunnels,
					 bool learned, struct quick4 *h, bool *v4)
{
	const volatile struct filter *f = &CFG.filter;
	__be16 protocol = KREAD(rd, skb, protocol);

	*v4 = false;
	if (protocol != bpf_htons(ETH_P_IP) && protocol != bpf_htons(ETH_P_IPV6))
		return true;
	unsigned char *l3 = l3_of(skb, at_data, rd);
	if (!l3)
		return !learned;
	if (protocol == bpf_htons(ETH_P_IP)) {
		if (quick_read4(l3, h, tunnels, rd))
			return !learned;
		if ((h->ip.ihl_version >> 4) != 4)
			return !learned;
		*v4 = true;
		if (learned)
			return false;
		__u8 proto = h->ip.protocol;
		if (tunnels) {
			if (proto == IPPROTO_IPIP || proto == IPPROTO_IPV6)
				return false;
			if (proto == IPPROTO_UDP && !(h->ip.frag_off & bpf_htons(0x1fff)) &&
			    ((h->ip.ihl_version & 0x0f) != 5 || udp_tunnel(h->tun)))
				return false;
		}
		/* Carrying no other packet: the filter sees this one. */
		if (f->family == 6 || proto_rejects(proto))
			return true;
		return !match4(h->ip.saddr, h->ip.daddr) && !match4(h->ip.daddr, h->ip.saddr);
	}
	if (learned)
		return false;
	struct quick6 h6;
	if (quick_read6(l3, &h6, tunnels, rd))
		return true;
	if ((h6.ip.priority_version >> 4) != 6)
		return true;
	__u8 proto = h6.ip.nexthdr;
	if (proto == 0 || proto == 43 || proto == 60 || proto == 44)
		return false;
	if (tunnels && proto == IPPROTO_UDP && udp_tunnel(h6.tun))
		return false;
	if (f->family == 4 || proto_rejects(proto))
		return true;
	const __u32 *src = (const __u32 *)&h6.ip.saddr, *dst = (const __u32 *)&h6.ip.daddr;
	return !match6(src, dst) && !match6(dst, src);
}

/* Reading a packet's headers: IPv4 and IPv6, TCP, UDP and ICMP, and the packet a VXLAN,
 * Geneve or IP-in-IP tunnel carries. How much is read is gated (struct parse_gate): most
 * packets on a node are not the traced flow. */
#pragma once

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "pathtrace.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define IPPROTO_IPIP 4
#define IPPROTO_IPV6 41

/* How a build of a hook reads kernel memory. Code shared by the builds takes it as a constant,
 * so each build keeps only its own way. */
enum read_mode {
	/* raw_tp: the arguments are bare numbers; everything goes through bpf_probe_read_kernel. */
	RD_PROBE,
	/* tp_btf: the arguments are BTF-typed, so kernel structs are read with plain loads; packet
	 * bytes (behind skb->head, an unsigned char *) still through bpf_probe_read_kernel. */
	RD_BTF,
	/* tp_btf where bpf_rdonly_cast exists (6.2+): packet bytes too with plain loads, through a
	 * read-only BTF pointer (a load that faults reads zero). No helper call on the way. */
	RD_CAST,
};

#define KREAD(rd, ptr, field) ((rd) != RD_PROBE ? (ptr)->field : BPF_CORE_READ(ptr, field))

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

#define PARSE_NOT_IP -1     /* skb->protocol is neither IPv4 nor IPv6: another packet entirely */
#define PARSE_UNREADABLE -2 /* IP, but its headers could not be found or read at this hook */
#define PARSE_UNWANTED -3   /* its addresses cannot match: the rest was not read */

/* How much of a packet is worth reading. Most packets on a node are not the traced flow: for
 * them one read of the IP header must do. */
struct parse_gate {
	bool on;      /* stop after the IP header when the addresses cannot match */
	bool learned; /* NAT translations were learned: any address may be a translated one */
	bool tunnels; /* look inside UDP and IP-in-IP for a carried packet */
};

/* In filter.h: whether the addresses can match the filter. */
static __always_inline bool match_addrs(const __u8 *src, const __u8 *dst);

/* Reads IPv4/IPv6 and transport headers at l3 into p, and where the transport header starts
 * into *l4out (0 when there is none to read). Returns 0 when the IP header was read. */
static __always_inline int parse_l3(unsigned char *l3, __be16 protocol, struct packet *p, __u32 *l4out,
				    struct parse_gate g)
{
	__u32 l4off;
	__u32 l4len; /* transport header and payload */
	__u8 proto;

	*l4out = 0;
	if (protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), l3))
			return -1;
		if ((ip.ihl_version >> 4) != 4)
			return -1;
		p->family = 4;
		__builtin_memcpy(p->saddr, &ip.saddr, 4);
		__builtin_memcpy(p->daddr, &ip.daddr, 4);
		p->ttl = ip.ttl;
		p->ip_id = ip.id;
		proto = ip.protocol;
		l4off = (ip.ihl_version & 0x0f) * 4;
		l4len = bpf_ntohs(ip.tot_len) - l4off;
		/* Only the first fragment carries transport headers. */
		if (ip.frag_off & bpf_htons(0x1fff)) {
			p->proto = proto;
			return 0;
		}
	} else if (protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), l3))
			return -1;
		if ((ip6.priority_version >> 4) != 6)
			return -1;
		p->family = 6;
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
		p->ttl = ip6.hop_limit;
		proto = ip6.nexthdr;
		l4off = sizeof(ip6);
		l4len = bpf_ntohs(ip6.payload_len);
		/* Skip the common extension headers, a bounded number of them. */
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (proto != 0 && proto != 43 && proto != 60 && proto != 44)
				break;
			__u8 ext[2];
			if (bpf_probe_read_kernel(ext, sizeof(ext), l3 + l4off))
				return -1;
			if (proto == 44) { /* fragment header: fixed 8 bytes */
				proto = ext[0];
				l4off += 8;
				l4len -= 8;
				continue;
			}
			proto = ext[0];
			l4off += (ext[1] + 1) * 8;
			l4len -= (ext[1] + 1) * 8;
		}
	} else {
		return -1;
	}

	p->proto = proto;
	*l4out = l4off & 0xff;
	if (g.on && !g.learned && !match_addrs(p->saddr, p->daddr) && !match_addrs(p->daddr, p->saddr) &&
	    !(g.tunnels && (proto == IPPROTO_UDP || proto == IPPROTO_IPIP || proto == IPPROTO_IPV6)))
		return PARSE_UNWANTED;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP &&
	    proto != IPPROTO_ICMPV6)
		return 0;

	struct l4hdr l4 = {};
	if (bpf_probe_read_kernel(&l4, proto == IPPROTO_TCP ? sizeof(l4) : 8, l3 + *l4out)) {
		*l4out = 0;
		return 0;
	}
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		p->sport = l4.source;
		p->dport = l4.dest;
		__u32 hdr = 8;
		if (proto == IPPROTO_TCP) {
			p->tcp_flags = l4.flags;
			p->tcp_seq = l4.seq;
			hdr = (l4.doff_res >> 4) * 4;
		}
		if (l4len > hdr && l4len < 0x10000)
			p->payload = l4len - hdr;
		return 0;
	}
	p->icmp_type = l4.type;
	p->icmp_code = l4.code;
	/* Echo request/reply (v4: 8/0, v6: 128/129) share the identifier in both directions:
	 * carry it as both ports so the flow's tuple is the same either way. */
	if ((proto == IPPROTO_ICMP && (l4.type == 8 || l4.type == 0)) ||
	    (proto == IPPROTO_ICMPV6 && (l4.type == 128 || l4.type == 129))) {
		p->sport = l4.echo_id;
		p->dport = l4.echo_id;
		p->icmp_seq = l4.echo_seq;
	}
	return 0;
}

#define ETH_HLEN 14
#define UDP_HLEN 8

/* What the 8 bytes after a UDP header are: a VXLAN or a Geneve header, or neither (0). */
static __always_inline enum encap_kind udp_tunnel(const __u8 *h)
{
	if (h[0] == 0x08 && !h[1] && !h[2] && !h[3] && !h[7])
		return ENCAP_VXLAN; /* flags: only I; reserved bytes zero */
	if ((h[0] >> 6) == 0 && h[2] == 0x65 && h[3] == 0x58)
		return ENCAP_GENEVE; /* version 0, protocol Transparent Ethernet Bridging */
	return ENCAP_NONE;
}

/* Finds a packet carried inside p (at l3, transport at l4off): VXLAN and Geneve by the shape
 * of their headers on any UDP port, IP-in-IP by protocol. Returns the encap kind, or 0. */
static __always_inline enum encap_kind parse_encap(unsigned char *l3, const struct packet *p,
						   __u32 l4off, struct packet *inner, __u32 *vni)
{
	__u32 l4;

	if (!l4off)
		return ENCAP_NONE;
	if (p->family == 4 && (p->proto == IPPROTO_IPIP || p->proto == IPPROTO_IPV6)) {
		__be16 proto = p->proto == IPPROTO_IPIP ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
		if (parse_l3(l3 + l4off, proto, inner, &l4, (struct parse_gate){}))
			return ENCAP_NONE;
		return ENCAP_IPIP;
	}
	if (p->proto != IPPROTO_UDP)
		return ENCAP_NONE;

	unsigned char *tun = l3 + l4off + UDP_HLEN;
	__u8 h[8];
	if (bpf_probe_read_kernel(h, sizeof(h), tun))
		return ENCAP_NONE;
	enum encap_kind kind = udp_tunnel(h);
	if (!kind)
		return ENCAP_NONE;
	/* The carried Ethernet frame follows VXLAN's 8 bytes, or Geneve's 8 and its options. */
	__u32 eth_off = kind == ENCAP_VXLAN ? 8 : 8 + (h[0] & 0x3f) * 4;
	__be16 ethertype;
	if (bpf_probe_read_kernel(&ethertype, sizeof(ethertype), tun + eth_off + 12))
		return ENCAP_NONE;
	if (parse_l3(tun + eth_off + ETH_HLEN, ethertype, inner, &l4, (struct parse_gate){}))
		return ENCAP_NONE;
	/* VXLAN and Geneve both keep their 24-bit VNI in bytes 4-6. */
	*vni = ((__u32)h[4] << 16) | ((__u32)h[5] << 8) | h[6];
	return kind;
}

/* Whether the sk_buff shares its data with another (skb->cloned): a clone, or the original of
 * one. */
static __always_inline bool skb_is_clone(struct sk_buff *skb, int rd)
{
	if (rd == RD_PROBE)
		return BPF_CORE_READ_BITFIELD_PROBED(skb, cloned);
	return BPF_CORE_READ_BITFIELD(skb, cloned);
}

/* Where the IP header starts, or 0 when the stack has not set it. At receive skb->data points
 * at it (the MAC header has been pulled); elsewhere the stack has set network_header. */
static __always_inline unsigned char *l3_of(struct sk_buff *skb, bool at_data, int rd)
{
	if (at_data)
		return KREAD(rd, skb, data);
	__u16 nh = KREAD(rd, skb, network_header);
	/* 0 and ~0 both mean "never set" depending on how the skb was built. */
	if (nh == 0 || nh == 0xffff)
		return 0;
	return KREAD(rd, skb, head) + nh;
}

static __always_inline int parse_skb(struct sk_buff *skb, bool at_data, int rd, struct packet *p,
				     struct packet *inner, __u32 *vni, enum encap_kind *encap, struct parse_gate g)
{
	__be16 protocol = KREAD(rd, skb, protocol);

	if (protocol != bpf_htons(ETH_P_IP) && protocol != bpf_htons(ETH_P_IPV6))
		return PARSE_NOT_IP;
	unsigned char *l3 = l3_of(skb, at_data, rd);
	if (!l3)
		return PARSE_UNREADABLE;
	__u32 l4off;
	int err = parse_l3(l3, protocol, p, &l4off, g);
	if (err == PARSE_UNWANTED)
		return err;
	if (err)
		return PARSE_UNREADABLE;
	if (!g.on || g.tunnels)
		*encap = parse_encap(l3, p, l4off, inner, vni);
	return 0;
}

//go:build ignore

/* pathtrace's kernel side: tracepoint programs that follow one flow's sk_buffs through the
 * stack. A packet that matches the filter (either direction) has its sk_buff tracked, so its
 * later hops are reported even after NAT has rewritten the headers it was matched on. */

#include "include/kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "include/pathtrace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile const struct config CFG = {};

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define IPPROTO_IPIP 4
#define IPPROTO_IPV6 41
#define AF_INET 2
#define AF_INET6 10

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

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
	__type(value, struct event); /* puts struct event into BTF for bpf2go */
} events SEC(".maps");

/* What is remembered of a tracked sk_buff: the flow it last carried, to see NAT rewrite it. */
struct track {
	__u64 first_ts;
	struct flow_key flow;
	/* What no NAT rewrites: a tracked address carrying other values is a new sk_buff that
	 * reuses the memory of one freed where no tracepoint saw it (TCP frees pure ACKs so). */
	__be32 seq; /* TCP sequence number or ICMP echo sequence */
	__be16 ip_id;
	__u16 flags; /* TRACK_* */
};

#define TRACK_SKIPPED 1 /* left out under overload: no events until it is freed */
#define TRACK_GAP 2     /* an event was lost: the next one says so */

/* sk_buffs seen matching. LRU so a packet freed behind our back (a path with no tracepoint)
 * cannot fill the map for good. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct track);
} tracked SEC(".maps");

/* Flows a tracked packet was rewritten into by NAT, with when: the reply to a MASQUERADEd
 * request comes back addressed to the node, not to the pod the user named. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct flow_key);
	__type(value, __u64);
} learned SEC(".maps");

/* What lets a packet of another flow be turned away after one read of its IP header. */
struct gates {
	/* How many flows were ever learned: while none was, a packet's addresses decide. */
	__u64 learned;
	/* sk_buffs tracked, or more: raised before a packet is tracked, lowered when a tracked
	 * one is forgotten. Entries the LRU evicts are never lowered for, so it can only be too
	 * high, which costs a lookup; while it is 0 no sk_buff is tracked and none is looked up. */
	__s64 tracked;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gates);
} gates SEC(".maps");

static __always_inline struct gates *gates_get(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&gates, &zero);
}

/* Forgets a tracked sk_buff. */
static __always_inline void untrack(__u64 key)
{
	if (bpf_map_delete_elem(&tracked, &key))
		return;
	struct gates *g = gates_get();
	if (g)
		__sync_fetch_and_add(&g->tracked, -1);
}

/* Working space for one hook run: two packets and flow keys do not fit the 512-byte BPF stack.
 * A hook that interrupts another on the same CPU (a softirq on the way out of an interrupt)
 * finds it busy and counts itself lost rather than overwrite it. */
struct scratch {
	struct packet p;
	struct packet inner;
	struct track nt;
	struct flow_key k;
	__u32 busy;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* A tracked packet inside nf_hook_slow, per task: the drop happens inside the call (the packet
 * is freed before the function returns), so kfree_skb takes the hook from here. */
struct nf_call {
	__u64 skb;
	__u8 hook;
	__u8 pf;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct nf_call);
} nf_calls SEC(".maps");

/* A learned flow older than this no longer matches: NAT mappings of a finished flow are reused. */
#define LEARNED_TTL_NS (120ULL * 1000000000ULL)

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, enum stat_index);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(enum stat_index idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

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

/* Finds a packet carried inside p (at l3, transport at l4off): VXLAN and Geneve by the shape
 * of their headers on any UDP port, IP-in-IP by protocol. Returns the encap kind, or 0. */
static __always_inline enum encap_kind parse_encap(unsigned char *l3, const struct packet *p,
						   __u32 l4off, struct packet *inner)
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
	enum encap_kind kind;
	__u32 eth_off;
	if (h[0] == 0x08 && !h[1] && !h[2] && !h[3] && !h[7]) {
		kind = ENCAP_VXLAN; /* flags: only I; reserved bytes zero */
		eth_off = 8;
	} else if ((h[0] >> 6) == 0 && h[2] == 0x65 && h[3] == 0x58) {
		kind = ENCAP_GENEVE; /* version 0, protocol Transparent Ethernet Bridging */
		eth_off = 8 + (h[0] & 0x3f) * 4;
	} else {
		return ENCAP_NONE;
	}
	__be16 ethertype;
	if (bpf_probe_read_kernel(&ethertype, sizeof(ethertype), tun + eth_off + 12))
		return ENCAP_NONE;
	if (parse_l3(tun + eth_off + ETH_HLEN, ethertype, inner, &l4, (struct parse_gate){}))
		return ENCAP_NONE;
	return kind;
}

/* Where the IP header is depends on the hook: at receive skb->data points at it (the MAC
 * header has been pulled); elsewhere the stack has set network_header. */
/* Where the IP header starts, or 0 when the stack has not set it. */
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
				     struct packet *inner, enum encap_kind *encap, struct parse_gate g)
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
		*encap = parse_encap(l3, p, l4off, inner);
	return 0;
}

static __always_inline bool addr_match(const __u8 *addr, const volatile __u8 *want,
				       const volatile __u8 *mask)
{
	__u32 a[4], w[4], m[4];
	__builtin_memcpy(a, addr, 16);
#pragma unroll
	for (int i = 0; i < 16; i++) {
		((__u8 *)w)[i] = want[i];
		((__u8 *)m)[i] = mask[i];
	}
#pragma unroll
	for (int i = 0; i < 4; i++)
		if ((a[i] & m[i]) != w[i])
			return false;
	return true;
}

static __always_inline bool match_addrs(const __u8 *src, const __u8 *dst)
{
	const volatile struct filter *f = &CFG.filter;
	return addr_match(src, f->src, f->src_mask) && addr_match(dst, f->dst, f->dst_mask);
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

/* The filter's addresses as 32-bit words, for packets read as words. */
#define FILTER_WORD(field, i) (((const volatile __u32 *)CFG.filter.field)[i])

static __always_inline bool match4(__be32 src, __be32 dst)
{
	return (src & FILTER_WORD(src_mask, 0)) == FILTER_WORD(src, 0) &&
	       (dst & FILTER_WORD(dst_mask, 0)) == FILTER_WORD(dst, 0);
}

static __always_inline bool match6(const __u32 *src, const __u32 *dst)
{
#pragma unroll
	for (int i = 0; i < 4; i++)
		if ((src[i] & FILTER_WORD(src_mask, i)) != FILTER_WORD(src, i) ||
		    (dst[i] & FILTER_WORD(dst_mask, i)) != FILTER_WORD(dst, i))
			return false;
	return true;
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

/* Whether the 8 bytes after a UDP header look like VXLAN or Geneve (as parse_encap reads them). */
static __always_inline bool tunnel_header(const __u8 *h)
{
	return (h[0] == 0x08 && !h[1] && !h[2] && !h[3] && !h[7]) ||
	       ((h[0] >> 6) == 0 && h[2] == 0x65 && h[3] == 0x58);
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

/* Reads what quick_reject looks at of an IPv4 packet at l3 into h (the tunnel bytes only
 * where tunnels are looked for). Non-zero when it could not. */
static __always_inline long quick_read4(unsigned char *l3, struct quick4 *h, bool tunnels, int rd)
{
	if (rd != RD_CAST)
		return bpf_probe_read_kernel(h, tunnels ? sizeof(*h) : sizeof(h->ip), l3);
	/* Plain loads through a read-only BTF pointer, which the verifier checks against the type
	 * it is cast to: struct ipv6hdr, 40 bytes of plain fields, is a window over the IPv4, UDP
	 * and tunnel headers (36 bytes). Byte loads, or 32-bit ones inside one address field, stay
	 * within a member, as every kernel's verifier wants. */
	const __u8 *w = bpf_rdonly_cast(l3, bpf_core_type_id_kernel(struct ipv6hdr));
	__u8 *frag = (__u8 *)&h->ip.frag_off;
	h->ip.ihl_version = w[0];
	frag[0] = w[6];
	frag[1] = w[7];
	h->ip.protocol = w[9];
	h->ip.saddr = *(const __u32 *)(w + 12);
	h->ip.daddr = *(const __u32 *)(w + 16);
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
 * translations were learned, so any address may be a translated one. */
static __always_inline bool quick_reject(struct sk_buff *skb, bool at_data, int rd, bool tunnels,
					 bool learned)
{
	const volatile struct filter *f = &CFG.filter;
	__be16 protocol = KREAD(rd, skb, protocol);

	if (protocol != bpf_htons(ETH_P_IP) && protocol != bpf_htons(ETH_P_IPV6))
		return true;
	if (learned)
		return false;
	unsigned char *l3 = l3_of(skb, at_data, rd);
	if (!l3)
		return true;
	if (protocol == bpf_htons(ETH_P_IP)) {
		struct quick4 h;
		if (quick_read4(l3, &h, tunnels, rd))
			return true;
		if ((h.ip.ihl_version >> 4) != 4)
			return true;
		__u8 proto = h.ip.protocol;
		if (tunnels) {
			if (proto == IPPROTO_IPIP || proto == IPPROTO_IPV6)
				return false;
			if (proto == IPPROTO_UDP && !(h.ip.frag_off & bpf_htons(0x1fff)) &&
			    ((h.ip.ihl_version & 0x0f) != 5 || tunnel_header(h.tun)))
				return false;
		}
		/* Carrying no other packet: the filter sees this one. */
		if (f->family == 6 || proto_rejects(proto))
			return true;
		return !match4(h.ip.saddr, h.ip.daddr) && !match4(h.ip.daddr, h.ip.saddr);
	}
	struct quick6 h;
	if (quick_read6(l3, &h, tunnels, rd))
		return true;
	if ((h.ip.priority_version >> 4) != 6)
		return true;
	__u8 proto = h.ip.nexthdr;
	if (proto == 0 || proto == 43 || proto == 60 || proto == 44)
		return false;
	if (tunnels && proto == IPPROTO_UDP && tunnel_header(h.tun))
		return false;
	if (f->family == 4 || proto_rejects(proto))
		return true;
	const __u32 *src = (const __u32 *)&h.ip.saddr, *dst = (const __u32 *)&h.ip.daddr;
	return !match6(src, dst) && !match6(dst, src);
}

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

static __always_inline __u32 netns_of(struct net_device *dev, struct sk_buff *skb)
{
	if (dev)
		return BPF_CORE_READ(dev, nd_net.net, ns.inum);
	struct sock *sk = BPF_CORE_READ(skb, sk);
	if (sk)
		return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return 0;
}

static __always_inline struct event *new_event(__u32 kind)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(STAT_LOST);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->kind = kind;
	e->cpu = bpf_get_smp_processor_id();
	return e;
}

static __always_inline void submit(struct event *e)
{
	bpf_ringbuf_submit(e, 0);
	count(STAT_EVENTS);
}

/* What one hook saw of an sk_buff, passed between the steps of track_skb. */
struct sighting {
	struct sk_buff *skb;
	struct net_device *dev;
	__u64 key;
	__u64 location;
	__u32 kind;
	__u32 reason;
	int parsed;
	enum encap_kind encap;
	bool freed;
	struct func_call fn; /* for function hops */
};

/* emit reports the hop; false when the ring buffer had no room (counted as lost). */
static __always_inline bool emit(struct scratch *sc, struct sighting *s, bool first, bool gap)
{
	struct event *e = new_event(s->kind);
	if (!e)
		return false;
	/* A local copy: BPF_CORE_READ(s->skb, ...) would relocate against struct sighting, which
	 * the kernel does not have. */
	struct sk_buff *skb = s->skb;
	struct net_device *dev = s->dev;
	if (!dev)
		dev = BPF_CORE_READ(skb, dev);
	e->skb = s->key;
	e->first = first;
	e->gap = gap;
	e->location = s->location;
	e->reason = s->reason;
	e->len = BPF_CORE_READ(skb, len);
	e->netns = netns_of(dev, skb);
	if (dev) {
		e->ifindex = BPF_CORE_READ(dev, ifindex);
		BPF_CORE_READ_STR_INTO(&e->ifname, dev, name);
	}
	if (!s->parsed) {
		e->pkt = sc->p;
		e->encap = s->encap;
		if (s->encap)
			e->inner = sc->inner;
	}
	e->fn = s->fn;
	if (s->kind == EV_DROP) {
		/* Dropped by a netfilter rule: nf_hook_slow's entry left the hook it ran. */
		__u64 tid = bpf_get_current_pid_tgid();
		struct nf_call *c = bpf_map_lookup_elem(&nf_calls, &tid);
		if (c && c->skb == s->key) {
			e->fn.id = FN_NF_HOOK_SLOW;
			e->fn.has_ret = 1;
			e->fn.ret = -1; /* -EPERM: NF_DROP */
			e->fn.nf_hook = c->hook;
			e->fn.nf_pf = c->pf;
		}
	}
	submit(e);
	return true;
}

static __always_inline bool ring_filling(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 4 * 3;
}

/* A packet not tracked yet: report it and track it if it matches. Under overload whole packets
 * are lost, not hops: with the ring three quarters full (or full) a new packet is not started;
 * it is remembered as left out, so its later hops cost one lookup and it is counted once. */
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
	if (!s->freed) {
		/* Raised before the entry exists: a CPU that sees the entry sees the count. */
		struct gates *g = gates_get();
		if (g)
			__sync_fetch_and_add(&g->tracked, 1);
	}
	if (ring_filling() || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + sizeof(struct event) >
				      bpf_ringbuf_query(&events, BPF_RB_RING_SIZE)) {
		count(STAT_SKIPPED);
		if (!s->freed) {
			sc->nt.flags = TRACK_SKIPPED;
			bpf_map_update_elem(&tracked, &s->key, &sc->nt, BPF_ANY);
		}
		return;
	}
	if (!s->freed && bpf_map_update_elem(&tracked, &s->key, &sc->nt, BPF_ANY))
		count(STAT_TRACK_FULL);
	if (!emit(sc, s, true, false) && !s->freed) {
		/* Lost its first event after all (another CPU filled the ring): leave it out whole. */
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
		if (s->freed)
			untrack(s->key);
		return;
	}
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

/* The whole path of an sk_buff hook, for a tracked packet (t) or one quick_reject let through. */
static __always_inline void track_skb(struct scratch *sc, struct sk_buff *skb, struct net_device *dev,
				      __u32 kind, bool at_data, int rd, __u64 location, __u32 reason,
				      struct track *t, bool learned)
{
	struct sighting s = {
		.skb = skb, .dev = dev, .key = (__u64)skb, .location = location, .kind = kind,
		.reason = reason, .freed = kind == EV_DROP || kind == EV_CONSUME,
	};

	__builtin_memset(&sc->p, 0, sizeof(sc->p));
	__builtin_memset(&sc->inner, 0, sizeof(sc->inner));
	/* A packet not tracked is read no further than it can match; a tracked one is read whole,
	 * tunnels and all. */
	struct parse_gate g = {};
	if (!t) {
		g.on = true;
		g.learned = learned;
		g.tunnels = kind == EV_RECEIVE || kind == EV_QUEUE;
	}
	s.parsed = parse_skb(skb, at_data, rd, &sc->p, &sc->inner, &s.encap, g);
	/* The flow is what the user follows: the carried packet when there is one. */
	struct packet *flow = s.encap ? &sc->inner : &sc->p;

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

static __always_inline struct scratch *enter(void)
{
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc)
		return 0;
	if (sc->busy) {
		count(STAT_LOST);
		return 0;
	}
	sc->busy = 1;
	return sc;
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
	if (g->tracked)
		t = bpf_map_lookup_elem(&tracked, &key);
	bool learned = g->learned != 0;
	/* A tunnel packet is first seen where it enters or leaves a device. */
	if (!t && quick_reject(skb, at_data, rd, kind == EV_RECEIVE || kind == EV_QUEUE, learned))
		return;
	struct scratch *sc = enter();
	if (!sc)
		return;
	track_skb(sc, skb, dev, kind, at_data, rd, location, reason, t, learned);
	sc->busy = 0;
}

/* Each hook is built three times: tp_btf reading packets through bpf_rdonly_cast (6.2+,
 * cheapest), tp_btf reading them through probe reads, and raw_tp (kernels that refuse
 * BTF-typed attachment). The loader keeps the first the kernel accepts. The body is told which
 * build it is in (enum read_mode). */
#define HOOK(name, tp, ...)                                   \
	SEC("tp_btf/" #tp) int BPF_PROG(name##_cast, __VA_ARGS__) \
	HOOK_BODY_##name(RD_CAST)                               \
	SEC("tp_btf/" #tp) int BPF_PROG(name##_btf, __VA_ARGS__)  \
	HOOK_BODY_##name(RD_BTF)                                \
	SEC("raw_tp/" #tp) int BPF_PROG(name##_raw, __VA_ARGS__)  \
	HOOK_BODY_##name(RD_PROBE)

#define HOOK_BODY_on_receive(rd) { on_skb(skb, 0, EV_RECEIVE, true, rd, 0, 0); return 0; }
HOOK(on_receive, netif_receive_skb, struct sk_buff *skb)

#define HOOK_BODY_on_queue(rd) { on_skb(skb, 0, EV_QUEUE, false, rd, 0, 0); return 0; }
HOOK(on_queue, net_dev_queue, struct sk_buff *skb)

#define HOOK_BODY_on_xmit(rd) { on_skb(skb, dev, EV_XMIT, false, rd, 0, 0); return 0; }
HOOK(on_xmit, net_dev_start_xmit, struct sk_buff *skb, struct net_device *dev)

#define HOOK_BODY_on_kfree(rd)                                                         \
	{                                                                               \
		__u32 reason = 0;                                                       \
		/* The reason argument exists since 5.17; read it only where it does. */ \
		if (bpf_core_field_exists(struct trace_event_raw_kfree_skb, reason))    \
			reason = (__u32)ctx[2];                                          \
		on_skb(skb, 0, EV_DROP, false, rd, (__u64)location, reason);          \
		return 0;                                                               \
	}
HOOK(on_kfree, kfree_skb, struct sk_buff *skb, void *location)

#define HOOK_BODY_on_consume(rd)                                                     \
	{                                                                             \
		__u64 location = 0;                                                   \
		if (bpf_core_field_exists(struct trace_event_raw_consume_skb, location)) \
			location = ctx[1];                                            \
		on_skb(skb, 0, EV_CONSUME, false, rd, location, 0);                 \
		return 0;                                                             \
	}
HOOK(on_consume, consume_skb, struct sk_buff *skb)

/* A FIB lookup does not see the sk_buff, only the flow: match it on addresses (and protocol
 * when the caller filled it in). Userspace ties it to the packet on the same CPU. */
static __always_inline void on_fib(__u32 table, struct flowi4 *flp, struct fib_nh_common *nhc, int err,
				   int rd)
{
	const volatile struct filter *f = &CFG.filter;

	if (f->family == 6)
		return;
	__u8 proto = KREAD(rd, flp, __fl_common.flowic_proto);
	if (f->proto && proto && f->proto != proto)
		return;
	__be32 s = KREAD(rd, flp, saddr), d = KREAD(rd, flp, daddr);
	struct packet p = {};
	p.family = 4;
	p.proto = proto;
	__builtin_memcpy(p.saddr, &s, 4);
	__builtin_memcpy(p.daddr, &d, 4);
	/* Ports are not reliably filled in for input lookups: match addresses only. */
	if (!match4(s, d) && !match4(d, s)) {
		struct gates *g = gates_get();
		if (!g || !g->learned)
			return;
		struct scratch *sc = enter();
		if (!sc)
			return;
		__builtin_memset(&sc->inner, 0, sizeof(sc->inner));
		sc->inner.family = 4;
		__builtin_memcpy(sc->inner.saddr, p.saddr, 4);
		__builtin_memcpy(sc->inner.daddr, p.daddr, 4);
		bool hit = learned_match(&sc->inner, &sc->k);
		sc->busy = 0;
		if (!hit)
			return;
	}

	/* Under overload the packets themselves are left out (see track_skb): so are their lookups. */
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >
	    bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 4 * 3) {
		count(STAT_ROUTES_SKIPPED);
		return;
	}
	struct event *e = new_event(EV_ROUTE);
	if (!e)
		return;
	e->pkt = p;
	e->route.table = table;
	e->route.err = err;
	e->route.iif = BPF_CORE_READ(flp, __fl_common.flowic_iif);
	if (nhc && err == 0) {
		struct net_device *dev = BPF_CORE_READ(nhc, nhc_dev);
		if (dev) {
			e->route.out_ifindex = BPF_CORE_READ(dev, ifindex);
			BPF_CORE_READ_STR_INTO(&e->route.out_ifname, dev, name);
			e->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
		}
		__u8 gwf = BPF_CORE_READ(nhc, nhc_gw_family);
		if (gwf == AF_INET) {
			__be32 gw = BPF_CORE_READ(nhc, nhc_gw.ipv4);
			__builtin_memcpy(e->route.gw, &gw, 4);
			e->route.gw_family = 4;
		} else if (gwf == AF_INET6) {
			BPF_CORE_READ_INTO(&e->route.gw, nhc, nhc_gw.ipv6);
			e->route.gw_family = 6;
		}
	}
	submit(e);
}

#define HOOK_BODY_on_fib(rd) { on_fib(table, flp, nhc, err, rd); return 0; }
HOOK(on_fib, fib_table_lookup, __u32 table, struct flowi4 *flp, struct fib_nh_common *nhc, int err)

/* Function-level hops: only for packets already tracked (the tracepoints start them), so an
 * unrelated packet costs one map lookup. The headers are read again to make sure the tracked
 * address still carries the same packet. */
static __always_inline void func_hop(struct sk_buff *skb, enum func_id id, bool has_ret, __s32 ret,
				     __u8 nf_hook, __u8 nf_pf)
{
	struct gates *g = gates_get();
	if (!g || !g->tracked)
		return;
	__u64 key = (__u64)skb;
	struct track *t = bpf_map_lookup_elem(&tracked, &key);
	if (!t || (t->flags & TRACK_SKIPPED))
		return;
	struct scratch *sc = enter();
	if (!sc)
		return;
	enum encap_kind encap = ENCAP_NONE;
	__builtin_memset(&sc->p, 0, sizeof(sc->p));
	__builtin_memset(&sc->inner, 0, sizeof(sc->inner));
	int parsed = parse_skb(skb, false, RD_PROBE, &sc->p, &sc->inner, &encap, (struct parse_gate){});
	struct packet *flow = encap ? &sc->inner : &sc->p;
	if (parsed == PARSE_NOT_IP || (!parsed && !same_life(t, flow))) {
		untrack(key);
		goto out;
	}
	struct sighting si = {
		.skb = skb, .key = key, .kind = EV_FUNC, .parsed = parsed, .encap = encap,
		.fn = {.id = id, .has_ret = has_ret, .ret = ret, .nf_hook = nf_hook, .nf_pf = nf_pf},
	};
	if (!emit(sc, &si, false, false))
		t->flags |= TRACK_GAP;
out:
	sc->busy = 0;
}

/* fentry/fexit: typed arguments, the return value for free, the lowest cost. */
#define FENTRY(fn, id)                                                   \
	SEC("fentry/" #fn) int BPF_PROG(fe_##fn, struct sk_buff *skb)        \
	{                                                                \
		func_hop(skb, id, false, 0, 0, 0);                           \
		return 0;                                                \
	}
/* ip_forward(skb), ip_local_deliver(skb), ip6_forward(skb): the packet is the first argument. */
FENTRY(ip_forward, FN_IP_FORWARD)
FENTRY(ip_local_deliver, FN_IP_LOCAL_DELIVER)
FENTRY(ip6_forward, FN_IP6_FORWARD)

/* ip_output(net, sk, skb), ip_finish_output2(net, sk, skb), ip6_output(net, sk, skb) */
#define FENTRY3(fn, id)                                                                \
	SEC("fentry/" #fn) int BPF_PROG(fe_##fn, void *net, void *sk, struct sk_buff *skb) \
	{                                                                              \
		func_hop(skb, id, false, 0, 0, 0);                                         \
		return 0;                                                              \
	}
FENTRY3(ip_output, FN_IP_OUTPUT)
FENTRY3(ip_finish_output2, FN_IP_FINISH_OUTPUT2)
FENTRY3(ip6_output, FN_IP6_OUTPUT)

/* br_forward(to, skb, local_rcv, local_orig) */
SEC("fentry/br_forward")
int BPF_PROG(fe_br_forward, void *to, struct sk_buff *skb)
{
	func_hop(skb, FN_BR_FORWARD, false, 0, 0, 0);
	return 0;
}

/* nf_hook_slow(skb, state, entries, index) returns 1 to go on, -EPERM when a rule dropped the
 * packet (then it is already freed: kfree_skb reports the drop with the hook stashed here), 0
 * when it was stolen or queued. */
static __always_inline void nf_enter(struct sk_buff *skb, struct nf_hook_state *state)
{
	struct gates *g = gates_get();
	if (!g || !g->tracked)
		return;
	__u64 key = (__u64)skb;
	if (!bpf_map_lookup_elem(&tracked, &key))
		return;
	__u64 tid = bpf_get_current_pid_tgid();
	struct nf_call c = {.skb = key, .hook = BPF_CORE_READ(state, hook), .pf = BPF_CORE_READ(state, pf)};
	bpf_map_update_elem(&nf_calls, &tid, &c, BPF_ANY);
}

static __always_inline void nf_exit(int ret)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct nf_call *c = bpf_map_lookup_elem(&nf_calls, &tid);
	if (!c)
		return;
	struct nf_call call = *c;
	bpf_map_delete_elem(&nf_calls, &tid);
	if (ret == 1) /* accepted: the packet lives on; a drop was reported by kfree_skb */
		func_hop((struct sk_buff *)call.skb, FN_NF_HOOK_SLOW, true, ret, call.hook, call.pf);
}

SEC("fentry/nf_hook_slow")
int BPF_PROG(fe_nf_hook_slow, struct sk_buff *skb, struct nf_hook_state *state)
{
	nf_enter(skb, state);
	return 0;
}

SEC("fexit/nf_hook_slow")
int BPF_PROG(fx_nf_hook_slow, struct sk_buff *skb, struct nf_hook_state *state, void *entries,
	     unsigned int index, int ret)
{
	nf_exit(ret);
	return 0;
}

/* kprobes: where fentry is refused. The return value needs a kretprobe, which does not see
 * the arguments: the entry stashes them per task. */
#define KPROBE(fn, id)                                                 \
	SEC("kprobe/" #fn) int BPF_KPROBE(kp_##fn, struct sk_buff *skb)    \
	{                                                              \
		func_hop(skb, id, false, 0, 0, 0);                         \
		return 0;                                              \
	}
KPROBE(ip_forward, FN_IP_FORWARD)
KPROBE(ip_local_deliver, FN_IP_LOCAL_DELIVER)
KPROBE(ip6_forward, FN_IP6_FORWARD)

#define KPROBE3(fn, id)                                                                \
	SEC("kprobe/" #fn) int BPF_KPROBE(kp_##fn, void *net, void *sk, struct sk_buff *skb) \
	{                                                                              \
		func_hop(skb, id, false, 0, 0, 0);                                         \
		return 0;                                                              \
	}
KPROBE3(ip_output, FN_IP_OUTPUT)
KPROBE3(ip_finish_output2, FN_IP_FINISH_OUTPUT2)
KPROBE3(ip6_output, FN_IP6_OUTPUT)

SEC("kprobe/br_forward")
int BPF_KPROBE(kp_br_forward, void *to, struct sk_buff *skb)
{
	func_hop(skb, FN_BR_FORWARD, false, 0, 0, 0);
	return 0;
}


SEC("kprobe/nf_hook_slow")
int BPF_KPROBE(kp_nf_hook_slow, struct sk_buff *skb, struct nf_hook_state *state)
{
	nf_enter(skb, state);
	return 0;
}

SEC("kretprobe/nf_hook_slow")
int BPF_KRETPROBE(kr_nf_hook_slow, int ret)
{
	nf_exit(ret);
	return 0;
}

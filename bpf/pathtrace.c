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
#define AF_INET 2
#define AF_INET6 10

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
	__type(value, struct event); /* puts struct event into BTF for bpf2go */
} events SEC(".maps");

/* sk_buffs seen matching; value: when first seen. LRU so a packet freed behind our back
 * (a path with no tracepoint) cannot fill the map for good. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} tracked SEC(".maps");

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

/* Reads IPv4/IPv6 and transport headers at l3 into p. Returns 0 when they were read. */
static __always_inline int parse_l3(unsigned char *l3, __be16 protocol, struct packet *p)
{
	__u32 l4off;
	__u8 proto;

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
				continue;
			}
			proto = ext[0];
			l4off += (ext[1] + 1) * 8;
		}
	} else {
		return -1;
	}

	p->proto = proto;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP &&
	    proto != IPPROTO_ICMPV6)
		return 0;

	struct l4hdr l4 = {};
	if (bpf_probe_read_kernel(&l4, proto == IPPROTO_TCP ? sizeof(l4) : 8, l3 + (l4off & 0xff)))
		return 0;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		p->sport = l4.source;
		p->dport = l4.dest;
		if (proto == IPPROTO_TCP) {
			p->tcp_flags = l4.flags;
			p->tcp_seq = l4.seq;
		}
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

/* Where the IP header is depends on the hook: at receive skb->data points at it (the MAC
 * header has been pulled); elsewhere the stack has set network_header. */
static __always_inline int parse_skb(struct sk_buff *skb, bool at_data, struct packet *p)
{
	__be16 protocol = BPF_CORE_READ(skb, protocol);
	unsigned char *l3;

	if (at_data) {
		l3 = BPF_CORE_READ(skb, data);
	} else {
		__u16 nh = BPF_CORE_READ(skb, network_header);
		/* 0 and ~0 both mean "never set" depending on how the skb was built. */
		if (nh == 0 || nh == 0xffff)
			return -1;
		l3 = BPF_CORE_READ(skb, head) + nh;
	}
	return parse_l3(l3, protocol, p);
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

static __always_inline bool match_oneway(const struct packet *p, const __u8 *src, const __u8 *dst,
					 __be16 sport, __be16 dport)
{
	const volatile struct filter *f = &CFG.filter;
	if (!addr_match(src, f->src, f->src_mask) || !addr_match(dst, f->dst, f->dst_mask))
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

/* The common path of every sk_buff hook: report it when it is tracked or matches; start
 * tracking it on a match; forget it when it is freed. */
static __always_inline void on_skb(struct sk_buff *skb, struct net_device *dev, __u32 kind,
				   bool at_data, __u64 location, __u32 reason)
{
	__u64 key = (__u64)skb;
	struct packet p = {};
	bool freed = kind == EV_DROP || kind == EV_CONSUME;
	bool known = bpf_map_lookup_elem(&tracked, &key) != 0;
	int parsed = parse_skb(skb, at_data, &p);

	if (!known) {
		if (parsed || !filter_match(&p))
			return;
		if (!freed) {
			__u64 now = bpf_ktime_get_ns();
			if (bpf_map_update_elem(&tracked, &key, &now, BPF_ANY))
				count(STAT_TRACK_FULL);
		}
	} else if (freed) {
		bpf_map_delete_elem(&tracked, &key);
	}

	struct event *e = new_event(kind);
	if (!e)
		return;
	if (!dev)
		dev = BPF_CORE_READ(skb, dev);
	e->skb = key;
	e->location = location;
	e->reason = reason;
	e->len = BPF_CORE_READ(skb, len);
	e->netns = netns_of(dev, skb);
	if (dev) {
		e->ifindex = BPF_CORE_READ(dev, ifindex);
		BPF_CORE_READ_STR_INTO(&e->ifname, dev, name);
	}
	if (!parsed)
		e->pkt = p;
	submit(e);
}

/* Each hook is built twice: tp_btf (typed, cheapest) and raw_tp (older kernels or kernels
 * that refuse BTF-typed attachment). The loader keeps whichever the kernel accepts. */
#define HOOK(name, tp, ...)                                 \
	SEC("tp_btf/" #tp) int BPF_PROG(name##_btf, __VA_ARGS__) \
	HOOK_BODY_##name                                      \
	SEC("raw_tp/" #tp) int BPF_PROG(name##_raw, __VA_ARGS__) \
	HOOK_BODY_##name

#define HOOK_BODY_on_receive { on_skb(skb, 0, EV_RECEIVE, true, 0, 0); return 0; }
HOOK(on_receive, netif_receive_skb, struct sk_buff *skb)

#define HOOK_BODY_on_queue { on_skb(skb, 0, EV_QUEUE, false, 0, 0); return 0; }
HOOK(on_queue, net_dev_queue, struct sk_buff *skb)

#define HOOK_BODY_on_xmit { on_skb(skb, dev, EV_XMIT, false, 0, 0); return 0; }
HOOK(on_xmit, net_dev_start_xmit, struct sk_buff *skb, struct net_device *dev)

#define HOOK_BODY_on_kfree                                                              \
	{                                                                               \
		__u32 reason = 0;                                                       \
		/* The reason argument exists since 5.17; read it only where it does. */ \
		if (bpf_core_field_exists(struct trace_event_raw_kfree_skb, reason))    \
			reason = (__u32)ctx[2];                                          \
		on_skb(skb, 0, EV_DROP, false, (__u64)location, reason);               \
		return 0;                                                               \
	}
HOOK(on_kfree, kfree_skb, struct sk_buff *skb, void *location)

#define HOOK_BODY_on_consume                                                          \
	{                                                                             \
		__u64 location = 0;                                                   \
		if (bpf_core_field_exists(struct trace_event_raw_consume_skb, location)) \
			location = ctx[1];                                            \
		on_skb(skb, 0, EV_CONSUME, false, location, 0);                      \
		return 0;                                                             \
	}
HOOK(on_consume, consume_skb, struct sk_buff *skb)

/* A FIB lookup does not see the sk_buff, only the flow: match it on addresses (and protocol
 * when the caller filled it in). Userspace ties it to the packet on the same CPU. */
static __always_inline void on_fib(__u32 table, struct flowi4 *flp, struct fib_nh_common *nhc, int err)
{
	const volatile struct filter *f = &CFG.filter;
	struct packet p = {};
	__be32 s = BPF_CORE_READ(flp, saddr), d = BPF_CORE_READ(flp, daddr);

	if (f->family == 6)
		return;
	p.family = 4;
	p.proto = BPF_CORE_READ(flp, __fl_common.flowic_proto);
	__builtin_memcpy(p.saddr, &s, 4);
	__builtin_memcpy(p.daddr, &d, 4);
	if (f->proto && p.proto && f->proto != p.proto)
		return;
	/* Ports are not reliably filled in for input lookups: match addresses only. */
	if (!match_oneway(&p, p.saddr, p.daddr, 0, 0) && !match_oneway(&p, p.daddr, p.saddr, 0, 0))
		return;
	/* An output lookup may not know its source yet (0.0.0.0): match on the destination. */

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

#define HOOK_BODY_on_fib { on_fib(table, flp, nhc, err); return 0; }
HOOK(on_fib, fib_table_lookup, __u32 table, struct flowi4 *flp, struct fib_nh_common *nhc, int err)

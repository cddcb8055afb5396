/* Reporting a hop: one struct event reserved in the ring buffer, filled and submitted. */
#pragma once

#include "maps.h"
#include "parse.h"
#include "snap.h"

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
	struct event *e = bpf_ringbuf_reserve(&events, event_record_size(), 0);
	if (!e) {
		count(STAT_LOST);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	if (CFG.snap)
		((struct event_snap *)e)->snap.len = 0;
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
		if (s->encap) {
			e->inner = sc->inner;
			e->vni = sc->vni;
		}
	}
	e->fn = s->fn;
	if (CFG.snap) /* the receive hook is the one that sees skb->data at the IP header */
		snap_packet(skb, s->kind == EV_RECEIVE, &((struct event_snap *)e)->snap);
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

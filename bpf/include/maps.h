/* The maps the programs share and the configuration userspace sets before load (CFG), with
 * the small accessors every part uses: the gates, the per-CPU working space, the counters. */
#pragma once

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "pathtrace.h"

volatile const struct config CFG = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
	__type(value, struct event_snap); /* puts struct event and struct snap into BTF for bpf2go */
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

#define TRACK_SKIPPED 1     /* its first event was lost: no events until it is freed */
#define TRACK_GAP 2         /* an event was lost: the next one says so */

/* sk_buffs of the packets being traced. LRU so a packet freed behind our back (a path with no
 * tracepoint) cannot fill the map for good. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct track);
} tracked SEC(".maps");

/* What is remembered of a packet left out whole (over the budget, or under overload) until it
 * is freed: what same_life compares, to tell it from a new packet in the same sk_buff. */
struct left {
	__be32 seq; /* TCP sequence number or ICMP echo sequence */
	__be16 ip_id;
	__u8 proto;
	__u8 flags; /* LEFT_* */
};

#define LEFT_V6 1          /* an IPv6 packet (else IPv4) */
#define LEFT_OVER_BUDGET 2 /* for the budget, not for overload */
#define LEFT_ENCAP 4       /* the flow is a packet carried in a tunnel */

/* Packets left out, so that one cannot start halfway along its path and each is counted once
 * (leftout.h). Most are in left_slots, a direct-mapped array indexed by a hash of the sk_buff's
 * address, where remembering and forgetting one are a store each, no lock, no allocation. One
 * whose slot another packet holds (or any, where the kernel has no compare-and-swap for
 * tracing programs) goes to left_out, an LRU hash. Apart from tracked: a packet of another flow
 * never looks here, and gates is not written for them. */
#define LEFT_SLOTS_BITS 14

struct left_slot {
	__u64 skb; /* the sk_buff's address; 0: free */
	struct left l;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << LEFT_SLOTS_BITS);
	__type(key, __u32);
	__type(value, struct left_slot);
} left_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct left);
} left_out SEC(".maps");

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
	/* Set once a packet was left out (never cleared): from then on a packet that may match is
	 * looked up in left_slots. */
	__u64 left_out;
	/* Set once a packet left out went to left_out (never cleared): from then on one not in
	 * left_slots is looked up there too. */
	__u64 left_lru;
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

/* Working space for one hook run: two packets and flow keys do not fit the 512-byte BPF stack.
 * A hook that interrupts another on the same CPU (a softirq on the way out of an interrupt)
 * finds it busy and counts itself lost rather than overwrite it. */
struct scratch {
	struct packet p;
	struct packet inner;
	__u32 vni; /* the tunnel's VNI when p carries inner (VXLAN, Geneve) */
	struct track nt;
	struct flow_key k;
	__u32 busy;
	/* What became of the last matching packet an sk_buff hook handled on this CPU: 0 when it
	 * is traced, else the stat it was counted in (STAT_SKIPPED, STAT_OVER_BUDGET). A forwarding
	 * route lookup follows its packet's receive on the same CPU, and goes with it. */
	__u32 left_out;
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

/* The budget's bucket (budget.h). A map of its own: its writes must not take from other CPUs
 * the cache line of gates, which every hook reads. */
struct budget {
	__u64 full_at; /* when the bucket is full again: a token comes back every interval */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct budget);
} budget SEC(".maps");

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

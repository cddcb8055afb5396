//go:build ignore

/* pathtrace's kernel side: tracepoint programs that follow one flow's sk_buffs through the
 * stack. A packet that matches the filter (either direction) has its sk_buff tracked, so its
 * later hops are reported even after NAT has rewritten the headers it was matched on.
 *
 * This file holds only the programs (SEC); what they do is in one header per concern, each
 * including what it uses:
 *   include/pathtrace.h  the event, the config and the counters, shared with Go (bpf2go -type)
 *   include/kernel.h     the kernel types and fields read (CO-RE)
 *   include/maps.h       the maps, the config (CFG), the counters and the per-CPU working space
 *   include/parse.h      reading IP, transport and tunnel headers
 *   include/filter.h     the user's filter, and quick_reject for packets of other flows
 *   include/nat.h        learning the flows NAT rewrites a tracked packet into
 *   include/emit.h       writing an event to the ring buffer
 *   include/budget.h     the budget for new packets (--max-rate): a token bucket
 *   include/leftout.h    packets left out whole (the budget, overload) until they are freed
 *   include/track.h      starting, following and forgetting a packet's sk_buff (on_skb)
 *   include/route.h      route lookups (on_fib)
 *   include/funcs.h      function-level hops and netfilter verdicts (func_hop, nf_enter/exit) */

#include "include/kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "include/pathtrace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "include/maps.h"
#include "include/parse.h"
#include "include/filter.h"
#include "include/nat.h"
#include "include/emit.h"
#include "include/budget.h"
#include "include/leftout.h"
#include "include/track.h"
#include "include/route.h"
#include "include/funcs.h"

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

#define HOOK_BODY_on_fib(rd) { on_fib(table, flp, nhc, err, rd); return 0; }
HOOK(on_fib, fib_table_lookup, __u32 table, struct flowi4 *flp, struct fib_nh_common *nhc, int err)

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

/* nf_hook_slow(skb, state, entries, index): see nf_enter. */
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

/* Route lookups (fib:fib_table_lookup) of the traced flow. */
#pragma once

#include "maps.h"
#include "parse.h"
#include "filter.h"
#include "nat.h"
#include "emit.h"
#include "budget.h"

#define AF_INET 2
#define AF_INET6 10

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
	/* Ports are not reliably filled in for input lookups: match addresses only. An unbound
	 * socket's output lookup comes before its source address is chosen (saddr 0): it is matched
	 * on its destination alone, so that a send which finds no route (ENETUNREACH, no packet
	 * ever made) is still seen. */
	__u32 iif = KREAD(rd, flp, __fl_common.flowic_iif);
	bool unbound = s == 0 && iif <= 1;
	if (!match4(s, d) && !match4(d, s) &&
	    !(unbound && (match4(FILTER_WORD(src, 0), d) || match4(d, FILTER_WORD(dst, 0))))) {
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

	/* A lookup goes with its packet, and one left out (new_packet) takes its lookups with it:
	 * an input (forwarding) lookup is the packet's that was just received on this CPU; a local
	 * output lookup comes before its packet exists, which will start if a token is left. */
	__u32 left_out = 0;
	if (iif > 1) { /* output lookups have the loopback device's, 1 */
		__u32 zero = 0;
		struct scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
		if (sc)
			left_out = sc->left_out;
	} else if (!budget_left(bpf_ktime_get_ns())) {
		left_out = STAT_OVER_BUDGET;
	}
	if (left_out) {
		count(left_out == STAT_OVER_BUDGET ? STAT_ROUTES_OVER_BUDGET : STAT_ROUTES_SKIPPED);
		return;
	}
	/* Under overload the packets themselves are left out (see track_skb): so are their lookups. */
	if (ring_filling()) {
		count(STAT_ROUTES_SKIPPED);
		return;
	}
	struct event *e = new_event(EV_ROUTE);
	if (!e)
		return;
	e->pkt = p;
	e->route.table = table;
	e->route.err = err;
	e->route.iif = iif;
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
	} else if (iif <= 1) {
		/* A failed output lookup has no device to tell its namespace: it runs in its sender's
		 * context (a socket's send), whose namespace is the task's. A kernel-made packet's
		 * lookup in softirq would take the interrupted task's: userspace ties such a lookup to
		 * its packet, whose hops tell the namespace. */
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		e->netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	}
	submit(e);
}

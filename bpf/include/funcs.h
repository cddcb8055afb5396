/* Function-level hops (fentry/fexit or kprobes) of packets already tracked, and netfilter's
 * hook and verdict for a drop in nf_hook_slow. */
#pragma once

#include "maps.h"
#include "parse.h"
#include "track.h"
#include "emit.h"

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
	sc->vni = 0;
	int parsed = parse_skb(skb, false, RD_PROBE, &sc->p, &sc->inner, &sc->vni, &encap, (struct parse_gate){});
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

package e2e

import (
	"sync"

	"github.com/cilium/ebpf/btf"

	"github.com/pathtrace/pathtrace/trace"
)

// hasDropReasons says whether the running kernel reports drop reasons (5.17+). Tests expect a
// reason where it does and a location alone where it does not.
var hasDropReasons = sync.OnceValue(func() bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	var e *btf.Enum
	return spec.TypeByName("skb_drop_reason", &e) == nil
})

// functionHops says whether the trace was taken with a backend that shows kernel functions.
func functionHops(tr *trace.Trace) bool {
	return tr.Meta.Backend == "fentry" || tr.Meta.Backend == "kprobe"
}

// funcHop finds p's hop through kernel function fn in netns (the last one: nf_hook_slow runs
// once per hook, and the verdict that matters is the last).
func funcHop(p trace.Packet, netns, fn string) *trace.Hop {
	var found *trace.Hop
	for i := range p.Hops {
		if h := &p.Hops[i]; h.Func != nil && h.Func.Name == fn && h.NetnsName == netns {
			found = h
		}
	}
	return found
}

// reasonIs says whether a drop's reason is want, on a kernel that reports reasons; before 5.17
// the kernel reports none, and an empty (or rightly inferred) reason is what it can show.
func reasonIs(got, want string) bool {
	return got == want || (!hasDropReasons() && got == "")
}

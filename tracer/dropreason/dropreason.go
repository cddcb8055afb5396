// Package dropreason names the kernel's drop reasons from its own BTF (enum skb_drop_reason),
// so the names are those of the running kernel, not of a table that ages.
package dropreason

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"
)

const prefix = "SKB_DROP_REASON_"

// Names maps reason values to names without the SKB_DROP_REASON_ prefix.
type Names map[uint32]string

// ErrNoReasons means the kernel has no enum skb_drop_reason (before 5.17).
var ErrNoReasons = errors.New("kernel has no enum skb_drop_reason")

// FromBTF reads the enum from a kernel BTF spec.
func FromBTF(spec *btf.Spec) (Names, error) {
	var e *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &e); err != nil {
		if errors.Is(err, btf.ErrNotFound) {
			return nil, ErrNoReasons
		}
		return nil, fmt.Errorf("look up enum skb_drop_reason: %w", err)
	}
	n := make(Names, len(e.Values))
	for _, v := range e.Values {
		n[uint32(v.Value)] = strings.TrimPrefix(v.Name, prefix)
	}
	return n, nil
}

// Name is the reason's name, or its number when this kernel does not know it.
func (n Names) Name(v uint32) string {
	if s, ok := n[v]; ok {
		return s
	}
	return "reason-" + strconv.FormatUint(uint64(v), 10)
}

// inferable maps the functions that free packets for one reason only to that reason, for
// kernels that report no reason (before 5.17). Functions that drop for several reasons
// (ip_error, __udp4_lib_rcv, ip_rcv_core...) are left out: a wrong reason is worse than none.
var inferable = map[string]string{
	"nf_hook_slow":          "NETFILTER_DROP",
	"nft_do_chain":          "NETFILTER_DROP",
	"sk_stream_kill_queues": "QUEUE_PURGE",
}

// Infer names the reason for a drop at location ("function+0xoff") where only one is possible.
func Infer(location string) (string, bool) {
	fn, _, _ := strings.Cut(location, "+")
	r, ok := inferable[fn]
	return r, ok
}

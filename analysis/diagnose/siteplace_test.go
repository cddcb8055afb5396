package diagnose

import (
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

// A drop in a pod's namespace is said to be in the pod; one on the node's end of a pod's veth,
// on that device, leading to the pod. The namespace's name stays in the fix, where a command
// needs it.
func TestVerdictNamesPods(t *testing.T) {
	for _, c := range []struct {
		fate trace.Fate
		want string
	}{
		{trace.Fate{Outcome: trace.Dropped, Reason: "NO_SOCKET", Location: "udp_queue_rcv_skb+0x1c", Place: trace.Place{Ifname: "eth0", Netns: 4026532301, NetnsName: "cni-5b1e", Pod: "default/web"}},
			"the request was dropped in pod default/web eth0 at udp_queue_rcv_skb+0x1c (NO_SOCKET)"},
		{trace.Fate{Outcome: trace.Dropped, Reason: "IP_INADDRERRORS", Location: "ip_error+0x5a", Place: trace.Place{Ifname: "cali1a2b", Netns: 4026531840, NetnsName: "host", DevicePod: "default/web"}},
			"the request was dropped in host cali1a2b -> pod default/web at ip_error+0x5a (IP_INADDRERRORS)"},
		{trace.Fate{Outcome: trace.Dropped, Reason: "IP_INADDRERRORS", Location: "ip_error+0x5a", Place: trace.Place{Ifname: "veth-pod", Netns: 4026531840, NetnsName: "node"}},
			"the request was dropped in node veth-pod at ip_error+0x5a (IP_INADDRERRORS)"},
	} {
		tr := &trace.Trace{Packets: []trace.Packet{{ID: 1, Flow: trace.Request, Fate: c.fate}}}
		v := Verdict(tr)
		if !strings.HasPrefix(v.Summary, c.want) {
			t.Errorf("summary %q, want it to start %q", v.Summary, c.want)
		}
	}
	// Two sites: the second is named in the "also" part the same way.
	tr := &trace.Trace{Packets: []trace.Packet{
		{ID: 1, Flow: trace.Request, Fate: trace.Fate{Outcome: trace.Dropped, Reason: "IP_INADDRERRORS", Location: "ip_error+0x5a", Place: trace.Place{Ifname: "veth-pod", Netns: 1, NetnsName: "node"}}},
		{ID: 2, Flow: trace.Request, Fate: trace.Fate{Outcome: trace.Dropped, Reason: "IP_INADDRERRORS", Location: "ip_error+0x5a", Place: trace.Place{Ifname: "veth-pod", Netns: 1, NetnsName: "node"}}},
		{ID: 3, Flow: trace.Reply, Fate: trace.Fate{Outcome: trace.Dropped, Reason: "NO_SOCKET", Location: "x+0x1", Place: trace.Place{Ifname: "eth0", Netns: 2, NetnsName: "cni-1", Pod: "shop/db"}}},
	}}
	if v := Verdict(tr); !strings.Contains(v.Summary, "also 1 reply dropped in pod shop/db (NO_SOCKET)") {
		t.Errorf("summary %q does not name the second site by its pod", v.Summary)
	}
}

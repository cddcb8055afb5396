package diagnose

import (
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

func TestVerdicts(t *testing.T) {
	req := trace.Packet{Flow: trace.Request}
	rep := trace.Packet{Flow: trace.Reply}
	delivered := trace.Fate{Outcome: trace.Delivered}
	cases := []struct {
		name     string
		tr       trace.Trace
		outcome  string
		contains string
		fix      string
	}{
		{"no packets", trace.Trace{}, "no-packets", "no packet matched", ""},
		{
			"healthy",
			trace.Trace{Packets: []trace.Packet{withFate(req, delivered), withFate(rep, delivered)}},
			"delivered", "healthy", "",
		},
		{
			"left the host, no reply",
			trace.Trace{Packets: []trace.Packet{withFate(req, trace.Fate{Outcome: trace.LeftHost, Ifname: "eth0", NetnsName: "host"})}},
			"left-host", "not dropped on this host: the request left on eth0", "",
		},
		{
			"forwarding off",
			trace.Trace{
				Packets: []trace.Packet{withFate(req, trace.Fate{Outcome: trace.Dropped})},
				Flows: []trace.FlowSummary{{Drops: []trace.DropSite{{Flow: trace.Request, Reason: "IP_INADDRERRORS",
					Location: "ip_error+0x94", Ifname: "veth-pod", NetnsName: "node", Count: 3}}}},
			},
			"dropped", "forwarding is off for the input device veth-pod", "net.ipv4.conf.veth-pod.forwarding=1",
		},
		{
			"the most frequent drop is explained",
			trace.Trace{
				Packets: []trace.Packet{withFate(req, trace.Fate{Outcome: trace.Dropped})},
				Flows: []trace.FlowSummary{{Drops: []trace.DropSite{
					{Flow: trace.Reply, Reason: "NO_SOCKET", Location: "__udp4_lib_rcv+0x1", Count: 1},
					{Flow: trace.Request, Reason: "NETFILTER_DROP", Location: "nf_hook_slow+0x1", NetnsName: "node", Count: 4},
				}}},
			},
			"dropped", "the request was dropped in node at nf_hook_slow+0x1: NETFILTER_DROP", "nft list ruleset",
		},
		{
			"unknown reason still names the place",
			trace.Trace{
				Packets: []trace.Packet{withFate(req, trace.Fate{Outcome: trace.Dropped})},
				Flows: []trace.FlowSummary{{Drops: []trace.DropSite{{Flow: trace.Request, Reason: "SOME_NEW_REASON",
					Location: "new_func+0x10", NetnsName: "host", Count: 1}}}},
			},
			"dropped", "dropped in host at new_func+0x10: SOME_NEW_REASON", "",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Verdict(&c.tr)
			if v.Outcome != c.outcome || !strings.Contains(v.Summary, c.contains) {
				t.Errorf("verdict %q %q, want %q containing %q", v.Outcome, v.Summary, c.outcome, c.contains)
			}
			if c.fix != "" && !strings.Contains(strings.Join(v.Fix, "\n"), c.fix) {
				t.Errorf("fix %q lacks %q", v.Fix, c.fix)
			}
			if v.Confidence == "" {
				t.Errorf("verdict without confidence")
			}
		})
	}
}

func withFate(p trace.Packet, f trace.Fate) trace.Packet {
	p.Fate = f
	return p
}

package assemble

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

func TestSummarizeFixtures(t *testing.T) {
	tests := []struct {
		file   string
		filter trace.Filter
		want   []trace.FlowSummary
	}{{
		file:   "ping_forward.jsonl",
		filter: ping,
		want:   []trace.FlowSummary{{Tuple: req7210("172.16.0.2"), Requests: 1, Replies: 1, Delivered: 2}},
	}, {
		file:   "drop_ip_error.jsonl",
		filter: ping,
		want: []trace.FlowSummary{{Tuple: req7210("172.16.0.2"), Requests: 3, Drops: []trace.DropSite{{
			Flow: trace.Request, Reason: "IP_INADDRERRORS", Location: "ip_error+0x5a",
			Place: trace.Place{Ifname: "vethpod", Netns: 4026531840, NetnsName: "node"}, Count: 3,
		}}}},
	}, {
		file:   "uplink_left_host.jsonl",
		filter: icmpFilter("10.0.1.2", "8.8.8.8"),
		want:   []trace.FlowSummary{{Tuple: req7210("8.8.8.8"), Requests: 1, Replies: 1, LeftHost: 1, Delivered: 1}},
	}, {
		file:   "ping_raw_socket_copy.jsonl",
		filter: icmpFilter("10.99.1.2", "10.99.2.2"),
		want: []trace.FlowSummary{{Tuple: trace.Tuple{
			Proto: trace.ProtoICMP, Src: netip.MustParseAddr("10.99.1.2"), Dst: netip.MustParseAddr("10.99.2.2"),
			Sport: 4711, Dport: 4711,
		}, Requests: 1, Replies: 1, Delivered: 2}},
	}}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got := Summarize(tt.filter, Replay(tt.filter, Options{}, fixture(t, tt.file)))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %s\nwant %s", js(got), js(tt.want))
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	pods := trace.Filter{Proto: trace.ProtoICMP, Src: netip.MustParsePrefix("10.0.1.0/24")}
	mk := func(flow trace.Direction, first *trace.Headers, fate trace.Fate, later ...*trace.Headers) trace.Packet {
		p := trace.Packet{Flow: flow, Tuple: *first, Fate: fate}
		for _, h := range append([]*trace.Headers{first}, later...) {
			p.Hops = append(p.Hops, trace.Hop{Tuple: h})
		}
		return p
	}
	delivered := trace.Fate{Outcome: trace.Delivered}
	drop := func(reason, ifname string) trace.Fate {
		return trace.Fate{Outcome: trace.Dropped, Reason: reason, Location: "f+0x1", Place: trace.Place{Ifname: ifname, NetnsName: "node"}}
	}
	other := echo("10.0.1.3", "172.16.0.2")
	packets := []trace.Packet{
		mk(trace.Request, other, drop("NETFILTER_DROP", "vethpod")),
		mk(trace.Request, req, delivered),
		mk(trace.Reply, rep, drop("NETFILTER_DROP", "vethpod")),
		mk(trace.Request, other, drop("NETFILTER_DROP", "vethpod")),
		mk(trace.Request, other, drop("NETFILTER_DROP", "vethpod2")),
		mk(trace.Request, other, trace.Fate{Outcome: trace.Unknown}),
		mk(trace.Request, other, trace.Fate{Outcome: trace.LeftHost}),
		// seen first with its NATed destination: still the 10.0.1.2 flow
		mk(trace.Reply, echo("172.16.0.2", "192.168.1.10"), delivered, rep),
	}
	dropSite := func(flow trace.Direction, ifname string, n int) trace.DropSite {
		return trace.DropSite{Flow: flow, Reason: "NETFILTER_DROP", Location: "f+0x1", Place: trace.Place{Ifname: ifname, NetnsName: "node"}, Count: n}
	}
	want := []trace.FlowSummary{{
		Tuple: other.Tuple, Requests: 5, Unknown: 1, LeftHost: 1,
		Drops: []trace.DropSite{dropSite(trace.Request, "vethpod", 2), dropSite(trace.Request, "vethpod2", 1)},
	}, {
		Tuple: req.Tuple, Requests: 1, Replies: 2, Delivered: 2,
		Drops: []trace.DropSite{dropSite(trace.Reply, "vethpod", 1)},
	}}
	got := Summarize(pods, packets)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %s\nwant %s", js(got), js(want))
	}
	if got := Summarize(ping, nil); got != nil {
		t.Errorf("no packets: %v", got)
	}
}

func req7210(dst string) trace.Tuple {
	h := echo("10.0.1.2", dst)
	h.Sport, h.Dport = 7210, 7210
	return h.Tuple
}

func js(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

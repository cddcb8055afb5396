package assemble

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

func fixture(t *testing.T, name string) []trace.Event {
	t.Helper()
	evs, err := LoadEvents(filepath.Join("..", "..", "testdata", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func icmpFilter(src, dst string) trace.Filter {
	return trace.Filter{
		Src:   netip.PrefixFrom(netip.MustParseAddr(src), 32),
		Dst:   netip.PrefixFrom(netip.MustParseAddr(dst), 32),
		Proto: trace.ProtoICMP,
	}
}

// pkt is a packet in a form a failing test can show on one line: "#1 request delivered
// icmp_rcv+0x1fb ext/eth0", with its hops as "received@node/vethpod route@node:main ...".
func pkt(p trace.Packet) string {
	f := p.Fate
	s := fmt.Sprintf("#%d %s %s", p.ID, p.Flow, f.Outcome)
	for _, x := range []string{f.Reason, f.Location} {
		if x != "" {
			s += " " + x
		}
	}
	return s + " " + f.NetnsName + "/" + f.Ifname
}

func hopsOf(p trace.Packet) string {
	var hs []string
	for _, h := range p.Hops {
		s := string(h.Event) + "@" + h.NetnsName
		if h.Route != nil {
			s += ":" + h.Route.TableName
		} else if h.Ifname != "" {
			s += "/" + h.Ifname
		}
		hs = append(hs, s)
	}
	return strings.Join(hs, " ")
}

type want struct{ pkt, hops string }

func check(t *testing.T, got []trace.Packet, wants []want) {
	t.Helper()
	for i := range max(len(got), len(wants)) {
		switch {
		case i >= len(got):
			t.Errorf("missing %s", wants[i].pkt)
		case i >= len(wants):
			t.Errorf("extra %s: %s", pkt(got[i]), hopsOf(got[i]))
		default:
			if g := pkt(got[i]); g != wants[i].pkt {
				t.Errorf("packet %d:\n got %s\nwant %s", i, g, wants[i].pkt)
			}
			if g := hopsOf(got[i]); g != wants[i].hops {
				t.Errorf("packet %d hops:\n got %s\nwant %s", i, g, wants[i].hops)
			}
		}
	}
}

var netnsIDs = map[string]uint32{"node": 4026531840, "pod": 4026532301, "ext": 4026532402, "mon": 4026532503}

const us = 1000 // ns

// ev is a hop of sk_buff skb at where ("netns/ifname", or "netns" for none), t µs into the run.
func ev(skb uint64, cpu uint32, tUS uint64, kind trace.Kind, where string, tuple *trace.Headers) trace.Event {
	ns, ifname, _ := strings.Cut(where, "/")
	return trace.Event{SKB: skb, CPU: cpu, Hop: trace.Hop{
		TimeNS: tUS * us, Event: kind, Place: trace.Place{Netns: netnsIDs[ns], NetnsName: ns, Ifname: ifname}, Tuple: tuple,
	}}
}

func dropped(skb uint64, cpu uint32, tUS uint64, where string, tuple *trace.Headers, reason, loc string) trace.Event {
	e := ev(skb, cpu, tUS, trace.KindDrop, where, tuple)
	e.Hop.Reason, e.Hop.Location = reason, loc
	return e
}

func consumed(skb uint64, cpu uint32, tUS uint64, where string, tuple *trace.Headers, loc string) trace.Event {
	e := ev(skb, cpu, tUS, trace.KindConsume, where, tuple)
	e.Hop.Location = loc
	return e
}

// route is a FIB lookup in the main table of netns, reported as the kernel does: no sk_buff.
func route(cpu uint32, tUS uint64, netns, src, dst string) trace.Event {
	e := ev(0, cpu, tUS, trace.KindRoute, netns, nil)
	e.Hop.Route = &trace.Route{Table: 254, TableName: "main", Lookup: trace.Tuple{
		Proto: trace.ProtoICMP, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
	}}
	return e
}

func echo(src, dst string) *trace.Headers {
	return &trace.Headers{Tuple: trace.Tuple{
		Proto: trace.ProtoICMP, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Sport: 7, Dport: 7,
	}, ICMPID: 7}
}

func addAll(a *Assembler, evs []trace.Event) []trace.Packet {
	var out []trace.Packet
	for _, e := range evs {
		out = append(out, a.Add(e)...)
	}
	return out
}

// lookupProto makes a route event's lookup name protocol p.
func lookupProto(e trace.Event, p trace.Proto) trace.Event {
	e.Hop.Route.Lookup.Proto = p
	return e
}

// with returns a copy of h changed by f.
func with(h *trace.Headers, f func(*trace.Headers)) *trace.Headers {
	c := *h
	f(&c)
	return &c
}

func udp(src string, sport uint16, dst string, dport uint16) *trace.Headers {
	return &trace.Headers{Tuple: trace.Tuple{
		Proto: trace.ProtoUDP, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Sport: sport, Dport: dport,
	}, IPID: 4242, TTL: 64}
}

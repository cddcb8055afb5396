package assemble

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

// match looks newest first and stops early while the CPU's recent hops are in time order: it
// finds what a look at every hop finds, whatever the order they came in.
func TestRouteMatchIsFullScan(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	addrs := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")}
	kinds := []trace.Kind{trace.KindReceive, trace.KindQueue, trace.KindXmit}
	for round := range 1000 {
		var pkts []*packet
		for range 1 + r.IntN(20) {
			// Few fit a lookup, so that looking goes deep into the ring.
			p := &packet{cur: &trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoICMP, Src: addrs[r.IntN(3)], Dst: addrs[r.IntN(3)]}}}
			if r.IntN(3) > 0 {
				p.cur.Dst = netip.MustParseAddr("10.9.9.9")
			}
			if r.IntN(5) == 0 {
				p.state = stDone
			}
			pkts = append(pkts, p)
		}
		c := &cpuState{}
		ns := uint64(r.IntN(3)) * 1_000_000 // a start near 0 too: the window's lower edge
		for step := range 400 {
			// Mostly forward, in steps below and above the windows, now and then back.
			switch r.IntN(40) {
			case 0:
				ns -= min(ns, uint64(r.IntN(3_000_000)))
			case 1:
				ns += uint64(r.IntN(30_000_000))
			case 2, 3, 4, 5, 6, 7, 8, 9, 10, 11:
				// the same time: ties
			default:
				ns += uint64(r.IntN([]int{5_000, 50_000, 300_000}[round%3]))
			}
			h := trace.Hop{TimeNS: ns, Event: kinds[r.IntN(3)], Place: trace.Place{Ifindex: uint32(1 + r.IntN(3))}}
			c.touch(pkts[r.IntN(len(pkts))], &h)
			if step%3 != 0 {
				continue
			}
			m := routeMatch{ns: ns + uint64(r.IntN(4_000_000)) - 2_000_000, iif: uint32(r.IntN(4)),
				lookup: trace.Tuple{Dst: addrs[r.IntN(3)]}}
			if m.ns > 1<<63 {
				m.ns = 0
			}
			full := m
			for i := range c.recent {
				full.consider(&c.recent[i], i)
			}
			c.match(&m)
			if m.best != full.best || m.received != full.received {
				t.Fatalf("round %d step %d (disorder %d): match found %p/%p, a full scan %p/%p", round, step, c.disorder, m.best, m.received, full.best, full.received)
			}
		}
	}
}

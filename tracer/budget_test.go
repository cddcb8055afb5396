package tracer

import (
	"context"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/analysis/assemble"
	"github.com/pathtrace/pathtrace/analysis/diagnose"
	"github.com/pathtrace/pathtrace/trace"
)

func TestKernelConfigBudget(t *testing.T) {
	for _, c := range []struct {
		rate, interval, depth uint64
	}{
		{0, 0, 0}, // no budget
		{1, 1e9, 1e9},
		{1000, 1e6, 1e9},
		// Rounded up: never more than the rate; the bucket still holds rate tokens.
		{3, 333333334, 1000000002},
		{7, 142857143, 1000000001},
		{1e9, 1, 1e9},
		{5e9, 1, 1e9}, // capped at one a nanosecond
	} {
		k := kernelConfig(Config{MaxRate: c.rate})
		if k.BudgetIntervalNs != c.interval || k.BudgetDepthNs != c.depth {
			t.Errorf("MaxRate %d: interval %d depth %d, want %d and %d", c.rate, k.BudgetIntervalNs, k.BudgetDepthNs, c.interval, c.depth)
		}
		if c.rate > 0 && c.rate <= 1e9 && k.BudgetDepthNs/k.BudgetIntervalNs != c.rate {
			t.Errorf("MaxRate %d: the bucket holds %d tokens", c.rate, k.BudgetDepthNs/k.BudgetIntervalNs)
		}
	}
}

// TestBudget sends a burst of matching UDP datagrams, ten times what the budget lets start at
// once, to a closed loopback port, then a few more once tokens have come back. Every datagram
// must be either traced, whole (from its queueing on lo to its drop, NO_SOCKET), or counted as
// over the budget: exactly as many as were sent. The burst takes the bucket and little more;
// the later ones are all traced; and the drop is still what the verdict names, as a sample.
// IPv4 packets are left out from one read of their headers; IPv6 ones take the whole parse.
func TestBudget(t *testing.T) {
	needRoot(t)
	t.Run("IPv4", func(t *testing.T) { testBudget(t, "udp4", net.IPv4(127, 0, 0, 1)) })
	t.Run("IPv6", func(t *testing.T) { testBudget(t, "udp6", net.IPv6loopback) })
}

func testBudget(t *testing.T, network string, lo net.IP) {
	const rate, burst, later = 200, 2000, 10
	// Unconnected: a connected socket would fail sends with the ICMP error of an earlier one.
	conn, err := net.ListenUDP(network, &net.UDPAddr{IP: lo})
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	defer conn.Close()
	sport := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
	// A port that was open a moment ago: nothing listens on it.
	closed, err := net.ListenUDP(network, &net.UDPAddr{IP: lo})
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(closed.LocalAddr().(*net.UDPAddr).Port)
	closed.Close()
	dst := &net.UDPAddr{IP: lo, Port: int(port)}

	filter := testFilter(t, lo.String(), lo.String(), trace.ProtoUDP, port)
	tr, err := Open(Config{Filter: filter, MaxRate: rate})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer tr.Close()

	var events []trace.Event // Run's goroutine appends, this one reads after Run returned
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- tr.Run(ctx, func(e trace.Event) { events = append(events, e) }, nil)
	}()

	sent := 0
	send := func(n int) {
		for range n {
			if _, err := conn.WriteToUDP([]byte("pathtrace budget"), dst); err == nil {
				sent++
			}
		}
	}
	start := time.Now()
	send(burst)
	burstTook := time.Since(start)
	burstEnd := tr.NowNS()
	// 100 ms bring back 20 tokens: every one of the later datagrams starts.
	time.Sleep(100 * time.Millisecond)
	send(later)
	time.Sleep(200 * time.Millisecond) // their events reach the ring buffer's reader
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
	st, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}

	asm := assemble.New(filter, assemble.Options{})
	var all []trace.Packet
	for _, e := range events {
		all = append(all, asm.Add(e)...)
	}
	all = append(all, asm.Flush()...)
	var traced []trace.Packet
	inBurst := 0
	reasons := kernelHasDropReasons(t)
	for _, p := range all {
		if p.Tuple.Sport != sport {
			continue
		}
		traced = append(traced, p)
		if p.Hops[0].TimeNS <= burstEnd {
			inBurst++
		}
		// Its sk_buff's hops, from the first (its route lookup, made before it, aside).
		var kinds []string
		for _, h := range p.Hops {
			if h.Event != trace.KindRoute {
				kinds = append(kinds, string(h.Event)+" "+h.Ifname)
			}
		}
		whole := len(kinds) > 0 && kinds[0] == "queued lo" && slices.Contains(kinds, "received lo") &&
			p.Fate.Outcome == trace.Dropped && !p.Incomplete && (!reasons || p.Fate.Reason == "NO_SOCKET")
		if !whole {
			t.Errorf("packet %d is not whole: hops %v, fate %+v, incomplete %v", p.ID, kinds, p.Fate, p.Incomplete)
		}
	}
	t.Logf("sent %d (%d in %s, then %d); traced %d (%d of the burst); over budget %d; skipped %d; lost %d; routes over budget %d",
		sent, burst, burstTook, later, len(traced), inBurst, st.OverBudget, st.Skipped, st.Lost, st.RoutesOverBudget)

	if sent != burst+later {
		t.Fatalf("%d of %d datagrams sent", sent, burst+later)
	}
	if st.Skipped != 0 || st.Lost != 0 {
		t.Errorf("%d packets skipped and %d events lost: the ring buffer was not meant to fill here", st.Skipped, st.Lost)
	}
	if got := uint64(len(traced)) + st.OverBudget + st.Skipped; got != uint64(sent) {
		t.Errorf("traced %d + over budget %d + skipped %d = %d, want every datagram sent (%d) counted once",
			len(traced), st.OverBudget, st.Skipped, got, sent)
	}
	// The bucket (rate tokens) and what came back while the burst was sent; two CPUs taking
	// the last token at once may both have it.
	most := rate + int(float64(rate)*burstTook.Seconds()) + 1 + runtime.NumCPU()
	if inBurst < rate || inBurst > most {
		t.Errorf("%d of the burst traced, want the bucket's %d and at most %d", inBurst, rate, most)
	}
	if n := len(traced) - inBurst; n != later {
		t.Errorf("%d of the %d datagrams sent after the tokens came back were traced, want all", n, later)
	}

	// What a run concludes from them: the drop, on a sample.
	tt := &trace.Trace{Filter: filter, Packets: traced, Meta: trace.Meta{MaxRate: rate, OverBudget: st.OverBudget}}
	tt.Flows = assemble.Summarize(filter, traced)
	v := diagnose.Verdict(tt)
	if v.Outcome != "dropped" || !strings.Contains(v.Summary, "a sample") {
		t.Errorf("verdict %q: %s; want the drop, said to rest on a sample", v.Outcome, v.Summary)
	}
	if reasons && !strings.Contains(v.Summary, "NO_SOCKET") {
		t.Errorf("verdict does not name the drop (NO_SOCKET): %s", v.Summary)
	}
}

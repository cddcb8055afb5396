package text

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pathtrace/pathtrace/render/internal/tracetest"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/trace"
)

func render(t *testing.T, tr *trace.Trace, opts Options) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Render(&buf, tr, opts); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// wantLines checks that each wanted line appears in out as a whole line, in order.
func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	i := 0
	for _, w := range want {
		for i < len(lines) && lines[i] != w {
			i++
		}
		if i == len(lines) {
			t.Errorf("missing line (or out of order):\n%q\nin output:\n%s", w, out)
			return
		}
		i++
	}
}

func TestForwardDrop(t *testing.T) {
	out := render(t, tracetest.ForwardDrop(), Options{})
	wantLines(t, out,
		"tracing  icmp 10.0.1.2 <-> 10.0.2.2",
		"#3 request  icmp 10.0.1.2 > 10.0.2.2  echo-request id=4660 seq=3",
		"    +0.000ms  pod-a  eth0      queued",
		"    +0.016ms  node   veth-pod  route     table main -> veth-ext",
		"    +0.045ms  node   veth-pod  DROPPED   IP_INADDRERRORS at ip_error+0x5a",
		"    => DROPPED on node veth-pod: IP_INADDRERRORS at ip_error+0x5a",
		"summary: 3 packets in 10s (stopped: time limit reached)",
		"flow icmp 10.0.1.2 <-> 10.0.2.2: 3 requests, 0 replies; 3 dropped (request) on node veth-pod: IP_INADDRERRORS at ip_error+0x5a",
		"Verdict: DROPPED (confidence: high)",
		"  cause     IP forwarding is disabled in netns node",
		"  fix       sysctl -w net.ipv4.ip_forward=1   (in netns node)",
	)
	if strings.Contains(out, "WARNING") {
		t.Error("no events were lost, yet the output warns")
	}
}

func TestHealthyPing(t *testing.T) {
	out := render(t, tracetest.HealthyPing(), Options{})
	wantLines(t, out,
		"#1 request  icmp 10.0.1.2 > 10.0.2.2  echo-request id=4660 seq=1",
		"    => delivered in ext (consumed at icmp_rcv+0x1c5)",
		"#2 reply    icmp 10.0.2.2 > 10.0.1.2  echo-reply id=4660 seq=1",
		"    +1.041ms  pod-a  eth0      consumed  at skb_free_datagram+0x11",
		"    => delivered in pod-a (consumed at skb_free_datagram+0x11)",
		"flow icmp 10.0.1.2 <-> 10.0.2.2 id=4660: 1 request, 1 reply; 2 delivered",
		"Verdict: delivered (confidence: high)",
	)
	if strings.Contains(out, "DROPPED") || strings.Contains(out, "NAT") {
		t.Error("a healthy ping shows a drop or NAT")
	}
}

func TestNATRewrite(t *testing.T) {
	out := render(t, tracetest.NATRewrite(), Options{})
	wantLines(t, out,
		"#1 request  tcp 10.0.1.2:43210 > 10.96.0.10:80  [SYN] seq=1105024978",
		"    +0.027ms  node   veth-pod  route     table main -> eth0 via 192.168.10.1",
		"    +0.033ms  node   eth0      queued    NAT dst 10.96.0.10:80 -> 10.0.3.7:8080",
		"    +0.036ms  node   eth0      xmit",
		"    => left host on eth0",
		"#2 reply    tcp 10.0.3.7:8080 > 10.0.1.2:43210  [SYN,ACK] seq=3290851407",
		"    +0.013ms  node   veth-pod  xmit      NAT src 10.0.3.7:8080 -> 10.96.0.10:80",
		"flow tcp 10.0.1.2:43210 <-> 10.96.0.10:80: 1 request, 1 reply; 1 delivered; 1 left host",
	)
	// NAT is reported where the headers change, not again on every later hop.
	if n := strings.Count(out, "  NAT "); n != 2 {
		t.Errorf("want 2 NAT lines, got %d", n)
	}
}

func TestRouteError(t *testing.T) {
	out := render(t, tracetest.RouteError(), Options{})
	wantLines(t, out,
		"    +0.014ms  node   veth-pod  route     table main: -113 EHOSTUNREACH (unreachable route)",
		"    => DROPPED on node veth-pod: NOT_SPECIFIED at ip_error+0x8f",
		"  fix       1. ip route show table main 10.9.9.9   (in netns node)",
		"            2. remove or replace the unreachable route",
	)
}

func TestLostEvents(t *testing.T) {
	out := render(t, tracetest.LostEvents(), Options{})
	wantLines(t, out,
		"probes    5 attached: skb:kfree_skb, skb:consume_skb, net:netif_receive_skb, net:net_dev_queue, net:net_dev_start_xmit",
		"failed    fib:fib_table_lookup (tp_btf): attach tp_btf: permission denied",
		"degraded  route decisions are not shown: fib:fib_table_lookup did not attach",
		"    => unknown: trace ended before the packet's end was seen (last seen: received on node veth-pod)",
		"WARNING: 1834 events lost (the kernel's ring buffer was full): this trace is incomplete.",
		"Verdict: unknown (confidence: low)",
	)
	colored := render(t, tracetest.LostEvents(), Options{Color: true})
	if !strings.Contains(colored, sgr[alarm]+"WARNING: 1834 events lost"+reset) {
		t.Error("lost events are not shown in the alarm colour")
	}
}

// With the count of events received (traces since it was recorded), the lost events are put
// against it, and an overload says how many events did arrive.
func TestEventsReceived(t *testing.T) {
	tr := tracetest.LostEvents()
	tr.Meta.Events = 120000
	tr.Meta.Skipped, tr.Meta.RoutesSkipped = 300, 290
	out := render(t, tr, Options{})
	wantLines(t, out,
		"WARNING: 1834 of 121834 events lost (the kernel's ring buffer was full): this trace is incomplete.",
		"overload: 300 matching packets not followed (the ring buffer was filling up; 290 route lookups not reported either; 120000 events received): the packets shown are whole.",
	)
}

// Past the budget (--max-rate), the summary says how many matching packets were not traced and
// that those shown are a sample; so does the verdict.
func TestOverBudget(t *testing.T) {
	tr := tracetest.LostEvents()
	tr.Meta.LostEvents = 0
	tr.Meta.MaxRate, tr.Meta.OverBudget = 1000, 41234
	out := render(t, tr, Options{})
	wantLines(t, out,
		"budget: 41234 matching packets not traced (over --max-rate 1000 new packets/s): the packets shown are a sample, each whole.",
	)
	// A merged trace of older ones may not say what the budget was.
	tr.Meta.MaxRate = 0
	wantLines(t, render(t, tr, Options{}),
		"budget: 41234 matching packets not traced (over the budget for new packets): the packets shown are a sample, each whole.")
	if colored := render(t, tr, Options{Color: true}); !strings.Contains(colored, sgr[warn]+"budget: 41234 matching packets not traced"+reset) {
		t.Error("the budget line is not in the warning colour")
	}
}

// A live run streams its kept packets to the trace file and holds none: its summary, given the
// count, is the one `show` prints from the file.
func TestSummaryOfStreamedPackets(t *testing.T) {
	for _, s := range tracetest.Scenes() {
		tr := s.Build()
		tr.Meta.NotKept = 3
		var held, streamed bytes.Buffer
		NewPrinter(&held, Options{}).Summary(tr)
		kept := len(tr.Packets)
		tr.Packets = nil
		NewPrinter(&streamed, Options{}).SummaryOf(tr, kept)
		if d := cmp.Diff(held.String(), streamed.String()); d != "" {
			t.Errorf("%s: SummaryOf differs from Summary:\n%s", s.Name, d)
		}
	}
}

func TestNoPackets(t *testing.T) {
	out := render(t, tracetest.NoPackets(), Options{})
	wantLines(t, out,
		"no packets matched icmp 10.0.1.2 <-> 10.0.2.2 in 10s (stopped: time limit reached)",
		"Verdict: no packets (confidence: medium)",
	)
	if strings.Contains(out, "\n#") || strings.Contains(out, "\nflow ") {
		t.Error("no packets, yet a packet block or flow line was printed")
	}
}

var esc = regexp.MustCompile("\x1b\\[[0-9;]*m")

// Colour must only be added around text: with the codes removed, the coloured output is the
// plain output byte for byte, so alignment cannot drift between the two.
func TestColor(t *testing.T) {
	for _, s := range tracetest.Scenes() {
		plain := render(t, s.Build(), Options{})
		if strings.ContainsRune(plain, 0x1b) {
			t.Errorf("%s: Color=false output contains ESC", s.Name)
		}
		colored := render(t, s.Build(), Options{Color: true})
		if !strings.ContainsRune(colored, 0x1b) {
			t.Errorf("%s: Color=true output has no colour", s.Name)
		}
		if d := cmp.Diff(plain, esc.ReplaceAllString(colored, "")); d != "" {
			t.Errorf("%s: coloured text differs from plain text beyond colour codes:\n%s", s.Name, d)
		}
	}
	colored := render(t, tracetest.ForwardDrop(), Options{Color: true})
	if !strings.Contains(colored, "=> "+sgr[alarm]+"DROPPED"+reset+" on node veth-pod") {
		t.Errorf("the fate DROPPED is not red and bold:\n%q", colored)
	}
}

// The live run calls Header, Packet as each completes, then Summary; `show` calls Render.
func TestRenderIsHeaderPacketsSummary(t *testing.T) {
	for _, s := range tracetest.Scenes() {
		tr := s.Build()
		var live bytes.Buffer
		p := NewPrinter(&live, Options{Color: true})
		p.Header(tr)
		for _, pk := range tr.Packets {
			p.Packet(pk)
		}
		p.Summary(tr)
		if p.Err() != nil {
			t.Fatal(p.Err())
		}
		if d := cmp.Diff(live.String(), render(t, tr, Options{Color: true})); d != "" {
			t.Errorf("%s: Render differs from Header+Packet+Summary:\n%s", s.Name, d)
		}
	}
}

// A live trace has a local zone name and monotonic clock readings; the saved one has
// neither. `show` must still print exactly what the live run printed.
func TestShowPrintsWhatLiveRunPrinted(t *testing.T) {
	for _, s := range tracetest.Scenes() {
		tr := s.Build()
		tr.Meta.StartedAt = time.Now()
		tr.Meta.EndedAt = tr.Meta.StartedAt.Add(9*time.Second + 950*time.Millisecond)
		live := render(t, tr, Options{})

		var saved bytes.Buffer
		if err := jsontrace.Write(&saved, tr); err != nil {
			t.Fatal(err)
		}
		shown, err := jsontrace.Read(&saved)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(live, render(t, shown, Options{})); d != "" {
			t.Errorf("%s: show differs from the live run:\n%s", s.Name, d)
		}
	}
}

func TestHopsPrintInTimeOrder(t *testing.T) {
	tr := tracetest.HealthyPing()
	pk := tr.Packets[0]
	pk.Hops[0], pk.Hops[5] = pk.Hops[5], pk.Hops[0]
	var buf bytes.Buffer
	NewPrinter(&buf, Options{}).Packet(pk)
	lines := strings.Split(buf.String(), "\n")
	if !strings.Contains(lines[1], "+0.000ms  pod-a") || !strings.Contains(lines[6], "+0.038ms  ext") {
		t.Errorf("hops not sorted by time:\n%s", buf.String())
	}
	if tr.Packets[0].Hops[0].Event != trace.KindConsume {
		t.Error("Packet reordered the caller's hops")
	}
}

func TestHopFallbacksAndRouteErrors(t *testing.T) {
	ip := netip.MustParseAddr
	req := trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoICMP, Src: ip("10.0.1.2"), Dst: ip("10.0.2.2"), Sport: 7, Dport: 7},
		ICMPType: 8, ICMPID: 7, ICMPSeq: 1}
	snat := req
	snat.Src = ip("10.0.2.1")
	route := func(err int32) *trace.Route { return &trace.Route{Table: 254, Err: err} }
	pk := trace.Packet{ID: 12, Flow: trace.Request, Tuple: req, Hops: []trace.Hop{
		{TimeNS: 1000, Event: trace.KindReceive, Place: trace.Place{Netns: 4026531840}, Tuple: &req},
		{TimeNS: 2000, Event: trace.KindRoute, Place: trace.Place{Netns: 4026531840}, Route: route(-101)},
		{TimeNS: 2100, Event: trace.KindRoute, Place: trace.Place{Netns: 4026531840}, Route: route(-22)},
		{TimeNS: 2200, Event: trace.KindRoute, Place: trace.Place{Netns: 4026531840}, Route: &trace.Route{Table: 100, Err: -11}},
		{TimeNS: 3000, Event: trace.KindXmit, Place: trace.Place{Netns: 4026531840, Ifindex: 9}, Tuple: &snat},
		{TimeNS: 1_234_567_000, Event: trace.KindDrop, Place: trace.Place{Netns: 4026531840, Ifname: "eth0"}, Tuple: &snat},
	}, Fate: trace.Fate{Outcome: trace.Dropped, Place: trace.Place{Ifname: "eth0", Netns: 4026531840}}}
	var buf bytes.Buffer
	NewPrinter(&buf, Options{}).Packet(pk)
	wantLines(t, buf.String(),
		"#12 request  icmp 10.0.1.2 > 10.0.2.2  echo-request id=7 seq=1",
		"       +0.000ms  netns:4026531840  -          received",
		"       +0.001ms  netns:4026531840  -          route     table main: -101 ENETUNREACH (network unreachable)",
		"       +0.001ms  netns:4026531840  -          route     table main: -22 EINVAL (blackhole route)",
		"       +0.001ms  netns:4026531840  -          route     table 100: -11 EAGAIN (no route in this table, lookup goes on to the next rule)",
		"       +0.002ms  netns:4026531840  ifindex:9  xmit      NAT src 10.0.1.2 -> 10.0.2.1",
		"    +1234.566ms  netns:4026531840  eth0       DROPPED   no drop reason reported",
		"    => DROPPED on netns:4026531840 eth0",
	)
}

func TestNAT(t *testing.T) {
	ip := netip.MustParseAddr
	icmp := trace.Tuple{Proto: trace.ProtoICMP, Src: ip("10.0.1.2"), Dst: ip("10.0.2.2"), Sport: 7, Dport: 7}
	udp := trace.Tuple{Proto: trace.ProtoUDP, Src: ip("10.0.1.2"), Dst: ip("10.96.0.10"), Sport: 5353, Dport: 53}
	with := func(t trace.Tuple, f func(*trace.Tuple)) trace.Tuple { f(&t); return t }
	cases := []struct {
		name      string
		prev, cur trace.Tuple
		want      string
	}{
		{"same", icmp, icmp, ""},
		{"icmp snat", icmp, with(icmp, func(t *trace.Tuple) { t.Src = ip("10.0.2.1") }), "NAT src 10.0.1.2 -> 10.0.2.1"},
		{"icmp id", icmp, with(icmp, func(t *trace.Tuple) { t.Sport, t.Dport = 9, 9 }), "NAT id 7 -> 9"},
		{"udp dnat", udp, with(udp, func(t *trace.Tuple) { t.Dst = ip("10.0.3.4") }), "NAT dst 10.96.0.10:53 -> 10.0.3.4:53"},
		{"udp port only", udp, with(udp, func(t *trace.Tuple) { t.Sport = 40000 }), "NAT src 10.0.1.2:5353 -> 10.0.1.2:40000"},
		{"both", udp, with(udp, func(t *trace.Tuple) { t.Src, t.Dst = ip("192.168.1.5"), ip("10.0.3.4") }),
			"NAT src 10.0.1.2:5353 -> 192.168.1.5:5353, dst 10.96.0.10:53 -> 10.0.3.4:53"},
		{"v6", trace.Tuple{Proto: trace.ProtoTCP, Src: ip("fd00::1"), Dst: ip("fd00::2"), Sport: 1, Dport: 443},
			trace.Tuple{Proto: trace.ProtoTCP, Src: ip("fd00::1"), Dst: ip("fd00::9"), Sport: 1, Dport: 8443},
			"NAT dst [fd00::2]:443 -> [fd00::9]:8443"},
	}
	for _, c := range cases {
		if got := string(appendNAT(nil, &c.prev, &c.cur)); got != c.want {
			t.Errorf("%s: appendNAT() = %q, want %q", c.name, got, c.want)
		}
	}
}

// Names in a saved trace come from a file someone sent; they must not drive the terminal.
func TestControlCharactersAreNotPrinted(t *testing.T) {
	tr := tracetest.ForwardDrop()
	tr.Packets[0].Hops[0].NetnsName = "evil\x1b[2J\x1b]0;owned\a"
	tr.Verdict.Summary = "line one\nline two"
	out := render(t, tr, Options{})
	if strings.ContainsAny(out, "\x1b\a") {
		t.Errorf("control characters reached the output: %q", out)
	}
	wantLines(t, out, "  line one", "  line two")
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(b []byte) (int, error) {
	w.n++
	return 0, errors.New("broken pipe")
}

func TestWriteErrorsStopThePrinter(t *testing.T) {
	w := &failingWriter{}
	if err := Render(w, tracetest.ForwardDrop(), Options{}); err == nil || err.Error() != "broken pipe" {
		t.Fatalf("Render error = %v, want broken pipe", err)
	}
	if w.n != 1 {
		t.Errorf("printer kept writing after an error: %d writes", w.n)
	}
}

func TestTerminalDetection(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a regular file is not a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if IsTerminal(w) || AutoColor(w) {
		t.Error("a pipe is not a terminal")
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err == nil {
		defer tty.Close()
		if !IsTerminal(tty) {
			t.Error("/dev/tty is a terminal")
		}
		t.Setenv("NO_COLOR", "1")
		if AutoColor(tty) {
			t.Error("NO_COLOR is set, yet AutoColor says colour")
		}
	}
}

// The hop table's times are what %.3f of the float wrote before them.
func TestAppendMS(t *testing.T) {
	check := func(ns uint64) {
		if got, want := string(appendMS(nil, ns)), fmt.Sprintf("%.3f", float64(ns)/1e6); got != want {
			t.Fatalf("appendMS(%d) = %s, want %s", ns, got, want)
		}
	}
	for _, ns := range []uint64{0, 1, 499, 500, 501, 999, 1000, 1499, 1500, 1501, 999_499, 999_500, 999_501, 999_999,
		1_000_000, 1_234_567, 2_000_500, 1<<50 - 1, 1 << 50, 1<<53 + 1, 1<<64 - 1} {
		check(ns)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		check(r.Uint64N(1 << uint(r.IntN(51))))
	}
}

func TestPrintableASCII(t *testing.T) {
	for c := range 256 {
		for at := range 11 {
			b := []byte("abcdefghijk")
			b[at] = byte(c)
			want := c >= 0x20 && c < 0x7f
			if got := printableASCII(b); got != want {
				t.Fatalf("byte %#x at %d: printableASCII = %v, want %v", c, at, got, want)
			}
			if got := printableASCIIString(string(b)); got != want {
				t.Fatalf("byte %#x at %d (string): printableASCII = %v, want %v", c, at, got, want)
			}
		}
	}
}

// What a verdict does not know is printed with the command that settles it.
func TestVerdictNotKnown(t *testing.T) {
	tr := tracetest.LostEvents()
	tr.Verdict = trace.Verdict{Outcome: "unknown", Summary: "no drop seen", Confidence: "low",
		Unknown: []trace.NotKnown{{What: "where the packets ended", Settle: "trace longer (--duration)"}}}
	out := render(t, tr, Options{})
	if !strings.Contains(out, "not known") || !strings.Contains(out, "where the packets ended") || !strings.Contains(out, "(settle: trace longer (--duration))") {
		t.Errorf("the verdict's unknown is not printed:\n%s", out)
	}
}

// A trace whose traffic pathtrace sent itself (--probe) says so in the header, before the
// first packet, and says in the summary how many were sent.
func TestProbeIsMarked(t *testing.T) {
	tr := tracetest.HealthyPing()
	tr.Meta.Probe = &trace.SentProbe{Kind: "dns", Dst: netip.MustParseAddr("10.96.0.10"), Dport: 53, Name: "kubernetes.default.svc.cluster.local",
		Pod: "default/web", Netns: "/var/run/netns/cni-1", Count: 5, Sent: 2, Error: "probe dns to 10.96.0.10: network is unreachable"}
	out := render(t, tr, Options{})
	wantLines(t, out,
		"probe    5 dns queries to 10.96.0.10 port 53 asking for kubernetes.default.svc.cluster.local, sent by pathtrace (--probe) from pod default/web",
		"probe: 2 of 5 sent by pathtrace (--probe): probe dns to 10.96.0.10: network is unreachable",
	)
	tr.Meta.Probe = &trace.SentProbe{Kind: "icmp", Dst: netip.MustParseAddr("10.0.2.2"), Count: 1, Sent: 1}
	wantLines(t, render(t, tr, Options{}),
		"probe    1 icmp echo-request to 10.0.2.2, sent by pathtrace (--probe)",
		"probe: 1 of 1 sent by pathtrace (--probe)",
	)
	if out := render(t, tracetest.HealthyPing(), Options{}); strings.Contains(out, "probe ") || strings.Contains(out, "probe:") {
		t.Errorf("a trace without --probe mentions a probe:\n%s", out)
	}
}

// A packet pathtrace sent says so on its first line.
func TestProbePacket(t *testing.T) {
	tr := tracetest.HealthyPing()
	tr.Packets[0].FromProbe = true
	out := render(t, tr, Options{})
	wantLines(t, out, "#1 request  icmp 10.0.1.2 > 10.0.2.2  echo-request id=4660 seq=1  (probe)", "#2 reply    icmp 10.0.2.2 > 10.0.1.2  echo-reply id=4660 seq=1")
}

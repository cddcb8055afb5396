package merge

import (
	"bytes"
	"cmp"
	"flag"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/render/text"
	"github.com/pathtrace/pathtrace/trace"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// recorded is where e2e's TestMergeAcrossNodes -record keeps the pairs of traces it took, one
// per node of the overlay lab (see its README).
const recorded = "../../testdata/merge"

// read loads recorded traces as "<dir>/<file>", the name their nodes are known by.
func read(t *testing.T, names ...string) []Input {
	t.Helper()
	var in []Input
	for _, n := range names {
		tr, err := jsontrace.ReadFile(filepath.Join(recorded, n))
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, Input{Source: n, Trace: tr})
	}
	return in
}

// golden renders the merged trace as `pathtrace merge` prints it and compares it with
// testdata/<name>.golden.
func golden(t *testing.T, name string, merged *trace.Trace, r Report) string {
	t.Helper()
	var buf bytes.Buffer
	if err := text.Render(&buf, merged, text.Options{}); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("\n" + r.String() + "\n")
	testutil.Golden(t, filepath.Join("testdata", name+".golden"), buf.Bytes(), *update, "text")
	// The merged document, byte for byte, as `pathtrace merge --json` writes it.
	var doc bytes.Buffer
	if err := jsontrace.Write(&doc, merged); err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, filepath.Join("testdata", name+".json"), doc.Bytes(), *update, "document")
	return buf.String()
}

func mustMerge(t *testing.T, in []Input) (*trace.Trace, Report) {
	t.Helper()
	merged, r, err := Merge(in...)
	if err != nil {
		t.Fatal(err)
	}
	// What merge writes must read back as what it made: `pathtrace show` re-renders it.
	var buf bytes.Buffer
	if err := jsontrace.Write(&buf, merged); err != nil {
		t.Fatal(err)
	}
	back, err := jsontrace.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	text.Render(&a, merged, text.Options{})
	text.Render(&b, back, text.Options{})
	if a.String() != b.String() {
		t.Errorf("the merged trace renders differently once saved and read back")
	}
	return merged, r
}

// nodes lists the nodes a packet's hops were seen on, in time order, without repeats; route
// hops are left out (a node attaches a lookup by CPU and time, and may attach the next
// packet's to one that already left).
func nodes(p trace.Packet) []string {
	hops := slices.Clone(p.Hops)
	slices.SortStableFunc(hops, func(a, b trace.Hop) int { return cmp.Compare(a.TimeNS, b.TimeNS) })
	var out []string
	for _, h := range hops {
		if h.Event != trace.KindRoute && (len(out) == 0 || out[len(out)-1] != h.Node) {
			out = append(out, h.Node)
		}
	}
	return out
}

// A ping pod1 -> pod2 across the overlay, traced on each node: every echo is one journey, the
// request from node1 to node2, the reply back, each delivered on the node it was for.
func TestMergePing(t *testing.T) {
	in := read(t, "ping/node1.json", "ping/node2.json")
	merged, r := mustMerge(t, in)
	out := golden(t, "ping", merged, r)

	reqs, reps := testutil.ICMPOfType(merged.Packets, 8), testutil.ICMPOfType(merged.Packets, 0)
	if len(reqs) != 3 || len(reps) != 3 {
		t.Fatalf("%d requests and %d replies merged, want 3 and 3", len(reqs), len(reps))
	}
	for _, c := range []struct {
		ps    []trace.Packet
		path  string
		node  string
		netns string
	}{{reqs, "node1,node2", "node2", "pte2e-mrg-pod2"}, {reps, "node2,node1", "node1", "pte2e-mrg-pod1"}} {
		for _, p := range c.ps {
			if got := strings.Join(nodes(p), ","); got != c.path {
				t.Errorf("%s #%d crosses %s, want %s", p.Flow, p.ID, got, c.path)
			}
			if f := p.Fate; f.Outcome != trace.Delivered || f.Node != c.node || f.NetnsName != c.netns {
				t.Errorf("%s #%d fate %+v, want delivered on %s in %s", p.Flow, p.ID, f, c.node, c.netns)
			}
		}
	}
	if r.Joined != 6 || r.Alone != 0 || r.Reordered != 0 {
		t.Errorf("report %+v, want 6 joined, none alone or reordered", r)
	}
	// Both traces read one kernel's clock: the estimate, from packets both ways, finds no skew
	// beyond the lab's microseconds of latency.
	n2 := merged.Meta.Nodes[1]
	if n2.SkewBasis != basisBoth || abs(n2.SkewNS) > int64(time.Millisecond) || n2.SkewErrorNS > int64(time.Millisecond) {
		t.Errorf("node2's clock %+v, want within 1ms of node1's from both directions", n2)
	}
	if merged.Verdict.Outcome != "delivered" || len(merged.Flows) != 1 || merged.Flows[0].Delivered != 6 {
		t.Errorf("verdict %+v flows %+v, want one healthy flow", merged.Verdict, merged.Flows)
	}
	for _, want := range []string{
		"node      node1: host vm", "reference clock; from ping/node1.json",
		"=> delivered on node node2 in pte2e-mrg-pod2 (consumed at icmp_rcv+",
		"node1  pte2e-mrg-node1  eth0       xmit",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q", want)
		}
	}
}

// skewed/node2.json is ping/node2.json with its start moved 2.5 s later on purpose: node2's
// clock runs ahead. The skew is found from the packets and the journey is the same.
func TestMergeSkewedClock(t *testing.T) {
	plain, _ := mustMerge(t, read(t, "ping/node1.json", "ping/node2.json"))
	merged, r := mustMerge(t, read(t, "ping/node1.json", "skewed/node2.json"))
	golden(t, "skewed", merged, r)
	skew := merged.Meta.Nodes[1].SkewNS - plain.Meta.Nodes[1].SkewNS
	if skew != int64(2500*time.Millisecond) {
		t.Errorf("node2's clock estimated %s further ahead than without the shift, want 2.5s", time.Duration(skew))
	}
	if !reflect.DeepEqual(merged.Packets, plain.Packets) {
		t.Errorf("the skewed pair merges into other packets than the plain pair")
	}
	if !strings.Contains(r.String(), "node2's clock +2.500s") {
		t.Errorf("report %q does not give the skew", r)
	}
}

// With forwarding off on node2, node1 alone sees its requests leave and calls it "left host";
// merged, they are dropped on node2, and node2's verdict, with the sysctl it read live, stands.
func TestMergeDroppedOnSecondNode(t *testing.T) {
	in := read(t, "dropped/node1.json", "dropped/node2.json")
	if v := in[0].Trace.Verdict.Outcome; v != "left-host" {
		t.Fatalf("node1's own verdict %q, want left-host", v)
	}
	merged, r := mustMerge(t, in)
	golden(t, "dropped", merged, r)
	reqs := testutil.ICMPOfType(merged.Packets, 8)
	if len(reqs) != 3 {
		t.Fatalf("%d requests merged, want 3", len(reqs))
	}
	for _, p := range reqs {
		if got := strings.Join(nodes(p), ","); got != "node1,node2" {
			t.Errorf("request #%d crosses %s", p.ID, got)
		}
		if f := p.Fate; f.Outcome != trace.Dropped || f.Node != "node2" || f.Reason != "IP_INADDRERRORS" || f.Ifname != "flannel.1" {
			t.Errorf("request #%d fate %+v, want dropped on node2 flannel.1 (IP_INADDRERRORS)", p.ID, f)
		}
	}
	v := merged.Verdict
	if v.Outcome != "dropped" || !strings.HasPrefix(v.Summary, "on node node2: the request was dropped in pte2e-mrg-node2 flannel.1") {
		t.Errorf("verdict %+v, want the drop on node2", v)
	}
	if !reflect.DeepEqual(v.Evidence, in[1].Trace.Verdict.Evidence) || v.Cause != in[1].Trace.Verdict.Cause {
		t.Errorf("node2's evidence not kept: %+v", v.Evidence)
	}
	if d := merged.Flows[0].Drops; len(d) != 1 || d[0].Node != "node2" || d[0].Count != 3 {
		t.Errorf("drop sites %+v, want 3 on node2", d)
	}
	// Nothing came back: the skew rests on one direction, and the packets are in causal order.
	if n2 := merged.Meta.Nodes[1]; n2.SkewBasis != basisOne {
		t.Errorf("node2's clock %+v, want an estimate from one direction", n2)
	}

	// Without a verdict of node2's own about that drop, the journey's is made from the trace
	// alone, and names the node.
	in[1].Trace.Verdict = trace.Verdict{}
	again, _ := mustMerge(t, in)
	v = again.Verdict
	if v.Outcome != "dropped" || !strings.HasPrefix(v.Summary, "the request was dropped on node node2 in pte2e-mrg-node2 flannel.1 at ip_error+") {
		t.Errorf("verdict without node2's own: %+v", v)
	}
	for _, e := range v.Evidence {
		if e.What == "net.ipv4.ip_forward" {
			t.Errorf("evidence %+v: no node state was read for this verdict", e)
		}
	}
}

// A TCP connection: every segment, handshake to teardown, joined across the nodes.
func TestMergeTCP(t *testing.T) {
	merged, r := mustMerge(t, read(t, "tcp/node1.json", "tcp/node2.json"))
	golden(t, "tcp", merged, r)
	if r.Alone != 0 || r.Joined < 8 {
		t.Errorf("report %+v, want every segment joined", r)
	}
	paths := map[string]string{}
	for _, p := range merged.Packets {
		paths[string(p.Flow)+" "+p.Tuple.TCPFlags.String()] = strings.Join(nodes(p), ",")
	}
	for k, want := range map[string]string{
		"request SYN": "node1,node2", "reply SYN,ACK": "node2,node1",
		"request FIN,ACK": "node1,node2", "reply FIN,ACK": "node2,node1",
	} {
		if paths[k] != want {
			t.Errorf("%s crosses %q, want %s (all: %v)", k, paths[k], want, paths)
		}
	}
	if merged.Verdict.Outcome != "delivered" {
		t.Errorf("verdict %+v", merged.Verdict)
	}
}

// A packet the clocks place on node2 before it left node1 (here: one request's node2 hops moved
// 1 ms earlier, which the median estimate does not follow) is still told node1 first.
func TestMergeKeepsCausalOrder(t *testing.T) {
	in := read(t, "ping/node1.json", "ping/node2.json")
	moved := false
	for i := range in[1].Trace.Packets {
		p := &in[1].Trace.Packets[i]
		if p.Tuple.ICMPType == 8 && p.Tuple.ICMPSeq == 1 {
			for j := range p.Hops {
				p.Hops[j].TimeNS -= uint64(time.Millisecond)
			}
			moved = true
		}
	}
	if !moved {
		t.Fatal("no request seq=1 on node2")
	}
	merged, r := mustMerge(t, in)
	if r.Reordered != 1 {
		t.Errorf("%d packets reordered, want 1", r.Reordered)
	}
	for _, p := range testutil.ICMPOfType(merged.Packets, 8) {
		if got := strings.Join(nodes(p), ","); got != "node1,node2" {
			t.Errorf("request seq=%d crosses %s, want node1,node2", p.Tuple.ICMPSeq, got)
		}
	}
	if !strings.Contains(r.String(), "1 packet put in causal order") {
		t.Errorf("report %q does not say so", r)
	}
}

func TestMergeBadInput(t *testing.T) {
	ping := read(t, "ping/node1.json", "ping/node2.json")
	otherFlow := read(t, "tcp/node2.json")[0]
	otherPing := read(t, "dropped/node2.json")[0]
	noStart := *ping[1].Trace
	noStart.Meta.StartedAt = time.Time{}
	cases := []struct {
		name string
		in   []Input
		want string
	}{
		{"one trace", ping[:1], "merge needs the traces of at least two nodes, got 1"},
		{"none", nil, "at least two nodes, got 0"},
		{"no trace", []Input{ping[0], {Source: "b.json"}}, "input 2 (b.json) has no trace"},
		{"twice", []Input{ping[0], {Source: "./ping/node1.json", Trace: ping[0].Trace}}, "./ping/node1.json is given twice"},
		{"other flow", []Input{ping[0], otherFlow}, "ping/node1.json traces icmp 10.41.1.2 <-> 10.41.2.2, tcp/node2.json traces tcp 10.41.1.2 <-> 10.41.2.2:8080: not the same flow"},
		{"other packets", []Input{ping[0], otherPing}, "no packet of ping/node1.json (6 traced) matches one in dropped/node2.json"},
		{"no start", []Input{ping[0], {Source: "b.json", Trace: &noStart}}, "b.json has no start time"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			merged, _, err := Merge(c.in...)
			if err == nil {
				t.Fatalf("merged %d packets, want an error", len(merged.Packets))
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line with %q", err, c.want)
			}
		})
	}
}

func TestNodeNames(t *testing.T) {
	in := func(host, src string) Input {
		return Input{Source: src, Trace: &trace.Trace{Meta: trace.Meta{Hostname: host}}}
	}
	cases := []struct {
		in   []Input
		want []string
	}{
		{[]Input{in("worker-1", "a.json"), in("worker-2", "b.json")}, []string{"worker-1", "worker-2"}},
		{[]Input{in("vm", "x/node1.json"), in("vm", "y/node2.json")}, []string{"node1", "node2"}},
		{[]Input{in("vm", "a/trace.json"), in("vm", "b/trace.json")}, []string{"a/trace", "b/trace"}},
		{[]Input{in("", "a.json"), in("worker-2", "b.json")}, []string{"a", "worker-2"}},
		{[]Input{in("vm", "t.json"), in("vm", "t.json"), in("w", "c")}, []string{"node1", "node2", "w"}},
	}
	for _, c := range cases {
		if got := nodeNames(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("nodeNames = %v, want %v", got, c.want)
		}
	}
}

func TestEstimateOffset(t *testing.T) {
	ms := int64(time.Millisecond)
	cases := []struct {
		name       string
		d          delays
		off, err   int64
		basis      string
		impossible bool
	}{
		// 1 ms latency each way, b 2 s ahead: forward 2.001 s, backward -1.999 s.
		{"both", delays{forward: []int64{2001 * ms, 2001 * ms, 2009 * ms}, backward: []int64{-1999 * ms, -1999 * ms}}, 2000 * ms, 1 * ms, basisBoth, false},
		{"forward only", delays{forward: []int64{5 * ms, 3 * ms, 4 * ms}}, 3 * ms, 0, basisOne, false},
		{"backward only", delays{backward: []int64{7 * ms, 9 * ms}}, -7 * ms, 0, basisOne, false},
		{"unordered", delays{unordered: []int64{10 * ms, 12 * ms, 11 * ms}}, 11 * ms, 0, basisUnordered, false},
		{"nothing", delays{}, 0, 0, "", true},
	}
	for _, c := range cases {
		e, ok := c.d.estimateOffset()
		if ok == c.impossible || e.offset != c.off || e.err != c.err || e.basis != c.basis {
			t.Errorf("%s: estimate %+v (%v), want offset %d err %d basis %q", c.name, e, ok, c.off, c.err, c.basis)
		}
	}
}

// Three nodes: c is placed through b, by the better-founded estimate, its error adding up.
func TestClocksChainThroughNodes(t *testing.T) {
	got := clocks(3, map[[2]int]estimate{
		{0, 1}: {offset: 100, err: 5, basis: basisBoth, samples: 4},
		{1, 2}: {offset: -30, err: 2, basis: basisBoth, samples: 4},
		{0, 2}: {offset: 500, basis: basisOne, samples: 9},
	})
	if got[0].SkewBasis != basisReference || got[1].SkewNS != 100 || got[2].SkewNS != 70 || got[2].SkewErrorNS != 7 || got[2].SkewBasis != basisBoth {
		t.Errorf("clocks = %+v", got)
	}
	lone := clocks(2, nil)
	if lone[1].SkewBasis != basisNone {
		t.Errorf("a node no estimate reaches: %+v", lone[1])
	}
}

// The probes pathtrace sent (--probe) left from one node; the journey keeps them and says which.
func TestMergeKeepsProbe(t *testing.T) {
	in := read(t, "ping/node1.json", "ping/node2.json")
	sent := trace.SentProbe{Kind: "icmp", Dst: netip.MustParseAddr("10.0.2.2"), Count: 3, Sent: 3, Netns: "/var/run/netns/pod1"}
	in[1].Trace.Meta.Probe = &sent
	for i := range in[1].Trace.Packets {
		if p := &in[1].Trace.Packets[i]; p.Tuple.ICMPType == 8 {
			p.FromProbe = true // the node that sent them marks them
		}
	}
	merged, _ := mustMerge(t, in)
	for _, p := range merged.Packets {
		if want := p.Tuple.ICMPType == 8; p.FromProbe != want {
			t.Errorf("merged #%d (%s) from_probe %v, want %v: the sending node's mark holds for the journey", p.ID, p.Flow, p.FromProbe, want)
		}
	}
	want := sent
	want.Node = "node2"
	if got := merged.Meta.Probe; got == nil || *got != want {
		t.Fatalf("merged meta.probe %+v, want %+v", got, want)
	}
	var buf bytes.Buffer
	if err := text.Render(&buf, merged, text.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"probe     3 icmp echo-requests to 10.0.2.2, sent by pathtrace (--probe) on node node2 from /var/run/netns/pod1",
		"probe: 3 of 3 sent by pathtrace (--probe)",
	} {
		if !strings.Contains(buf.String(), line) {
			t.Errorf("merged text lacks %q:\n%s", line, buf.String())
		}
	}
	plain, _ := mustMerge(t, read(t, "ping/node1.json", "ping/node2.json"))
	if plain.Meta.Probe != nil {
		t.Errorf("a merge of traces without probes has meta.probe %+v", plain.Meta.Probe)
	}
}

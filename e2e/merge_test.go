package e2e

import (
	"cmp"
	"encoding/json"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/trace"
)

var recordMerge = flag.Bool("record", false, "rewrite testdata/merge from TestMergeAcrossNodes' runs, testdata/postmortem from TestCapture*'s")

// mergeTestdata is where -record writes the traces analysis/merge's tests replay.
const mergeTestdata = "../testdata/merge"

// skewShift is how much later the skewed pair's second node believes it started: a clock that
// is 2.5 s ahead, on purpose.
const skewShift = 2500 * time.Millisecond

// A pod-to-pod flow across the VXLAN overlay, traced on each "node" on its own, as two
// pathtraces on two real nodes would: each run keeps only its node's namespaces (--netns-scope).
// `pathtrace merge` must make one journey of the two traces.
func TestMergeAcrossNodes(t *testing.T) {
	testutil.RequireRoot(t, "create network namespaces and load BPF programs")
	o, err := lab.NewOverlay("pte2e-mrg", 41)
	if err != nil {
		t.Fatalf("build overlay: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	node1 := []string{o.Pod1.Name(), o.Node1.Name()}
	node2 := []string{o.Node2.Name(), o.Pod2.Name()}
	icmp := []string{"--src", o.Pod1IP.String(), "--dst", o.Pod2IP.String(), "--proto", "icmp"}

	t.Run("ping", func(t *testing.T) {
		a, b := traceBothNodes(t, icmp, node1, node2, func() {
			if n, err := o.Pod1.Ping(o.Pod2IP.String(), 0x4311, 3, 100*time.Millisecond, 500*time.Millisecond); err != nil || n != 3 {
				t.Fatalf("ping across the overlay: %d of 3 replies, %v", n, err)
			}
		})
		record(t, "ping", a, b)
		merged, out := mergeTraces(t, a, b)
		requireCrossing(t, merged, "node1", "node2")
		for _, p := range testutil.ICMPOfType(merged.Packets, 8) {
			if f := p.Fate; f.Outcome != trace.Delivered || f.Node != "node2" || f.NetnsName != o.Pod2.Name() {
				t.Errorf("request #%d fate %+v, want delivered on node2 in %s", p.ID, f, o.Pod2.Name())
			}
		}
		for _, p := range testutil.ICMPOfType(merged.Packets, 0) {
			if f := p.Fate; f.Outcome != trace.Delivered || f.Node != "node1" || f.NetnsName != o.Pod1.Name() {
				t.Errorf("reply #%d fate %+v, want delivered on node1 in %s", p.ID, f, o.Pod1.Name())
			}
		}
		// Both runs read one kernel's clock: from packets going both ways, the estimate must find
		// no skew beyond its own error bound (the latency), give or take the 100µs the two runs'
		// readings of the wall clock may differ by.
		n2 := merged.Meta.Nodes[1]
		if n2.SkewBasis != "both directions" || abs64(n2.SkewNS) > n2.SkewErrorNS+int64(100*time.Microsecond) || n2.SkewErrorNS > int64(50*time.Millisecond) {
			t.Errorf("node2's clock estimated %+v, want 0 within its error bound, from both directions", n2)
		}
		requireLine(t, out, "merged 2 traces: ", " joined across nodes", "node2's clock", "vs node1 (both directions)")
		requireLine(t, out, "=> delivered on node node2 in "+o.Pod2.Name())
		requireLine(t, out, "node2", o.Node2.Name(), o.VXLANDev, "received")
		if merged.Verdict.Outcome != "delivered" {
			t.Errorf("merged verdict %+v, want delivered", merged.Verdict)
		}

		// The same pair with node2's clock 2.5 s ahead: the skew is found and corrected.
		shifted := shiftClock(t, b, skewShift)
		skewed, _ := mergeTraces(t, a, shifted)
		if got := time.Duration(skewed.Meta.Nodes[1].SkewNS - n2.SkewNS); got != skewShift {
			t.Errorf("node2's clock estimated %s further ahead once shifted, want %s", got, skewShift)
		}
		requireCrossing(t, skewed, "node1", "node2")
		if *recordMerge {
			copyFile(t, shifted, filepath.Join(mergeTestdata, "skewed", "node2.json"))
		}
	})

	t.Run("tcp", func(t *testing.T) {
		ln, err := o.Pod2.ListenTCP(o.Pod2IP.String() + ":8080")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		tcp := []string{"--src", o.Pod1IP.String(), "--dst", o.Pod2IP.String(), "--proto", "tcp", "--dport", "8080"}
		a, b := traceBothNodes(t, tcp, node1, node2, func() {
			c, err := o.Pod1.DialTCP(o.Pod2IP.String()+":8080", 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write([]byte("across two nodes")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 16)); err != nil {
				t.Fatalf("echo: %v", err)
			}
			c.Close()
			time.Sleep(200 * time.Millisecond)
		})
		record(t, "tcp", a, b)
		merged, _ := mergeTraces(t, a, b)
		requireCrossing(t, merged, "node1", "node2")
		var syn, synAck bool
		for _, p := range merged.Packets {
			nodes := nodesCrossed(p)
			switch p.Tuple.TCPFlags.String() {
			case "SYN":
				syn = syn || strings.Join(nodes, ",") == "node1,node2"
			case "SYN,ACK":
				synAck = synAck || strings.Join(nodes, ",") == "node2,node1"
			}
		}
		if !syn || !synAck {
			t.Errorf("SYN node1 -> node2: %v, SYN-ACK node2 -> node1: %v", syn, synAck)
		}
	})

	t.Run("dropped-on-node2", func(t *testing.T) {
		if err := o.Node2.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
			t.Fatal(err)
		}
		defer o.Node2.Sysctl("net.ipv4.ip_forward", "1")
		a, b := traceBothNodes(t, icmp, node1, node2, func() {
			if n, err := o.Pod1.Ping(o.Pod2IP.String(), 0x4312, 3, 100*time.Millisecond, 300*time.Millisecond); err != nil || n != 0 {
				t.Fatalf("ping with node2 not forwarding: %d replies, %v", n, err)
			}
		})
		record(t, "dropped", a, b)
		alone, err := jsontrace.ReadFile(a)
		if err != nil {
			t.Fatal(err)
		}
		if alone.Verdict.Outcome != "left-host" {
			t.Errorf("node1's own verdict %q, want left-host (the drop is on node2)", alone.Verdict.Outcome)
		}
		merged, out := mergeTraces(t, a, b)
		requireCrossing(t, merged, "node1", "node2")
		reqs := testutil.ICMPOfType(merged.Packets, 8)
		if len(reqs) != 3 {
			t.Fatalf("%d echo requests merged, want 3", len(reqs))
		}
		for _, p := range reqs {
			if f := p.Fate; f.Outcome != trace.Dropped || f.Node != "node2" || f.NetnsName != o.Node2.Name() || !reasonIs(f.Reason, "IP_INADDRERRORS") {
				t.Errorf("request #%d fate %+v, want dropped on node2 in %s (IP_INADDRERRORS)", p.ID, f, o.Node2.Name())
			}
		}
		v := merged.Verdict
		if v.Outcome != "dropped" || !strings.HasPrefix(v.Summary, "on node node2: ") {
			t.Errorf("merged verdict %+v, want dropped on node2", v)
		}
		// node2's evidence, read live on node2 while tracing, is kept.
		var sysctl bool
		for _, e := range v.Evidence {
			sysctl = sysctl || (e.What == "net.ipv4.ip_forward" && e.Value == "0")
		}
		if !sysctl {
			t.Errorf("merged verdict lost node2's evidence: %+v", v.Evidence)
		}
		requireLine(t, out, "=> DROPPED on node node2 in "+o.Node2.Name())
	})
}

// traceBothNodes runs two pathtraces at once with the same filter, one per node's namespaces,
// around traffic, and returns their trace files.
func traceBothNodes(t *testing.T, filter, nodeA, nodeB []string, traffic func()) (string, string) {
	t.Helper()
	sa := start(t, append(slices.Clone(filter), "--netns-scope", strings.Join(nodeA, ","))...)
	sb := start(t, append(slices.Clone(filter), "--netns-scope", strings.Join(nodeB, ","))...)
	traffic()
	time.Sleep(300 * time.Millisecond)
	sb.cmd.Process.Signal(syscall.SIGINT)
	ta := sa.stop(syscall.SIGINT)
	tb := sb.stop(0)
	// Each run saw only its own node.
	for _, c := range []struct {
		tr    *trace.Trace
		scope []string
	}{{ta, nodeA}, {tb, nodeB}} {
		for _, p := range c.tr.Packets {
			for _, h := range p.Hops {
				if !contains(c.scope, h.NetnsName) {
					t.Fatalf("a run scoped to %v saw a hop in %s", c.scope, h.NetnsName)
				}
			}
		}
	}
	return sa.json, sb.json
}

// mergeTraces runs `pathtrace merge` on the two files as node1 and node2 and checks that the
// merged JSON re-renders, with `show`, as merge printed it.
func mergeTraces(t *testing.T, a, b string) (*trace.Trace, string) {
	t.Helper()
	dir := t.TempDir()
	n1, n2, out := filepath.Join(dir, "node1.json"), filepath.Join(dir, "node2.json"), filepath.Join(dir, "merged.json")
	copyFile(t, a, n1)
	copyFile(t, b, n2)
	text, err := combinedOutput(t, exec.Command(binary, "merge", n1, n2, "--json", out, "--color", "never"))
	if err != nil {
		t.Fatalf("pathtrace merge: %v\n%s", err, text)
	}
	t.Logf("pathtrace merge:\n%s", text)
	shown, err := combinedOutput(t, exec.Command(binary, "show", "--color", "never", out))
	if err != nil {
		t.Fatalf("pathtrace show: %v\n%s", err, shown)
	}
	journey, report, _ := strings.Cut(string(text), "\nmerged ")
	if string(shown) != journey || report == "" {
		t.Errorf("show of the merged trace differs from what merge printed:\n%s", shown)
	}
	tr, err := jsontrace.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return tr, string(text)
}

// requireCrossing checks that every packet seen on both nodes is told in causal order: its hops
// on the node it left first, then the other's, never interleaved.
func requireCrossing(t *testing.T, tr *trace.Trace, first, second string) {
	t.Helper()
	joined := 0
	for _, p := range tr.Packets {
		nodes := nodesCrossed(p)
		switch len(nodes) {
		case 1:
		case 2:
			joined++
			want := first + "," + second
			if p.Flow == trace.Reply {
				want = second + "," + first
			}
			if strings.Join(nodes, ",") != want {
				t.Errorf("%s #%d crosses %v, want %s", p.Flow, p.ID, nodes, want)
			}
		default:
			t.Errorf("%s #%d goes back and forth between the nodes: %v", p.Flow, p.ID, nodes)
		}
	}
	if joined == 0 {
		t.Errorf("no packet joined across the nodes")
	}
}

// nodesCrossed lists the nodes of a packet's hops, in time order, without repeats. Route hops
// are left out: a node's assembly attaches a lookup to a packet by CPU and time, and one made
// just after the packet left (for the next one) may be attached to it.
func nodesCrossed(p trace.Packet) []string {
	hops := slices.Clone(p.Hops)
	slices.SortStableFunc(hops, func(a, b trace.Hop) int { return cmp.Compare(a.TimeNS, b.TimeNS) })
	var out []string
	for _, h := range hops {
		if h.Event == trace.KindRoute {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != h.Node {
			out = append(out, h.Node)
		}
	}
	return out
}

// shiftClock writes a copy of the trace whose node believes it started d later.
func shiftClock(t *testing.T, path string, d time.Duration) string {
	t.Helper()
	tr, err := jsontrace.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tr.Meta.StartedAt = tr.Meta.StartedAt.Add(d)
	tr.Meta.EndedAt = tr.Meta.EndedAt.Add(d)
	out := filepath.Join(t.TempDir(), "shifted.json")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := jsontrace.Write(f, tr); err != nil {
		t.Fatal(err)
	}
	return out
}

// record keeps the pair as testdata/merge/<name>/node{1,2}.json when the test runs with -record.
func record(t *testing.T, name, a, b string) {
	t.Helper()
	if !*recordMerge {
		return
	}
	copyFile(t, a, filepath.Join(mergeTestdata, name, "node1.json"))
	copyFile(t, b, filepath.Join(mergeTestdata, name, "node2.json"))
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// A trace read back must be one: a half-written file would be recorded as a fixture.
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", from, err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

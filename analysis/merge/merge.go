// Package merge joins the traces of one flow taken on several nodes into one journey: a packet
// seen leaving one node and arriving on the next becomes one packet whose hops say which node
// saw them, on one timeline corrected for the nodes' clock skew. It reads saved traces only and
// needs no kernel.
package merge

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pathtrace/pathtrace/trace"
)

// MaxSkew is how far apart two nodes' clocks may be for their packets to be matched: NTP keeps
// nodes within milliseconds, a node without it drifts seconds, not hours.
const MaxSkew = 5 * time.Minute

// window is how far from the estimated skew a packet's arrival may be once the clocks are
// placed: latency and queueing, not clock error.
const window = time.Second

// Input is one node's trace and where it was read from.
type Input struct {
	// Source names the trace in messages (its file name) and names the node when the traces'
	// hostnames are missing or the same.
	Source string
	Trace  *trace.Trace
}

// Report says how the merge went: the nodes with their clocks, and how many packets were
// joined.
type Report struct {
	Nodes []trace.Node
	// Joined counts merged packets seen on more than one node; Alone packets seen on one only.
	Joined, Alone int
	// Reordered counts joined packets whose hops on a later node the estimated clocks put before
	// the packet left the earlier node: they were shifted to keep cause before effect.
	Reordered int
}

// String is the one line the merge command prints under the journey.
func (r Report) String() string {
	if len(r.Nodes) == 0 {
		return "nothing merged"
	}
	s := fmt.Sprintf("merged %d traces: %s joined across nodes, %d seen on one node only",
		len(r.Nodes), plural(r.Joined, "packet", "packets"), r.Alone)
	for _, n := range r.Nodes[1:] {
		if n.SkewBasis == basisNone {
			s += fmt.Sprintf("; %s's clock: unknown (no packet joined)", n.Name)
			continue
		}
		s += fmt.Sprintf("; %s's clock %s", n.Name, signed(n.SkewNS))
		if n.SkewErrorNS > 0 {
			s += " ±" + signed(n.SkewErrorNS)[1:]
		}
		s += fmt.Sprintf(" vs %s (%s)", r.Nodes[0].Name, n.SkewBasis)
	}
	if r.Reordered > 0 {
		s += fmt.Sprintf("; %s put in causal order", plural(r.Reordered, "packet", "packets"))
	}
	return s
}

func signed(ns int64) string {
	sign := "+"
	if ns < 0 {
		sign, ns = "-", -ns
	}
	if ns >= int64(time.Second) {
		return fmt.Sprintf("%s%.3fs", sign, float64(ns)/1e9)
	}
	return fmt.Sprintf("%s%.3fms", sign, float64(ns)/1e6)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// node is one input with its packets prepared for matching.
type node struct {
	name    string
	in      Input
	packets []packet
	offset  int64 // its clock minus the first node's, in ns
}

// packet is one node's packet with what matching needs.
type packet struct {
	p               *trace.Packet
	exact, tolerant []identity
	// first is its first hop's wall-clock time, send its last transmit (the moment it left),
	// both in ns since the epoch by its node's clock.
	first, send int64
	leftHost    bool
	group       int // index into the merger's groups
}

func prepare(name string, in Input) node {
	n := node{name: name, in: in}
	start := in.Trace.Meta.StartedAt.UnixNano()
	for i := range in.Trace.Packets {
		p := &in.Trace.Packets[i]
		pk := packet{p: p, leftHost: p.Fate.Outcome == trace.LeftHost, first: -1, send: -1, group: -1}
		pk.exact, pk.tolerant = identities(p)
		var last int64 = -1
		for _, h := range p.Hops {
			t := start + int64(h.TimeNS)
			if pk.first < 0 || t < pk.first {
				pk.first = t
			}
			last = max(last, t)
			if (h.Event == trace.KindXmit || h.Event == trace.KindQueue) && !h.Copy {
				pk.send = max(pk.send, t)
			}
		}
		if pk.first < 0 {
			pk.first, last = start, start // no hops to place it by: kept, at the node's start
		}
		if pk.send < 0 {
			pk.send = last
		}
		n.packets = append(n.packets, pk)
	}
	return n
}

// Merge joins the traces of one flow, one per node, into one trace. The first input's clock is
// the reference. Its errors are one line and name the inputs.
func Merge(inputs ...Input) (*trace.Trace, Report, error) {
	if err := check(inputs); err != nil {
		return nil, Report{}, err
	}
	names := nodeNames(inputs)
	nodes := make([]node, len(inputs))
	for i, in := range inputs {
		nodes[i] = prepare(names[i], in)
	}
	m := &merger{nodes: nodes}
	m.match()
	for i := range nodes {
		if m.infos[i].Matched == 0 {
			others := make([]string, 0, len(inputs)-1)
			for j, in := range inputs {
				if j != i {
					others = append(others, in.Source)
				}
			}
			return nil, Report{}, fmt.Errorf("no packet of %s (%d traced) matches one in %s: merge needs traces of the same packets, taken at the same time on the nodes they crossed",
				inputs[i].Source, len(inputs[i].Trace.Packets), strings.Join(others, ", "))
		}
	}
	t, r := m.build(inputs)
	return t, r, nil
}

func check(inputs []Input) error {
	if len(inputs) < 2 {
		return fmt.Errorf("merge needs the traces of at least two nodes, got %d", len(inputs))
	}
	seen := map[string]bool{}
	for i, in := range inputs {
		if in.Trace == nil {
			return fmt.Errorf("merge: input %d (%s) has no trace", i+1, in.Source)
		}
		if src := filepath.Clean(in.Source); in.Source != "" && seen[src] {
			return fmt.Errorf("%s is given twice: merge needs one trace per node", in.Source)
		} else if in.Source != "" {
			seen[src] = true
		}
		if in.Trace.Meta.StartedAt.IsZero() {
			return fmt.Errorf("%s has no start time (meta.started_at): its hops cannot be placed on a clock", in.Source)
		}
		if f0, f := inputs[0].Trace.Filter, in.Trace.Filter; f != f0 {
			return fmt.Errorf("%s traces %s, %s traces %s: not the same flow", inputs[0].Source, f0, in.Source, f)
		}
	}
	return nil
}

// nodeNames are the traces' hostnames, or, for traces whose hostname is missing or shared with
// another (a lab on one machine), the file's name without ".json"; failing that the whole path.
func nodeNames(inputs []Input) []string {
	count := func(names []string, s string) int {
		n := 0
		for _, x := range names {
			if x == s {
				n++
			}
		}
		return n
	}
	hosts := make([]string, len(inputs))
	for i, in := range inputs {
		hosts[i] = in.Trace.Meta.Hostname
	}
	// Each pass renames, from the names of the pass before, those still missing or shared.
	rename := func(names []string, better func(i int) string) []string {
		out := slices.Clone(names)
		for i := range names {
			if names[i] == "" || names[i] == "." || count(names, names[i]) > 1 {
				out[i] = better(i)
			}
		}
		return out
	}
	names := rename(hosts, func(i int) string { return strings.TrimSuffix(filepath.Base(inputs[i].Source), ".json") })
	names = rename(names, func(i int) string { return strings.TrimSuffix(inputs[i].Source, ".json") })
	names = rename(names, func(i int) string { return fmt.Sprintf("node%d", i+1) })
	return names
}

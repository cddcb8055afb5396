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

	"github.com/pathtrace/pathtrace/analysis/assemble"
	"github.com/pathtrace/pathtrace/analysis/diagnose"
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

// merger holds the state of one merge.
type merger struct {
	nodes  []node
	groups [][]ref // packets joined into one journey, one per node at most
	infos  []trace.Node
	pairs  map[[2]int]estimate
}

type ref struct{ node, packet int }

func (m *merger) at(r ref) *packet { return &m.nodes[r.node].packets[r.packet] }

// match joins the nodes' packets pairwise, first where the identity is unambiguous, then,
// with the clocks those matches give, the rest by time; and places every clock.
func (m *merger) match() {
	n := len(m.nodes)
	ix := make([]index, n)
	for i := range m.nodes {
		ix[i] = newIndex(&m.nodes[i])
	}
	matches := map[[2]int][][2]int{}
	estimates := map[[2]int]estimate{}
	for a := 0; a < n; a++ {
		for b := a + 1; b < n; b++ {
			k := [2]int{a, b}
			matches[k] = m.matchPair(a, b, ix, nil, nil)
			if e, ok := m.delays(a, b, matches[k]).estimateOffset(); ok {
				estimates[k] = e
			}
		}
	}
	for k, e := range estimates {
		matches[k] = m.matchPair(k[0], k[1], ix, &e, matches[k])
	}
	m.pairs = map[[2]int]estimate{}
	for k, ms := range matches {
		if e, ok := m.delays(k[0], k[1], ms).estimateOffset(); ok {
			m.pairs[k] = e
		}
	}
	m.infos = clocks(n, m.pairs)
	for i := range m.nodes {
		m.nodes[i].offset = m.infos[i].SkewNS
	}
	m.join(matches)
}

func (m *merger) delays(a, b int, ms [][2]int) *delays {
	d := &delays{}
	for _, x := range ms {
		d.observe(&m.nodes[a].packets[x[0]], &m.nodes[b].packets[x[1]])
	}
	return d
}

// matchPair matches node a's packets with node b's. Without an estimate only identities that
// are unique on both sides count; with one, the remaining packets go to the candidate whose
// time, corrected by the estimate, is nearest.
func (m *merger) matchPair(a, b int, ix []index, est *estimate, have [][2]int) [][2]int {
	na, nb := &m.nodes[a], &m.nodes[b]
	usedA, usedB := map[int]bool{}, map[int]bool{}
	for _, x := range have {
		usedA[x[0]], usedB[x[1]] = true, true
	}
	out := slices.Clone(have)
	for i := range na.packets {
		if usedA[i] {
			continue
		}
		pa := &na.packets[i]
		cands := preferSameKind(pa, nb, ix[b].candidates(pa))
		best, bestGap := -1, int64(0)
		for _, j := range cands {
			pb := &nb.packets[j]
			gap := pb.first - pa.first
			if est != nil {
				gap -= est.offset
			}
			gap = abs(gap)
			limit := int64(MaxSkew)
			if est != nil {
				limit = int64(window) + est.err
			}
			if usedB[j] || gap > limit {
				continue
			}
			if est == nil {
				// Unambiguous only: the packet must be the one candidate, and have only this
				// packet as its own candidate.
				if len(cands) != 1 || len(preferSameKind(pb, na, ix[a].candidates(pb))) != 1 {
					continue
				}
			}
			if best < 0 || gap < bestGap {
				best, bestGap = j, gap
			}
		}
		if best >= 0 {
			usedA[i], usedB[best] = true, true
			out = append(out, [2]int{i, best})
		}
	}
	return out
}

// preferSameKind keeps, of the candidates, those that are a copy (a bridge flooding it) when p
// is one and originals when it is not, if there are any.
func preferSameKind(p *packet, other *node, cands []int) []int {
	var same []int
	for _, j := range cands {
		if (other.packets[j].p.CopyOf != 0) == (p.p.CopyOf != 0) {
			same = append(same, j)
		}
	}
	if len(same) > 0 {
		return same
	}
	return cands
}

// join groups matched packets into journeys: a packet matched on node b to one on a and on c
// to one on b crossed all three. A group holds one packet per node; a match that would put two
// of one node's packets together is left out.
func (m *merger) join(matches map[[2]int][][2]int) {
	keys := make([][2]int, 0, len(matches))
	for k := range matches {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y [2]int) int {
		if x[0] != y[0] {
			return x[0] - y[0]
		}
		return x[1] - y[1]
	})
	for _, k := range keys {
		for _, x := range matches[k] {
			ra, rb := ref{k[0], x[0]}, ref{k[1], x[1]}
			ga, gb := m.at(ra).group, m.at(rb).group
			switch {
			case ga < 0 && gb < 0:
				m.groups = append(m.groups, []ref{ra, rb})
				m.at(ra).group, m.at(rb).group = len(m.groups)-1, len(m.groups)-1
			case ga < 0:
				if m.hasNode(gb, ra.node) {
					continue
				}
				m.groups[gb] = append(m.groups[gb], ra)
				m.at(ra).group = gb
			case gb < 0:
				if m.hasNode(ga, rb.node) {
					continue
				}
				m.groups[ga] = append(m.groups[ga], rb)
				m.at(rb).group = ga
			case ga != gb:
				conflict := false
				for _, r := range m.groups[gb] {
					conflict = conflict || m.hasNode(ga, r.node)
				}
				if conflict {
					continue
				}
				for _, r := range m.groups[gb] {
					m.at(r).group = ga
				}
				m.groups[ga] = append(m.groups[ga], m.groups[gb]...)
				m.groups[gb] = nil
			}
		}
	}
	for _, g := range m.groups {
		for _, r := range g {
			m.infos[r.node].Matched++
		}
	}
}

func (m *merger) hasNode(g, node int) bool {
	for _, r := range m.groups[g] {
		if r.node == node {
			return true
		}
	}
	return false
}

// build makes the merged trace: every journey and every packet seen on one node only, on the
// first node's clock, counted and diagnosed again.
func (m *merger) build(inputs []Input) (*trace.Trace, Report) {
	// The merged timeline starts at the earliest start, on the reference clock.
	var start int64
	for i, n := range m.nodes {
		s := n.in.Trace.Meta.StartedAt.UnixNano() - n.offset
		if i == 0 || s < start {
			start = s
		}
	}
	var journeys [][]ref
	for _, g := range m.groups {
		if len(g) > 0 {
			journeys = append(journeys, g)
		}
	}
	report := Report{Joined: len(journeys)}
	for i := range m.nodes {
		for j := range m.nodes[i].packets {
			if m.nodes[i].packets[j].group < 0 {
				journeys = append(journeys, []ref{{i, j}})
				report.Alone++
			}
		}
	}

	type built struct {
		pk    trace.Packet
		first uint64
		refs  []ref
	}
	out := make([]built, 0, len(journeys))
	for _, j := range journeys {
		pk, reordered := m.journey(j, start)
		if reordered {
			report.Reordered++
		}
		out = append(out, built{pk: pk, first: firstTime(pk), refs: m.causal(j)})
	}
	slices.SortStableFunc(out, func(x, y built) int {
		switch {
		case x.first != y.first:
			if x.first < y.first {
				return -1
			}
			return 1
		case x.refs[0].node != y.refs[0].node:
			return x.refs[0].node - y.refs[0].node
		}
		return x.pk.ID - y.pk.ID
	})
	// Packets are numbered again; a copy or a retransmission names its original by the new number.
	newID := map[ref]int{}
	for i, b := range out {
		for _, r := range b.refs {
			newID[r] = i + 1
		}
	}
	byOldID := func(node, id int) int {
		for j, p := range m.nodes[node].packets {
			if p.p.ID == id {
				return newID[ref{node, j}]
			}
		}
		return 0
	}
	packets := make([]trace.Packet, len(out))
	for i, b := range out {
		p := b.pk
		p.ID = i + 1
		p.CopyOf, p.RetransmitOf = 0, 0
		for _, r := range b.refs {
			src := m.at(r).p
			if src.CopyOf != 0 && p.CopyOf == 0 {
				p.CopyOf = byOldID(r.node, src.CopyOf)
			}
			if src.RetransmitOf != 0 && p.RetransmitOf == 0 {
				p.RetransmitOf = byOldID(r.node, src.RetransmitOf)
			}
		}
		packets[i] = p
	}

	t := &trace.Trace{
		Schema:  trace.Schema,
		Filter:  inputs[0].Trace.Filter,
		Meta:    m.meta(start),
		Packets: packets,
	}
	t.Flows = assemble.Summarize(t.Filter, t.Packets)
	t.Verdict = m.verdict(t)
	report.Nodes = t.Meta.Nodes
	return t, report
}

func firstTime(p trace.Packet) uint64 {
	var first uint64
	for i, h := range p.Hops {
		if i == 0 || h.TimeNS < first {
			first = h.TimeNS
		}
	}
	return first
}

// causal orders a journey's packets as the packet travelled: a node it left comes before one
// it did not leave, whatever the clocks say; among the rest, the corrected time decides.
func (m *merger) causal(j []ref) []ref {
	j = slices.Clone(j)
	slices.SortStableFunc(j, func(x, y ref) int {
		px, py := m.at(x), m.at(y)
		if px.leftHost != py.leftHost {
			if px.leftHost {
				return -1
			}
			return 1
		}
		tx, ty := px.first-m.nodes[x.node].offset, py.first-m.nodes[y.node].offset
		switch {
		case tx < ty:
			return -1
		case tx > ty:
			return 1
		}
		return x.node - y.node
	})
	return j
}

// journey makes one merged packet of a journey's packets, start being the merged timeline's
// zero. reordered says a later node's hops had to be moved after the packet left the node
// before, where the estimated clocks put them earlier.
func (m *merger) journey(j []ref, start int64) (trace.Packet, bool) {
	j = m.causal(j)
	first := m.at(j[0]).p
	out := trace.Packet{Flow: first.Flow, Tuple: first.Tuple, ID: first.ID}
	reordered := false
	var sentAt int64 = -1 // when the packet left the previous node, on the merged timeline
	for _, r := range j {
		n := &m.nodes[r.node]
		pk := m.at(r)
		onTimeline := func(wall int64) int64 { return wall - n.offset - start }
		shift := int64(0)
		if sentAt >= 0 && onTimeline(pk.first) < sentAt {
			shift, reordered = sentAt-onTimeline(pk.first), true
		}
		nodeStart := n.in.Trace.Meta.StartedAt.UnixNano()
		for _, h := range pk.p.Hops {
			h.Node = n.name
			h.TimeNS = uint64(onTimeline(nodeStart+int64(h.TimeNS)) + shift)
			out.Hops = append(out.Hops, h)
		}
		sentAt = onTimeline(pk.send) + shift
		out.Fate = pk.p.Fate
		out.Fate.Node = n.name
		out.Incomplete = out.Incomplete || pk.p.Incomplete
	}
	return out, reordered
}

// meta describes the merged trace: the nodes, what each kernel could show, and the counts
// that say how complete it is.
func (m *merger) meta(start int64) trace.Meta {
	meta := trace.Meta{StartedAt: time.Unix(0, start).UTC()}
	var backends []string
	var degradedOrder []string
	degraded := map[string][]string{}
	var probeOrder []string
	probes := map[string]*probeOn{}
	for i, n := range m.nodes {
		tm := n.in.Trace.Meta
		info := m.infos[i]
		info.Name, info.Hostname, info.Kernel, info.StartedAt, info.Source = n.name, tm.Hostname, tm.Kernel, tm.StartedAt, n.in.Source
		info.Packets = len(n.in.Trace.Packets)
		meta.Nodes = append(meta.Nodes, info)
		if end := tm.EndedAt; !end.IsZero() {
			if e := time.Unix(0, end.UnixNano()-n.offset).UTC(); e.After(meta.EndedAt) {
				meta.EndedAt = e
			}
		}
		if tm.Backend != "" && !slices.Contains(backends, tm.Backend) {
			backends = append(backends, tm.Backend)
		}
		for _, d := range tm.Degraded {
			if _, ok := degraded[d]; !ok {
				degradedOrder = append(degradedOrder, d)
			}
			degraded[d] = append(degraded[d], n.name)
		}
		for _, p := range tm.Probes {
			st, ok := probes[p.Name]
			if !ok {
				st = &probeOn{probe: p}
				probes[p.Name] = st
				probeOrder = append(probeOrder, p.Name)
			}
			if p.Attached {
				st.on++
			} else {
				st.errs = append(st.errs, strings.TrimSuffix("on "+n.name+": "+p.Error, ": "))
			}
		}
		meta.LostEvents += tm.LostEvents
		meta.Untracked += tm.Untracked
		meta.Skipped += tm.Skipped
		meta.RoutesSkipped += tm.RoutesSkipped
		meta.OverBudget += tm.OverBudget
		// Budgets may differ between nodes: the highest says how many a second a node traced.
		meta.MaxRate = max(meta.MaxRate, tm.MaxRate)
		meta.NotKept += tm.NotKept
	}
	// A probe is attached when it was on every node; otherwise the header says where it failed.
	for _, name := range probeOrder {
		st := probes[name]
		p := st.probe
		p.Attached, p.Error = st.on == len(m.nodes), ""
		if !p.Attached {
			if missing := len(m.nodes) - st.on - len(st.errs); missing > 0 {
				st.errs = append(st.errs, fmt.Sprintf("not tried on %d of the nodes", missing))
			}
			p.Error = strings.Join(st.errs, "; ")
		}
		meta.Probes = append(meta.Probes, p)
	}
	meta.Backend = strings.Join(backends, ", ")
	for _, d := range degradedOrder {
		if len(degraded[d]) == len(m.nodes) {
			meta.Degraded = append(meta.Degraded, d)
		} else {
			meta.Degraded = append(meta.Degraded, "on "+strings.Join(degraded[d], ", ")+": "+d)
		}
	}
	return meta
}

type probeOn struct {
	probe trace.Probe
	on    int
	errs  []string
}

// verdict diagnoses the merged journey again. Where the drop it is about happened on one node
// and that node's own verdict was about the same drop, that verdict is kept: it was made while
// tracing, with the node's state read there (sysctls, rules, tc programs) that no file holds.
func (m *merger) verdict(t *trace.Trace) trace.Verdict {
	d := diagnose.New(nil)
	for _, p := range t.Packets {
		d.Observe(p)
	}
	v := d.Verdict(t)
	// The diagnosis speaks of one host; this journey crossed several.
	v.Summary = strings.ReplaceAll(v.Summary, "on this host", "on any of these nodes")
	site, ok := d.Site()
	if !ok {
		return v
	}
	for _, n := range m.nodes {
		if n.name != site.Node {
			continue
		}
		own := diagnose.New(nil)
		for _, p := range n.in.Trace.Packets {
			own.Observe(p)
		}
		ownSite, ok := own.Site()
		nv := n.in.Trace.Verdict
		ownSite.Node, ownSite.Count = site.Node, site.Count
		if !ok || ownSite != site || nv.Outcome != "dropped" {
			return v
		}
		nv.Summary = "on node " + n.name + ": " + nv.Summary
		return nv
	}
	return v
}

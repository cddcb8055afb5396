package merge

// Matching: which packets seen on different nodes are one packet, and the clocks that follow.

import (
	"slices"

	"github.com/pathtrace/pathtrace/trace"
)

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

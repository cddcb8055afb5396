package merge

import (
	"slices"

	"github.com/pathtrace/pathtrace/trace"
)

// How much an estimate of one node's clock against another's is worth, best first.
const (
	basisBoth      = "both directions" // the midpoint of the two one-way delays: latency cancels
	basisOne       = "one direction"   // only an upper bound: the packets could not have arrived earlier
	basisUnordered = "unordered"       // matched packets whose direction neither node's fate gives away
	basisReference = "reference"
	basisNone      = "none"
)

func basisRank(b string) int {
	switch b {
	case basisBoth:
		return 0
	case basisOne:
		return 1
	}
	return 2
}

// delays are, for the packets matched between two nodes a and b, the wall-clock delay from a
// packet leaving one node to its first hop on the other, as each node's clock read it: forward
// for a to b (latency + b's offset), backward for b to a (latency - b's offset); unordered the
// first-hop difference of packets whose direction is not known.
type delays struct {
	forward, backward, unordered []int64
}

// observe adds one matched pair: pa on node a, pb on node b.
func (d *delays) observe(pa, pb *packet) {
	switch {
	case pa.leftHost && !pb.leftHost:
		d.forward = append(d.forward, pb.first-pa.send)
	case pb.leftHost && !pa.leftHost:
		d.backward = append(d.backward, pa.first-pb.send)
	default:
		d.unordered = append(d.unordered, pb.first-pa.first)
	}
}

// estimate is how far b's clock is ahead of a's.
type estimate struct {
	offset, err int64
	basis       string
	samples     int
}

// estimateOffset estimates b's clock against a's. With packets both ways the one-way delays are
// latency+offset and latency-offset: half their difference is the offset, half their sum the
// latency, which bounds the error (medians, so a few queued packets do not move it). One way
// only, the smallest delay bounds the offset from above (nothing arrives before it is sent);
// taking it assumes no latency, and the merged hops are kept in causal order whatever it is.
func (d *delays) estimateOffset() (estimate, bool) {
	switch {
	case len(d.forward) > 0 && len(d.backward) > 0:
		f, b := median(d.forward), median(d.backward)
		return estimate{offset: (f - b) / 2, err: abs((f + b) / 2), basis: basisBoth, samples: len(d.forward) + len(d.backward)}, true
	case len(d.forward) > 0:
		return estimate{offset: slices.Min(d.forward), basis: basisOne, samples: len(d.forward)}, true
	case len(d.backward) > 0:
		return estimate{offset: -slices.Min(d.backward), basis: basisOne, samples: len(d.backward)}, true
	case len(d.unordered) > 0:
		return estimate{offset: median(d.unordered), basis: basisUnordered, samples: len(d.unordered)}, true
	}
	return estimate{}, false
}

func median(v []int64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return s[len(s)/2-1] + (s[len(s)/2]-s[len(s)/2-1])/2
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// clocks places every node's clock against the first node's from the pairwise estimates, the
// best-founded estimate first; a node no estimate reaches keeps offset 0 with basis "none".
func clocks(n int, pairs map[[2]int]estimate) []trace.Node {
	out := make([]trace.Node, n)
	known := make([]bool, n)
	known[0] = true
	out[0].SkewBasis = basisReference
	for i := 1; i < n; i++ {
		out[i].SkewBasis = basisNone
	}
	for {
		var best *[2]int
		var bestEst estimate
		for k, e := range pairs {
			if known[k[0]] == known[k[1]] {
				continue
			}
			if best == nil || basisRank(e.basis) < basisRank(bestEst.basis) ||
				(basisRank(e.basis) == basisRank(bestEst.basis) && (e.samples > bestEst.samples ||
					(e.samples == bestEst.samples && (k[0] < best[0] || (k[0] == best[0] && k[1] < best[1]))))) {
				k := k
				best, bestEst = &k, e
			}
		}
		if best == nil {
			return out
		}
		a, b := best[0], best[1]
		from, to, sign := a, b, int64(1)
		if known[b] {
			from, to, sign = b, a, -1
		}
		out[to].SkewNS = out[from].SkewNS + sign*bestEst.offset
		out[to].SkewErrorNS = out[from].SkewErrorNS + bestEst.err
		out[to].SkewBasis = bestEst.basis
		if basisRank(out[from].SkewBasis) > basisRank(bestEst.basis) && out[from].SkewBasis != basisReference {
			out[to].SkewBasis = out[from].SkewBasis // no better than the estimate it rests on
		}
		known[to] = true
	}
}

package trace

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// SortHops is a stable sort by time, short runs of hops sorted in place as long ones are.
func TestSortHopsIsStable(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for n := range 70 {
		for range 50 {
			hops := make([]Hop, n)
			for i := range hops {
				hops[i] = Hop{TimeNS: uint64(r.IntN(8)), Len: uint32(i)} // Len: the arrival order
			}
			want := slices.Clone(hops)
			slices.SortStableFunc(want, func(x, y Hop) int { return cmp.Compare(x.TimeNS, y.TimeNS) })
			SortHops(hops)
			if !slices.EqualFunc(hops, want, func(x, y Hop) bool { return x.TimeNS == y.TimeNS && x.Len == y.Len }) {
				t.Fatalf("%d hops: sorted to %v, want %v", n, hops, want)
			}
		}
	}
}

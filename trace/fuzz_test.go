package trace

import (
	"net/netip"
	"testing"
)

// FuzzNewFilter feeds the command line's five filter flags through the parsers and NewFilter.
// None may panic; a filter NewFilter accepts prints as something, and it matches a packet of
// the flow it names in both directions: from its own addresses and ports as a request, and the
// other way round as a reply (or a request, when the filter reads the same both ways). Seeds
// are in testdata/fuzz/FuzzNewFilter.
func FuzzNewFilter(f *testing.F) {
	f.Fuzz(func(t *testing.T, src, dst, proto, sport, dport string) {
		s, errS := ParseAddr(src)
		d, errD := ParseAddr(dst)
		p, errP := ParseProto(proto)
		sp, errSP := ParsePort(sport)
		dp, errDP := ParsePort(dport)
		if errS != nil || errD != nil || errP != nil || errSP != nil || errDP != nil {
			return
		}
		flt, err := NewFilter(s, d, p, sp, dp)
		if err != nil {
			if flt != (Filter{}) {
				t.Fatalf("NewFilter returned %+v with its error %v", flt, err)
			}
			return
		}
		if flt.String() == "" {
			t.Fatalf("filter %+v prints as nothing", flt)
		}
		tup := impliedTuple(flt)
		dir, ok := flt.Direction(tup)
		if !ok || dir != Request {
			t.Fatalf("filter %q: its own flow %+v is (%q, %v), want a request", flt, tup, dir, ok)
		}
		if _, ok := flt.Direction(tup.Reverse()); !ok {
			t.Fatalf("filter %q does not match its own flow's reply %+v", flt, tup.Reverse())
		}
	})
}

// impliedTuple is a packet of the flow f names: its addresses (any address of the family of
// the other side when one is open), its protocol (TCP when only ports name it) and its ports.
func impliedTuple(f Filter) Tuple {
	addr := func(p, other netip.Prefix) netip.Addr {
		switch {
		case p.IsValid():
			return p.Addr()
		case other.IsValid() && other.Addr().Is6():
			return netip.MustParseAddr("2001:db8::99")
		}
		return netip.MustParseAddr("192.0.2.99")
	}
	t := Tuple{Proto: f.Proto, Src: addr(f.Src, f.Dst), Dst: addr(f.Dst, f.Src), Sport: f.Sport, Dport: f.Dport}
	if t.Proto == ProtoAny && (f.Sport != 0 || f.Dport != 0) {
		t.Proto = ProtoTCP
	}
	return t
}

package trace

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Filter is the flow the user asked for. It matches packets in both directions: a packet from
// Src to Dst is a request, one from Dst to Src a reply. Zero fields match anything.
type Filter struct {
	Src   netip.Prefix `json:"src,omitzero"`
	Dst   netip.Prefix `json:"dst,omitzero"`
	Proto Proto        `json:"proto"`
	Sport uint16       `json:"sport,omitempty"`
	Dport uint16       `json:"dport,omitempty"`
}

// ParseAddr parses an address or a CIDR into a prefix; "" is the zero prefix (any address).
func ParseAddr(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q: want an address/length such as 10.0.0.0/24", s)
		}
		// ::ffff:10.0.0.0/120 names IPv4 addresses: the kernel sees them as IPv4 packets.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q: want an IPv4 or IPv6 address or CIDR", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParsePort parses a port number; "" and "0" mean any port.
func ParsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > 65535 {
		return 0, fmt.Errorf("bad port %q: want a number from 1 to 65535 (0 or none: any port)", s)
	}
	return uint16(n), nil
}

// NewFilter checks that the parts of a filter fit together.
func NewFilter(src, dst netip.Prefix, proto Proto, sport, dport uint16) (Filter, error) {
	f := Filter{Src: src, Dst: dst, Proto: proto, Sport: sport, Dport: dport}
	if src.IsValid() && dst.IsValid() && src.Addr().Is4() != dst.Addr().Is4() {
		return Filter{}, fmt.Errorf("--src %s and --dst %s are of different address families", src, dst)
	}
	// "icmp" with IPv6 addresses can only mean ICMPv6: taken literally it would match nothing,
	// and the run would end with "no packet matched" for a flow that was there.
	if f.IsV6() && proto == ProtoICMP {
		f.Proto = ProtoICMPv6
	}
	if (sport != 0 || dport != 0) && !proto.HasPorts() {
		return Filter{}, fmt.Errorf("--sport/--dport need --proto tcp or udp, not %s", proto)
	}
	return f, nil
}

// IsV6 says whether the filter names IPv6 addresses.
func (f Filter) IsV6() bool {
	return (f.Src.IsValid() && f.Src.Addr().Is6()) || (f.Dst.IsValid() && f.Dst.Addr().Is6())
}

func prefixMatch(p netip.Prefix, a netip.Addr) bool {
	return !p.IsValid() || p.Contains(a.Unmap())
}

func (f Filter) matchOneWay(t Tuple) bool {
	if f.Proto != ProtoAny && t.Proto != f.Proto {
		return false
	}
	if !prefixMatch(f.Src, t.Src) || !prefixMatch(f.Dst, t.Dst) {
		return false
	}
	// A port names a TCP or UDP flow, even when the protocol was left open.
	if (f.Sport != 0 || f.Dport != 0) && t.Proto != ProtoTCP && t.Proto != ProtoUDP {
		return false
	}
	if t.Proto == ProtoTCP || t.Proto == ProtoUDP {
		if f.Sport != 0 && t.Sport != f.Sport {
			return false
		}
		if f.Dport != 0 && t.Dport != f.Dport {
			return false
		}
	}
	return true
}

// Direction says which way t travels relative to the filter, and whether it matches at all.
func (f Filter) Direction(t Tuple) (Direction, bool) {
	if f.matchOneWay(t) {
		return Request, true
	}
	if f.matchOneWay(t.Reverse()) {
		return Reply, true
	}
	return "", false
}

// String is the filter as a person would say it: "icmp 10.0.1.2 <-> 8.8.8.8".
func (f Filter) String() string {
	side := func(p netip.Prefix, port uint16) string {
		s := "any"
		if p.IsValid() {
			s = p.String()
			if p.IsSingleIP() {
				s = p.Addr().String()
			}
		}
		if port != 0 {
			if p.IsValid() && p.Addr().Is6() {
				s = "[" + s + "]"
			}
			s += ":" + strconv.Itoa(int(port))
		}
		return s
	}
	return fmt.Sprintf("%s %s <-> %s", f.Proto, side(f.Src, f.Sport), side(f.Dst, f.Dport))
}

package merge

import (
	"net/netip"

	"github.com/pathtrace/pathtrace/trace"
)

// identity is what tells one packet on the wire from another: the fields a router leaves alone.
// TTL, the outer headers and the device are left out, since crossing nodes changes them; for a
// tunnelled packet the hop's Tuple already is the inner packet's.
type identity struct {
	proto              trace.Proto
	src, dst           netip.Addr // zero in the NAT-tolerant form
	ipID               uint16
	sport, dport       uint16
	tcpSeq             uint32
	tcpFlags           trace.TCPFlags
	payload            uint16
	icmpType, icmpCode uint8
	icmpID, icmpSeq    uint16
}

func identityOf(h trace.Headers) identity {
	id := identity{
		proto: h.Proto, src: h.Src, dst: h.Dst, ipID: h.IPID,
		sport: h.Sport, dport: h.Dport, payload: h.Payload,
	}
	switch h.Proto {
	case trace.ProtoTCP:
		id.tcpSeq, id.tcpFlags = h.TCPSeq, h.TCPFlags
	case trace.ProtoICMP, trace.ProtoICMPv6:
		id.icmpType, id.icmpCode, id.icmpID, id.icmpSeq = h.ICMPType, h.ICMPCode, h.ICMPID, h.ICMPSeq
	}
	return id
}

// natTolerant drops the addresses, which SNAT or DNAT between two nodes may have rewritten;
// the IP ID with the ICMP id and sequence, or the TCP sequence and ports, still name the packet.
func (id identity) natTolerant() identity {
	id.src, id.dst = netip.Addr{}, netip.Addr{}
	return id
}

// identities lists the distinct identities a packet showed on its node: NAT on the node gives
// it more than one.
func identities(p *trace.Packet) (exact, tolerant []identity) {
	seen := map[identity]bool{}
	add := func(h trace.Headers) {
		id := identityOf(h)
		if seen[id] {
			return
		}
		seen[id] = true
		exact = append(exact, id)
		tolerant = append(tolerant, id.natTolerant())
	}
	add(p.Tuple)
	for _, h := range p.Hops {
		if h.Tuple != nil && !h.Copy {
			add(*h.Tuple)
		}
	}
	return exact, tolerant
}

// index finds a node's packets by identity.
type index struct {
	exact, tolerant map[identity][]int
}

func newIndex(n *node) index {
	ix := index{exact: map[identity][]int{}, tolerant: map[identity][]int{}}
	for i := range n.packets {
		p := &n.packets[i]
		for j := range p.exact {
			ix.exact[p.exact[j]] = appendOnce(ix.exact[p.exact[j]], i)
			ix.tolerant[p.tolerant[j]] = appendOnce(ix.tolerant[p.tolerant[j]], i)
		}
	}
	return ix
}

func appendOnce(list []int, i int) []int {
	if len(list) > 0 && list[len(list)-1] == i {
		return list
	}
	return append(list, i)
}

// candidates are the packets of ix's node that share an identity with p: exactly if any, else
// with addresses left out.
func (ix index) candidates(p *packet) []int {
	var out []int
	for _, id := range p.exact {
		for _, i := range ix.exact[id] {
			out = appendUnique(out, i)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, id := range p.tolerant {
		for _, i := range ix.tolerant[id] {
			out = appendUnique(out, i)
		}
	}
	return out
}

func appendUnique(list []int, i int) []int {
	for _, x := range list {
		if x == i {
			return list
		}
	}
	return append(list, i)
}

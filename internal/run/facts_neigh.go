package run

import (
	"net/netip"

	"github.com/pathtrace/pathtrace/analysis/diagnose"
)

// The neighbour classes' node state (analysis/diagnose/class_neighbour.go): the route decision,
// a device's link state and its veth peer, and which devices of the node own an address.

func (f nodeFacts) NextHop(netns uint32, src, dst netip.Addr) (diagnose.NextHop, error) {
	nh, err := f.r.NextHop(netns, src, dst)
	return diagnose.NextHop{Route: nh.Route, Gateway: nh.Gateway, Addr: nh.Addr, Dev: nh.Dev, Onlink: nh.Onlink, Src: nh.Src}, err
}

func (f nodeFacts) Link(netns uint32, dev string) (diagnose.LinkState, error) {
	l, err := f.r.Link(netns, dev)
	return diagnose.LinkState{
		Kind: l.Kind, Up: l.Up, LowerUp: l.LowerUp, Oper: l.Oper,
		PeerNetns: l.PeerNetns, PeerNetnsName: l.PeerNetnsName, PeerIfname: l.PeerIfname,
		PeerUp: l.PeerUp, PeerLowerUp: l.PeerLower,
	}, err
}

func (f nodeFacts) AddrOwners(addr netip.Addr) []diagnose.AddrOwner {
	var out []diagnose.AddrOwner
	for _, o := range f.r.AddrOwners(addr) {
		out = append(out, diagnose.AddrOwner{Netns: o.Netns, NetnsName: o.NetnsName, Dev: o.Dev})
	}
	return out
}

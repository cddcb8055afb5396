package nodestate

import (
	"net/netip"
	"testing"
)

// The neighbour classes' readings on the standard topology: the route decision names the
// gateway (not the destination), a veth's peer is found in its namespace, and an address's
// owner among the node's namespaces.
func TestNeighbourPath(t *testing.T) {
	topo := standard(t, "ptns-nhop", 228)
	r := New("/proc")
	pod, node := topo.Pod.Inode(), topo.Node.Inode()

	nh, err := r.NextHop(pod, topo.PodIP, topo.ExtIP)
	if err != nil {
		t.Fatal(err)
	}
	if nh.Gateway != topo.NodePodIP || nh.Addr != topo.NodePodIP || nh.Dev != "eth0" || nh.Route != "default via "+topo.NodePodIP.String()+" dev eth0" {
		t.Errorf("pod -> ext: %+v", nh)
	}
	// On-link: the destination itself is resolved.
	if nh, err := r.NextHop(node, netip.Addr{}, topo.ExtIP); err != nil || nh.Gateway.IsValid() || nh.Addr != topo.ExtIP || nh.Dev != topo.NodeExtIf {
		t.Errorf("node -> ext: %+v, %v", nh, err)
	}
	if err := topo.Pod.ReplaceRoute("default", "169.254.1.1", "eth0", true); err != nil {
		t.Fatal(err)
	}
	if nh, err := r.NextHop(pod, netip.Addr{}, topo.ExtIP); err != nil || nh.Addr != netip.MustParseAddr("169.254.1.1") || !nh.Onlink || nh.Route != "default via 169.254.1.1 dev eth0 onlink" {
		t.Errorf("onlink gateway: %+v, %v", nh, err)
	}

	l, err := r.Link(pod, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if l.Kind != "veth" || !l.Up || !l.LowerUp || l.PeerNetns != node || l.PeerIfname != topo.NodePodIf || l.PeerNetnsName != topo.Node.Name() || !l.PeerUp {
		t.Errorf("pod eth0: %+v", l)
	}
	if err := topo.Node.SetLinkDown(topo.NodePodIf); err != nil {
		t.Fatal(err)
	}
	if l, err := r.Link(pod, "eth0"); err != nil || l.PeerUp {
		t.Errorf("pod eth0 with its peer down: %+v, %v", l, err)
	}
	if _, err := r.Link(pod, "nosuchdev"); err == nil {
		t.Error("missing device: want an error")
	}

	owners := r.AddrOwners(topo.NodeExtIP)
	if len(owners) != 1 || owners[0].Netns != node || owners[0].Dev != topo.NodeExtIf || owners[0].NetnsName != topo.Node.Name() {
		t.Errorf("owners of %s: %+v", topo.NodeExtIP, owners)
	}
	if owners := r.AddrOwners(netip.MustParseAddr("169.254.1.1")); len(owners) != 0 {
		t.Errorf("owners of an address nobody has: %+v", owners)
	}
}

package nodestate

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestNeighbour(t *testing.T) {
	topo := standard(t, "ptns-neigh", 235)
	r := New("/proc")
	node := topo.Node.Inode()

	if got, err := r.Neighbour(node, topo.NodeExtIf, topo.ExtIP); err != nil || got != NoNeighbour {
		t.Errorf("before any traffic: %q, %v; want %q", got, err, NoNeighbour)
	}
	n, err := topo.Pod.Ping(topo.ExtIP.String(), 0x7a11, 1, 0, 2*time.Second)
	if err != nil || n != 1 {
		t.Fatalf("ping pod -> ext: %d replies, %v", n, err)
	}
	got, err := r.Neighbour(node, topo.NodeExtIf, topo.ExtIP)
	if err != nil {
		t.Fatal(err)
	}
	// Which live state depends on timing: confirmation by the reply keeps it REACHABLE, but
	// a slow run may see it age.
	if live := []string{"REACHABLE", "STALE", "DELAY", "PROBE"}; !slices.Contains(live, got) {
		t.Errorf("ext on %s after a ping: %q, want one of %v", topo.NodeExtIf, got, live)
	}
	unused := netip.AddrFrom4([4]byte{10, 235, 2, 77})
	if got, err := r.Neighbour(node, topo.NodeExtIf, unused); err != nil || got != NoNeighbour {
		t.Errorf("unused address: %q, %v; want %q", got, err, NoNeighbour)
	}
	// The entry belongs to veth-ext: asked about another device, there is none.
	if got, err := r.Neighbour(node, topo.NodePodIf, topo.ExtIP); err != nil || got != NoNeighbour {
		t.Errorf("ext on %s: %q, %v; want %q", topo.NodePodIf, got, err, NoNeighbour)
	}
	if _, err := r.Neighbour(node, "nosuchdev", topo.ExtIP); err == nil {
		t.Error("missing device: want an error")
	}
}

func TestNeighState(t *testing.T) {
	for state, want := range map[int]string{0: "NUD_NONE", 0x02: "REACHABLE", 0x20: "FAILED", 0x80: "PERMANENT", 0x01: "INCOMPLETE", 0x42: "REACHABLE NOARP"} {
		if got := neighState(state); got != want {
			t.Errorf("neighState(%#x) = %q, want %q", state, got, want)
		}
	}
}

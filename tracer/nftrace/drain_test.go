package nftrace

import (
	"testing"
)

// A run that stops right after a drop must still name its rule: Close hands over the drops
// whose trace events are already queued on the socket instead of discarding them.
func TestCloseHandsOverQueuedDrops(t *testing.T) {
	topo := standard(t, "ptnftdrain", 239)
	if err := topo.Node.NftDropForward(topo.PodIP.String()); err != nil {
		t.Fatal(err)
	}
	s, err := Open(topo.Node.Path(), host(topo.PodIP), host(topo.ExtIP))
	if err != nil {
		t.Fatal(err)
	}
	// Sent and closed at once: the kernel has queued the events (they are written before the
	// packet is freed), nobody has read them yet.
	for i := range 3 {
		if err := topo.Pod.SendUDP(topo.ExtIP.String(), 40000+uint16(i), 9, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for d := range s.Drops() {
		if d.Chain != "forward" || d.Handle == 0 {
			t.Errorf("drop %s, want the forward rule", d)
		}
		n++
	}
	if n != 3 {
		t.Errorf("%d drops handed over after Close, want 3 (warnings %q)", n, s.Warnings())
	}
}

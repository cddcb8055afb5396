package run

import (
	"testing"

	"github.com/pathtrace/pathtrace/tracer/netns"
)

// processNetns finds namespaces through processes: ours is one.
func TestProcessNetns(t *testing.T) {
	self, err := netns.Inode("/proc/self/ns/net")
	if err != nil {
		t.Skip(err)
	}
	got := processNetns("/proc")
	p, ok := got[self]
	if !ok {
		t.Fatalf("own namespace %d not among %v", self, got)
	}
	if ino, err := netns.Inode(p); err != nil || ino != self {
		t.Errorf("%s is namespace %d (%v), want %d", p, ino, err, self)
	}
	if len(processNetns("/nonexistent")) != 0 {
		t.Error("namespaces from a missing /proc")
	}
}

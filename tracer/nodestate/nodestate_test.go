package nodestate

import (
	"os"
	"testing"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/vishvananda/netlink"
)

func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to " + why)
	}
}

// standard builds the lab's pod/node/ext topology for one test.
func standard(t *testing.T, prefix string, net uint8) *lab.Topology {
	t.Helper()
	needRoot(t, "create network namespaces")
	topo, err := lab.Standard(prefix, net)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	})
	return topo
}

// inNetlink runs fn with a netlink handle in the namespace ino, for test setup.
func inNetlink(t *testing.T, r *Reader, ino uint32, fn func(h *netlink.Handle) error) {
	t.Helper()
	if err := r.withNetlink(ino, fn); err != nil {
		t.Fatal(err)
	}
}

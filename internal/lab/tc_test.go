package lab

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tcFilters lists the bpf filters on dev's ingress or egress hook.
func tcFilters(t *testing.T, n *NS, dev string, parent uint32) []*netlink.BpfFilter {
	t.Helper()
	var out []*netlink.BpfFilter
	err := n.netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(dev)
		if err != nil {
			return err
		}
		fs, err := h.FilterList(link, parent)
		if err != nil {
			return err
		}
		for _, f := range fs {
			if bf, ok := f.(*netlink.BpfFilter); ok {
				out = append(out, bf)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list filters on %s: %v", dev, err)
	}
	return out
}

func hasClsact(t *testing.T, n *NS, dev string) bool {
	t.Helper()
	found := false
	err := n.netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(dev)
		if err != nil {
			return err
		}
		qs, err := h.QdiscList(link)
		if err != nil {
			return err
		}
		for _, q := range qs {
			if q.Type() == "clsact" {
				found = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list qdiscs on %s: %v", dev, err)
	}
	return found
}

func attachTC(t *testing.T, n *NS, dev, dir string, deny netip.Addr) *tcAttachment {
	t.Helper()
	c, err := n.AttachTCDrop(dev, dir, deny)
	if err != nil {
		t.Fatalf("AttachTCDrop: %v", err)
	}
	return c.(*tcAttachment)
}

func TestTCDrop(t *testing.T) {
	topo := standard(t, "ptlabtc", 219)
	if got := ping(t, topo.Pod, topo.ExtIP, 1); got != pingCount {
		t.Fatalf("before attach: %d replies, want %d", got, pingCount)
	}

	// Ingress on the host side of the pod's veth sees what the pod sends.
	in := attachTC(t, topo.Node, NodePodIf, TCIngress, topo.PodIP)
	fs := tcFilters(t, topo.Node, NodePodIf, netlink.HANDLE_MIN_INGRESS)
	if len(fs) != 1 || fs[0].Name != "cil_from_container" || !fs[0].DirectAction || uint32(fs[0].Id) != in.progID {
		t.Fatalf("ingress filters %+v, want one direct-action cil_from_container running prog %d", fs, in.progID)
	}
	if info, err := in.prog.Info(); err != nil {
		t.Errorf("program info: %v", err)
	} else if info.Name != "cil_from_container" || info.Type != ebpf.SchedCLS {
		t.Errorf("program info: name %q type %v, want cil_from_container SchedCLS", info.Name, info.Type)
	}
	if got := ping(t, topo.Pod, topo.ExtIP, 2); got != 0 {
		t.Errorf("ingress drop of the pod's address: %d replies, want 0", got)
	}
	if got := ping(t, topo.Pod, topo.NodePodIP, 3); got != 0 {
		t.Errorf("ingress drop, ping node: %d replies, want 0", got)
	}
	// Packets from other sources pass: ext's pings to the pod arrive, but
	// the pod's replies are dropped on their way in.
	if got := ping(t, topo.Ext, topo.PodIP, 4); got != 0 {
		t.Errorf("ingress drop, ping ext->pod: %d replies, want 0", got)
	}
	if err := in.Close(); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if err := in.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if fs := tcFilters(t, topo.Node, NodePodIf, netlink.HANDLE_MIN_INGRESS); len(fs) != 0 {
		t.Errorf("filters left after detach: %+v", fs)
	}
	if hasClsact(t, topo.Node, NodePodIf) {
		t.Error("clsact qdisc left after the last detach")
	}
	if got := ping(t, topo.Pod, topo.ExtIP, 5); got != pingCount {
		t.Errorf("after detach: %d replies, want %d", got, pingCount)
	}

	// Egress toward the pod with ext's address: the requests get through,
	// the replies do not; the node's own replies still do.
	eg := attachTC(t, topo.Node, NodePodIf, TCEgress, topo.ExtIP)
	fs = tcFilters(t, topo.Node, NodePodIf, netlink.HANDLE_MIN_EGRESS)
	if len(fs) != 1 || fs[0].Name != "cil_to_container" || !fs[0].DirectAction {
		t.Fatalf("egress filters %+v, want one direct-action cil_to_container", fs)
	}
	// A second attachment shares the clsact qdisc; this one drops nothing
	// that is in use.
	unused := attachTC(t, topo.Node, NodePodIf, TCIngress, netip.MustParseAddr("10.219.1.99"))
	if got := ping(t, topo.Pod, topo.ExtIP, 6); got != 0 {
		t.Errorf("egress drop of ext's address: %d replies, want 0", got)
	}
	if got := ping(t, topo.Pod, topo.NodePodIP, 7); got != pingCount {
		t.Errorf("egress drop, ping node: %d replies, want %d", got, pingCount)
	}
	if err := eg.Close(); err != nil {
		t.Fatal(err)
	}
	if !hasClsact(t, topo.Node, NodePodIf) {
		t.Error("clsact qdisc removed while an ingress filter is still attached")
	}
	if got := ping(t, topo.Pod, topo.ExtIP, 8); got != pingCount {
		t.Errorf("after egress detach: %d replies, want %d", got, pingCount)
	}

	if _, err := topo.Node.AttachTCDrop(NodePodIf, "sideways", topo.PodIP); err == nil {
		t.Error("bad direction accepted")
	}
	if _, err := topo.Node.AttachTCDrop(NodePodIf, TCIngress, netip.MustParseAddr("fd00::1")); err == nil {
		t.Error("IPv6 deny address accepted")
	}
	if _, err := topo.Node.AttachTCDrop("nosuchdev", TCIngress, topo.PodIP); err == nil {
		t.Error("missing device accepted")
	}

	// Lab.Close detaches what is still attached and closes the program, so
	// the kernel frees it.
	id := ebpf.ProgramID(unused.progID)
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if err := unused.Close(); err != nil {
		t.Errorf("Close after Lab.Close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := ebpf.NewProgramFromID(id)
		if errors.Is(err, unix.ENOENT) {
			break
		}
		if err == nil {
			p.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("program %d still loaded after Lab.Close (err %v)", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

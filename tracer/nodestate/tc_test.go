package nodestate

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// loadTC loads a tc program that lets everything through.
func loadTC(t *testing.T) (*ebpf.Program, *ebpf.ProgramInfo) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		Name:         "cil_from_contai",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		t.Fatalf("load program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	return prog, info
}

func TestTCPrograms(t *testing.T) {
	topo := standard(t, "ptns-tc", 239)
	r := New("/proc")
	node := topo.Node.Inode()
	prog, info := loadTC(t)
	id, _ := info.ID()

	if got, err := r.TCPrograms(node, topo.NodePodIf, ""); err != nil || len(got) != 0 {
		t.Fatalf("before attaching: %+v, %v; want none", got, err)
	}

	inNetlink(t, r, node, func(h *netlink.Handle) error {
		l, err := h.LinkByName(topo.NodePodIf)
		if err != nil {
			return err
		}
		idx := l.Attrs().Index
		err = h.QdiscAdd(&netlink.GenericQdisc{
			QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.HANDLE_CLSACT, Handle: 0xffff0000},
			QdiscType:  "clsact",
		})
		if err != nil {
			return err
		}
		return h.FilterAdd(&netlink.BpfFilter{
			FilterAttrs:  netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.HANDLE_MIN_INGRESS, Handle: 1, Priority: 1, Protocol: unix.ETH_P_ALL},
			Fd:           prog.FD(),
			Name:         "cil_from_container",
			DirectAction: true,
		})
	})
	want := Program{Name: "cil_from_contai", Tag: info.Tag, Kind: "tc", Direction: Ingress, ID: uint32(id)}
	got, err := r.TCPrograms(node, topo.NodePodIf, Ingress)
	if err != nil || len(got) != 1 || got[0] != want {
		t.Errorf("tc ingress: %+v, %v; want [%+v]", got, err, want)
	}
	if got, err := r.TCPrograms(node, topo.NodePodIf, Egress); err != nil || len(got) != 0 {
		t.Errorf("egress with only an ingress filter: %+v, %v; want none", got, err)
	}
	if got, err := r.TCPrograms(node, topo.NodeExtIf, ""); err != nil || len(got) != 0 {
		t.Errorf("veth-ext: %+v, %v; want none", got, err)
	}

	// tcx resolves the ifindex in the namespace of the attaching thread.
	var tcx link.Link
	err = r.Do(node, func() error {
		ifc, err := netlink.LinkByName(topo.NodePodIf)
		if err != nil {
			return err
		}
		tcx, err = link.AttachTCX(link.TCXOptions{Interface: ifc.Attrs().Index, Program: prog, Attach: ebpf.AttachTCXEgress})
		return err
	})
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("no tcx in this kernel: %v", err)
	}
	if err != nil {
		t.Fatalf("attach tcx: %v", err)
	}
	t.Cleanup(func() { tcx.Close() })

	wantTCX := Program{Name: "cil_from_contai", Tag: info.Tag, Kind: "tcx", Direction: Egress, ID: uint32(id)}
	got, err = r.TCPrograms(node, topo.NodePodIf, Egress)
	if err != nil || len(got) != 1 || got[0] != wantTCX {
		t.Errorf("tcx egress: %+v, %v; want [%+v]", got, err, wantTCX)
	}
	got, err = r.TCPrograms(node, topo.NodePodIf, "")
	if err != nil || len(got) != 2 || got[0] != want || got[1] != wantTCX {
		t.Errorf("both directions: %+v, %v; want [%+v %+v]", got, err, want, wantTCX)
	}
	if _, err := r.TCPrograms(node, topo.NodePodIf, "sideways"); err == nil {
		t.Error("bad direction: want an error")
	}
}

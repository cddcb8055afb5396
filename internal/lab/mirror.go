package lab

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/lab/tcprog"
)

// TCProgMirror is the name of the tc program (and of its bpf filter) that AttachTCMirror
// attaches.
const TCProgMirror = tcprog.TcprogProgMirrorTo // "mirror_to"

// AttachTCMirror attaches mirror_to to dev's ingress in n, cloning every IPv4 packet to the egress of toDev (a device in
// the same namespace), like `tc filter add dev <dev> ingress ... action mirred egress mirror dev <toDev>`.
//
// This kernel has no act_mirred, so the clone is made by a direct-action bpf filter calling
// bpf_clone_redirect(skb, toDev's ifindex, 0), which is what mirred does too: skb_clone, then
// dev_queue_xmit on toDev. The original goes on (TC_ACT_OK). Like AttachTCDrop, the program
// reads the IPv4 header behind a 14-byte Ethernet header, so dev must have Ethernet framing.
// The clsact qdisc is shared with AttachTCDrop's filters and removed by the last detach.
// Returns a closer that detaches; Lab.Close detaches too. toDev's ifindex is read once: a
// toDev deleted and made again is not followed.
func (n *NS) AttachTCMirror(dev, toDev string) (io.Closer, error) {
	c, err := n.attachTCMirror(dev, toDev)
	if err != nil {
		return nil, fmt.Errorf("tc mirror %s ingress to %s in %s: %w", dev, toDev, n.name, err)
	}
	if !n.lab.track(c) {
		return nil, fmt.Errorf("tc mirror %s ingress to %s in %s: lab is closed", dev, toDev, n.name)
	}
	return c, nil
}

func (n *NS) attachTCMirror(dev, toDev string) (*tcAttachment, error) {
	var toIndex int
	err := n.netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(toDev)
		if err != nil {
			return fmt.Errorf("find mirror device: %w", err)
		}
		toIndex = link.Attrs().Index
		return nil
	})
	if err != nil {
		return nil, err
	}

	spec, err := tcprog.LoadTcprog()
	if err != nil {
		return nil, err
	}
	v, ok := spec.Variables[tcprog.TcprogVarMIRROR_IFINDEX]
	if !ok {
		return nil, errors.New("program has no MIRROR_IFINDEX")
	}
	if err := v.Set(uint32(toIndex)); err != nil {
		return nil, fmt.Errorf("set MIRROR_IFINDEX: %w", err)
	}
	return n.attachTCProg(spec, TCProgMirror, dev, netlink.HANDLE_MIN_INGRESS)
}

// attachTCProg loads the one program progName of spec and attaches it to dev's hook parent
// (netlink.HANDLE_MIN_INGRESS or HANDLE_MIN_EGRESS) as a direct-action bpf filter named like
// the program, creating the clsact qdisc if dev has none.
func (n *NS) attachTCProg(spec *ebpf.CollectionSpec, progName, dev string, parent uint32) (*tcAttachment, error) {
	pspec, ok := spec.Programs[progName]
	if !ok {
		return nil, fmt.Errorf("program %s missing from the object", progName)
	}
	// Load only the one program, so the others are never in the kernel.
	spec.Programs = map[string]*ebpf.ProgramSpec{progName: pspec}
	// Before 5.11 BPF memory is charged to the user's locked memory, checked against this
	// process's RLIMIT_MEMLOCK: with pathtrace runs holding their maps at the same time
	// (scenarios run side by side), a small limit refuses the program's maps.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("load %s: %w", progName, err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", progName, err)
	}
	prog := coll.DetachProgram(progName)
	coll.Close()
	info, err := prog.Info()
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		prog.Close()
		return nil, errors.New("kernel reports no program id")
	}

	tcMu.Lock()
	defer tcMu.Unlock()
	att := &tcAttachment{ns: n, dev: dev, parent: parent, name: progName, prog: prog, progID: uint32(id)}
	err = n.netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("find device: %w", err)
		}
		att.ifindex = link.Attrs().Index
		qdisc := &netlink.GenericQdisc{
			QdiscAttrs: netlink.QdiscAttrs{
				LinkIndex: att.ifindex,
				Handle:    netlink.MakeHandle(0xffff, 0),
				Parent:    netlink.HANDLE_CLSACT,
			},
			QdiscType: "clsact",
		}
		created := true
		if err := h.QdiscAdd(qdisc); errors.Is(err, unix.EEXIST) {
			created = false
		} else if err != nil {
			return fmt.Errorf("add clsact qdisc: %w", err)
		}
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: att.ifindex,
				Parent:    parent,
				Protocol:  unix.ETH_P_ALL,
			},
			Fd:           prog.FD(),
			Name:         progName,
			DirectAction: true,
		}
		if err := h.FilterAdd(f); err != nil {
			if created {
				_ = h.QdiscDel(qdisc)
			}
			return fmt.Errorf("add bpf filter: %w", err)
		}
		return nil
	})
	if err != nil {
		prog.Close()
		return nil, err
	}
	return att, nil
}

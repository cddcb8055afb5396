package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/lab/tcprog"
)

// Directions for AttachTCDrop.
const (
	TCIngress = "ingress" // runs cil_from_container: packets the device receives (from the pod, on a host veth)
	TCEgress  = "egress"  // runs cil_to_container: packets the device sends (to the pod, on a host veth)
)

// Names of the tc programs (and of their bpf filters) that AttachTCDrop
// attaches. The kernel keeps only 15 characters of a program's name
// (bpf_prog_info.name is "cil_from_contai"), as with Cilium's own programs;
// the filter name and the BTF function name keep all of it, and
// ebpf.ProgramInfo.Name reports the BTF name.
const (
	TCProgFromContainer = tcprog.TcprogProgCilFromContainer // "cil_from_container"
	TCProgToContainer   = tcprog.TcprogProgCilToContainer   // "cil_to_container"
)

// tcMu serializes attaching and detaching, which share clsact qdiscs: the
// last detach on a device removes the qdisc, and must not race an attach.
var tcMu sync.Mutex

// AttachTCDrop attaches cil_from_container (ingress) or cil_to_container (egress) to dev in n via a clsact qdisc and a
// direct-action bpf filter named like the program, dropping IPv4 packets from denySrc. Returns a closer that detaches.
//
// The program returns TC_ACT_SHOT for an IPv4 packet whose source address is
// denySrc and TC_ACT_OK for everything else. It reads the IPv4 header behind
// a 14-byte Ethernet header, so dev must have Ethernet framing (veth, bridge
// ports), not an L3 device such as a tun. denySrc 0.0.0.0 drops nothing. The
// clsact qdisc is created if dev has none, and removed again by the last
// detach that finds no filter left on it. Lab.Close detaches too.
func (n *NS) AttachTCDrop(dev string, direction string, denySrc netip.Addr) (io.Closer, error) {
	c, err := n.attachTCDrop(dev, direction, denySrc)
	if err != nil {
		return nil, fmt.Errorf("tc drop %s on %s %s in %s: %w", denySrc, dev, direction, n.name, err)
	}
	if !n.lab.track(c) {
		return nil, fmt.Errorf("tc drop %s on %s %s in %s: lab is closed", denySrc, dev, direction, n.name)
	}
	return c, nil
}

func (n *NS) attachTCDrop(dev, direction string, denySrc netip.Addr) (*tcAttachment, error) {
	var progName string
	var parent uint32
	switch direction {
	case TCIngress:
		progName, parent = TCProgFromContainer, netlink.HANDLE_MIN_INGRESS
	case TCEgress:
		progName, parent = TCProgToContainer, netlink.HANDLE_MIN_EGRESS
	default:
		return nil, fmt.Errorf("direction %q: want %q or %q", direction, TCIngress, TCEgress)
	}
	src := denySrc.Unmap()
	if !src.Is4() {
		return nil, errors.New("deny address must be IPv4")
	}

	spec, err := tcprog.LoadTcprog()
	if err != nil {
		return nil, err
	}
	v, ok := spec.Variables[tcprog.TcprogVarDENY_SRC]
	if !ok {
		return nil, errors.New("program has no DENY_SRC")
	}
	// DENY_SRC holds the address in network byte order, i.e. the four
	// address bytes as they sit in the packet, read as a native uint32.
	a := src.As4()
	if err := v.Set(binary.NativeEndian.Uint32(a[:])); err != nil {
		return nil, fmt.Errorf("set DENY_SRC: %w", err)
	}
	return n.attachTCProg(spec, progName, dev, parent)
}

// tcAttachment is one AttachTCDrop: the program stays loaded (its fd open)
// until Close, even though the filter alone would keep it alive.
type tcAttachment struct {
	ns      *NS
	dev     string
	ifindex int
	parent  uint32
	name    string
	prog    *ebpf.Program
	progID  uint32

	once sync.Once
	err  error
}

// Close removes the filter (and the clsact qdisc when no filter is left on
// either hook of the device) and closes the program. A device or namespace
// that is already gone counts as detached. Safe to call twice.
func (a *tcAttachment) Close() error {
	a.once.Do(func() {
		tcMu.Lock()
		defer tcMu.Unlock()
		err := a.ns.netlink(a.detach)
		a.err = errors.Join(err, a.prog.Close())
		if a.err != nil {
			a.err = fmt.Errorf("tc detach %s from %s in %s: %w", a.name, a.dev, a.ns.name, a.err)
		}
	})
	return a.err
}

func (a *tcAttachment) detach(h *netlink.Handle) error {
	link, err := h.LinkByIndex(a.ifindex)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil
		}
		return err
	}
	filters, err := h.FilterList(link, a.parent)
	if err != nil {
		return fmt.Errorf("list filters: %w", err)
	}
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && uint32(bf.Id) == a.progID {
			if err := h.FilterDel(bf); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("delete filter: %w", err)
			}
		}
	}
	// The qdisc goes when nothing is attached to it any more, so that a
	// detached device looks as it did before AttachTCDrop.
	for _, p := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := h.FilterList(link, p)
		if err != nil || len(fs) > 0 {
			return nil
		}
	}
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: a.ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := h.QdiscDel(qdisc); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete clsact qdisc: %w", err)
	}
	return nil
}

package nodestate

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Program is a BPF program attached to a device's tc hook.
type Program struct {
	// Name is the program's own name, in full where the kernel has BTF for it (cilium/ebpf
	// reads it from there when the 15-character name was truncated), not a tc filter's name.
	Name      string
	Tag       string // hex, as bpftool and tc print it
	Kind      string // "tcx" (link or mprog attachment, 6.6+) or "tc" (cls_bpf filter on clsact)
	Direction string // "ingress" or "egress"
	ID        uint32
}

// Directions of the tc hook.
const (
	Ingress = "ingress"
	Egress  = "egress"
)

// TCPrograms lists the BPF programs attached to dev's tc hook in direction (Ingress, Egress,
// or "" for both) in the namespace with inode ino, in the order the kernel runs them: tcx
// programs first, then classic cls_bpf filters, which run only if the tcx programs let the
// packet through to them.
func (r *Reader) TCPrograms(ino uint32, dev string, direction string) ([]Program, error) {
	var dirs []string
	switch direction {
	case Ingress, Egress:
		dirs = []string{direction}
	case "":
		dirs = []string{Ingress, Egress}
	default:
		return nil, fmt.Errorf("read tc programs of %s in netns %d: direction %q, want %q or %q", dev, ino, direction, Ingress, Egress)
	}
	var progs []Program
	err := r.withNetlink(ino, func(h *netlink.Handle) error {
		l, err := linkByName(h, dev)
		if err != nil {
			return err
		}
		for _, d := range dirs {
			// tcx queries go by ifindex, which the kernel resolves in the calling
			// thread's namespace: hence inside Do.
			tcx, err := tcxPrograms(l.Attrs().Index, d)
			if err != nil {
				return err
			}
			tc, err := tcPrograms(h, l, d)
			if err != nil {
				return err
			}
			progs = append(append(progs, tcx...), tc...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read tc programs of %s in netns %d: %w", dev, ino, err)
	}
	return progs, nil
}

func tcxPrograms(ifindex int, dir string) ([]Program, error) {
	attach := ebpf.AttachTCXIngress
	if dir == Egress {
		attach = ebpf.AttachTCXEgress
	}
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: attach})
	// Kernels before tcx (6.6) know BPF_PROG_QUERY but not the attach type, and say EINVAL.
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tcx %s: %w", dir, err)
	}
	var progs []Program
	for _, ap := range res.Programs {
		p := Program{Kind: "tcx", Direction: dir, ID: uint32(ap.ID)}
		p.Name, p.Tag = programInfo(ap.ID)
		progs = append(progs, p)
	}
	return progs, nil
}

func tcPrograms(h *netlink.Handle, l netlink.Link, dir string) ([]Program, error) {
	parent := uint32(netlink.HANDLE_MIN_INGRESS)
	if dir == Egress {
		parent = netlink.HANDLE_MIN_EGRESS
	}
	// Without a clsact (or, for ingress, ingress) qdisc the kernel answers with an empty
	// list, not an error.
	filters, err := dump(func() ([]netlink.Filter, error) { return h.FilterList(l, parent) })
	if err != nil {
		return nil, fmt.Errorf("tc filters %s: %w", dir, err)
	}
	var progs []Program
	for _, f := range filters {
		bf, ok := f.(*netlink.BpfFilter)
		if !ok {
			continue
		}
		p := Program{Name: bf.Name, Tag: bf.Tag, Kind: "tc", Direction: dir, ID: uint32(bf.Id)}
		if name, tag := programInfo(ebpf.ProgramID(bf.Id)); tag != "" {
			p.Name, p.Tag = name, tag
		}
		progs = append(progs, p)
	}
	return progs, nil
}

// programInfo returns a program's name and tag, or nothing if it cannot be opened (detached
// meanwhile): what the attachment itself says is then the best there is.
func programInfo(id ebpf.ProgramID) (name, tag string) {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return "", ""
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return "", ""
	}
	return info.Name, info.Tag
}

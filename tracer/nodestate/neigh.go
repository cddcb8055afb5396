package nodestate

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NoNeighbour is what Neighbour returns when the namespace has no entry for the address: the
// kernel never needed to resolve it, or forgot it (garbage collection).
const NoNeighbour = "none"

// neighStates names the NUD_* bits the way `ip neigh` does.
var neighStates = []struct {
	bit  uint16
	name string
}{
	{netlink.NUD_INCOMPLETE, "INCOMPLETE"},
	{netlink.NUD_REACHABLE, "REACHABLE"},
	{netlink.NUD_STALE, "STALE"},
	{netlink.NUD_DELAY, "DELAY"},
	{netlink.NUD_PROBE, "PROBE"},
	{netlink.NUD_FAILED, "FAILED"},
	{netlink.NUD_NOARP, "NOARP"},
	{netlink.NUD_PERMANENT, "PERMANENT"},
}

// neighState names a NUD state. NUD_NONE (an entry made but not yet used, which `ip neigh`
// prints without a state) is "NUD_NONE" so that it cannot be mistaken for NoNeighbour.
func neighState(state int) string {
	var names []string
	for _, s := range neighStates {
		if uint16(state)&s.bit != 0 {
			names = append(names, s.name)
		}
	}
	if len(names) == 0 {
		return "NUD_NONE"
	}
	return strings.Join(names, " ")
}

// Neighbour returns the state of the neighbour entry for addr on dev in the namespace with
// inode ino ("REACHABLE", "STALE", "FAILED", ...), or NoNeighbour.
func (r *Reader) Neighbour(ino uint32, dev string, addr netip.Addr) (string, error) {
	addr = addr.Unmap()
	family := unix.AF_INET
	if addr.Is6() {
		family = unix.AF_INET6
	}
	state := NoNeighbour
	err := r.withNetlink(ino, func(h *netlink.Handle) error {
		l, err := linkByName(h, dev)
		if err != nil {
			return err
		}
		neighs, err := dump(func() ([]netlink.Neigh, error) { return h.NeighList(l.Attrs().Index, family) })
		if err != nil {
			return err
		}
		for _, n := range neighs {
			ip, ok := netip.AddrFromSlice(n.IP)
			// A link-local address is only unique per device, and the dump is of one
			// device, so the zone can be ignored.
			if ok && ip.Unmap() == addr.WithZone("") {
				state = neighState(n.State)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read neighbour %s on %s in netns %d: %w", addr, dev, ino, err)
	}
	return state, nil
}

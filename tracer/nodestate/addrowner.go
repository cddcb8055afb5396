package nodestate

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// AddrOwner names the device that holds addr in the namespace with inode ino, with the
// address's prefix as `ip addr` prints it ("10.1.1.2/32"); "" when no device holds it.
func (r *Reader) AddrOwner(ino uint32, addr netip.Addr) (dev, prefix string, err error) {
	err = r.withNetlink(ino, func(h *netlink.Handle) error {
		addrs, err := dump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
		if err != nil {
			return err
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || ip.Unmap() != addr.Unmap() {
				continue
			}
			prefix = a.IPNet.String()
			if l, err := h.LinkByIndex(a.LinkIndex); err == nil {
				dev = l.Attrs().Name
			}
			return nil
		}
		return nil
	})
	if err != nil {
		return "", "", fmt.Errorf("find %s's device in netns %d: %w", addr, ino, err)
	}
	return dev, prefix, nil
}

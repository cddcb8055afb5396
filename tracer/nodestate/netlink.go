package nodestate

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// withNetlink runs fn inside the namespace with a netlink handle whose socket lives there.
// The handle is made inside Do rather than with NewHandleAt because the callers also need the
// thread itself in the namespace (ethtool ioctls, BPF queries by ifindex). It speaks rtnetlink
// alone: by default it would also open XFRM and NETFILTER sockets, and a kernel without
// nfnetlink (no netfilter module loaded) refuses the handle then.
func (r *Reader) withNetlink(ino uint32, fn func(h *netlink.Handle) error) error {
	return r.Do(ino, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		defer h.Close()
		return fn(h)
	})
}

// dump retries a netlink dump that the kernel interrupted because the table changed under it;
// after a few tries the last, possibly inconsistent, answer is good enough for evidence.
func dump[T any](f func() ([]T, error)) ([]T, error) {
	for i := 0; ; i++ {
		v, err := f()
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			if i < 3 {
				continue
			}
			err = nil
		}
		return v, err
	}
}

// linkByName finds dev, turning netlink's LinkNotFoundError into a plainer message.
func linkByName(h *netlink.Handle, dev string) (netlink.Link, error) {
	l, err := h.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", dev, err)
	}
	return l, nil
}

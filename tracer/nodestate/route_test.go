package nodestate

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestRouteTo(t *testing.T) {
	topo := standard(t, "ptns-route", 236)
	r := New("/proc")

	got, err := r.RouteTo(topo.Pod.Inode(), topo.ExtIP)
	if err != nil {
		t.Fatal(err)
	}
	if want := "default via " + topo.NodePodIP.String() + " dev eth0"; !strings.HasPrefix(got, want) {
		t.Errorf("pod -> ext: %q, want %q", got, want)
	}
	got, err = r.RouteTo(topo.Node.Inode(), topo.ExtIP)
	if want := "10.236.2.0/24 dev veth-ext"; err != nil || !strings.HasPrefix(got, want) {
		t.Errorf("node -> ext: %q, %v; want %q", got, err, want)
	}
	got, err = r.RouteTo(topo.Node.Inode(), topo.NodePodIP)
	if want := "local 10.236.1.1 dev veth-pod"; err != nil || !strings.HasPrefix(got, want) {
		t.Errorf("node -> its own address: %q, %v; want %q", got, err, want)
	}

	// Routes that exist only to refuse: the kernel reports them as errnos.
	inNetlink(t, r, topo.Node.Inode(), func(h *netlink.Handle) error {
		for i, typ := range []int{unix.RTN_UNREACHABLE, unix.RTN_BLACKHOLE} {
			dst := &net.IPNet{IP: net.IPv4(10, 236, byte(8+i), 0), Mask: net.CIDRMask(24, 32)}
			if err := h.RouteAdd(&netlink.Route{Dst: dst, Type: typ}); err != nil {
				return err
			}
		}
		return nil
	})
	_, err = r.RouteTo(topo.Node.Inode(), netip.MustParseAddr("10.236.8.5"))
	if !errors.Is(err, unix.EHOSTUNREACH) || !strings.Contains(err.Error(), "unreachable route") {
		t.Errorf("unreachable route: %v", err)
	}
	_, err = r.RouteTo(topo.Node.Inode(), netip.MustParseAddr("10.236.9.5"))
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "blackhole") {
		t.Errorf("blackhole route: %v", err)
	}
	// ext has a default route; the pod has nothing for IPv6.
	_, err = r.RouteTo(topo.Pod.Inode(), netip.MustParseAddr("2001:db8::1"))
	if !errors.Is(err, unix.ENETUNREACH) || !strings.Contains(err.Error(), "netns") {
		t.Errorf("no route: %v", err)
	}
}

package lab

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// farEnd collects what a TunUplink's reader hands over.
type farEnd struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (f *farEnd) add(p []byte) {
	f.mu.Lock()
	f.pkts = append(f.pkts, p)
	f.mu.Unlock()
}

func (f *farEnd) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pkts)
}

// echoRequests returns the IPv4 headers of the ICMP echo requests with
// identifier id to dst that the far end has seen so far, by sequence number.
func (f *farEnd) echoRequests(dst netip.Addr, id uint16) map[uint16]ipv4Hdr {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[uint16]ipv4Hdr{}
	for _, p := range f.pkts {
		h, icmp, err := parseIPv4(p)
		if err != nil || h.proto != unix.IPPROTO_ICMP || h.dst != dst || len(icmp) < 8 {
			continue
		}
		if icmp[0] != icmpv4EchoRequest || binary.BigEndian.Uint16(icmp[4:]) != id {
			continue
		}
		out[binary.BigEndian.Uint16(icmp[6:])] = h
	}
	return out
}

func TestTunUplink(t *testing.T) {
	topo := standard(t, "ptlabtun", 220)
	far := &farEnd{}
	tunAddr := netip.MustParseAddr("10.220.9.1")
	remote := netip.MustParseAddr("10.220.99.5")
	up, err := topo.Node.TunUplink("uplink0", "10.220.9.1/30", "10.220.99.0/24", far.add)
	if err != nil {
		t.Fatal(err)
	}

	err = topo.Node.netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName("uplink0")
		if err != nil {
			return err
		}
		if tt, ok := link.(*netlink.Tuntap); !ok || tt.Mode != netlink.TUNTAP_MODE_TUN {
			t.Errorf("uplink0 is %T %+v, want a tun", link, link)
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("uplink0 is down")
		}
		rs, err := h.RouteGet(remote.AsSlice())
		if err != nil {
			return err
		}
		if len(rs) != 1 || rs[0].LinkIndex != link.Attrs().Index || rs[0].Gw != nil {
			t.Errorf("route to %s: %+v, want dev uplink0 without gateway", remote, rs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The far end never answers; the node forwards the pod's requests
	// unchanged except for the TTL.
	if got := ping(t, topo.Pod, remote, 0x7401); got != 0 {
		t.Errorf("ping through the tun: %d replies, want 0", got)
	}
	reqs := far.echoRequests(remote, 0x7401)
	if len(reqs) != pingCount {
		t.Fatalf("far end saw %d echo requests (%d packets in all), want %d", len(reqs), far.len(), pingCount)
	}
	for seq, h := range reqs {
		if h.src != topo.PodIP || h.ttl != innerTTL-1 {
			t.Errorf("request %d: from %s ttl %d, want from %s ttl %d", seq, h.src, h.ttl, topo.PodIP, innerTTL-1)
		}
	}

	// Masquerading rewrites the source to the tun's address. (Since the far
	// end never answers, conntrack sees every request as NEW, so even the
	// first id would now be translated; a new id just keeps the two rounds
	// apart.)
	if err := topo.Node.NftMasquerade("uplink0"); err != nil {
		t.Fatal(err)
	}
	if got := ping(t, topo.Pod, remote, 0x7402); got != 0 {
		t.Errorf("masqueraded ping through the tun: %d replies, want 0", got)
	}
	reqs = far.echoRequests(remote, 0x7402)
	if len(reqs) != pingCount {
		t.Fatalf("far end saw %d masqueraded echo requests, want %d", len(reqs), pingCount)
	}
	for seq, h := range reqs {
		if h.src != tunAddr {
			t.Errorf("masqueraded request %d: from %s, want %s", seq, h.src, tunAddr)
		}
	}

	if err := up.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := up.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	before := far.len()
	err = topo.Node.netlink(func(h *netlink.Handle) error {
		if _, err := h.LinkByName("uplink0"); err == nil {
			t.Error("uplink0 still exists after Close")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The route went with the device: the node has no way to 10.220.99.5
	// any more, so Ping fails locally or gets an unreachable, never a reply.
	if n, _ := topo.Pod.Ping(remote.String(), 0x7403, 1, pingInterval, 200*time.Millisecond); n != 0 {
		t.Errorf("ping after Close: %d replies", n)
	}
	if far.len() != before {
		t.Errorf("onPacket called after Close")
	}

	if _, err := topo.Node.TunUplink("bad name", "10.220.9.5/30", "10.220.98.0/24", nil); err == nil {
		t.Error("bad device name accepted")
	}
	if _, err := topo.Node.TunUplink("uplink1", "", "10.220.98.0/24", nil); err == nil {
		t.Error("missing address accepted")
	}
}

package lab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// promisc adds a PACKET_MR_PROMISC membership to the capture's socket, which
// keeps the device promiscuous for as long as the socket is open. A veth
// does no MAC filtering of its own, so frames for other hosts reach packet
// sockets either way; the membership only makes that independent of the
// device type.
func (c *capture) promisc(t *testing.T, ns *NS) {
	t.Helper()
	err := ns.netlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(c.dev)
		if err != nil {
			return err
		}
		return unix.SetsockoptPacketMreq(c.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP,
			&unix.PacketMreq{Ifindex: int32(l.Attrs().Index), Type: unix.PACKET_MR_PROMISC})
	})
	if err != nil {
		t.Fatalf("promiscuous membership on %s in %s: %v", c.dev, ns.Name(), err)
	}
}

// count reads frames for d and returns how many match.
func (c *capture) count(t *testing.T, d time.Duration, match func(frame []byte) error) int {
	t.Helper()
	buf := make([]byte, 65536)
	n := 0
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		nr, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("capture on %s: %v", c.dev, err)
		}
		if match(buf[:nr]) == nil {
			n++
		}
	}
	return n
}

// matchEcho matches an Ethernet frame carrying an ICMP echo request from src
// to dst with the given Ethernet addresses.
func matchEcho(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr) func([]byte) error {
	return func(f []byte) error {
		d, s, p, err := decodeEth(f)
		if err != nil {
			return err
		}
		h, icmp, err := parseIPv4(p)
		if err != nil {
			return err
		}
		if h.proto != unix.IPPROTO_ICMP || len(icmp) < 8 || icmp[0] != icmpv4EchoRequest {
			return fmt.Errorf("not an echo request: proto %d", h.proto)
		}
		if h.src != src || h.dst != dst {
			return fmt.Errorf("echo request %s -> %s", h.src, h.dst)
		}
		if !bytes.Equal(s, srcMAC) || !bytes.Equal(d, dstMAC) {
			return fmt.Errorf("echo request %s -> %s in frame %s -> %s", h.src, h.dst, s, d)
		}
		return nil
	}
}

func isARP(f []byte) error {
	if len(f) < 14 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_ARP {
		return errors.New("not arp")
	}
	return nil
}

// learnedFDB returns the MACs the bridge has learned.
func learnedFDB(t *testing.T, b *Bridged) []string {
	t.Helper()
	var macs []string
	err := b.Node.netlink(func(h *netlink.Handle) error {
		br, err := h.LinkByName(b.Bridge)
		if err != nil {
			return err
		}
		fdb, err := h.NeighList(0, unix.AF_BRIDGE)
		if err != nil {
			return err
		}
		for _, e := range fdb {
			if isLearnedFDB(e, br.Attrs().Index) {
				macs = append(macs, e.HardwareAddr.String())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("fdb of %s: %v", b.Bridge, err)
	}
	return macs
}

func ageingTime(t *testing.T, b *Bridged) uint32 {
	t.Helper()
	var at uint32
	err := b.Node.netlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(b.Bridge)
		if err != nil {
			return err
		}
		br, ok := l.(*netlink.Bridge)
		if !ok || br.AgeingTime == nil {
			return fmt.Errorf("%s is a %s without ageing time", b.Bridge, l.Type())
		}
		at = *br.AgeingTime
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func TestBridged(t *testing.T) {
	needRoot(t)
	b, err := NewBridged("ptlabbr", 218, 3)
	if err != nil {
		t.Fatalf("NewBridged: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if len(b.Pods) != 3 || b.Bridge != "cni0" || b.BridgeIP.String() != "10.218.0.1" ||
		b.PodIPs[0].String() != "10.218.0.2" || b.PodIPs[2].String() != "10.218.0.4" ||
		b.PortIfs[0] != "vethpod0" || b.PortIfs[2] != "vethpod2" ||
		b.PodMACs[1].String() != "0e:70:62:da:00:03" || b.BridgeMAC.String() != "0e:70:62:da:00:01" {
		t.Fatalf("unexpected bridged topology %+v", b)
	}

	// cni0 is a bridge with the gateway address, every port is enslaved to
	// it, and the pods' eth0 carry the fixed MACs.
	err = b.Node.netlink(func(h *netlink.Handle) error {
		br, err := h.LinkByName(b.Bridge)
		if err != nil {
			return err
		}
		if br.Type() != "bridge" || br.Attrs().Flags&net.FlagUp == 0 || !bytes.Equal(br.Attrs().HardwareAddr, b.BridgeMAC) {
			return fmt.Errorf("%s: type %s flags %s mac %s", b.Bridge, br.Type(), br.Attrs().Flags, br.Attrs().HardwareAddr)
		}
		addrs, err := h.AddrList(br, unix.AF_INET)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.218.0.1/24" {
			return fmt.Errorf("%s addresses %v", b.Bridge, addrs)
		}
		for _, p := range b.PortIfs {
			l, err := h.LinkByName(p)
			if err != nil {
				return err
			}
			if l.Attrs().MasterIndex != br.Attrs().Index || l.Attrs().Flags&net.FlagUp == 0 {
				return fmt.Errorf("%s: master %d (want %d) flags %s", p, l.Attrs().MasterIndex, br.Attrs().Index, l.Attrs().Flags)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, pod := range b.Pods {
		err := pod.netlink(func(h *netlink.Handle) error {
			l, err := h.LinkByName(BridgedPodIf)
			if err != nil {
				return err
			}
			if !bytes.Equal(l.Attrs().HardwareAddr, b.PodMACs[i]) {
				return fmt.Errorf("eth0 mac %s, want %s", l.Attrs().HardwareAddr, b.PodMACs[i])
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", pod.Name(), err)
		}
	}
	if at := ageingTime(t, b); at != 30000 {
		t.Errorf("ageing time %d before Flood, want the default 30000 (300s)", at)
	}
	// br_netfilter is not needed for anything here; where present, record
	// what it is set to.
	if v, err := b.Node.ReadSysctl("net.bridge.bridge-nf-call-iptables"); err == nil {
		t.Logf("br_netfilter present: node bridge-nf-call-iptables=%s", v)
	} else {
		t.Logf("br_netfilter absent: %v", err)
	}

	pod0, pod1, pod2 := b.Pods[0], b.Pods[1], b.Pods[2]
	echo01 := matchEcho(b.PodMACs[0], b.PodMACs[1], b.PodIPs[0], b.PodIPs[1])

	// Learning bridge: pod0 -> pod1 works, the bridge learns both MACs and
	// pod2 sees none of the echo requests.
	capt := openCapture(t, pod2, BridgedPodIf)
	capt.promisc(t, pod2)
	if got := ping(t, pod0, b.PodIPs[1], 0x7201); got != pingCount {
		t.Fatalf("pod0 -> pod1 (learning): %d/%d replies", got, pingCount)
	}
	if got := ping(t, pod1, b.BridgeIP, 0x7202); got != pingCount {
		t.Errorf("pod1 -> cni0 (learning): %d/%d replies", got, pingCount)
	}
	if n := capt.count(t, 200*time.Millisecond, echo01); n != 0 {
		t.Errorf("pod2 saw %d echo requests for pod1 while the bridge was learning", n)
	}
	learned := learnedFDB(t, b)
	for _, mac := range b.PodMACs[:2] {
		if !slices.Contains(learned, mac.String()) {
			t.Errorf("bridge did not learn %s (learned %v)", mac, learned)
		}
	}

	if err := b.Flood(); err != nil {
		t.Fatalf("Flood: %v", err)
	}
	if at := ageingTime(t, b); at != 0 {
		t.Errorf("ageing time %d after Flood, want 0", at)
	}
	if l := learnedFDB(t, b); len(l) != 0 {
		t.Errorf("learned FDB entries left after Flood: %v", l)
	}
	for i, pod := range b.Pods {
		err := pod.netlink(func(h *netlink.Handle) error {
			eth, err := h.LinkByName(BridgedPodIf)
			if err != nil {
				return err
			}
			ns, err := h.NeighList(eth.Attrs().Index, unix.AF_INET)
			if err != nil {
				return err
			}
			perm := map[string]string{}
			for _, e := range ns {
				if e.State == netlink.NUD_PERMANENT {
					perm[e.IP.String()] = e.HardwareAddr.String()
				}
			}
			for j, ip := range b.PodIPs {
				if j != i && perm[ip.String()] != b.PodMACs[j].String() {
					return fmt.Errorf("no permanent entry %s -> %s in %v", ip, b.PodMACs[j], perm)
				}
			}
			if perm[b.BridgeIP.String()] != b.BridgeMAC.String() {
				return fmt.Errorf("no permanent entry for the gateway in %v", perm)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", pod.Name(), err)
		}
	}

	// Flooding bridge: pod0 -> pod1 still works, and pod2 now gets copies
	// of the echo requests addressed to pod1's MAC, without any ARP.
	capt = openCapture(t, pod2, BridgedPodIf)
	capt.promisc(t, pod2)
	if got := ping(t, pod0, b.PodIPs[1], 0x7203); got != pingCount {
		t.Errorf("pod0 -> pod1 (flooding): %d/%d replies", got, pingCount)
	}
	capt.wait(t, 2*time.Second, echo01)
	if n := capt.count(t, 200*time.Millisecond, echo01); n != pingCount-1 {
		t.Errorf("pod2 saw %d more flooded echo requests after the first, want %d", n, pingCount-1)
	}
	if l := learnedFDB(t, b); len(l) != 0 {
		t.Errorf("bridge learned %v while flooding", l)
	}

	// The pods reach the gateway too, and none of it needed ARP.
	capt = openCapture(t, pod2, BridgedPodIf)
	if got := ping(t, pod1, b.PodIPs[0], 0x7204); got != pingCount {
		t.Errorf("pod1 -> pod0 (flooding): %d/%d replies", got, pingCount)
	}
	if got := ping(t, pod0, b.BridgeIP, 0x7205); got != pingCount {
		t.Errorf("pod0 -> cni0 (flooding): %d/%d replies", got, pingCount)
	}
	if n := capt.count(t, 200*time.Millisecond, isARP); n != 0 {
		t.Errorf("pod2 saw %d ARP frames with permanent neighbour entries", n)
	}

	// Bridging is layer 2 only: with br_netfilter's IPv4 hook turned off
	// (where it exists at all) pods still reach each other.
	if _, err := b.Node.ReadSysctl("net.bridge.bridge-nf-call-iptables"); err == nil {
		for _, k := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-arptables"} {
			if err := b.Node.Sysctl(k, "0"); err != nil {
				t.Fatal(err)
			}
		}
		if got := ping(t, pod0, b.PodIPs[2], 0x7206); got != pingCount {
			t.Errorf("pod0 -> pod2 without br_netfilter: %d/%d replies", got, pingCount)
		}
	}
}

func TestNewBridgedArgs(t *testing.T) {
	for _, c := range []struct {
		net uint8
		n   int
	}{{0, 1}, {255, 1}, {218, 0}, {218, BridgedMaxPods + 1}} {
		if _, err := NewBridged("ptlabbrargs", c.net, c.n); err == nil {
			t.Errorf("NewBridged(net %d, n %d) succeeded", c.net, c.n)
		}
	}
}

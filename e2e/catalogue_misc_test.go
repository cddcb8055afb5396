package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/lab"
)

// Scenarios of the sysctls that drop (rp_filter, accept_local, route_localnet), the socket
// layer (closed ports, a full receive buffer), tc filters on device kinds other than a veth,
// and encapsulation (a VXLAN packet no device takes).

// dialPod is traffic: n TCP connection attempts from the pod to addr, whatever they give.
func dialPod(s *scenarioLab, addr string, n int) func(t *testing.T) {
	return func(t *testing.T) {
		for i := 0; i < n; i++ {
			if c, err := s.Pod.DialTCP(addr, 500*time.Millisecond); err == nil {
				c.Close()
				t.Fatalf("dial %s: connected, want refused", addr)
			}
		}
	}
}

// udpFromPod is traffic: n datagrams of size bytes from the pod to dst:port.
func udpFromPod(s *scenarioLab, dst string, port uint16, n, size int) func(t *testing.T) {
	return func(t *testing.T) {
		for i := 0; i < n; i++ {
			if err := s.Pod.SendUDP(dst, 0, port, make([]byte, size)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var _ = addScenario(scenario{
	name:  "rpfilter/strict-v4",
	about: "rp_filter=1 (strict, set on all) on the node while its route back to the pod goes out the other device",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		// A route to the pod's address that goes out veth-ext: the reverse path of what the pod
		// sends is not the device it came in on.
		if err := s.Node.AddRoute(s.PodIP.String()+"/32", s.ExtIP.String()); err != nil {
			t.Fatal(err)
		}
		if err := s.Node.Sysctl("net.ipv4.conf.all.rp_filter", "1"); err != nil {
			t.Fatal(err)
		}
		// The node's ARP replies are under rp_filter too: a static entry keeps the test on
		// the IP path.
		if err := s.Pod.StaticNeigh(lab.PodIf, s.NodePodIP, s.Node, s.NodePodIf); err != nil {
			t.Fatal(err)
		}
		return []string{"--src", s.PodIP.String(), "--dst", s.ExtIP.String(), "--proto", "icmp"}, pingFromPod(s, s.ExtIP.String(), 2)
	},
	want: want{
		outcome: "dropped", class: "rp-filter", netns: "node", ifname: "veth-pod", reason: "IP_RPFILTER",
		cause:    "reverse-path filter (strict) on veth-pod",
		evidence: []evidence{{"net.ipv4.conf.all.rp_filter", "1"}, {"effective rp_filter on veth-pod", "1 (strict)"}},
		fix:      "sysctl -w net.ipv4.conf.all.rp_filter=2",
		summary:  []string{"dev veth-ext"}, // the route back, as ip route prints it
	},
})

var _ = addScenario(scenario{
	name:  "rpfilter/strict-v4-arp",
	about: "rp_filter=1 (strict, set on all) on the node while its route back to the pod goes out the other device, and no static neighbour: the node ignores the pod's ARP requests for its gateway",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		if err := s.Node.AddRoute(s.PodIP.String()+"/32", s.ExtIP.String()); err != nil {
			t.Fatal(err)
		}
		if err := s.Node.Sysctl("net.ipv4.conf.all.rp_filter", "1"); err != nil {
			t.Fatal(err)
		}
		return pingArgs(s.PodIP.String(), s.ExtIP.String()), pingFromPod(s, s.ExtIP.String(), 2)
	},
	want: want{
		outcome: "unknown", class: "neighbour-waiting", netns: "pod", ifname: "eth0",
		causeAny: []string{"leaves by veth-ext, so it ignores the ARP requests from 10."},
		cause:    "reverse-path filter (strict) on veth-pod",
		evidence: []evidence{
			{"ARP requests' sender address", "10."},
			{"effective rp_filter on veth-pod", "1 (strict)"},
		},
		fix:     "sysctl -w net.ipv4.conf.all.rp_filter=2",
		summary: []string{"no drop is traced"},
	},
})

var _ = addScenario(scenario{
	name:  "martian/local-source-v4-arp",
	about: "the node was given the pod's address too (a duplicate), accept_local=0, no static neighbour: the node ignores the pod's ARP requests, whose sender is one of its own addresses",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		if err := s.Node.AddAddr("lo", s.PodIP.String()+"/32"); err != nil {
			t.Fatal(err)
		}
		return pingArgs(s.PodIP.String(), s.ExtIP.String()), pingFromPod(s, s.ExtIP.String(), 2)
	},
	want: want{
		outcome: "unknown", class: "neighbour-waiting", netns: "pod", ifname: "eth0",
		cause:    "an address",
		evidence: []evidence{{"net.ipv4.conf.all.accept_local", "0"}},
		fix:      "ip addr del",
		summary:  []string{"martian source"},
	},
})

var _ = addScenario(scenario{
	name:  "martian/local-source-v4",
	about: "a packet arrives with a source address the node itself owns (an address conflict), accept_local=0",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		// The node was given the pod's address too (a duplicate): packets from the pod now have
		// one of the node's own addresses as their source.
		if err := s.Node.AddAddr("lo", s.PodIP.String()+"/32"); err != nil {
			t.Fatal(err)
		}
		if err := s.Pod.StaticNeigh(lab.PodIf, s.NodePodIP, s.Node, s.NodePodIf); err != nil {
			t.Fatal(err)
		}
		return []string{"--src", s.PodIP.String(), "--dst", s.ExtIP.String(), "--proto", "icmp"}, pingFromPod(s, s.ExtIP.String(), 2)
	},
	want: want{
		outcome: "dropped", class: "martian-source", netns: "node", ifname: "veth-pod",
		cause:    "source address is local",
		evidence: []evidence{{"net.ipv4.conf.all.accept_local", "0"}},
		fix:      "ip addr del",
	},
})

var _ = addScenario(scenario{
	name:  "martian/route-localnet-v4",
	about: "a DNAT to 127.0.0.1 (a NodePort on localhost) on a node with route_localnet=0",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		vip := fmt.Sprintf("10.%d.3.3", netOf(s))
		if err := s.Node.NftDNAT(vip, "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		return []string{"--src", s.PodIP.String(), "--dst", vip, "--proto", "icmp"}, pingFromPod(s, vip, 2)
	},
	want: want{
		outcome: "dropped", class: "martian-localnet", netns: "node", ifname: "veth-pod", reason: "IP_LOCALNET",
		cause:    "127.0.0.1 destination from veth-pod (route_localnet=0)",
		evidence: []evidence{{"net.ipv4.conf.veth-pod.route_localnet", "0"}},
		fix:      "sysctl -w net.ipv4.conf.veth-pod.route_localnet=1",
	},
})

func tcpClosed(v6 bool) scenario {
	name, fam := "socket/tcp-closed-v4", "IPv4"
	if v6 {
		name, fam = "socket/tcp-closed-v6", "IPv6"
	}
	return scenario{
		name:  name,
		about: "a TCP connection (" + fam + ") to a port nothing listens on in ext",
		setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
			dst := s.ExtIP.String()
			if v6 {
				dst = s.Ext6
			}
			return []string{"--dst", dst, "--proto", "tcp", "--dport", "7000"}, dialPod(s, net.JoinHostPort(dst, "7000"), 2)
		},
		want: want{
			v6: v6, outcome: "dropped", class: "no-socket", netns: "ext", ifname: "eth0", reason: "NO_SOCKET",
			cause:   "connection refused: nothing listens on TCP port 7000",
			summary: []string{"a RST was sent back"},
			fix:     "ss -ltnp",
		},
	}
}

var _ = addScenario(tcpClosed(false))
var _ = addScenario(tcpClosed(true))

var _ = addScenario(scenario{
	name:  "socket/udp-closed-v6",
	about: "UDP datagrams (IPv6) to a port nothing listens on in ext",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		return []string{"--dst", s.Ext6, "--proto", "udp", "--dport", "7001"}, udpFromPod(s, s.Ext6, 7001, 2, 10)
	},
	want: want{
		v6: true, outcome: "dropped", class: "no-socket", netns: "ext", ifname: "eth0", reason: "NO_SOCKET",
		cause:   "port unreachable: nothing listens on UDP port 7001",
		summary: []string{"ICMPv6 port unreachable"},
		fix:     "ss -lunp",
	},
})

var _ = addScenario(scenario{
	name:  "socket/udp-closed-v4",
	about: "UDP datagrams (IPv4) to a port nothing listens on in ext",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		return []string{"--dst", s.ExtIP.String(), "--proto", "udp", "--dport", "7001"}, udpFromPod(s, s.ExtIP.String(), 7001, 2, 10)
	},
	want: want{
		outcome: "dropped", class: "no-socket", netns: "ext", ifname: "eth0", reason: "NO_SOCKET",
		cause:   "port unreachable: nothing listens on UDP port 7001",
		summary: []string{"ICMP port unreachable"},
		fix:     "ss -lunp",
	},
})

var _ = addScenario(scenario{
	name:  "socket/udp-rcvbuf-v4",
	about: "a UDP service in ext that does not read, with a small SO_RCVBUF: its receive queue fills",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		c, err := s.Ext.ListenUDP(":7002")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.(*net.UDPConn).SetReadBuffer(4096); err != nil {
			t.Fatal(err)
		}
		return []string{"--dst", s.ExtIP.String(), "--proto", "udp", "--dport", "7002"}, udpFromPod(s, s.ExtIP.String(), 7002, 30, 1000)
	},
	want: want{
		outcome: "dropped", class: "socket-rcvbuf", netns: "ext", reason: "SOCKET_RCVBUFF",
		cause:    "receive buffer full on UDP port 7002",
		evidence: []evidence{{"UDP socket *:7002", "rcvbuf"}},
		summary:  []string{"e2e.test"},
		fix:      "SO_RCVBUF",
	},
})

var _ = addScenario(scenario{
	name:  "tc/u32-bridge-ingress",
	about: "a u32 filter with action drop (no BPF) on the ingress of the node's bridge the pod is plugged into",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		if err := s.Node.BridgePort("br0", s.NodePodIf); err != nil {
			t.Fatal(err)
		}
		if err := s.Node.TCU32Drop("br0", lab.TCIngress, s.PodIP); err != nil {
			t.Fatal(err)
		}
		return []string{"--src", s.PodIP.String(), "--dst", s.ExtIP.String(), "--proto", "icmp"}, pingFromPod(s, s.ExtIP.String(), 2)
	},
	want: want{
		outcome: "dropped", class: "tc-program", classNoReasons: "tc-program-inferred", netns: "node", ifname: "br0", reason: "TC_INGRESS",
		cause:    "tc ingress filter u32 on br0",
		evidence: []evidence{{"tc ingress filter on br0 (bridge)", "u32"}},
		fix:      "tc filter del dev br0 ingress pref 10",
	},
})

var _ = addScenario(scenario{
	name:  "tc/u32-tun-egress",
	about: "a u32 filter with action drop on the egress of the node's tun uplink",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		n := netOf(s)
		up, err := s.Node.TunUplink("tun0", fmt.Sprintf("10.%d.9.1/30", n), fmt.Sprintf("10.%d.99.0/24", n), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { up.Close() })
		if err := s.Node.TCU32Drop("tun0", lab.TCEgress, s.PodIP); err != nil {
			t.Fatal(err)
		}
		remote := fmt.Sprintf("10.%d.99.5", n)
		return []string{"--src", s.PodIP.String(), "--dst", remote, "--proto", "icmp"}, pingFromPod(s, remote, 2)
	},
	want: want{
		outcome: "dropped", class: "tc-program", classNoReasons: "tc-program-inferred", netns: "node", ifname: "tun0", reason: "TC_EGRESS",
		cause:    "tc egress filter u32 on tun0",
		evidence: []evidence{{"tc egress filter on tun0 (tuntap)", "u32"}},
		fix:      "tc filter del dev tun0 egress pref 10",
	},
})

// vxlanTo sends n VXLAN packets from the pod to ext's underlay port 4789 with vni, carrying an
// inner UDP packet 10.<net>.50.1 > 10.<net>.50.2:80.
func vxlanTo(s *scenarioLab, vni uint32, n int) ([]string, func(*testing.T)) {
	in := lab.InnerUDP{
		Src: netip.AddrFrom4([4]byte{10, netOf(s), 50, 1}), Dst: netip.AddrFrom4([4]byte{10, netOf(s), 50, 2}),
		Sport: 43000, Dport: 80, Payload: []byte("inner"),
	}
	return []string{"--src", in.Src.String(), "--dst", in.Dst.String(), "--proto", "udp"}, func(t *testing.T) {
		for i := 0; i < n; i++ {
			if err := s.Pod.SendVXLAN(s.ExtIP.String(), lab.VXLANIANAPort, vni, in); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var _ = addScenario(scenario{
	name:  "encap/vxlan-vni-mismatch",
	about: "VXLAN packets with VNI 43 reach ext, whose VXLAN device on port 4789 has VNI 42",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		if err := s.Ext.VXLANDevice("vx0", 42, lab.VXLANIANAPort, "eth0", fmt.Sprintf("10.%d.50.2/24", netOf(s))); err != nil {
			t.Fatal(err)
		}
		return vxlanTo(s, 43, 2)
	},
	want: want{
		outcome: "dropped", class: "vxlan-vni", netns: "ext", reason: "VXLAN_VNI_NOT_FOUND",
		cause:    "no VXLAN device for VNI 43 on UDP port 4789",
		evidence: []evidence{{"the packet's VNI", "43"}, {"VXLAN devices on port 4789", "vx0 (VNI 42,"}},
		summary:  []string{"overlay packet", "10." /* outer endpoints */, "the sender uses VNI 43"},
		fix:      "ip link add vxlan43 type vxlan id 43 dstport 4789",
	},
})

var _ = addScenario(scenario{
	name:  "encap/vxlan-no-device",
	about: "VXLAN packets reach ext, which has no VXLAN device (nothing on UDP 4789)",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		return vxlanTo(s, 42, 2)
	},
	want: want{
		outcome: "dropped", class: "no-socket", netns: "ext", ifname: "eth0", reason: "NO_SOCKET",
		cause:   "no VXLAN device on UDP port 4789",
		summary: []string{"overlay packet (vxlan VNI 42"},
		fix:     "ip link add vxlan42 type vxlan id 42 dstport 4789",
	},
})

var _ = addScenario(scenario{
	name:  "tc/bpf-vxlan-egress",
	about: "a BPF program on the egress of the node's VXLAN device drops what the pod sends into the overlay",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		n := netOf(s)
		if err := s.Node.VXLANDevice("vx0", 42, lab.VXLANIANAPort, lab.NodeExtIf, fmt.Sprintf("10.%d.60.1/24", n)); err != nil {
			t.Fatal(err)
		}
		detach, err := s.Node.AttachTCDrop("vx0", lab.TCEgress, s.PodIP)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { detach.Close() })
		dst := fmt.Sprintf("10.%d.60.2", n)
		// No neighbour to resolve behind the VXLAN device: the program runs before the
		// device would look for one.
		if err := s.Node.PermanentNeigh("vx0", netip.MustParseAddr(dst), net.HardwareAddr{2, 0, 0, 0, 0x60, 2}); err != nil {
			t.Fatal(err)
		}
		return []string{"--src", s.PodIP.String(), "--dst", dst, "--proto", "icmp"}, pingFromPod(s, dst, 2)
	},
	want: want{
		outcome: "dropped", class: "tc-program", classNoReasons: "tc-program-inferred", netns: "node", ifname: "vx0", reason: "TC_EGRESS",
		cause:    "tc egress program " + lab.TCProgToContainer + " on vx0",
		evidence: []evidence{{"tc egress program on vx0", lab.TCProgToContainer}},
		fix:      "cilium monitor --type drop",
	},
})

var _ = addScenario(scenario{
	name:  "encap/vxlan-port-mismatch",
	about: "VXLAN packets to UDP 4789 reach ext, whose VXLAN device listens on 8472 (flannel's port)",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		if err := s.Ext.VXLANDevice("flannel.1", 1, lab.OverlayVXLANPort, "eth0", fmt.Sprintf("10.%d.50.2/24", netOf(s))); err != nil {
			t.Fatal(err)
		}
		return vxlanTo(s, 1, 2)
	},
	want: want{
		outcome: "dropped", class: "no-socket", netns: "ext", ifname: "eth0", reason: "NO_SOCKET",
		cause:   "no VXLAN device on UDP port 4789",
		summary: []string{"overlay packet", "flannel.1 (VNI 1, port 8472", "disagree on the port"},
		fix:     "dstport 4789",
	},
})

// IPv6 has no per-device forwarding switch for routing: ip6_forward reads only
// net.ipv6.conf.all.forwarding (and, from 6.17, the device's force_forwarding); the device's
// own forwarding=0 makes it a host on that link (router advertisements, isRouter) and does not
// drop. The verdict must not blame it: the flow is healthy.
var _ = addScenario(scenario{
	name:  "sysctl/ipv6-device-forwarding-off",
	about: "net.ipv6.conf.veth-pod.forwarding=0 with all.forwarding=1: IPv6 still forwards (not a failure)",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		if err := s.Node.Sysctl("net.ipv6.conf."+s.NodePodIf+".forwarding", "0"); err != nil {
			t.Fatal(err)
		}
		return []string{"--src", s.Pod6, "--dst", s.Ext6, "--proto", "icmp"}, pingFromPod(s, s.Ext6, 2)
	},
	want: want{v6: true, delivered: true, class: "healthy", summary: []string{"healthy"}},
})

var _ = addScenario(scenario{
	name:  "socket/listen-overflow-v4",
	about: "a TCP server in ext that never accepts (listen backlog 1, TCP_DEFER_ACCEPT): its accept queue is full and the next connections' first data is dropped",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		// TCP_DEFER_ACCEPT keeps each handshake pending until its first data: the test
		// completes one (it fills the queue), then the others overflow it.
		if err := s.Ext.ListenBacklog(7003, 1, 5); err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort(s.ExtIP.String(), "7003")
		return []string{"--src", s.PodIP.String(), "--dst", s.ExtIP.String(), "--proto", "tcp", "--dport", "7003"}, func(t *testing.T) {
			// Handshakes the listener's request queue refuses time out: keep those that
			// complete, and send on each in turn.
			var conns []net.Conn
			for i := 0; i < 6; i++ {
				if c, err := s.Pod.DialTCP(addr, 300*time.Millisecond); err == nil {
					conns = append(conns, c)
				}
			}
			if len(conns) < 3 {
				t.Fatalf("%d connections completed, want 3 or more", len(conns))
			}
			for _, c := range conns {
				if _, err := c.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(time.Second) // the refused ones' retransmissions overflow it again
		}
	},
	want: want{
		outcome: "dropped", class: "listen-overflow", netns: "ext", reason: "TCP_LISTEN_OVERFLOW",
		cause:   "accept queue full on TCP port 7003 (backlog 1)",
		summary: []string{"e2e.test", "discarded silently"},
		fix:     "somaxconn",
		// Without a reason the overflow is one of several drops at tcp_v4_rcv; the listener's
		// queue, read after the run, need not be full any more. The verdict must not call it a
		// missing socket, and must say which counter settles it.
		// Read after the run, the queue may be full still (then the verdict names it, with
		// medium confidence) or not (then it says what it cannot tell apart).
		noReasons: &want{
			outcome: "dropped", netns: "ext",
			causeAny: []string{"not for a missing socket", "accept queue full on TCP port 7003"},
		},
	},
})

package lab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// udpSNMP reads a counter of the Udp: lines of n's /proc/net/snmp. Only
// /proc/thread-self/net follows the reading thread's namespace;
// /proc/self/net is the main thread's.
func udpSNMP(t *testing.T, n *NS, field string) uint64 {
	t.Helper()
	var b []byte
	if err := n.Do(func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/snmp")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		for i, v := range strings.Fields(rest) {
			if i < len(names) && names[i] == field {
				c, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
		}
	}
	t.Fatalf("no Udp %s in snmp", field)
	return 0
}

// noDatagram fails if c receives anything within d.
func noDatagram(t *testing.T, c net.PacketConn, d time.Duration) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, from, err := c.ReadFrom(buf)
	if err == nil {
		t.Errorf("got %d bytes from %s, want nothing", n, from)
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal(err)
	}
}

func wrongChecksum(right uint16) uint16 {
	if right == 0xffff {
		return 0x1234
	}
	return 0xffff
}

func TestSendUDPBadChecksum(t *testing.T) {
	topo := standard(t, "ptlabcsum", 221)

	cases := []struct {
		name    string
		port    uint16
		payload func() ([]byte, error)
	}{
		{"plain", 7001, func() ([]byte, error) { return []byte("checksummed payload"), nil }},
		// A VXLAN datagram to flannel's port with a bad outer checksum: no
		// VXLAN device listens in ext, so a socket stands in for one.
		{"vxlan", OverlayVXLANPort, func() ([]byte, error) {
			return VXLANPayload(1, InnerUDP{
				Src: netip.MustParseAddr("10.221.100.1"), Dst: netip.MustParseAddr("10.221.100.2"),
				Sport: 40000, Dport: 53, Payload: []byte("inner"),
			})
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			payload, err := tc.payload()
			if err != nil {
				t.Fatal(err)
			}
			c, err := topo.Ext.ListenUDP(fmt.Sprintf(":%d", tc.port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sport := uint16(41000 + i)
			right, err := UDPChecksum(topo.PodIP, topo.ExtIP, sport, tc.port, payload)
			if err != nil {
				t.Fatal(err)
			}
			bad := wrongChecksum(right)
			before := udpSNMP(t, topo.Ext, "InCsumErrors")
			nodeBefore := udpSNMP(t, topo.Node, "InCsumErrors")

			// Crosses the node, which forwards without looking at
			// the UDP checksum; ext's UDP layer drops it.
			if err := topo.Pod.SendUDPBadChecksum(topo.PodIP.String(), topo.ExtIP.String(), sport, tc.port, payload, bad); err != nil {
				t.Fatal(err)
			}
			noDatagram(t, c, 300*time.Millisecond)
			// The first datagram waits for two ARP exchanges: on a loaded machine it can reach
			// ext after the 300 ms above.
			after := udpSNMP(t, topo.Ext, "InCsumErrors")
			for deadline := time.Now().Add(5 * time.Second); after == before && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				after = udpSNMP(t, topo.Ext, "InCsumErrors")
			}
			if after != before+1 {
				t.Errorf("ext Udp InCsumErrors %d -> %d, want one more", before, after)
			}
			if after := udpSNMP(t, topo.Node, "InCsumErrors"); after != nodeBefore {
				t.Errorf("node Udp InCsumErrors %d -> %d: forwarding should not check UDP checksums", nodeBefore, after)
			}

			if err := topo.Pod.SendUDPBadChecksum(topo.PodIP.String(), topo.ExtIP.String(), sport, tc.port, payload, right); err != nil {
				t.Fatal(err)
			}
			got, from := recvUDP(t, c)
			if !bytes.Equal(got, payload) || from != netip.AddrPortFrom(topo.PodIP, sport) {
				t.Errorf("with the right checksum got %q from %s, want %q from %s:%d", got, from, payload, topo.PodIP, sport)
			}
			if after := udpSNMP(t, topo.Ext, "InCsumErrors"); after != before+1 {
				t.Errorf("ext Udp InCsumErrors %d -> %d after a good datagram", before, after)
			}
		})
	}
}

func TestUDPPacketWithChecksum(t *testing.T) {
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	payload := []byte("odd-length payload")
	good, err := InnerUDP{Src: src, Dst: dst, Sport: 1, Dport: 2, Payload: payload}.IPv4Packet()
	if err != nil {
		t.Fatal(err)
	}
	pkt, right, err := UDPPacketWithChecksum(src, dst, 1, 2, payload, 0xbeef)
	if err != nil {
		t.Fatal(err)
	}
	if want := binary.BigEndian.Uint16(good[26:]); right != want {
		t.Errorf("right checksum %#04x, want %#04x", right, want)
	}
	if got := binary.BigEndian.Uint16(pkt[26:]); got != 0xbeef {
		t.Errorf("checksum field %#04x, want 0xbeef", got)
	}
	if _, err := decodeIPv4UDP(pkt, true); err == nil {
		t.Error("packet with a wrong checksum decodes as valid")
	}
	binary.BigEndian.PutUint16(pkt[26:], right)
	// Each built packet has its own IP ID, and so its own header checksum.
	for _, r := range [][2]int{{4, 6}, {10, 12}} {
		copy(pkt[r[0]:r[1]], good[r[0]:r[1]])
	}
	if !bytes.Equal(pkt, good) {
		t.Errorf("packet % x\nwant    % x", pkt, good)
	}
	if _, _, err := UDPPacketWithChecksum(src, netip.MustParseAddr("fd00::1"), 1, 2, nil, 0); err == nil {
		t.Error("IPv6 accepted")
	}
}

package lab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Test-only packet capture and decoders for the crafted encapsulations and
// the overlay: an AF_PACKET socket on one device of a namespace, and parsers
// that check what the builders promise (lengths, header checksums).

func htons(v uint16) uint16 { return v<<8 | v>>8 }

type capture struct {
	fd  int
	dev string
}

// openCapture opens an ETH_P_ALL packet socket bound to dev in ns. It sees
// frames in both directions, Ethernet header included.
func openCapture(t *testing.T, ns *NS, dev string) *capture {
	t.Helper()
	fd := -1
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(s)
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(s)
			return err
		}
		fd = s
		return nil
	})
	if err != nil {
		t.Fatalf("capture on %s in %s: %v", dev, ns.Name(), err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &capture{fd: fd, dev: dev}
}

// wait returns the first frame for which match returns nil, or fails the test
// after timeout with the last mismatch reason.
func (c *capture) wait(t *testing.T, timeout time.Duration, match func(frame []byte) error) []byte {
	t.Helper()
	buf := make([]byte, 65536)
	deadline := time.Now().Add(timeout)
	lastErr := errors.New("no frames at all")
	for time.Now().Before(deadline) {
		nr, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("capture on %s: %v", c.dev, err)
		}
		frame := bytes.Clone(buf[:nr])
		if err := match(frame); err != nil {
			lastErr = err
			continue
		}
		return frame
	}
	t.Fatalf("capture on %s: no matching frame within %v (last mismatch: %v)", c.dev, timeout, lastErr)
	return nil
}

type ipv4Hdr struct {
	src, dst netip.Addr
	proto    uint8
	ttl      uint8
}

// parseIPv4 checks version, IHL, total length and header checksum.
func parseIPv4(b []byte) (ipv4Hdr, []byte, error) {
	if len(b) < 20 {
		return ipv4Hdr{}, nil, fmt.Errorf("ipv4: %d bytes", len(b))
	}
	if b[0]>>4 != 4 {
		return ipv4Hdr{}, nil, fmt.Errorf("ipv4: version %d", b[0]>>4)
	}
	ihl := int(b[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || total < ihl || total > len(b) {
		return ipv4Hdr{}, nil, fmt.Errorf("ipv4: ihl %d total %d in %d bytes", ihl, total, len(b))
	}
	if c := checksum(b[:ihl]); c != 0 {
		return ipv4Hdr{}, nil, fmt.Errorf("ipv4: bad header checksum (sum %#04x)", c)
	}
	h := ipv4Hdr{
		src:   netip.AddrFrom4([4]byte(b[12:16])),
		dst:   netip.AddrFrom4([4]byte(b[16:20])),
		proto: b[9],
		ttl:   b[8],
	}
	return h, b[ihl:total], nil
}

// decodeIPv4UDP parses an IPv4 UDP packet; with verifyCsum a non-zero UDP
// checksum must be correct.
func decodeIPv4UDP(b []byte, verifyCsum bool) (InnerUDP, error) {
	h, p, err := parseIPv4(b)
	if err != nil {
		return InnerUDP{}, err
	}
	if h.proto != unix.IPPROTO_UDP {
		return InnerUDP{}, fmt.Errorf("ipv4: protocol %d, want udp", h.proto)
	}
	if len(p) < 8 || int(binary.BigEndian.Uint16(p[4:])) != len(p) {
		return InnerUDP{}, fmt.Errorf("udp: length field vs %d bytes", len(p))
	}
	if verifyCsum && binary.BigEndian.Uint16(p[6:]) != 0 {
		pseudo := make([]byte, 12+len(p))
		s, d := h.src.As4(), h.dst.As4()
		copy(pseudo, s[:])
		copy(pseudo[4:], d[:])
		pseudo[9] = unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(pseudo[10:], uint16(len(p)))
		copy(pseudo[12:], p)
		if c := checksum(pseudo); c != 0 {
			return InnerUDP{}, fmt.Errorf("udp: bad checksum (sum %#04x)", c)
		}
	}
	return InnerUDP{
		Src: h.src, Dst: h.dst,
		Sport:   binary.BigEndian.Uint16(p[0:]),
		Dport:   binary.BigEndian.Uint16(p[2:]),
		Payload: p[8:],
	}, nil
}

// decodeEth strips an Ethernet header carrying IPv4.
func decodeEth(b []byte) (dst, src net.HardwareAddr, payload []byte, err error) {
	if len(b) < 14 {
		return nil, nil, nil, fmt.Errorf("ethernet: %d bytes", len(b))
	}
	if et := binary.BigEndian.Uint16(b[12:]); et != EtherTypeIPv4 {
		return nil, nil, nil, fmt.Errorf("ethernet: type %#04x", et)
	}
	return net.HardwareAddr(b[0:6]), net.HardwareAddr(b[6:12]), b[14:], nil
}

func decodeEthIPv4UDP(b []byte, verifyCsum bool) (InnerUDP, error) {
	dst, src, p, err := decodeEth(b)
	if err != nil {
		return InnerUDP{}, err
	}
	in, err := decodeIPv4UDP(p, verifyCsum)
	if err != nil {
		return InnerUDP{}, err
	}
	in.DstMAC, in.SrcMAC = dst, src
	return in, nil
}

func decodeGeneve(b []byte) (uint32, InnerUDP, error) {
	if len(b) < 8 {
		return 0, InnerUDP{}, fmt.Errorf("geneve: %d bytes", len(b))
	}
	if v := b[0] >> 6; v != 0 {
		return 0, InnerUDP{}, fmt.Errorf("geneve: version %d", v)
	}
	optLen := int(b[0]&0x3f) * 4
	if b[1] != 0 || b[7] != 0 {
		return 0, InnerUDP{}, fmt.Errorf("geneve: flags %#02x reserved %#02x", b[1], b[7])
	}
	if pt := binary.BigEndian.Uint16(b[2:]); pt != EtherTypeTEB {
		return 0, InnerUDP{}, fmt.Errorf("geneve: protocol type %#04x", pt)
	}
	if len(b) < 8+optLen {
		return 0, InnerUDP{}, fmt.Errorf("geneve: options overrun")
	}
	vni := binary.BigEndian.Uint32(b[4:]) >> 8
	in, err := decodeEthIPv4UDP(b[8+optLen:], true)
	return vni, in, err
}

func decodeVXLAN(b []byte, verifyCsum bool) (uint32, InnerUDP, error) {
	if len(b) < 8 {
		return 0, InnerUDP{}, fmt.Errorf("vxlan: %d bytes", len(b))
	}
	if b[0] != VXLANFlagVNI || b[1] != 0 || b[2] != 0 || b[3] != 0 || b[7] != 0 {
		return 0, InnerUDP{}, fmt.Errorf("vxlan: header % x", b[:8])
	}
	vni := binary.BigEndian.Uint32(b[4:]) >> 8
	in, err := decodeEthIPv4UDP(b[8:], verifyCsum)
	return vni, in, err
}

// sameInner compares the fields a test sets.
func sameInner(got, want InnerUDP) error {
	if got.Src != want.Src || got.Dst != want.Dst || got.Sport != want.Sport || got.Dport != want.Dport {
		return fmt.Errorf("inner %s:%d -> %s:%d, want %s:%d -> %s:%d",
			got.Src, got.Sport, got.Dst, got.Dport, want.Src, want.Sport, want.Dst, want.Dport)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		return fmt.Errorf("inner payload %q, want %q", got.Payload, want.Payload)
	}
	return nil
}

package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// udpChecksumOffset is where the UDP checksum sits in an IPv4 packet without
// options.
const udpChecksumOffset = ipv4HeaderLen + 6

// UDPPacketWithChecksum returns the IPv4 UDP packet SendUDPBadChecksum sends:
// InnerUDP{src, dst, sport, dport, payload}.IPv4Packet() with the UDP
// checksum field overwritten by csum, and the checksum that field would
// rightly hold. csum 0 means "no checksum" in IPv4, which receivers accept.
func UDPPacketWithChecksum(src, dst netip.Addr, sport, dport uint16, payload []byte, csum uint16) (pkt []byte, right uint16, err error) {
	pkt, err = InnerUDP{Src: src, Dst: dst, Sport: sport, Dport: dport, Payload: payload}.IPv4Packet()
	if err != nil {
		return nil, 0, err
	}
	right = binary.BigEndian.Uint16(pkt[udpChecksumOffset:])
	binary.BigEndian.PutUint16(pkt[udpChecksumOffset:], csum)
	return pkt, right, nil
}

// UDPChecksum returns the correct UDP checksum of an IPv4 datagram src:sport
// -> dst:dport carrying payload (never 0: a computed 0 is written 0xffff).
func UDPChecksum(src, dst netip.Addr, sport, dport uint16, payload []byte) (uint16, error) {
	_, right, err := UDPPacketWithChecksum(src, dst, sport, dport, payload, 0)
	return right, err
}

// SendUDPBadChecksum sends from n, with a raw IPPROTO_RAW socket (IP_HDRINCL), one IPv4 UDP datagram src:sport ->
// dst:dport carrying payload whose UDP checksum is deliberately wrong (csum, e.g. 0xffff when it is not the right one).
//
// csum is written as given: passing the right checksum (UDPChecksum) sends
// an ordinary datagram, which is what a test compares against. src must be an
// address of n (the checksum covers it, so the kernel cannot fill it in); the
// kernel still fills in the IPv4 header checksum. Nothing on the way checks
// UDP checksums when forwarding: the receiving host's UDP layer drops the
// datagram and counts it in Udp InCsumErrors (see /proc/thread-self/net/snmp).
func (n *NS) SendUDPBadChecksum(src, dst string, sport, dport uint16, payload []byte, csum uint16) error {
	if err := n.sendUDPBadChecksum(src, dst, sport, dport, payload, csum); err != nil {
		return fmt.Errorf("send udp %s:%d -> %s:%d (checksum %#04x) from %s: %w", src, sport, dst, dport, csum, n.name, err)
	}
	return nil
}

func (n *NS) sendUDPBadChecksum(src, dst string, sport, dport uint16, payload []byte, csum uint16) error {
	s, err := netip.ParseAddr(src)
	if err != nil {
		return err
	}
	d, err := netip.ParseAddr(dst)
	if err != nil {
		return err
	}
	s, d = s.Unmap(), d.Unmap()
	if !s.Is4() || !d.Is4() {
		return errors.New("addresses must be IPv4")
	}
	pkt, _, err := UDPPacketWithChecksum(s, d, sport, dport, payload, csum)
	if err != nil {
		return err
	}
	return n.sendRawIPv4(d, pkt)
}

// sendRawIPv4 sends a complete IPv4 packet (header included) toward dst from
// inside the namespace.
func (n *NS) sendRawIPv4(dst netip.Addr, pkt []byte) error {
	return n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		// Implied by IPPROTO_RAW; set anyway so the intent is explicit.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
			return fmt.Errorf("IP_HDRINCL: %w", err)
		}
		if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
			return fmt.Errorf("sendto: %w", err)
		}
		return nil
	})
}

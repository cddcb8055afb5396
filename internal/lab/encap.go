package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Crafted encapsulations. The kernels pathtrace runs on in CI have VXLAN but
// neither Geneve nor IPIP devices, so to exercise a tracer's inner-header
// parsing these helpers build the encapsulated packets by hand and send them
// through ordinary sockets: nothing in the lab decapsulates them, they simply
// travel as UDP (Geneve, VXLAN) or IP protocol 4 (IPIP) to their destination.

// Well-known ports and header constants of the crafted encapsulations.
const (
	GenevePort       = 6081 // IANA Geneve port
	VXLANIANAPort    = 4789 // IANA VXLAN port (flannel uses 8472, see Overlay)
	GeneveHeaderLen  = 8    // Geneve header without options
	VXLANHeaderLen   = 8
	EtherTypeTEB     = 0x6558 // Transparent Ethernet Bridging: Geneve's protocol type for an Ethernet payload
	EtherTypeIPv4    = 0x0800
	VXLANFlagVNI     = 0x08 // the "I" flag: VNI is valid
	IPProtoIPIP      = 4
	ipv4HeaderLen    = 20
	udpHeaderLen     = 8
	ethHeaderLen     = 14
	innerTTL         = 64
	maxIPv4PacketLen = 0xffff
)

// Default inner Ethernet addresses used when InnerUDP leaves them unset.
var (
	defaultInnerSrcMAC = [6]byte{0x02, 0x70, 0x74, 0x00, 0x00, 0x01}
	defaultInnerDstMAC = [6]byte{0x02, 0x70, 0x74, 0x00, 0x00, 0x02}
)

// DefaultInnerSrcMAC returns the inner Ethernet source address of Geneve and
// VXLAN frames whose InnerUDP leaves SrcMAC nil: 02:70:74:00:00:01.
func DefaultInnerSrcMAC() net.HardwareAddr { a := defaultInnerSrcMAC; return a[:] }

// DefaultInnerDstMAC returns the inner Ethernet destination address of
// Geneve and VXLAN frames whose InnerUDP leaves DstMAC nil: 02:70:74:00:00:02.
func DefaultInnerDstMAC() net.HardwareAddr { a := defaultInnerDstMAC; return a[:] }

// InnerUDP describes the IPv4 UDP packet carried inside a crafted
// encapsulation. The addresses need not exist anywhere: nothing routes the
// inner packet.
type InnerUDP struct {
	Src, Dst     netip.Addr // IPv4
	Sport, Dport uint16
	Payload      []byte
	// SrcMAC and DstMAC are the inner Ethernet addresses for Geneve and
	// VXLAN (IPIP has no inner Ethernet header); nil means
	// DefaultInnerSrcMAC / DefaultInnerDstMAC.
	SrcMAC, DstMAC net.HardwareAddr
}

// ipIDs numbers the IPv4 headers this file builds, so that two crafted
// packets are never mistaken for fragments of one another.
var ipIDs atomic.Uint32

// IPv4Packet returns the inner packet: a 20-byte IPv4 header (TTL 64, no
// options, DF clear, valid header checksum) followed by a UDP header with a
// valid checksum and the payload.
func (in InnerUDP) IPv4Packet() ([]byte, error) {
	src, dst := in.Src.Unmap(), in.Dst.Unmap()
	if !src.Is4() || !dst.Is4() {
		return nil, fmt.Errorf("inner udp %s -> %s: addresses must be IPv4", in.Src, in.Dst)
	}
	udpLen := udpHeaderLen + len(in.Payload)
	if ipv4HeaderLen+udpLen > maxIPv4PacketLen {
		return nil, fmt.Errorf("inner udp: payload of %d bytes is too long", len(in.Payload))
	}
	pkt := make([]byte, ipv4HeaderLen+udpLen)
	putIPv4Header(pkt, src, dst, unix.IPPROTO_UDP, len(pkt))

	u := pkt[ipv4HeaderLen:]
	binary.BigEndian.PutUint16(u[0:], in.Sport)
	binary.BigEndian.PutUint16(u[2:], in.Dport)
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen))
	copy(u[udpHeaderLen:], in.Payload)
	binary.BigEndian.PutUint16(u[6:], udpChecksum(src, dst, u))
	return pkt, nil
}

// EthernetFrame returns the inner packet behind an Ethernet header (no FCS),
// as Geneve and VXLAN carry it.
func (in InnerUDP) EthernetFrame() ([]byte, error) {
	ip, err := in.IPv4Packet()
	if err != nil {
		return nil, err
	}
	dmac, smac := in.DstMAC, in.SrcMAC
	if dmac == nil {
		dmac = DefaultInnerDstMAC()
	}
	if smac == nil {
		smac = DefaultInnerSrcMAC()
	}
	if len(dmac) != 6 || len(smac) != 6 {
		return nil, fmt.Errorf("inner ethernet %s -> %s: MAC addresses must be 6 bytes", smac, dmac)
	}
	f := make([]byte, ethHeaderLen+len(ip))
	copy(f[0:6], dmac)
	copy(f[6:12], smac)
	binary.BigEndian.PutUint16(f[12:], EtherTypeIPv4)
	copy(f[ethHeaderLen:], ip)
	return f, nil
}

// GenevePayload returns what SendGeneve puts in its UDP datagram: a Geneve
// header (version 0, no options, O and C clear, protocol type 0x6558, VNI
// vni) followed by inner's Ethernet frame.
func GenevePayload(vni uint32, inner InnerUDP) ([]byte, error) {
	if vni > 0xffffff {
		return nil, fmt.Errorf("geneve: vni %#x does not fit 24 bits", vni)
	}
	frame, err := inner.EthernetFrame()
	if err != nil {
		return nil, fmt.Errorf("geneve: %w", err)
	}
	b := make([]byte, GeneveHeaderLen+len(frame))
	b[0] = 0 // version 0, option length 0
	b[1] = 0 // O, C, reserved
	binary.BigEndian.PutUint16(b[2:], EtherTypeTEB)
	binary.BigEndian.PutUint32(b[4:], vni<<8) // VNI in bytes 4-6, byte 7 reserved
	copy(b[GeneveHeaderLen:], frame)
	return b, nil
}

// VXLANPayload returns what SendVXLAN puts in its UDP datagram: a VXLAN
// header (flags 0x08, VNI vni, reserved fields zero) followed by inner's
// Ethernet frame.
func VXLANPayload(vni uint32, inner InnerUDP) ([]byte, error) {
	if vni > 0xffffff {
		return nil, fmt.Errorf("vxlan: vni %#x does not fit 24 bits", vni)
	}
	frame, err := inner.EthernetFrame()
	if err != nil {
		return nil, fmt.Errorf("vxlan: %w", err)
	}
	b := make([]byte, VXLANHeaderLen+len(frame))
	b[0] = VXLANFlagVNI
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	copy(b[VXLANHeaderLen:], frame)
	return b, nil
}

// SendGeneve sends one UDP datagram from inside the namespace (ephemeral
// source port) to dst:6081 carrying GenevePayload(vni, inner). The outer UDP
// checksum is whatever the kernel computes.
func (n *NS) SendGeneve(dst string, vni uint32, inner InnerUDP) error {
	p, err := GenevePayload(vni, inner)
	if err != nil {
		return fmt.Errorf("send geneve to %s from %s: %w", dst, n.name, err)
	}
	return n.SendUDP(dst, 0, GenevePort, p)
}

// SendVXLAN sends one UDP datagram from inside the namespace (ephemeral
// source port) to dst:port carrying VXLANPayload(vni, inner). Use
// VXLANIANAPort (4789) or OverlayVXLANPort (8472), or any other port.
func (n *NS) SendVXLAN(dst string, port uint16, vni uint32, inner InnerUDP) error {
	p, err := VXLANPayload(vni, inner)
	if err != nil {
		return fmt.Errorf("send vxlan to %s:%d from %s: %w", dst, port, n.name, err)
	}
	return n.SendUDP(dst, 0, port, p)
}

// IPIPPacket returns the packet SendIPIP sends: a 20-byte outer IPv4 header
// (protocol 4, TTL 64, valid checksum) from src to dst followed by inner's
// IPv4 packet. An invalid (zero) src is written as 0.0.0.0.
func IPIPPacket(src, dst netip.Addr, inner InnerUDP) ([]byte, error) {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() {
		src = netip.IPv4Unspecified()
	}
	if !src.Is4() || !dst.Is4() {
		return nil, fmt.Errorf("ipip %s -> %s: outer addresses must be IPv4", src, dst)
	}
	in, err := inner.IPv4Packet()
	if err != nil {
		return nil, fmt.Errorf("ipip: %w", err)
	}
	if ipv4HeaderLen+len(in) > maxIPv4PacketLen {
		return nil, errors.New("ipip: inner packet too long")
	}
	pkt := make([]byte, ipv4HeaderLen+len(in))
	putIPv4Header(pkt, src, dst, IPProtoIPIP, len(pkt))
	copy(pkt[ipv4HeaderLen:], in)
	return pkt, nil
}

// SendIPIP sends IPIPPacket(src, dst, inner) from inside the namespace on a
// raw IPPROTO_RAW socket (which implies IP_HDRINCL), so the kernel only
// routes it toward dst. src should be one of the namespace's addresses; ""
// (or "0.0.0.0") lets the kernel fill in the source address of the route.
// The kernel recomputes the outer header checksum either way.
func (n *NS) SendIPIP(src, dst string, inner InnerUDP) error {
	err := n.sendIPIP(src, dst, inner)
	if err != nil {
		return fmt.Errorf("send ipip %s -> %s from %s: %w", src, dst, n.name, err)
	}
	return nil
}

func (n *NS) sendIPIP(src, dst string, inner InnerUDP) error {
	var s netip.Addr
	if src != "" {
		var err error
		if s, err = netip.ParseAddr(src); err != nil {
			return err
		}
	}
	d, err := netip.ParseAddr(dst)
	if err != nil {
		return err
	}
	pkt, err := IPIPPacket(s, d, inner)
	if err != nil {
		return err
	}
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
		if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: d.Unmap().As4()}); err != nil {
			return fmt.Errorf("sendto: %w", err)
		}
		return nil
	})
}

// putIPv4Header writes a 20-byte IPv4 header at b[0:20].
func putIPv4Header(b []byte, src, dst netip.Addr, proto uint8, totalLen int) {
	h := b[:ipv4HeaderLen]
	h[0] = 0x45 // version 4, IHL 5
	h[1] = 0    // DSCP/ECN
	binary.BigEndian.PutUint16(h[2:], uint16(totalLen))
	// Never 0: with IP_HDRINCL a zero ID would be replaced by the kernel,
	// and callers comparing against IPIPPacket's bytes want what they built.
	binary.BigEndian.PutUint16(h[4:], uint16(ipIDs.Add(1)%0xffff)+1)
	binary.BigEndian.PutUint16(h[6:], 0) // flags, fragment offset
	h[8] = innerTTL
	h[9] = proto
	binary.BigEndian.PutUint16(h[10:], 0)
	s, d := src.As4(), dst.As4()
	copy(h[12:16], s[:])
	copy(h[16:20], d[:])
	binary.BigEndian.PutUint16(h[10:], checksum(h))
}

// udpChecksum computes the UDP checksum over the IPv4 pseudo-header and the
// UDP segment u (whose checksum field must be zero). A computed zero is sent
// as 0xffff, since zero means "no checksum".
func udpChecksum(src, dst netip.Addr, u []byte) uint16 {
	s, d := src.As4(), dst.As4()
	pseudo := make([]byte, 12+len(u))
	copy(pseudo[0:4], s[:])
	copy(pseudo[4:8], d[:])
	pseudo[9] = unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(u)))
	copy(pseudo[12:], u)
	c := checksum(pseudo)
	if c == 0 {
		c = 0xffff
	}
	return c
}

package tracer

import (
	"encoding/binary"
	"unsafe"

	"github.com/pathtrace/pathtrace/bpf"
)

// With Config.Snap, each ring-buffer record is an event followed by its packet's first bytes
// from the IP header (struct snap, bpf/include/snap.h).
var (
	eventSize = int(unsafe.Sizeof(bpf.PathtraceEvent{}))
	snapSize  = int(unsafe.Sizeof(bpf.PathtraceSnap{}))
)

// snapBytes is the headers of the packet a record carries after its event, or nil. The kernel
// copies up to 128 bytes; what is kept is only the headers in them (IP, transport, a tunnel's
// carried packet's headers, the packet an ICMP error quotes), so a trace holds no payload.
func snapBytes(raw []byte) []byte {
	if len(raw) < eventSize+snapSize {
		return nil
	}
	s := (*bpf.PathtraceSnap)(unsafe.Pointer(&raw[eventSize]))
	n := min(int(s.Len), len(s.Data))
	n = headersLen(s.Data[:n], 2)
	if n == 0 {
		return nil
	}
	return append([]byte(nil), s.Data[:n]...)
}

const (
	protoICMP   = 1
	protoIPIP   = 4
	protoTCP    = 6
	protoUDP    = 17
	protoIPv6   = 41
	protoICMPv6 = 58
)

// headersLen is how many of b's bytes (a packet from its IP header) are headers: the IP
// header, the transport header, and, up to depth tunnels deep, the packet a tunnel carries.
// What b lacks is not counted: the result is at most len(b).
func headersLen(b []byte, depth int) int {
	if len(b) == 0 {
		return 0
	}
	var hl int
	var proto byte
	switch b[0] >> 4 {
	case 4:
		hl = int(b[0]&0x0f) * 4
		if hl < 20 || len(b) < 20 {
			return min(len(b), max(hl, 20))
		}
		proto = b[9]
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			return min(hl, len(b)) // a later fragment: no transport header
		}
	case 6:
		hl = 40
		if len(b) < hl {
			return len(b)
		}
		proto = b[6]
		// Hop-by-hop, routing, destination options, fragment: as far as the kernel side skips.
		for range 4 {
			if proto != 0 && proto != 43 && proto != 60 && proto != 44 {
				break
			}
			if len(b) < hl+2 {
				return len(b)
			}
			next, ext := b[hl], 8
			if proto != 44 {
				ext = (int(b[hl+1]) + 1) * 8
			}
			proto, hl = next, hl+ext
		}
	default:
		return 0 // not an IP packet: nothing is kept
	}
	if hl >= len(b) {
		return len(b)
	}
	return hl + transportLen(b[hl:], proto, depth)
}

// transportLen is the length of the transport header at the start of b, and of what it
// carries that is headers too.
func transportLen(b []byte, proto byte, depth int) int {
	n := 0
	switch proto {
	case protoTCP:
		n = 20
		if len(b) > 12 {
			n = max(int(b[12]>>4)*4, 20)
		}
	case protoUDP:
		n = 8
		if depth > 0 && len(b) >= 16 {
			n += tunnelLen(b[8:], depth)
		}
	case protoICMP, protoICMPv6:
		n = 8
		// An error (v4: unreachable, source quench, redirect, time exceeded, parameter
		// problem; v6: types below 128) quotes the packet it is about: its headers.
		if len(b) > 8 && ((proto == protoICMP && (b[0] == 3 || b[0] == 4 || b[0] == 5 || b[0] == 11 || b[0] == 12)) ||
			(proto == protoICMPv6 && b[0] < 128)) {
			n += headersLen(b[8:], 0)
		}
	case protoIPIP, protoIPv6:
		if depth > 0 {
			n = headersLen(b, depth-1)
		}
	}
	return min(n, len(b))
}

// tunnelLen is the length of a VXLAN or Geneve header at the start of b (a UDP payload) with
// the headers of the Ethernet frame it carries; 0 when it is neither. They are recognised as
// the kernel side does, by their shape on any port.
func tunnelLen(b []byte, depth int) int {
	var hl int
	switch {
	case b[0] == 0x08 && b[1] == 0 && b[2] == 0 && b[3] == 0 && b[7] == 0:
		hl = 8 // VXLAN
	case b[0]>>6 == 0 && b[2] == 0x65 && b[3] == 0x58:
		hl = 8 + int(b[0]&0x3f)*4 // Geneve, with its options
	default:
		return 0
	}
	const ethLen = 14
	if len(b) < hl+ethLen {
		return min(hl+ethLen, len(b))
	}
	switch binary.BigEndian.Uint16(b[hl+12:]) {
	case 0x0800, 0x86dd:
		return hl + ethLen + headersLen(b[hl+ethLen:], depth-1)
	}
	return hl + ethLen
}

package nftrace

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// valueKind says how register contents are printed.
type valueKind int

const (
	kindRaw valueKind = iota
	kindAddr
	kindPort // big endian u16
	kindL4   // protocol number
	kindNFProto
	kindEther  // big endian ethertype
	kindIfname // NUL padded interface name
	kindU32    // host endian u32
	kindMark   // host endian u32, hex
	kindCtState
	kindCtDir
	kindU8
)

// formatValue prints register contents as the operand's type.
func formatValue(op *operand, d []byte) string {
	switch op.kind {
	case kindAddr:
		if a, ok := netip.AddrFromSlice(d); ok {
			if op.bits >= 0 && op.bits < a.BitLen() {
				return netip.PrefixFrom(a, op.bits).String()
			}
			return a.String()
		}
	case kindPort:
		if len(d) == 2 {
			return strconv.Itoa(int(binary.BigEndian.Uint16(d)))
		}
	case kindL4:
		if len(d) == 1 {
			if n, ok := l4Names[d[0]]; ok {
				return n
			}
			return strconv.Itoa(int(d[0]))
		}
	case kindNFProto:
		if len(d) == 1 {
			if n, ok := nfprotoNames[d[0]]; ok {
				return n
			}
			return strconv.Itoa(int(d[0]))
		}
	case kindEther:
		if len(d) == 2 {
			v := binary.BigEndian.Uint16(d)
			if n, ok := etherNames[v]; ok {
				return n
			}
			return fmt.Sprintf("0x%04x", v)
		}
	case kindIfname:
		if i := strings.IndexByte(string(d), 0); i >= 0 {
			return strconv.Quote(string(d[:i]))
		}
		// A prefix compare: iifname "veth*".
		return strconv.Quote(string(d) + "*")
	case kindU32:
		if len(d) == 4 {
			return strconv.FormatUint(uint64(binary.NativeEndian.Uint32(d)), 10)
		}
	case kindMark:
		if len(d) == 4 {
			return fmt.Sprintf("0x%08x", binary.NativeEndian.Uint32(d))
		}
	case kindU8:
		if len(d) == 1 {
			return strconv.Itoa(int(d[0]))
		}
	case kindCtState:
		if len(d) == 4 {
			return ctStateText(binary.NativeEndian.Uint32(d))
		}
	case kindCtDir:
		if len(d) == 1 {
			if d[0] == 0 {
				return "original"
			}
			return "reply"
		}
	}
	return fmt.Sprintf("0x%x", d)
}

var (
	nfprotoNames = map[byte]string{unix.NFPROTO_IPV4: "ipv4", unix.NFPROTO_IPV6: "ipv6"}
	etherNames   = map[uint16]string{unix.ETH_P_IP: "ip", unix.ETH_P_IPV6: "ip6", unix.ETH_P_ARP: "arp", unix.ETH_P_8021Q: "vlan"}
	// ctStates are the ct state bits in the order nft lists them.
	ctStates = []struct {
		bit  uint32
		name string
	}{{1, "invalid"}, {2, "established"}, {4, "related"}, {8, "new"}, {64, "untracked"}}
)

func ctStateText(v uint32) string {
	var out []string
	for _, n := range ctStates {
		if v&n.bit != 0 {
			out = append(out, n.name)
			v &^= n.bit
		}
	}
	if v != 0 {
		out = append(out, fmt.Sprintf("0x%x", v))
	}
	if len(out) == 0 {
		return "0x0"
	}
	return strings.Join(out, ",")
}

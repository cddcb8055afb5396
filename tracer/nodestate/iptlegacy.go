package nodestate

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"
)

// LegacyRule is one rule of a legacy iptables (x_tables) table, as `iptables-legacy -S` would
// print it (matches and targets by name, without their options), with its counters.
type LegacyRule struct {
	Table, Chain string
	Hook         string // the built-in chain's hook the rule's chain hangs from ("" for a user chain)
	Spec         string // "-A FORWARD -s 10.0.1.2/32 -j DROP"
	Target       string // "DROP", "ACCEPT", "REJECT", a chain...
	Packets      uint64
}

// x_tables getsockopt interface (linux/netfilter_ipv4/ip_tables.h).
const (
	iptSoGetInfo    = 64
	iptSoGetEntries = 65
	iptInfoLen      = 84  // struct ipt_getinfo
	iptEntryLen     = 112 // struct ipt_entry
	iptGetEntriesHd = 40  // struct ipt_get_entries up to entrytable (8-aligned)
)

var hookNames = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// LegacyIptablesRules reads the IPv4 legacy table's rules in the namespace. Only a table
// LegacyIptables listed may be asked for: asking for another would create it.
func (r *Reader) LegacyIptablesRules(ino uint32, table string) ([]LegacyRule, error) {
	var out []LegacyRule
	err := r.Do(ino, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		info := make([]byte, iptInfoLen)
		copy(info, table)
		if err := getsockopt(fd, iptSoGetInfo, info); err != nil {
			return fmt.Errorf("IPT_SO_GET_INFO %s: %w", table, err)
		}
		ne := binary.NativeEndian
		valid := ne.Uint32(info[32:])
		var hookEntry [5]uint32
		for i := range hookEntry {
			hookEntry[i] = ne.Uint32(info[36+4*i:])
		}
		size := ne.Uint32(info[80:])
		buf := make([]byte, iptGetEntriesHd+int(size))
		copy(buf, table)
		ne.PutUint32(buf[32:], size)
		if err := getsockopt(fd, iptSoGetEntries, buf); err != nil {
			return fmt.Errorf("IPT_SO_GET_ENTRIES %s: %w", table, err)
		}
		out = parseLegacy(table, buf[iptGetEntriesHd:], valid, hookEntry)
		return nil
	})
	return out, err
}

func getsockopt(fd, opt int, buf []byte) error {
	n := uint32(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_IP, uintptr(opt), uintptr(unsafePointer(buf)), uintptr(unsafePointer32(&n)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// parseLegacy walks a table's entries: built-in chains start at their hook's entry, user
// chains at an ERROR target naming them; each chain's last entry is its policy (not a rule).
func parseLegacy(table string, b []byte, valid uint32, hookEntry [5]uint32) []LegacyRule {
	ne := binary.NativeEndian
	var out []LegacyRule
	chain, hook := "", ""
	var chainRules []LegacyRule
	flush := func() {
		// The chain's last entry is its policy (built-in) or its RETURN (user): not a rule.
		if len(chainRules) > 0 {
			out = append(out, chainRules[:len(chainRules)-1]...)
		}
		chainRules = nil
	}
	for off := 0; off+iptEntryLen <= len(b); {
		e := b[off:]
		tOff, next := int(ne.Uint16(e[88:])), int(ne.Uint16(e[90:]))
		if next < iptEntryLen || off+next > len(b) || tOff > next {
			break
		}
		for h := 0; h < 5; h++ {
			if valid&(1<<h) != 0 && hookEntry[h] == uint32(off) {
				flush()
				chain, hook = hookNames[h], strings.ToLower(hookNames[h])
			}
		}
		t := e[tOff:next]
		tname := ""
		if len(t) >= 32 {
			tname = strings.TrimRight(string(t[2:31]), "\x00")
		}
		if tname == "ERROR" {
			flush()
			chain, hook = strings.TrimRight(string(t[32:]), "\x00"), ""
			off += next
			continue
		}
		target := tname
		if tname == "" && len(t) >= 36 {
			v := int32(ne.Uint32(t[32:]))
			switch {
			case v == -1:
				target = "DROP"
			case v == -2:
				target = "ACCEPT"
			case v == -5: // XT_RETURN = -NF_REPEAT-1
				target = "RETURN"
			case v >= 0:
				target = jumpName(b, int(v))
			}
		}
		words := []string{"-A", chain}
		words = append(words, ipWords(e)...)
		for m := iptEntryLen; m+32 <= tOff; {
			msize := int(ne.Uint16(e[m:]))
			if msize < 32 {
				break
			}
			words = append(words, "-m", strings.TrimRight(string(e[m+2:m+31]), "\x00"))
			m += msize
		}
		words = append(words, "-j", target)
		chainRules = append(chainRules, LegacyRule{Table: table, Chain: chain, Hook: hook, Spec: strings.Join(words, " "), Target: target, Packets: ne.Uint64(e[96:])})
		off += next
	}
	flush()
	return out
}

// jumpName names the user chain whose ERROR head precedes the entry at offset to.
func jumpName(b []byte, to int) string {
	ne := binary.NativeEndian
	name := fmt.Sprintf("offset %d", to)
	for off := 0; off+iptEntryLen <= len(b) && off < to; {
		e := b[off:]
		tOff, next := int(ne.Uint16(e[88:])), int(ne.Uint16(e[90:]))
		if next < iptEntryLen || off+next > len(b) {
			break
		}
		if t := e[tOff:next]; len(t) > 32 && strings.TrimRight(string(t[2:31]), "\x00") == "ERROR" {
			name = strings.TrimRight(string(t[32:]), "\x00")
		}
		off += next
	}
	return name
}

// ipWords prints struct ipt_ip's -s, -d, -i, -o, -p as iptables does.
func ipWords(e []byte) []string {
	var w []string
	inv := e[83]
	addr := func(flag string, a, m []byte, bit byte) {
		mask := netip.AddrFrom4([4]byte(m))
		if mask.IsUnspecified() {
			return
		}
		bits := 0
		for _, c := range m {
			for ; c&0x80 != 0; c <<= 1 {
				bits++
			}
		}
		if inv&bit != 0 {
			w = append(w, "!")
		}
		w = append(w, flag, netip.PrefixFrom(netip.AddrFrom4([4]byte(a)), bits).String())
	}
	addr("-s", e[0:4], e[8:12], 0x08)  // IPT_INV_SRCIP
	addr("-d", e[4:8], e[12:16], 0x10) // IPT_INV_DSTIP
	iface := func(flag string, name []byte, bit byte) {
		n := strings.TrimRight(string(name), "\x00")
		if n == "" {
			return
		}
		if inv&bit != 0 {
			w = append(w, "!")
		}
		w = append(w, flag, n)
	}
	iface("-i", e[16:32], 0x01) // IPT_INV_VIA_IN
	iface("-o", e[32:48], 0x02) // IPT_INV_VIA_OUT
	if p := binary.NativeEndian.Uint16(e[80:]); p != 0 {
		if inv&0x40 != 0 { // XT_INV_PROTO
			w = append(w, "!")
		}
		name := map[uint16]string{1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}[p]
		if name == "" {
			name = fmt.Sprint(p)
		}
		w = append(w, "-p", name)
	}
	return w
}

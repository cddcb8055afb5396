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

// x_tables getsockopt interface (linux/netfilter_ipv4/ip_tables.h, netfilter_ipv6/ip6_tables.h):
// both families share the get-info and get-entries structures; their entries differ in the
// address header before the offsets and counters.
const (
	iptSoGetInfo    = 64 // IPT_SO_GET_INFO, IP6T_SO_GET_INFO
	iptSoGetEntries = 65
	iptInfoLen      = 84 // struct ipt_getinfo
	iptGetEntriesHd = 40 // struct ipt_get_entries up to entrytable (8-aligned)
)

// xtFamily is where one family's struct ipt_entry / ip6t_entry keep their fields.
type xtFamily struct {
	domain, level int
	entryLen      int // sizeof the entry header; matches follow it
	offsets       int // target_offset (u16), next_offset right after it
	counters      int // struct xt_counters: packets (u64)
	words         func(e []byte) []string
}

var (
	xtIPv4 = xtFamily{domain: unix.AF_INET, level: unix.SOL_IP, entryLen: 112, offsets: 88, counters: 96, words: ipWords}
	xtIPv6 = xtFamily{domain: unix.AF_INET6, level: unix.SOL_IPV6, entryLen: 168, offsets: 140, counters: 152, words: ip6Words}
)

var hookNames = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// LegacyIptablesRules reads a legacy table's rules in the namespace (ip6tables' when ipv6).
// Only a table LegacyIptables listed may be asked for: asking for another would create it.
func (r *Reader) LegacyIptablesRules(ino uint32, table string, ipv6 bool) ([]LegacyRule, error) {
	fam := xtIPv4
	if ipv6 {
		fam = xtIPv6
	}
	var out []LegacyRule
	err := r.Do(ino, func() error {
		fd, err := unix.Socket(fam.domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		info := make([]byte, iptInfoLen)
		copy(info, table)
		if err := getsockopt(fd, fam.level, iptSoGetInfo, info); err != nil {
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
		if err := getsockopt(fd, fam.level, iptSoGetEntries, buf); err != nil {
			return fmt.Errorf("IPT_SO_GET_ENTRIES %s: %w", table, err)
		}
		out = fam.parse(table, buf[iptGetEntriesHd:], valid, hookEntry)
		return nil
	})
	return out, err
}

func getsockopt(fd, level, opt int, buf []byte) error {
	n := uint32(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafePointer(buf)), uintptr(unsafePointer32(&n)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// parse walks a table's entries: built-in chains start at their hook's entry, user chains at
// an ERROR target naming them; each chain's last entry is its policy (not a rule).
func (fam xtFamily) parse(table string, b []byte, valid uint32, hookEntry [5]uint32) []LegacyRule {
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
	for off := 0; off+fam.entryLen <= len(b); {
		e := b[off:]
		tOff, next := int(ne.Uint16(e[fam.offsets:])), int(ne.Uint16(e[fam.offsets+2:]))
		if next < fam.entryLen || off+next > len(b) || tOff > next || tOff < fam.entryLen {
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
				target = fam.jumpName(b, int(v))
			}
		}
		words := []string{"-A", chain}
		words = append(words, fam.words(e)...)
		for m := fam.entryLen; m+32 <= tOff; {
			msize := int(ne.Uint16(e[m:]))
			if msize < 32 {
				break
			}
			words = append(words, "-m", strings.TrimRight(string(e[m+2:m+31]), "\x00"))
			m += msize
		}
		words = append(words, "-j", target)
		chainRules = append(chainRules, LegacyRule{Table: table, Chain: chain, Hook: hook, Spec: strings.Join(words, " "), Target: target, Packets: ne.Uint64(e[fam.counters:])})
		off += next
	}
	flush()
	return out
}

// jumpName names the user chain whose ERROR head precedes the entry at offset to.
func (fam xtFamily) jumpName(b []byte, to int) string {
	ne := binary.NativeEndian
	name := fmt.Sprintf("offset %d", to)
	for off := 0; off+fam.entryLen <= len(b) && off < to; {
		e := b[off:]
		tOff, next := int(ne.Uint16(e[fam.offsets:])), int(ne.Uint16(e[fam.offsets+2:]))
		if next < fam.entryLen || off+next > len(b) || tOff > next {
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
	p := binary.NativeEndian.Uint16(e[80:])
	return xtWords(e[0:4], e[4:8], e[8:12], e[12:16], e[16:32], e[32:48], p, e[83])
}

// ip6Words prints struct ip6t_ip6's -s, -d, -i, -o, -p as ip6tables does (its protocol counts
// only with IP6T_F_PROTO set).
func ip6Words(e []byte) []string {
	p := binary.NativeEndian.Uint16(e[128:])
	if e[131]&0x01 == 0 { // IP6T_F_PROTO
		p = 0
	}
	return xtWords(e[0:16], e[16:32], e[32:48], e[48:64], e[64:80], e[80:96], p, e[132])
}

// xtWords prints an entry's addresses, devices and protocol; the inversion bits (IPT_INV_*,
// IP6T_INV_*) are the same in both families.
func xtWords(src, dst, smsk, dmsk, in, out []byte, proto uint16, inv byte) []string {
	var w []string
	addr := func(flag string, a, m []byte, bit byte) {
		mask, _ := netip.AddrFromSlice(m)
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
		ip, _ := netip.AddrFromSlice(a)
		w = append(w, flag, netip.PrefixFrom(ip, bits).String())
	}
	addr("-s", src, smsk, 0x08) // IPT_INV_SRCIP
	addr("-d", dst, dmsk, 0x10) // IPT_INV_DSTIP
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
	iface("-i", in, 0x01)  // IPT_INV_VIA_IN
	iface("-o", out, 0x02) // IPT_INV_VIA_OUT
	if proto != 0 {
		if inv&0x40 != 0 { // XT_INV_PROTO
			w = append(w, "!")
		}
		name := map[uint16]string{1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}[proto]
		if name == "" {
			name = fmt.Sprint(proto)
		}
		w = append(w, "-p", name)
	}
	return w
}

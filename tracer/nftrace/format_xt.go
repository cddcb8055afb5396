package nftrace

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// iptablesTables are the tables iptables-nft creates, in the ip (iptables) and ip6
// (ip6tables) families.
var iptablesTables = map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true, "security": true}

// FormatIptables renders a rule made by iptables-nft as `iptables -S` prints it:
// "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP". ok is false when the rule is not
// one iptables-nft would have made (another family or table, or an expression iptables has
// no words for): nft's own text is then the rule's name.
func FormatIptables(r *nftables.Rule) (string, bool) {
	if r == nil || r.Table == nil || r.Chain == nil {
		return "", false
	}
	fam := byte(r.Table.Family)
	if (fam != unix.NFPROTO_IPV4 && fam != unix.NFPROTO_IPV6) || !iptablesTables[r.Table.Name] {
		return "", false
	}
	// iptables-nft gives every rule a counter; its chains are named in capitals (INPUT,
	// FORWARD, KUBE-FORWARD...), nft users' rarely. A compat match or target settles it.
	xtMade, counted := false, false
	for _, e := range r.Exprs {
		switch e.(type) {
		case *expr.Match, *expr.Target:
			xtMade = true
		case *expr.Counter:
			counted = true
		}
	}
	if !xtMade && (!counted || strings.ToUpper(r.Chain.Name) != r.Chain.Name) {
		return "", false
	}
	p := iptParser{family: fam, regs: map[uint32]iptLoad{}, basic: map[string][]string{}}
	for _, e := range r.Exprs {
		if !p.expr(e) {
			return "", false
		}
	}
	words := append([]string{"-A", r.Chain.Name}, p.all()...)
	if c := ruleComment(r.UserData); c != "" && !p.comment {
		words = append(words, "-m", "comment", "--comment", iptQuote(c))
	}
	return strings.Join(words, " "), true
}

// IptablesCommand is the iptables command for a rule's family: iptables or ip6tables.
func IptablesCommand(family string) string {
	if family == "ip6" {
		return "ip6tables"
	}
	return "iptables"
}

// iptLoad is what a register holds in an iptables-nft rule.
type iptLoad struct {
	what string // "-s", "-d", "-i", "-o", "-p", "--sport", "--dport", "mark"
	n    int    // bytes loaded, for an address prefix loaded short
	mask []byte
}

type iptParser struct {
	family  byte
	regs    map[uint32]iptLoad
	basic   map[string][]string // -s, -d, -i, -o, -p: printed first, in that order, as iptables does
	words   []string
	proto   string
	comment bool
}

var basicOrder = []string{"-s", "-d", "-i", "-o", "-p"}

// all is the rule's options in iptables' order.
func (p *iptParser) all() []string {
	var out []string
	for _, k := range basicOrder {
		out = append(out, p.basic[k]...)
	}
	return append(out, p.words...)
}

func (p *iptParser) add(w ...string) { p.words = append(p.words, w...) }

func (p *iptParser) expr(e expr.Any) bool {
	switch e := e.(type) {
	case *expr.Payload:
		if e.OperationType != expr.PayloadLoad {
			return false
		}
		what := ""
		alen := uint32(4)
		saddr, daddr := uint32(12), uint32(16)
		if p.family == unix.NFPROTO_IPV6 {
			alen, saddr, daddr = 16, 8, 24
		}
		nh := e.Base == expr.PayloadBaseNetworkHeader
		switch {
		// iptables-nft loads only the prefix's bytes of an address: /16 is a 2-byte load.
		case nh && e.Offset == saddr && e.Len >= 1 && e.Len <= alen:
			what = "-s"
		case nh && e.Offset == daddr && e.Len >= 1 && e.Len <= alen:
			what = "-d"
		case e.Base == expr.PayloadBaseNetworkHeader && p.family == unix.NFPROTO_IPV4 && e.Offset == 9 && e.Len == 1:
			what = "-p"
		case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 0 && e.Len == 2:
			what = "--sport"
		case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2:
			what = "--dport"
		default:
			return false
		}
		p.regs[e.DestRegister] = iptLoad{what: what, n: int(e.Len)}
	case *expr.Meta:
		if e.SourceRegister {
			return false
		}
		what := ""
		switch e.Key {
		case expr.MetaKeyIIFNAME:
			what = "-i"
		case expr.MetaKeyOIFNAME:
			what = "-o"
		case expr.MetaKeyL4PROTO:
			what = "-p"
		case expr.MetaKeyMARK:
			what = "mark"
		default:
			return false
		}
		p.regs[e.Register] = iptLoad{what: what}
	case *expr.Bitwise:
		l, ok := p.regs[e.SourceRegister]
		if !ok {
			return false
		}
		l.mask = e.Mask
		p.regs[e.DestRegister] = l
	case *expr.Cmp:
		l, ok := p.regs[e.Register]
		if !ok || (e.Op != expr.CmpOpEq && e.Op != expr.CmpOpNeq) {
			return false
		}
		neg := e.Op == expr.CmpOpNeq
		return p.cmp(l, neg, e.Data)
	case *expr.Range:
		l, ok := p.regs[e.Register]
		if !ok || (l.what != "--sport" && l.what != "--dport") || len(e.FromData) != 2 || len(e.ToData) != 2 {
			return false
		}
		p.addPort(l.what, e.Op == expr.CmpOpNeq, fmt.Sprintf("%d:%d", binary.BigEndian.Uint16(e.FromData), binary.BigEndian.Uint16(e.ToData)))
	case *expr.Counter:
	case *expr.Limit:
		// iptables-nft writes -m limit as nft's own limit, with the same burst.
		if e.Type != expr.LimitTypePkts || e.Over {
			return false
		}
		unit := map[expr.LimitTime]string{expr.LimitTimeSecond: "sec", expr.LimitTimeMinute: "min", expr.LimitTimeHour: "hour", expr.LimitTimeDay: "day"}[e.Unit]
		if unit == "" {
			return false
		}
		p.add("-m", "limit", "--limit", fmt.Sprintf("%d/%s", e.Rate, unit))
		if e.Burst != 5 { // the default, which iptables does not print
			p.add("--limit-burst", strconv.Itoa(int(e.Burst)))
		}
	case *expr.Match:
		return p.match(e)
	case *expr.Target:
		p.add("-j", e.Name)
		p.add(iptTargetOptions(e)...)
	case *expr.Verdict:
		switch e.Kind {
		case expr.VerdictAccept:
			p.add("-j", "ACCEPT")
		case expr.VerdictDrop:
			p.add("-j", "DROP")
		case expr.VerdictReturn:
			p.add("-j", "RETURN")
		case expr.VerdictJump:
			p.add("-j", e.Chain)
		case expr.VerdictGoto:
			p.add("-g", e.Chain)
		default:
			return false
		}
	case *expr.Reject:
		p.add("-j", "REJECT")
		if e.Type == unix.NFT_REJECT_TCP_RST {
			p.add("--reject-with", "tcp-reset")
		} else if name, ok := rejectWith[uint32(e.Code)]; ok && p.family == unix.NFPROTO_IPV4 {
			p.add("--reject-with", name)
		}
	default:
		return false
	}
	return true
}

func (p *iptParser) cmp(l iptLoad, neg bool, data []byte) bool {
	not := func(w ...string) {
		var out []string
		if neg {
			out = append(out, "!")
		}
		p.basic[w[0]] = append(out, w...)
	}
	switch l.what {
	case "-s", "-d":
		full := 4
		if p.family == unix.NFPROTO_IPV6 {
			full = 16
		}
		if len(data) > full {
			return false
		}
		addr := make([]byte, full)
		copy(addr, data)
		a, _ := netip.AddrFromSlice(addr)
		bits := 8 * len(data)
		if l.mask != nil {
			if bits = prefixLen(l.mask); bits < 0 {
				return false
			}
		}
		not(l.what, netip.PrefixFrom(a, bits).String())
	case "mark":
		if len(data) != 4 {
			return false
		}
		v := fmt.Sprintf("0x%x", binary.NativeEndian.Uint32(data))
		if len(l.mask) == 4 && binary.NativeEndian.Uint32(l.mask) != 0xffffffff {
			v += fmt.Sprintf("/0x%x", binary.NativeEndian.Uint32(l.mask))
		}
		if neg {
			p.add("-m", "mark", "!", "--mark", v)
		} else {
			p.add("-m", "mark", "--mark", v)
		}
	case "-i", "-o":
		name := string(bytes.TrimRight(data, "\x00"))
		if !bytes.HasSuffix(data, []byte{0}) {
			name += "+" // iptables' wildcard: a prefix compare
		}
		not(l.what, name)
	case "-p":
		if len(data) != 1 {
			return false
		}
		p.proto = protoName(data[0])
		not("-p", p.proto)
	case "--sport", "--dport":
		if len(data) != 2 {
			return false
		}
		p.addPort(l.what, neg, strconv.Itoa(int(binary.BigEndian.Uint16(data))))
	default:
		return false
	}
	return true
}

// addPort adds a port match as iptables -S prints it: "-m tcp --dport 80".
func (p *iptParser) addPort(what string, neg bool, v string) {
	if p.proto != "" && !p.hasMatch(p.proto) {
		p.add("-m", p.proto)
	}
	if neg {
		p.add("!")
	}
	p.add(what, v)
}

func (p *iptParser) hasMatch(name string) bool {
	for i := 0; i+1 < len(p.words); i++ {
		if p.words[i] == "-m" && p.words[i+1] == name {
			return true
		}
	}
	return false
}

func protoName(n byte) string {
	switch n {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "ipv6-icmp"
	case unix.IPPROTO_SCTP:
		return "sctp"
	}
	return strconv.Itoa(int(n))
}

func iptQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\") {
		return s
	}
	return strconv.Quote(s)
}

// match renders an xt match as iptables prints it; a match whose info it cannot decode is
// "-m <name>" alone (the match is still named).
func (p *iptParser) match(m *expr.Match) bool {
	p.add("-m", m.Name)
	raw := func() []byte {
		if u, ok := m.Info.(*xt.Unknown); ok && u != nil {
			return *u
		}
		return nil
	}
	switch m.Name {
	case "comment":
		if c, ok := m.Info.(*xt.Comment); ok && c != nil {
			p.add("--comment", iptQuote(string(*c)))
			p.comment = true
		}
	case "conntrack":
		var base *xt.ConntrackMtinfoBase
		var state uint16
		switch i := m.Info.(type) {
		case *xt.ConntrackMtinfo1:
			base, state = &i.ConntrackMtinfoBase, uint16(i.StateMask)
		case *xt.ConntrackMtinfo2:
			base, state = &i.ConntrackMtinfoBase, i.StateMask
		case *xt.ConntrackMtinfo3:
			base, state = &i.ConntrackMtinfoBase, i.StateMask
		}
		if base != nil && base.MatchFlags&uint16(xt.ConntrackState) != 0 {
			if base.InvertFlags&uint16(xt.ConntrackState) != 0 {
				p.add("!")
			}
			p.add("--ctstate", CtStates(state))
		}
	case "tcp", "udp":
		var sp, dp [2]uint16
		switch i := m.Info.(type) {
		case *xt.Tcp:
			sp, dp = i.SrcPorts, i.DstPorts
		case *xt.Udp:
			sp, dp = i.SrcPorts, i.DstPorts
		}
		ports := func(what string, r [2]uint16) {
			switch {
			case r[0] == 0 && r[1] == 0xffff:
			case r[0] == r[1]:
				p.add(what, strconv.Itoa(int(r[0])))
			default:
				p.add(what, fmt.Sprintf("%d:%d", r[0], r[1]))
			}
		}
		ports("--sport", sp)
		ports("--dport", dp)
	case "addrtype":
		if i, ok := m.Info.(*xt.AddrTypeV1); ok && i != nil {
			if i.Source != 0 {
				if i.Flags&1 != 0 {
					p.add("!")
				}
				p.add("--src-type", addrTypes(uint16(i.Source)))
			}
			if i.Dest != 0 {
				if i.Flags&2 != 0 {
					p.add("!")
				}
				p.add("--dst-type", addrTypes(uint16(i.Dest)))
			}
		}
	case "multiport":
		p.add(multiportOptions(m.Rev, raw())...)
	case "mark":
		p.add(markOptions(m.Rev, raw())...)
	case "set":
		p.add(setOptions(raw())...)
	case "physdev":
		p.add(physdevOptions(raw())...)
	case "limit":
		p.add(limitOptions(raw())...)
	}
	return true
}

// CtStates names conntrack states as iptables' --ctstate does, from an XT_CONNTRACK_STATE
// mask (the bits of nft's ct state: 1 invalid, 2 established, 4 related, 8 new, 64
// untracked; iptables also has 256 untracked, 64 snat, 128 dnat).
func CtStates(mask uint16) string {
	var s []string
	for _, b := range []struct {
		bit  uint16
		name string
	}{{1, "INVALID"}, {8, "NEW"}, {4, "RELATED"}, {2, "ESTABLISHED"}, {256, "UNTRACKED"}, {64, "SNAT"}, {128, "DNAT"}} {
		if mask&b.bit != 0 {
			s = append(s, b.name)
		}
	}
	return strings.Join(s, ",")
}

var addrTypeNames = []string{"UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE"}

func addrTypes(mask uint16) string {
	var s []string
	for i, n := range addrTypeNames {
		if mask&(1<<i) != 0 {
			s = append(s, n)
		}
	}
	return strings.Join(s, ",")
}

// multiportOptions decodes struct xt_multiport (rev 0) and xt_multiport_v1 (rev 1): flags
// (1 source, 2 destination, 3 either), count, ports[15] (host order), then in rev 1
// pflags[15] (a port starting a range) and invert.
func multiportOptions(rev uint32, b []byte) []string {
	if len(b) < 32 || b[1] > 15 {
		return nil
	}
	n := int(b[1])
	port := func(i int) uint16 { return binary.NativeEndian.Uint16(b[2+2*i:]) }
	var list []string
	inv := false
	for i := 0; i < n; i++ {
		if rev >= 1 && len(b) >= 48 && b[32+i] != 0 && i+1 < n {
			list = append(list, fmt.Sprintf("%d:%d", port(i), port(i+1)))
			i++
			continue
		}
		list = append(list, strconv.Itoa(int(port(i))))
	}
	if rev >= 1 && len(b) >= 48 {
		inv = b[47] != 0
	}
	// XT_MULTIPORT_SOURCE 0, _DESTINATION 1, _EITHER 2.
	opt := map[byte]string{0: "--sports", 1: "--dports", 2: "--ports"}[b[0]]
	if opt == "" {
		return nil
	}
	out := []string{}
	if inv {
		out = append(out, "!")
	}
	return append(out, opt, strings.Join(list, ","))
}

// markOptions decodes xt_mark_info (rev 0: unsigned long mark, mask; u8 invert) and
// xt_mark_mtinfo1 (rev 1: u32 mark, mask; u8 invert).
func markOptions(rev uint32, b []byte) []string {
	var mark, mask uint32
	var inv bool
	switch {
	case rev == 1 && len(b) >= 9:
		mark, mask, inv = binary.NativeEndian.Uint32(b), binary.NativeEndian.Uint32(b[4:]), b[8] != 0
	case rev == 0 && len(b) >= 17:
		mark, mask, inv = uint32(binary.NativeEndian.Uint64(b)), uint32(binary.NativeEndian.Uint64(b[8:])), b[16] != 0
	default:
		return nil
	}
	v := fmt.Sprintf("0x%x", mark)
	if mask != 0xffffffff {
		v += fmt.Sprintf("/0x%x", mask)
	}
	if inv {
		return []string{"!", "--mark", v}
	}
	return []string{"--mark", v}
}

// setOptions decodes the xt_set_info at the start of every xt_set_info_match revision
// (ip_set_id_t index, u8 dim, u8 flags: bit i set is "src" for dimension i+1). The set's
// name is not in the rule, only its index: it is printed as "#<index>" (`ipset list` names
// it).
func setOptions(b []byte) []string {
	if len(b) < 4 {
		return nil
	}
	idx, dim, flags := binary.NativeEndian.Uint16(b), int(b[2]), b[3]
	if dim < 1 || dim > 6 {
		return nil
	}
	var dirs []string
	for i := 0; i < dim; i++ {
		if flags&(1<<i) != 0 {
			dirs = append(dirs, "src")
		} else {
			dirs = append(dirs, "dst")
		}
	}
	return []string{"--match-set", fmt.Sprintf("#%d", idx), strings.Join(dirs, ",")}
}

// physdevOptions decodes xt_physdev_info: physindev[16], in_mask[16], physoutdev[16],
// out_mask[16], u8 invert, u8 bitmask (1 in, 2 out, 4 is-bridged, 8 is-in, 16 is-out).
func physdevOptions(b []byte) []string {
	if len(b) < 66 {
		return nil
	}
	inv, bits := b[64], b[65]
	var out []string
	opt := func(bit byte, w ...string) {
		if bits&bit == 0 {
			return
		}
		if inv&bit != 0 {
			out = append(out, "!")
		}
		out = append(out, w...)
	}
	name := func(s []byte) string { return string(bytes.TrimRight(s, "\x00")) }
	opt(1, "--physdev-in", name(b[0:16]))
	opt(2, "--physdev-out", name(b[32:48]))
	opt(8, "--physdev-is-in")
	opt(16, "--physdev-is-out")
	opt(4, "--physdev-is-bridged")
	return out
}

// limitOptions decodes xt_rateinfo's avg (the period between packets, in 1/10000 s) and
// burst, printed as iptables does: the largest unit that gives a whole rate.
func limitOptions(b []byte) []string {
	if len(b) < 8 {
		return nil
	}
	avg, burst := binary.NativeEndian.Uint32(b), binary.NativeEndian.Uint32(b[4:])
	if avg == 0 {
		return nil
	}
	const scale = 10000
	rate := ""
	for _, u := range []struct {
		name string
		mult uint64
	}{{"day", 86400 * scale}, {"hour", 3600 * scale}, {"min", 60 * scale}, {"sec", scale}} {
		period := uint64(avg)
		if period > u.mult || u.mult/period < u.mult%period {
			continue
		}
		rate = fmt.Sprintf("%d/%s", u.mult/period, u.name)
		break
	}
	if rate == "" {
		rate = fmt.Sprintf("%d/sec", scale/uint64(avg))
	}
	if burst == 5 { // the default, which iptables does not print
		return []string{"--limit", rate}
	}
	return []string{"--limit", rate, "--limit-burst", strconv.Itoa(int(burst))}
}

// rejectWith names ipt_reject_with values (the REJECT target's info and an nft reject's
// ICMP code both fit the common ones).
var rejectWith = map[uint32]string{
	0: "icmp-net-unreachable", 1: "icmp-host-unreachable", 2: "icmp-proto-unreachable",
	3: "icmp-port-unreachable", 5: "icmp-net-prohibited", 6: "icmp-host-prohibited",
	7: "tcp-reset", 8: "icmp-admin-prohibited",
}

// iptTargetOptions decodes the common targets' options.
func iptTargetOptions(t *expr.Target) []string {
	u, _ := t.Info.(*xt.Unknown)
	if u == nil {
		return nil
	}
	b := []byte(*u)
	switch t.Name {
	case "REJECT":
		if len(b) >= 4 {
			if name, ok := rejectWith[binary.NativeEndian.Uint32(b)]; ok {
				return []string{"--reject-with", name}
			}
		}
	case "MARK":
		// xt_mark_tginfo2: u32 mark, mask.
		if t.Rev == 2 && len(b) >= 8 {
			return []string{"--set-xmark", fmt.Sprintf("0x%x/0x%x", binary.NativeEndian.Uint32(b), binary.NativeEndian.Uint32(b[4:]))}
		}
	}
	return nil
}

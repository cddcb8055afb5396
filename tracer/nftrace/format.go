package nftrace

import (
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

// FormatRule renders a rule's expressions roughly as `nft list ruleset`
// would: "ip saddr 10.0.1.2 counter packets 3 bytes 252 drop". Matches are
// reconstructed from the register loads they compare (payload, meta, ct);
// implicit protocol dependencies (meta nfproto ipv4 before ip saddr, meta
// l4proto tcp before tcp dport) are left out as nft does. iptables-nft
// compat expressions show as "xt match <name>" / "xt target <name>", and the
// rule's comment (nft comment or iptables-nft -m comment) comes last.
// Expressions it has no words for appear as their Go type name.
func FormatRule(r *nftables.Rule) string {
	if r == nil {
		return ""
	}
	var fam byte
	if r.Table != nil {
		fam = byte(r.Table.Family)
	}
	f := formatter{family: fam, regs: map[uint32]*operand{}, imm: map[uint32][]byte{}}
	if fam == unix.NFPROTO_IPV4 || fam == unix.NFPROTO_IPV6 {
		f.l3 = fam
	}
	for _, e := range r.Exprs {
		f.expr(e)
	}
	out := elideDependencies(f.stmts)
	var words []string
	for _, s := range out {
		words = append(words, s.text)
	}
	if c := ruleComment(r.UserData); c != "" {
		words = append(words, "comment "+strconv.Quote(c))
	}
	return strings.Join(words, " ")
}

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

// operand is what a register holds: a description of the loaded field.
type operand struct {
	text string
	kind valueKind
	// needs is the protocol a payload field depends on ("ip", "ip6",
	// "tcp", ...), provides what an equality on this field establishes.
	needs    string
	provides func(data []byte) string
	bits     int    // address prefix length from a bitwise mask, -1 if none
	mask     []byte // other bitwise mask
}

type stmt struct {
	text     string
	needs    string
	provides string
}

type formatter struct {
	family byte
	l3     byte   // NFPROTO_IPV4/IPV6 once known
	l4     string // "tcp", "udp", ... once known
	regs   map[uint32]*operand
	imm    map[uint32][]byte
	stmts  []stmt
}

func (f *formatter) add(s stmt) { f.stmts = append(f.stmts, s) }

func (f *formatter) expr(e expr.Any) {
	switch e := e.(type) {
	case *expr.Payload:
		if e.OperationType == expr.PayloadWrite {
			f.add(stmt{text: fmt.Sprintf("%s set %s", f.payloadName(e).text, f.regText(e.SourceRegister, f.payloadName(e)))})
			return
		}
		f.regs[e.DestRegister] = f.payloadName(e)
	case *expr.Meta:
		op := metaOperand(e.Key)
		if e.SourceRegister {
			f.add(stmt{text: fmt.Sprintf("%s set %s", op.text, f.regText(e.Register, op))})
			return
		}
		f.regs[e.Register] = op
	case *expr.Ct:
		op := ctOperand(e)
		if e.SourceRegister {
			f.add(stmt{text: fmt.Sprintf("%s set %s", op.text, f.regText(e.Register, op))})
			return
		}
		f.regs[e.Register] = op
	case *expr.Bitwise:
		f.bitwise(e)
	case *expr.Cmp:
		f.cmp(e)
	case *expr.Range:
		op := f.reg(e.Register)
		f.add(stmt{text: fmt.Sprintf("%s %s%s-%s", op.text, cmpOpText(e.Op), formatValue(op, e.FromData), formatValue(op, e.ToData)), needs: op.needs})
	case *expr.Lookup:
		op := f.reg(e.SourceRegister)
		neg := ""
		if e.Invert {
			neg = "!= "
		}
		switch {
		case e.IsDestRegSet && e.DestRegister == unix.NFT_REG_VERDICT:
			f.add(stmt{text: fmt.Sprintf("%s vmap @%s", op.text, e.SetName), needs: op.needs})
		case e.IsDestRegSet:
			f.regs[e.DestRegister] = &operand{text: fmt.Sprintf("%s map @%s", op.text, e.SetName), bits: -1}
		default:
			f.add(stmt{text: fmt.Sprintf("%s %s@%s", op.text, neg, e.SetName), needs: op.needs})
		}
	case *expr.Immediate:
		f.imm[e.Register] = e.Data
		delete(f.regs, e.Register)
	case *expr.Verdict:
		f.add(stmt{text: verdictText(e)})
	case *expr.Counter:
		f.add(stmt{text: fmt.Sprintf("counter packets %d bytes %d", e.Packets, e.Bytes)})
	case *expr.Log:
		s := "log"
		if len(e.Data) > 0 {
			s += " prefix " + strconv.Quote(string(e.Data))
		}
		if e.Key&(1<<unix.NFTA_LOG_GROUP) != 0 {
			s += fmt.Sprintf(" group %d", e.Group)
		}
		f.add(stmt{text: s})
	case *expr.Reject:
		s := "reject"
		switch e.Type {
		case unix.NFT_REJECT_TCP_RST:
			s += " with tcp reset"
		case unix.NFT_REJECT_ICMPX_UNREACH:
			s += fmt.Sprintf(" with icmpx %d", e.Code)
		case unix.NFT_REJECT_ICMP_UNREACH:
			if e.Code != 3 { // port-unreachable is the default
				s += fmt.Sprintf(" with icmp %d", e.Code)
			}
		}
		f.add(stmt{text: s})
	case *expr.Limit:
		s := "limit rate "
		if e.Over {
			s += "over "
		}
		unit := map[expr.LimitTime]string{expr.LimitTimeSecond: "second", expr.LimitTimeMinute: "minute",
			expr.LimitTimeHour: "hour", expr.LimitTimeDay: "day", expr.LimitTimeWeek: "week"}[e.Unit]
		if e.Type == expr.LimitTypePktBytes {
			s += fmt.Sprintf("%d bytes/%s", e.Rate, unit)
		} else {
			s += fmt.Sprintf("%d/%s", e.Rate, unit)
		}
		f.add(stmt{text: s})
	case *expr.Masq:
		f.add(stmt{text: "masquerade"})
	case *expr.NAT:
		kind := "snat"
		if e.Type == expr.NATTypeDestNAT {
			kind = "dnat"
		}
		s := kind
		if e.RegAddrMin != 0 {
			op := &operand{kind: kindAddr, bits: -1}
			s += " to " + formatValue(op, f.imm[e.RegAddrMin])
		}
		if e.RegProtoMin != 0 {
			s += ":" + formatValue(&operand{kind: kindPort, bits: -1}, f.imm[e.RegProtoMin])
		}
		f.add(stmt{text: s})
	case *expr.Redir:
		f.add(stmt{text: "redirect"})
	case *expr.Queue:
		f.add(stmt{text: fmt.Sprintf("queue num %d", e.Num)})
	case *expr.Notrack:
		f.add(stmt{text: "notrack"})
	case *expr.Objref:
		kinds := map[int]string{1: "counter", 2: "quota", 3: "ct helper", 4: "limit", 7: "ct timeout", 8: "secmark", 10: "synproxy", 9: "ct expectation"}
		k := kinds[e.Type]
		if k == "" {
			k = "objref"
		}
		f.add(stmt{text: fmt.Sprintf("%s name %s", k, strconv.Quote(e.Name))})
	case *expr.Dynset:
		op := "add"
		if e.Operation == unix.NFT_DYNSET_OP_UPDATE {
			op = "update"
		}
		f.add(stmt{text: fmt.Sprintf("%s @%s { %s }", op, e.SetName, f.reg(e.SrcRegKey).text)})
	case *expr.Match:
		f.add(stmt{text: xtText("match", e.Name, e.Info)})
	case *expr.Target:
		f.add(stmt{text: xtText("target", e.Name, e.Info)})
	case *expr.Fib:
		f.regs[e.Register] = &operand{text: fibText(e), kind: kindRaw, bits: -1}
	default:
		f.add(stmt{text: strings.TrimPrefix(fmt.Sprintf("%T", e), "*")})
	}
}

// reg returns what register n holds, or a placeholder.
func (f *formatter) reg(n uint32) *operand {
	if op := f.regs[n]; op != nil {
		return op
	}
	return &operand{text: fmt.Sprintf("reg%d", n), bits: -1}
}

// regText prints a register used as a source: an immediate value or a
// loaded field.
func (f *formatter) regText(n uint32, as *operand) string {
	if v, ok := f.imm[n]; ok {
		return formatValue(as, v)
	}
	return f.reg(n).text
}

func (f *formatter) bitwise(e *expr.Bitwise) {
	src := f.reg(e.SourceRegister)
	op := *src
	op.mask = nil
	zeroXor := allZero(e.Xor)
	switch {
	case src.kind == kindAddr && zeroXor && prefixLen(e.Mask) >= 0:
		op.bits = prefixLen(e.Mask)
	case zeroXor:
		op.mask = e.Mask
	default:
		op.text = fmt.Sprintf("%s & 0x%x ^ 0x%x", src.text, e.Mask, e.Xor)
		op.kind = kindRaw
	}
	f.regs[e.DestRegister] = &op
}

func (f *formatter) cmp(e *expr.Cmp) {
	op := f.reg(e.Register)
	// Masked fields: ct state new,established, tcp flags syn, ...
	if op.mask != nil && allZero(e.Data) && (e.Op == expr.CmpOpNeq || e.Op == expr.CmpOpEq) {
		neg := ""
		if e.Op == expr.CmpOpEq {
			neg = "!= "
		}
		f.add(stmt{text: fmt.Sprintf("%s %s%s", op.text, neg, formatValue(&operand{kind: op.kind, bits: -1}, op.mask)), needs: op.needs})
		return
	}
	val := formatValue(op, e.Data)
	if op.mask != nil {
		val = fmt.Sprintf("& 0x%x == %s", op.mask, val)
	}
	s := stmt{text: fmt.Sprintf("%s %s%s", op.text, cmpOpText(e.Op), val), needs: op.needs}
	if e.Op == expr.CmpOpEq && op.provides != nil && op.mask == nil {
		s.provides = op.provides(e.Data)
		switch s.provides {
		case "ip":
			f.l3 = unix.NFPROTO_IPV4
		case "ip6":
			f.l3 = unix.NFPROTO_IPV6
		case "":
		default:
			f.l4 = s.provides
		}
	}
	f.add(s)
}

func cmpOpText(op expr.CmpOp) string {
	switch op {
	case expr.CmpOpNeq:
		return "!= "
	case expr.CmpOpLt:
		return "< "
	case expr.CmpOpLte:
		return "<= "
	case expr.CmpOpGt:
		return "> "
	case expr.CmpOpGte:
		return ">= "
	}
	return ""
}

func verdictText(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictContinue:
		return "continue"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictQueue:
		return "queue"
	case expr.VerdictStolen:
		return "stolen"
	case expr.VerdictBreak:
		return "break"
	}
	return fmt.Sprintf("verdict %d", v.Kind)
}

var l4Names = map[byte]string{
	unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_ICMP: "icmp",
	unix.IPPROTO_ICMPV6: "icmpv6", unix.IPPROTO_SCTP: "sctp", unix.IPPROTO_UDPLITE: "udplite",
	unix.IPPROTO_DCCP: "dccp", unix.IPPROTO_GRE: "gre", unix.IPPROTO_ESP: "esp", unix.IPPROTO_AH: "ah",
	unix.IPPROTO_IPIP: "ipip",
}

func providesL4(data []byte) string {
	if len(data) == 1 {
		return l4Names[data[0]]
	}
	return ""
}

func metaOperand(k expr.MetaKey) *operand {
	op := &operand{bits: -1}
	switch k {
	case expr.MetaKeyIIFNAME:
		op.text, op.kind = "iifname", kindIfname
	case expr.MetaKeyOIFNAME:
		op.text, op.kind = "oifname", kindIfname
	case expr.MetaKeyBRIIIFNAME:
		op.text, op.kind = "meta ibrname", kindIfname
	case expr.MetaKeyBRIOIFNAME:
		op.text, op.kind = "meta obrname", kindIfname
	case expr.MetaKeyIIF:
		op.text, op.kind = "iif", kindU32
	case expr.MetaKeyOIF:
		op.text, op.kind = "oif", kindU32
	case expr.MetaKeyL4PROTO:
		op.text, op.kind, op.provides = "meta l4proto", kindL4, providesL4
	case expr.MetaKeyNFPROTO:
		op.text, op.kind = "meta nfproto", kindNFProto
		op.provides = func(d []byte) string {
			if len(d) == 1 && d[0] == unix.NFPROTO_IPV4 {
				return "ip"
			}
			if len(d) == 1 && d[0] == unix.NFPROTO_IPV6 {
				return "ip6"
			}
			return ""
		}
	case expr.MetaKeyPROTOCOL:
		op.text, op.kind = "meta protocol", kindEther
		op.provides = func(d []byte) string {
			if len(d) == 2 {
				switch binary.BigEndian.Uint16(d) {
				case unix.ETH_P_IP:
					return "ip"
				case unix.ETH_P_IPV6:
					return "ip6"
				}
			}
			return ""
		}
	case expr.MetaKeyMARK:
		op.text, op.kind = "meta mark", kindMark
	case expr.MetaKeyNFTRACE:
		op.text, op.kind = "meta nftrace", kindU8
	case expr.MetaKeySKUID:
		op.text, op.kind = "meta skuid", kindU32
	case expr.MetaKeySKGID:
		op.text, op.kind = "meta skgid", kindU32
	case expr.MetaKeyPKTTYPE:
		op.text, op.kind = "meta pkttype", kindU8
	case expr.MetaKeyLEN:
		op.text, op.kind = "meta length", kindU32
	case expr.MetaKeyPRIORITY:
		op.text, op.kind = "meta priority", kindMark
	case expr.MetaKeyIIFTYPE:
		op.text = "meta iiftype"
	case expr.MetaKeyOIFTYPE:
		op.text = "meta oiftype"
	case expr.MetaKeyCPU:
		op.text, op.kind = "meta cpu", kindU32
	case expr.MetaKeyCGROUP:
		op.text, op.kind = "meta cgroup", kindU32
	default:
		op.text = fmt.Sprintf("meta key%d", k)
	}
	return op
}

func ctOperand(e *expr.Ct) *operand {
	op := &operand{bits: -1}
	dir := ""
	if e.Direction == 0 && ctDirectional(e.Key) {
		dir = "original "
	} else if e.Direction == 1 && ctDirectional(e.Key) {
		dir = "reply "
	}
	switch e.Key {
	case expr.CtKeySTATE:
		op.text, op.kind = "ct state", kindCtState
	case expr.CtKeySTATUS:
		op.text, op.kind = "ct status", kindMark
	case expr.CtKeyMARK:
		op.text, op.kind = "ct mark", kindMark
	case expr.CtKeyDIRECTION:
		op.text, op.kind = "ct direction", kindCtDir
	case expr.CtKeyZONE:
		op.text = "ct zone"
	case expr.CtKeySRC:
		op.text, op.kind = "ct "+dir+"saddr", kindAddr
	case expr.CtKeyDST:
		op.text, op.kind = "ct "+dir+"daddr", kindAddr
	case expr.CtKeyPROTOSRC:
		op.text, op.kind = "ct "+dir+"proto-src", kindPort
	case expr.CtKeyPROTODST:
		op.text, op.kind = "ct "+dir+"proto-dst", kindPort
	case expr.CtKeyL3PROTOCOL:
		op.text, op.kind = "ct "+dir+"l3proto", kindNFProto
	case expr.CtKeyPROTOCOL:
		op.text, op.kind = "ct "+dir+"protocol", kindL4
	default:
		op.text = fmt.Sprintf("ct key%d", e.Key)
	}
	return op
}

func ctDirectional(k expr.CtKey) bool {
	switch k {
	case expr.CtKeySRC, expr.CtKeyDST, expr.CtKeyPROTOSRC, expr.CtKeyPROTODST, expr.CtKeyL3PROTOCOL, expr.CtKeyPROTOCOL:
		return true
	}
	return false
}

// payloadName names a payload field the way nft does where it knows it.
func (f *formatter) payloadName(e *expr.Payload) *operand {
	op := &operand{bits: -1}
	raw := func(base string) {
		op.text = fmt.Sprintf("@%s,%d,%d", base, e.Offset*8, e.Len*8)
	}
	switch e.Base {
	case expr.PayloadBaseNetworkHeader:
		l3 := f.l3
		if l3 == 0 {
			// Guess from the field's shape.
			switch {
			case e.Len == 4 && (e.Offset == 12 || e.Offset == 16):
				l3 = unix.NFPROTO_IPV4
			case e.Len == 16 && (e.Offset == 8 || e.Offset == 24):
				l3 = unix.NFPROTO_IPV6
			}
		}
		switch l3 {
		case unix.NFPROTO_IPV4:
			op.needs = "ip"
			switch {
			case e.Offset == 12 && e.Len == 4:
				op.text, op.kind = "ip saddr", kindAddr
			case e.Offset == 16 && e.Len == 4:
				op.text, op.kind = "ip daddr", kindAddr
			case e.Offset == 9 && e.Len == 1:
				op.text, op.kind, op.provides = "ip protocol", kindL4, providesL4
			case e.Offset == 8 && e.Len == 1:
				op.text, op.kind = "ip ttl", kindU8
			case e.Offset == 2 && e.Len == 2:
				op.text, op.kind = "ip length", kindPort
			default:
				raw("nh")
				op.needs = ""
			}
		case unix.NFPROTO_IPV6:
			op.needs = "ip6"
			switch {
			case e.Offset == 8 && e.Len == 16:
				op.text, op.kind = "ip6 saddr", kindAddr
			case e.Offset == 24 && e.Len == 16:
				op.text, op.kind = "ip6 daddr", kindAddr
			case e.Offset == 6 && e.Len == 1:
				op.text, op.kind, op.provides = "ip6 nexthdr", kindL4, providesL4
			case e.Offset == 7 && e.Len == 1:
				op.text, op.kind = "ip6 hoplimit", kindU8
			default:
				raw("nh")
				op.needs = ""
			}
		default:
			raw("nh")
		}
	case expr.PayloadBaseTransportHeader:
		proto := f.l4
		switch proto {
		case "tcp", "udp", "udplite", "sctp", "dccp":
			op.needs = proto
			switch {
			case e.Offset == 0 && e.Len == 2:
				op.text, op.kind = proto+" sport", kindPort
			case e.Offset == 2 && e.Len == 2:
				op.text, op.kind = proto+" dport", kindPort
			case proto == "tcp" && e.Offset == 13 && e.Len == 1:
				op.text, op.kind = "tcp flags", kindU8
			default:
				raw("th")
				op.needs = ""
			}
		case "icmp", "icmpv6":
			op.needs = proto
			switch {
			case e.Offset == 0 && e.Len == 1:
				op.text, op.kind = proto+" type", kindU8
			case e.Offset == 1 && e.Len == 1:
				op.text, op.kind = proto+" code", kindU8
			default:
				raw("th")
				op.needs = ""
			}
		default:
			switch {
			case e.Offset == 0 && e.Len == 2:
				op.text, op.kind = "th sport", kindPort
			case e.Offset == 2 && e.Len == 2:
				op.text, op.kind = "th dport", kindPort
			default:
				raw("th")
			}
		}
	case expr.PayloadBaseLLHeader:
		switch {
		case e.Offset == 12 && e.Len == 2:
			op.text, op.kind = "ether type", kindEther
		case e.Offset == 0 && e.Len == 6:
			op.text = "ether daddr"
		case e.Offset == 6 && e.Len == 6:
			op.text = "ether saddr"
		default:
			raw("ll")
		}
	default:
		raw(fmt.Sprintf("base%d", e.Base))
	}
	return op
}

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
			switch d[0] {
			case unix.NFPROTO_IPV4:
				return "ipv4"
			case unix.NFPROTO_IPV6:
				return "ipv6"
			}
			return strconv.Itoa(int(d[0]))
		}
	case kindEther:
		if len(d) == 2 {
			switch v := binary.BigEndian.Uint16(d); v {
			case unix.ETH_P_IP:
				return "ip"
			case unix.ETH_P_IPV6:
				return "ip6"
			case unix.ETH_P_ARP:
				return "arp"
			case unix.ETH_P_8021Q:
				return "vlan"
			default:
				return fmt.Sprintf("0x%04x", v)
			}
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

func ctStateText(v uint32) string {
	names := []struct {
		bit  uint32
		name string
	}{{1, "invalid"}, {2, "established"}, {4, "related"}, {8, "new"}, {64, "untracked"}}
	var out []string
	for _, n := range names {
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

func fibText(e *expr.Fib) string {
	var keys []string
	if e.FlagSADDR {
		keys = append(keys, "saddr")
	}
	if e.FlagDADDR {
		keys = append(keys, "daddr")
	}
	if e.FlagMARK {
		keys = append(keys, "mark")
	}
	if e.FlagIIF {
		keys = append(keys, "iif")
	}
	if e.FlagOIF {
		keys = append(keys, "oif")
	}
	res := "oif"
	switch {
	case e.ResultOIFNAME:
		res = "oifname"
	case e.ResultADDRTYPE:
		res = "type"
	}
	return "fib " + strings.Join(keys, " . ") + " " + res
}

// xtText renders an iptables-nft compat match or target.
func xtText(kind, name string, info xt.InfoAny) string {
	s := "xt " + kind + " " + name
	if c, ok := info.(*xt.Comment); ok && c != nil {
		s += " " + strconv.Quote(string(*c))
	}
	return s
}

// ruleComment returns the comment stored in the rule's user data
// (NFTNL_UDATA_RULE_COMMENT, used by nft and iptables-nft alike).
func ruleComment(udata []byte) string {
	for len(udata) >= 2 {
		typ, n := udata[0], int(udata[1])
		if len(udata) < 2+n {
			return ""
		}
		if typ == 0 {
			return strings.TrimRight(string(udata[2:2+n]), "\x00")
		}
		udata = udata[2+n:]
	}
	return ""
}

// elideDependencies drops "meta nfproto ipv4" before an "ip ..." match,
// "meta l4proto tcp" before "tcp dport ...", and the like, as nft hides them.
func elideDependencies(in []stmt) []stmt {
	var out []stmt
	for i, s := range in {
		if s.provides != "" && i+1 < len(in) && in[i+1].needs == s.provides {
			continue
		}
		out = append(out, s)
	}
	return out
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// prefixLen returns n if mask is n one bits followed by zeros, else -1.
func prefixLen(mask []byte) int {
	n := 0
	i := 0
	for ; i < len(mask) && mask[i] == 0xff; i++ {
		n += 8
	}
	if i < len(mask) {
		b := mask[i]
		for b&0x80 != 0 {
			n++
			b <<= 1
		}
		if b != 0 {
			return -1
		}
		for i++; i < len(mask); i++ {
			if mask[i] != 0 {
				return -1
			}
		}
	}
	return n
}

package nftrace

import (
	"fmt"
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
		unit := limitUnits[e.Unit]
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
		k := objrefKinds[e.Type]
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
		f.add(stmt{text: xtMatchText(e)})
	case *expr.Target:
		f.add(stmt{text: strings.TrimSpace("xt target " + e.Name + " " + strings.Join(iptTargetOptions(e), " "))})
	case *expr.Fib:
		f.regs[e.Register] = &operand{text: fibText(e), kind: kindRaw, bits: -1}
	default:
		f.add(stmt{text: strings.TrimPrefix(fmt.Sprintf("%T", e), "*")})
	}
}

var (
	limitUnits = map[expr.LimitTime]string{expr.LimitTimeSecond: "second", expr.LimitTimeMinute: "minute",
		expr.LimitTimeHour: "hour", expr.LimitTimeDay: "day", expr.LimitTimeWeek: "week"}
	// objrefKinds name the stateful objects by NFT_OBJECT_* type.
	objrefKinds = map[int]string{1: "counter", 2: "quota", 3: "ct helper", 4: "limit", 7: "ct timeout", 8: "secmark", 10: "synproxy", 9: "ct expectation"}
)

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

// cmpOps are the comparisons' words, each with the space that follows it; equality has none.
var cmpOps = map[expr.CmpOp]string{
	expr.CmpOpNeq: "!= ",
	expr.CmpOpLt:  "< ",
	expr.CmpOpLte: "<= ",
	expr.CmpOpGt:  "> ",
	expr.CmpOpGte: ">= ",
}

func cmpOpText(op expr.CmpOp) string { return cmpOps[op] }

// verdicts are the verdicts' words; jump and goto are followed by their chain.
var verdicts = map[expr.VerdictKind]string{
	expr.VerdictAccept:   "accept",
	expr.VerdictDrop:     "drop",
	expr.VerdictContinue: "continue",
	expr.VerdictReturn:   "return",
	expr.VerdictJump:     "jump",
	expr.VerdictGoto:     "goto",
	expr.VerdictQueue:    "queue",
	expr.VerdictStolen:   "stolen",
	expr.VerdictBreak:    "break",
}

func verdictText(v *expr.Verdict) string {
	name, ok := verdicts[v.Kind]
	switch {
	case !ok:
		return fmt.Sprintf("verdict %d", v.Kind)
	case v.Kind == expr.VerdictJump || v.Kind == expr.VerdictGoto:
		return name + " " + v.Chain
	}
	return name
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

// xtMatchText renders an iptables-nft compat match with its options decoded as iptables
// prints them: `xt match conntrack --ctstate INVALID`; a comment as `xt match comment "..."`.
func xtMatchText(m *expr.Match) string {
	if c, ok := m.Info.(*xt.Comment); ok && c != nil {
		return "xt match comment " + strconv.Quote(string(*c))
	}
	var p iptParser
	p.match(m)
	return "xt match " + m.Name + strings.TrimPrefix(strings.Join(p.words, " "), "-m "+m.Name)
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

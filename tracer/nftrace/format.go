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
		f.add(stmt{text: xtText("match", e.Name, e.Info)})
	case *expr.Target:
		f.add(stmt{text: xtText("target", e.Name, e.Info)})
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

// providesL3 is what an equality on meta nfproto establishes.
func providesL3(d []byte) string {
	if len(d) == 1 {
		return l3Names[d[0]]
	}
	return ""
}

// providesEtherL3 is what an equality on meta protocol establishes.
func providesEtherL3(d []byte) string {
	if len(d) == 2 {
		return etherL3Names[binary.BigEndian.Uint16(d)]
	}
	return ""
}

// l3Names and etherL3Names are the network protocols a match can establish, by nfproto and by
// ethertype.
var (
	l3Names      = map[byte]string{unix.NFPROTO_IPV4: "ip", unix.NFPROTO_IPV6: "ip6"}
	etherL3Names = map[uint16]string{unix.ETH_P_IP: "ip", unix.ETH_P_IPV6: "ip6"}
)

// A field is how nft names a loaded value and prints it, and what an equality on it
// establishes (nil: nothing).
type field struct {
	text     string
	kind     valueKind
	provides func(data []byte) string
}

var metaFields = map[expr.MetaKey]field{
	expr.MetaKeyIIFNAME:    {"iifname", kindIfname, nil},
	expr.MetaKeyOIFNAME:    {"oifname", kindIfname, nil},
	expr.MetaKeyBRIIIFNAME: {"meta ibrname", kindIfname, nil},
	expr.MetaKeyBRIOIFNAME: {"meta obrname", kindIfname, nil},
	expr.MetaKeyIIF:        {"iif", kindU32, nil},
	expr.MetaKeyOIF:        {"oif", kindU32, nil},
	expr.MetaKeyL4PROTO:    {"meta l4proto", kindL4, providesL4},
	expr.MetaKeyNFPROTO:    {"meta nfproto", kindNFProto, providesL3},
	expr.MetaKeyPROTOCOL:   {"meta protocol", kindEther, providesEtherL3},
	expr.MetaKeyMARK:       {"meta mark", kindMark, nil},
	expr.MetaKeyNFTRACE:    {"meta nftrace", kindU8, nil},
	expr.MetaKeySKUID:      {"meta skuid", kindU32, nil},
	expr.MetaKeySKGID:      {"meta skgid", kindU32, nil},
	expr.MetaKeyPKTTYPE:    {"meta pkttype", kindU8, nil},
	expr.MetaKeyLEN:        {"meta length", kindU32, nil},
	expr.MetaKeyPRIORITY:   {"meta priority", kindMark, nil},
	expr.MetaKeyIIFTYPE:    {"meta iiftype", kindRaw, nil},
	expr.MetaKeyOIFTYPE:    {"meta oiftype", kindRaw, nil},
	expr.MetaKeyCPU:        {"meta cpu", kindU32, nil},
	expr.MetaKeyCGROUP:     {"meta cgroup", kindU32, nil},
}

func metaOperand(k expr.MetaKey) *operand {
	f, ok := metaFields[k]
	if !ok {
		f.text = fmt.Sprintf("meta key%d", k)
	}
	return &operand{text: f.text, kind: f.kind, provides: f.provides, bits: -1}
}

// A ctField is a conntrack key's field; a directional one names the direction it reads,
// "ct original saddr".
type ctField struct {
	name        string
	kind        valueKind
	directional bool
}

var ctFields = map[expr.CtKey]ctField{
	expr.CtKeySTATE:      {"state", kindCtState, false},
	expr.CtKeySTATUS:     {"status", kindMark, false},
	expr.CtKeyMARK:       {"mark", kindMark, false},
	expr.CtKeyDIRECTION:  {"direction", kindCtDir, false},
	expr.CtKeyZONE:       {"zone", kindRaw, false},
	expr.CtKeySRC:        {"saddr", kindAddr, true},
	expr.CtKeyDST:        {"daddr", kindAddr, true},
	expr.CtKeyPROTOSRC:   {"proto-src", kindPort, true},
	expr.CtKeyPROTODST:   {"proto-dst", kindPort, true},
	expr.CtKeyL3PROTOCOL: {"l3proto", kindNFProto, true},
	expr.CtKeyPROTOCOL:   {"protocol", kindL4, true},
}

// ctDirections are the words of a directional ct key's direction; other directions have none.
var ctDirections = map[uint32]string{0: "original ", 1: "reply "}

func ctOperand(e *expr.Ct) *operand {
	f, ok := ctFields[e.Key]
	if !ok {
		return &operand{text: fmt.Sprintf("ct key%d", e.Key), bits: -1}
	}
	dir := ""
	if f.directional {
		dir = ctDirections[e.Direction]
	}
	return &operand{text: "ct " + dir + f.name, kind: f.kind, bits: -1}
}

// A fieldAt is where a payload field is: its offset and length in bytes.
type fieldAt struct{ offset, len uint32 }

// A header is the fields nft names in one protocol's header, and the protocol a match on one
// of them needs (which a preceding match establishes and nft then leaves out).
type header struct {
	needs  string
	fields map[fieldAt]field
}

// networkHeaders are the network headers' fields by nfproto; guessL3 says which protocol an
// address field's shape implies when none is known yet.
var (
	networkHeaders = map[byte]header{
		unix.NFPROTO_IPV4: {"ip", map[fieldAt]field{
			{12, 4}: {"ip saddr", kindAddr, nil},
			{16, 4}: {"ip daddr", kindAddr, nil},
			{9, 1}:  {"ip protocol", kindL4, providesL4},
			{8, 1}:  {"ip ttl", kindU8, nil},
			{2, 2}:  {"ip length", kindPort, nil},
		}},
		unix.NFPROTO_IPV6: {"ip6", map[fieldAt]field{
			{8, 16}:  {"ip6 saddr", kindAddr, nil},
			{24, 16}: {"ip6 daddr", kindAddr, nil},
			{6, 1}:   {"ip6 nexthdr", kindL4, providesL4},
			{7, 1}:   {"ip6 hoplimit", kindU8, nil},
		}},
	}
	guessL3 = map[fieldAt]byte{
		{12, 4}: unix.NFPROTO_IPV4, {16, 4}: unix.NFPROTO_IPV4,
		{8, 16}: unix.NFPROTO_IPV6, {24, 16}: unix.NFPROTO_IPV6,
	}
)

// transportHeaders are the transport headers' fields by protocol; anyTransport is what nft
// names in a transport header whose protocol is not known (or not one of those).
var (
	transportHeaders = map[string]header{
		"tcp": {"tcp", map[fieldAt]field{
			{0, 2}:  {"tcp sport", kindPort, nil},
			{2, 2}:  {"tcp dport", kindPort, nil},
			{13, 1}: {"tcp flags", kindU8, nil},
		}},
		"udp":     {"udp", portFields("udp")},
		"udplite": {"udplite", portFields("udplite")},
		"sctp":    {"sctp", portFields("sctp")},
		"dccp":    {"dccp", portFields("dccp")},
		"icmp":    {"icmp", icmpFields("icmp")},
		"icmpv6":  {"icmpv6", icmpFields("icmpv6")},
	}
	anyTransport = header{"", portFields("th")}
)

func portFields(proto string) map[fieldAt]field {
	return map[fieldAt]field{
		{0, 2}: {proto + " sport", kindPort, nil},
		{2, 2}: {proto + " dport", kindPort, nil},
	}
}

func icmpFields(proto string) map[fieldAt]field {
	return map[fieldAt]field{
		{0, 1}: {proto + " type", kindU8, nil},
		{1, 1}: {proto + " code", kindU8, nil},
	}
}

var etherHeader = header{"", map[fieldAt]field{
	{12, 2}: {"ether type", kindEther, nil},
	{0, 6}:  {"ether daddr", kindRaw, nil},
	{6, 6}:  {"ether saddr", kindRaw, nil},
}}

// payloadName names a payload field the way nft does where it knows it, and as raw bits
// ("@nh,96,32") where it does not.
func (f *formatter) payloadName(e *expr.Payload) *operand {
	at := fieldAt{e.Offset, e.Len}
	var h header
	var base string
	switch e.Base {
	case expr.PayloadBaseNetworkHeader:
		l3 := f.l3
		if l3 == 0 {
			l3 = guessL3[at]
		}
		h, base = networkHeaders[l3], "nh"
	case expr.PayloadBaseTransportHeader:
		var ok bool
		if h, ok = transportHeaders[f.l4]; !ok {
			h = anyTransport
		}
		base = "th"
	case expr.PayloadBaseLLHeader:
		h, base = etherHeader, "ll"
	default:
		base = fmt.Sprintf("base%d", e.Base)
	}
	fl, ok := h.fields[at]
	if !ok {
		return &operand{text: fmt.Sprintf("@%s,%d,%d", base, e.Offset*8, e.Len*8), bits: -1}
	}
	return &operand{text: fl.text, kind: fl.kind, provides: fl.provides, needs: h.needs, bits: -1}
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

package nftrace

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// What a register holds once an expression has loaded it: the names nft gives meta keys, ct
// keys and payload fields, how each prints, and what a match on it establishes.

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

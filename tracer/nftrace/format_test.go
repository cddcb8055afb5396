package nftrace

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestFormatRule(t *testing.T) {
	inet := &nftables.Table{Family: nftables.TableFamilyINet, Name: "filter"}
	ip := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"}
	ip6 := &nftables.Table{Family: nftables.TableFamilyIPv6, Name: "filter"}
	ne32 := func(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
	be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	comment := xt.Comment("allow dns")

	tests := []struct {
		name  string
		table *nftables.Table
		exprs []expr.Any
		udata []byte
		want  string
	}{
		{
			name:  "inet saddr drop hides nfproto",
			table: inet,
			exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 0, 1, 2}},
				&expr.Verdict{Kind: expr.VerdictDrop},
			},
			want: "ip saddr 10.0.1.2 drop",
		},
		{
			name:  "prefix, port, counter, comment",
			table: ip,
			exprs: []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 255, 0}, Xor: make([]byte, 4)},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 0, 2, 0}},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: be16(443)},
				&expr.Counter{Packets: 5, Bytes: 300},
				&expr.Verdict{Kind: expr.VerdictDrop},
			},
			udata: userdata.AppendString(nil, userdata.TypeComment, "no web"),
			want:  `ip daddr 10.0.2.0/24 tcp dport != 443 counter packets 5 bytes 300 drop comment "no web"`,
		},
		{
			name:  "ct state and iifname wildcard",
			table: inet,
			exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("veth")},
				&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(2 | 4), Xor: ne32(0)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)},
				&expr.Verdict{Kind: expr.VerdictAccept},
			},
			want: `iifname "veth*" ct state established,related accept`,
		},
		{
			name:  "oifname, set lookup, jump",
			table: ip,
			exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: append([]byte("eth0"), make([]byte, 12)...)},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Lookup{SourceRegister: 1, SetName: "blocked", Invert: true},
				&expr.Verdict{Kind: expr.VerdictJump, Chain: "KUBE-SVC"},
			},
			want: `oifname "eth0" ip saddr != @blocked jump KUBE-SVC`,
		},
		{
			name:  "ip6 prefix, udp sport range, reject",
			table: ip6,
			exprs: []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16,
					Mask: netip.MustParseAddr("ffff:ffff::").AsSlice(), Xor: make([]byte, 16)},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: netip.MustParseAddr("2001:db8::").AsSlice()},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 6, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
				&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: be16(1000), ToData: be16(2000)},
				&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
			},
			want: "ip6 saddr 2001:db8::/32 udp sport 1000-2000 reject with tcp reset",
		},
		{
			name:  "iptables-nft compat",
			table: ip,
			exprs: []expr.Any{
				&expr.Match{Name: "comment", Info: &comment},
				&expr.Match{Name: "conntrack", Rev: 3, Info: &xt.ConntrackMtinfo3{}},
				&expr.Counter{},
				&expr.Target{Name: "REJECT", Info: &xt.Unknown{}},
			},
			want: `xt match comment "allow dns" xt match conntrack counter packets 0 bytes 0 xt target REJECT`,
		},
		{
			name:  "nat and meta set, unknown expression",
			table: ip,
			exprs: []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 96, 0, 10}},
				&expr.Immediate{Register: 1, Data: ne32(0x4000)},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
				&expr.Hash{},
				&expr.Immediate{Register: 1, Data: []byte{10, 0, 1, 2}},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
			},
			want: "ip daddr 10.96.0.10 meta mark set 0x00004000 expr.Hash dnat to 10.0.1.2",
		},
		{
			name:  "the marking rule itself",
			table: ip,
			exprs: markExprs(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32")),
			want:  "ip saddr 10.0.0.0/8 ip daddr 192.168.1.1 meta nftrace set 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FormatRule(&nftables.Rule{Table: tt.table, Exprs: tt.exprs, UserData: tt.udata})
			if got != tt.want {
				t.Errorf("FormatRule\n got  %s\n want %s", got, tt.want)
			}
		})
	}
	if got := FormatRule(nil); got != "" {
		t.Errorf("FormatRule(nil) = %q", got)
	}
}

func TestRuleCommentMalformed(t *testing.T) {
	for _, u := range [][]byte{{0}, {0, 5, 'a'}, {1, 200}, {}} {
		if got := ruleComment(u); got != "" {
			t.Errorf("ruleComment(%v) = %q", u, got)
		}
	}
}

func traceMessage(t *testing.T, family byte, attrs []netlink.Attribute) netlink.Message {
	t.Helper()
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{Header: netlink.Header{Type: traceMsgType}, Data: append(nfgenHeader(family, 0), b...)}
}

func TestDecodeEvent(t *testing.T) {
	verdict := func(code int32) []byte {
		b, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_VERDICT_CODE, Data: be32(uint32(code))}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	nh := make([]byte, 20)
	nh[0] = 0x45
	copy(nh[12:], []byte{10, 0, 1, 2})
	copy(nh[16:], []byte{10, 0, 2, 2})
	m := traceMessage(t, unix.NFPROTO_IPV4, []netlink.Attribute{
		{Type: unix.NFTA_TRACE_TABLE, Data: cstr("filter")},
		{Type: unix.NFTA_TRACE_CHAIN, Data: cstr("FORWARD")},
		{Type: unix.NFTA_TRACE_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, 7)},
		{Type: unix.NFTA_TRACE_TYPE, Data: be32(unix.NFT_TRACETYPE_RULE)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_TRACE_VERDICT, Data: verdict(nfDrop)},
		{Type: unix.NFTA_TRACE_ID, Data: be32(0xabcd)},
		{Type: unix.NFTA_TRACE_NETWORK_HEADER, Data: nh},
	})
	ev, ok, err := decodeEvent(m)
	if err != nil || !ok {
		t.Fatalf("decodeEvent: %v %v", ok, err)
	}
	if ev.table != "filter" || ev.chain != "FORWARD" || ev.handle != 7 || ev.id != 0xabcd ||
		ev.src != netip.MustParseAddr("10.0.1.2") || ev.dst != netip.MustParseAddr("10.0.2.2") {
		t.Errorf("event %+v", ev)
	}
	if drop, policy := ev.isDrop(); !drop || policy {
		t.Errorf("isDrop = %v, %v; want rule drop", drop, policy)
	}

	for _, tc := range []struct {
		code int32
		drop bool
	}{
		{nfAccept, false}, {unix.NFT_CONTINUE, false}, {unix.NFT_JUMP, false}, {unix.NFT_RETURN, false},
		{-1<<16 | nfDrop, true}, // NF_DROP_ERR(-EPERM)
	} {
		ev := event{typ: unix.NFT_TRACETYPE_RULE, verdict: tc.code, hasVerdict: true}
		if drop, _ := ev.isDrop(); drop != tc.drop {
			t.Errorf("verdict %d: drop %v, want %v", tc.code, drop, tc.drop)
		}
	}
	pol := event{typ: unix.NFT_TRACETYPE_POLICY, policy: nfDrop, hasPolicy: true}
	if drop, policy := pol.isDrop(); !drop || !policy {
		t.Errorf("policy drop: %v %v", drop, policy)
	}
	pol.policy = nfAccept
	if drop, _ := pol.isDrop(); drop {
		t.Error("policy accept reported as drop")
	}
	if _, ok, _ := decodeEvent(netlink.Message{Header: netlink.Header{Type: 1}}); ok {
		t.Error("non-trace message decoded")
	}
}

package nftrace

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestFormatKeysGolden pins how FormatRule names every meta key, ct key and direction, payload
// field (by base, offset, length and the protocol known before it), verdict, comparison and
// statement option, and how formatValue prints each kind of value: one line per case, input
// then output. It characterizes the renderer as a whole, so that rewriting how it looks names
// up (switches or tables) cannot change a byte of what it prints.
func TestFormatKeysGolden(t *testing.T) {
	var b strings.Builder
	line := func(in, out string) { fmt.Fprintf(&b, "%s\t=> %s\n", in, out) }
	rule := func(fam nftables.TableFamily, exprs ...expr.Any) string {
		return FormatRule(&nftables.Rule{Table: &nftables.Table{Family: fam, Name: "t"}, Exprs: exprs})
	}
	ne32 := func(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
	be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	seq := func(n uint32) []byte {
		d := make([]byte, n)
		for i := range d {
			d[i] = byte(i + 1)
		}
		return d
	}
	eq := func(d []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: d} }
	// What a loaded register is compared with: each length a kind of value takes.
	values := [][]byte{{6}, {unix.NFPROTO_IPV4}, {unix.NFPROTO_IPV6}, be16(unix.ETH_P_IP), be16(unix.ETH_P_IPV6), ne32(2 | 8), {10, 0, 0, 1},
		[]byte("eth0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), seq(16)}
	// Matches after a load, to show what an equality on it established (and hid).
	after := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		eq([]byte{10, 0, 0, 2}),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		eq(be16(53)),
	}
	masked := func(load expr.Any) []expr.Any {
		return []expr.Any{load,
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(0x4a), Xor: ne32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)}}
	}

	for k := expr.MetaKey(0); k <= 45; k++ {
		load := &expr.Meta{Key: k, Register: 1}
		for _, v := range values {
			line(fmt.Sprintf("inet meta key %d == %x", k, v), rule(nftables.TableFamilyINet, append([]expr.Any{load, eq(v)}, after...)...))
		}
		line(fmt.Sprintf("inet meta key %d & 0x4a != 0", k), rule(nftables.TableFamilyINet, masked(load)...))
		line(fmt.Sprintf("inet meta key %d set 0x0a000001", k), rule(nftables.TableFamilyINet,
			&expr.Immediate{Register: 1, Data: []byte{10, 0, 0, 1}}, &expr.Meta{Key: k, SourceRegister: true, Register: 1}))
	}

	for k := expr.CtKey(0); k <= 32; k++ {
		load := &expr.Ct{Key: k, Register: 1}
		for _, v := range values {
			line(fmt.Sprintf("ip ct key %d == %x", k, v), rule(nftables.TableFamilyIPv4, load, eq(v)))
		}
		line(fmt.Sprintf("ip ct key %d & 0x4a != 0", k), rule(nftables.TableFamilyIPv4, masked(load)...))
		for dir := uint32(0); dir <= 2; dir++ {
			line(fmt.Sprintf("ip ct key %d dir %d set 0x0a000001", k, dir), rule(nftables.TableFamilyIPv4,
				&expr.Immediate{Register: 1, Data: []byte{10, 0, 0, 1}}, &expr.Ct{Key: k, Direction: dir, SourceRegister: true, Register: 1}))
		}
	}

	lens := []uint32{1, 2, 4, 6, 16}
	payload := func(prefix string, fam nftables.TableFamily, pre []expr.Any, base expr.PayloadBase, offsets []uint32) {
		for _, off := range offsets {
			for _, n := range lens {
				load := &expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n}
				exprs := append(append([]expr.Any{}, pre...), load, eq(seq(n)))
				line(fmt.Sprintf("%s payload base %d offset %d len %d", prefix, base, off, n), rule(fam, exprs...))
			}
		}
		write := &expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: base, Offset: offsets[0], Len: 2}
		line(fmt.Sprintf("%s payload base %d offset %d len 2 set", prefix, base, offsets[0]),
			rule(fam, append(append([]expr.Any{}, pre...), &expr.Immediate{Register: 1, Data: be16(8080)}, write)...))
	}
	nhOffsets := []uint32{0, 1, 2, 6, 7, 8, 9, 12, 13, 16, 20, 24, 28}
	for _, l3 := range []struct {
		name string
		fam  nftables.TableFamily
	}{{"inet", nftables.TableFamilyINet}, {"ip", nftables.TableFamilyIPv4}, {"ip6", nftables.TableFamilyIPv6}, {"bridge", nftables.TableFamilyBridge}} {
		payload(l3.name, l3.fam, nil, expr.PayloadBaseNetworkHeader, nhOffsets)
	}
	for _, p := range []byte{0, unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_UDPLITE, unix.IPPROTO_SCTP,
		unix.IPPROTO_DCCP, unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6, unix.IPPROTO_GRE, unix.IPPROTO_ESP, 200} {
		var pre []expr.Any
		name := "inet"
		if p != 0 {
			pre = []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, eq([]byte{p})}
			name = fmt.Sprintf("inet l4proto %d", p)
		}
		payload(name, nftables.TableFamilyINet, pre, expr.PayloadBaseTransportHeader, []uint32{0, 1, 2, 3, 13})
	}
	payload("bridge", nftables.TableFamilyBridge, nil, expr.PayloadBaseLLHeader, []uint32{0, 1, 6, 12, 14})
	payload("inet", nftables.TableFamilyINet, nil, expr.PayloadBase(3), []uint32{0, 4})
	payload("inet", nftables.TableFamilyINet, nil, expr.PayloadBase(7), []uint32{0})

	for k := expr.VerdictKind(-7); k <= 6; k++ {
		line(fmt.Sprintf("verdict %d", k), rule(nftables.TableFamilyIPv4, &expr.Verdict{Kind: k, Chain: "C"}))
	}
	for op := expr.CmpOp(0); op <= 7; op++ {
		line(fmt.Sprintf("cmp op %d", op), rule(nftables.TableFamilyIPv4,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: ne32(7)}))
		line(fmt.Sprintf("range op %d", op), rule(nftables.TableFamilyIPv4,
			&expr.Meta{Key: expr.MetaKeyLEN, Register: 1}, &expr.Range{Op: op, Register: 1, FromData: ne32(1), ToData: ne32(9)}))
	}
	for typ := uint32(0); typ <= 4; typ++ {
		for _, code := range []uint8{0, 1, 3} {
			line(fmt.Sprintf("reject type %d code %d", typ, code), rule(nftables.TableFamilyIPv4, &expr.Reject{Type: typ, Code: code}))
		}
	}
	for unit := expr.LimitTime(0); unit <= 7; unit++ {
		for _, typ := range []expr.LimitType{expr.LimitTypePkts, expr.LimitTypePktBytes} {
			for _, over := range []bool{false, true} {
				line(fmt.Sprintf("limit unit %d type %d over %v", unit, typ, over), rule(nftables.TableFamilyIPv4,
					&expr.Limit{Type: typ, Rate: 10, Over: over, Unit: unit}))
			}
		}
	}
	for typ := 0; typ <= 12; typ++ {
		line(fmt.Sprintf("objref type %d", typ), rule(nftables.TableFamilyIPv4, &expr.Objref{Type: typ, Name: "o"}))
	}
	for op := uint32(0); op <= 2; op++ {
		line(fmt.Sprintf("dynset op %d", op), rule(nftables.TableFamilyIPv4,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Dynset{Operation: op, SetName: "s", SrcRegKey: 1}))
	}
	for _, nat := range []*expr.NAT{
		{Type: expr.NATTypeSourceNAT}, {Type: expr.NATTypeDestNAT, RegAddrMin: 1},
		{Type: expr.NATTypeDestNAT, RegAddrMin: 1, RegProtoMin: 2}, {Type: expr.NATType(7), RegProtoMin: 2},
	} {
		line(fmt.Sprintf("nat type %d addr reg %d proto reg %d", nat.Type, nat.RegAddrMin, nat.RegProtoMin), rule(nftables.TableFamilyIPv4,
			&expr.Immediate{Register: 1, Data: []byte{10, 0, 0, 9}}, &expr.Immediate{Register: 2, Data: be16(8443)}, nat))
	}
	for flags := 0; flags < 1<<5; flags++ {
		for res := 0; res < 3; res++ {
			f := &expr.Fib{Register: 1, FlagSADDR: flags&1 != 0, FlagDADDR: flags&2 != 0, FlagMARK: flags&4 != 0,
				FlagIIF: flags&8 != 0, FlagOIF: flags&16 != 0, ResultOIFNAME: res == 1, ResultADDRTYPE: res == 2}
			line(fmt.Sprintf("fib flags %05b result %d", flags, res), rule(nftables.TableFamilyIPv4, f, eq([]byte{0})))
		}
	}
	for _, l := range []*expr.Log{{}, {Data: []byte("p: ")}, {Key: 1 << unix.NFTA_LOG_GROUP, Group: 2}, {Key: 1 << unix.NFTA_LOG_GROUP, Group: 2, Data: []byte("x")}} {
		line(fmt.Sprintf("log key %x group %d prefix %q", l.Key, l.Group, l.Data), rule(nftables.TableFamilyIPv4, l))
	}
	line("lookup vmap, map, set", rule(nftables.TableFamilyIPv4,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: "v", IsDestRegSet: true, DestRegister: unix.NFT_REG_VERDICT},
		&expr.Lookup{SourceRegister: 1, SetName: "m", IsDestRegSet: true, DestRegister: 2},
		&expr.Lookup{SourceRegister: 2, SetName: "s"}))
	line("statements without options", rule(nftables.TableFamilyIPv4,
		&expr.Masq{}, &expr.Redir{}, &expr.Queue{Num: 3}, &expr.Notrack{}, &expr.Counter{Packets: 1, Bytes: 2}, &expr.Quota{}))

	for kind := valueKind(0); kind <= kindU8+1; kind++ {
		for _, d := range [][]byte{nil, {0}, {1}, {2}, {6}, {10}, {17}, {58}, {99}, {255},
			be16(unix.ETH_P_IP), be16(unix.ETH_P_IPV6), be16(unix.ETH_P_ARP), be16(unix.ETH_P_8021Q), be16(0x88a8),
			ne32(0), ne32(1), ne32(2), ne32(4), ne32(8), ne32(16), ne32(64), ne32(0x4f), ne32(0xffffffff),
			{10, 0, 0, 1}, seq(6), seq(16), []byte("eth0\x00\x00"), []byte("veth")} {
			line(fmt.Sprintf("value kind %d %x", kind, d), formatValue(&operand{kind: kind, bits: -1}, d))
			if kind == kindAddr {
				line(fmt.Sprintf("value kind %d bits 24 %x", kind, d), formatValue(&operand{kind: kind, bits: 24}, d))
			}
		}
	}

	path := filepath.Join("testdata", "format_keys.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./tracer/nftrace -run FormatKeysGolden -update to create it)", err)
	}
	if d := cmp.Diff(string(want), b.String()); d != "" {
		t.Errorf("%s differs (-want +got); if the change is intended, run go test ./tracer/nftrace -run FormatKeysGolden -update\n%s", path, d)
	}
}

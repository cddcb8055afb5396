package trace

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func TestParseProto(t *testing.T) {
	good := []struct {
		in   string
		want Proto
	}{
		{"", ProtoAny},
		{"any", ProtoAny},
		{"ANY", ProtoAny},
		{"icmp", ProtoICMP},
		{"ICMP", ProtoICMP},
		{" tcp ", ProtoTCP},
		{"udp", ProtoUDP},
		{"icmpv6", ProtoICMPv6},
		{"IcmpV6", ProtoICMPv6},
		{"1", ProtoICMP},
		{"6", ProtoTCP},
		{"17", ProtoUDP},
		{"58", ProtoICMPv6},
		{"47", Proto(47)},
		{"132", Proto(132)},
		{"255", Proto(255)},
	}
	for _, c := range good {
		got, err := ParseProto(c.in)
		if err != nil {
			t.Errorf("ParseProto(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseProto(%q) = %d, want %d", c.in, got, c.want)
		}
	}
	for _, in := range []string{"0", "256", "-1", "sctp", "icmp6", "tcp,udp", "0x6", "6.0"} {
		got, err := ParseProto(in)
		if err == nil {
			t.Errorf("ParseProto(%q) = %v, want an error", in, got)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(in)) {
			t.Errorf("ParseProto(%q): error %q does not quote the input", in, err)
		}
	}
}

func TestProtoString(t *testing.T) {
	cases := map[Proto]string{
		ProtoAny:    "any",
		ProtoICMP:   "icmp",
		ProtoTCP:    "tcp",
		ProtoUDP:    "udp",
		ProtoICMPv6: "icmpv6",
		Proto(47):   "47",
		Proto(255):  "255",
	}
	for p, want := range cases {
		if got := p.String(); got != want {
			t.Errorf("Proto(%d).String() = %q, want %q", uint8(p), got, want)
		}
	}
}

func TestProtoHasPorts(t *testing.T) {
	for p := range 256 {
		want := p == 0 || p == 6 || p == 17
		if got := Proto(p).HasPorts(); got != want {
			t.Errorf("Proto(%d).HasPorts() = %v, want %v", p, got, want)
		}
	}
}

// Every protocol value prints as something ParseProto and UnmarshalText read back.
func TestProtoTextRoundTrip(t *testing.T) {
	for i := range 256 {
		p := Proto(i)
		b, err := p.MarshalText()
		if err != nil {
			t.Fatalf("Proto(%d).MarshalText: %v", i, err)
		}
		var back Proto = 99
		if err := back.UnmarshalText(b); err != nil {
			t.Fatalf("Proto(%d): UnmarshalText(%q): %v", i, b, err)
		}
		if back != p {
			t.Errorf("Proto(%d) -> %q -> %d", i, b, back)
		}
	}
}

func TestProtoJSON(t *testing.T) {
	type doc struct {
		P Proto `json:"p"`
	}
	for _, c := range []struct {
		p    Proto
		json string
	}{
		{ProtoAny, `{"p":"any"}`},
		{ProtoTCP, `{"p":"tcp"}`},
		{ProtoICMPv6, `{"p":"icmpv6"}`},
		{Proto(47), `{"p":"47"}`},
	} {
		b, err := json.Marshal(doc{c.p})
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.json {
			t.Errorf("Marshal(%d) = %s, want %s", uint8(c.p), b, c.json)
		}
		var back doc
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if back.P != c.p {
			t.Errorf("Unmarshal(%s) = %d, want %d", b, back.P, c.p)
		}
	}

	var d doc
	if err := json.Unmarshal([]byte(`{"p":"UDP"}`), &d); err != nil || d.P != ProtoUDP {
		t.Errorf(`Unmarshal "UDP" = %d, %v; want udp`, d.P, err)
	}
	if err := json.Unmarshal([]byte(`{"p":"bogus"}`), &d); err == nil {
		t.Error(`Unmarshal "bogus": want an error`)
	}
	if err := json.Unmarshal([]byte(`{"p":"0"}`), &d); err == nil {
		t.Error(`Unmarshal "0": want an error`)
	}
}

func TestTCPFlagsString(t *testing.T) {
	cases := map[TCPFlags]string{
		0:    "",
		0x01: "FIN",
		0x02: "SYN",
		0x12: "SYN,ACK",
		0x18: "PSH,ACK",
		0x04: "RST",
		0x11: "FIN,ACK",
		0xc2: "SYN,ECE,CWR",
		0xff: "FIN,SYN,RST,PSH,ACK,URG,ECE,CWR",
	}
	for f, want := range cases {
		if got := f.String(); got != want {
			t.Errorf("TCPFlags(%#x).String() = %q, want %q", uint8(f), got, want)
		}
	}
}

func TestTCPFlagsTextRoundTrip(t *testing.T) {
	for i := range 256 {
		f := TCPFlags(i)
		b, err := f.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		back := TCPFlags(0xaa)
		if err := back.UnmarshalText(b); err != nil {
			t.Fatalf("TCPFlags(%#x): UnmarshalText(%q): %v", i, b, err)
		}
		if back != f {
			t.Errorf("TCPFlags(%#x) -> %q -> %#x", i, b, uint8(back))
		}
	}
}

func TestTCPFlagsUnmarshalErrors(t *testing.T) {
	for _, in := range []string{"SYN,FOO", "syn", "SYN,", ",SYN", "SYN ACK"} {
		f := TCPFlags(0x10)
		err := f.UnmarshalText([]byte(in))
		if err == nil {
			t.Errorf("UnmarshalText(%q) = %v, want an error", in, f)
			continue
		}
		if f != 0x10 {
			t.Errorf("UnmarshalText(%q) changed the value to %#x on error", in, uint8(f))
		}
	}
}

func TestTCPFlagsJSON(t *testing.T) {
	h := Headers{Tuple: Tuple{Proto: ProtoTCP}, TCPFlags: 0x12, TCPSeq: 7}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"tcp_flags":"SYN,ACK"`) {
		t.Errorf("json %s lacks tcp_flags SYN,ACK", b)
	}
	var back Headers
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != h {
		t.Errorf("round trip = %+v, want %+v", back, h)
	}

	// No flags: omitted, and read back as none.
	b, err = json.Marshal(Headers{Tuple: Tuple{Proto: ProtoUDP}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "tcp_flags") {
		t.Errorf("json %s has tcp_flags for a packet without flags", b)
	}
	var none struct {
		F TCPFlags `json:"f"`
	}
	if err := json.Unmarshal([]byte(`{"f":""}`), &none); err != nil || none.F != 0 {
		t.Errorf(`Unmarshal "" = %#x, %v`, uint8(none.F), err)
	}
	if err := json.Unmarshal([]byte(`{"f":"SYN,NOPE"}`), &none); err == nil {
		t.Error("Unmarshal of an unknown flag: want an error")
	}
}

// String names what protoNames names, and numbers the rest.
func TestProtoStringIsProtoNames(t *testing.T) {
	for p := range 256 {
		want, ok := protoNames[Proto(p)]
		if !ok {
			want = strconv.Itoa(p)
			if p == 0 {
				want = "any"
			}
		}
		if got := Proto(p).String(); got != want {
			t.Errorf("Proto(%d).String() = %q, want %q", p, got, want)
		}
	}
}

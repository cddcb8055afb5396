package trace

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	cases := []struct {
		in   string
		want netip.Prefix // zero: any address
	}{
		{"", netip.Prefix{}},
		{"   ", netip.Prefix{}},
		{"10.0.1.2", netip.MustParsePrefix("10.0.1.2/32")},
		{" 10.0.1.2\t", netip.MustParsePrefix("10.0.1.2/32")},
		{"10.0.0.0/24", netip.MustParsePrefix("10.0.0.0/24")},
		// Host bits of a CIDR are masked off.
		{"10.0.1.77/24", netip.MustParsePrefix("10.0.1.0/24")},
		{"10.1.31.255/20", netip.MustParsePrefix("10.1.16.0/20")},
		{"192.168.1.1/32", netip.MustParsePrefix("192.168.1.1/32")},
		{"8.8.8.8/0", netip.MustParsePrefix("0.0.0.0/0")},
		{"2001:db8::1", netip.MustParsePrefix("2001:db8::1/128")},
		{"2001:DB8::1", netip.MustParsePrefix("2001:db8::1/128")},
		{"2001:db8:1:2:3:4:5:6/64", netip.MustParsePrefix("2001:db8:1:2::/64")},
		{"::/0", netip.MustParsePrefix("::/0")},
		{"::1", netip.MustParsePrefix("::1/128")},
		// An IPv4-mapped IPv6 address is the IPv4 address: that is how the kernel sees the packet.
		{"::ffff:10.0.1.2", netip.MustParsePrefix("10.0.1.2/32")},
		{"::ffff:a00:102", netip.MustParsePrefix("10.0.1.2/32")},
		// A zone cannot be part of a prefix: it is dropped.
		{"fe80::1%eth0", netip.MustParsePrefix("fe80::1/128")},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseAddr(c.in)
			if err != nil {
				t.Fatalf("ParseAddr(%q): %v", c.in, err)
			}
			if got != c.want {
				t.Errorf("ParseAddr(%q) = %v, want %v", c.in, got, c.want)
			}
		})
	}
}

func TestParseAddrErrors(t *testing.T) {
	cases := []struct {
		in       string
		wantText string // the error names what was wrong besides the input
	}{
		{"10.0.0", "bad address"},
		{"10.0.0.256", "bad address"},
		{"host.example", "bad address"},
		{"10.0.0.1:80", "bad address"},
		{"[2001:db8::1]", "bad address"},
		{"2001:db8::g", "bad address"},
		{"10.0.0.0/33", "bad CIDR"},
		{"10.0.0.0/-1", "bad CIDR"},
		{"10.0.0.0/", "bad CIDR"},
		{"/24", "bad CIDR"},
		{"2001:db8::/129", "bad CIDR"},
		{"10.0.0.0/24/8", "bad CIDR"},
		{"fe80::1%eth0/64", "bad CIDR"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseAddr(c.in)
			if err == nil {
				t.Fatalf("ParseAddr(%q) = %v, want an error", c.in, got)
			}
			if !strings.Contains(err.Error(), strconv.Quote(c.in)) {
				t.Errorf("error %q does not quote the input %q", err, c.in)
			}
			if !strings.Contains(err.Error(), c.wantText) {
				t.Errorf("error %q does not say %q", err, c.wantText)
			}
			if got.IsValid() {
				t.Errorf("ParseAddr(%q) returned %v with its error", c.in, got)
			}
		})
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{
		"", "10.0.1.2", "10.0.1.77/24", "0.0.0.0/0", "2001:db8::1", "2001:db8::1/64",
		"::ffff:10.0.1.2", "::ffff:10.0.1.2/120", "fe80::1%eth0", " 1.2.3.4 ", "1.2.3.4/33", "abc",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseAddr(s)
		if err != nil {
			if p.IsValid() {
				t.Fatalf("ParseAddr(%q) returned %v with error %v", s, p, err)
			}
			if !strings.Contains(err.Error(), strconv.Quote(strings.TrimSpace(s))) {
				t.Fatalf("ParseAddr(%q): error %q does not quote the input", s, err)
			}
			return
		}
		if !p.IsValid() {
			if strings.TrimSpace(s) != "" {
				t.Fatalf("ParseAddr(%q) = invalid prefix without an error", s)
			}
			return
		}
		if p != p.Masked() {
			t.Fatalf("ParseAddr(%q) = %v has host bits set", s, p)
		}
		if p.Addr().Zone() != "" {
			t.Fatalf("ParseAddr(%q) = %v keeps a zone", s, p)
		}
		if !strings.Contains(s, "/") && (!p.IsSingleIP() || p.Addr().Is4In6()) {
			t.Fatalf("ParseAddr(%q) = %v: a plain address must give an unmapped single-address prefix", s, p)
		}
		again, err := ParseAddr(p.String())
		if err != nil {
			t.Fatalf("ParseAddr(%q) = %v, which does not parse again: %v", s, p, err)
		}
		if again != p {
			t.Fatalf("ParseAddr(%q) = %v, but ParseAddr(%q) = %v", s, p, p.String(), again)
		}
	})
}

func TestParsePort(t *testing.T) {
	good := []struct {
		in   string
		want uint16
	}{
		{"", 0},
		{" ", 0},
		{"0", 0},
		{"1", 1},
		{"53", 53},
		{" 443 ", 443},
		{"0443", 443},
		{"65535", 65535},
	}
	for _, c := range good {
		got, err := ParsePort(c.in)
		if err != nil {
			t.Errorf("ParsePort(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParsePort(%q) = %d, want %d", c.in, got, c.want)
		}
	}
	for _, in := range []string{"65536", "-1", "abc", "80a", "+80", "1e3", "0x50", "4294967296", "99999999999999999999"} {
		got, err := ParsePort(in)
		if err == nil {
			t.Errorf("ParsePort(%q) = %d, want an error", in, got)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(in)) {
			t.Errorf("ParsePort(%q): error %q does not quote the input", in, err)
		}
		if got != 0 {
			t.Errorf("ParsePort(%q) returned %d with its error", in, got)
		}
	}
}

func TestNewFilter(t *testing.T) {
	v4a := netip.MustParsePrefix("10.0.0.0/24")
	v4b := netip.MustParsePrefix("8.8.8.8/32")
	v6 := netip.MustParsePrefix("2001:db8::1/128")
	cases := []struct {
		name         string
		src, dst     netip.Prefix
		proto        Proto
		sport, dport uint16
		wantErr      string // "" = valid
	}{
		{"empty", netip.Prefix{}, netip.Prefix{}, ProtoAny, 0, 0, ""},
		{"v4 both", v4a, v4b, ProtoICMP, 0, 0, ""},
		{"v6 src only", v6, netip.Prefix{}, ProtoICMPv6, 0, 0, ""},
		{"v4 dst only v6 none", netip.Prefix{}, v4b, ProtoTCP, 0, 443, ""},
		{"tcp ports", v4a, v4b, ProtoTCP, 1234, 443, ""},
		{"udp sport", v4a, v4b, ProtoUDP, 53, 0, ""},
		// Ports with any protocol are allowed: they then apply to TCP and UDP packets only.
		{"any ports", v4a, v4b, ProtoAny, 0, 53, ""},
		{"mixed families v4 v6", v4a, v6, ProtoAny, 0, 0, "different address families"},
		{"mixed families v6 v4", v6, v4b, ProtoTCP, 0, 0, "different address families"},
		{"icmp dport", v4a, v4b, ProtoICMP, 0, 7, "need --proto tcp or udp, not icmp"},
		{"icmpv6 sport", v6, netip.Prefix{}, ProtoICMPv6, 7, 0, "need --proto tcp or udp, not icmpv6"},
		{"gre ports", v4a, v4b, Proto(47), 1, 1, "need --proto tcp or udp, not 47"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := NewFilter(c.src, c.dst, c.proto, c.sport, c.dport)
			if c.wantErr != "" {
				if err == nil {
					t.Fatalf("NewFilter = %+v, want an error", f)
				}
				if !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("error %q does not contain %q", err, c.wantErr)
				}
				if f != (Filter{}) {
					t.Errorf("NewFilter returned %+v with its error", f)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Filter{Src: c.src, Dst: c.dst, Proto: c.proto, Sport: c.sport, Dport: c.dport}
			if f != want {
				t.Errorf("NewFilter = %+v, want %+v", f, want)
			}
		})
	}
}

func TestNewFilterMixedFamiliesNamesBoth(t *testing.T) {
	_, err := NewFilter(netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("2001:db8::/64"), ProtoAny, 0, 0)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, s := range []string{"10.0.0.1/32", "2001:db8::/64"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
}

func TestFilterIsV6(t *testing.T) {
	cases := []struct {
		f    Filter
		want bool
	}{
		{Filter{}, false},
		{Filter{Src: netip.MustParsePrefix("10.0.0.0/8")}, false},
		{Filter{Dst: netip.MustParsePrefix("0.0.0.0/0")}, false},
		{Filter{Src: netip.MustParsePrefix("2001:db8::/32")}, true},
		{Filter{Dst: netip.MustParsePrefix("::1/128")}, true},
		{Filter{Proto: ProtoICMPv6}, false}, // the protocol alone does not choose a family
	}
	for _, c := range cases {
		if got := c.f.IsV6(); got != c.want {
			t.Errorf("%v.IsV6() = %v, want %v", c.f, got, c.want)
		}
	}
}

func tup(proto Proto, src string, sport uint16, dst string, dport uint16) Tuple {
	return Tuple{Proto: proto, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Sport: sport, Dport: dport}
}

func TestFilterDirection(t *testing.T) {
	mustFilter := func(src, dst string, proto Proto, sport, dport uint16) Filter {
		t.Helper()
		s, err := ParseAddr(src)
		if err != nil {
			t.Fatal(err)
		}
		d, err := ParseAddr(dst)
		if err != nil {
			t.Fatal(err)
		}
		f, err := NewFilter(s, d, proto, sport, dport)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	https := mustFilter("10.0.0.0/24", "8.8.8.8", ProtoTCP, 0, 443)
	ping := mustFilter("10.0.0.1", "8.8.8.8", ProtoICMP, 0, 0)
	dnsAny := mustFilter("", "", ProtoAny, 0, 53)
	srcOnly := mustFilter("10.0.0.1", "", ProtoAny, 0, 0)
	udpAnyAddr := mustFilter("", "", ProtoUDP, 0, 0)
	v6 := mustFilter("2001:db8::/64", "2001:db8:1::1", ProtoICMPv6, 0, 0)
	both := mustFilter("10.0.0.1", "10.0.0.2", ProtoTCP, 80, 80)

	cases := []struct {
		name string
		f    Filter
		t    Tuple
		want Direction // "" = no match
	}{
		{"tcp request", https, tup(ProtoTCP, "10.0.0.5", 40000, "8.8.8.8", 443), Request},
		{"tcp reply", https, tup(ProtoTCP, "8.8.8.8", 443, "10.0.0.5", 40000), Reply},
		{"tcp wrong dport", https, tup(ProtoTCP, "10.0.0.5", 40000, "8.8.8.8", 80), ""},
		{"tcp reply wrong sport", https, tup(ProtoTCP, "8.8.8.8", 80, "10.0.0.5", 40000), ""},
		{"tcp src outside prefix", https, tup(ProtoTCP, "10.0.1.5", 40000, "8.8.8.8", 443), ""},
		{"tcp dst wrong", https, tup(ProtoTCP, "10.0.0.5", 40000, "8.8.4.4", 443), ""},
		{"proto mismatch udp", https, tup(ProtoUDP, "10.0.0.5", 40000, "8.8.8.8", 443), ""},
		{"proto mismatch icmp", https, tup(ProtoICMP, "10.0.0.5", 0, "8.8.8.8", 0), ""},
		{"v6 tuple for v4 filter", https, tup(ProtoTCP, "2001:db8::5", 40000, "2001:db8::8", 443), ""},
		// A v4-mapped tuple address is the IPv4 address.
		{"v4-mapped tuple", https, tup(ProtoTCP, "::ffff:10.0.0.5", 40000, "::ffff:8.8.8.8", 443), Request},

		// ICMP echo: the identifier is in both Sport and Dport, so reversing keeps it.
		{"icmp echo request", ping, tup(ProtoICMP, "10.0.0.1", 0x1234, "8.8.8.8", 0x1234), Request},
		{"icmp echo reply", ping, tup(ProtoICMP, "8.8.8.8", 0x1234, "10.0.0.1", 0x1234), Reply},
		{"icmp other host", ping, tup(ProtoICMP, "10.0.0.2", 0x1234, "8.8.8.8", 0x1234), ""},
		{"icmp filter, tcp tuple", ping, tup(ProtoTCP, "10.0.0.1", 1, "8.8.8.8", 2), ""},

		// Port filters apply to TCP and UDP only: ICMP passes a port filter untouched.
		{"any+dport: udp request", dnsAny, tup(ProtoUDP, "10.0.0.1", 5353, "1.1.1.1", 53), Request},
		{"any+dport: udp reply", dnsAny, tup(ProtoUDP, "1.1.1.1", 53, "10.0.0.1", 5353), Reply},
		{"any+dport: tcp request", dnsAny, tup(ProtoTCP, "10.0.0.1", 5353, "1.1.1.1", 53), Request},
		{"any+dport: udp other port", dnsAny, tup(ProtoUDP, "10.0.0.1", 5353, "1.1.1.1", 54), ""},
		{"any+dport: ports name tcp/udp, not icmp", dnsAny, tup(ProtoICMP, "10.0.0.1", 7, "1.1.1.1", 7), ""},
		{"any+dport: ports name tcp/udp, not proto 47", dnsAny, tup(Proto(47), "10.0.0.1", 0, "1.1.1.1", 0), ""},

		{"src only: from it", srcOnly, tup(ProtoUDP, "10.0.0.1", 1, "9.9.9.9", 2), Request},
		{"src only: to it", srcOnly, tup(ProtoUDP, "9.9.9.9", 2, "10.0.0.1", 1), Reply},
		{"src only: neither", srcOnly, tup(ProtoUDP, "9.9.9.9", 2, "9.9.9.8", 1), ""},
		// With no addresses and no ports either direction matches as a request.
		{"no addrs: request first", udpAnyAddr, tup(ProtoUDP, "9.9.9.9", 2, "9.9.9.8", 1), Request},

		{"v6 request", v6, tup(ProtoICMPv6, "2001:db8::42", 9, "2001:db8:1::1", 9), Request},
		{"v6 reply", v6, tup(ProtoICMPv6, "2001:db8:1::1", 9, "2001:db8::42", 9), Reply},
		{"v6 outside", v6, tup(ProtoICMPv6, "2001:db8:2::42", 9, "2001:db8:1::1", 9), ""},
		{"v4 tuple for v6 filter", v6, tup(ProtoICMPv6, "10.0.0.1", 9, "10.0.0.2", 9), ""},

		// Both ports must match in the same direction.
		{"both ports request", both, tup(ProtoTCP, "10.0.0.1", 80, "10.0.0.2", 80), Request},
		{"both ports reply", both, tup(ProtoTCP, "10.0.0.2", 80, "10.0.0.1", 80), Reply},
		{"only one port", both, tup(ProtoTCP, "10.0.0.1", 80, "10.0.0.2", 81), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := c.f.Direction(c.t)
			if ok != (c.want != "") || got != c.want {
				t.Errorf("%v.Direction(%+v) = %q, %v; want %q, %v", c.f, c.t, got, ok, c.want, c.want != "")
			}
			if c.want == "" {
				return
			}
			// The reverse of a matching tuple matches too. When the filter is symmetric under
			// reversal, it is a request both ways; otherwise it is the other direction.
			rev, ok := c.f.Direction(c.t.Reverse())
			if !ok {
				t.Errorf("reverse of %+v does not match %v", c.t, c.f)
			}
			if c.want == Reply && rev != Request {
				t.Errorf("reverse of a reply is %q, want request", rev)
			}
		})
	}
}

func TestTupleReverse(t *testing.T) {
	in := tup(ProtoTCP, "10.0.0.1", 1, "10.0.0.2", 2)
	want := tup(ProtoTCP, "10.0.0.2", 2, "10.0.0.1", 1)
	if got := in.Reverse(); got != want {
		t.Errorf("Reverse = %+v, want %+v", got, want)
	}
	if got := in.Reverse().Reverse(); got != in {
		t.Errorf("Reverse twice = %+v, want %+v", got, in)
	}
}

func TestFilterString(t *testing.T) {
	p := netip.MustParsePrefix
	cases := []struct {
		f    Filter
		want string
	}{
		{Filter{}, "any any <-> any"},
		{Filter{Src: p("10.0.1.2/32"), Dst: p("8.8.8.8/32"), Proto: ProtoICMP}, "icmp 10.0.1.2 <-> 8.8.8.8"},
		{Filter{Src: p("10.0.0.0/24"), Dst: p("1.2.3.4/32"), Proto: ProtoTCP, Dport: 443}, "tcp 10.0.0.0/24 <-> 1.2.3.4:443"},
		{Filter{Proto: ProtoUDP, Sport: 53}, "udp any:53 <-> any"},
		{Filter{Proto: ProtoUDP, Dport: 53}, "udp any <-> any:53"},
		{Filter{Src: p("2001:db8::1/128"), Dst: p("2001:db8::2/128"), Proto: ProtoTCP, Sport: 1234, Dport: 443},
			"tcp [2001:db8::1]:1234 <-> [2001:db8::2]:443"},
		{Filter{Src: p("2001:db8::/64"), Proto: ProtoICMPv6}, "icmpv6 2001:db8::/64 <-> any"},
		{Filter{Dst: p("0.0.0.0/0"), Proto: Proto(47)}, "47 any <-> 0.0.0.0/0"},
	}
	for _, c := range cases {
		if got := c.f.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
}

func TestFilterJSON(t *testing.T) {
	f, err := NewFilter(netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("2.2.2.2/32"), ProtoTCP, 0, 443)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"src":"10.0.0.0/24","dst":"2.2.2.2/32","proto":"tcp","dport":443}`
	if string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	var back Filter
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != f {
		t.Errorf("round trip = %+v, want %+v", back, f)
	}

	b, err = json.Marshal(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"proto":"any"}` {
		t.Errorf("empty filter json = %s", b)
	}
}

// A CIDR written in IPv4-mapped form names IPv4 addresses, like a mapped plain address does.
// Today ParseAddr unmaps plain addresses only, so the filter becomes IPv6 (the kernel filter
// then sets family 6) and never matches the IPv4 packets it names.
func TestParseAddrMappedCIDR(t *testing.T) {
	got, err := ParseAddr("::ffff:10.0.0.0/120")
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParsePrefix("10.0.0.0/24"); got != want {
		t.Errorf("ParseAddr = %v, want %v", got, want)
	}
}

// "icmp" with IPv6 addresses is ICMPv6: taken literally it would match no packet at all.
func TestNewFilterICMPWithIPv6IsICMPv6(t *testing.T) {
	v6 := netip.MustParsePrefix("fd00::2/128")
	for _, c := range []struct{ src, dst netip.Prefix }{{v6, netip.Prefix{}}, {netip.Prefix{}, v6}, {v6, v6}} {
		f, err := NewFilter(c.src, c.dst, ProtoICMP, 0, 0)
		if err != nil || f.Proto != ProtoICMPv6 {
			t.Errorf("NewFilter(%s, %s, icmp) = %+v, %v; want icmpv6", c.src, c.dst, f, err)
		}
	}
	if f, _ := NewFilter(netip.MustParsePrefix("10.0.0.1/32"), netip.Prefix{}, ProtoICMP, 0, 0); f.Proto != ProtoICMP {
		t.Errorf("IPv4 icmp became %s", f.Proto)
	}
}

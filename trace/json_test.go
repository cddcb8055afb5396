package trace

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strconv"
	"testing"
)

// The v1 document's hop, fate and drop site as encoding/json wrote them before Place was
// embedded: the hand-written encoders must write exactly this.
type v1Hop struct {
	TimeNS         uint64   `json:"time_ns"`
	Event          Kind     `json:"event"`
	Probe          string   `json:"probe"`
	Netns          uint32   `json:"netns"`
	NetnsName      string   `json:"netns_name"`
	Ifindex        uint32   `json:"ifindex,omitempty"`
	Ifname         string   `json:"ifname,omitempty"`
	Tuple          *Headers `json:"tuple,omitempty"`
	Encap          string   `json:"encap,omitempty"`
	VNI            uint32   `json:"vni,omitempty"`
	Outer          *Headers `json:"outer,omitempty"`
	Len            uint32   `json:"len,omitempty"`
	Reason         string   `json:"reason,omitempty"`
	ReasonInferred bool     `json:"reason_inferred,omitempty"`
	ReasonCode     uint32   `json:"reason_code,omitempty"`
	Location       string   `json:"location,omitempty"`
	Route          *Route   `json:"route,omitempty"`
	Func           *Func    `json:"func,omitempty"`
	Copy           bool     `json:"copy,omitempty"`
	Node           string   `json:"node,omitempty"`
	Pod            string   `json:"pod,omitempty"`
	DevicePod      string   `json:"device_pod,omitempty"`
	Bytes          []byte   `json:"bytes,omitempty"`
}

type v1Fate struct {
	Outcome   Outcome `json:"outcome"`
	Reason    string  `json:"reason,omitempty"`
	Location  string  `json:"location,omitempty"`
	Ifname    string  `json:"ifname,omitempty"`
	Netns     uint32  `json:"netns,omitempty"`
	NetnsName string  `json:"netns_name,omitempty"`
	Note      string  `json:"note,omitempty"`
	Node      string  `json:"node,omitempty"`
	Pod       string  `json:"pod,omitempty"`
	DevicePod string  `json:"device_pod,omitempty"`
}

type v1DropSite struct {
	Flow      Direction `json:"flow"`
	Reason    string    `json:"reason"`
	Location  string    `json:"location"`
	Ifname    string    `json:"ifname,omitempty"`
	NetnsName string    `json:"netns_name,omitempty"`
	Node      string    `json:"node,omitempty"`
	Pod       string    `json:"pod,omitempty"`
	DevicePod string    `json:"device_pod,omitempty"`
	Count     int       `json:"count"`
}

type v1PacketHead struct {
	ID           int       `json:"id"`
	Flow         Direction `json:"flow"`
	Tuple        Headers   `json:"tuple"`
	Fate         v1Fate    `json:"fate"`
	CopyOf       int       `json:"copy_of,omitempty"`
	RetransmitOf int       `json:"retransmit_of,omitempty"`
	Incomplete   bool      `json:"incomplete,omitempty"`
}

func v1(h Hop) v1Hop {
	return v1Hop{h.TimeNS, h.Event, h.Probe, h.Netns, h.NetnsName, h.Ifindex, h.Ifname, h.Tuple, h.Encap,
		h.VNI, h.Outer, h.Len, h.Reason, h.ReasonInferred, h.ReasonCode, h.Location, h.Route, h.Func, h.Copy,
		h.Node, h.Pod, h.DevicePod, h.Bytes}
}

func v1F(f Fate) v1Fate {
	return v1Fate{f.Outcome, f.Reason, f.Location, f.Ifname, f.Netns, f.NetnsName, f.Note, f.Node, f.Pod, f.DevicePod}
}

// encodeV1 is encoding/json as the document's writer sets it up: no HTML escaping.
func encodeV1(t testing.TB, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func samples(s string) []Hop {
	ret := int32(-1)
	full := Hop{
		TimeNS: 1<<63 + 5, Event: KindDrop, Probe: s,
		Place: Place{Netns: 4026531840, NetnsName: s, Ifindex: 7, Ifname: s, Node: s, Pod: s, DevicePod: s},
		Tuple: &Headers{Tuple: Tuple{Proto: ProtoTCP, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("fd00::1%eth0"), Sport: 1, Dport: 65535},
			IPID: 9, TTL: 64, TCPFlags: 0x12, TCPSeq: 1 << 31, ICMPType: 8, ICMPCode: 1, ICMPID: 2, ICMPSeq: 3, Payload: 100},
		Encap: s, VNI: 1<<24 - 1, Outer: &Headers{Tuple: Tuple{Proto: ProtoUDP}},
		Len: 84, Reason: s, ReasonInferred: true, ReasonCode: 2, Location: s,
		Route: &Route{Table: 254, TableName: s, Err: -101, OutIfname: s, OutIndex: 3, Gateway: netip.MustParseAddr("10.0.0.254"),
			Lookup: Tuple{Proto: Proto(47), Src: netip.MustParseAddr("::")}, Iif: 4},
		Func: &Func{Name: s, Ret: &ret, Hook: s, Family: s, Verdict: s},
		Copy: true, Bytes: []byte(s + "\x45\x00\xff"),
	}
	return []Hop{{}, {Probe: s}, full, {Bytes: []byte{}}, {Bytes: []byte{0xfb, 0xff}}, {Route: &Route{}, Func: &Func{}, Tuple: &Headers{}}}
}

func checkSame(t *testing.T, s string) {
	t.Helper()
	for _, h := range samples(s) {
		if got, want := h.AppendJSON(nil), encodeV1(t, v1(h)); !bytes.Equal(got, want) {
			t.Fatalf("hop %q:\n got %s\nwant %s", s, got, want)
		}
		f := Fate{Outcome: Dropped, Reason: s, Location: s, Place: h.Place, Note: s}
		f.Ifindex = 0
		if got, want := f.AppendJSON(nil), encodeV1(t, v1F(f)); !bytes.Equal(got, want) {
			t.Fatalf("fate %q:\n got %s\nwant %s", s, got, want)
		}
		d := DropSite{Flow: Reply, Reason: s, Location: s, Place: h.Place, Count: 3}
		if got, want := d.AppendJSON(nil), encodeV1(t, v1DropSite{d.Flow, d.Reason, d.Location, d.Ifname, d.NetnsName, d.Node, d.Pod, d.DevicePod, d.Count}); !bytes.Equal(got, want) {
			t.Fatalf("drop site %q:\n got %s\nwant %s", s, got, want)
		}
		p := Packet{ID: 4, Flow: Request, Fate: f, CopyOf: 1, RetransmitOf: 2, Incomplete: true}
		if h.Tuple != nil {
			p.Tuple = *h.Tuple
		}
		want := encodeV1(t, v1PacketHead{p.ID, p.Flow, p.Tuple, v1F(p.Fate), p.CopyOf, p.RetransmitOf, p.Incomplete})
		if got := append(p.AppendHeadJSON(nil), '}'); !bytes.Equal(got, want) {
			t.Fatalf("packet head %q:\n got %s\nwant %s", s, got, want)
		}
		// Through encoding/json, as a recording's events and the document's flows are written.
		if got, want := encodeV1(t, h), encodeV1(t, v1(h)); !bytes.Equal(got, want) {
			t.Fatalf("hop %q through encoding/json:\n got %s\nwant %s", s, got, want)
		}
	}
}

func TestJSONIsV1(t *testing.T) {
	for _, s := range []string{"", "eth0", "a\"b\\c", "<->&", "\x00\x01\b\f\n\r\t\x1f\x7f", "é€😀", "\xff\xfe", "\u2028\u2029", "x\xc3",
		// Past 8 bytes, read a word at a time: what to escape in each place of a word.
		"net:netif_receive_skb", "12345678\"", "1234567\"8", "\\2345678", "1234\x1f678", "1234567\x7f", "12345678é", "1234567\xff",
		"abcdefgh\u2028ijklmnop", "abcdefghijklmnop\x00", " !#$%&'()*+,-./:;<=>?@[]^_`{|}~"} {
		checkSame(t, s)
	}
}

func FuzzJSONIsV1(f *testing.F) {
	f.Add("veth-pod")
	f.Add("\u2028<\xff")
	f.Fuzz(func(t *testing.T, s string) { checkSame(t, s) })
}

// HopJSON writes a hop as AppendJSON does, whether what it remembers is the hop's or not.
func TestHopJSONIsAppendJSON(t *testing.T) {
	var c HopJSON
	hops := append(samples("eth0"), samples("a\"b")...)
	other := *hops[2].Tuple
	other.TTL--
	h := hops[2]
	h.Tuple = &other
	hops = append(hops, h, hops[2], hops[2])
	// More kinds and places than it remembers, coming back: each written as it is.
	for i := range 40 {
		h := hops[2]
		h.Event, h.Probe = Kind("k"+strconv.Itoa(i%11)), "p"+strconv.Itoa(i%3)
		h.Netns, h.Ifindex, h.NetnsName, h.Ifname = uint32(i%13), uint32(i%2), "ns"+strconv.Itoa(i%5), []string{"", "eth0", "a\"b"}[i%3]
		hops = append(hops, h)
	}
	for _, ns := range []uint64{0, 999_999, 1_000_000, 1_000_001, 1_234_567, 1_999_999, 2_000_000, 5_000_123_456, 5_000_999_999, 5_001_000_000, 1<<64 - 1, 7} {
		h := hops[2]
		h.TimeNS = ns
		hops = append(hops, h)
	}
	for i := range 12 {
		h := hops[2]
		r := *h.Route
		r.Table, r.OutIfname = uint32(i%6), []string{"", "eth0"}[i%2]
		h.Route = &r
		hops = append(hops, h)
	}
	for i := range hops {
		if got, want := c.AppendHopJSON([]byte("x"), &hops[i]), hops[i].AppendJSON([]byte("x")); !bytes.Equal(got, want) {
			t.Fatalf("hop %d:\n got %s\nwant %s", i, got, want)
		}
		p := Packet{ID: i, Flow: Reply}
		if hops[i].Tuple != nil {
			p.Tuple = *hops[i].Tuple
		}
		if got, want := c.AppendHeadJSON(nil, &p), p.AppendHeadJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("packet head %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// Every byte in every place of the words appendString reads at once is escaped as
// encoding/json escapes it.
func TestAppendStringEachByte(t *testing.T) {
	for c := range 256 {
		for at := range 17 {
			b := []byte("abcdefghijklmnopq")
			b[at] = byte(c)
			if got, want := appendString(nil, string(b)), encodeV1(t, string(b)); !bytes.Equal(got, want) {
				t.Fatalf("byte %#x at %d: got %s, want %s", c, at, got, want)
			}
		}
	}
}

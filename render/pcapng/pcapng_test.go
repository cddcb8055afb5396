package pcapng

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/trace"
)

// The real traces, taken with --pcapng, in testdata/postmortem (its README says how).
const testdata = "../../testdata/postmortem/"

func read(t *testing.T, path string) *trace.Trace {
	t.Helper()
	tr, err := jsontrace.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func write(t *testing.T, tr *trace.Trace) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, tr); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type rawBlock struct {
	typ  uint32
	body []byte
}

// blocks splits a capture into its blocks, checking the framing every reader relies on.
func blocks(t *testing.T, b []byte) []rawBlock {
	t.Helper()
	var out []rawBlock
	for len(b) > 0 {
		if len(b) < 12 {
			t.Fatalf("%d bytes left after %d blocks: not a block", len(b), len(out))
		}
		typ, n := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
		if n%4 != 0 || int(n) > len(b) || n < 12 {
			t.Fatalf("block %d (type %#x): length %d of %d bytes left", len(out), typ, n, len(b))
		}
		if tail := binary.LittleEndian.Uint32(b[n-4:]); tail != n {
			t.Fatalf("block %d: length %d, trailing length %d", len(out), n, tail)
		}
		out = append(out, rawBlock{typ, b[8 : n-4]})
		b = b[n:]
	}
	return out
}

// options reads a block's options from b: code -> values.
func options(t *testing.T, b []byte) map[uint16][]string {
	t.Helper()
	opts := map[uint16][]string{}
	for {
		if len(b) < 4 {
			t.Fatalf("options end without opt_endofopt")
		}
		code, n := binary.LittleEndian.Uint16(b), int(binary.LittleEndian.Uint16(b[2:]))
		if code == optEnd {
			if len(b) != 4 {
				t.Fatalf("%d bytes after opt_endofopt", len(b)-4)
			}
			return opts
		}
		padded := (n + 3) &^ 3
		if 4+padded > len(b) {
			t.Fatalf("option %d of %d bytes overruns its block", code, n)
		}
		opts[code] = append(opts[code], string(b[4:4+n]))
		b = b[4+padded:]
	}
}

// The capture's structure, read back without tshark: one section with the verdict, an
// interface per place, and a packet block per hop with bytes, carrying those bytes, in time
// order.
func TestStructure(t *testing.T) {
	for _, name := range []string{"forward-drop", "dnat", "vxlan", "merged"} {
		t.Run(name, func(t *testing.T) {
			tr := read(t, testdata+name+".json")
			bs := blocks(t, write(t, tr))
			if bs[0].typ != blockSHB || binary.LittleEndian.Uint32(bs[0].body) != 0x1A2B3C4D {
				t.Fatalf("first block %#x is no section header", bs[0].typ)
			}
			shb := options(t, bs[0].body[16:])
			if c := shb[optComment]; len(c) == 0 || !strings.HasPrefix(c[0], "pathtrace verdict: "+strings.ToUpper(tr.Verdict.Outcome)) {
				t.Errorf("section comments %q do not start with the verdict (%s)", c, tr.Verdict.Outcome)
			}
			places := map[trace.PlaceKey]bool{}
			var hops [][]byte
			for _, p := range tr.Packets {
				for _, h := range p.Hops {
					if len(h.Bytes) > 0 {
						places[h.Place.Key()] = true
						hops = append(hops, h.Bytes)
					}
				}
			}
			var names []string
			var got [][]byte
			var last uint64
			for _, b := range bs[1:] {
				switch b.typ {
				case blockIDB:
					if lt := binary.LittleEndian.Uint16(b.body); lt != linkTypeRaw {
						t.Errorf("interface link type %d, want raw IP (101)", lt)
					}
					o := options(t, b.body[8:])
					if len(o[optIfName]) != 1 || !slices.Equal(o[optIfTSResol], []string{"\x09"}) {
						t.Errorf("interface options %v: want a name and nanoseconds", o)
					}
					names = append(names, o[optIfName]...)
				case blockEPB:
					if id := binary.LittleEndian.Uint32(b.body); int(id) >= len(names) {
						t.Errorf("packet on interface %d of %d", id, len(names))
					}
					ts := uint64(binary.LittleEndian.Uint32(b.body[4:]))<<32 | uint64(binary.LittleEndian.Uint32(b.body[8:]))
					if ts < last {
						t.Errorf("packet at %d after one at %d", ts, last)
					}
					last = ts
					capLen, origLen := binary.LittleEndian.Uint32(b.body[12:]), binary.LittleEndian.Uint32(b.body[16:])
					if capLen > SnapLen || origLen < capLen {
						t.Errorf("packet of %d bytes captured, %d long", capLen, origLen)
					}
					got = append(got, b.body[20:20+capLen])
					o := options(t, b.body[20+(capLen+3)&^3:])
					if c := o[optComment]; len(c) != 1 || !strings.HasPrefix(c[0], "pkt=") {
						t.Errorf("packet comment %q", c)
					}
				default:
					t.Errorf("block type %#x", b.typ)
				}
			}
			if len(names) != len(places) {
				t.Errorf("%d interfaces %q for %d places", len(names), names, len(places))
			}
			sortBytes := func(s [][]byte) { slices.SortFunc(s, bytes.Compare) }
			sortBytes(got)
			sortBytes(hops)
			if !slices.EqualFunc(got, hops, bytes.Equal) {
				t.Errorf("the capture's %d packets are not the trace's %d hops' bytes", len(got), len(hops))
			}
		})
	}
}

// What Wireshark shows, read by Debian's tshark (make deps installs it): at every hop its
// dissection of the bytes is the hop's tuple, interfaces are named by place, the comments tell
// the story and the section header the verdict.
func TestTsharkReads(t *testing.T) {
	testutil.RequireTshark(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name       string
		args       []string
		interfaces []string
		comment    string // one frame's comment has it
		info       string // capinfos says it
	}{
		{name: "forward-drop", interfaces: []string{"pte2e-capfwd-node veth-pod", "pte2e-capfwd-pod eth0"},
			comment: "hop 5/5: DROPPED (skb:kfree_skb) on pte2e-capfwd-node veth-pod; route table main -> veth-ext; fate: DROPPED IP_INADDRERRORS at ip_error+0x94",
			info:    "pathtrace verdict: DROPPED: forwarding disabled (net.ipv4.ip_forward=0) (confidence high)"},
		{name: "dnat", comment: "queued (net:net_dev_queue) on pte2e-capnat-node veth-ext; NAT dst 10.96.0.10 -> 10.52.2.2",
			info: "filter: icmp 10.52.1.2 <-> 10.96.0.10"},
		{name: "vxlan", args: []string{"-d", "udp.port==8472,vxlan"}, comment: "on pte2e-capvx-node1 eth0; in vxlan 192.168.53.1 > 192.168.53.2"},
		{name: "merged", args: []string{"-d", "udp.port==8472,vxlan"},
			interfaces: []string{"node1: pte2e-capmg-node1 eth0", "node1: pte2e-capmg-node1 flannel.1", "node1: pte2e-capmg-node1 veth-pod",
				"node1: pte2e-capmg-pod1", "node1: pte2e-capmg-pod1 eth0", "node2: pte2e-capmg-node2 eth0", "node2: pte2e-capmg-node2 flannel.1",
				"node2: pte2e-capmg-node2 veth-pod", "node2: pte2e-capmg-pod2 eth0"},
			comment: "request hop 10/18: received (net:netif_receive_skb) on node2: pte2e-capmg-node2 eth0; in vxlan 192.168.54.1 > 192.168.54.2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := read(t, testdata+c.name+".json")
			file := filepath.Join(dir, c.name+".pcapng")
			if err := os.WriteFile(file, write(t, tr), 0o644); err != nil {
				t.Fatal(err)
			}
			frames := testutil.CheckCapture(t, tr, file, c.args...)
			var names []string
			found := false
			for _, f := range frames {
				if !slices.Contains(names, f.Interface) {
					names = append(names, f.Interface)
				}
				found = found || strings.Contains(f.Comment, c.comment)
			}
			slices.Sort(names)
			if c.interfaces != nil && !slices.Equal(names, c.interfaces) {
				t.Errorf("interfaces %q, want %q", names, c.interfaces)
			}
			if !found {
				t.Errorf("no frame's comment says %q", c.comment)
			}
			if info := testutil.TsharkInfo(t, file); !strings.Contains(info, c.info) {
				t.Errorf("capinfos does not say %q:\n%s", c.info, info)
			}
		})
	}
}

// A trace taken without --pcapng has no bytes to write; one with no packet is a capture of
// the verdict alone.
func TestNoBytes(t *testing.T) {
	tr := read(t, "../jsontrace/testdata/forward-drop.json")
	if err := Write(&bytes.Buffer{}, tr); !errors.Is(err, ErrNoBytes) {
		t.Errorf("a trace without bytes: %v, want ErrNoBytes", err)
	}
	tr.Packets = nil
	bs := blocks(t, write(t, tr))
	if len(bs) != 1 || bs[0].typ != blockSHB {
		t.Errorf("a trace without packets: %d blocks, want the section header alone", len(bs))
	}
}

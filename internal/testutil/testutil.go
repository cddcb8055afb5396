// Package testutil holds helpers shared by pathtrace's tests.
package testutil

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pathtrace/pathtrace/trace"
)

// RequireRoot skips a test that needs root, saying why. Only privileged tests call it.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to %s", why)
	}
}

// Recording is one event stream of testdata/events/recorded and the flow it was traced with.
type Recording struct {
	File     string // name without .jsonl
	Src, Dst string // host addresses
	Proto    trace.Proto
}

// Recordings lists every recording, for the tests and benchmarks that replay them all.
var Recordings = []Recording{
	{"healthy-ping", "10.11.1.2", "10.11.2.2", trace.ProtoICMP},
	{"forwarding-disabled", "10.12.1.2", "10.12.2.2", 0},
	{"forward-chain-drop", "10.13.1.2", "10.13.2.2", trace.ProtoICMP},
	{"udp-closed-port", "10.14.1.2", "10.14.2.2", trace.ProtoUDP},
	{"masquerade-reply-dropped", "10.21.1.2", "10.21.2.2", trace.ProtoICMP},
	{"dnat-service", "10.22.1.2", "10.96.0.10", trace.ProtoICMP},
	{"tcp-conversation", "10.23.1.2", "10.23.2.2", trace.ProtoTCP},
	{"vxlan-overlay", "10.31.1.2", "10.31.2.2", trace.ProtoICMP},
}

// ICMPOfType keeps the ICMP packets of one type (8 echo request, 0 echo reply): a lab's pinger
// and the kernel also send others.
func ICMPOfType(ps []trace.Packet, icmpType uint8) []trace.Packet {
	var out []trace.Packet
	for _, p := range ps {
		if p.Tuple.Proto == trace.ProtoICMP && p.Tuple.ICMPType == icmpType {
			out = append(out, p)
		}
	}
	return out
}

// Golden compares got with the file at path, byte for byte; with update set it first writes
// got there. what names the content in the failure ("text", "document").
func Golden(t testing.TB, path string, got []byte, update bool, what string) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (go test -update rewrites it; review the diff as a user would read it):\n%s", what, path, got)
	}
}

// AsSaved compares traces as the document saves them: addresses and prefixes by value, and
// without what the document leaves out (a packet's classified flow, a drop site's netns
// inode and ifindex, a fate's ifindex).
var AsSaved = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmpopts.IgnoreFields(trace.Packet{}, "FlowTuple"),
	cmpopts.IgnoreFields(trace.DropSite{}, "Place.Netns", "Place.Ifindex"),
	cmpopts.IgnoreFields(trace.Fate{}, "Place.Ifindex"),
}

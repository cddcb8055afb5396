package jsontrace

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/render/internal/tracetest"
	"github.com/pathtrace/pathtrace/trace"
)

var cmpAddrs = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// full sets every field of the model, so a field that does not survive JSON shows up here.
func full() *trace.Trace {
	hdr := &trace.Headers{
		Tuple:    trace.Tuple{Proto: trace.ProtoTCP, Src: netip.MustParseAddr("10.0.1.2"), Dst: netip.MustParseAddr("fd00::2"), Sport: 43210, Dport: 443},
		IPID:     0x1c46,
		TTL:      63,
		TCPFlags: 0x12,
		TCPSeq:   3290851407,
		ICMPType: 3,
		ICMPCode: 4,
		ICMPID:   4660,
		ICMPSeq:  9,
		Payload:  12,
	}
	hop := trace.Hop{
		TimeNS: 1234567, Event: trace.KindDrop, Probe: "skb:kfree_skb",
		Place: trace.Place{Netns: 4026531840, NetnsName: "node", Ifindex: 7, Ifname: "veth-pod", Node: "node-b", Pod: "default/web", DevicePod: "default/db"},
		Tuple: hdr, Len: 1500, Encap: "vxlan", VNI: 42, Outer: hdr,
		Reason: "NETFILTER_DROP", ReasonCode: 6, Location: "nf_hook_slow+0xa1", ReasonInferred: true,
		Bytes: []byte{0x45, 0x10, 0x05, 0xdc, 0x1c, 0x46}, Copy: true, // no zero byte: zeroFields looks at each
		Func: &trace.Func{Name: "nf_hook_slow", Ret: ptr(int32(-1)), Hook: "FORWARD", Family: "ipv4", Verdict: "DROP"},
		Route: &trace.Route{
			Table: 100, TableName: "cilium", Err: -101, OutIfname: "eth0", OutIndex: 2, Iif: 7,
			Gateway: netip.MustParseAddr("fe80::1%eth0"),
			Lookup:  trace.Tuple{Proto: trace.ProtoUDP, Src: netip.MustParseAddr("10.0.1.2"), Dst: netip.MustParseAddr("10.0.2.2"), Sport: 53000, Dport: 53},
		},
	}
	start := time.Date(2025, 3, 4, 3, 12, 0, 123456789, time.FixedZone("", 3600))
	return &trace.Trace{
		Schema: trace.Schema,
		Meta: trace.Meta{
			Kernel: "6.8.0-45-generic", Hostname: "node-a",
			StartedAt: start, EndedAt: start.Add(10 * time.Second),
			Args:          []string{"pathtrace", "--src", "10.0.1.2"},
			Backend:       "tp_btf",
			Probes:        []trace.Probe{{Name: "fib:fib_table_lookup", Program: "raw_tp", Attached: true, Error: "retried as raw_tp"}},
			Degraded:      []string{"no drop reasons before 5.17"},
			Events:        1234,
			LostEvents:    42,
			Untracked:     3,
			Skipped:       5,
			RoutesSkipped: 6,
			MaxRate:       1000,
			OverBudget:    8,
			NotKept:       7,
			EndReason:     "signal",
			Nodes: []trace.Node{{Name: "node-b", Hostname: "vm", Kernel: "6.18.44", StartedAt: start.Add(-time.Second),
				Source: "b.json", SkewNS: -2500000000, SkewErrorNS: 40000, SkewBasis: "both directions", Packets: 8, Matched: 6}},
			Pods: []trace.PodInfo{{Side: "src", Namespace: "default", Name: "web", Netns: "/var/run/netns/cni-1",
				IPs: []netip.Addr{netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("fd00::1:2")}, Traced: netip.MustParseAddr("10.0.1.2")}},
			Probe: &trace.SentProbe{Kind: "dns", Dst: netip.MustParseAddr("10.0.2.2"), Dport: 53, Name: "kubernetes.default.svc.cluster.local",
				Pod: "default/web", Netns: "/var/run/netns/cni-1", Count: 5, Sent: 4, Error: "probe dns to 10.0.2.2: network is unreachable", Node: "node-a"},
		},
		Filter: trace.Filter{
			Src: netip.MustParsePrefix("10.0.1.0/24"), Dst: netip.MustParsePrefix("10.0.2.2/32"),
			Proto: trace.ProtoTCP, Sport: 43210, Dport: 443,
		},
		Packets: []trace.Packet{{
			ID: 3, Flow: trace.Reply, Tuple: *hdr, Hops: []trace.Hop{hop},
			CopyOf: 2, RetransmitOf: 1, Incomplete: true, FromProbe: true, Fate: trace.Fate{Note: "a note", Outcome: trace.Dropped, Reason: "NETFILTER_DROP", Location: "nf_hook_slow+0xa1",
				Place: trace.Place{Ifname: "veth-pod", Netns: 4026531840, NetnsName: "node", Node: "node-b", Pod: "default/web", DevicePod: "default/db"}},
		}},
		Flows: []trace.FlowSummary{{
			Tuple: hdr.Tuple, Requests: 4, Replies: 3, Delivered: 2, LeftHost: 1, Unknown: 1, Retransmissions: 1, Copies: 1,
			Drops: []trace.DropSite{{Flow: trace.Reply, Reason: "NETFILTER_DROP", Location: "nf_hook_slow+0xa1",
				Place: trace.Place{Ifname: "veth-pod", NetnsName: "node", Node: "node-b", Pod: "default/web", DevicePod: "default/db"}, Count: 3}},
		}},
		Verdict: trace.Verdict{
			Outcome: "dropped", Class: "netfilter", Cause: "a netfilter rule drops the reply", Summary: "3 replies dropped <-> by netfilter & co",
			Evidence:   []trace.Evidence{{What: "drop reason", Value: "NETFILTER_DROP", Source: "skb:kfree_skb"}},
			Fix:        []string{"iptables-save | grep DROP"},
			Unknown:    []trace.NotKnown{{What: "which rule", Settle: "nft list ruleset"}},
			Confidence: "high",
		},
	}
}

// zeroFields lists the fields of v left at their zero value, so that a field added to the
// model later without being added to full() fails the round-trip test instead of being
// silently untested.
func zeroFields(v reflect.Value, path string) []string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return []string{path}
		}
		return zeroFields(v.Elem(), path)
	case reflect.Slice:
		if v.Len() == 0 {
			return []string{path}
		}
		var out []string
		for i := range v.Len() {
			out = append(out, zeroFields(v.Index(i), path+"[]")...)
		}
		return out
	case reflect.Struct:
		switch v.Interface().(type) {
		case time.Time, netip.Addr, netip.Prefix:
			if v.IsZero() {
				return []string{path}
			}
			return nil
		}
		var out []string
		for i := range v.NumField() {
			if v.Type().Field(i).Tag.Get("json") == "-" {
				continue // not in the document
			}
			out = append(out, zeroFields(v.Field(i), path+"."+v.Type().Field(i).Name)...)
		}
		return out
	}
	if v.IsZero() {
		return []string{path}
	}
	return nil
}

// notInDocument are the fields of an embedded Place that the document does not write: a fate
// names no ifindex, a drop site neither netns inode nor ifindex (trace/json.go).
var notInDocument = map[string]bool{
	"Trace.Packets[].Fate.Place.Ifindex":  true,
	"Trace.Flows[].Drops[].Place.Netns":   true,
	"Trace.Flows[].Drops[].Place.Ifindex": true,
}

func TestFullTraceHasEveryFieldSet(t *testing.T) {
	var z []string
	for _, f := range zeroFields(reflect.ValueOf(full()), "Trace") {
		if !notInDocument[f] {
			z = append(z, f)
		}
	}
	if len(z) > 0 {
		t.Fatalf("full() leaves fields unset, so their round trip is untested: %v", z)
	}
}

func TestRoundTrip(t *testing.T) {
	cases := map[string]*trace.Trace{"full": full()}
	for _, s := range tracetest.Scenes() {
		cases[s.Name] = s.Build()
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, want); err != nil {
				t.Fatal(err)
			}
			got, err := Read(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got, cmpAddrs); d != "" {
				t.Fatalf("round trip changed the trace (-want +got):\n%s", d)
			}
			// cmp compares times with Equal, which ignores the UTC offset the text renderer
			// prints. RFC 3339 keeps the offset but not a zone's name, so only full(), whose
			// zone is unnamed, can be held to DeepEqual.
			if name == "full" && !reflect.DeepEqual(want, got) {
				t.Fatal("round trip is cmp-equal but not DeepEqual (UTC offset or address zone lost?)")
			}
		})
	}
}

func TestWriteSetsSchemaWithoutTouchingTheTrace(t *testing.T) {
	in := full()
	in.Schema = ""
	var buf bytes.Buffer
	if err := Write(&buf, in); err != nil {
		t.Fatal(err)
	}
	if in.Schema != "" {
		t.Errorf("Write changed the caller's trace: Schema = %q", in.Schema)
	}
	if !strings.HasPrefix(buf.String(), "{\n  \"schema\": \"pathtrace/v1\",\n") {
		t.Errorf("want indented JSON starting with the schema, got:\n%.80s", buf.String())
	}
	if !strings.Contains(buf.String(), "<->") {
		t.Errorf("HTML escaping is on: %q should stay readable", "<->")
	}
}

func TestReadToleratesUnknownFields(t *testing.T) {
	doc := `{"schema":"pathtrace/v1","added_in_v1_3":{"x":1},
	  "meta":{"kernel":"6.8","future":true},
	  "packets":[{"id":1,"flow":"request","hops":[{"event":"xmit","new_hop_field":[1,2]}],"fate":{"outcome":"left-host"}}]}`
	got, err := Read(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got.Meta.Kernel != "6.8" || len(got.Packets) != 1 || got.Packets[0].Hops[0].Event != trace.KindXmit {
		t.Fatalf("known fields lost next to unknown ones: %+v", got)
	}
}

func TestReadFileErrors(t *testing.T) {
	// Relative names, as a user types them: the errors must read "foo.json ...".
	t.Chdir(t.TempDir())
	write := func(name, content string) string {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return name
	}
	if err := os.Mkdir("traces", 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, want string
	}{
		{"missing", "nope.json", "read trace nope.json: no such file or directory"},
		{"directory", "traces", "read trace traces: is a directory"},
		{"empty", write("empty.json", ""), "empty.json is empty, not a pathtrace trace"},
		{"blank", write("blank.json", " \n\t\n"), "blank.json is empty, not a pathtrace trace"},
		{"not json", write("cap.pcap", "\xd4\xc3\xb2\xa1 binary"), "cap.pcap is not a pathtrace trace: invalid JSON at offset 1"},
		{"truncated", write("cut.json", `{"schema":"pathtrace/v1","packets":[`), "cut.json is not a pathtrace trace: invalid JSON at offset 36 (the file ends early: truncated?)"},
		{"array", write("arr.json", `[1,2]`), "arr.json is not a pathtrace trace: the document is a JSON array, not an object"},
		{"no schema", write("other.json", `{"name":"x"}`), "other.json has no schema, this pathtrace reads pathtrace/v1"},
		{"foreign schema", write("v9.json", `{"schema":"x/v9"}`), `v9.json has schema "x/v9", this pathtrace reads pathtrace/v1`},
		{"numeric schema", write("num.json", `{"schema":1}`), "num.json has a schema that is a JSON number, this pathtrace reads pathtrace/v1"},
		{"bad field", write("bad.json", `{"schema":"pathtrace/v1","packets":[{"id":"one"}]}`), "bad.json is not a pathtrace trace: field packets.id is a JSON string, want number"},
		{"bad proto", write("proto.json", `{"schema":"pathtrace/v1","filter":{"proto":"sctpx"}}`), `proto.json is not a pathtrace trace: unknown protocol "sctpx"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadFile(c.path)
			if err == nil {
				t.Fatal("want an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, c.want) {
				t.Errorf("error\n got: %s\nwant: %s...", msg, c.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
		})
	}
}

func TestReadFileWrapsTheOSError(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "nope.json"))
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) {
		t.Fatalf("want an error wrapping *fs.PathError and fs.ErrNotExist, got %#v", err)
	}
}

func TestReadFilePermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root reads files whatever their mode: drop the capabilities that let it, on this
		// thread only, for the length of the test.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var caps [2]unix.CapUserData
		if err := unix.Capget(&hdr, &caps[0]); err != nil {
			t.Fatal(err)
		}
		saved := caps
		const capDACOverride, capDACReadSearch = 1, 2
		caps[0].Effective &^= 1<<capDACOverride | 1<<capDACReadSearch
		if err := unix.Capset(&hdr, &caps[0]); err != nil {
			t.Fatal(err)
		}
		defer unix.Capset(&hdr, &saved[0])
	}
	p := filepath.Join(t.TempDir(), "secret.json")
	if err := os.WriteFile(p, []byte(`{}`), 0o000); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(p)
	if want := "read trace " + p + ": permission denied"; err == nil || err.Error() != want || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("got %v, want %q wrapping fs.ErrPermission", err, want)
	}
}

func TestReadNamesStdinLikeFiles(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Read(f); err == nil || err.Error() != os.DevNull+" is empty, not a pathtrace trace" {
		t.Fatalf("got %v", err)
	}
	if _, err := Read(strings.NewReader("")); err == nil || err.Error() != "input is empty, not a pathtrace trace" {
		t.Fatalf("got %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

var update = flag.Bool("update", false, "rewrite testdata/*.json from the current output")

// TestDocumentGolden pins the saved document of each scene byte for byte: the file format is
// what other tools read, so a change of the model must not change it unnoticed.
func TestDocumentGolden(t *testing.T) {
	for _, s := range tracetest.Scenes() {
		t.Run(s.Name, func(t *testing.T) {
			var doc bytes.Buffer
			if err := Write(&doc, s.Build()); err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, filepath.Join("testdata", s.Name+".json"), doc.Bytes(), *update, "document")
		})
	}
}

package run

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/render/text"
	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer/assemble"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/replay")

func hostFilter(t *testing.T, src, dst string, proto trace.Proto) trace.Filter {
	t.Helper()
	f, err := trace.NewFilter(netip.MustParsePrefix(src+"/32"), netip.MustParsePrefix(dst+"/32"), proto, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Events recorded from the end-to-end scenarios on a real kernel (6.18), replayed through
// assembly, diagnosis and rendering with no kernel: what a user would have read.
func TestReplayRecorded(t *testing.T) {
	cases := []struct {
		file    string
		filter  trace.Filter
		verdict string
		fate    trace.Outcome
		reason  string
		fn      string
		where   string
		text    []string
	}{
		{
			file: "healthy-ping", filter: hostFilter(t, "10.11.1.2", "10.11.2.2", trace.ProtoICMP),
			verdict: "delivered", fate: trace.Delivered, where: "pte2e-ok-ext",
			text: []string{"=> delivered in pte2e-ok-ext (consumed at icmp_rcv+", "=> delivered in pte2e-ok-pod (consumed at raw_recvmsg+"},
		},
		{
			file: "forwarding-disabled", filter: hostFilter(t, "10.12.1.2", "10.12.2.2", 0),
			verdict: "dropped", fate: trace.Dropped, reason: "IP_INADDRERRORS", fn: "ip_error", where: "pte2e-fwd-node",
			text: []string{"DROPPED on pte2e-fwd-node veth-pod: IP_INADDRERRORS at ip_error+", "forwarding"},
		},
		{
			file: "forward-chain-drop", filter: hostFilter(t, "10.13.1.2", "10.13.2.2", trace.ProtoICMP),
			verdict: "dropped", fate: trace.Dropped, reason: "NETFILTER_DROP", where: "pte2e-nft-node",
			text: []string{"DROPPED on pte2e-nft-node veth-pod: NETFILTER_DROP at ", "netfilter"},
		},
		{
			file: "udp-closed-port", filter: hostFilter(t, "10.14.1.2", "10.14.2.2", trace.ProtoUDP),
			verdict: "dropped", fate: trace.Dropped, reason: "NO_SOCKET", fn: "__udp4_lib_rcv", where: "pte2e-udp-ext",
			text: []string{"DROPPED on pte2e-udp-ext eth0: NO_SOCKET at __udp4_lib_rcv+"},
		},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			events, err := assemble.LoadEvents(filepath.Join("../../testdata/events/recorded", c.file+".jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			tr := Replay(c.filter, events)
			if tr.Verdict.Outcome != c.verdict {
				t.Errorf("verdict %q, want %q: %s", tr.Verdict.Outcome, c.verdict, tr.Verdict.Summary)
			}
			reqs := 0
			for _, p := range tr.Packets {
				if p.Flow != trace.Request {
					continue
				}
				reqs++
				f := p.Fate
				if f.Outcome != c.fate || f.Reason != c.reason || f.NetnsName != c.where ||
					(c.fn != "" && !strings.HasPrefix(f.Location, c.fn+"+0x")) {
					t.Errorf("request #%d fate %+v, want %s %s %s in %s", p.ID, f, c.fate, c.reason, c.fn, c.where)
				}
			}
			if reqs < 2 {
				t.Errorf("%d requests replayed, want at least 2", reqs)
			}

			var buf bytes.Buffer
			if err := text.Render(&buf, tr, text.Options{}); err != nil {
				t.Fatal(err)
			}
			for _, want := range c.text {
				if !strings.Contains(buf.String(), want) {
					t.Errorf("text lacks %q:\n%s", want, &buf)
				}
			}
			golden := filepath.Join("testdata/replay", c.file+".golden")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if buf.String() != string(want) {
				t.Errorf("text differs from %s (go test -update rewrites it):\n%s", golden, &buf)
			}
		})
	}
}

package run

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/analysis/assemble"
	"github.com/pathtrace/pathtrace/render/text"
	"github.com/pathtrace/pathtrace/trace"
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
			tr, text := replay(t, c.file, c.filter)
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

			for _, want := range c.text {
				if !strings.Contains(text, want) {
					t.Errorf("text lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

// replay assembles a recording, renders it and compares the text with its golden file.
func replay(t *testing.T, file string, f trace.Filter) (*trace.Trace, string) {
	t.Helper()
	events, err := assemble.LoadEvents(filepath.Join("../../testdata/events/recorded", file+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	tr := Replay(f, events)
	var buf bytes.Buffer
	if err := text.Render(&buf, tr, text.Options{}); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata/replay", file+".golden")
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
	return tr, buf.String()
}

// The conversations of issue 5, recorded: NAT both ways, the reply dying after de-NAT, VXLAN,
// and a whole TCP connection in one flow.
func TestReplayConversations(t *testing.T) {
	t.Run("masquerade-reply-dropped", func(t *testing.T) {
		tr, text := replay(t, "masquerade-reply-dropped", hostFilter(t, "10.21.1.2", "10.21.2.2", trace.ProtoICMP))
		if len(tr.Flows) != 1 || len(tr.Flows[0].Drops) != 1 || tr.Flows[0].Drops[0].Flow != trace.Reply {
			t.Fatalf("flows %+v, want one flow whose reply was dropped", tr.Flows)
		}
		d := tr.Flows[0].Drops[0]
		if d.Reason != "IP_INADDRERRORS" || d.Ifname != "veth-ext" || d.NetnsName != "pte2e-masq-node" {
			t.Errorf("drop site %+v", d)
		}
		for _, want := range []string{"NAT src 10.21.1.2 -> 10.21.2.1", "NAT dst 10.21.2.1 -> 10.21.1.2", "the reply was dropped"} {
			if !strings.Contains(text, want) {
				t.Errorf("text lacks %q", want)
			}
		}
	})
	t.Run("dnat-service", func(t *testing.T) {
		tr, text := replay(t, "dnat-service", hostFilter(t, "10.22.1.2", "10.96.0.10", trace.ProtoICMP))
		if len(tr.Flows) != 1 || tr.Verdict.Outcome != "delivered" {
			t.Errorf("%d flows, verdict %q; want one delivered flow", len(tr.Flows), tr.Verdict.Outcome)
		}
		if !strings.Contains(text, "NAT dst 10.96.0.10 -> 10.22.2.2") || !strings.Contains(text, "NAT src 10.22.2.2 -> 10.96.0.10") {
			t.Errorf("text lacks the DNAT and its reverse:\n%s", text)
		}
	})
	t.Run("vxlan-overlay", func(t *testing.T) {
		tr, text := replay(t, "vxlan-overlay", hostFilter(t, "10.31.1.2", "10.31.2.2", trace.ProtoICMP))
		if tr.Verdict.Outcome != "delivered" {
			t.Errorf("verdict %q", tr.Verdict.Outcome)
		}
		if !strings.Contains(text, "in vxlan 192.168.31.1:") || !strings.Contains(text, "> 192.168.31.2:8472 udp") {
			t.Errorf("text lacks the outer VXLAN tuple:\n%s", text)
		}
	})
	t.Run("tcp-conversation", func(t *testing.T) {
		tr, _ := replay(t, "tcp-conversation", hostFilter(t, "10.23.1.2", "10.23.2.2", trace.ProtoTCP))
		if len(tr.Flows) != 1 || tr.Verdict.Outcome != "delivered" {
			t.Errorf("%d flows, verdict %+v; want one healthy connection", len(tr.Flows), tr.Verdict)
		}
		flags := map[string]bool{}
		for _, p := range tr.Packets {
			flags[string(p.Flow)+" "+p.Tuple.TCPFlags.String()] = true
		}
		for _, want := range []string{"request SYN", "reply SYN,ACK", "request FIN,ACK", "reply FIN,ACK"} {
			if !flags[want] {
				t.Errorf("no %s packet; saw %v", want, flags)
			}
		}
	})
}

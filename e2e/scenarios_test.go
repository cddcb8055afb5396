package e2e

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/trace"
)

// standard builds pod -- node -- ext for one test and removes it afterwards.
func standard(t *testing.T, name string, net uint8) *lab.Topology {
	t.Helper()
	testutil.RequireRoot(t, "create network namespaces and load BPF programs")
	topo, err := lab.Standard("pte2e-"+name, net)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	t.Cleanup(func() { topo.Lab.Close() })
	return topo
}

func ping(t *testing.T, topo *lab.Topology, count int) int {
	t.Helper()
	n, err := topo.Pod.Ping(topo.ExtIP.String(), 0x4242, count, 100*time.Millisecond, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	return n
}

// requireDrop checks that every request was dropped at the same place and that the text says so.
// fns are the functions the kernel may report the drop from (it differs between versions).
func requireDrop(t *testing.T, tr *trace.Trace, out string, netns, ifname, reason string, fns ...string) {
	t.Helper()
	reqs := packets(tr, trace.Request)
	if len(reqs) == 0 {
		t.Fatalf("no request packets in the trace")
	}
	for _, p := range reqs {
		f := p.Fate
		// Before 5.17 the kernel names no reason: the location must say it, and a reason
		// pathtrace infers must be the right one.
		if f.Outcome != trace.Dropped || !reasonIs(f.Reason, reason) || !inFunction(f.Location, fns) ||
			f.NetnsName != netns || f.Ifname != ifname {
			t.Errorf("packet #%d fate = %+v, want dropped in %s on %s with %s in %v", p.ID, f, netns, ifname, reason, fns)
		}
	}
	requireLine(t, out, "DROPPED", reqs[0].Fate.Reason, reqs[0].Fate.Location)
	if tr.Verdict.Outcome != "dropped" {
		t.Errorf("verdict outcome = %q, want dropped", tr.Verdict.Outcome)
	}
}

type evidence struct{ what, value string }

// requireVerdict checks the verdict's cause, one piece of its evidence and one fix, in the
// JSON and in the text.
func requireVerdict(t *testing.T, tr *trace.Trace, out, cause string, ev evidence, fix string) {
	t.Helper()
	v := tr.Verdict
	if v.Cause != cause {
		t.Errorf("verdict cause %q, want %q (%s)", v.Cause, cause, v.Summary)
	}
	found := false
	for _, e := range v.Evidence {
		found = found || (e.What == ev.what && e.Value == ev.value)
	}
	if !found {
		t.Errorf("verdict evidence %+v lacks %s = %s", v.Evidence, ev.what, ev.value)
	}
	if !strings.Contains(strings.Join(v.Fix, "\n"), fix) {
		t.Errorf("verdict fix %q lacks %q", v.Fix, fix)
	}
	requireLine(t, out, "cause", cause)
	requireLine(t, out, ev.what, ev.value)
	requireLine(t, out, fix)
}

func inFunction(location string, fns []string) bool {
	for _, fn := range fns {
		if strings.HasPrefix(location, fn+"+0x") {
			return true
		}
	}
	return false
}

func TestHealthyPing(t *testing.T) {
	topo := standard(t, "ok", 11)
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	if got := ping(t, topo, 3); got != 3 {
		t.Fatalf("lab ping got %d replies, want 3", got)
	}
	tr := s.stop(syscall.SIGINT)

	reqs, reps := packets(tr, trace.Request), packets(tr, trace.Reply)
	if len(reqs) < 3 || len(reps) < 3 {
		t.Fatalf("got %d requests and %d replies, want 3 of each", len(reqs), len(reps))
	}
	pod, node, ext := topo.Pod.Name(), topo.Node.Name(), topo.Ext.Name()
	for _, p := range reqs {
		if p.Tuple.ICMPType != 8 {
			continue
		}
		if got := netnsSeen(p); !slices.Equal(got, []string{pod, node, ext}) {
			t.Errorf("request #%d crossed %v, want [%s %s %s]", p.ID, got, pod, node, ext)
		}
		if p.Fate.Outcome != trace.Delivered || p.Fate.NetnsName != ext {
			t.Errorf("request #%d fate = %+v, want delivered in %s", p.ID, p.Fate, ext)
		}
		if functionHops(tr) && funcHop(p, node, "ip_forward") == nil {
			t.Errorf("request #%d: no ip_forward hop in %s with backend %s", p.ID, node, tr.Meta.Backend)
		}
	}
	for _, p := range reps {
		if p.Tuple.ICMPType != 0 {
			continue
		}
		if got := netnsSeen(p); len(got) < 3 || got[0] != ext || got[1] != node || got[2] != pod {
			t.Errorf("reply #%d crossed %v, want [%s %s %s]", p.ID, got, ext, node, pod)
		}
		if p.Fate.Outcome != trace.Delivered || p.Fate.NetnsName != pod {
			t.Errorf("reply #%d fate = %+v, want delivered in %s", p.ID, p.Fate, pod)
		}
	}
	if tr.Verdict.Outcome != "delivered" {
		t.Errorf("verdict = %+v, want delivered", tr.Verdict)
	}
	out := s.stdout.String()
	requireLine(t, out, "request", "icmp", topo.PodIP.String(), topo.ExtIP.String())
	requireLine(t, out, node, topo.NodePodIf, "received")
	requireLine(t, out, node, topo.NodeExtIf, "xmit")
	requireLine(t, out, "delivered in "+ext)
	if show := s.showText(); show != out {
		t.Errorf("pathtrace show differs from the live output:\n--- live\n%s\n--- show\n%s", out, show)
	}
}

func TestForwardingDisabled(t *testing.T) {
	topo := standard(t, "fwd", 12)
	if err := topo.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String())
	if got := ping(t, topo, 2); got != 0 {
		t.Fatalf("ping got %d replies through a node with forwarding off", got)
	}
	tr := s.stop(syscall.SIGTERM)
	out := s.stdout.String()
	requireDrop(t, tr, out, topo.Node.Name(), topo.NodePodIf, "IP_INADDRERRORS", "ip_error")
	requireLine(t, out, topo.Node.Name(), topo.NodePodIf, "DROPPED")
	requireVerdict(t, tr, out, "forwarding disabled (net.ipv4.ip_forward=0)",
		evidence{"net.ipv4.ip_forward", "0"}, "ip netns exec "+topo.Node.Name()+" sysctl -w net.ipv4.ip_forward=1")
	if len(packets(tr, trace.Reply)) != 0 {
		t.Errorf("replies seen although every request was dropped")
	}
}

func TestForwardChainDrop(t *testing.T) {
	topo := standard(t, "nft", 13)
	if err := topo.Node.NftDropForward(topo.PodIP.String()); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	if got := ping(t, topo, 2); got != 0 {
		t.Fatalf("ping got %d replies through a FORWARD drop rule", got)
	}
	tr := s.stop(syscall.SIGINT)
	out := s.stdout.String()
	requireDrop(t, tr, out, topo.Node.Name(), topo.NodePodIf, "NETFILTER_DROP", "nf_hook_slow", "nft_do_chain")
	requireRuleNamed(t, tr, out, "inet", lab.NftFilterTable, "forward", "ip saddr "+topo.PodIP.String())
	if functionHops(tr) {
		// The hook and the verdict, from nf_hook_slow's return value.
		for _, p := range packets(tr, trace.Request) {
			h := funcHop(p, topo.Node.Name(), "nf_hook_slow")
			if h == nil || h.Func.Hook != "FORWARD" || h.Func.Verdict != "DROP" {
				t.Errorf("request #%d: nf_hook_slow hop %+v, want FORWARD DROP", p.ID, h)
			}
		}
		requireLine(t, out, "netfilter", "FORWARD ipv4: DROP")
	}
}

// The same drop written the way kube-proxy and most CNIs write rules: iptables-nft.
func TestIptablesForwardDrop(t *testing.T) {
	topo := standard(t, "ipt", 16)
	bin, err := exec.LookPath("iptables-nft")
	if err != nil {
		t.Fatal("iptables-nft not installed: scripts/install-deps.sh installs it")
	}
	add := exec.Command("ip", "netns", "exec", topo.Node.Name(), bin, "-A", "FORWARD", "-s", topo.PodIP.String(),
		"-m", "comment", "--comment", "quarantine pod", "-j", "DROP")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("iptables-nft: %v: %s", err, out)
	}
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	ping(t, topo, 2)
	tr := s.stop(syscall.SIGINT)
	out := s.stdout.String()
	requireDrop(t, tr, out, topo.Node.Name(), topo.NodePodIf, "NETFILTER_DROP", "nf_hook_slow", "nft_do_chain")
	requireRuleNamed(t, tr, out, "ip", "filter", "FORWARD", "quarantine pod")
}

// requireRuleNamed checks that the verdict names the rule that dropped the packet, with the fix
// that deletes it by handle.
func requireRuleNamed(t *testing.T, tr *trace.Trace, out, family, table, chain, ruleText string) {
	t.Helper()
	for _, d := range tr.Meta.Degraded {
		// A kernel without owned nftables tables (before 5.12) cannot have pathtrace's tracing
		// table; the trace says so, and the rule cannot be named.
		if strings.Contains(d, "nftables tracing unavailable") && strings.Contains(d, tr.Packets[0].Fate.NetnsName) {
			requireLine(t, out, "degraded", "nftables tracing unavailable")
			return
		}
	}
	v := tr.Verdict
	prefix := fmt.Sprintf("netfilter rule %s %s %s handle ", family, table, chain)
	if !strings.HasPrefix(v.Cause, prefix) || v.Confidence != "high" {
		t.Fatalf("verdict cause %q (%s), want %q...", v.Cause, v.Confidence, prefix)
	}
	handle := strings.TrimPrefix(v.Cause, prefix)
	var rule string
	for _, e := range v.Evidence {
		if e.What == "rule" {
			rule = e.Value
		}
	}
	if !strings.Contains(rule, ruleText) || !strings.Contains(rule, "drop") {
		t.Errorf("rule evidence %q lacks %q", rule, ruleText)
	}
	fix := fmt.Sprintf("nft delete rule %s %s %s handle %s", family, table, chain, handle)
	if !strings.Contains(strings.Join(v.Fix, "\n"), fix) {
		t.Errorf("fix %q lacks %q", v.Fix, fix)
	}
	requireLine(t, out, "hook", "forward")
	requireLine(t, out, fix)
}

func TestUDPClosedPort(t *testing.T) {
	topo := standard(t, "udp", 14)
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "udp", "--dport", "9")
	for i := 0; i < 2; i++ {
		if err := topo.Pod.SendUDP(topo.ExtIP.String(), 40000, 9, []byte(fmt.Sprintf("probe %d", i))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tr := s.stop(syscall.SIGINT)
	requireDrop(t, tr, s.stdout.String(), topo.Ext.Name(), "eth0", "NO_SOCKET", "__udp4_lib_rcv")
}

func TestEndsOnCountAndDuration(t *testing.T) {
	topo := standard(t, "end", 15)
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--count", "2", "--duration", "20s")
	ping(t, topo, 3)
	tr := s.stop(0)
	if tr.Meta.EndReason != "count" || len(tr.Packets) != 2 {
		t.Errorf("end reason %q with %d packets, want count with 2", tr.Meta.EndReason, len(tr.Packets))
	}

	s = start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--duration", "1s")
	tr = s.stop(0)
	if tr.Meta.EndReason != "duration" {
		t.Errorf("end reason %q, want duration", tr.Meta.EndReason)
	}
	if tr.Verdict.Outcome != "no-packets" {
		t.Errorf("verdict %q with no traffic, want no-packets", tr.Verdict.Outcome)
	}
	requireLine(t, s.stdout.String(), "no packet")
}

package nodestate

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/lab"
)

// LegacyIptablesRules reads what iptables-legacy wrote, as iptables-legacy -S prints it (for
// rules without match options), with the chain's hook and the counters.
func TestLegacyIptablesRules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bin, err := exec.LookPath("iptables-legacy")
	if err != nil {
		t.Skip("iptables-legacy not installed")
	}
	l, err := lab.New("ptleg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ns, err := l.AddNS("n")
	if err != nil {
		t.Fatal(err)
	}
	r := New("/proc", "/run/netns")
	if tables, err := r.LegacyIptables(ns.Inode(), false); err != nil || len(tables) != 0 {
		t.Fatalf("fresh namespace: legacy tables %v (%v), want none", tables, err)
	}
	for _, args := range [][]string{
		{"-N", "KUBE-X"},
		{"-A", "FORWARD", "-s", "10.0.1.2/32", "-j", "DROP"},
		{"-A", "FORWARD", "!", "-d", "10.0.0.0/8", "-i", "eth0", "-p", "udp", "-j", "ACCEPT"},
		{"-A", "INPUT", "-j", "KUBE-X"},
		{"-A", "KUBE-X", "-o", "veth+", "-j", "RETURN"},
		{"-A", "KUBE-X", "-p", "icmp", "-j", "DROP"},
	} {
		if err := ns.Run(bin, args...); err != nil {
			t.Fatal(err)
		}
	}
	tables, err := r.LegacyIptables(ns.Inode(), false)
	if err != nil || strings.Join(tables, ",") != "filter" {
		t.Fatalf("legacy tables %v (%v), want filter", tables, err)
	}
	rules, err := r.LegacyIptablesRules(ns.Inode(), "filter")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", ns.Name(), bin, "-S").Output()
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "-A ") {
			want = append(want, line)
		}
	}
	for _, rule := range rules {
		got = append(got, rule.Spec)
		if rule.Chain == "FORWARD" && rule.Hook != "forward" || rule.Chain == "KUBE-X" && rule.Hook != "" {
			t.Errorf("rule %q hook %q", rule.Spec, rule.Hook)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rules:\n%s\niptables-legacy -S:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

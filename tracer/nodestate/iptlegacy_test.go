package nodestate

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/lab"
)

// LegacyIptablesRules reads what iptables-legacy (ip6tables-legacy) wrote, as its -S prints it
// (for rules without match options), with the chain's hook and the counters.
func TestLegacyIptablesRules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, fam := range []struct {
		tool  string
		ipv6  bool
		rules [][]string
	}{
		{"iptables-legacy", false, [][]string{
			{"-N", "KUBE-X"},
			{"-A", "FORWARD", "-s", "10.0.1.2/32", "-j", "DROP"},
			{"-A", "FORWARD", "!", "-d", "10.0.0.0/8", "-i", "eth0", "-p", "udp", "-j", "ACCEPT"},
			{"-A", "INPUT", "-j", "KUBE-X"},
			{"-A", "KUBE-X", "-o", "veth+", "-j", "RETURN"},
			{"-A", "KUBE-X", "-p", "icmp", "-j", "DROP"},
		}},
		{"ip6tables-legacy", true, [][]string{
			{"-N", "KUBE-X"},
			{"-A", "FORWARD", "-s", "fd00:1::2/128", "-j", "DROP"},
			{"-A", "FORWARD", "!", "-d", "fd00::/8", "-i", "eth0", "-p", "udp", "-j", "ACCEPT"},
			{"-A", "INPUT", "-j", "KUBE-X"},
			{"-A", "KUBE-X", "-o", "veth+", "-j", "RETURN"},
			{"-A", "KUBE-X", "-p", "ipv6-icmp", "-j", "DROP"},
			{"-A", "OUTPUT", "-d", "fd00:2::/64", "-o", "eth1", "-j", "ACCEPT"},
		}},
	} {
		t.Run(fam.tool, func(t *testing.T) {
			bin, err := exec.LookPath(fam.tool)
			if err != nil {
				t.Skip(fam.tool + " not installed")
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
			if tables, err := r.LegacyIptables(ns.Inode(), fam.ipv6); err != nil || len(tables) != 0 {
				t.Fatalf("fresh namespace: legacy tables %v (%v), want none", tables, err)
			}
			for _, args := range fam.rules {
				if err := ns.Run(bin, args...); err != nil {
					t.Fatal(err)
				}
			}
			tables, err := r.LegacyIptables(ns.Inode(), fam.ipv6)
			if err != nil || strings.Join(tables, ",") != "filter" {
				t.Fatalf("legacy tables %v (%v), want filter", tables, err)
			}
			rules, err := r.LegacyIptablesRules(ns.Inode(), "filter", fam.ipv6)
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
			if len(want) != len(fam.rules)-1 || strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("rules:\n%s\n%s -S:\n%s", strings.Join(got, "\n"), fam.tool, strings.Join(want, "\n"))
			}
		})
	}
}

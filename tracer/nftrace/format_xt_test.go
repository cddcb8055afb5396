package nftrace

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/lab"
)

// TestFormatIptablesAsIptablesPrints writes rules with the real iptables-nft (kube-proxy's
// and CNIs' usual matches) and holds FormatIptables, reading them back from the kernel, to
// what `iptables-nft -S` itself prints for them.
func TestFormatIptablesAsIptablesPrints(t *testing.T) {
	needRoot(t)
	bin, err := exec.LookPath("iptables-nft")
	if err != nil {
		t.Skip("iptables-nft not installed")
	}
	l, err := lab.New("ptxt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ns, err := l.AddNS("n")
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name(), bin}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("iptables-nft %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	rules := [][]string{
		{"-N", "KUBE-FORWARD"},
		{"-A", "FORWARD", "-m", "comment", "--comment", "kubernetes forwarding rules", "-j", "KUBE-FORWARD"},
		{"-A", "KUBE-FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"},
		{"-A", "KUBE-FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		{"-A", "KUBE-FORWARD", "-m", "conntrack", "!", "--ctstate", "NEW", "-j", "RETURN"},
		{"-A", "KUBE-FORWARD", "-m", "mark", "--mark", "0x4000/0x4000", "-j", "ACCEPT"},
		{"-A", "KUBE-FORWARD", "-s", "10.1.0.0/16", "-i", "eth0", "-o", "cali+", "-j", "DROP"},
		{"-A", "KUBE-FORWARD", "!", "-d", "10.2.0.1/32", "-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "icmp-port-unreachable"},
		{"-A", "KUBE-FORWARD", "-p", "tcp", "-m", "multiport", "--dports", "80,443,8000:8100", "-j", "DROP"},
		{"-A", "KUBE-FORWARD", "-p", "udp", "-m", "udp", "--sport", "53", "-j", "ACCEPT"},
		{"-A", "INPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "KUBE-FORWARD"},
		{"-A", "FORWARD", "-m", "physdev", "--physdev-in", "veth1", "--physdev-is-bridged", "-j", "DROP"},
		{"-A", "INPUT", "-p", "icmp", "-m", "limit", "--limit", "5/sec", "--limit-burst", "10", "-j", "ACCEPT"},
		{"-A", "INPUT", "-m", "limit", "--limit", "3/min", "-j", "DROP"},
		{"-A", "FORWARD", "-g", "KUBE-FORWARD"},
	}
	for _, r := range rules {
		run(r...)
	}
	var want []string
	for _, line := range strings.Split(run("-S"), "\n") {
		if strings.HasPrefix(line, "-A ") {
			want = append(want, line)
		}
	}
	fd, err := unix.Open(ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"}
	var got []string
	for _, chain := range []string{"INPUT", "FORWARD", "OUTPUT", "KUBE-FORWARD"} {
		rs, err := c.GetRules(tbl, &nftables.Chain{Name: chain, Table: tbl})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			s, ok := FormatIptables(r)
			if !ok {
				t.Errorf("rule %s not read as iptables: %s", chain, FormatRule(r))
			}
			got = append(got, s)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("FormatIptables:\n%s\niptables -S:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// FormatRule names the matches too.
	rs, _ := c.GetRules(tbl, &nftables.Chain{Name: "KUBE-FORWARD", Table: tbl})
	if len(rs) == 0 || !strings.Contains(FormatRule(rs[0]), "xt match conntrack --ctstate INVALID") {
		t.Errorf("FormatRule of the INVALID rule: %q", FormatRule(rs[0]))
	}
}

// An nft rule in a table named like iptables' is not taken for an iptables rule.
func TestFormatIptablesNotNft(t *testing.T) {
	tbl := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"}
	r := &nftables.Rule{Table: tbl, Chain: &nftables.Chain{Name: "input", Table: tbl}, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 0, 0, 1}},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}}
	if s, ok := FormatIptables(r); ok {
		t.Errorf("nft rule read as iptables: %q", s)
	}
	r.Chain.Name = "INPUT"
	if s, _ := FormatIptables(r); s != "-A INPUT -s 10.0.0.1/32 -j DROP" {
		t.Errorf("got %q", s)
	}
	// A compat match makes it iptables whatever the chain's name.
	ct := &xt.ConntrackMtinfo3{}
	ct.MatchFlags, ct.StateMask = uint16(xt.ConntrackState), 1
	r.Chain.Name = "fw"
	r.Exprs = []expr.Any{&expr.Match{Name: "conntrack", Rev: 3, Info: ct}, &expr.Verdict{Kind: expr.VerdictDrop}}
	if s, _ := FormatIptables(r); s != "-A fw -m conntrack --ctstate INVALID -j DROP" {
		t.Errorf("got %q", s)
	}
}

package nftrace

import (
	"math/bits"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/tracer/netns"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and nf_tables tables")
	}
}

func standard(t *testing.T, prefix string, net uint8) *lab.Topology {
	t.Helper()
	needRoot(t)
	topo, err := lab.Standard(prefix, net)
	if err != nil {
		t.Fatalf("Standard: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("lab Close: %v", err)
		}
	})
	return topo
}

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func openSession(t *testing.T, ns *lab.NS, a, b netip.Prefix) *Session {
	t.Helper()
	s, err := Open(ns.Path(), a, b)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Session Close: %v", err)
		}
		if w := s.Warnings(); len(w) > 0 {
			t.Logf("session warnings: %q", w)
		}
	})
	t.Logf("table inet %s, marking chains at priority %d", s.Table(), s.Priority())
	return s
}

// nft runs fn on a connection in ns and flushes it.
func nft(t *testing.T, ns *lab.NS, fn func(c *nftables.Conn)) {
	t.Helper()
	fd, err := unix.Open(ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	fn(c)
	if err := c.Flush(); err != nil {
		t.Fatalf("nft flush in %s: %v", ns.Name(), err)
	}
}

func tables(t *testing.T, ns *lab.NS) []*nftables.Table {
	t.Helper()
	fd, err := unix.Open(ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTables()
	if err != nil {
		t.Fatalf("list tables in %s: %v", ns.Name(), err)
	}
	return ts
}

// awaitTraceTables waits up to within for ns to hold want of our tables; what says when.
func awaitTraceTables(t *testing.T, ns *lab.NS, want int, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(traceTables(t, ns)) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: trace tables %+v after %v, want %d", what, traceTables(t, ns), within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func traceTables(t *testing.T, ns *lab.NS) []*nftables.Table {
	var out []*nftables.Table
	for _, tb := range tables(t, ns) {
		if strings.HasPrefix(tb.Name, TablePrefix) {
			out = append(out, tb)
		}
	}
	return out
}

// pingNoReply pings from→dst and expects the path to be blocked.
func pingNoReply(t *testing.T, from *lab.NS, dst netip.Addr) {
	t.Helper()
	n, err := from.Ping(dst.String(), 0x7e57, 3, 50*time.Millisecond, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	if n != 0 {
		t.Fatalf("ping %s from %s: %d replies, want 0 (dropped)", dst, from.Name(), n)
	}
}

// waitDrop returns the first drop, failing after a timeout.
func waitDrop(t *testing.T, ch <-chan Drop) Drop {
	t.Helper()
	select {
	case d, ok := <-ch:
		if !ok {
			t.Fatal("drops channel closed")
		}
		t.Logf("drop: %s (hook %q, %s -> %s, netns %d)", d, d.Hook, d.Src, d.Dst, d.Netns)
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no drop reported")
	}
	return Drop{}
}

func TestNftDropForward(t *testing.T) {
	topo := standard(t, "ptnftfwd", 240)
	if err := topo.Node.NftDropForward(topo.PodIP.String()); err != nil {
		t.Fatal(err)
	}
	s := openSession(t, topo.Node, host(topo.PodIP), host(topo.ExtIP))
	// An ip table: an IPv4 flow's marking chains see no IPv6 packet.
	if tb := traceTables(t, topo.Node); len(tb) != 1 || tb[0].Family != nftables.TableFamilyIPv4 || s.Family() != "ip" {
		t.Fatalf("trace tables = %+v (Family %q), want one ip table", tb, s.Family())
	}
	pingNoReply(t, topo.Pod, topo.ExtIP)
	d := waitDrop(t, s.Drops())
	if d.Family != "inet" || d.Table != lab.NftFilterTable || d.Chain != "forward" || d.Hook != "forward" {
		t.Errorf("drop at %s hook %q, want table inet %s chain forward, hook forward", d.Location(), d.Hook, lab.NftFilterTable)
	}
	if d.Handle == 0 || d.Policy {
		t.Errorf("handle %d policy %v, want a rule", d.Handle, d.Policy)
	}
	for _, want := range []string{"ip saddr", topo.PodIP.String(), "drop"} {
		if !strings.Contains(d.Rule, want) {
			t.Errorf("rule %q lacks %q", d.Rule, want)
		}
	}
	if strings.Contains(d.Rule, "nfproto") {
		t.Errorf("rule %q shows the implicit nfproto dependency", d.Rule)
	}
	if d.Src != topo.PodIP || d.Dst != topo.ExtIP {
		t.Errorf("packet %s -> %s, want %s -> %s", d.Src, d.Dst, topo.PodIP, topo.ExtIP)
	}
	if d.Netns != topo.Node.Inode() {
		t.Errorf("netns %d, want %d", d.Netns, topo.Node.Inode())
	}
	if want := "table inet " + lab.NftFilterTable + " chain forward handle "; !strings.HasPrefix(d.Location(), want) {
		t.Errorf("Location %q, want prefix %q", d.Location(), want)
	}
}

// iptablesStyle adds what `iptables-nft -A FORWARD -s <src> -m comment
// --comment <c> -j DROP` would: table ip filter, chain FORWARD, a compat
// match, a counter and a native drop.
func TestIptablesNftStyleRule(t *testing.T) {
	topo := standard(t, "ptnftipt", 241)
	nft(t, topo.Node, func(c *nftables.Conn) {
		tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"})
		accept := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "FORWARD", Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		comment := xt.Comment("block pod")
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: topo.PodIP.AsSlice()},
			&expr.Match{Name: "comment", Rev: 0, Info: &comment},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	})
	s := openSession(t, topo.Node, host(topo.PodIP), host(topo.ExtIP))
	pingNoReply(t, topo.Pod, topo.ExtIP)
	d := waitDrop(t, s.Drops())
	if d.Family != "ip" || d.Table != "filter" || d.Chain != "FORWARD" || d.Hook != "forward" || d.Handle == 0 {
		t.Errorf("drop %s hook %q, want table ip filter chain FORWARD hook forward with a handle", d, d.Hook)
	}
	for _, want := range []string{"ip saddr " + topo.PodIP.String(), `xt match comment "block pod"`, "counter packets", "drop"} {
		if !strings.Contains(d.Rule, want) {
			t.Errorf("rule %q lacks %q", d.Rule, want)
		}
	}
}

// TestIptablesNftBinary uses the real iptables-nft when it is installed.
func TestIptablesNftBinary(t *testing.T) {
	needRoot(t)
	bin, err := exec.LookPath("iptables-nft")
	if err != nil {
		t.Fatal("iptables-nft not installed: scripts/install-deps.sh installs it")
	}
	topo := standard(t, "ptnftbin", 242)
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", topo.Node.Name(), bin}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("iptables-nft %v: %v: %s", args, err, out)
		}
	}
	run("-A", "FORWARD", "-s", topo.PodIP.String(), "-p", "icmp", "-m", "comment", "--comment", "no pings from pod", "-j", "DROP")
	s := openSession(t, topo.Node, host(topo.PodIP), host(topo.ExtIP))
	pingNoReply(t, topo.Pod, topo.ExtIP)
	d := waitDrop(t, s.Drops())
	if d.Table != "filter" || d.Chain != "FORWARD" || d.Family != "ip" || d.Handle == 0 || d.Hook != "forward" {
		t.Errorf("drop %s hook %q, want table ip filter chain FORWARD", d, d.Hook)
	}
	for _, want := range []string{topo.PodIP.String(), "no pings from pod", "drop"} {
		if !strings.Contains(d.Rule, want) {
			t.Errorf("rule %q lacks %q", d.Rule, want)
		}
	}
}

func TestPolicyDrop(t *testing.T) {
	topo := standard(t, "ptnftpol", 243)
	nft(t, topo.Node, func(c *nftables.Conn) {
		tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "pol"})
		drop := nftables.ChainPolicyDrop
		c.AddChain(&nftables.Chain{Name: "fwd", Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	})
	s := openSession(t, topo.Node, host(topo.PodIP), host(topo.ExtIP))
	pingNoReply(t, topo.Pod, topo.ExtIP)
	d := waitDrop(t, s.Drops())
	if !d.Policy || d.Handle != 0 || d.Rule != "" || d.Table != "pol" || d.Chain != "fwd" || d.Hook != "forward" {
		t.Errorf("drop %+v, want policy drop of inet pol fwd at forward", d)
	}
	if want := "table inet pol chain fwd policy drop"; d.Location() != want {
		t.Errorf("Location %q, want %q", d.Location(), want)
	}
}

// A drop in a regular chain reached by a jump takes the hook of the base
// chain that jumped.
func TestJumpChainDrop(t *testing.T) {
	topo := standard(t, "ptnftjmp", 244)
	nft(t, topo.Node, func(c *nftables.Conn) {
		tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "jt"})
		accept := nftables.ChainPolicyAccept
		base := c.AddChain(&nftables.Chain{Name: "in", Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		sub := c.AddChain(&nftables.Chain{Name: "pods", Table: tb})
		c.AddRule(&nftables.Rule{Table: tb, Chain: base, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(lab.NodePodIf)},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: "pods"},
		}})
		c.AddRule(&nftables.Rule{Table: tb, Chain: sub, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMP}},
			&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 13},
		}})
	})
	s := openSession(t, topo.Node, host(topo.PodIP), host(topo.ExtIP))
	pingNoReply(t, topo.Pod, topo.ExtIP)
	d := waitDrop(t, s.Drops())
	if d.Table != "jt" || d.Chain != "pods" || d.Hook != "forward" || d.Handle == 0 {
		t.Errorf("drop %s hook %q, want table ip jt chain pods at hook forward", d, d.Hook)
	}
	if want := "meta l4proto icmp reject with icmp 13"; d.Rule != want {
		t.Errorf("rule %q, want %q", d.Rule, want)
	}
}

func ifname(s string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, s)
	return b
}

// Traffic outside the traced prefixes is not marked by the session, so its
// drops are not reported, even when someone else traces every packet.
func TestUnmatchedTrafficNotReported(t *testing.T) {
	topo := standard(t, "ptnftnom", 245)
	if err := topo.Node.NftDropForward(topo.PodIP.String()); err != nil {
		t.Fatal(err)
	}
	// As `nft add rule inet dbg pre meta nftrace set 1` for a debugging
	// session of the operator's own.
	nft(t, topo.Node, func(c *nftables.Conn) {
		tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "dbg"})
		accept := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "pre", Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept})
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
			&expr.Immediate{Register: 1, Data: []byte{1}},
			&expr.Meta{Key: expr.MetaKeyNFTRACE, SourceRegister: true, Register: 1},
		}})
	})
	other := netip.MustParseAddr("10.245.9.9")
	s := openSession(t, topo.Node, host(topo.PodIP), host(other))
	pingNoReply(t, topo.Pod, topo.ExtIP)
	select {
	case d := <-s.Drops():
		t.Errorf("unexpected drop %s (%s -> %s)", d, d.Src, d.Dst)
	case <-time.After(time.Second):
	}
}

func TestCleanup(t *testing.T) {
	topo := standard(t, "ptnftcln", 246)
	a, b := host(topo.PodIP), host(topo.ExtIP)

	s, err := Open(topo.Node.Path(), a, b)
	if err != nil {
		t.Fatal(err)
	}
	tb := traceTables(t, topo.Node)
	if len(tb) != 1 {
		t.Fatalf("trace tables %+v, want one", tb)
	}
	// nftables v0.3.0 decodes NFTA_TABLE_FLAGS in host byte order, so the
	// big endian 0x2 reads as 0x2000000 on little endian machines.
	if flags := tb[0].Flags; flags&tableFlagOwner == 0 && bits.ReverseBytes32(flags)&tableFlagOwner == 0 {
		t.Errorf("table %s flags %#x, want owner flag", tb[0].Name, tb[0].Flags)
	}
	if out, err := exec.Command("ip", "netns", "exec", topo.Node.Name(), "nft", "list", "table", s.Family(), s.Table()).CombinedOutput(); err == nil {
		t.Logf("nft list table %s %s:\n%s", s.Family(), s.Table(), out)
	}
	// Only the owner may change an owned table.
	nftErr := func() error {
		fd, _ := unix.Open(topo.Node.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		defer unix.Close(fd)
		c, _ := nftables.New(nftables.WithNetNSFd(fd))
		c.DelTable(&nftables.Table{Family: tb[0].Family, Name: s.Table()})
		return c.Flush()
	}()
	if nftErr == nil {
		t.Errorf("another socket deleted the owned table")
	} else {
		t.Logf("deleting the owned table from another socket: %v", nftErr)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if tb := traceTables(t, topo.Node); len(tb) != 0 {
		t.Errorf("after Close: trace tables %+v remain", tb)
	}
	if _, ok := <-s.Drops(); ok {
		t.Error("Drops not closed")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// As if the process were killed: only the owning socket goes away.
	s2, err := Open(topo.Node.Path(), a, b)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if tb := traceTables(t, topo.Node); len(tb) != 1 {
		t.Fatalf("trace tables %+v, want one", tb)
	}
	s2.connMu.Lock()
	err = s2.closeOwner()
	s2.connMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	awaitTraceTables(t, topo.Node, 0, 2*time.Second, "after its owning socket closed")
}

func TestCleanupAfterKill(t *testing.T) {
	topo := standard(t, "ptnftkil", 247)
	// A child process opens a session and is SIGKILLed.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PT_NFTRACE_CHILD=1", "PT_NFTRACE_NS="+topo.Node.Path(),
		"PT_NFTRACE_A="+topo.PodIP.String(), "PT_NFTRACE_B="+topo.ExtIP.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var out strings.Builder
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "READY") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("child never ready: %s", out.String())
		}
		n, err := stdout.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if tb := traceTables(t, topo.Node); len(tb) != 1 {
		t.Errorf("while child runs: trace tables %+v, want one", tb)
	} else {
		t.Logf("child %d made table %s", cmd.Process.Pid, tb[0].Name)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	awaitTraceTables(t, topo.Node, 0, 2*time.Second, "after SIGKILL")
}

// TestMain doubles as the process TestCleanupAfterKill kills: it opens a session and waits to
// be killed, so the kernel must remove the table by itself.
func TestMain(m *testing.M) {
	if os.Getenv("PT_NFTRACE_CHILD") == "1" {
		a := host(netip.MustParseAddr(os.Getenv("PT_NFTRACE_A")))
		b := host(netip.MustParseAddr(os.Getenv("PT_NFTRACE_B")))
		if _, err := Open(os.Getenv("PT_NFTRACE_NS"), a, b); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("READY\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	if os.Getenv("PT_NFTRACE_NOFD") == "1" {
		os.Exit(dialWithoutDescriptors())
	}
	if os.Getenv("PT_NFTRACE_AVAILABLE") == "1" {
		if err := Available(); err != nil {
			os.Stdout.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// dialWithoutDescriptors makes the socket of a dial in a namespace fail, as a kernel without
// nfnetlink does (there EPROTONOSUPPORT, here EMFILE): the namespace file is open, and the
// descriptor limit leaves room for exactly one more, which entering takes. It prints what the
// dial returned; a panic (mdlayher/socket losing the error) ends the process.
func dialWithoutDescriptors() int {
	ns, err := netns.Open("/proc/self/ns/net")
	if err != nil {
		os.Stdout.WriteString("open: " + err.Error() + "\n")
		return 2
	}
	free, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 2
	}
	unix.Close(free)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(free) + 1, Max: uint64(free) + 1}); err != nil {
		return 2
	}
	c, err := dialIn(ns)
	if err == nil {
		c.Close()
		os.Stdout.WriteString("dialed\n")
		return 0
	}
	os.Stdout.WriteString("error: " + err.Error() + "\n")
	return 1
}

// A socket that cannot be made in the namespace is an error, not a panic: dialIn makes it on
// a thread inside the namespace instead of handing the namespace to mdlayher/socket, which
// loses that error and returns a nil socket netlink.Dial then uses.
func TestDialInSocketFails(t *testing.T) {
	needRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PT_NFTRACE_NOFD=1")
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "panic:") || !strings.Contains(string(out), "error: netlink socket: ") || !strings.Contains(string(out), "too many open files") {
		t.Errorf("dial with no descriptor left: %v\n%s\nwant an error naming EMFILE", err, out)
	}
}

// This kernel has nf_tables; without CAP_NET_ADMIN (dropped from the bounding set before exec,
// as a container without it would have) nf_tables answers nothing, and Available says so.
func TestAvailable(t *testing.T) {
	needRoot(t)
	if err := Available(); err != nil {
		t.Fatalf("Available on a kernel with nf_tables: %v", err)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv to drop CAP_NET_ADMIN with")
	}
	cmd := exec.Command(setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PT_NFTRACE_AVAILABLE=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs CAP_NET_ADMIN") {
		t.Errorf("Available without CAP_NET_ADMIN = %v: %s, want it to name CAP_NET_ADMIN", err, out)
	}
}

func TestManager(t *testing.T) {
	topo := standard(t, "ptnftmgr", 248)
	if err := topo.Node.NftDropForward(topo.PodIP.String()); err != nil {
		t.Fatal(err)
	}
	m := NewManager(host(topo.PodIP), host(topo.ExtIP))
	defer func() {
		if err := m.Close(); err != nil {
			t.Errorf("Manager Close: %v", err)
		}
		if tb := traceTables(t, topo.Node); len(tb) != 0 {
			t.Errorf("after Manager Close: trace tables %+v remain", tb)
		}
		// Drops of the later pings may still be buffered.
		for range m.Drops() {
		}
	}()
	for _, ns := range []*lab.NS{topo.Pod, topo.Node, topo.Ext, topo.Node} {
		m.Watch(ns.Inode(), ns.Path())
	}
	m.Watch(12345, "/nonexistent/netns")
	m.Watch(12345, "/nonexistent/netns")
	// Only node has a table of its own (the drop rule's): there is nothing to name in pod and
	// ext, and no marking table to cost their packets a chain.
	for ns, want := range map[*lab.NS]int{topo.Pod: 0, topo.Node: 1, topo.Ext: 0} {
		if tb := traceTables(t, ns); len(tb) != want {
			t.Errorf("%s: trace tables %+v, want %d", ns.Name(), tb, want)
		}
	}
	if w := m.Warnings(); len(w) != 1 || !strings.Contains(w[0], "netns 12345") {
		t.Errorf("warnings %q, want one about netns 12345", w)
	}
	pingNoReply(t, topo.Pod, topo.ExtIP)
	d := waitDrop(t, m.Drops())
	if d.Netns != topo.Node.Inode() || d.Table != lab.NftFilterTable || d.Chain != "forward" || d.Handle == 0 {
		t.Errorf("drop %s in netns %d, want the lab forward rule in node (%d)", d, d.Netns, topo.Node.Inode())
	}
}

// A namespace with no nf_tables table gets its marking table once one appears there, and then
// a drop by the new rule is named; the other namespaces stay without.
func TestManagerWaitsForATable(t *testing.T) {
	topo := standard(t, "ptnftlate", 245)
	m := NewManager(host(topo.PodIP), host(topo.ExtIP))
	defer func() {
		if err := m.Close(); err != nil {
			t.Errorf("Manager Close: %v", err)
		}
		for _, ns := range []*lab.NS{topo.Pod, topo.Node, topo.Ext} {
			if tb := traceTables(t, ns); len(tb) != 0 {
				t.Errorf("after Manager Close: trace tables %+v remain in %s", tb, ns.Name())
			}
		}
		for range m.Drops() {
		}
	}()
	for _, ns := range []*lab.NS{topo.Pod, topo.Node, topo.Ext} {
		m.Watch(ns.Inode(), ns.Path())
	}
	for _, ns := range []*lab.NS{topo.Pod, topo.Node, topo.Ext} {
		if tb := traceTables(t, ns); len(tb) != 0 {
			t.Fatalf("%s has no table, but trace tables %+v", ns.Name(), tb)
		}
	}
	// A rule arrives while the manager watches: the marking table follows it in.
	if err := topo.Node.NftDropForward(topo.PodIP.String()); err != nil {
		t.Fatal(err)
	}
	awaitTraceTables(t, topo.Node, 1, 5*time.Second, "after the namespace's first table appeared")
	pingNoReply(t, topo.Pod, topo.ExtIP)
	d := waitDrop(t, m.Drops())
	if d.Netns != topo.Node.Inode() || d.Table != lab.NftFilterTable || d.Chain != "forward" || d.Handle == 0 {
		t.Errorf("drop %s in netns %d, want the lab forward rule in node (%d)", d, d.Netns, topo.Node.Inode())
	}
	for _, ns := range []*lab.NS{topo.Pod, topo.Ext} {
		if tb := traceTables(t, ns); len(tb) != 0 {
			t.Errorf("%s: trace tables %+v, want none", ns.Name(), tb)
		}
	}
	if w := m.Warnings(); len(w) != 0 {
		t.Errorf("warnings %q", w)
	}
	// Unwatch stops a namespace's wait: a table there later gets no marking table.
	m.Unwatch(topo.Ext.Inode())
	if err := topo.Ext.NftDropForward("192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if tb := traceTables(t, topo.Ext); len(tb) != 0 {
		t.Errorf("ext, unwatched: trace tables %+v, want none", tb)
	}
}

// IPv6 in one namespace: a locally generated packet dropped in output.
func TestIPv6OutputDrop(t *testing.T) {
	needRoot(t)
	l, err := lab.New("ptnftsix")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	ns, err := l.AddNS("solo")
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("::1")
	nft(t, ns, func(c *nftables.Conn) {
		tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv6, Name: "six"})
		accept := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "out", Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lo.AsSlice()},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	})
	s := openSession(t, ns, host(lo), netip.MustParsePrefix("::/0"))
	if _, err := ns.Ping("::1", 0x6666, 2, 50*time.Millisecond, 300*time.Millisecond); err != nil {
		t.Logf("ping ::1: %v", err)
	}
	d := waitDrop(t, s.Drops())
	if d.Family != "ip6" || d.Table != "six" || d.Chain != "out" || d.Hook != "output" || d.Src != lo || d.Dst != lo {
		t.Errorf("drop %s hook %q %s -> %s, want table ip6 six chain out at output, ::1 -> ::1", d, d.Hook, d.Src, d.Dst)
	}
	if !strings.HasPrefix(d.Rule, "ip6 daddr ::1 counter packets") || !strings.HasSuffix(d.Rule, " drop") {
		t.Errorf("rule %q", d.Rule)
	}
}

// A flow traced by its service address is still recognised after DNAT, and
// the drop shows the packet as the dropping chain saw it.
func TestDropAfterDNAT(t *testing.T) {
	topo := standard(t, "ptnftnat", 249)
	vip := netip.MustParseAddr("10.249.3.100")
	if err := topo.Node.NftDNAT(vip.String(), topo.ExtIP.String()); err != nil {
		t.Fatal(err)
	}
	if err := topo.Node.NftDropForward(topo.PodIP.String()); err != nil {
		t.Fatal(err)
	}
	s := openSession(t, topo.Node, host(topo.PodIP), host(vip))
	pingNoReply(t, topo.Pod, vip)
	d := waitDrop(t, s.Drops())
	if d.Table != lab.NftFilterTable || d.Chain != "forward" || d.Src != topo.PodIP || d.Dst != topo.ExtIP {
		t.Errorf("drop %s %s -> %s, want the forward rule, %s -> %s (after DNAT)", d, d.Src, d.Dst, topo.PodIP, topo.ExtIP)
	}
}

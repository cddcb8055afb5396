package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/trace"
)

// hasNetfilter says whether the kernel has nfnetlink: a NETLINK_NETFILTER socket can be made
// (the kernel loads the module if it has one to load).
func hasNetfilter() bool {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// requireDegraded checks that the trace and the header name what the run could not do.
func requireDegraded(t *testing.T, tr *trace.Trace, out string, parts ...string) {
	t.Helper()
	for _, d := range tr.Meta.Degraded {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(d, p)
		}
		if ok {
			requireLine(t, out, append([]string{"degraded"}, parts...)...)
			return
		}
	}
	t.Errorf("no degraded line has all of %q: %q", parts, tr.Meta.Degraded)
}

// notDegraded checks that no degraded line mentions what.
func notDegraded(t *testing.T, tr *trace.Trace, what string) {
	t.Helper()
	for _, d := range tr.Meta.Degraded {
		if strings.Contains(d, what) {
			t.Errorf("degraded line %q, but %s is there", d, what)
		}
	}
}

// A node without a CNI's or a firewall's rules may run a kernel with no netfilter at all
// (#15: Debian's 6.1 cloud kernel with only veth loaded made every run panic). The run traces,
// names the drop, and says nftables tracing is unavailable. `make vmtest`'s minimal case boots
// such a kernel and sets PATHTRACE_EXPECT_NO_NETFILTER; elsewhere the test checks the other
// side: with netfilter there, nothing is said about it.
func TestWithoutNetfilter(t *testing.T) {
	topo := standard(t, "nonf", 16)
	if err := topo.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	netfilter := hasNetfilter()
	if os.Getenv("PATHTRACE_EXPECT_NO_NETFILTER") != "" && netfilter {
		t.Fatal("PATHTRACE_EXPECT_NO_NETFILTER is set, but this kernel has nfnetlink")
	}
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	if got := ping(t, topo, 2); got != 0 {
		t.Fatalf("ping got %d replies through a node with forwarding off", got)
	}
	tr := s.stop(syscall.SIGINT)
	out := s.stdout.String()
	requireDrop(t, tr, out, topo.Node.Name(), topo.NodePodIf, "IP_INADDRERRORS", "ip_error")
	requireVerdict(t, tr, out, "forwarding disabled (net.ipv4.ip_forward=0)",
		evidence{"net.ipv4.ip_forward", "0"}, "ip netns exec "+topo.Node.Name()+" sysctl -w net.ipv4.ip_forward=1")
	if netfilter {
		notDegraded(t, tr, "nftables")
		return
	}
	requireDegraded(t, tr, out, "nftables tracing unavailable: the kernel has no nfnetlink", "rule names not shown")
}

package nodestate

import (
	"strings"
	"testing"
)

func TestSysctlRel(t *testing.T) {
	for _, c := range []struct{ key, want string }{
		{"net.ipv4.ip_forward", "net/ipv4/ip_forward"},
		{"net.ipv4.conf.veth-pod.forwarding", "net/ipv4/conf/veth-pod/forwarding"},
		{"net.ipv4.conf.flannel.1.forwarding", "net/ipv4/conf/flannel.1/forwarding"},
		{"net.ipv6.conf.eth0.100.forwarding", "net/ipv6/conf/eth0.100/forwarding"},
		{"net.ipv4.neigh.flannel.1.gc_stale_time", "net/ipv4/neigh/flannel.1/gc_stale_time"},
		{"net.ipv4.conf.flannel/1.rp_filter", "net/ipv4/conf/flannel.1/rp_filter"},
		{"net/ipv4/conf/flannel.1/rp_filter", "net/ipv4/conf/flannel.1/rp_filter"},
		{"/proc/sys/net/ipv4/conf/all/rp_filter", "net/ipv4/conf/all/rp_filter"},
		{"net.core.somaxconn", "net/core/somaxconn"},
	} {
		got, err := sysctlRel(c.key)
		if err != nil || got != c.want {
			t.Errorf("sysctlRel(%q) = %q, %v; want %q", c.key, got, err, c.want)
		}
	}
	for _, key := range []string{
		"kernel.hostname", "net", "net/../kernel/hostname", "net.ipv4.conf...forwarding",
		"net.ipv4.conf.forwarding", "net.ipv4.conf.eth0.", "/proc/sys/kernel/hostname", "",
	} {
		if got, err := sysctlRel(key); err == nil {
			t.Errorf("sysctlRel(%q) = %q, want an error", key, got)
		}
	}
}

func TestForwarding(t *testing.T) {
	topo := standard(t, "ptns-fwd", 231)
	r := New("/proc")
	node := topo.Node.Inode()

	f, err := r.Forwarding(node, topo.NodeExtIf, false)
	if err != nil {
		t.Fatal(err)
	}
	if f.Global != "1" || f.Device != "1" || f.DeviceName != topo.NodeExtIf || f.IPv6 {
		t.Errorf("lab node: %+v, want forwarding on", f)
	}

	if err := topo.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	if f, err = r.Forwarding(node, topo.NodeExtIf, false); err != nil || f.Global != "0" {
		t.Errorf("after ip_forward=0: %+v, %v; want Global 0", f, err)
	}

	// Turning ip_forward back on turns every device's forwarding on; only then can one
	// device alone be switched off.
	if err := topo.Node.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if err := topo.Node.Sysctl("net.ipv4.conf.veth-ext.forwarding", "0"); err != nil {
		t.Fatal(err)
	}
	if f, err = r.Forwarding(node, topo.NodeExtIf, false); err != nil || f.Global != "1" || f.Device != "0" {
		t.Errorf("after conf.veth-ext.forwarding=0: %+v, %v; want Global 1, Device 0", f, err)
	}
	if f, err = r.Forwarding(node, topo.NodePodIf, false); err != nil || f.Device != "1" {
		t.Errorf("veth-pod: %+v, %v; want Device 1", f, err)
	}
	if v, err := r.Sysctl(node, "net.ipv4.conf.veth-ext.forwarding"); err != nil || v != "0" {
		t.Errorf("Sysctl = %q, %v; want 0", v, err)
	}

	if f, err = r.Forwarding(node, "", true); err != nil || !f.IPv6 || f.Global == "" || f.Device != "" {
		t.Errorf("IPv6 global only: %+v, %v", f, err)
	}
	if _, err := r.Forwarding(node, "nosuchdev", false); err == nil || !strings.Contains(err.Error(), "nosuchdev") {
		t.Errorf("missing device: %v, want an error naming it", err)
	}
	// The pod's namespace has its own value: readings must not leak across namespaces. A new
	// namespace inherits the host's IPv4 settings, so the pod's is set rather than assumed.
	if err := topo.Pod.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Sysctl(topo.Pod.Inode(), "net.ipv4.ip_forward"); err != nil || v != "0" {
		t.Errorf("pod ip_forward = %q, %v; want 0", v, err)
	}
}

func TestRPFilter(t *testing.T) {
	topo := standard(t, "ptns-rpf", 232)
	r := New("/proc")
	node := topo.Node.Inode()

	rp, err := r.RPFilter(node, topo.NodePodIf)
	if err != nil || rp != (RPFilter{}) {
		t.Errorf("lab node: %+v, %v; want all zero", rp, err)
	}
	if err := topo.Node.Sysctl("net.ipv4.conf.all.rp_filter", "2"); err != nil {
		t.Fatal(err)
	}
	if err := topo.Node.Sysctl("net.ipv4.conf.veth-pod.rp_filter", "1"); err != nil {
		t.Fatal(err)
	}
	rp, err = r.RPFilter(node, topo.NodePodIf)
	if err != nil || rp != (RPFilter{All: 2, Device: 1, Effective: 2}) {
		t.Errorf("all=2 dev=1: %+v, %v; want effective 2", rp, err)
	}
	if _, err := r.RPFilter(node, "../all"); err == nil {
		t.Error("device name with a slash: want an error")
	}
}

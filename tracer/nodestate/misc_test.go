package nodestate

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/lab"
)

// A UDP socket that does not read: its port, its buffer, its drops and this process.
func TestSocketsOn(t *testing.T) {
	topo := standard(t, "ptns-sock", 226)
	c, err := topo.Ext.ListenUDP(":7002")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.UDPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		if err := topo.Pod.SendUDP(topo.ExtIP.String(), 0, 7002, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	r := New("/proc")
	socks, err := r.SocketsOn(topo.Ext.Inode(), "udp", 7002)
	if err != nil || len(socks) != 1 {
		t.Fatalf("sockets on 7002: %+v, %v; want one", socks, err)
	}
	s := socks[0]
	me := "(" + strconv.Itoa(os.Getpid()) + ")"
	if s.Local.Port() != 7002 || !s.HasMem || s.Rcvbuf == 0 || s.Drops == 0 || s.RmemAlloc == 0 || len(s.Procs) != 1 || !strings.HasSuffix(s.Procs[0], me) {
		t.Errorf("socket %+v: want port 7002, its buffer, drops, and this process %s", s, me)
	}
	if got, err := r.SocketsOn(topo.Ext.Inode(), "tcp", 7002); err != nil || len(got) != 0 {
		t.Errorf("tcp sockets on 7002: %+v, %v; want none", got, err)
	}
}

// A u32 filter with a drop action, as tc prints it; a VXLAN device's VNI; an address's device.
func TestTCFiltersVXLANsAddrOwner(t *testing.T) {
	topo := standard(t, "ptns-filt", 227)
	if err := topo.Node.TCU32Drop(topo.NodePodIf, lab.TCIngress, topo.PodIP); err != nil {
		t.Fatal(err)
	}
	r := New("/proc")
	node := topo.Node.Inode()
	kind, fs, err := r.TCFilters(node, topo.NodePodIf, Ingress)
	if err != nil || kind != "veth" || len(fs) != 1 {
		t.Fatalf("filters: %q %+v %v; want one on a veth", kind, fs, err)
	}
	f := fs[0]
	if f.Kind != "u32" || f.Pref != 10 || !f.Drops || f.Protocol != "ip" || !strings.Contains(f.Text, "(ip src "+topo.PodIP.String()+"/32)") || !strings.HasSuffix(f.Text, " drop") {
		t.Errorf("filter %+v", f)
	}
	if _, fs, err := r.TCFilters(node, topo.NodePodIf, Egress); err != nil || len(fs) != 0 {
		t.Errorf("egress filters %+v, %v; want none", fs, err)
	}
	if err := topo.Node.VXLANDevice("vx0", 42, lab.VXLANIANAPort, topo.NodeExtIf, ""); err != nil {
		t.Fatal(err)
	}
	vs, err := r.VXLANs(node)
	if err != nil || len(vs) != 1 || vs[0] != (VXLAN{Name: "vx0", VNI: 42, Port: 4789, Underlay: topo.NodeExtIf, Up: true}) {
		t.Errorf("VXLAN devices %+v, %v", vs, err)
	}
	dev, prefix, err := r.AddrOwner(node, topo.NodePodIP)
	if err != nil || dev != topo.NodePodIf || prefix != topo.NodePodIP.String()+"/24" {
		t.Errorf("owner of %s: %q %q %v", topo.NodePodIP, dev, prefix, err)
	}
	if dev, _, err := r.AddrOwner(node, topo.PodIP); err != nil || dev != "" {
		t.Errorf("owner of %s (the pod's): %q %v; want none", topo.PodIP, dev, err)
	}
}

package nodestate

import (
	"errors"
	"testing"

	"github.com/pathtrace/pathtrace/internal/lab"
	"golang.org/x/sys/unix"
)

// setTxChecksum switches tx checksum offload as `ethtool -K dev tx on|off` does.
func setTxChecksum(r *Reader, ino uint32, dev string, on bool) error {
	return r.Do(ino, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var v uint32
		if on {
			v = 1
		}
		_, err = ethtoolValue(fd, dev, unix.ETHTOOL_STXCSUM, v)
		return err
	})
}

func TestChecksumOffloadVeth(t *testing.T) {
	topo := standard(t, "ptns-csum", 237)
	r := New("/proc")
	node := topo.Node.Inode()

	o, err := r.ChecksumOffload(node, topo.NodePodIf)
	if err != nil {
		t.Fatal(err)
	}
	if o.Kind != "veth" || !o.TxChecksum || o.VXLANPort != 0 {
		t.Errorf("fresh veth: %+v, want kind veth with tx checksum offload", o)
	}
	if err := setTxChecksum(r, node, topo.NodePodIf, false); err != nil {
		t.Fatal(err)
	}
	if o, err = r.ChecksumOffload(node, topo.NodePodIf); err != nil || o.TxChecksum {
		t.Errorf("after tx off: %+v, %v; want TxChecksum false", o, err)
	}
	// The other device, and the peer in the pod, are untouched.
	if o, err = r.ChecksumOffload(node, topo.NodeExtIf); err != nil || !o.TxChecksum {
		t.Errorf("veth-ext: %+v, %v; want TxChecksum true", o, err)
	}
	if o, err = r.ChecksumOffload(topo.Pod.Inode(), lab.PodIf); err != nil || !o.TxChecksum || o.Kind != "veth" {
		t.Errorf("pod eth0: %+v, %v; want a veth with TxChecksum", o, err)
	}
	// eth0 exists in the pod but not in the node: the ioctl must be asked in the right place.
	if _, err := r.ChecksumOffload(node, lab.PodIf); err == nil {
		t.Error("eth0 in node: want an error")
	}
}

func TestChecksumOffloadVXLAN(t *testing.T) {
	needRoot(t, "create network namespaces")
	o, err := lab.NewOverlay("ptns-vxlan", 238)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	})
	r := New("/proc")
	got, err := r.ChecksumOffload(o.Node1.Inode(), o.VXLANDev)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != "vxlan" || got.VXLANPort != 8472 {
		t.Errorf("flannel.1: %+v, want kind vxlan on port 8472", got)
	}
	devs, err := r.VXLANDevices(o.Node1.Inode())
	if err != nil || len(devs) != 1 || devs[o.VXLANDev] != 8472 {
		t.Errorf("VXLANDevices = %v, %v; want %s on 8472 alone", devs, err, o.VXLANDev)
	}
	// A device name with a dot, in the dotted form.
	want, err := o.Node1.ReadSysctl("net/ipv4/conf/flannel.1/forwarding")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.Sysctl(o.Node1.Inode(), "net.ipv4.conf.flannel.1.forwarding"); err != nil || v != want {
		t.Errorf("Sysctl(net.ipv4.conf.flannel.1.forwarding) = %q, %v; want %q", v, err, want)
	}
	if _, err := r.Sysctl(o.Node1.Inode(), "net.ipv4.conf.flannel.2.forwarding"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("missing device's sysctl: %v, want ENOENT", err)
	}
}

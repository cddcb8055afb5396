package lab

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestOverlay(t *testing.T) {
	needRoot(t)
	o, err := NewOverlay("ptlabovl", 217)
	if err != nil {
		t.Fatalf("NewOverlay: %v", err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if o.Pod1IP.String() != "10.217.1.2" || o.Pod2IP.String() != "10.217.2.2" ||
		o.Node1Underlay.String() != "192.168.217.1" || o.Node2Underlay.String() != "192.168.217.2" ||
		o.VXLANDev != "flannel.1" || o.VXLANPort != 8472 || o.UnderlayIf != "eth0" {
		t.Fatalf("unexpected overlay %+v", o)
	}

	// Both VTEPs exist as flanneld would make them, with the remote's FDB entry.
	for _, v := range []struct {
		ns          *NS
		local, rmt  string
		mac, rmtMAC net.HardwareAddr
	}{
		{o.Node1, o.Node1Underlay.String(), o.Node2Underlay.String(), o.Node1VTEPMAC, o.Node2VTEPMAC},
		{o.Node2, o.Node2Underlay.String(), o.Node1Underlay.String(), o.Node2VTEPMAC, o.Node1VTEPMAC},
	} {
		err := v.ns.netlink(func(h *netlink.Handle) error {
			l, err := h.LinkByName(o.VXLANDev)
			if err != nil {
				return err
			}
			vx, ok := l.(*netlink.Vxlan)
			if !ok {
				return fmt.Errorf("%s is a %s", o.VXLANDev, l.Type())
			}
			if vx.Port != int(o.VXLANPort) || vx.VxlanId != 1 || vx.SrcAddr.String() != v.local || vx.Learning {
				return fmt.Errorf("vxlan port %d id %d local %s learning %v", vx.Port, vx.VxlanId, vx.SrcAddr, vx.Learning)
			}
			if !bytes.Equal(vx.HardwareAddr, v.mac) || vx.Flags&net.FlagUp == 0 {
				return fmt.Errorf("mac %s flags %s", vx.HardwareAddr, vx.Flags)
			}
			fdb, err := h.NeighList(vx.Index, unix.AF_BRIDGE)
			if err != nil {
				return err
			}
			for _, e := range fdb {
				if bytes.Equal(e.HardwareAddr, v.rmtMAC) && e.IP.String() == v.rmt {
					return nil
				}
			}
			return fmt.Errorf("no fdb entry %s -> %s in %v", v.rmtMAC, v.rmt, fdb)
		})
		if err != nil {
			t.Errorf("%s: %v", v.ns.Name(), err)
		}
	}

	if got := ping(t, o.Pod1, o.Pod2IP, 0x7101); got != pingCount {
		t.Errorf("pod1 -> pod2: %d/%d replies", got, pingCount)
	}
	if got := ping(t, o.Pod2, o.Pod1IP, 0x7102); got != pingCount {
		t.Errorf("pod2 -> pod1: %d/%d replies", got, pingCount)
	}

	// The node itself reaches the remote pods too (from its flannel.1 address).
	if got := ping(t, o.Node1, o.Pod2IP, 0x7103); got != pingCount {
		t.Errorf("node1 -> pod2: %d/%d replies", got, pingCount)
	}

	// UDP pod1 -> pod2, watched on node1's underlay to prove it is VXLAN there.
	capt := openCapture(t, o.Node1, o.UnderlayIf)
	c, err := o.Pod2.ListenUDP(":5353")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("across the overlay")
	if err := o.Pod1.SendUDP(o.Pod2IP.String(), 4242, 5353, msg); err != nil {
		t.Fatal(err)
	}
	b, from := recvUDP(t, c)
	if !bytes.Equal(b, msg) || from.Addr() != o.Pod1IP || from.Port() != 4242 {
		t.Errorf("pod2 got %q from %s", b, from)
	}
	capt.wait(t, 2*time.Second, func(f []byte) error {
		_, _, p, err := decodeEth(f)
		if err != nil {
			return err
		}
		outer, err := decodeIPv4UDP(p, false)
		if err != nil {
			return err
		}
		if outer.Src != o.Node1Underlay || outer.Dst != o.Node2Underlay || outer.Dport != o.VXLANPort {
			return fmt.Errorf("outer %s:%d -> %s:%d", outer.Src, outer.Sport, outer.Dst, outer.Dport)
		}
		// veth offloads may leave the inner UDP checksum partial here.
		vni, in, err := decodeVXLAN(outer.Payload, false)
		if err != nil {
			return err
		}
		if vni != 1 || !bytes.Equal(in.SrcMAC, o.Node1VTEPMAC) || !bytes.Equal(in.DstMAC, o.Node2VTEPMAC) {
			return fmt.Errorf("vni %d inner MACs %s -> %s", vni, in.SrcMAC, in.DstMAC)
		}
		if in.Src != o.Pod1IP || in.Dst != o.Pod2IP || in.Sport != 4242 || in.Dport != 5353 || !bytes.Equal(in.Payload, msg) {
			return fmt.Errorf("inner %s:%d -> %s:%d %q", in.Src, in.Sport, in.Dst, in.Dport, in.Payload)
		}
		return nil
	})
}

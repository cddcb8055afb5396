package lab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func testInner() InnerUDP {
	return InnerUDP{
		Src:     netip.MustParseAddr("172.16.7.1"),
		Dst:     netip.MustParseAddr("172.16.7.2"),
		Sport:   40001,
		Dport:   53,
		Payload: []byte("inner payload, odd length"),
	}
}

// TestEncapBuilders checks the byte layout without needing root.
func TestEncapBuilders(t *testing.T) {
	in := testInner()
	ip, err := in.IPv4Packet()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeIPv4UDP(ip, true)
	if err != nil {
		t.Fatalf("decode inner: %v", err)
	}
	if err := sameInner(got, in); err != nil {
		t.Fatal(err)
	}
	if ip[8] != 64 || binary.BigEndian.Uint16(ip[4:]) == 0 {
		t.Errorf("ttl %d id %d", ip[8], binary.BigEndian.Uint16(ip[4:]))
	}

	g, err := GenevePayload(0xabcdef, in)
	if err != nil {
		t.Fatal(err)
	}
	vni, got, err := decodeGeneve(g)
	if err != nil || vni != 0xabcdef {
		t.Fatalf("geneve: vni %#x err %v", vni, err)
	}
	if err := sameInner(got, in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.SrcMAC, DefaultInnerSrcMAC()) || !bytes.Equal(got.DstMAC, DefaultInnerDstMAC()) {
		t.Errorf("inner MACs %s -> %s", got.SrcMAC, got.DstMAC)
	}
	if want := []byte{0, 0, 0x65, 0x58, 0xab, 0xcd, 0xef, 0}; !bytes.Equal(g[:8], want) {
		t.Errorf("geneve header % x, want % x", g[:8], want)
	}

	v, err := VXLANPayload(42, in)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x08, 0, 0, 0, 0, 0, 42, 0}; !bytes.Equal(v[:8], want) {
		t.Errorf("vxlan header % x, want % x", v[:8], want)
	}
	if vni, got, err := decodeVXLAN(v, true); err != nil || vni != 42 || sameInner(got, in) != nil {
		t.Fatalf("vxlan: vni %d err %v inner %+v", vni, err, got)
	}

	p, err := IPIPPacket(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), in)
	if err != nil {
		t.Fatal(err)
	}
	h, payload, err := parseIPv4(p)
	if err != nil || h.proto != IPProtoIPIP || h.src.String() != "10.0.0.1" || h.dst.String() != "10.0.0.2" {
		t.Fatalf("ipip outer %+v err %v", h, err)
	}
	if got, err := decodeIPv4UDP(payload, true); err != nil || sameInner(got, in) != nil {
		t.Fatalf("ipip inner %+v err %v", got, err)
	}

	if IPProtoIPIP != unix.IPPROTO_IPIP {
		t.Error("IPProtoIPIP != IPPROTO_IPIP")
	}

	// Bad inputs.
	if _, err := GenevePayload(1<<24, in); err == nil {
		t.Error("geneve accepted a 25-bit VNI")
	}
	bad := in
	bad.Dst = netip.MustParseAddr("fd00::1")
	if _, err := bad.IPv4Packet(); err == nil {
		t.Error("IPv6 inner address accepted")
	}
	bad = in
	bad.Payload = make([]byte, 0xffff)
	if _, err := VXLANPayload(1, bad); err == nil {
		t.Error("oversized payload accepted")
	}
}

func TestSendGeneve(t *testing.T) {
	topo := standard(t, "ptlabgnv", 214)
	c, err := topo.Ext.ListenUDP(":6081")
	if err != nil {
		t.Fatal(err)
	}
	in := testInner()
	if err := topo.Pod.SendGeneve(topo.ExtIP.String(), 0x123456, in); err != nil {
		t.Fatal(err)
	}
	b, from := recvUDP(t, c)
	if from.Addr() != topo.PodIP {
		t.Errorf("from %s, want %s", from, topo.PodIP)
	}
	vni, got, err := decodeGeneve(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if vni != 0x123456 {
		t.Errorf("vni %#x", vni)
	}
	if err := sameInner(got, in); err != nil {
		t.Error(err)
	}
}

func TestSendVXLAN(t *testing.T) {
	topo := standard(t, "ptlabvxl", 215)
	c, err := topo.Ext.ListenUDP(":4789")
	if err != nil {
		t.Fatal(err)
	}
	in := testInner()
	in.SrcMAC = []byte{0xaa, 0, 0, 0, 0, 1}
	in.DstMAC = []byte{0xaa, 0, 0, 0, 0, 2}
	if err := topo.Pod.SendVXLAN(topo.ExtIP.String(), VXLANIANAPort, 7, in); err != nil {
		t.Fatal(err)
	}
	b, _ := recvUDP(t, c)
	vni, got, err := decodeVXLAN(b, true)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if vni != 7 {
		t.Errorf("vni %d", vni)
	}
	if err := sameInner(got, in); err != nil {
		t.Error(err)
	}
	if !bytes.Equal(got.SrcMAC, in.SrcMAC) || !bytes.Equal(got.DstMAC, in.DstMAC) {
		t.Errorf("inner MACs %s -> %s", got.SrcMAC, got.DstMAC)
	}
}

func TestSendIPIP(t *testing.T) {
	topo := standard(t, "ptlabipip", 216)
	capt := openCapture(t, topo.Ext, ExtIf)
	in := testInner()
	if err := topo.Pod.SendIPIP(topo.PodIP.String(), topo.ExtIP.String(), in); err != nil {
		t.Fatal(err)
	}
	capt.wait(t, 2*time.Second, func(f []byte) error {
		_, _, p, err := decodeEth(f)
		if err != nil {
			return err
		}
		h, inner, err := parseIPv4(p)
		if err != nil {
			return err
		}
		if h.proto != IPProtoIPIP || h.src != topo.PodIP || h.dst != topo.ExtIP {
			return fmt.Errorf("outer %s -> %s proto %d", h.src, h.dst, h.proto)
		}
		if h.ttl != 63 {
			return fmt.Errorf("outer ttl %d, want 63 after one forwarding hop", h.ttl)
		}
		got, err := decodeIPv4UDP(inner, true)
		if err != nil {
			return err
		}
		return sameInner(got, in)
	})

	// An empty source lets the kernel pick the route's source address.
	if err := topo.Pod.SendIPIP("", topo.ExtIP.String(), in); err != nil {
		t.Fatal(err)
	}
	capt.wait(t, 2*time.Second, func(f []byte) error {
		_, _, p, err := decodeEth(f)
		if err != nil {
			return err
		}
		h, _, err := parseIPv4(p)
		if err != nil {
			return err
		}
		if h.proto != IPProtoIPIP || h.src != topo.PodIP {
			return fmt.Errorf("outer %s -> %s proto %d", h.src, h.dst, h.proto)
		}
		return nil
	})

	if err := topo.Pod.SendIPIP("", "fd00::1", in); err == nil {
		t.Error("IPv6 outer destination accepted")
	}
}

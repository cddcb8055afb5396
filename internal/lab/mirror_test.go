package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// isEchoRequest matches an IPv4 ICMP echo request from src to dst in an Ethernet frame.
func isEchoRequest(src, dst netip.Addr) func([]byte) error { return isICMPEcho(src, dst, 8) }

// isEchoReply matches an IPv4 ICMP echo reply from src to dst in an Ethernet frame.
func isEchoReply(src, dst netip.Addr) func([]byte) error { return isICMPEcho(src, dst, 0) }

func isICMPEcho(src, dst netip.Addr, typ uint8) func([]byte) error {
	return func(frame []byte) error {
		_, _, payload, err := decodeEth(frame)
		if err != nil {
			return err
		}
		h, icmp, err := parseIPv4(payload)
		if err != nil {
			return err
		}
		if h.src != src || h.dst != dst || h.proto != unix.IPPROTO_ICMP || len(icmp) < 8 || icmp[0] != typ {
			return fmt.Errorf("%s > %s proto %d: not an icmp type %d %s > %s", h.src, h.dst, h.proto, typ, src, dst)
		}
		return nil
	}
}

// drain returns the frames the capture holds or gets within d.
func (c *capture) drain(t *testing.T, d time.Duration) [][]byte {
	t.Helper()
	buf := make([]byte, 65536)
	var out [][]byte
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		nr, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("capture on %s: %v", c.dev, err)
		}
		out = append(out, bytes.Clone(buf[:nr]))
	}
	return out
}

func countFrames(frames [][]byte, match func([]byte) error) int {
	n := 0
	for _, f := range frames {
		if match(f) == nil {
			n++
		}
	}
	return n
}

func TestTCMirror(t *testing.T) {
	topo := standard(t, "ptlabmir", 222)
	mon, err := topo.Lab.AddNS("mon")
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.Lab.Veth(topo.Node, "mon0", "", mon, "eth0", ""); err != nil {
		t.Fatal(err)
	}
	monCap := openCapture(t, mon, "eth0")

	c, err := topo.Node.AttachTCMirror(NodePodIf, "mon0")
	if err != nil {
		t.Fatalf("AttachTCMirror: %v", err)
	}
	att := c.(*tcAttachment)
	fs := tcFilters(t, topo.Node, NodePodIf, netlink.HANDLE_MIN_INGRESS)
	if len(fs) != 1 || fs[0].Name != TCProgMirror || !fs[0].DirectAction || uint32(fs[0].Id) != att.progID {
		t.Fatalf("ingress filters %+v, want one direct-action %s running prog %d", fs, TCProgMirror, att.progID)
	}
	if info, err := att.prog.Info(); err != nil {
		t.Errorf("program info: %v", err)
	} else if info.Name != TCProgMirror || info.Type != ebpf.SchedCLS {
		t.Errorf("program info: name %q type %v, want %s SchedCLS", info.Name, info.Type, TCProgMirror)
	}

	// The originals go on: every ping is answered, and each request is seen again on the
	// monitoring port.
	if got := ping(t, topo.Pod, topo.ExtIP, 1); got != pingCount {
		t.Errorf("with the mirror: %d replies, want %d", got, pingCount)
	}
	frames := monCap.drain(t, 300*time.Millisecond)
	if got := countFrames(frames, isEchoRequest(topo.PodIP, topo.ExtIP)); got != pingCount {
		t.Errorf("%d echo requests mirrored to mon, want %d", got, pingCount)
	}
	// Only the ingress of the pod's veth is mirrored: the replies, which leave by it, are not.
	if got := countFrames(frames, isEchoReply(topo.ExtIP, topo.PodIP)); got != 0 {
		t.Errorf("%d echo replies mirrored to mon, want none", got)
	}

	if err := c.Close(); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if hasClsact(t, topo.Node, NodePodIf) {
		t.Error("clsact qdisc left after the detach")
	}
	if got := ping(t, topo.Pod, topo.ExtIP, 2); got != pingCount {
		t.Errorf("after detach: %d replies, want %d", got, pingCount)
	}
	if got := countFrames(monCap.drain(t, 300*time.Millisecond), isEchoRequest(topo.PodIP, topo.ExtIP)); got != 0 {
		t.Errorf("%d echo requests mirrored after detach, want none", got)
	}

	if _, err := topo.Node.AttachTCMirror(NodePodIf, "nosuchdev"); err == nil {
		t.Error("missing mirror device accepted")
	}
	if _, err := topo.Node.AttachTCMirror("nosuchdev", "mon0"); err == nil {
		t.Error("missing device accepted")
	}
}

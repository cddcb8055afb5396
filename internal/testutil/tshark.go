package testutil

import (
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

// Frame is one packet of a capture as tshark (Wireshark's dissectors, not pathtrace's reader)
// reads it. Fields a packet has several of (an outer and an inner IP header) are in order.
type Frame struct {
	Interface string
	Comment   string
	IPSrc     []string // IPv4 and IPv6, each header in order
	IPDst     []string
	UDPSrc    []string
	UDPDst    []string
	TCPSrc    []string
	TCPDst    []string
	ICMPID    []string // ICMP and ICMPv6 echo identifiers
	VNI       []string
}

var tsharkFields = []string{"frame.interface_name", "frame.comment", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
	"udp.srcport", "udp.dstport", "tcp.srcport", "tcp.dstport", "icmp.ident", "icmpv6.echo.identifier", "vxlan.vni"}

// RequireTshark skips a test when Debian's tshark is not installed (make deps installs it).
func RequireTshark(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark is not installed (make deps installs it)")
	}
	return path
}

// Tshark runs tshark on a capture. Extra args come before the fields (-d decode-as rules).
func Tshark(t testing.TB, file string, args ...string) []Frame {
	t.Helper()
	tshark := RequireTshark(t)
	argv := append([]string{"-r", file, "-n", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"}, args...)
	for _, f := range tsharkFields {
		argv = append(argv, "-e", f)
	}
	cmd := exec.Command(tshark, argv...)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("tshark %v: %v\n%s", argv, err, stderr)
	}
	var frames []Frame
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		for len(f) < len(tsharkFields) {
			f = append(f, "")
		}
		list := func(i int) []string {
			if f[i] == "" {
				return nil
			}
			return strings.Split(f[i], ",")
		}
		frames = append(frames, Frame{
			Interface: f[0], Comment: f[1],
			IPSrc: append(list(2), list(4)...), IPDst: append(list(3), list(5)...),
			UDPSrc: list(6), UDPDst: list(7), TCPSrc: list(8), TCPDst: list(9),
			ICMPID: append(list(10), list(11)...), VNI: list(12),
		})
	}
	return frames
}

// TsharkInfo is capinfos' word on a capture's section header: its comments.
func TsharkInfo(t testing.TB, file string) string {
	t.Helper()
	RequireTshark(t)
	out, err := exec.Command("capinfos", file).CombinedOutput()
	if err != nil {
		t.Fatalf("capinfos %s: %v\n%s", file, err, out)
	}
	return string(out)
}

var hopComment = regexp.MustCompile(`^pkt=(\d+) (request|reply) hop (\d+)/(\d+): `)

// CheckCapture reads a capture of tr (pathtrace --pcapng) with tshark and checks every frame
// against the hop its comment names: tshark's dissection of the headers must be the hop's
// tuple (and, in a tunnel, its outer headers then the carried packet's), on the interface of
// the hop's place. Every hop of tr that carries bytes must be in the capture, once. It returns
// the frames for the caller's own checks.
func CheckCapture(t testing.TB, tr *trace.Trace, file string, tsharkArgs ...string) []Frame {
	t.Helper()
	frames := Tshark(t, file, tsharkArgs...)
	var log strings.Builder
	for n, f := range frames {
		fmt.Fprintf(&log, "%3d %-28s %s > %s udp %v>%v tcp %v>%v icmp id %v vni %v | %s\n", n+1, f.Interface,
			strings.Join(f.IPSrc, ","), strings.Join(f.IPDst, ","), f.UDPSrc, f.UDPDst, f.TCPSrc, f.TCPDst, f.ICMPID, f.VNI, f.Comment)
	}
	t.Logf("tshark read %d frames of %s:\n%s", len(frames), file, &log)
	byID := map[int]*trace.Packet{}
	want := 0
	for i := range tr.Packets {
		byID[tr.Packets[i].ID] = &tr.Packets[i]
		for _, h := range tr.Packets[i].Hops {
			if len(h.Bytes) > 0 {
				want++
			}
		}
	}
	if len(frames) != want {
		t.Errorf("capture has %d packets, the trace %d hops with bytes", len(frames), want)
	}
	seen := map[string]bool{}
	last := map[int]int{} // the last hop of each packet so far: the capture is in time order
	for n, f := range frames {
		m := hopComment.FindStringSubmatch(f.Comment)
		if m == nil {
			t.Errorf("frame %d: comment %q does not name its packet and hop", n+1, f.Comment)
			continue
		}
		if seen[m[1]+"/"+m[3]] {
			t.Errorf("frame %d: packet %s hop %s a second time", n+1, m[1], m[3])
		}
		seen[m[1]+"/"+m[3]] = true
		id, _ := strconv.Atoi(m[1])
		i, _ := strconv.Atoi(m[3])
		p := byID[id]
		if p == nil || string(p.Flow) != m[2] {
			t.Errorf("frame %d: comment %q names no %s packet of the trace", n+1, f.Comment, m[2])
			continue
		}
		if i <= last[id] {
			t.Errorf("frame %d: hop %d of #%d after its hop %d", n+1, i, id, last[id])
		}
		last[id] = i
		hops := trace.InTimeOrder(p.Hops)
		if i < 1 || i > len(hops) || strconv.Itoa(len(hops)) != m[4] {
			t.Errorf("frame %d: comment %q: packet #%d has %d hops", n+1, f.Comment, id, len(hops))
			continue
		}
		h := hops[i-1]
		if h.Tuple == nil {
			t.Errorf("frame %d: hop %d of #%d has no tuple", n+1, i, id)
			continue
		}
		var heads []trace.Headers
		if h.Encap != "" && h.Outer != nil {
			heads = append(heads, *h.Outer)
		}
		heads = append(heads, *h.Tuple)
		checkHeaders(t, n+1, f, heads)
		if !strings.HasSuffix(f.Interface, strings.TrimSpace(h.Namespace()+" "+h.Ifname)) {
			t.Errorf("frame %d on interface %q, its hop in %s on %s", n+1, f.Interface, h.Namespace(), h.Ifname)
		}
	}
	return frames
}

// checkHeaders compares the headers tshark dissected, outermost first, with heads.
func checkHeaders(t testing.TB, n int, f Frame, heads []trace.Headers) {
	t.Helper()
	if len(f.IPSrc) < len(heads) {
		t.Errorf("frame %d: tshark read %d IP headers (%v > %v), want %d", n, len(f.IPSrc), f.IPSrc, f.IPDst, len(heads))
		return
	}
	var udp, tcp, icmp int // the next of each field to compare
	for k, h := range heads {
		if netip.MustParseAddr(f.IPSrc[k]) != h.Src || netip.MustParseAddr(f.IPDst[k]) != h.Dst {
			t.Errorf("frame %d: IP header %d is %s > %s, the hop says %s > %s", n, k+1, f.IPSrc[k], f.IPDst[k], h.Src, h.Dst)
		}
		port := func(what string, got []string, i *int, want uint16) {
			if *i >= len(got) || got[*i] != strconv.Itoa(int(want)) {
				t.Errorf("frame %d: %s %v (at %d), the hop says %d", n, what, got, *i, want)
			}
			*i++
		}
		switch h.Proto {
		case trace.ProtoUDP:
			port("udp source port", f.UDPSrc, &udp, h.Sport)
			udp--
			port("udp destination port", f.UDPDst, &udp, h.Dport)
		case trace.ProtoTCP:
			port("tcp source port", f.TCPSrc, &tcp, h.Sport)
			tcp--
			port("tcp destination port", f.TCPDst, &tcp, h.Dport)
		case trace.ProtoICMP, trace.ProtoICMPv6:
			if h.ICMPType == 8 || h.ICMPType == 0 || h.ICMPType == 128 || h.ICMPType == 129 {
				port("icmp echo identifier", f.ICMPID, &icmp, h.ICMPID)
			}
		}
	}
}

package e2e

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/trace"
)

// peakRSS is the process's peak resident set in kB (VmHWM).
func peakRSS(pid int) int {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb
		}
	}
	return 0
}

// A few seconds of maximum-rate traffic that pathtrace matches, with a small ring buffer: no
// crash, memory stays bounded, what could not be followed is counted, and a normal trace
// works right after.
func TestFlood(t *testing.T) {
	topo := standard(t, "flood", 51)
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "udp", "--ring-buffer", "65536", "--max-packets", "2000")
	sent := 0
	err := topo.Pod.Do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(topo.ExtIP, 9)))
		if err != nil {
			return err
		}
		defer c.Close()
		payload := make([]byte, 32)
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
			if _, err := c.Write(payload); err == nil {
				sent++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rss := peakRSS(s.cmd.Process.Pid)
	tr := s.stop(syscall.SIGINT)
	t.Logf("sent %d datagrams; traced %d packets, %d skipped, %d events lost; peak RSS %d kB",
		sent, len(tr.Packets), tr.Meta.Skipped, tr.Meta.LostEvents, rss)
	// Under emulation (the kernel matrix runs in TCG) a sender manages a few thousand a second.
	if sent < 1000 {
		t.Fatalf("only %d datagrams sent: not a flood", sent)
	}
	if tr.Meta.Skipped == 0 && tr.Meta.LostEvents == 0 && uint64(len(tr.Packets)) < uint64(sent) {
		t.Errorf("%d of %d packets traced and nothing counted as skipped or lost", len(tr.Packets), sent)
	}
	if tr.Meta.Skipped > 0 {
		requireLine(t, s.stdout.String(), "overload:", "not followed")
	}
	if rss == 0 || rss > 128*1024 {
		t.Errorf("peak RSS %d kB, want bounded (< 128 MiB)", rss)
	}
	if len(tr.Packets) > 2000 || uint64(len(tr.Packets))+tr.Meta.NotKept+tr.Meta.Skipped < uint64(sent) {
		t.Errorf("kept %d packets, %d not kept, %d skipped of %d sent: each must be kept, counted or skipped",
			len(tr.Packets), tr.Meta.NotKept, tr.Meta.Skipped, sent)
	}

	// The node is back to normal and so is pathtrace.
	s = start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	if got := ping(t, topo, 2); got != 2 {
		t.Fatalf("ping after the flood: %d replies", got)
	}
	tr = s.stop(syscall.SIGINT)
	if n := len(testutil.ICMPOfType(packets(tr, trace.Request), 8)); n != 2 || tr.Verdict.Outcome != "delivered" {
		t.Errorf("after the flood: %d requests, verdict %q; want 2 delivered", n, tr.Verdict.Outcome)
	}
}

// SIGKILL gives pathtrace no chance to clean up: the kernel must, and no file is left where
// the trace would have gone.
func TestSIGKILLLeavesNothing(t *testing.T) {
	topo := standard(t, "kill", 52)
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String())
	ping(t, topo, 1)
	s.cmd.Process.Kill()
	<-s.done
	requireNothingLeft(t)
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(s.json), "*"))
	for _, f := range left {
		if filepath.Base(f) != "ready" {
			t.Errorf("left behind after SIGKILL: %s", f)
		}
	}
}

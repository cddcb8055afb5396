package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/lab"
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

// floodUDP sends datagrams from pod to ext's port 9 (nothing listens) as fast as it can for d,
// and says how many the kernel took.
func floodUDP(t *testing.T, topo *lab.Topology, d time.Duration) int {
	t.Helper()
	sent := 0
	err := topo.Pod.Do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(topo.ExtIP, 9)))
		if err != nil {
			return err
		}
		defer c.Close()
		payload := make([]byte, 32)
		for end := time.Now().Add(d); time.Now().Before(end); {
			// A send failing with the ICMP error of an earlier one did not send.
			if _, err := c.Write(payload); err == nil {
				sent++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sent
}

// A few seconds of maximum-rate traffic that pathtrace matches, with no budget and a small ring
// buffer: no crash, memory stays bounded, what could not be followed is counted, and a normal
// trace works right after.
func TestFlood(t *testing.T) {
	topo := standard(t, "flood", 51)
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "udp", "--ring-buffer", "65536", "--max-packets", "2000",
		"--max-rate", "0")
	sent := floodUDP(t, topo, 3*time.Second)
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
	if tr.Meta.OverBudget != 0 || tr.Meta.MaxRate != 0 {
		t.Errorf("--max-rate 0: %d packets over a budget of %d", tr.Meta.OverBudget, tr.Meta.MaxRate)
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

// A flood past the budget (--max-rate): at most that many new packets a second are traced, each
// whole, every other one is counted, and the summary and the verdict say the packets are a sample.
func TestFloodBudget(t *testing.T) {
	const rate = 300
	topo := standard(t, "budget", 53)
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "udp", "--max-rate", strconv.Itoa(rate))
	t0 := time.Now()
	sent := floodUDP(t, topo, time.Second)
	took := time.Since(t0)
	tr := s.stop(syscall.SIGINT)
	traced := uint64(len(tr.Packets)) + tr.Meta.NotKept
	t.Logf("sent %d datagrams in %s; traced %d packets, %d over budget, %d skipped, %d events lost",
		sent, took, traced, tr.Meta.OverBudget, tr.Meta.Skipped, tr.Meta.LostEvents)
	if sent < 1000 {
		t.Fatalf("only %d datagrams sent: not a flood", sent)
	}
	if tr.Meta.MaxRate != rate || tr.Meta.OverBudget == 0 {
		t.Fatalf("meta: max_rate %d, over_budget %d; want %d and the flood's packets past it", tr.Meta.MaxRate, tr.Meta.OverBudget, rate)
	}
	// Every datagram sent is traced or counted, once; a packet whose first event found the ring
	// full is counted as skipped.
	if got := traced + tr.Meta.OverBudget + tr.Meta.Skipped; got != uint64(sent) {
		t.Errorf("traced %d + over budget %d + skipped %d = %d, want the %d sent", traced, tr.Meta.OverBudget, tr.Meta.Skipped, got, sent)
	}
	// The bucket, what came back while the flood ran, and one more per CPU that raced for the
	// last token.
	if most := uint64(rate + rate*took.Seconds() + 8); traced < rate || traced > most {
		t.Errorf("%d packets traced, want the bucket's %d and at most %d", traced, rate, most)
	}
	podNS := topo.Pod.Name()
	for _, p := range tr.Packets {
		for _, h := range p.Hops {
			if h.Event == trace.KindRoute || h.Copy { // its lookup, before it; a copy's free
				continue
			}
			if h.Event != trace.KindQueue || h.Ifname != "eth0" || h.NetnsName != podNS {
				t.Errorf("packet %d starts %s on %s/%s: not whole", p.ID, h.Event, h.NetnsName, h.Ifname)
			}
			break
		}
	}
	requireLine(t, s.stdout.String(), "budget:", "matching packets not traced", fmt.Sprintf("over --max-rate %d new packets/s", rate), "a sample")
	if !strings.Contains(tr.Verdict.Summary, "a sample") {
		t.Errorf("verdict does not say it rests on a sample: %s", tr.Verdict.Summary)
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

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/pathtrace/pathtrace/internal/lab"
)

// traffic is one kind of iperf3 load.
type traffic struct {
	Name string
	Args []string // client arguments besides -c, -t, -J
}

var traffics = map[string]traffic{
	"udp": {Name: "udp", Args: []string{"-u", "-b", "0", "-l", "64"}},
	"tcp": {Name: "tcp"},
}

// ifCounters reads a device's packet counters inside a namespace.
func ifCounters(ns *lab.NS, dev string) (rx, tx uint64, err error) {
	h, err := netns.GetFromPath(ns.Path())
	if err != nil {
		return 0, 0, err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return 0, 0, err
	}
	defer nl.Close()
	l, err := nl.LinkByName(dev)
	if err != nil {
		return 0, 0, fmt.Errorf("%s in %s: %w", dev, ns.Name(), err)
	}
	st := l.Attrs().Statistics
	if st == nil {
		return 0, 0, fmt.Errorf("%s in %s: no statistics", dev, ns.Name())
	}
	return st.RxPackets, st.TxPackets, nil
}

// iperfResult is what a run of the iperf3 client reports, plus the packets the lab's devices
// counted while it ran.
type iperfResult struct {
	Seconds   float64 `json:"seconds"`      // the test's own duration, as iperf3 reports it
	BitsPerS  float64 `json:"bits_per_s"`   // received (TCP) or sent (UDP) payload rate
	UDPLost   float64 `json:"udp_lost_pct"` // iperf3's lost_percent for UDP (socket-level)
	SentPkts  uint64  `json:"sent_pkts"`    // pod eth0 tx packets during the run
	ThruPkts  uint64  `json:"thru_pkts"`    // ext eth0 rx packets: what came through the node
	SentPPS   float64 `json:"sent_pps"`
	ThruPPS   float64 `json:"thru_pps"`
	WallStart time.Time
	WallEnd   time.Time
}

// iperfServer starts a one-off iperf3 server in ext and waits until it listens.
func iperfServer(topo *lab.Topology) (*exec.Cmd, error) {
	cmd := exec.Command("ip", "netns", "exec", topo.Ext.Name(), "iperf3", "-s", "-1", "--forceflush", "-B", topo.ExtIP.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "Server listening") {
				said = true
				listening <- true
			}
		}
		if !said {
			listening <- false
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case ok := <-listening:
		if ok {
			return cmd, nil
		}
	case <-time.After(5 * time.Second):
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, fmt.Errorf("iperf3 server did not start: %s", strings.TrimSpace(stderr.String()))
}

// runIperf runs one client from pod to ext for d and reads the device counters around it.
// onStart runs just before the client starts, onEnd right after it exits (the tracer's
// measurement window).
func runIperf(topo *lab.Topology, tr traffic, d time.Duration, onStart, onEnd func()) (iperfResult, error) {
	var r iperfResult
	srv, err := iperfServer(topo)
	if err != nil {
		return r, err
	}
	defer func() {
		done := make(chan struct{})
		go func() { srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			srv.Process.Kill()
			<-done
		}
	}()

	_, tx0, err := ifCounters(topo.Pod, lab.PodIf)
	if err != nil {
		return r, err
	}
	rx0, _, err := ifCounters(topo.Ext, lab.ExtIf)
	if err != nil {
		return r, err
	}
	args := append([]string{"netns", "exec", topo.Pod.Name(), "iperf3", "-c", topo.ExtIP.String(),
		"-t", strconv.Itoa(int(d.Seconds())), "-J"}, tr.Args...)
	cmd := exec.Command("ip", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if onStart != nil {
		onStart()
	}
	r.WallStart = time.Now()
	err = cmd.Run()
	r.WallEnd = time.Now()
	if onEnd != nil {
		onEnd()
	}
	_, tx1, err2 := ifCounters(topo.Pod, lab.PodIf)
	rx1, _, err3 := ifCounters(topo.Ext, lab.ExtIf)
	if err != nil {
		return r, fmt.Errorf("iperf3 client: %v: %s%s", err, strings.TrimSpace(stderr.String()), iperfError(stdout.Bytes()))
	}
	if err2 != nil || err3 != nil {
		return r, fmt.Errorf("counters: %v %v", err2, err3)
	}
	var out struct {
		Error string `json:"error"`
		End   struct {
			Sum struct { // UDP
				Seconds     float64 `json:"seconds"`
				BitsPerS    float64 `json:"bits_per_second"`
				LostPercent float64 `json:"lost_percent"`
			} `json:"sum"`
			SumReceived struct { // TCP
				Seconds  float64 `json:"seconds"`
				BitsPerS float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return r, fmt.Errorf("iperf3 output: %w", err)
	}
	if out.Error != "" {
		return r, fmt.Errorf("iperf3: %s", out.Error)
	}
	if tr.Name == "udp" {
		r.Seconds, r.BitsPerS, r.UDPLost = out.End.Sum.Seconds, out.End.Sum.BitsPerS, out.End.Sum.LostPercent
	} else {
		r.Seconds, r.BitsPerS = out.End.SumReceived.Seconds, out.End.SumReceived.BitsPerS
	}
	if r.Seconds <= 0 {
		r.Seconds = r.WallEnd.Sub(r.WallStart).Seconds()
	}
	r.SentPkts, r.ThruPkts = tx1-tx0, rx1-rx0
	r.SentPPS, r.ThruPPS = float64(r.SentPkts)/r.Seconds, float64(r.ThruPkts)/r.Seconds
	return r, nil
}

func iperfError(stdout []byte) string {
	var out struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(stdout, &out) == nil && out.Error != "" {
		return " (" + out.Error + ")"
	}
	return ""
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// floodDropResult is how soon pathtrace, at its default budget (--max-rate), names a drop that
// starts in the middle of a flood it is tracing: the budget must leave the drop in its sample.
type floodDropResult struct {
	Trials   int       `json:"trials"`
	Seen     int       `json:"seen"`
	PerTrial []float64 `json:"per_trial_ms"`
	MedianMS float64   `json:"median_ms"`
	Lines    []string  `json:"lines"` // the first "=> DROPPED" line of each trial
	// OverBudget is each trial's meta.over_budget: the flood's packets the budget left out.
	OverBudget []uint64 `json:"over_budget"`
}

// floodDrop runs n trials of floodDropOnce.
func (b *bench) floodDrop(n int) (*floodDropResult, error) {
	res := &floodDropResult{Trials: n}
	var errs []error
	for i := 0; i < n; i++ {
		ms, line, over, err := b.floodDropOnce()
		res.OverBudget = append(res.OverBudget, over)
		if err != nil {
			errs = append(errs, fmt.Errorf("trial %d: %w", i+1, err))
			continue
		}
		res.Seen++
		res.PerTrial = append(res.PerTrial, ms)
		res.Lines = append(res.Lines, line)
	}
	res.MedianMS = median(res.PerTrial)
	return res, errors.Join(errs...)
}

// floodDropOnce starts pathtrace with its default budget on the pod->ext UDP flow, stdout on a
// pipe, and the UDP flood through the node; a second in, it turns the node's forwarding off,
// and times from there to the first "=> DROPPED" line on the node. Forwarding is turned back
// on once the line is read (or after 5 s).
func (b *bench) floodDropOnce() (ms float64, line string, overBudget uint64, err error) {
	t := b.topo
	pr, pw := io.Pipe()
	type seen struct {
		at   time.Time
		line string
	}
	drops := make(chan seen, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if l := sc.Text(); strings.Contains(l, "=> DROPPED") && strings.Contains(l, t.Node.Name()) {
				select {
				case drops <- seen{time.Now(), strings.TrimSpace(l)}:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	defer pw.Close()
	// Printing is not capped (--max-packets): at the budget's rate the default cap is reached
	// within the first second of a flood, and later packets are only counted.
	p, err := startPathtrace(b.bin, []string{"--src", t.PodIP.String(), "--dst", t.ExtIP.String(), "--proto", "udp",
		"--max-packets", "100000000"}, pw)
	if err != nil {
		return 0, "", 0, err
	}
	stopped := false
	defer func() {
		if !stopped {
			p.stop()
		}
	}()
	srv, err := iperfServer(t)
	if err != nil {
		return 0, "", 0, err
	}
	defer func() {
		srv.Process.Kill()
		srv.Wait()
	}()
	args := append([]string{"netns", "exec", t.Pod.Name(), "iperf3", "-c", t.ExtIP.String(), "-t", "3"}, traffics["udp"].Args...)
	client := exec.Command("ip", args...)
	if err := client.Start(); err != nil {
		return 0, "", 0, err
	}
	defer func() {
		client.Process.Kill()
		client.Wait()
	}()

	time.Sleep(time.Second)
	select {
	case d := <-drops:
		return 0, "", 0, fmt.Errorf("a drop on the node before forwarding was turned off: %s", d.line)
	default:
	}
	t0 := time.Now()
	if err := t.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		return 0, "", 0, err
	}
	select {
	case d := <-drops:
		ms, line = float64(d.at.Sub(t0).Microseconds())/1000, d.line
	case <-time.After(5 * time.Second):
		err = errors.New("no DROPPED block on the node within 5s of turning forwarding off")
	}
	if serr := t.Node.Sysctl("net.ipv4.ip_forward", "1"); serr != nil {
		err = errors.Join(err, serr)
	}
	_, tf, serr := p.stop()
	stopped = true
	return ms, line, tf.OverBudget, errors.Join(err, serr)
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// dropResult is the time from sending one ping that the node will drop to pathtrace printing
// that packet's DROPPED block.
type dropResult struct {
	Pings    int       `json:"pings"`
	Seen     int       `json:"seen"`
	PerPing  []float64 `json:"per_ping_ms"`
	MedianMS float64   `json:"median_ms"`
	Lines    []string  `json:"lines"` // the "=> DROPPED" lines read
}

// dropToVerdict turns forwarding off on the node, starts pathtrace on the pod<->ext ICMP flow
// with its stdout on a pipe, and sends n single pings, one at a time: each is timed from just
// before the send until the "=> DROPPED" line of its block is read from the pipe.
func (b *bench) dropToVerdict(n int) (*dropResult, error) {
	t := b.topo
	if err := t.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		return nil, err
	}
	defer t.Node.Sysctl("net.ipv4.ip_forward", "1")

	pr, pw := io.Pipe()
	lines := make(chan time.Time, 16)
	texts := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if l := sc.Text(); strings.Contains(l, "=> DROPPED") {
				lines <- time.Now()
				texts <- strings.TrimSpace(l)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	p, err := startPathtrace(b.bin, []string{"--src", t.PodIP.String(), "--dst", t.ExtIP.String(), "--proto", "icmp"}, pw)
	if err != nil {
		pw.Close()
		return nil, err
	}
	res := &dropResult{Pings: n}
	var errs []error
	for i := 0; i < n; i++ {
		t0 := time.Now()
		go t.Pod.Ping(t.ExtIP.String(), 0xbe00+uint16(i), 1, 0, 200*time.Millisecond)
		select {
		case at := <-lines:
			res.Seen++
			res.PerPing = append(res.PerPing, ms(at.Sub(t0)))
			res.Lines = append(res.Lines, <-texts)
		case <-time.After(5 * time.Second):
			errs = append(errs, fmt.Errorf("ping %d: no DROPPED block within 5s", i+1))
		}
		time.Sleep(300 * time.Millisecond) // the ping's own timeout, so pings do not overlap
	}
	if _, _, err := p.stop(); err != nil {
		errs = append(errs, err)
	}
	pw.Close()
	if len(res.PerPing) > 0 {
		res.MedianMS = median(res.PerPing)
	}
	return res, errors.Join(errs...)
}

package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// microResult is one sub-benchmark of BenchmarkAssemble (internal/run/assemble_bench_test.go):
// the median of its -count runs.
type microResult struct {
	Name         string    `json:"name"`
	Samples      []float64 `json:"events_per_s_samples"`
	EventsPerSec float64   `json:"events_per_s"`
	NsPerEvent   float64   `json:"ns_per_event"`
	BytesPerOp   float64   `json:"bytes_per_op,omitempty"`
	AllocsPerOp  float64   `json:"allocs_per_op,omitempty"`
}

// runMicro runs the userspace benchmark with go test and parses its custom metrics.
func runMicro(goBin, benchtime string, count int) ([]microResult, string, error) {
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkAssemble$", "-benchtime", benchtime, "-count", strconv.Itoa(count), "./internal/run/"}
	cmd := exec.Command(goBin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmdline := goBin + " " + strings.Join(args, " ")
	if err := cmd.Run(); err != nil {
		return nil, cmdline, fmt.Errorf("%s: %v\n%s", cmdline, err, out.String())
	}
	var res []microResult
	samples := map[string][]microResult{}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkAssemble/") {
			continue
		}
		name := strings.TrimPrefix(f[0], "BenchmarkAssemble/")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // GOMAXPROCS suffix
		}
		r := microResult{Name: name}
		for i := 1; i+1 < len(f); i++ {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "events/s":
				r.EventsPerSec = v
			case "ns/event":
				r.NsPerEvent = v
			case "B/op":
				r.BytesPerOp = v
			case "allocs/op":
				r.AllocsPerOp = v
			}
		}
		if _, seen := samples[name]; !seen {
			res = append(res, microResult{Name: name})
		}
		samples[name] = append(samples[name], r)
	}
	for i := range res {
		ss := samples[res[i].Name]
		var eps, ns, bo, ao []float64
		for _, r := range ss {
			eps, ns, bo, ao = append(eps, r.EventsPerSec), append(ns, r.NsPerEvent), append(bo, r.BytesPerOp), append(ao, r.AllocsPerOp)
		}
		res[i].Samples = eps
		res[i].EventsPerSec, res[i].NsPerEvent, res[i].BytesPerOp, res[i].AllocsPerOp = median(eps), median(ns), median(bo), median(ao)
	}
	if len(res) == 0 {
		return nil, cmdline, fmt.Errorf("%s: no BenchmarkAssemble results in:\n%s", cmdline, out.String())
	}
	return res, cmdline, nil
}

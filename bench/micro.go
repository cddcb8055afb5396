package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// microResult is one userspace benchmark (see microBenches): the median of its -count runs.
type microResult struct {
	Name         string    `json:"name"`
	Samples      []float64 `json:"events_per_s_samples"`
	EventsPerSec float64   `json:"events_per_s"`
	NsPerEvent   float64   `json:"ns_per_event"`
	BytesPerOp   float64   `json:"bytes_per_op,omitempty"`
	AllocsPerOp  float64   `json:"allocs_per_op,omitempty"`
}

// microBenches are the userspace benchmarks: BenchmarkAssemble's sub-benchmarks on recorded
// events (internal/run/assemble_bench_test.go); BenchmarkDecodeAssemble, the same events as
// ring-buffer records decoded and assembled (tracer/decode_bench_test.go), reported as
// "decode+stream"; and BenchmarkLive, those records through all a live run does per event
// (decoded, assembled, and each packet handled as run.Run does: flows, diagnosis, the trace
// file's JSON, the text block), reported as "live".
var microBenches = []struct{ pkg, bench, prefix, name string }{
	{"./internal/run/", "^BenchmarkAssemble$", "BenchmarkAssemble/", ""},
	{"./tracer/", "^BenchmarkDecodeAssemble$", "BenchmarkDecodeAssemble", "decode+stream"},
	{"./tracer/", "^BenchmarkLive$", "BenchmarkLive", "live"},
}

// runMicro runs the userspace benchmarks with go test and parses their custom metrics.
func runMicro(goBin, benchtime string, count int) ([]microResult, string, error) {
	var res []microResult
	var cmdlines []string
	samples := map[string][]microResult{}
	for _, mb := range microBenches {
		args := []string{"test", "-run", "^$", "-bench", mb.bench, "-benchtime", benchtime, "-count", strconv.Itoa(count), mb.pkg}
		cmd := exec.Command(goBin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmdline := goBin + " " + strings.Join(args, " ")
		cmdlines = append(cmdlines, cmdline)
		if err := cmd.Run(); err != nil {
			return nil, strings.Join(cmdlines, "; "), fmt.Errorf("%s: %v\n%s", cmdline, err, out.String())
		}
		found := false
		for _, line := range strings.Split(out.String(), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 || !strings.HasPrefix(f[0], mb.prefix) {
				continue
			}
			name := strings.TrimPrefix(f[0], mb.prefix)
			if i := strings.LastIndexByte(name, '-'); i >= 0 {
				name = name[:i] // GOMAXPROCS suffix
			}
			if mb.name != "" {
				name = mb.name
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
			found = true
		}
		if !found {
			return nil, strings.Join(cmdlines, "; "), fmt.Errorf("%s: no %s results in:\n%s", cmdline, mb.bench, out.String())
		}
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
	return res, strings.Join(cmdlines, "; "), nil
}

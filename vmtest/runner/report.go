package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"
)

// TestReport follows `go test -v` output: results of every test and subtest, and the lines
// logged while each ran (for failures).
type TestReport struct {
	Passed, Failed, Skipped []string
	logs                    map[string][]string
	current                 string
	running                 map[string]bool
	Crashed                 string // the test that was running when the binary panicked or timed out
	Panic                   []string
}

func newTestReport() *TestReport {
	return &TestReport{logs: map[string][]string{}, running: map[string]bool{}}
}

var (
	reMarker = regexp.MustCompile(`^=== (RUN|CONT|NAME|PAUSE)\s+(\S+)`)
	reResult = regexp.MustCompile(`^(\s*)--- (PASS|FAIL|SKIP): (\S+) \(([\d.]+)s\)`)
)

// Line takes one line of output; it returns a progress message when a top-level test ends.
func (r *TestReport) Line(line string) string {
	if m := reMarker.FindStringSubmatch(line); m != nil {
		if m[1] == "RUN" {
			r.running[m[2]] = true
		}
		if m[1] != "PAUSE" {
			r.current = m[2]
		}
		return ""
	}
	if m := reResult.FindStringSubmatch(line); m != nil {
		name := m[3]
		delete(r.running, name)
		r.current = name // what follows, indented, is the test's output (non -v style)
		switch m[2] {
		case "PASS":
			r.Passed = append(r.Passed, name)
		case "FAIL":
			r.Failed = append(r.Failed, name)
		case "SKIP":
			r.Skipped = append(r.Skipped, name)
		}
		if m[1] == "" {
			return fmt.Sprintf("%-4s %s (%ss)", m[2], name, m[4])
		}
		return ""
	}
	if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
		r.Panic = append(r.Panic, line)
		r.Crashed = r.current
	}
	if r.current != "" {
		r.logs[r.current] = append(r.logs[r.current], line)
	}
	return ""
}

// End closes one test binary's output: tests still running there never finished.
func (r *TestReport) End() {
	for name := range r.running {
		if !strings.Contains(name, "/") {
			r.Failed = append(r.Failed, name+" (did not finish)")
			if r.Crashed == "" {
				r.Crashed = name
			}
		}
	}
	r.running = map[string]bool{}
	r.current = ""
}

var reLogLine = regexp.MustCompile(`^\s+\S+\.go:\d+: `)

// Messages returns what a failed test logged with t.Error, t.Fatal or t.Log: each message's
// first line and a few of its continuation lines, the last max messages (a t.Fatal ends a
// test, so the last message is the likeliest cause).
func (r *TestReport) Messages(name string, max int) []string {
	var blocks [][]string
	for _, l := range r.logs[strings.TrimSuffix(name, " (did not finish)")] {
		switch {
		case reLogLine.MatchString(l):
			blocks = append(blocks, []string{strings.TrimRight(l, " ")})
		case len(blocks) > 0 && strings.HasPrefix(l, "        "):
			b := &blocks[len(blocks)-1]
			*b = append(*b, strings.TrimRight(l, " "))
		}
	}
	var out []string
	if len(blocks) > max {
		out = append(out, fmt.Sprintf("    ... (%d earlier messages in the log)", len(blocks)-max))
		blocks = blocks[len(blocks)-max:]
	}
	const lines = 4
	for _, b := range blocks {
		if len(b) > lines {
			b = append(b[:lines:lines], fmt.Sprintf("        ... (%d more lines)", len(b)-lines))
		}
		out = append(out, b...)
	}
	return out
}

// leaves are the failed tests none of whose subtests failed: where the messages are.
func (r *TestReport) leaves() []string {
	var out []string
	for _, f := range r.Failed {
		leaf := true
		for _, g := range r.Failed {
			if strings.HasPrefix(g, f+"/") {
				leaf = false
				break
			}
		}
		if leaf {
			out = append(out, f)
		}
	}
	return out
}

func dur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(time.Second).String()
}

// writeSummary prints the per-kernel table and every failure; it returns whether all passed.
func writeSummary(w io.Writer, results []*VMResult, info []string, total time.Duration) bool {
	ok := true
	fmt.Fprintln(w, "\n== vmtest results")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "suite\tkernel\tpackage version\tresult\tpassed\tfailed\tskipped\tboot\ttests\tVM total")
	var np, nf, ns int
	for _, r := range results {
		rel, ver := "-", "-"
		if r.Kernel != nil {
			rel, ver = r.Kernel.Release, r.Kernel.Version
		}
		if r.Uname != "" {
			rel = r.Uname
		}
		res := "ok"
		switch {
		case r.Err != nil && !r.Booted:
			res = "NO BOOT"
		case r.TimeOut:
			res = "TIMEOUT"
		case r.Err != nil:
			res = "ERROR"
		case len(r.Report.Failed) > 0 || r.Status != 0:
			res = "FAIL"
		}
		if res != "ok" {
			ok = false
		}
		np, nf, ns = np+len(r.Report.Passed), nf+len(r.Report.Failed), ns+len(r.Report.Skipped)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", r.Suite, rel, ver, res,
			len(r.Report.Passed), len(r.Report.Failed), len(r.Report.Skipped), dur(r.Boot), dur(r.Tests), dur(r.Total))
	}
	tw.Flush()
	fmt.Fprintf(w, "(passed/failed/skipped count tests and subtests; wall time %s)\n", total.Round(time.Second))
	for _, l := range info {
		fmt.Fprintln(w, l)
	}

	for _, r := range results {
		var lines []string
		if r.Err != nil {
			lines = append(lines, "error: "+r.Err.Error())
		}
		for pkg, code := range r.Exits {
			if code != 0 && len(r.Report.Failed) == 0 {
				lines = append(lines, fmt.Sprintf("%s exited %d without a failed test", pkg, code))
			}
		}
		for _, p := range r.Report.Panic {
			lines = append(lines, fmt.Sprintf("%s (while %s ran)", p, r.Report.Crashed))
		}
		for _, f := range r.Report.leaves() {
			lines = append(lines, "--- FAIL: "+f)
			lines = append(lines, r.Report.Messages(f, 8)...)
		}
		if len(r.Report.Skipped) > 0 {
			lines = append(lines, "skipped: "+strings.Join(r.Report.Skipped, " "))
		}
		for _, n := range r.Notes {
			lines = append(lines, "note: "+n)
		}
		if len(r.Kmsg) > 0 {
			lines = append(lines, fmt.Sprintf("kernel warnings: %d lines (grep '^kmsg:' %s); first: %s", len(r.Kmsg), r.Log, r.Kmsg[0]))
		}
		if len(r.Tail) > 0 {
			lines = append(lines, "last console lines:")
			for _, l := range r.Tail {
				lines = append(lines, "  | "+l)
			}
		}
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n-- %s", r.Suite)
		if r.Log != "" {
			fmt.Fprintf(w, " (console log: %s)", r.Log)
		}
		fmt.Fprintln(w)
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
	fmt.Fprintf(w, "\nvmtest: %d passed, %d failed, %d skipped\n", np, nf, ns)
	return ok
}

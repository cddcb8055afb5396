package kube

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// bigTrace is JSON-like text of more than the kubelet's default log limit (10 MiB), not all of
// it compressible.
func bigTrace() []byte {
	var b bytes.Buffer
	r := rand.New(rand.NewPCG(1, 2))
	b.WriteString(`{"schema":"pathtrace/v1","packets":[`)
	for i := 0; b.Len() < 12<<20; i++ {
		fmt.Fprintf(&b, `{"id":%d,"hops":[{"time_ns":%d,"netns":%d,"ifname":"veth%x"}]},`+"\n", i, r.Uint64(), r.Uint32(), r.Uint32())
	}
	b.WriteString("]}\n")
	return b.Bytes()
}

func logLines(t *testing.T, js []byte) []string {
	t.Helper()
	var log bytes.Buffer
	if err := WriteTrace(&log, bytes.NewReader(js)); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n")
}

func take(lines []string) (shown []string, tl *TraceLog) {
	tl = &TraceLog{}
	for _, l := range lines {
		if !tl.Line(l) {
			shown = append(shown, l)
		}
	}
	return shown, tl
}

// A trace bigger than the log limit goes through whole, much smaller, with the run's output
// around it (and a stray line within) left to be shown.
func TestTraceLogRoundTrip(t *testing.T) {
	js := bigTrace()
	lines := logLines(t, js)
	logBytes := len(strings.Join(lines, "\n"))
	t.Logf("%d bytes of JSON: %d log lines, %d bytes (%.1f%%)", len(js), len(lines), logBytes, 100*float64(logBytes)/float64(len(js)))
	if logBytes > len(js)/2 {
		t.Errorf("the log carries %d bytes for %d of JSON: not compressed", logBytes, len(js))
	}
	for _, l := range lines {
		if len(l) > 16<<10 {
			t.Fatalf("a line of %d bytes: the runtime would split it", len(l))
		}
	}
	mid := len(lines) / 2
	in := append([]string{"Verdict: DROPPED"}, lines[:mid]...)
	in = append(in, "probe: sent icmp echo-request seq=4 to 10.0.0.1")
	in = append(in, lines[mid:]...)
	in = append(in, "after")
	shown, tl := take(in)
	got, err := tl.Trace()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, js) {
		t.Fatalf("got %d bytes back, not the %d written", len(got), len(js))
	}
	if want := []string{"Verdict: DROPPED", "probe: sent icmp echo-request seq=4 to 10.0.0.1", "after"}; strings.Join(shown, "|") != strings.Join(want, "|") {
		t.Errorf("shown %q, want %q", shown, want)
	}
}

// Whatever is lost between the marker lines is found, and said.
func TestTraceLogCut(t *testing.T) {
	lines := logLines(t, bigTrace())
	n := len(lines)
	for _, c := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"no trace", []string{"pathtrace: needs root"}, ErrNoTrace.Error()},
		{"cut before its end", lines[:n/2], fmt.Sprintf("the log ends inside the trace, after %d of its lines, without its end line", n/2-1)},
		{"a line lost", append(append([]string{}, lines[:n/2]...), lines[n/2+1:]...), "lost or damaged"},
		{"its start lost, as a rotated log loses it", append([]string{TraceStart}, lines[n/2:]...), "lost or damaged"},
		{"last line lost", append(append([]string{}, lines[:n-2]...), lines[n-1]), "lost or damaged"},
		{"a byte changed", damage(lines), "lost or damaged"},
		{"other bytes", otherTrace(t), "pathtrace wrote"},
	} {
		_, tl := take(c.lines)
		js, err := tl.Trace()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %d bytes, error %v, want %q", c.name, len(js), err, c.want)
		}
		if c.name == "no trace" && !errors.Is(err, ErrNoTrace) {
			t.Errorf("no trace: %v is not ErrNoTrace", err)
		}
	}
}

func damage(lines []string) []string {
	out := append([]string{}, lines...)
	i := len(out) / 3
	b := []byte(out[i])
	if b[100] == 'A' {
		b[100] = 'B'
	} else {
		b[100] = 'A'
	}
	out[i] = string(b)
	return out
}

// otherTrace is a whole trace whose end line is another's: what a mix-up would give.
func otherTrace(t *testing.T) []string {
	a := logLines(t, []byte(`{"a":1}`))
	b := logLines(t, []byte(`{"b":2}`))
	return append(a[:len(a)-1], b[len(b)-1])
}

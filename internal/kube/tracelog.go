package kube

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// How a pathtrace pod started by kubectl-pathtrace hands its trace to the plugin: through its
// log (pathtrace --emit-json), so that no registry, exec or copy is needed. A log can lose
// lines: the kubelet rotates it at containerLogMaxSize and serves only the newest file, and a
// stream can break. So the trace is written gzipped (a tenth of the JSON) in base64 lines that
// each start with TraceLinePrefix (a line of anything else in between, a stray message on
// stderr, is not taken for the trace), between TraceStart and an end line that gives the
// JSON's length and sha256. The plugin takes the trace only when both match.
const (
	TraceStart      = "=== pathtrace trace follows (gzip, base64) ==="
	TraceLinePrefix = "=ptj "
	traceEndPrefix  = "=== pathtrace trace ends: "
	traceLineChars  = 4096 // of base64: well under the runtimes' 16 KiB, where a log line is split
)

// WriteTrace writes the trace JSON read from r to w as a pod's log carries it.
func WriteTrace(w io.Writer, r io.Reader) error {
	bw := bufio.NewWriter(w)
	if _, err := bw.WriteString(TraceStart + "\n"); err != nil {
		return err
	}
	lw := &lineWriter{w: bw}
	enc := base64.NewEncoder(base64.StdEncoding, lw)
	gz, _ := gzip.NewWriterLevel(enc, gzip.BestCompression)
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(gz, h), r)
	if err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if err := lw.end(); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(bw, "%s%d bytes, sha256 %x ===\n", traceEndPrefix, n, h.Sum(nil)); err != nil {
		return err
	}
	return bw.Flush()
}

// lineWriter cuts what it is given into lines of traceLineChars, each with TraceLinePrefix.
type lineWriter struct {
	w   *bufio.Writer
	col int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if l.col == 0 {
			if _, err := l.w.WriteString(TraceLinePrefix); err != nil {
				return 0, err
			}
		}
		k := min(len(p), traceLineChars-l.col)
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		p, l.col = p[k:], l.col+k
		if l.col == traceLineChars {
			if err := l.w.WriteByte('\n'); err != nil {
				return 0, err
			}
			l.col = 0
		}
	}
	return n, nil
}

func (l *lineWriter) end() error {
	if l.col == 0 {
		return nil
	}
	l.col = 0
	return l.w.WriteByte('\n')
}

// TraceLog takes a pod's trace from its log, line by line.
type TraceLog struct {
	started, ended bool
	data           bytes.Buffer // base64
	lines          int
	size           int64
	sum            string
	endErr         error
}

// ErrNoTrace is TraceLog.Trace's error when the log held no trace at all.
var ErrNoTrace = errors.New("no trace in the log")

// Line takes one line of the log (without its newline) and says whether it was the trace's;
// other lines are the run's output, to be shown.
func (t *TraceLog) Line(line string) bool {
	switch {
	case t.ended:
		return false
	case !t.started:
		t.started = line == TraceStart
		return t.started
	case strings.HasPrefix(line, TraceLinePrefix):
		t.data.WriteString(strings.TrimSpace(line[len(TraceLinePrefix):]))
		t.lines++
		return true
	case strings.HasPrefix(line, traceEndPrefix):
		t.ended = true
		var sz, sum string
		if _, err := fmt.Sscanf(line[len(traceEndPrefix):], "%s bytes, sha256 %s ===", &sz, &sum); err != nil {
			t.endErr = fmt.Errorf("unreadable end line %q", line)
			return true
		}
		n, err := strconv.ParseInt(sz, 10, 64)
		if err != nil || len(sum) != 2*sha256.Size {
			t.endErr = fmt.Errorf("unreadable end line %q", line)
		}
		t.size, t.sum = n, strings.TrimSuffix(sum, ",")
		return true
	}
	return false
}

// Trace is the trace's JSON once the log is read, checked against the end line's length and
// sha256. The error says how it is incomplete: no trace (ErrNoTrace), no end line (the log
// was cut), or bytes that differ from what pathtrace wrote.
func (t *TraceLog) Trace() ([]byte, error) {
	switch {
	case !t.started:
		return nil, ErrNoTrace
	case !t.ended:
		return nil, fmt.Errorf("the log ends inside the trace, after %d of its lines, without its end line", t.lines)
	case t.endErr != nil:
		return nil, t.endErr
	}
	raw, err := base64.StdEncoding.DecodeString(t.data.String())
	if err != nil {
		return nil, fmt.Errorf("%d lines of the trace do not decode (lines lost or damaged): %w", t.lines, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("the trace's %d lines do not unpack (lines lost or damaged): %w", t.lines, err)
	}
	// No more than the end line announced, and one byte to see that there is no more.
	js, err := io.ReadAll(io.LimitReader(zr, t.size+1))
	if err != nil {
		return nil, fmt.Errorf("the trace's %d lines do not unpack (lines lost or damaged): %w", t.lines, err)
	}
	h := sha256.Sum256(js)
	if int64(len(js)) != t.size || hex.EncodeToString(h[:]) != t.sum {
		return nil, fmt.Errorf("the trace read is %d bytes with sha256 %x, pathtrace wrote %d bytes with sha256 %s", len(js), h, t.size, t.sum)
	}
	return js, nil
}

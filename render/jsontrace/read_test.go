package jsontrace

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"weak"

	"github.com/google/go-cmp/cmp"

	"github.com/pathtrace/pathtrace/render/internal/tracetest"
	"github.com/pathtrace/pathtrace/trace"
)

// endless is a stream that never ends: head, then body over and over. It counts what was read.
type endless struct {
	head, body []byte
	at         int // in head, then in body
	read       int64
}

func (e *endless) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		src := e.body
		off := e.at - len(e.head)
		if e.at < len(e.head) {
			src, off = e.head, e.at
		}
		c := copy(b[n:], src[off:])
		n += c
		e.at += c
		if e.at == len(e.head)+len(e.body) {
			e.at = len(e.head)
		}
	}
	e.read += int64(n)
	return n, nil
}

// A stream that cannot begin a trace is rejected at its first byte, having read one chunk.
func TestReadStopsAtTheFirstBadByte(t *testing.T) {
	for _, c := range []struct {
		name string
		s    *endless
		want string
	}{
		{"zeros", &endless{body: []byte{0}}, "input is not a pathtrace trace: invalid JSON at offset 1"},
		{"binary after blanks", &endless{head: []byte("\n\n  \x7fELF"), body: []byte{0}}, "input is not a pathtrace trace: invalid JSON at offset 5"},
		{"an array", &endless{head: []byte("["), body: []byte("1,")}, "input is not a pathtrace trace: the document is a JSON array, not an object"},
		{"another document", &endless{head: []byte(`{"kind":"Pod",`), body: []byte(`"x":1,`)}, `input has no schema, this pathtrace reads pathtrace/v1 (its traces begin with the schema, this document begins with "kind")`},
		{"bad byte in a packet", &endless{head: []byte(`{"schema":"pathtrace/v1","packets":[{"id":1},{"id":2}x`), body: []byte{0}}, "input is not a pathtrace trace: invalid JSON at offset 54"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read(c.s)
			if err == nil || err.Error() != c.want {
				t.Fatalf("got %v, want %s", err, c.want)
			}
			if c.s.read > readChunk {
				t.Errorf("read %d bytes to reject it, want one chunk (%d) at most", c.s.read, readChunk)
			}
		})
	}
}

// A value that does not end is rejected once it passes MaxValueBytes: the Reader never holds
// more of it.
func TestReadCapsEachValue(t *testing.T) {
	const schema = `{"schema":"pathtrace/v1",`
	for _, c := range []struct {
		name string
		s    *endless
		want string
	}{
		{"meta", &endless{head: []byte(schema + `"meta":{"kernel":"`), body: []byte("a")}, "its meta is over 8 MiB at offset 32"},
		{"unknown field", &endless{head: []byte(schema + `"notes":[`), body: []byte(`"note",`)}, `field "notes" is over 8 MiB at offset 25`},
		{"packet", &endless{head: []byte(schema + `"packets":[{"id":1},{"hops":[`), body: []byte(`{"time_ns":1},`)}, "packet 2 of the file is over 8 MiB at offset 45"},
		{"blank", &endless{head: []byte(schema + `"packets":[`), body: []byte(" ")}, "packet 1 of the file is over 8 MiB at offset 36"},
		{"deep", &endless{head: []byte(schema + `"x":`), body: []byte("[")}, "JSON nested over 1000 deep at offset 1029"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read(c.s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %s", err, c.want)
			}
			if c.s.read > MaxValueBytes+2*readChunk {
				t.Errorf("read %d bytes, want MaxValueBytes (%d) and a chunk at most", c.s.read, MaxValueBytes)
			}
		})
	}
}

// packetStream is a trace document of n copies of a packet, made as it is read.
func packetStream(t *testing.T, n int) io.Reader {
	tr := tracetest.HealthyPing()
	tr.Packets = []trace.Packet{tr.Packets[0], tr.Packets[0]}
	var buf bytes.Buffer
	if err := Write(&buf, tr); err != nil {
		t.Fatal(err)
	}
	doc := buf.String()
	second := strings.Index(doc, ",\n    {\"id\"")
	end := strings.Index(doc, "\n  ]")
	if second < 0 || end < second {
		t.Fatalf("no second packet in\n%s", doc)
	}
	return io.MultiReader(strings.NewReader(doc[:second]), &repeated{line: []byte(doc[second:end]), n: n - 1}, strings.NewReader(doc[end:]))
}

type repeated struct {
	line []byte
	n    int
	at   int
}

func (r *repeated) Read(b []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	c := copy(b, r.line[r.at:])
	r.at += c
	if r.at == len(r.line) {
		r.at, r.n = 0, r.n-1
	}
	return c, nil
}

// Reading a stream of packets keeps one alive at a time, in a buffer that does not grow with
// the stream: what bounds `pathtrace show`'s memory on a trace of any size.
func TestReaderHoldsOnePacketAtATime(t *testing.T) {
	const n = 20000
	rd := NewReader(packetStream(t, n), "")
	if _, err := rd.Head(); err != nil {
		t.Fatal(err)
	}
	var seen []weak.Pointer[trace.Packet]
	maxBuf := 0
	for {
		p, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rd.Count()%100 == 0 {
			seen = append(seen, weak.Make(p))
		}
		maxBuf = max(maxBuf, cap(rd.lx.buf))
	}
	if rd.Count() != n {
		t.Fatalf("read %d packets, want %d", rd.Count(), n)
	}
	tail, err := rd.Tail()
	if err != nil || tail.Verdict.Outcome == "" {
		t.Fatalf("tail %+v, %v: want the verdict", tail, err)
	}
	runtime.GC()
	runtime.GC()
	alive := 0
	for _, w := range seen {
		if w.Value() != nil {
			alive++
		}
	}
	if alive > 0 {
		t.Errorf("%d of the %d packets sampled are still reachable after reading on: the Reader holds packets", alive, len(seen))
	}
	if maxBuf > 2*readChunk {
		t.Errorf("the read buffer grew to %d bytes for packets of a few hundred, want %d at most", maxBuf, 2*readChunk)
	}
}

// Scan gives the head before any packet, every packet in order, and the rest at the end; the
// same as Read, whatever the reads the input comes in.
func TestScanIsRead(t *testing.T) {
	for _, s := range tracetest.Scenes() {
		tr := s.Build()
		var buf bytes.Buffer
		if err := Write(&buf, tr); err != nil {
			t.Fatal(err)
		}
		whole, err := Read(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		var got []trace.Packet
		heads := 0
		tail, err := Scan(iotest.OneByteReader(bytes.NewReader(buf.Bytes())), "", func(h *trace.Trace) error {
			heads++
			if len(got) > 0 || h.Schema != trace.Schema || !h.Meta.StartedAt.Equal(tr.Meta.StartedAt) || h.Filter != tr.Filter {
				t.Errorf("%s: head %+v after %d packets", s.Name, h, len(got))
			}
			return nil
		}, func(p *trace.Packet) error {
			got = append(got, *p)
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if heads != 1 {
			t.Errorf("%s: head called %d times", s.Name, heads)
		}
		if d := cmp.Diff(whole.Packets, got, cmpAddrs); d != "" {
			t.Errorf("%s: packets (-Read +Scan):\n%s", s.Name, d)
		}
		tail.Packets = whole.Packets
		if d := cmp.Diff(whole, tail, cmpAddrs); d != "" {
			t.Errorf("%s: the rest (-Read +Scan):\n%s", s.Name, d)
		}
	}
}

func TestScanStopsOnTheCallersError(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, tracetest.HealthyPing()); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	n := 0
	_, err := Scan(&buf, "", nil, func(*trace.Packet) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("got %v after %d packets, want the callback's error after 1", err, n)
	}
}

// What a stream cannot serve: a field the packets were shown without, twice the same field.
func TestReadOrderErrors(t *testing.T) {
	const s = `{"schema":"pathtrace/v1",`
	for _, c := range []struct{ doc, want string }{
		{s + `"packets":[{"id":1}],"meta":{}}`, "input is not a pathtrace trace: its meta comes after its packets (pathtrace writes it before them)"},
		{s + `"packets":[],"filter":{}}`, "input is not a pathtrace trace: its filter comes after its packets (pathtrace writes it before them)"},
		{s + `"meta":{},"Meta":{}}`, "input is not a pathtrace trace: field meta appears twice (at offset 35)"},
		{`{"meta":{},"schema":"pathtrace/v1"}`, `input has no schema, this pathtrace reads pathtrace/v1 (its traces begin with the schema, this document begins with "meta")`},
		{s + `"meta":{}} {}`, "input is not a pathtrace trace: invalid JSON at offset 37"},
	} {
		if _, err := Read(strings.NewReader(c.doc)); err == nil || err.Error() != c.want {
			t.Errorf("%s:\n got %v\nwant %s", c.doc, err, c.want)
		}
	}
	// Packets null, or absent: the fields may come in any order.
	for _, doc := range []string{s + `"packets":null,"meta":{"kernel":"k"}}`, s + `"verdict":{},"meta":{"kernel":"k"}}`} {
		if tr, err := Read(strings.NewReader(doc)); err != nil || tr.Meta.Kernel != "k" {
			t.Errorf("%s: %v", doc, err)
		}
	}
}

func TestReadErrorOffsetsAreEncodingJSONs(t *testing.T) {
	// Offsets count the bytes read up to and including the bad one, as encoding/json's do.
	for _, doc := range []string{
		`{"schema":"pathtrace/v1","meta":{"kernel":"a` + "\x01" + `"}}`,
		`{"schema":"pathtrace/v1","meta":{"kernel":01}}`,
		`{"schema":"pathtrace/v1","meta":{"kernel":"\x"}}`,
		`{"schema":"pathtrace/v1","meta":{"events":-}}`,
		`{"schema":"pathtrace/v1","meta":{"events":1.e3}}`,
		`{"schema":"pathtrace/v1","meta":{"events":tru}}`,
		`{"schema":"pathtrace/v1","packets":[{"id":1},,]}`,
		`{"schema":"pathtrace/v1","packets":[{"id":1}}`,
		`{"schema":"pathtrace/v1" "meta":{}}`,
		`{"schema":"pathtrace/v1","flows":[{"a" 1}]}`,
	} {
		var v any
		want := fmt.Sprint(jsonSyntaxOffset(t, doc, &v))
		_, err := Read(strings.NewReader(doc))
		if err == nil || !strings.HasSuffix(err.Error(), "invalid JSON at offset "+want) {
			t.Errorf("%q: got %v, want offset %s", doc, err, want)
		}
	}
}

func jsonSyntaxOffset(t *testing.T, doc string, v any) int64 {
	t.Helper()
	var syn *json.SyntaxError
	if err := json.Unmarshal([]byte(doc), v); !errors.As(err, &syn) {
		t.Fatalf("%q: encoding/json says %v, want a syntax error", doc, err)
	}
	return syn.Offset
}

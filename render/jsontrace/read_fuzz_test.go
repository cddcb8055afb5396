package jsontrace

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pathtrace/pathtrace/render/internal/tracetest"
	"github.com/pathtrace/pathtrace/trace"
)

// FuzzScan feeds the streaming reader arbitrary documents and cuts of them (a file still being
// written, or cut short), read whole or a byte at a time. It never panics; what is not JSON is
// an error; and what it accepts is what encoding/json decodes of the same bytes, its packets
// given one by one after the head and before the rest, the same whatever the reads. Seeds are
// in testdata/fuzz/FuzzScan; written traces are added here.
func FuzzScan(f *testing.F) {
	for _, tr := range []*trace.Trace{full(), tracetest.HealthyPing(), tracetest.NoPackets()} {
		var buf bytes.Buffer
		if err := Write(&buf, tr); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes(), uint32(buf.Len()), false)
		f.Add(buf.Bytes(), uint32(buf.Len()/2), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint32, oneByte bool) {
		checkScan(t, data, oneByte)
		if int(cut) < len(data) {
			checkScan(t, data[:cut], oneByte)
		}
	})
}

func checkScan(t *testing.T, data []byte, oneByte bool) {
	in := func() io.Reader {
		if oneByte {
			return iotest.OneByteReader(bytes.NewReader(data))
		}
		return bytes.NewReader(data)
	}
	got, err := Read(in())
	if err != nil {
		if got != nil {
			t.Fatalf("Read returned a trace with its error %v", err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Fatalf("error spans lines: %q", err)
		}
	} else if !json.Valid(data) {
		t.Fatalf("Read accepted what is not JSON")
	}

	// Scan agrees with Read, error for error.
	var packets []trace.Packet
	var head *trace.Trace
	tail, serr := Scan(in(), "", func(h *trace.Trace) error {
		if head != nil || len(packets) > 0 {
			t.Fatal("head after packets, or twice")
		}
		c := *h
		head = &c
		return nil
	}, func(p *trace.Packet) error {
		if head == nil {
			t.Fatal("a packet before the head")
		}
		packets = append(packets, *p)
		return nil
	})
	if (err == nil) != (serr == nil) || err != nil && err.Error() != serr.Error() {
		t.Fatalf("Read says %v, Scan %v", err, serr)
	}
	if err != nil {
		return
	}
	if head.Schema != tail.Schema || !cmp.Equal(head.Meta, tail.Meta, cmpAddrs) || head.Filter != tail.Filter {
		t.Fatalf("the head %+v is not the document's %+v", head, tail)
	}
	if d := cmp.Diff(got.Packets, packets, cmpAddrs, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("Scan's packets are not Read's (-Read +Scan):\n%s", d)
	}

	var want trace.Trace
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("Read accepted what encoding/json rejects: %v", err)
	}
	if d := cmp.Diff(&want, got, cmpAddrs); d != "" {
		t.Fatalf("Read is not encoding/json (-encoding/json +Read):\n%s", d)
	}
}

package jsontrace

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fuzzEqual is what "unchanged" means for a trace that went through Write and Read again:
//   - a slice written with omitempty comes back nil when it was empty ([] and absent mean the
//     same thing in the document);
//   - a time is the same instant at the same UTC offset: Read gives time.Local to an offset
//     that happens to be the local one, and Write then prints "Z" or that offset, so the
//     *time.Location differs while what the text renderer prints does not;
//   - addresses compare with ==, zone included.
var fuzzEqual = cmp.Options{
	cmpAddrs,
	cmpopts.EquateEmpty(),
	cmp.Comparer(func(a, b time.Time) bool {
		_, ao := a.Zone()
		_, bo := b.Zone()
		return a.Equal(b) && ao == bo
	}),
}

// FuzzRead: Read never panics, its errors are one line, and a trace it accepts survives
// Write then Read unchanged. Seeds are in testdata/fuzz/FuzzRead (written traces, broken and
// foreign documents); full(), which sets every field, is added here so the corpus follows the
// model as it grows.
func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	if err := Write(&buf, full()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Read(bytes.NewReader(data))
		if err != nil {
			if got != nil {
				t.Fatalf("Read returned a trace with its error %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		if got == nil {
			t.Fatal("Read returned neither a trace nor an error")
		}
		var out bytes.Buffer
		if err := Write(&out, got); err != nil {
			t.Fatalf("Read accepted a trace that Write rejects: %v", err)
		}
		again, err := Read(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("Read rejects what Write wrote: %v\n%s", err, out.Bytes())
		}
		if d := cmp.Diff(got, again, fuzzEqual); d != "" {
			t.Fatalf("Write then Read changed the trace (-read +again):\n%s", d)
		}
	})
}

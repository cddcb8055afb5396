package run

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/run/emit"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/trace"
)

// keptPackets are the packets a run keeps for its trace file: the first max to complete. They
// are not held in memory: each is encoded as it completes, as the trace file's packets will
// read, into an unnamed file next to the trace file, and at the end the document is written
// around them. So a run's memory does not grow with its packets, and saving the trace at the
// end is a copy of what is already encoded. Without a trace file they are only counted.
type keptPackets struct {
	*emit.Kept
	spill *os.File // nil without a trace file
	bw    *bufio.Writer
}

// newKeptPackets keeps up to max packets (0: DefaultMaxPackets) for a trace file at jsonPath
// ("" for none), or for the postmortem artifacts written there.
func newKeptPackets(jsonPath string, max int) (*keptPackets, error) {
	if max <= 0 {
		max = DefaultMaxPackets
	}
	if jsonPath == "" {
		return &keptPackets{Kept: emit.NewKept(nil, max)}, nil
	}
	f, err := openSpill(filepath.Dir(jsonPath))
	if err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", jsonPath, err)
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	return &keptPackets{Kept: emit.NewKept(bw, max), spill: f, bw: bw}, nil
}

// openSpill makes a file in dir that has no name: nothing is left of it however the run ends,
// SIGKILL included.
func openSpill(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, "(packets of the trace)")), nil
	}
	// A filesystem without O_TMPFILE: a file named for an instant.
	f, err := os.CreateTemp(dir, ".pathtrace-packets-*")
	if err != nil {
		if u := errors.Unwrap(err); u != nil {
			err = u // the path is said by the caller
		}
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// save writes the trace file: t with the kept packets, whole or not at all.
func (k *keptPackets) save(path string, t *trace.Trace) error {
	if k.spill == nil {
		return SaveTrace(path, t)
	}
	if err := k.rewind(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	out, err := openOutput(path)
	if err != nil {
		return err
	}
	defer out.abort()
	if err := jsontrace.WriteStreamed(out.f, t, k.spill, k.Written()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return out.commit()
}

// rewind flushes what was written to the spill and seeks back to its first packet; it fails
// with the first write error.
func (k *keptPackets) rewind() error {
	if err := k.Err(); err != nil {
		return err
	}
	if err := k.bw.Flush(); err != nil {
		return err
	}
	_, err := k.spill.Seek(0, io.SeekStart)
	return err
}

// close lets the unnamed file go.
func (k *keptPackets) close() {
	if k.spill != nil {
		k.spill.Close()
	}
}

// each reads the kept packets back one at a time, for the postmortem artifacts written at
// the end: a run does not hold its packets in memory, even then.
func (k *keptPackets) each(fn func(*trace.Packet)) error {
	if k.spill == nil {
		return nil
	}
	if err := k.rewind(); err != nil {
		return err
	}
	// The spill is the elements of the document's packets array, separated by commas.
	dec := json.NewDecoder(io.MultiReader(strings.NewReader("["), bufio.NewReaderSize(k.spill, 256<<10), strings.NewReader("]")))
	if _, err := dec.Token(); err != nil {
		return err
	}
	for dec.More() {
		p := new(trace.Packet)
		if err := dec.Decode(p); err != nil {
			return err
		}
		fn(p)
	}
	return nil
}

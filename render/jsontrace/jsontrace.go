// Package jsontrace writes and reads the saved trace document (--json, `pathtrace show`).
package jsontrace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// The document is indented JSON, except that each packet is one line for its headers and
// fate and one line per hop: a long trace is half the bytes of a fully indented one and still
// reads, and greps, a hop per line.
//
//	{
//	  "schema": "pathtrace/v1",
//	  "meta": {
//	    ...
//	  },
//	  "filter": {...},
//	  "packets": [
//	    {"id":1,"flow":"request","tuple":{...},"fate":{...},"hops":[
//	      {"time_ns":0,"event":"queued",...},
//	      {"time_ns":2100,"event":"xmit",...}
//	    ]},
//	    ...
//	  ],
//	  "flows": [...],
//	  "verdict": {...}
//	}

// Write encodes t. The schema is always trace.Schema, whatever t.Schema says, because this
// code is what decides the document's shape; t itself is left untouched. Packets are encoded
// one at a time, straight to w: the document is never whole in memory.
func Write(w io.Writer, t *trace.Trace) error {
	if t == nil {
		return errors.New("write trace: no trace")
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	pw := NewPacketWriter(bw)
	err := writeDocument(bw, t, len(t.Packets), func(bw *bufio.Writer) error {
		for i := range t.Packets {
			if err := pw.Write(&t.Packets[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	return nil
}

// WriteStreamed writes t's document with the packets a PacketWriter wrote, read from packets,
// in place of t.Packets: a live run writes its packets out as they complete and the document
// around them at the end. n is how many packets there are.
func WriteStreamed(w io.Writer, t *trace.Trace, packets io.Reader, n int) error {
	if t == nil {
		return errors.New("write trace: no trace")
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	err := writeDocument(bw, t, n, func(bw *bufio.Writer) error {
		// Flushed first, a file's packets are copied from file to file by the kernel.
		if err := bw.Flush(); err != nil {
			return err
		}
		_, err := bw.ReadFrom(packets)
		return err
	})
	if err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	return nil
}

// packetsSlot is the packets field of the indented document with no packets; a document with
// packets has them in its place. Only top-level fields are indented by exactly two spaces, and
// a JSON string holds no raw newline, so it appears once.
var packetsSlot = []byte("\n  \"packets\": null")

// writeDocument writes t, without t.Packets, with n packets that packets writes in between.
func writeDocument(bw *bufio.Writer, t *trace.Trace, n int, packets func(*bufio.Writer) error) error {
	doc := *t
	doc.Schema = trace.Schema
	doc.Packets = nil
	var head bytes.Buffer
	enc := json.NewEncoder(&head)
	enc.SetIndent("", "  ")
	// Filters and verdicts contain "<->" and "->"; keep them readable in the file.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	b := head.Bytes()
	i := bytes.Index(b, packetsSlot)
	if i < 0 {
		return errors.New("no packets field in the encoded trace")
	}
	if n == 0 {
		bw.Write(b)
		return bw.Flush()
	}
	bw.Write(b[:i])
	bw.WriteString("\n  \"packets\": [\n")
	if err := packets(bw); err != nil {
		return err
	}
	bw.WriteString("\n  ]")
	bw.Write(b[i+len(packetsSlot):])
	return bw.Flush()
}

// PacketWriter encodes packets, one after another, as the elements of a document's packets
// array (see WriteStreamed).
type PacketWriter struct {
	w    io.Writer
	n    int
	buf  []byte
	hops trace.HopJSON // what a packet's hops share, written once
}

// NewPacketWriter writes to w; buffer it.
func NewPacketWriter(w io.Writer) *PacketWriter {
	return &PacketWriter{w: w}
}

// Write encodes p as the next element: its head and fate on one line, then a line per hop.
func (pw *PacketWriter) Write(p *trace.Packet) error {
	b := pw.buf[:0]
	if pw.n > 0 {
		b = append(b, ",\n"...)
	}
	b = append(b, "    "...)
	b = pw.hops.AppendHeadJSON(b, p)
	switch {
	case p.Hops == nil:
		b = append(b, `,"hops":null}`...)
	case len(p.Hops) == 0:
		b = append(b, `,"hops":[]}`...)
	default:
		b = append(b, `,"hops":[`...)
		for i := range p.Hops {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, "\n      "...)
			b = pw.hops.AppendHopJSON(b, &p.Hops[i])
		}
		b = append(b, "\n    ]}"...)
	}
	pw.buf = b
	if _, err := pw.w.Write(b); err != nil {
		return err
	}
	pw.n++
	return nil
}

// Count is how many packets were written.
func (pw *PacketWriter) Count() int { return pw.n }

// ReadFile reads a saved trace. Its errors are one line and name the file.
func ReadFile(path string) (*trace.Trace, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &readError{name: path, err: err}
	}
	return decode(path, data)
}

// Read reads a saved trace from r. Errors name r's file when it is one (os.Stdin is
// "/dev/stdin"), "input" otherwise.
func Read(r io.Reader) (*trace.Trace, error) {
	name := "input"
	if f, ok := r.(interface{ Name() string }); ok && f.Name() != "" {
		name = f.Name()
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, &readError{name: name, err: err}
	}
	return decode(name, data)
}

// readError prints as "read trace foo.json: permission denied" while still unwrapping to the
// *fs.PathError, so errors.Is(err, fs.ErrNotExist) and errors.As work for callers.
type readError struct {
	name string
	err  error
}

func (e *readError) Error() string {
	msg := e.err.Error()
	var pe *fs.PathError
	if errors.As(e.err, &pe) {
		msg = pe.Err.Error()
	}
	return "read trace " + e.name + ": " + msg
}

func (e *readError) Unwrap() error { return e.err }

func decode(name string, data []byte) (*trace.Trace, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s is empty, not a pathtrace trace", name)
	}
	// Check the schema before decoding the rest, so a document from another tool or another
	// pathtrace version is reported as such and not as a confusing field type error.
	var head struct {
		Schema *string `json:"schema"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, notTrace(name, data, err)
	}
	switch {
	case head.Schema == nil || *head.Schema == "":
		return nil, fmt.Errorf("%s has no schema, this pathtrace reads %s", name, trace.Schema)
	case *head.Schema != trace.Schema:
		return nil, fmt.Errorf("%s has schema %q, this pathtrace reads %s", name, *head.Schema, trace.Schema)
	}
	var t trace.Trace
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, notTrace(name, data, err)
	}
	return &t, nil
}

func notTrace(name string, data []byte, err error) error {
	prefix := name + " is not a pathtrace trace: "
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		if syn.Offset >= int64(len(data)) {
			return fmt.Errorf("%sinvalid JSON at offset %d (the file ends early: truncated?)", prefix, syn.Offset)
		}
		return fmt.Errorf("%sinvalid JSON at offset %d", prefix, syn.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		return fmt.Errorf("%sthe document is a JSON %s, not an object", prefix, typ.Value)
	case errors.As(err, &typ) && typ.Field == "schema":
		return fmt.Errorf("%s has a schema that is a JSON %s, this pathtrace reads %s", name, typ.Value, trace.Schema)
	case errors.As(err, &typ):
		return fmt.Errorf("%sfield %s is a JSON %s, want %s", prefix, typ.Field, typ.Value, jsonKind(typ.Type.Kind().String()))
	}
	return fmt.Errorf("%s%s", prefix, strings.ReplaceAll(err.Error(), "\n", " "))
}

func jsonKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"), strings.HasPrefix(goKind, "float"):
		return "number"
	case goKind == "struct", goKind == "map":
		return "object"
	case goKind == "slice", goKind == "array":
		return "array"
	case goKind == "bool":
		return "boolean"
	}
	return goKind
}

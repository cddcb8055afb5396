// Package jsontrace writes and reads the saved trace document (--json, `pathtrace show`).
package jsontrace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

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

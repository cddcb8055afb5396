package jsontrace

import (
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

// Reading streams the document: a Reader holds the fields around the packets and one packet
// at a time, never the whole file, so `show` and `merge` run in bounded memory on a trace of
// any size, and stop at the first byte that cannot be part of a pathtrace trace (a binary
// file, /dev/zero) instead of reading it all first. Streaming needs the fields in the order
// Write puts them: the schema first, and meta and filter before a packets array (the header is
// printed before the packets); each field once. A document in another order, which
// encoding/json would take, is rejected with a message that says so.

// MaxValueBytes is the most a Reader reads of one top-level field of the document (meta,
// filter, flows, verdict, a field it does not know) or of one packet. A packet has at most a
// few hundred hops (assemble.Options.MaxHops, its copies as many again, each node's in a merged
// trace): well under a megabyte. A value past it is not a trace's, and a Reader's memory stays
// a small multiple of it.
const MaxValueBytes = 8 << 20

// maxDepth is how deeply a Reader lets JSON nest (a trace nests five deep; encoding/json allows
// 10000), so that validating a hostile value cannot recurse without end.
const maxDepth = 1000

// Reader reads a saved trace document from the front: Head, then Next for each packet, then
// Tail. Its errors are one line and name the input.
type Reader struct {
	name string
	lx   lexer
	doc  trace.Trace // the document without its packets
	seen [numFields]bool
	st   readState
	// afterValue: inside the top-level object, a field was read (a comma or the end is next);
	// firstPacket: inside the packets array, no element was read yet.
	afterValue, firstPacket bool
	// array: the packets are an array (empty or not), not null or absent; arrayDone: it ended.
	array, arrayDone bool
	n                int // packets read
	err              error
	file             *os.File // opened by OpenFile
}

type readState int

const (
	stBegin   readState = iota // nothing read yet
	stFields                   // inside the top-level object, between fields
	stPackets                  // inside the packets array
	stDone                     // the document has ended
)

// The document's fields, by their JSON names; encoding/json matches names regardless of case,
// and so does the Reader.
const (
	fSchema = iota
	fMeta
	fFilter
	fPackets
	fFlows
	fVerdict
	numFields
)

var fieldNames = [numFields]string{"schema", "meta", "filter", "packets", "flows", "verdict"}

// NewReader reads a document from r. Errors name it name, or r's file when name is "" and r is
// one (os.Stdin is "/dev/stdin"), "input" otherwise. Buffering r gains nothing.
func NewReader(r io.Reader, name string) *Reader {
	if name == "" {
		name = "input"
		if f, ok := r.(interface{ Name() string }); ok && f.Name() != "" {
			name = f.Name()
		}
	}
	return &Reader{name: name, lx: lexer{r: r, mark: -1, buf: make([]byte, 0, readChunk)}}
}

// OpenFile opens the file at path for a Reader, whose errors name path. Close it.
func OpenFile(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &readError{name: path, err: err}
	}
	r := NewReader(f, path)
	r.file = f
	return r, nil
}

// Close closes the file OpenFile opened; it does nothing for a Reader made by NewReader.
func (r *Reader) Close() error {
	if r.file == nil {
		return nil
	}
	return r.file.Close()
}

// Head reads the document up to its first packet and returns what it has read of it: the
// schema (checked), meta and filter, all a renderer needs before the packets. The trace is
// the Reader's own; Tail completes it.
func (r *Reader) Head() (*trace.Trace, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.st < stPackets {
		if err := r.fields(); err != nil {
			return nil, r.fail(err)
		}
	}
	return &r.doc, nil
}

// Next reads the next packet. After the last one it reads the rest of the document and
// returns io.EOF. Each packet is decoded afresh: the Reader keeps no reference to it.
func (r *Reader) Next() (*trace.Packet, error) {
	if r.err != nil {
		return nil, r.err
	}
	if _, err := r.Head(); err != nil {
		return nil, err
	}
	if r.st == stDone {
		return nil, io.EOF
	}
	p, err := r.packet()
	if err != nil {
		return nil, r.fail(err)
	}
	if p == nil {
		if err := r.fields(); err != nil {
			return nil, r.fail(err)
		}
		return nil, io.EOF
	}
	return p, nil
}

// Count is how many packets Next has returned.
func (r *Reader) Count() int { return r.n }

// Tail reads the rest of the document, packets not read yet included (checked, not kept), and
// returns it without its packets: the trace Head returned, with the flows and the verdict.
func (r *Reader) Tail() (*trace.Trace, error) {
	for {
		_, err := r.Next()
		if err == io.EOF {
			return &r.doc, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// Scan reads a document from r (named as NewReader names it), calling head once with its
// schema, meta and filter before the first packet and packet for each packet in order; an
// error from either stops it and is returned. It returns the document without its packets,
// with the flows and the verdict that follow them.
func Scan(r io.Reader, name string, head func(*trace.Trace) error, packet func(*trace.Packet) error) (*trace.Trace, error) {
	return NewReader(r, name).scan(head, packet)
}

func (rd *Reader) scan(head func(*trace.Trace) error, packet func(*trace.Packet) error) (*trace.Trace, error) {
	h, err := rd.Head()
	if err != nil {
		return nil, err
	}
	if head != nil {
		if err := head(h); err != nil {
			return nil, err
		}
	}
	for {
		p, err := rd.Next()
		if err == io.EOF {
			return &rd.doc, nil
		}
		if err != nil {
			return nil, err
		}
		if packet != nil {
			if err := packet(p); err != nil {
				return nil, err
			}
		}
	}
}

// ScanFile is Scan on the file at path; its errors name path.
func ScanFile(path string, head func(*trace.Trace) error, packet func(*trace.Packet) error) (*trace.Trace, error) {
	r, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.scan(head, packet)
}

// ReadFile reads a saved trace, all its packets in memory: Scan and ScanFile do not hold them.
// Its errors are one line and name the file.
func ReadFile(path string) (*trace.Trace, error) {
	r, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.read()
}

// Read reads a saved trace from r, all its packets in memory. Errors name r's file when it is
// one (os.Stdin is "/dev/stdin"), "input" otherwise.
func Read(r io.Reader) (*trace.Trace, error) { return NewReader(r, "").read() }

func (rd *Reader) read() (*trace.Trace, error) {
	var packets []trace.Packet
	for {
		p, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		packets = append(packets, *p)
	}
	t := rd.doc
	t.Packets = packets
	if rd.array && packets == nil {
		t.Packets = []trace.Packet{} // "packets": [] is not "packets": null
	}
	return &t, nil
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

// fields reads the top-level object from where the Reader is to the start of the packets
// array, or to the end of the document and past it.
func (r *Reader) fields() error {
	lx := &r.lx
	if r.st == stBegin {
		lx.budget()
		lx.what = "the blank before the document"
		c, err := lx.space()
		if err != nil {
			return err
		}
		if c != '{' {
			return r.notObject(c)
		}
		lx.pos++
		r.st = stFields
	}
	for {
		lx.budget()
		lx.what = "a field"
		c, err := lx.space()
		if err != nil {
			return err
		}
		if r.afterValue {
			switch c {
			case ',':
				lx.pos++
				if c, err = lx.space(); err != nil {
					return err
				}
				if c != '"' {
					return lx.bad()
				}
			case '}':
				lx.pos++
				return r.end()
			default:
				return lx.bad()
			}
		} else if c == '}' {
			// {}: the first field is not the schema.
			return r.errorf("%s has no schema, this pathtrace reads %s", r.name, trace.Schema)
		} else if c != '"' {
			return lx.bad()
		}
		at := lx.base + int64(lx.pos)
		key, err := lx.key()
		if err != nil {
			return err
		}
		if c, err = lx.space(); err != nil {
			return err
		}
		if c != ':' {
			return lx.bad()
		}
		lx.pos++
		f := numFields
		for i, n := range fieldNames {
			if strings.EqualFold(key, n) {
				f = i
				break
			}
		}
		if !r.seen[fSchema] && f != fSchema {
			// The schema comes first: until it has been read the document could be another
			// tool's, whose fields would only confuse.
			return r.errorf("%s has no schema, this pathtrace reads %s (its traces begin with the schema, this document begins with %s)",
				r.name, trace.Schema, quoteKey(key))
		}
		if f < numFields {
			if r.seen[f] {
				return r.errorf("%s is not a pathtrace trace: field %s appears twice (at offset %d)", r.name, fieldNames[f], at)
			}
			r.seen[f] = true
		}
		r.afterValue = true
		switch f {
		case fSchema:
			if err := r.schema(); err != nil {
				return err
			}
		case fPackets:
			c, err := lx.space()
			if err != nil {
				return err
			}
			if c == '[' {
				lx.pos++
				r.array, r.firstPacket, r.st = true, true, stPackets
				return nil
			}
			// Not an array: null (no packets), or an error.
			if err := r.decodeValue("packets", &r.doc.Packets); err != nil {
				return err
			}
		case fMeta, fFilter:
			if r.arrayDone {
				return r.errorf("%s is not a pathtrace trace: its %s comes after its packets (pathtrace writes it before them)", r.name, fieldNames[f])
			}
			var v any = &r.doc.Meta
			if f == fFilter {
				v = &r.doc.Filter
			}
			if err := r.decodeValue(fieldNames[f], v); err != nil {
				return err
			}
		case fFlows:
			if err := r.decodeValue("flows", &r.doc.Flows); err != nil {
				return err
			}
		case fVerdict:
			if err := r.decodeValue("verdict", &r.doc.Verdict); err != nil {
				return err
			}
		default:
			lx.what = "field " + quoteKey(key)
			if err := lx.value(1); err != nil {
				return err
			}
		}
	}
}

// end checks that nothing but blanks follows the document.
func (r *Reader) end() error {
	lx := &r.lx
	lx.budget()
	lx.what = "the blank after the document"
	_, err := lx.space()
	if err == nil {
		return lx.bad()
	}
	if !errors.Is(err, io.EOF) {
		return err
	}
	if !r.seen[fSchema] {
		return r.errorf("%s has no schema, this pathtrace reads %s", r.name, trace.Schema)
	}
	r.st = stDone
	return nil
}

// notObject says what the document is when it does not begin with an object, from its first
// byte: the rest is not read.
func (r *Reader) notObject(c byte) error {
	kind := ""
	switch {
	case c == '[':
		kind = "array"
	case c == '"':
		kind = "string"
	case c == '-' || '0' <= c && c <= '9':
		kind = "number"
	case c == 't' || c == 'f':
		kind = "boolean"
	case c == 'n':
		kind = "null"
	default:
		return r.lx.bad()
	}
	return r.errorf("%s is not a pathtrace trace: the document is a JSON %s, not an object", r.name, kind)
}

// schema reads the schema's value and checks it is the one this code reads.
func (r *Reader) schema() error {
	lx := &r.lx
	lx.what = "the schema"
	c, err := lx.space()
	if err != nil {
		return err
	}
	raw, err := lx.capture(1)
	if err != nil {
		return err
	}
	if c != '"' {
		if c == 'n' {
			return r.errorf("%s has no schema, this pathtrace reads %s", r.name, trace.Schema)
		}
		return r.errorf("%s has a schema that is a JSON %s, this pathtrace reads %s", r.name, kindOf(c), trace.Schema)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return r.decodeError("schema", err)
	}
	switch {
	case s == "":
		return r.errorf("%s has no schema, this pathtrace reads %s", r.name, trace.Schema)
	case s != trace.Schema:
		return r.errorf("%s has schema %q, this pathtrace reads %s", r.name, s, trace.Schema)
	}
	r.doc.Schema = s
	return nil
}

// decodeValue reads the value of top-level field name into v.
func (r *Reader) decodeValue(name string, v any) error {
	r.lx.what = "its " + name
	raw, err := r.lx.capture(1)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return r.decodeError(name, err)
	}
	return nil
}

// packet reads the next element of the packets array; nil at its end.
func (r *Reader) packet() (*trace.Packet, error) {
	lx := &r.lx
	lx.budget()
	lx.what = fmt.Sprintf("packet %d of the file", r.n+1)
	c, err := lx.space()
	if err != nil {
		return nil, err
	}
	if c == ']' {
		lx.pos++
		r.st, r.arrayDone = stFields, true
		return nil, nil
	}
	if !r.firstPacket {
		if c != ',' {
			return nil, lx.bad()
		}
		lx.pos++
	}
	raw, err := lx.capture(2)
	if err != nil {
		return nil, err
	}
	p := new(trace.Packet)
	if err := json.Unmarshal(raw, p); err != nil {
		return nil, r.decodeError("packets", err)
	}
	r.firstPacket = false
	r.n++
	return p, nil
}

// fail makes err one line naming the input, and the Reader's error from then on.
func (r *Reader) fail(err error) error {
	prefix := r.name + " is not a pathtrace trace: "
	var syn *syntaxError
	switch {
	case errors.As(err, &syn) && syn.deep:
		err = fmt.Errorf("%sJSON nested over %d deep at offset %d", prefix, maxDepth, syn.off)
	case errors.As(err, &syn):
		err = fmt.Errorf("%sinvalid JSON at offset %d", prefix, syn.off)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		if r.st == stBegin {
			err = fmt.Errorf("%s is empty, not a pathtrace trace", r.name)
		} else {
			err = fmt.Errorf("%sinvalid JSON at offset %d (the file ends early: truncated?)", prefix, r.lx.end())
		}
	case errors.Is(err, errTooBig):
		err = fmt.Errorf("%s%s is over %d MiB at offset %d, more than a pathtrace trace has in one field or packet",
			prefix, r.lx.what, MaxValueBytes>>20, r.lx.start)
	case errors.As(err, new(*docError)):
	default: // the reader's
		err = &readError{name: r.name, err: err}
	}
	r.err = err
	return err
}

// docError is what is wrong with the document, one line naming it: final as it is.
type docError struct{ msg string }

func (e *docError) Error() string { return e.msg }

func (*Reader) errorf(format string, args ...any) error {
	return &docError{fmt.Sprintf(format, args...)}
}

// decodeError makes the error of decoding top-level field name one line.
func (r *Reader) decodeError(name string, err error) error {
	prefix := r.name + " is not a pathtrace trace: "
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		field := name
		if typ.Field != "" {
			field += "." + typ.Field
		}
		return r.errorf("%sfield %s is a JSON %s, want %s", prefix, field, typ.Value, jsonKind(typ.Type.Kind().String()))
	}
	return &docError{prefix + strings.ReplaceAll(err.Error(), "\n", " ")}
}

func kindOf(c byte) string {
	switch {
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	}
	return "number"
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

// quoteKey quotes a field's name for a message, cut short when long.
func quoteKey(k string) string {
	if len(k) > 40 {
		k = k[:40] + "..."
	}
	return fmt.Sprintf("%q", k)
}

// The lexer validates JSON as it reads it, byte by byte, and keeps only what it must: the
// value being captured for decoding, and a buffer's worth of input.

// readChunk is how much the lexer asks its reader for at a time.
const readChunk = 64 << 10

// errTooBig: the value has reached its budget (lexer.limit).
var errTooBig = errors.New("value too big")

// syntaxError: the byte before offset off (as encoding/json counts) cannot be where it is.
type syntaxError struct {
	off  int64
	deep bool
}

func (e *syntaxError) Error() string { return fmt.Sprintf("invalid JSON at offset %d", e.off) }

type lexer struct {
	r    io.Reader
	buf  []byte
	pos  int   // the next byte to read, in buf
	mark int   // the start of the value being captured, in buf; -1 when none is
	base int64 // the input offset of buf[0]
	// limit is the input offset the current value (with the blank and the comma before it) may
	// not reach; start is where it began, what names it.
	limit, start int64
	what         string
	rerr         error // the reader's error, io.EOF at the end
}

// budget starts a new value here: it may take up to MaxValueBytes. It returns its offset.
func (l *lexer) budget() int64 {
	l.start = l.base + int64(l.pos)
	l.limit = l.start + MaxValueBytes
	return l.start
}

// end is the offset past the last byte read.
func (l *lexer) end() int64 { return l.base + int64(len(l.buf)) }

func (l *lexer) bad() error { return &syntaxError{off: l.base + int64(l.pos) + 1} }

// fill reads more input after buf's end, dropping what is before the captured value (or all
// that was read). It returns an error rather than adding nothing.
func (l *lexer) fill() error {
	if l.rerr != nil {
		return l.rerr
	}
	keep := l.pos
	if l.mark >= 0 {
		keep = l.mark
	}
	if keep > 0 {
		n := copy(l.buf, l.buf[keep:])
		l.buf = l.buf[:n]
		l.base += int64(keep)
		l.pos -= keep
		if l.mark >= 0 {
			l.mark -= keep
		}
	}
	room := l.limit - l.end()
	if room <= 0 {
		return errTooBig
	}
	if cap(l.buf)-len(l.buf) < readChunk/4 {
		// Only a captured value grows the buffer, to at most MaxValueBytes and a chunk.
		nb := make([]byte, len(l.buf), min(2*cap(l.buf)+readChunk, MaxValueBytes+readChunk))
		copy(nb, l.buf)
		l.buf = nb
	}
	space := l.buf[len(l.buf):cap(l.buf)]
	if int64(len(space)) > room {
		space = space[:room]
	}
	for range 100 {
		n, err := l.r.Read(space)
		l.buf = l.buf[:len(l.buf)+n]
		if err != nil {
			l.rerr = err
		}
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	l.rerr = io.ErrNoProgress
	return l.rerr
}

// peek returns the next byte without taking it.
func (l *lexer) peek() (byte, error) {
	if l.pos == len(l.buf) {
		if err := l.fill(); err != nil {
			return 0, err
		}
	}
	return l.buf[l.pos], nil
}

// peekEnd is peek where the input may end: ok is false there.
func (l *lexer) peekEnd() (c byte, ok bool, err error) {
	c, err = l.peek()
	if errors.Is(err, io.EOF) {
		return 0, false, nil
	}
	return c, err == nil, err
}

// space skips blanks and returns the next byte, not taken.
func (l *lexer) space() (byte, error) {
	for {
		for l.pos < len(l.buf) {
			switch c := l.buf[l.pos]; c {
			case ' ', '\t', '\n', '\r':
				l.pos++
			default:
				return c, nil
			}
		}
		if err := l.fill(); err != nil {
			return 0, err
		}
	}
}

// capture reads the value that starts at the next non-blank byte and returns its bytes,
// which are valid until the lexer reads on.
func (l *lexer) capture(depth int) ([]byte, error) {
	if _, err := l.space(); err != nil {
		return nil, err
	}
	l.mark = l.pos
	l.start = l.base + int64(l.pos)
	err := l.value(depth)
	raw := l.buf[l.mark:l.pos]
	l.mark = -1
	return raw, err
}

// key reads an object key whose opening quote is next.
func (l *lexer) key() (string, error) {
	l.mark = l.pos
	l.start = l.base + int64(l.pos)
	l.pos++
	err := l.str()
	raw := l.buf[l.mark:l.pos]
	l.mark = -1
	if err != nil {
		return "", err
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &syntaxError{off: l.base + int64(l.pos)}
	}
	return s, nil
}

// value reads one JSON value, inside depth containers.
func (l *lexer) value(depth int) error {
	c, err := l.space()
	if err != nil {
		return err
	}
	switch {
	case c == '{':
		return l.object(depth + 1)
	case c == '[':
		return l.array(depth + 1)
	case c == '"':
		l.pos++
		return l.str()
	case c == '-' || '0' <= c && c <= '9':
		return l.number()
	case c == 't':
		return l.literal("true")
	case c == 'f':
		return l.literal("false")
	case c == 'n':
		return l.literal("null")
	}
	return l.bad()
}

// object reads an object whose '{' is next.
func (l *lexer) object(depth int) error {
	if depth > maxDepth {
		return &syntaxError{off: l.base + int64(l.pos) + 1, deep: true}
	}
	l.pos++
	c, err := l.space()
	if err != nil {
		return err
	}
	if c == '}' {
		l.pos++
		return nil
	}
	for {
		if c != '"' {
			return l.bad()
		}
		l.pos++
		if err := l.str(); err != nil {
			return err
		}
		if c, err = l.space(); err != nil {
			return err
		}
		if c != ':' {
			return l.bad()
		}
		l.pos++
		if err := l.value(depth); err != nil {
			return err
		}
		if c, err = l.space(); err != nil {
			return err
		}
		switch c {
		case ',':
			l.pos++
			if c, err = l.space(); err != nil {
				return err
			}
		case '}':
			l.pos++
			return nil
		default:
			return l.bad()
		}
	}
}

// array reads an array whose '[' is next.
func (l *lexer) array(depth int) error {
	if depth > maxDepth {
		return &syntaxError{off: l.base + int64(l.pos) + 1, deep: true}
	}
	l.pos++
	c, err := l.space()
	if err != nil {
		return err
	}
	if c == ']' {
		l.pos++
		return nil
	}
	for {
		if err := l.value(depth); err != nil {
			return err
		}
		if c, err = l.space(); err != nil {
			return err
		}
		switch c {
		case ',':
			l.pos++
		case ']':
			l.pos++
			return nil
		default:
			return l.bad()
		}
	}
}

// str reads the rest of a string whose opening quote was taken.
func (l *lexer) str() error {
	for {
		for l.pos < len(l.buf) {
			switch c := l.buf[l.pos]; {
			case c == '"':
				l.pos++
				return nil
			case c == '\\':
				l.pos++
				e, err := l.peek()
				if err != nil {
					return err
				}
				switch e {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					l.pos++
				case 'u':
					l.pos++
					for range 4 {
						h, err := l.peek()
						if err != nil {
							return err
						}
						if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
							return l.bad()
						}
						l.pos++
					}
				default:
					return l.bad()
				}
			case c < 0x20:
				return l.bad()
			default:
				l.pos++
			}
		}
		if err := l.fill(); err != nil {
			return err
		}
	}
}

// number reads a number whose first byte is next.
func (l *lexer) number() error {
	c, err := l.peek()
	if err != nil {
		return err
	}
	if c == '-' {
		l.pos++
		if c, err = l.peek(); err != nil {
			return err
		}
	}
	switch {
	case c == '0':
		l.pos++
	case '1' <= c && c <= '9':
		if err := l.digits(); err != nil {
			return err
		}
	default:
		return l.bad()
	}
	c, ok, err := l.peekEnd()
	if !ok {
		return err
	}
	if c == '.' {
		l.pos++
		if err := l.someDigits(); err != nil {
			return err
		}
		if c, ok, err = l.peekEnd(); !ok {
			return err
		}
	}
	if c == 'e' || c == 'E' {
		l.pos++
		c, err := l.peek()
		if err != nil {
			return err
		}
		if c == '+' || c == '-' {
			l.pos++
		}
		return l.someDigits()
	}
	return nil
}

// someDigits reads one digit or more.
func (l *lexer) someDigits() error {
	c, err := l.peek()
	if err != nil {
		return err
	}
	if c < '0' || c > '9' {
		return l.bad()
	}
	return l.digits()
}

// digits reads digits up to the first other byte or the end of the input.
func (l *lexer) digits() error {
	for {
		c, ok, err := l.peekEnd()
		if !ok || c < '0' || c > '9' {
			return err
		}
		l.pos++
	}
}

func (l *lexer) literal(s string) error {
	for i := range len(s) {
		c, err := l.peek()
		if err != nil {
			return err
		}
		if c != s[i] {
			return l.bad()
		}
		l.pos++
	}
	return nil
}

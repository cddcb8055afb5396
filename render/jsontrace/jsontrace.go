// Package jsontrace writes and reads the saved trace document (--json, `pathtrace show`).
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

// Write encodes t as indented JSON. The schema is always trace.Schema, whatever t.Schema says,
// because this code is what decides the document's shape; t itself is left untouched.
func Write(w io.Writer, t *trace.Trace) error {
	if t == nil {
		return errors.New("write trace: no trace")
	}
	doc := *t
	doc.Schema = trace.Schema
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Filters and verdicts contain "<->" and "->"; keep them readable in the file.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	return nil
}

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

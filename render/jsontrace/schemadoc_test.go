package jsontrace

import (
	"bufio"
	"bytes"
	"encoding"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

// schemaDoc is the reference of the document this package writes. It is held to the model
// here, so that a field added to trace.Trace (or renamed, or removed) fails a test until the
// reference says so too.
const schemaDoc = "../../docs/json.md"

// docName is how messages name it: from the repository's root.
const docName = "docs/json.md"

// jsonField is one field of the document, as encoding/json writes it.
type jsonField struct {
	path string // "packets[].hops[].encap"
	typ  string // "string", "number", "boolean", "object", "array of objects"...
}

// modelFields walks t the way encoding/json encodes it: json tags name fields, "-" and
// unexported fields are left out, anonymous struct fields without a tag are flattened into
// their parent (with encoding/json's rule for names that collide), and a type that marshals
// itself as text is a string. Objects are walked into: pointers and slices to their elements,
// a slice's element path ending in "[]".
func modelFields(t *testing.T, typ reflect.Type) (fields []jsonField, objects []string) {
	t.Helper()
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		objects = append(objects, path)
		for _, f := range structFields(typ) {
			if slices.Contains(handWritten[typ], f.name) {
				continue
			}
			p := f.name
			if path != "" {
				p = path + "." + f.name
			}
			fields = append(fields, jsonField{p, jsonType(t, p, f.typ)})
			elem, suffix := f.typ, ""
			for {
				if isTextual(elem) {
					break
				}
				if elem.Kind() == reflect.Pointer {
					elem = elem.Elem()
					continue
				}
				if elem.Kind() == reflect.Slice || elem.Kind() == reflect.Array {
					elem, suffix = elem.Elem(), suffix+"[]"
					continue
				}
				break
			}
			if elem.Kind() == reflect.Struct && !isTextual(elem) {
				walk(p+suffix, elem)
			}
		}
	}
	walk("", typ)
	return fields, objects
}

type structField struct {
	name   string
	typ    reflect.Type
	depth  int
	tagged bool
}

// structFields lists the JSON fields of struct type typ as encoding/json's typeFields does:
// breadth first through embedded structs; of fields sharing a name the shallowest wins, a tagged
// one over untagged ones at that depth, and a tie hides them all.
func structFields(typ reflect.Type) []structField {
	var all []structField
	level := []reflect.Type{typ}
	visited := map[reflect.Type]bool{}
	for depth := 0; len(level) > 0; depth++ {
		var next []reflect.Type
		for _, st := range level {
			if visited[st] {
				continue
			}
			visited[st] = true
			for i := range st.NumField() {
				sf := st.Field(i)
				ft := sf.Type
				if sf.Anonymous {
					if ft.Kind() == reflect.Pointer {
						ft = ft.Elem()
					}
					if !sf.IsExported() && ft.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, _, _ := strings.Cut(tag, ",")
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
					next = append(next, ft)
					continue
				}
				f := structField{name: name, typ: sf.Type, depth: depth, tagged: name != ""}
				if name == "" {
					f.name = sf.Name
				}
				all = append(all, f)
			}
		}
		level = next
	}
	byName := map[string][]structField{}
	var order []string
	for _, f := range all {
		if _, ok := byName[f.name]; !ok {
			order = append(order, f.name)
		}
		byName[f.name] = append(byName[f.name], f)
	}
	var out []structField
	for _, name := range order {
		fs := byName[name]
		shallow := fs[0].depth
		for _, f := range fs {
			shallow = min(shallow, f.depth)
		}
		var at, tagged []structField
		for _, f := range fs {
			if f.depth == shallow {
				at = append(at, f)
				if f.tagged {
					tagged = append(tagged, f)
				}
			}
		}
		switch {
		case len(at) == 1:
			out = append(out, at[0])
		case len(tagged) == 1:
			out = append(out, tagged[0])
		}
	}
	return out
}

// handWritten are the types trace/json.go writes by hand: their fields as encoding/json would
// write them, except those listed, which the document leaves out (a fate's ifindex, a drop
// site's netns inode and ifindex). TestHandWrittenFields holds the encoders to this.
var handWritten = map[reflect.Type][]string{
	reflect.TypeFor[trace.Hop]():      {},
	reflect.TypeFor[trace.Fate]():     {"ifindex"},
	reflect.TypeFor[trace.DropSite](): {"netns", "ifindex"},
}

var (
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
)

// isTextual: the type writes itself as a JSON string (time.Time, netip.Addr, trace.Proto...).
func isTextual(typ reflect.Type) bool {
	return typ.Implements(textMarshaler) || reflect.PointerTo(typ).Implements(textMarshaler)
}

// jsonType names the JSON type of a Go type, as docs/json.md's type column does.
func jsonType(t *testing.T, path string, typ reflect.Type) string {
	t.Helper()
	switch {
	case isTextual(typ):
		return "string"
	case handWritten[typ] == nil && (typ.Implements(jsonMarshaler) || reflect.PointerTo(typ).Implements(jsonMarshaler)):
		t.Fatalf("%s: %s marshals itself as JSON; teach this test what it writes", path, typ)
	}
	switch typ.Kind() {
	case reflect.Pointer:
		return jsonType(t, path, typ.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		if typ.Elem().Kind() == reflect.Uint8 {
			return "string" // base64
		}
		return "array of " + jsonType(t, path+"[]", typ.Elem()) + "s"
	}
	t.Fatalf("%s: no JSON type for %s", path, typ)
	return ""
}

// docRef is what docs/json.md says: the fields of each object (a table under a heading that
// names the object by its jq path: "### `.packets[].hops[]`"; one heading may name several
// objects of the same shape) and the values of enumerated fields (a table under a heading
// "### Values of `.packets[].hops[].event`").
type docRef struct {
	fields  map[string]docField
	objects map[string]int      // path -> line of its heading
	values  map[string][]string // field path -> the values listed
	valLine map[string]int
}

type docField struct {
	typ  string
	line int
}

var (
	docHeading = regexp.MustCompile("^#{2,6} ")
	jqPath     = regexp.MustCompile("`(\\.[^`]*)`")
	tableRow   = regexp.MustCompile("^\\|\\s*`([^`]+)`\\s*\\|([^|]*)\\|")
)

func readDoc(t *testing.T, file, name string) docRef {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("the JSON reference: %v", err)
	}
	d := docRef{fields: map[string]docField{}, objects: map[string]int{}, values: map[string][]string{}, valLine: map[string]int{}}
	var objects []string // the objects the current table describes
	valuesOf := ""       // or the field whose values it lists
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if docHeading.MatchString(line) {
			objects, valuesOf = nil, ""
			paths := jqPath.FindAllStringSubmatch(line, -1)
			switch {
			case len(paths) == 1 && strings.Contains(line, "Values of "):
				valuesOf = strings.TrimPrefix(paths[0][1], ".")
				d.valLine[valuesOf] = n
			default:
				for _, p := range paths {
					obj := strings.TrimPrefix(p[1], ".")
					if prev, ok := d.objects[obj]; ok {
						t.Errorf("%s:%d: object %s is described twice (first at line %d)", name, n, p[1], prev)
					}
					d.objects[obj] = n
					objects = append(objects, obj)
				}
			}
			continue
		}
		m := tableRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch {
		case valuesOf != "":
			d.values[valuesOf] = append(d.values[valuesOf], m[1])
		case len(objects) == 0:
			t.Errorf("%s:%d: table row %q is under no heading naming an object (\"### `.meta`\")", name, n, m[1])
		default:
			for _, obj := range objects {
				p := m[1]
				if obj != "" {
					p = obj + "." + m[1]
				}
				if prev, ok := d.fields[p]; ok {
					t.Errorf("%s:%d: %s is documented twice (first at line %d)", name, n, p, prev.line)
				}
				d.fields[p] = docField{typ: strings.TrimSpace(m[2]), line: n}
			}
		}
	}
	return d
}

// The reference documents every field of the document, each field it documents exists, and its
// type is the one written.
func TestSchemaDocMatchesTheModel(t *testing.T) {
	fields, objects := modelFields(t, reflect.TypeFor[trace.Trace]())
	doc := readDoc(t, schemaDoc, docName)

	model := map[string]string{}
	for _, f := range fields {
		model[f.path] = f.typ
		d, ok := doc.fields[f.path]
		switch {
		case !ok:
			t.Errorf("%s does not document %s (%s)", docName, f.path, f.typ)
		case !typeMatches(d.typ, f.typ):
			t.Errorf("%s:%d: %s is a %s, not %q", docName, d.line, f.path, f.typ, d.typ)
		}
	}
	for _, p := range sortedKeys(doc.fields) {
		if _, ok := model[p]; !ok {
			t.Errorf("%s:%d: documents %s, which the model (trace.Trace) does not have", docName, doc.fields[p].line, p)
		}
	}
	for _, p := range sortedKeys(doc.objects) {
		if !slices.Contains(objects, p) {
			t.Errorf("%s:%d: heading names object .%s, which the model does not have", docName, doc.objects[p], p)
		}
	}
	for _, p := range sortedKeys(doc.values) {
		if _, ok := model[p]; !ok {
			t.Errorf("%s:%d: lists values of %s, which the model does not have", docName, doc.valLine[p], p)
		}
	}
}

// typeMatches: the type column starts with the JSON type ("string (RFC 3339)" is a string).
func typeMatches(doc, want string) bool {
	rest, ok := strings.CutPrefix(doc, want)
	return ok && (rest == "" || rest[0] == ' ' || rest[0] == ',')
}

// The values the reference lists for enumerated fields are the ones the code has: the constants
// of trace's Kind, Outcome and Direction, the values model comments list, and merge's clock
// bases. The sources are read as Go source, so no package has to export its list for a test.
func TestSchemaDocValues(t *testing.T) {
	doc := readDoc(t, schemaDoc, docName)
	model := parseGo(t, "../../trace/model.go")
	clock := parseGo(t, "../../analysis/merge/clock.go")
	tracer := parseGo(t, "../../tracer")
	funcs := parseGo(t, "../../tracer/funcs.go")
	want := map[string][]string{
		"packets[].hops[].event":     model.constsOfType(t, "Kind"),
		"packets[].fate.outcome":     model.constsOfType(t, "Outcome"),
		"packets[].flow":             model.constsOfType(t, "Direction"),
		"flows[].drops[].flow":       model.constsOfType(t, "Direction"),
		"meta.end_reason":            model.commentValues(t, "Meta", "EndReason"),
		"meta.pods[].side":           model.commentValues(t, "PodInfo", "Side"),
		"verdict.outcome":            model.commentValues(t, "Verdict", "Outcome"),
		"verdict.confidence":         model.commentValues(t, "Verdict", "Confidence"),
		"meta.nodes[].skew_basis":    clock.constsNamed(t, "basis"),
		"packets[].hops[].encap":     tracer.stringsIn(t, "encapNames"),
		"packets[].hops[].probe":     tracer.stringsIn(t, "probeNames"), // and "fentry:<fn>"...
		"packets[].hops[].func.hook": funcs.stringsIn(t, "nfHooks"),
		"meta.backend":               funcs.constsNamed(t, "Backend"), // and not "auto": a request, not a backend
		"meta.probes[].program":      nil,                             // listed, not checked: tp_btf, raw_tp and the backends
	}
	want["meta.backend"] = slices.DeleteFunc(want["meta.backend"], func(v string) bool { return v == "auto" })
	for path, values := range want {
		got, ok := doc.values[path]
		if !ok {
			t.Errorf("%s lists no values of %s (a heading \"### Values of `.%s`\" and a table)", docName, path, path)
			continue
		}
		if values == nil {
			continue
		}
		if len(values) == 0 {
			t.Errorf("found no values of %s in the code: has the source moved?", path)
			continue
		}
		for _, v := range values {
			if !slices.Contains(got, v) {
				t.Errorf("%s:%d: values of %s lack %q", docName, doc.valLine[path], path, v)
			}
		}
		for _, v := range got {
			if !slices.Contains(values, v) && !strings.Contains(v, "<") { // "fentry:<fn>" is a pattern
				t.Errorf("%s:%d: values of %s list %q, which the code does not have (it has %q)", docName, doc.valLine[path], path, v, values)
			}
		}
	}
	for _, p := range sortedKeys(doc.values) {
		if _, ok := want[p]; !ok {
			t.Errorf("%s:%d: values of %s are not checked: add the field to TestSchemaDocValues", docName, doc.valLine[p], p)
		}
	}
}

// modelFields, checked on the real thing: every key of a written document whose model fields
// are all set is a field modelFields found, and the other way round. So the walk above follows
// encoding/json (and this package's packet writer), not just what this test thinks it does.
func TestModelFieldsAreWhatIsWritten(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, full()); err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{}
	var keys func(path string, v any)
	keys = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				p := k
				if path != "" {
					p = path + "." + k
				}
				written[p] = true
				keys(p, e)
			}
		case []any:
			for _, e := range v {
				keys(path+"[]", e)
			}
		}
	}
	keys("", doc)
	fields, _ := modelFields(t, reflect.TypeFor[trace.Trace]())
	walked := map[string]bool{}
	for _, f := range fields {
		walked[f.path] = true
		if !written[f.path] {
			t.Errorf("modelFields found %s, which the written document does not have", f.path)
		}
	}
	for _, p := range sortedKeys(written) {
		if !walked[p] {
			t.Errorf("the written document has %s, which modelFields did not find", p)
		}
	}
}

// The walk flattens embedded structs as encoding/json does, including the name collisions it
// resolves, so that moving fields into an embedded struct changes no documented path.
func TestModelFieldsFlattenEmbedded(t *testing.T) {
	type Inner struct {
		A int    `json:"a"`
		B string `json:"b"`
		C bool   `json:"c"`
	}
	type Other struct {
		C bool `json:"c"` // collides with Inner.C at the same depth: both hidden
	}
	type Tagged struct {
		X int `json:"x"`
	}
	type Outer struct {
		Inner
		*Other
		Tagged `json:"tagged"`
		B      string `json:"b"` // shallower than Inner.B: wins
		Skip   int    `json:"-"`
		hidden int
		List   []Inner `json:"list,omitempty"`
	}
	_ = Outer{}.hidden
	fields, objects := modelFields(t, reflect.TypeFor[Outer]())
	var got []string
	for _, f := range fields {
		got = append(got, f.path+":"+f.typ)
	}
	sort.Strings(got)
	want := []string{"a:number", "b:string", "list:array of objects", "list[].a:number", "list[].b:string", "list[].c:boolean", "tagged.x:number", "tagged:object"}
	if !slices.Equal(got, want) {
		t.Errorf("fields %q, want %q", got, want)
	}
	if !slices.Equal(objects, []string{"", "tagged", "list[]"}) {
		t.Errorf("objects %q", objects)
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(Outer{Other: &Other{}, List: []Inner{{}}}); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(buf.Bytes(), &m)
	if len(m) != 4 { // a, b, tagged, list
		t.Errorf("encoding/json wrote %s; the test's expectations are off", buf.String())
	}
}

type goFile struct {
	name string
	f    *ast.File
}

// parseGo parses a Go file, or every non-test file of a package's directory as one.
func parseGo(t *testing.T, name string) goFile {
	t.Helper()
	fset := token.NewFileSet()
	if !strings.HasSuffix(name, ".go") {
		entries, err := os.ReadDir(name)
		if err != nil {
			t.Fatal(err)
		}
		all := &ast.File{}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(name, e.Name()), nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			all.Decls = append(all.Decls, f.Decls...)
		}
		return goFile{name, all}
	}
	f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	return goFile{name, f}
}

// constsOfType lists the values of the string constants declared with type typ.
func (g goFile) constsOfType(t *testing.T, typ string) []string {
	t.Helper()
	var out []string
	g.consts(func(name string, vs *ast.ValueSpec, v string) {
		if id, ok := vs.Type.(*ast.Ident); ok && id.Name == typ {
			out = append(out, v)
		}
	})
	return out
}

// constsNamed lists the values of the string constants whose names start with prefix.
func (g goFile) constsNamed(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	g.consts(func(name string, _ *ast.ValueSpec, v string) {
		if strings.HasPrefix(name, prefix) {
			out = append(out, v)
		}
	})
	return out
}

func (g goFile) consts(fn func(name string, vs *ast.ValueSpec, value string)) {
	for _, d := range g.f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, err := strconv.Unquote(lit.Value); err == nil {
						fn(n.Name, vs, v)
					}
				}
			}
		}
	}
}

// commentValues lists the quoted strings in the comments of field of struct typ.
func (g goFile) commentValues(t *testing.T, typ, field string) []string {
	t.Helper()
	var out []string
	found := false
	ast.Inspect(g.f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != typ {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return false
		}
		for _, f := range st.Fields.List {
			for _, n := range f.Names {
				if n.Name == field {
					found = true
					out = append(out, quoted(f.Doc.Text()+f.Comment.Text())...)
				}
			}
		}
		return false
	})
	if !found {
		t.Errorf("%s: no field %s.%s", g.name, typ, field)
	}
	return out
}

// stringsIn lists the non-empty string literals in the value of package-level variable name
// (a slice or map literal of names).
func (g goFile) stringsIn(t *testing.T, name string) []string {
	t.Helper()
	var out []string
	found := false
	for _, d := range g.f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if n.Name != name || i >= len(vs.Values) {
					continue
				}
				found = true
				ast.Inspect(vs.Values[i], func(n ast.Node) bool {
					if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if v, err := strconv.Unquote(lit.Value); err == nil && v != "" {
							out = append(out, v)
						}
					}
					return true
				})
			}
		}
	}
	if !found {
		t.Errorf("%s: no variable %s", g.name, name)
	}
	return out
}

var quotedString = regexp.MustCompile(`"([^"]+)"`)

func quoted(s string) []string {
	var out []string
	for _, m := range quotedString.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// The hand-written encoders write exactly the fields the walk above lists for their types: a
// hop, fate and drop site with every field set write every listed key and no other.
func TestHandWrittenFields(t *testing.T) {
	tr := full()
	for typ, v := range map[reflect.Type]any{
		reflect.TypeFor[trace.Hop]():      tr.Packets[0].Hops[0],
		reflect.TypeFor[trace.Fate]():     tr.Packets[0].Fate,
		reflect.TypeFor[trace.DropSite](): tr.Flows[0].Drops[0],
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var written map[string]json.RawMessage
		if err := json.Unmarshal(b, &written); err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, f := range structFields(typ) {
			if !slices.Contains(handWritten[typ], f.name) {
				listed = append(listed, f.name)
			}
		}
		got := slices.Sorted(maps.Keys(written))
		slices.Sort(listed)
		if !slices.Equal(got, listed) {
			t.Errorf("%s writes %v, the walk lists %v", typ, got, listed)
		}
	}
}

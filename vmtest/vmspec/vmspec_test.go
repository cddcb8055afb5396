package vmspec

import "testing"

func TestLineParse(t *testing.T) {
	line := Line(EvEnd, "name", "./e2e", "exit", "1", "msg", Quote(`two words "quoted"`))
	// A kernel message may precede the marker on the serial line.
	ev, ok := Parse("[   12.3] something" + line)
	if !ok || ev.Kind != EvEnd {
		t.Fatalf("Parse(%q) = %+v, %v", line, ev, ok)
	}
	want := map[string]string{"name": "./e2e", "exit": "1", "msg": `two words "quoted"`}
	for k, v := range want {
		if ev.Fields[k] != v {
			t.Errorf("field %s = %q, want %q", k, ev.Fields[k], v)
		}
	}
	if _, ok := Parse("=== RUN   TestX"); ok {
		t.Error("a test's line parsed as a marker")
	}
}

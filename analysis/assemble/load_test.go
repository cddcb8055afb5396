package assemble

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

func TestLoadEventsRoundTrip(t *testing.T) {
	want := []trace.Event{
		ev(0xffff888104a3c200, 3, 10, trace.KindReceive, "node/vethpod", req),
		route(3, 12, "node", "10.0.1.2", "172.16.0.2"),
		dropped(0xffff888104a3c200, 3, 20, "node", req, "IP_INADDRERRORS", "ip_error+0x5a"),
	}
	var b strings.Builder
	for _, e := range want {
		line, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteString("\n\n") // blank lines are allowed
	}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadEvents(path)
	if err != nil {
		t.Fatal(err)
	}
	// sk_buff addresses are above 2^53: they must survive without going through a float
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %s\nwant %s", js(got), js(want))
	}
}

func TestLoadEventsErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(path, []byte(`{"skb":1,"cpu":0,"hop":{"event":"received"}}`+"\n"+`{"skb":"x"}`+"\n"), 0o644)
	_, err := LoadEvents(path)
	if err == nil || !strings.Contains(err.Error(), "bad.jsonl: line 2:") {
		t.Errorf("bad line: %v", err)
	}
	if _, err := LoadEvents(filepath.Join(t.TempDir(), "missing.jsonl")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}

func TestFixturesLoad(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "events", "*.jsonl"))
	if len(paths) == 0 {
		t.Fatal("no fixtures")
	}
	for _, p := range paths {
		evs, err := LoadEvents(p)
		if err != nil {
			t.Error(err)
		} else if len(evs) == 0 {
			t.Errorf("%s: empty", p)
		}
	}
}

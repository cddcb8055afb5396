package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/vmtest/vmspec"
)

// readCPIO parses a newc archive back: name -> (mode, data).
func readCPIO(t *testing.T, b []byte) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	for off := 0; ; {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad header at %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		off = (off + 110 + namesize + 3) &^ 3
		data := string(b[off : off+size])
		off = (off + size + 3) &^ 3
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = [2]string{fmt.Sprintf("%o", mode), data}
	}
}

func TestCPIO(t *testing.T) {
	var buf bytes.Buffer
	w := newCPIO(&buf)
	w.File("/a/b/c.txt", 0o644, []byte("hello"))
	w.Symlink("/sbin/modprobe", "/init")
	w.CharDev("/dev/console", 0o600, 5, 1)
	w.Dir("/tmp", 0o1777)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := readCPIO(t, buf.Bytes())
	want := map[string][2]string{
		"a":             {"40755", ""},
		"a/b":           {"40755", ""},
		"a/b/c.txt":     {"100644", "hello"},
		"sbin":          {"40755", ""},
		"sbin/modprobe": {"120777", "/init"},
		"dev":           {"40755", ""},
		"dev/console":   {"20600", ""},
		"tmp":           {"41777", ""},
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want %v", got, want)
	}
}

func TestSoftdep(t *testing.T) {
	got := strings.Join(parseSoftdep("pre: crc32c nf-defrag post: foo"), " ")
	if got != "crc32c nf_defrag" {
		t.Errorf("parseSoftdep = %q", got)
	}
}

const goTestOutput = `=== RUN   TestA
--- PASS: TestA (0.10s)
=== RUN   TestB
=== RUN   TestB/one
    b_test.go:10: first line
        continued
    b_test.go:12: got 1, want 2
=== RUN   TestB/two
--- FAIL: TestB (1.00s)
    --- FAIL: TestB/one (0.50s)
    --- SKIP: TestB/two (0.00s)
=== RUN   TestC
    c_test.go:5: about to hang
`

func TestGoTestOutput(t *testing.T) {
	r := newTestReport()
	var progress []string
	for _, l := range strings.Split(goTestOutput, "\n") {
		if p := r.Line(l); p != "" {
			progress = append(progress, p)
		}
	}
	r.End()
	if fmt.Sprint(r.Passed, r.Failed, r.Skipped) != "[TestA] [TestB TestB/one TestC (did not finish)] [TestB/two]" {
		t.Errorf("passed %v failed %v skipped %v", r.Passed, r.Failed, r.Skipped)
	}
	if len(progress) != 2 || !strings.HasPrefix(progress[1], "FAIL TestB") {
		t.Errorf("progress %q", progress)
	}
	if got := strings.Join(r.leaves(), ","); got != "TestB/one,TestC (did not finish)" {
		t.Errorf("leaves %s", got)
	}
	msgs := strings.Join(r.Messages("TestB/one", 8), "\n")
	if !strings.Contains(msgs, "got 1, want 2") || !strings.Contains(msgs, "continued") {
		t.Errorf("messages:\n%s", msgs)
	}
	var out bytes.Buffer
	ok := writeSummary(&out, []*VMResult{{Suite: "bookworm", Report: r, Exits: map[string]int{"./e2e": 1}, Booted: true}}, nil, time.Minute)
	if ok || !strings.Contains(out.String(), "vmtest: 1 passed, 3 failed, 1 skipped") {
		t.Errorf("summary ok=%v:\n%s", ok, out.String())
	}
}

func TestCases(t *testing.T) {
	all, err := selectCases([]string{"all"})
	if err != nil || len(all) != len(vmCases) {
		t.Fatalf("all cases: %v, %v", all, err)
	}
	if _, err := selectCases([]string{"nosuch"}); err == nil {
		t.Error("unknown case accepted")
	}
	min, err := selectCases([]string{"minimal"})
	if err != nil {
		t.Fatal(err)
	}
	vc := min[0]
	if !vc.boots("bookworm") || vc.boots("trixie") || vc.label("bookworm") != "bookworm-minimal" || vmCases[0].label("trixie") != "trixie" {
		t.Errorf("minimal: boots bookworm %v, trixie %v, label %q", vc.boots("bookworm"), vc.boots("trixie"), vc.label("bookworm"))
	}
	base := &vmspec.Manifest{TimeoutSec: 60, Tests: []vmspec.Test{
		{Name: "./e2e", Args: []string{"-test.v", "-test.run=X", "-test.skip=^TestIptablesForwardDrop$"}, Env: []string{"PATHTRACE_BIN=/bin/pathtrace"}},
		{Name: "./tracer", Args: []string{"-test.v"}},
	}}
	m, err := vc.manifest(base)
	if err != nil {
		t.Fatal(err)
	}
	want := []vmspec.Test{{Name: "./e2e", Args: []string{"-test.v", "-test.run=^TestWithoutNetfilter$"},
		Env: []string{"PATHTRACE_BIN=/bin/pathtrace", "PATHTRACE_EXPECT_NO_NETFILTER=1"}}}
	if fmt.Sprint(m.Tests) != fmt.Sprint(want) || m.TimeoutSec != 60 {
		t.Errorf("minimal manifest = %+v, want %+v", m.Tests, want)
	}
	if len(base.Tests[0].Env) != 1 {
		t.Errorf("the base manifest changed: %+v", base.Tests[0])
	}
	if _, err := vc.manifest(&vmspec.Manifest{Tests: base.Tests[1:]}); err == nil {
		t.Error("a case whose package was not built: want an error")
	}
}

// The tools a lab shells out to travel with their loader and libraries.
func TestHostToolFiles(t *testing.T) {
	files, err := hostToolFiles()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]cfile{}
	for _, f := range files {
		byName[f.name] = f
	}
	for _, want := range []string{"/usr/sbin/iptables-nft", "/usr/sbin/nft", "/usr/sbin/tc"} {
		if _, ok := byName[want]; !ok {
			t.Errorf("no %s in the initramfs files", want)
		}
	}
	var libc, loader bool
	for name := range byName {
		libc = libc || strings.HasSuffix(name, "/libc.so.6")
		loader = loader || strings.Contains(name, "/ld-linux")
	}
	if !libc || !loader {
		t.Errorf("libc %v, loader %v: the tools cannot run without them", libc, loader)
	}
}

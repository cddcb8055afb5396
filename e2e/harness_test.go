// Package e2e runs the pathtrace binary against the real kernel: real namespaces, real packets,
// assertions on the JSON and the text a user reads.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/trace"
)

// binary is the pathtrace built once for the suite, in a directory anyone may read, so the
// not-root test can run it as nobody.
var binary string

func TestMain(m *testing.M) {
	// The test binary as a wrapper that hides mounts from the pathtrace it then becomes (see
	// withHidden).
	if hide := os.Getenv(hideEnv); hide != "" {
		os.Exit(hideAndExec(strings.Split(hide, ","), os.Args[1:]))
	}
	// PATHTRACE_BIN names a prebuilt pathtrace to test instead (make vmtest: the VM has no Go
	// toolchain); nobody must be able to run it.
	if binary = os.Getenv("PATHTRACE_BIN"); binary != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "pathtrace-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Chmod(dir, 0o755)
	binary = filepath.Join(dir, "pathtrace")
	build := exec.Command("go", "build", "-o", binary, "../cmd/pathtrace")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build pathtrace:", err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// session is one running pathtrace.
type session struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	json   string
	done   chan error
}

// start runs pathtrace with args plus --json/--ready-file/--color never and waits until its
// probes are attached.
func start(t *testing.T, args ...string) *session {
	t.Helper()
	return startWrapped(t, nil, args...)
}

// startWrapped is start with the command changed by wrap first (run under another program, in
// other namespaces...).
func startWrapped(t *testing.T, wrap func(*exec.Cmd), args ...string) *session {
	t.Helper()
	dir := t.TempDir()
	s := &session{t: t, json: filepath.Join(dir, "trace.json"), done: make(chan error, 1)}
	ready := filepath.Join(dir, "ready")
	args = append(args, "--json", s.json, "--ready-file", ready, "--color", "never")
	// PATHTRACE_RECORD_DIR keeps each run's raw events: that is how testdata/events/recorded
	// is made.
	if dir := os.Getenv("PATHTRACE_RECORD_DIR"); dir != "" {
		args = append(args, "--record-events", filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".jsonl"))
	}
	s.cmd = exec.Command(binary, args...)
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	if wrap != nil {
		wrap(s.cmd)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start pathtrace: %v", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
		requireNoCrash(t, s.cmd.Args, s.stdout.String(), s.stderr.String())
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return s
		}
		select {
		case err := <-s.done:
			t.Fatalf("pathtrace exited before it was ready: %v\nstdout:\n%s\nstderr:\n%s", err, &s.stdout, &s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pathtrace not ready after 60s\nstderr:\n%s", &s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the run with sig (0: wait for it to end by itself), checks that it left nothing
// behind, and returns the saved trace.
func (s *session) stop(sig syscall.Signal) *trace.Trace {
	s.t.Helper()
	tr := s.end(sig)
	requireNothingLeft(s.t)
	return tr
}

// end is stop without the check for leftovers, for a run that ends while another goes on.
func (s *session) end(sig syscall.Signal) *trace.Trace {
	s.t.Helper()
	if sig != 0 {
		// Let the last events reach userspace before asking it to stop.
		time.Sleep(300 * time.Millisecond)
		s.cmd.Process.Signal(sig)
	}
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Fatalf("pathtrace failed: %v\nstdout:\n%s\nstderr:\n%s", err, &s.stdout, &s.stderr)
		}
	case <-time.After(30 * time.Second):
		s.t.Fatalf("pathtrace did not stop\nstdout:\n%s", &s.stdout)
	}
	tr, err := jsontrace.ReadFile(s.json)
	if err != nil {
		s.t.Fatalf("read trace: %v\nstdout:\n%s\nstderr:\n%s", err, &s.stdout, &s.stderr)
	}
	s.t.Logf("pathtrace output:\n%s", &s.stdout)
	return tr
}

// crash matches what the Go runtime prints when a program crashes: a panic, a fatal error, a
// goroutine's stack.
var crash = regexp.MustCompile(`(?m)^(panic: |fatal error: |goroutine \d+ \[)`)

// requireNoCrash fails the test if a pathtrace run printed a Go crash, whatever its exit
// status: pathtrace degrades, it never panics (a kernel without nf_tables once made it).
func requireNoCrash(t testing.TB, args []string, outputs ...string) {
	t.Helper()
	for _, out := range outputs {
		if loc := crash.FindStringIndex(out); loc != nil {
			t.Errorf("%v crashed:\n%s", args, out[loc[0]:])
			return
		}
	}
}

// combinedOutput runs cmd (a pathtrace) as exec.Cmd.CombinedOutput does, and fails the test if
// it crashed.
func combinedOutput(t testing.TB, cmd *exec.Cmd) ([]byte, error) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	requireNoCrash(t, cmd.Args, string(out))
	return out, err
}

// showText re-renders the saved trace with `pathtrace show`; it must equal the live output.
func (s *session) showText() string {
	s.t.Helper()
	out, err := combinedOutput(s.t, exec.Command(binary, "show", "--color", "never", s.json))
	if err != nil {
		s.t.Fatalf("pathtrace show: %v\n%s", err, out)
	}
	return string(out)
}

func requireLine(t *testing.T, text string, parts ...string) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			return
		}
	}
	t.Errorf("no line contains all of %q in:\n%s", parts, text)
}

// packets returns the trace's packets going in dir.
func packets(tr *trace.Trace, dir trace.Direction) []trace.Packet {
	var out []trace.Packet
	for _, p := range tr.Packets {
		if p.Flow == dir {
			out = append(out, p)
		}
	}
	return out
}

// netnsSeen lists the namespaces a packet's hops crossed, in order, without repeats.
func netnsSeen(p trace.Packet) []string {
	var out []string
	for _, h := range p.Hops {
		if h.Event == trace.KindRoute {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != h.NetnsName {
			out = append(out, h.NetnsName)
		}
	}
	return out
}

// The crash pattern catches the runtime's own words, not a user's text that mentions them.
func TestCrashPattern(t *testing.T) {
	for out, want := range map[string]bool{
		"panic: runtime error: invalid memory address or nil pointer dereference\n": true,
		"header\nfatal error: concurrent map writes\n":                              true,
		"ok\ngoroutine 1 [running]:\nmain.main()\n":                                 true,
		"degraded  nftables tracing unavailable: ...\n":                             false,
		"a line about a panic: in the middle\n":                                     false,
		"the goroutine count is fine\n":                                             false,
	} {
		if got := crash.MatchString(out); got != want {
			t.Errorf("crash.MatchString(%q) = %v, want %v", out, got, want)
		}
	}
}

package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

// Every bad invocation must end with one clear line on stderr and a non-zero exit, before
// anything is loaded.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	malformed := filepath.Join(dir, "malformed.json")
	os.WriteFile(malformed, []byte(`{"schema": "pathtrace/v1", "packets": [`), 0o644)
	foreign := filepath.Join(dir, "foreign.json")
	os.WriteFile(foreign, []byte(`{"schema": "othertool/v9"}`), 0o644)
	unreadable := filepath.Join(dir, "unreadable.json")
	os.WriteFile(unreadable, []byte(`{}`), 0o000)

	cases := []struct {
		name string
		args []string
		want string
		root bool // the check happens after the privilege check
	}{
		{"bad address", []string{"--src", "300.1.1.1"}, "--src: bad address \"300.1.1.1\"", false},
		{"bad cidr", []string{"--dst", "10.0.0.0/33"}, "--dst: bad CIDR \"10.0.0.0/33\"", false},
		{"port out of range", []string{"--proto", "udp", "--dport", "70000"}, "--dport: bad port \"70000\"", false},
		{"port not a number", []string{"--proto", "tcp", "--sport", "http"}, "--sport: bad port \"http\"", false},
		{"unknown proto", []string{"--proto", "sctpx"}, "--proto: unknown protocol \"sctpx\"", false},
		{"ports without tcp/udp", []string{"--proto", "icmp", "--dport", "80"}, "--sport/--dport need --proto tcp or udp", false},
		{"mixed families", []string{"--src", "10.0.0.1", "--dst", "fd00::1"}, "different address families", false},
		{"bad color", []string{"--color", "purple"}, "--color: want auto, always or never", false},
		{"negative duration", []string{"--duration", "-1s"}, "--duration must not be negative", false},
		{"negative count", []string{"--count", "-2"}, "--count must not be negative", false},
		{"negative max-packets", []string{"--max-packets", "-1"}, "--max-packets must not be negative", false},
		{"bad ring buffer", []string{"--ring-buffer", "5000"}, "--ring-buffer must be a power of two", false},
		{"count not a number", []string{"--count", "many"}, "invalid argument \"many\" for \"--count\"", false},
		{"duration without unit", []string{"--duration", "30"}, "invalid argument \"30\" for \"--duration\"", false},
		{"unknown flag", []string{"--frobnicate"}, "unknown flag: --frobnicate", false},
		{"stray argument", []string{"8.8.8.8"}, "unknown command \"8.8.8.8\"", false},
		{"show missing file", []string{"show", filepath.Join(dir, "nope.json")}, "no such file or directory", false},
		{"show malformed", []string{"show", malformed}, "is not a pathtrace trace", false},
		{"show foreign schema", []string{"show", foreign}, "this pathtrace reads pathtrace/v1", false},
		{"show without file", []string{"show"}, "accepts 1 arg(s)", false},
		{"unwritable json", []string{"--dst", "10.9.9.9", "--json", "/proc/pathtrace.json"}, "cannot write /proc/pathtrace.json", true},
		{"missing json dir", []string{"--dst", "10.9.9.9", "--json", filepath.Join(dir, "no/such/dir.json")}, "no such file or directory", true},
		{"bad backend", []string{"--backend", "ebpf"}, "--backend: want auto, fentry, kprobe or tracepoint", false},
		{"missing BTF", []string{"--dst", "10.9.9.9", "--kernel-btf", filepath.Join(dir, "vmlinux")}, "kernel BTF not available", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.root {
				testutil.RequireRoot(t, "reach checks made after the privilege check")
			}
			requireOneLineError(t, exec.Command(binary, c.args...), c.want)
		})
	}

	t.Run("show unreadable", func(t *testing.T) {
		testutil.RequireRoot(t, "run pathtrace as another user")
		cmd := exec.Command(binary, "show", unreadable)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		requireOneLineError(t, cmd, "permission denied")
	})
	t.Run("not root", func(t *testing.T) {
		testutil.RequireRoot(t, "run pathtrace as another user")
		cmd := exec.Command(binary, "--dst", "10.9.9.9")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		requireOneLineError(t, cmd, "tracing needs root")
	})
}

func requireOneLineError(t *testing.T, cmd *exec.Cmd, want string) {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("%v: want a non-zero exit, got %v (stderr %q)", cmd.Args, err, stderr.String())
	}
	msg := strings.TrimRight(stderr.String(), "\n")
	if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "pathtrace: ") || !strings.Contains(msg, want) {
		t.Errorf("%v: stderr = %q, want one line 'pathtrace: ...%s...'", cmd.Args, msg, want)
	}
	if stdout.Len() != 0 {
		t.Errorf("%v: printed %q on stdout for bad input", cmd.Args, stdout.String())
	}
}

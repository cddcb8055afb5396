package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	// A container runtime with pod web in two namespaces.
	crisrv := criServer(t, pod("default", "web"), pod("shop", "web"))
	// Traces for merge: two of one ping's flow whose packets differ, and one of another flow.
	pingTrace := func(name, filter string, seq int) string {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(`{"schema": "pathtrace/v1", "meta": {"started_at": "2026-01-02T03:04:05Z"},
			"filter": `+filter+`, "packets": [{"id": 1, "flow": "request",
			"tuple": {"proto": "icmp", "src": "10.0.0.1", "dst": "10.0.0.2", "icmp_type": 8, "icmp_id": 7, "icmp_seq": `+strconv.Itoa(seq)+`},
			"hops": [{"time_ns": 1000, "event": "xmit", "netns_name": "host", "ifname": "eth0"}], "fate": {"outcome": "left-host"}}]}`), 0o644)
		return path
	}
	icmpFlow := `{"src": "10.0.0.1/32", "dst": "10.0.0.2/32", "proto": "icmp"}`
	nodeA := pingTrace("node-a.json", icmpFlow, 1)
	nodeB := pingTrace("node-b.json", icmpFlow, 2)
	nodeC := pingTrace("node-c.json", icmpFlow, 1)
	tcpFlow := pingTrace("tcp.json", `{"src": "10.0.0.1/32", "dst": "10.0.0.2/32", "proto": "tcp"}`, 1)

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
		{"negative max-rate", []string{"--max-rate", "-1"}, "--max-rate must be from 0 (no limit) to 1000000000", false},
		{"bad ring buffer", []string{"--ring-buffer", "5000"}, "--ring-buffer must be a power of two", false},
		{"count not a number", []string{"--count", "many"}, "invalid argument \"many\" for \"--count\"", false},
		{"duration without unit", []string{"--duration", "30"}, "invalid argument \"30\" for \"--duration\"", false},
		{"unknown flag", []string{"--frobnicate"}, "unknown flag: --frobnicate", false},
		{"stray argument", []string{"8.8.8.8"}, "unknown command \"8.8.8.8\"", false},
		{"show missing file", []string{"show", filepath.Join(dir, "nope.json")}, "no such file or directory", false},
		{"show malformed", []string{"show", malformed}, "is not a pathtrace trace", false},
		{"show foreign schema", []string{"show", foreign}, "this pathtrace reads pathtrace/v1", false},
		{"show without file", []string{"show"}, "accepts 1 arg(s)", false},
		{"show endless non-trace", []string{"show", "/dev/zero"}, "/dev/zero is not a pathtrace trace: invalid JSON at offset 1", false},
		{"merge one file", []string{"merge", nodeA}, "merge needs the traces of at least two nodes, got 1", false},
		{"merge missing file", []string{"merge", nodeA, filepath.Join(dir, "nope.json")}, "no such file or directory", false},
		{"merge malformed", []string{"merge", malformed, nodeA}, "is not a pathtrace trace", false},
		{"merge foreign schema", []string{"merge", nodeA, foreign}, "this pathtrace reads pathtrace/v1", false},
		{"merge different flows", []string{"merge", nodeA, tcpFlow}, "traces icmp 10.0.0.1 <-> 10.0.0.2, " + tcpFlow + " traces tcp 10.0.0.1 <-> 10.0.0.2: not the same flow", false},
		{"merge nothing matches", []string{"merge", nodeA, nodeB}, "no packet of " + nodeA + " (1 traced) matches one in " + nodeB, false},
		{"merge zero max-packets", []string{"merge", nodeA, nodeC, "--max-packets", "0"}, "--max-packets must be positive, got 0", false},
		{"merge bad color", []string{"merge", nodeA, nodeB, "--color", "purple"}, "--color: want auto, always or never", false},
		{"merge unwritable json", []string{"merge", nodeA, nodeC, "--json", "/proc/merged.json"}, "cannot write /proc/merged.json", false},
		{"unwritable json", []string{"--dst", "10.9.9.9", "--json", "/proc/pathtrace.json"}, "cannot write /proc/pathtrace.json", true},
		{"missing json dir", []string{"--dst", "10.9.9.9", "--json", filepath.Join(dir, "no/such/dir.json")}, "no such file or directory", true},
		{"bad backend", []string{"--backend", "ebpf"}, "--backend: want auto, fentry, kprobe or tracepoint", false},
		{"unknown pod", []string{"--src", "default/nope", "--cri-socket", crisrv.Socket()}, "--src: pod default/nope not found on this node", false},
		{"ambiguous pod", []string{"--dst", "web", "--cri-socket", crisrv.Socket()}, "--dst: pod web is in namespaces default, shop: use default/web or shop/web", false},
		{"bad cri socket", []string{"--src", "default/web", "--cri-socket", filepath.Join(dir, "nope.sock")}, "--cri-socket: CRI socket " + filepath.Join(dir, "nope.sock"), false},
		{"cri socket not a socket", []string{"--dst", "10.9.9.9", "--cri-socket", malformed}, "not a unix socket", false},
		{"malformed pod name", []string{"--src", "Default/Web"}, "--src: \"Default/Web\" is not an address and \"Web\" is not a valid pod name", false},
		{"pod with too many parts", []string{"--dst", "pod/a/b/c"}, "--dst: \"pod/a/b/c\" has too many '/'", false},
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
	requireNoCrash(t, cmd.Args, stdout.String(), stderr.String())
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

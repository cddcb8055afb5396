package hostenv

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRoot lays out the filesystem a process sees, as a temporary directory: /proc's namespace
// links (symbolic links whose targets read like the kernel's "net:[4026531840]") and whatever
// files the test adds.
type fakeRoot struct {
	t    *testing.T
	root string
}

func newFakeRoot(t *testing.T) *fakeRoot {
	// Short: a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "he")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &fakeRoot{t: t, root: dir}
}

func (f *fakeRoot) path(p string) string { return filepath.Join(f.root, p) }

func (f *fakeRoot) dir(p string) {
	f.t.Helper()
	if err := os.MkdirAll(f.path(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeRoot) file(p string) {
	f.t.Helper()
	f.dir(filepath.Dir(p))
	if err := os.WriteFile(f.path(p), nil, 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeRoot) link(p, target string) {
	f.t.Helper()
	f.dir(filepath.Dir(p))
	if err := os.Symlink(target, f.path(p)); err != nil {
		f.t.Fatal(err)
	}
}

// socket listens on a real unix socket at p, as a running containerd would.
func (f *fakeRoot) socket(p string) {
	f.t.Helper()
	f.dir(filepath.Dir(p))
	l, err := net.Listen("unix", f.path(p))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { l.Close() })
}

// namespaces writes /proc/self/ns/{pid,net} and /proc/1/ns/net; "" leaves a link out.
func (f *fakeRoot) namespaces(pid, selfNet, initNet string) {
	if pid != "" {
		f.link("proc/self/ns/pid", pid)
	}
	if selfNet != "" {
		f.link("proc/self/ns/net", selfNet)
	}
	if initNet != "" {
		f.link("proc/1/ns/net", initNet)
	}
}

// debugPod lays out what `kubectl debug node/NODE --profile=sysadmin` gives: host PID and
// network namespaces, the node's root at /host with its /var/run a link to /run, its named
// namespaces, its BTF and a kubelet; the pod itself has no /sys/kernel/btf.
func (f *fakeRoot) debugPod() {
	f.namespaces(initPIDNamespace, "net:[4026531840]", "net:[4026531840]")
	f.dir("etc")
	f.dir("run")
	f.dir("host/etc")
	f.dir("host/run/netns")
	f.file("host/run/netns/cni-1234")
	f.link("host/var/run", "/run")
	f.dir("host/var/lib/kubelet")
	f.file("host/sys/kernel/btf/vmlinux")
}

func TestDebugPod(t *testing.T) {
	f := newFakeRoot(t)
	f.debugPod()
	f.socket("host/run/containerd/containerd.sock")
	e, err := DetectAt(f.root)
	if err != nil {
		t.Fatalf("DetectAt: %v", err)
	}
	if !e.DebugPod || e.HostRoot != f.path("host") || e.CRIRoot != f.path("host") || !e.KubeNode {
		t.Errorf("env = %+v, want a debug pod on a kubelet node with the node's root at %s", e, f.path("host"))
	}
	if e.HostPID != Yes || e.HostNetwork != Yes {
		t.Errorf("host PID %s, host network %s; want yes, yes", e.HostPID, e.HostNetwork)
	}
	if e.Proc != f.path("proc") {
		t.Errorf("proc = %s, want the pod's own %s (host PID namespace)", e.Proc, f.path("proc"))
	}
	if btf, err := e.BTF(); err != nil || btf != f.path("host/sys/kernel/btf/vmlinux") {
		t.Errorf("BTF = %q, %v; want the node's, under /host", btf, err)
	}
	if s, err := e.CRISocket(); err != nil || s != f.path("host/run/containerd/containerd.sock") {
		t.Errorf("CRISocket = %q, %v; want containerd's under /host", s, err)
	}
	// The node's /var/run is an absolute link to /run: followed inside /host, not to the pod's.
	want := f.path("host/run/netns")
	if len(e.NetnsDirs) == 0 || e.NetnsDirs[0] != want {
		t.Errorf("netns dirs = %q, want the node's %s first", e.NetnsDirs, want)
	}
	for _, d := range e.NetnsDirs {
		if d == f.path("host/var/run/netns") {
			t.Errorf("netns dirs %q hold the unresolved /host/var/run/netns", e.NetnsDirs)
		}
	}
	for in, want := range map[string]string{
		"/var/run/netns/cni-1234": f.path("host/run/netns/cni-1234"),
		"/run/netns/cni-1234":     f.path("host/run/netns/cni-1234"),
		"/proc/4242/ns/net":       f.path("proc/4242/ns/net"),
		"/var/run/../run/x":       f.path("host/run/x"),
	} {
		if got := e.HostPath(in); got != want {
			t.Errorf("HostPath(%s) = %s, want %s", in, got, want)
		}
	}
	if _, err := os.Stat(e.HostPath("/var/run/netns/cni-1234")); err != nil {
		t.Errorf("the pod's netns file is not reachable: %v", err)
	}
}

func TestOnTheNode(t *testing.T) {
	f := newFakeRoot(t)
	f.namespaces(initPIDNamespace, "net:[4026531840]", "net:[4026531840]")
	f.dir("etc")
	f.dir("run/netns")
	f.link("var/run", "/run")
	f.file("sys/kernel/btf/vmlinux")
	f.socket("run/crio/crio.sock")
	e, err := DetectAt(f.root)
	if err != nil {
		t.Fatalf("DetectAt: %v", err)
	}
	if e.DebugPod || e.HostRoot != f.root || e.KubeNode {
		t.Errorf("env = %+v, want the node itself, no kubelet", e)
	}
	if btf, _ := e.BTF(); btf != f.path("sys/kernel/btf/vmlinux") {
		t.Errorf("BTF = %q, want our own", btf)
	}
	if s, err := e.CRISocket(); err != nil || s != f.path("run/crio/crio.sock") {
		t.Errorf("CRISocket = %q, %v; want CRI-O's", s, err)
	}
	if got, want := e.HostPath("/var/run/netns/x"), f.path("run/netns/x"); got != want {
		t.Errorf("HostPath = %s, want %s", got, want)
	}
}

// Every missing privilege or mount is one line that says what to do.
func TestProblems(t *testing.T) {
	cases := []struct {
		name  string
		setup func(f *fakeRoot)
		check func(e Env) error
		want  []string
	}{
		{"not in the node's network namespace", func(f *fakeRoot) {
			f.debugPod()
			os.Remove(f.path("proc/self/ns/net"))
			f.link("proc/self/ns/net", "net:[4026532999]")
		}, nil, []string{"not in the node's network namespace", "--profile=sysadmin", "hostNetwork"}},
		{"not in the node's PID namespace", func(f *fakeRoot) {
			f.namespaces("pid:[4026532777]", "net:[4026532999]", "net:[4026532999]")
		}, nil, []string{"not in the node's PID namespace", "hostPID"}},
		{"no CRI socket under /host", func(f *fakeRoot) { f.debugPod() },
			func(e Env) error { _, err := e.CRISocket(); return err },
			[]string{"no CRI socket under ", "/host/run/containerd/containerd.sock", "--cri-socket"}},
		{"no CRI socket, no /host", func(f *fakeRoot) {
			f.namespaces(initPIDNamespace, "net:[1]", "net:[1]")
		}, func(e Env) error { _, err := e.CRISocket(); return err },
			[]string{"no CRI socket found", "mount the node's root at /host", "kubectl debug node/"}},
		{"BTF nowhere", func(f *fakeRoot) {
			f.debugPod()
			os.Remove(f.path("host/sys/kernel/btf/vmlinux"))
		}, func(e Env) error { _, err := e.BTF(); return err },
			[]string{"kernel BTF not available", "/sys/kernel/btf/vmlinux, ", "/host/sys/kernel/btf/vmlinux", "CONFIG_DEBUG_INFO_BTF", "--kernel-btf"}},
		{"no privilege in a debug pod", func(f *fakeRoot) { f.debugPod() },
			func(e Env) error { return e.privilegeError(errors.New("tracing needs root")) },
			[]string{"CAP_BPF", "CAP_SYS_ADMIN", "--profile=sysadmin"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeRoot(t)
			c.setup(f)
			e, err := DetectAt(f.root)
			if c.check != nil {
				if err != nil {
					t.Fatalf("DetectAt: %v", err)
				}
				err = c.check(e)
			}
			if err == nil {
				t.Fatalf("no error, want one saying %q", c.want)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is not one line", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, strings.ReplaceAll(w, "/host/", f.path("host")+"/")) && !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

// Where PID 1's namespace cannot be read (a sandbox denying ptrace access), detection says it
// does not know rather than refusing to run.
func TestUnknownIsNotAnError(t *testing.T) {
	f := newFakeRoot(t)
	f.namespaces(initPIDNamespace, "net:[4026531840]", "")
	e, err := DetectAt(f.root)
	if err != nil {
		t.Fatalf("DetectAt: %v", err)
	}
	if e.HostPID != Yes || e.HostNetwork != Unknown {
		t.Errorf("host PID %s, host network %s; want yes, unknown", e.HostPID, e.HostNetwork)
	}
	// A privilege error outside a debug pod is left as privilege.Check words it.
	orig := errors.New("tracing needs root")
	if got := e.privilegeError(orig); got != orig {
		t.Errorf("privilegeError = %v, want %v unchanged", got, orig)
	}
}

// The process's real environment: whatever it is, what Detect reports must be true of it.
func TestDetectHere(t *testing.T) {
	e, err := Detect()
	if err != nil && e.HostPID != No && e.HostNetwork != No {
		t.Errorf("Detect: %v, though neither namespace was found to differ from the node's", err)
	}
	if e.Root != "/" || e.Proc != "/proc" {
		t.Errorf("env = %+v, want root / and /proc", e)
	}
	if _, statErr := os.Stat("/sys/kernel/btf/vmlinux"); (statErr == nil) != (e.KernelBTF == "/sys/kernel/btf/vmlinux") {
		t.Errorf("KernelBTF = %q, but stat /sys/kernel/btf/vmlinux: %v", e.KernelBTF, statErr)
	}
	if self, err := os.Readlink("/proc/self/ns/pid"); err == nil && (self == initPIDNamespace) != (e.HostPID == Yes) {
		t.Errorf("HostPID = %s, our PID namespace is %s", e.HostPID, self)
	}
}

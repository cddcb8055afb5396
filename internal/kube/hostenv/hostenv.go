// Package hostenv finds the node pathtrace traces: on the node itself everything is where it
// always is; from `kubectl debug node/NODE --profile=sysadmin` (a privileged pod sharing the
// node's PID and network namespaces) the node's root filesystem is at /host, and the CRI
// socket, named network namespaces and pod netns paths the runtime reports live under it.
package hostenv

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pathtrace/pathtrace/internal/kube/cri"
	"github.com/pathtrace/pathtrace/internal/privilege"
	"github.com/pathtrace/pathtrace/tracer/netns"
)

// DebugPodMount is where `kubectl debug node/...` mounts the node's root filesystem.
const DebugPodMount = "/host"

// initPIDNamespace is the inode of the kernel's initial PID namespace: a fixed number
// (PROC_PID_INIT_INO in include/linux/proc_ns.h, the same on every kernel that has namespace
// inodes), so a process can tell on its own whether it shares the node's PID namespace.
const initPIDNamespace = "pid:[4026531836]"

// Fact is something detection may or may not be able to tell.
type Fact int

const (
	Unknown Fact = iota // could not be read (a sandbox denying /proc/1/ns, say)
	Yes
	No
)

func (f Fact) String() string {
	switch f {
	case Yes:
		return "yes"
	case No:
		return "no"
	}
	return "unknown"
}

// Env is where pathtrace finds the node it traces. Every path in it can be opened as is.
type Env struct {
	// Root is this process's filesystem root: "/" except in tests.
	Root string
	// HostRoot is the node's root filesystem: Root, or Root/host in a debug pod.
	HostRoot string
	// DebugPod: the node's root is mounted at /host, as `kubectl debug node/...` does.
	DebugPod bool
	// Proc is the /proc to read processes and namespaces from. A debug pod shares the node's
	// PID namespace, so its own /proc is the node's.
	Proc string
	// HostNetns are the files the node's network namespace is looked for at, best first.
	HostNetns []string
	// NetnsDirs are where named network namespaces (iproute2's, CNI's cni-...) are bind-mounted.
	NetnsDirs []string
	// KernelBTF is the kernel's BTF file; "" when none was found (BTF says where it looked).
	KernelBTF string
	btfTried  []string
	// CRIRoot is the root the container runtime's socket is looked for under.
	CRIRoot string
	// HostNetwork and HostPID say whether pathtrace shares the node's network and PID
	// namespaces.
	HostNetwork Fact
	HostPID     Fact
	// KubeNode: the node runs a kubelet (/var/lib/kubelet exists), so pods are expected.
	KubeNode bool
}

// Detect looks at the process's own filesystem.
func Detect() (Env, error) { return DetectAt("/") }

// DetectAt detects the environment of a process whose filesystem root is root (a temporary
// directory laid out like a node or a debug pod, in tests). The error is the first thing that
// keeps pathtrace from tracing the node, in one line that says what to change; Env is filled
// in as far as it could be either way.
func DetectAt(root string) (Env, error) {
	e := Env{Root: root, HostRoot: root, Proc: filepath.Join(root, "proc")}
	if looksLikeNodeRoot(filepath.Join(root, DebugPodMount)) {
		e.DebugPod = true
		e.HostRoot = filepath.Join(root, DebugPodMount)
	}
	e.CRIRoot = e.HostRoot
	e.HostNetns = []string{filepath.Join(e.Proc, "1/ns/net"), filepath.Join(e.Proc, "self/ns/net")}
	e.NetnsDirs = netnsDirs(e)
	e.KernelBTF, e.btfTried = findBTF(e)
	e.KubeNode = isDir(e.hostFile("/var/lib/kubelet"))
	e.HostPID, e.HostNetwork = namespaces(e.Proc)

	switch {
	case e.HostPID == No:
		return e, errors.New("pathtrace is not in the node's PID namespace: run it on the node, or from `kubectl debug node/NODE --profile=sysadmin` (hostPID), so it can read the node's /proc")
	case e.HostNetwork == No:
		return e, errors.New("pathtrace is not in the node's network namespace: run the debug pod with --profile=sysadmin (hostNetwork), as `kubectl debug node/NODE --profile=sysadmin` does, or run it on the node")
	}
	return e, nil
}

// looksLikeNodeRoot says whether dir holds a root filesystem: a mount of the node's / has at
// least its /etc and its /run or /var.
func looksLikeNodeRoot(dir string) bool {
	return isDir(filepath.Join(dir, "etc")) && (isDir(filepath.Join(dir, "run")) || isDir(filepath.Join(dir, "var")))
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func netnsDirs(e Env) []string {
	var dirs []string
	add := func(d string) {
		for _, x := range dirs {
			if x == d {
				return
			}
		}
		dirs = append(dirs, d)
	}
	// The node's own first: in a debug pod /run/netns is the pod's (empty) and the names
	// that matter are the node's.
	if e.DebugPod {
		for _, d := range netns.DefaultDirs {
			add(e.hostFile(d))
		}
	}
	for _, d := range netns.DefaultDirs {
		add(filepath.Join(e.Root, d))
	}
	return dirs
}

func findBTF(e Env) (string, []string) {
	cands := []string{filepath.Join(e.Root, "sys/kernel/btf/vmlinux")}
	if e.DebugPod {
		// A container may be given no /sys of its own; the node's is under /host.
		cands = append(cands, filepath.Join(e.HostRoot, "sys/kernel/btf/vmlinux"))
	}
	for _, c := range cands {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() {
			return c, cands
		}
	}
	return "", cands
}

// namespaces compares this process's namespaces with the node's. The PID namespace is the
// kernel's initial one or not (its inode is fixed); the network namespace is compared with
// PID 1's, which is the node's init once the PID namespace is the node's.
func namespaces(proc string) (pid, network Fact) {
	self, err := os.Readlink(filepath.Join(proc, "self/ns/pid"))
	switch {
	case err != nil:
		pid = Unknown
	case self == initPIDNamespace:
		pid = Yes
	default:
		pid = No
	}
	if pid == No {
		// PID 1 is then the pod's own first process: comparing with it says nothing.
		return pid, Unknown
	}
	mine, err1 := os.Readlink(filepath.Join(proc, "self/ns/net"))
	init, err2 := os.Readlink(filepath.Join(proc, "1/ns/net"))
	switch {
	case err1 != nil || err2 != nil:
		network = Unknown // reading PID 1's namespace needs ptrace access some sandboxes deny
	case mine == init:
		network = Yes
	default:
		network = No
	}
	return pid, network
}

// BTF returns the kernel's BTF file, or an error that names where it looked.
func (e Env) BTF() (string, error) {
	if e.KernelBTF != "" {
		return e.KernelBTF, nil
	}
	return "", fmt.Errorf("kernel BTF not available (looked at %s): the kernel needs CONFIG_DEBUG_INFO_BTF=y, or give its BTF with --kernel-btf FILE",
		strings.Join(e.btfTried, ", "))
}

// CRISocket finds the container runtime's socket on the node. The error says what to do when
// there is none: on a node that is not this one's CRI node, --cri-socket; in a pod, mount the
// node's root at /host.
func (e Env) CRISocket() (string, error) {
	s, err := cri.FindSocket(e.CRIRoot)
	if err == nil {
		return s, nil
	}
	var tried []string
	for _, d := range cri.DefaultSockets {
		tried = append(tried, e.hostFile(d))
	}
	if e.DebugPod {
		return "", fmt.Errorf("no CRI socket under %s (tried %s): is containerd or CRI-O this node's runtime? give the socket with --cri-socket",
			e.HostRoot, strings.Join(tried, ", "))
	}
	return "", fmt.Errorf("no CRI socket found (tried %s): give it with --cri-socket; from a pod, mount the node's root at /host: kubectl debug node/NODE --profile=sysadmin gives it",
		strings.Join(tried, ", "))
}

// CheckPrivilege says what is missing to load BPF programs, in the words that fit where
// pathtrace runs: in a debug pod the fix is the pod's profile, not sudo.
func (e Env) CheckPrivilege() error {
	return e.privilegeError(privilege.Check())
}

func (e Env) privilegeError(err error) error {
	if err == nil || !e.DebugPod {
		return err
	}
	return errors.New("tracing needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), which this pod lacks: start it with `kubectl debug node/NODE -it --profile=sysadmin ...` (a privileged pod)")
}

// HostPath turns a path on the node, as the container runtime reports it (a pod's
// "/var/run/netns/cni-..." or "/proc/1234/ns/net"), into one this process can open.
func (e Env) HostPath(p string) string {
	if !filepath.IsAbs(p) {
		return p
	}
	if rest, ok := strings.CutPrefix(path.Clean(p), "/proc/"); ok {
		// The node's processes are in our own /proc (host PID namespace); the node's
		// /host/proc, if mounted at all, is a procfs of another view.
		return filepath.Join(e.Proc, rest)
	}
	return e.hostFile(p)
}

// hostFile is the node's file p, following symbolic links inside the node's root: the node's
// /var/run is a link to /run, and an absolute link read from inside a debug pod would lead to
// the pod's own /run.
func (e Env) hostFile(p string) string {
	if e.HostRoot == "/" {
		return p
	}
	return filepath.Join(e.HostRoot, resolveIn(e.HostRoot, p))
}

// resolveIn resolves the symbolic links of p (an absolute path) as if root were "/", and
// returns the resolved absolute path relative to root. Components that do not exist are kept
// as they are.
func resolveIn(root, p string) string {
	todo := strings.Split(strings.TrimPrefix(path.Clean("/"+p), "/"), "/")
	cur := "/"
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if hops++; err != nil || hops > 40 {
			cur = next // a loop or an unreadable link: leave it to whoever opens the path
			continue
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		todo = append(strings.Split(strings.Trim(target, "/"), "/"), todo...)
	}
	return cur
}

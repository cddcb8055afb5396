//go:build linux

// Command init is PID 1 of the vmtest initramfs. It mounts what the tests need (proc, sysfs,
// devtmpfs, tracefs, debugfs, bpffs, cgroup2, tmpfs on /run and /tmp), brings lo up, loads the
// kernel modules the runner put in the initramfs, runs each test binary of the manifest with
// its output on the serial console, prints marker lines the runner parses (vmspec), prints the
// kernel's warnings, and powers the VM off.
//
// The same binary is /sbin/modprobe: the kernel runs it to autoload a module (request_module),
// and it loads one of the modules in the initramfs by name or alias, or records the miss.
//
// It imports only the standard library, x/sys/unix and vmspec: nothing here may touch BPF or
// netlink before the mounts are done, and the tests run as separate processes.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/vmtest/vmspec"
)

func main() {
	if filepath.Base(os.Args[0]) == "modprobe" {
		os.Exit(modprobe(os.Args[1:]))
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "vmtest init: not PID 1; this program only runs as a VM's init")
		os.Exit(2)
	}
	status := run()
	fmt.Println(vmspec.Line(vmspec.EvDone, "status", strconv.Itoa(status)))
	unix.Sync()
	// Power off; if that fails, returning from PID 1 panics the kernel, and panic=-1 with
	// qemu's -no-reboot ends the VM all the same.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Println(vmspec.Line(vmspec.EvNote, "msg", vmspec.Quote("power off: "+err.Error())))
	}
	time.Sleep(5 * time.Second)
}

func note(format string, a ...any) {
	fmt.Println(vmspec.Line(vmspec.EvNote, "msg", vmspec.Quote(fmt.Sprintf(format, a...))))
}

func run() int {
	mountAll()
	var uts unix.Utsname
	unix.Uname(&uts)
	fmt.Println(vmspec.Line(vmspec.EvInit, "kernel", unix.ByteSliceToString(uts.Release[:]),
		"cpus", strconv.Itoa(cpus()), "uptime", uptime()))

	// Kernel messages on the console would cut the tests' lines in two: keep only
	// emergencies there, and print the warnings and errors at the end instead.
	os.WriteFile("/proc/sys/kernel/printk", []byte("1 4 1 7"), 0)

	data, err := os.ReadFile(vmspec.ManifestPath)
	if err != nil {
		note("read manifest: %v", err)
		return 1
	}
	var m vmspec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		note("parse manifest: %v", err)
		return 1
	}
	loadModules(m.Modules)
	if err := linkUp("lo"); err != nil {
		note("lo up: %v", err)
	}

	if m.MemlockUnlimited {
		inf := &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, inf); err != nil {
			note("setrlimit memlock: %v", err)
		}
	}
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
	note("RLIMIT_MEMLOCK for the tests: %s", fmtLimit(lim.Cur))

	status := 0
	for _, t := range m.Tests {
		if code := runTest(t, time.Duration(m.TimeoutSec)*time.Second); code != 0 {
			status = 1
		}
	}
	if b, err := os.ReadFile(vmspec.ModprobeLog); err == nil && len(b) > 0 {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			req, res, _ := strings.Cut(l, "\t")
			fmt.Println(vmspec.Line(vmspec.EvProbe, "request", req, "result", vmspec.Quote(res)))
		}
	}
	kernelWarnings()
	return status
}

func fmtLimit(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(v/1024, 10) + " KiB"
}

func cpus() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return 0
	}
	return set.Count()
}

func uptime() string {
	b, _ := os.ReadFile("/proc/uptime")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

type mnt struct {
	fstype, target, data string
	flags                uintptr
	optional             bool
}

func mountAll() {
	mounts := []mnt{
		{fstype: "proc", target: "/proc", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{fstype: "sysfs", target: "/sys", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{fstype: "devtmpfs", target: "/dev", data: "mode=0755", flags: unix.MS_NOSUID},
		{fstype: "devpts", target: "/dev/pts", data: "mode=0620,ptmxmode=0666", flags: unix.MS_NOSUID | unix.MS_NOEXEC, optional: true},
		{fstype: "tmpfs", target: "/dev/shm", data: "mode=1777", flags: unix.MS_NOSUID | unix.MS_NODEV},
		{fstype: "tmpfs", target: "/run", data: "mode=0755", flags: unix.MS_NOSUID | unix.MS_NODEV},
		{fstype: "tmpfs", target: "/tmp", data: "mode=1777", flags: unix.MS_NOSUID | unix.MS_NODEV},
		{fstype: "tracefs", target: "/sys/kernel/tracing", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{fstype: "debugfs", target: "/sys/kernel/debug", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, optional: true},
		{fstype: "bpf", target: "/sys/fs/bpf", data: "mode=0700", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{fstype: "cgroup2", target: "/sys/fs/cgroup", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, optional: true},
	}
	for _, m := range mounts {
		os.MkdirAll(m.target, 0o755)
		if err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			note("mount %s on %s: %v", m.fstype, m.target, err)
		}
	}
	// ip-netns(8) and the lab keep named namespaces here; /run is shared like systemd's.
	os.MkdirAll("/run/netns", 0o755)
	unix.Mount("", "/", "", unix.MS_REC|unix.MS_SHARED, "")
	for _, l := range [][2]string{{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}} {
		os.Symlink(l[0], l[1])
	}
}

// loadModules loads names and their dependencies, in order.
func loadModules(names []string) {
	deps := readDeps()
	done := map[string]bool{}
	for _, name := range names {
		start := time.Now()
		var order []string
		for _, d := range deps[name] {
			if !done[d] {
				order = append(order, d)
			}
		}
		order = append(order, name)
		for _, m := range order {
			if done[m] {
				continue
			}
			done[m] = true
			err := loadModule(m)
			res := "ok"
			switch {
			case errors.Is(err, unix.EEXIST):
				res = "exists"
			case err != nil:
				res = "error"
			}
			kv := []string{"name", m, "result", res}
			if err != nil && res == "error" {
				kv = append(kv, "err", vmspec.Quote(err.Error()))
			}
			if m == name {
				kv = append(kv, "ms", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
			}
			fmt.Println(vmspec.Line(vmspec.EvModule, kv...))
		}
	}
}

func readDeps() map[string][]string {
	deps := map[string][]string{}
	f, err := os.Open(vmspec.DepFile)
	if err != nil {
		return deps
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if ok {
			deps[name] = strings.Fields(rest)
		}
	}
	return deps
}

func loadModule(name string) error {
	f, err := os.Open(filepath.Join(vmspec.ModulesDir, name+".ko"))
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.FinitModule(int(f.Fd()), "", 0)
}

// modprobe is what the kernel runs as "/sbin/modprobe -q -- NAME" to autoload a module.
func modprobe(args []string) int {
	var name string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			name = a
		}
	}
	if name == "" {
		return 1
	}
	mod := resolveAlias(name)
	result := "missing"
	if mod != "" {
		result = "loaded " + mod
		for _, m := range append(readDeps()[mod], mod) {
			if err := loadModule(m); err != nil && !errors.Is(err, unix.EEXIST) {
				result = fmt.Sprintf("%s: load %s: %v", mod, m, err)
				break
			}
		}
	}
	if f, err := os.OpenFile(vmspec.ModprobeLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
		fmt.Fprintf(f, "%s\t%s\n", name, result)
		f.Close()
	}
	if strings.HasPrefix(result, "loaded") {
		return 0
	}
	return 1
}

func resolveAlias(name string) string {
	norm := strings.ReplaceAll(name, "-", "_")
	if _, err := os.Stat(filepath.Join(vmspec.ModulesDir, norm+".ko")); err == nil {
		return norm
	}
	f, err := os.Open(vmspec.AliasFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pat, mod, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if ok, _ := path.Match(pat, name); ok {
			return mod
		}
	}
	return ""
}

func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

func runTest(t vmspec.Test, timeout time.Duration) int {
	fmt.Println(vmspec.Line(vmspec.EvBegin, "name", t.Name, "uptime", uptime()))
	start := time.Now()
	cmd := exec.Command(t.Path, t.Args...)
	cmd.Dir = t.Dir
	cmd.Env = append([]string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/root", "TMPDIR=/tmp", "USER=root"}, t.Env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	code := -1
	if err := cmd.Start(); err != nil {
		note("start %s: %v", t.Path, err)
	} else {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var timer <-chan time.Time
		if timeout > 0 {
			timer = time.After(timeout)
		}
		select {
		case <-done:
		case <-timer:
			note("%s still running after %s: SIGQUIT, then SIGKILL", t.Name, timeout)
			cmd.Process.Signal(unix.SIGQUIT)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
				<-done
			}
		}
		code = cmd.ProcessState.ExitCode()
		// A test binary's children (pathtrace runs) must not outlive it.
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	}
	fmt.Println(vmspec.Line(vmspec.EvEnd, "name", t.Name, "exit", strconv.Itoa(code),
		"seconds", strconv.FormatFloat(time.Since(start).Seconds(), 'f', 1, 64)))
	return code
}

// kernelWarnings prints the kernel log's warnings and worse (the console showed only
// emergencies), and any oops or WARN trace in full.
func kernelWarnings() {
	size, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil || size <= 0 {
		size = 1 << 20
	}
	buf := make([]byte, size)
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		note("read kernel log: %v", err)
		return
	}
	fmt.Println("kernel log, warnings and worse:")
	for _, l := range bytes.Split(buf[:n], []byte("\n")) {
		// "<4>[    1.234] text": level 0..4 is emergency..warning.
		if len(l) > 3 && l[0] == '<' && l[2] == '>' && l[1] >= '0' && l[1] <= '4' {
			fmt.Printf("kmsg: %s\n", l)
		}
	}
}

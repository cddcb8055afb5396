package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pathtrace/pathtrace/vmtest/vmspec"
)

// VMResult is one kernel's run of one case.
type VMResult struct {
	Suite   string
	Kernel  *Kernel
	Uname   string // what the VM's init reported
	Err     error  // could not fetch, build or boot
	Log     string
	Build   time.Duration // initramfs
	Boot    time.Duration // qemu start to init's first marker
	Tests   time.Duration // sum of the test binaries' run times
	Total   time.Duration // qemu start to exit
	Booted  bool
	Done    bool // init printed its done marker
	Status  int  // init's status: 0 when every test binary exited 0
	Exits   map[string]int
	Report  *TestReport
	Notes   []string // module problems, modprobe requests, init notes
	Kmsg    []string // kernel warnings and worse
	TimeOut bool
	Tail    []string // the console's last lines, for a run that did not finish
}

func runKernel(c config, q *QEMU, work string, k *Kernel, vc vmCase, cm *common, m *vmspec.Manifest) *VMResult {
	name := vc.label(k.Suite)
	r := &VMResult{Suite: name, Kernel: k, Exits: map[string]int{}, Report: newTestReport()}
	t := time.Now()
	initrd, res, err := buildInitramfs(c, work, k, vc, cm, m)
	r.Build = time.Since(t)
	if err != nil {
		r.Err = fmt.Errorf("initramfs: %w", err)
		return r
	}
	defer os.Remove(initrd)
	st, _ := os.Stat(initrd)
	logf("%s: initramfs %.1f MiB, %d modules (wanted but built in: %s; no such module: %s), in %s",
		name, float64(st.Size())/(1<<20), len(res.Order), listOrNone(res.Builtin), listOrNone(res.Missing), r.Build.Round(100*time.Millisecond))

	r.Log = filepath.Join(c.results, name+".log")
	logFile, err := os.Create(r.Log)
	if err != nil {
		r.Err = err
		return r
	}
	defer logFile.Close()

	// oops=panic: an oops that does not kill PID 1 can leave the VM hanging until the
	// timeout; with it, the VM stops at once (panic=-1 reboots, -no-reboot ends qemu).
	cmdline := "console=ttyS0 panic=-1 oops=panic quiet"
	if c.append != "" {
		cmdline += " " + c.append
	}
	args := append(append([]string{}, q.Args...),
		"-machine", "pc", "-cpu", c.cpu, "-accel", "tcg,thread=multi",
		"-m", strconv.Itoa(c.mem), "-smp", strconv.Itoa(c.smp),
		"-kernel", k.Vmlinuz, "-initrd", initrd, "-append", cmdline,
		"-nographic", "-nic", "none", "-no-reboot",
	)
	args = append(args, c.qemuArgs...)
	fmt.Fprintf(logFile, "# %s %s %s (%s)\n# QEMU %s: %s %s\n", name, k.Package, k.Version, k.Release, q.Version, q.Bin, strings.Join(args, " "))

	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, q.Bin, args...)
	cmd.Env = append(os.Environ(), q.Env...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	logf("%s: booting %s", name, k.Release)
	if err := cmd.Start(); err != nil {
		r.Err = fmt.Errorf("qemu: %w", err)
		return r
	}
	waitErr := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		waitErr <- err
	}()

	// A kernel that hangs before init, or a VM that does not power off after init is done,
	// should not wait for the whole timeout.
	var booted, done atomic.Bool
	bootWatch := time.AfterFunc(c.bootTimeout, func() {
		if !booted.Load() {
			fmt.Fprintf(logFile, "# vmtest: no init after %s: stopping the VM\n", c.bootTimeout)
			cmd.Process.Kill()
		}
	})
	defer bootWatch.Stop()

	var tail []string
	var kernelPanic string
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// The firmware clears the screen with escape sequences; the tty adds \r.
		line := reEscape.ReplaceAllString(strings.ReplaceAll(sc.Text(), "\r", ""), "")
		elapsed := time.Since(start)
		fmt.Fprintln(logFile, line)
		if c.verbose {
			logf("%s| %s", name, line)
		}
		if tail = append(tail, line); len(tail) > 40 {
			tail = tail[1:]
		}
		if i := strings.Index(line, "Kernel panic - not syncing"); i >= 0 && kernelPanic == "" {
			kernelPanic = line[i:]
			if r.Report.current != "" {
				kernelPanic += " (while " + r.Report.current + " ran)"
			}
		}
		if strings.HasPrefix(line, "kmsg: ") {
			r.Kmsg = append(r.Kmsg, strings.TrimPrefix(line, "kmsg: "))
			continue
		}
		ev, ok := vmspec.Parse(line)
		if !ok {
			if done := r.Report.Line(line); done != "" && !c.verbose {
				logf("%s: %s (at %s)", name, done, elapsed.Round(time.Second))
			}
			continue
		}
		switch ev.Kind {
		case vmspec.EvInit:
			booted.Store(true)
			r.Booted, r.Boot, r.Uname = true, elapsed, ev.Fields["kernel"]
			logf("%s: booted %s in %s (guest uptime %ss)", name, r.Uname, elapsed.Round(100*time.Millisecond), ev.Fields["uptime"])
		case vmspec.EvModule:
			if ev.Fields["result"] == "error" {
				r.Notes = append(r.Notes, fmt.Sprintf("module %s: %s", ev.Fields["name"], ev.Fields["err"]))
			}
		case vmspec.EvBegin:
			logf("%s: running %s (%s after boot)", name, ev.Fields["name"], (elapsed - r.Boot).Round(100*time.Millisecond))
		case vmspec.EvEnd:
			code, _ := strconv.Atoi(ev.Fields["exit"])
			r.Exits[ev.Fields["name"]] = code
			secs, _ := strconv.ParseFloat(ev.Fields["seconds"], 64)
			r.Tests += time.Duration(secs * float64(time.Second))
			r.Report.End()
			logf("%s: %s exited %d after %ss", name, ev.Fields["name"], code, ev.Fields["seconds"])
		case vmspec.EvProbe:
			req := ev.Fields["request"]
			if res := ev.Fields["result"]; !strings.HasPrefix(res, "loaded") && !harmlessRequest(req) {
				r.Notes = append(r.Notes, fmt.Sprintf("the kernel asked for module %s: %s", ev.Fields["request"], res))
			}
		case vmspec.EvNote:
			r.Notes = append(r.Notes, ev.Fields["msg"])
		case vmspec.EvDone:
			if !done.Swap(true) {
				time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
			}
			r.Done = true
			r.Status, _ = strconv.Atoi(ev.Fields["status"])
		}
	}
	err = <-waitErr
	r.Total = time.Since(start)
	if kernelPanic != "" {
		r.Err = fmt.Errorf("%s", kernelPanic)
	} else if ctx.Err() != nil {
		r.TimeOut = true
		r.Err = fmt.Errorf("timed out after %s", c.timeout)
	} else if err != nil && !r.Done {
		r.Err = fmt.Errorf("qemu: %w", err)
	}
	if !r.Done {
		r.Tail = tail
		if r.Err == nil && !booted.Load() && time.Since(start) >= c.bootTimeout {
			r.Err = fmt.Errorf("no init after %s", c.bootTimeout)
		} else if r.Err == nil {
			r.Err = fmt.Errorf("VM stopped before init finished")
		}
		if !r.Booted {
			r.Err = fmt.Errorf("did not boot: %w", r.Err)
		}
	}
	logf("%s: VM finished in %s; console log %s", name, r.Total.Round(time.Second), r.Log)
	return r
}

// harmlessRequest says whether a module request that found nothing is noise: bpf_preload is
// asked for on every bpffs mount and Debian does not build it; netdev-<name> whenever a
// device name that does not exist is looked up; net-pf-*-proto-262 when Go probes for MPTCP
// sockets (built in or absent: never a module).
func harmlessRequest(req string) bool {
	return req == "bpf_preload" || strings.HasPrefix(req, "netdev-") ||
		strings.HasSuffix(req, "-proto-262") || strings.Contains(req, "-proto-262-")
}

var reEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_]|c)`)

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, " ")
}

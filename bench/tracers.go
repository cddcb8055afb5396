package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
)

// proc is a tracer process under measurement: pathtrace or bpftrace.
type proc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan error
	start  time.Time // just before exec
	ready  time.Time // ready file created / "ready" printed
	hwm    *hwmSampler
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// wait waits for the process to exit, killing it after timeout.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case err := <-p.done:
		return err
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %s after SIGINT: killed", filepath.Base(p.cmd.Path), timeout)
	}
}

// stopResult is what the end of a tracer process tells.
type stopResult struct {
	Detach  time.Duration // SIGINT to exit
	CPU     time.Duration // utime+stime over its whole life (rusage)
	MaxRSS  uint64        // KiB, rusage ru_maxrss: the kernel's peak RSS of the process
	VmHWMKB uint64        // last VmHWM read while it ran (cross-check of MaxRSS)
}

// interrupt sends SIGINT and waits for the exit.
func (p *proc) interrupt(timeout time.Duration) (stopResult, error) {
	var r stopResult
	t0 := time.Now()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		return r, err
	}
	err := p.wait(timeout)
	r.Detach = time.Since(t0)
	r.VmHWMKB = p.hwm.Stop()
	if ps := p.cmd.ProcessState; ps != nil {
		r.CPU = ps.UserTime() + ps.SystemTime()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			r.MaxRSS = uint64(ru.Maxrss)
		}
	}
	if err != nil {
		return r, fmt.Errorf("%v: %s", err, strings.TrimSpace(p.stderr.String()))
	}
	return r, nil
}

// pathtraceProc is a running pathtrace with its trace file and counters.
type pathtraceProc struct {
	proc
	dir   string
	json  string
	stats *ebpf.Map
}

// runDir in a config's arguments stands for the run's temporary directory.
const runDir = "{run-dir}"

// startPathtrace runs bin with args plus --json/--ready-file/--color never, stdout to out, and
// waits for the ready file: attach time is exec to ready file.
func startPathtrace(bin string, args []string, out io.Writer) (*pathtraceProc, error) {
	dir, err := os.MkdirTemp("", "ptbench-")
	if err != nil {
		return nil, err
	}
	p := &pathtraceProc{dir: dir, json: filepath.Join(dir, "trace.json")}
	ready := filepath.Join(dir, "ready")
	args = slices.Clone(args)
	for i := range args {
		args[i] = strings.ReplaceAll(args[i], runDir, dir)
	}
	args = append(args, "--json", p.json, "--ready-file", ready, "--color", "never")
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = out, &p.stderr
	p.done = make(chan error, 1)
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { p.done <- p.cmd.Wait() }()
	p.hwm = sampleHWM(p.pid(), 50*time.Millisecond)
	deadline := p.start.Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			p.ready = time.Now()
			break
		}
		select {
		case err := <-p.done:
			p.hwm.Stop()
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pathtrace exited before it was ready (%v): %s", err, strings.TrimSpace(p.stderr.String()))
		default:
		}
		if time.Now().After(deadline) {
			p.cmd.Process.Kill()
			<-p.done
			p.hwm.Stop()
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pathtrace not ready after 30s: %s", strings.TrimSpace(p.stderr.String()))
		}
		time.Sleep(2 * time.Millisecond)
	}
	p.stats, err = statsMap(p.pid())
	if err != nil {
		// Not fatal: events/s is then missing from this run.
		fmt.Fprintf(os.Stderr, "bench: pathtrace counters: %v\n", err)
	}
	return p, nil
}

func (p *pathtraceProc) counters() (kernelStats, bool) {
	if p.stats == nil {
		return kernelStats{}, false
	}
	s, err := readKernelStats(p.stats)
	return s, err == nil
}

// traceFile is what the bench reads back from pathtrace's --json.
type traceFile struct {
	Bytes      int64
	Packets    int
	Hops       int
	LostEvents uint64
	Untracked  uint64
	Skipped    uint64
	RoutesSkip uint64
	OverBudget uint64 // matching packets not traced, over the budget (--max-rate)
	NotKept    uint64 // completed packets past --max-packets: counted, not in the trace
	EndReason  string
}

func (p *pathtraceProc) stop() (stopResult, traceFile, error) {
	defer os.RemoveAll(p.dir)
	if p.stats != nil {
		defer p.stats.Close()
	}
	r, err := p.interrupt(120 * time.Second)
	if err != nil {
		return r, traceFile{}, err
	}
	var tf traceFile
	f, err := os.Open(p.json)
	if err != nil {
		return r, tf, fmt.Errorf("read trace: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		tf.Bytes = st.Size()
	}
	var t struct {
		Meta struct {
			LostEvents uint64 `json:"lost_events"`
			Untracked  uint64 `json:"untracked"`
			Skipped    uint64 `json:"skipped"`
			RoutesSkip uint64 `json:"routes_skipped"`
			OverBudget uint64 `json:"over_budget"`
			NotKept    uint64 `json:"not_kept"`
			EndReason  string `json:"end_reason"`
		} `json:"meta"`
		Packets []struct {
			Hops []struct{} `json:"hops"`
		} `json:"packets"`
	}
	if err := json.NewDecoder(bufio.NewReaderSize(f, 1<<20)).Decode(&t); err != nil {
		return r, tf, fmt.Errorf("parse trace: %w", err)
	}
	tf.LostEvents, tf.Untracked, tf.Skipped, tf.EndReason = t.Meta.LostEvents, t.Meta.Untracked, t.Meta.Skipped, t.Meta.EndReason
	tf.RoutesSkip, tf.NotKept, tf.OverBudget = t.Meta.RoutesSkip, t.Meta.NotKept, t.Meta.OverBudget
	tf.Packets = len(t.Packets)
	for _, pk := range t.Packets {
		tf.Hops += len(pk.Hops)
	}
	return r, tf, nil
}

// bpftraceProc is a running bpftrace with bench/flow.bt, its output lines counted.
type bpftraceProc struct {
	proc
	mu       sync.Mutex
	lines    uint64 // event lines read
	lost     uint64 // "Lost N events" reported by bpftrace
	matched  uint64 // @matched printed at exit: events the kernel side matched
	readDone chan struct{}
}

var lostRe = regexp.MustCompile(`Lost (\d+) events`)

func startBpftrace(script string, a, b uint32) (*bpftraceProc, error) {
	p := &bpftraceProc{readDone: make(chan struct{})}
	p.cmd = exec.Command("bpftrace", script, strconv.FormatUint(uint64(a), 10), strconv.FormatUint(uint64(b), 10))
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.done = make(chan error, 1)
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	p.hwm = sampleHWM(p.pid(), 50*time.Millisecond)
	ready := make(chan struct{})
	go func() {
		defer close(p.readDone)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		said := false
		for sc.Scan() {
			line := sc.Bytes()
			switch {
			case bytes.HasPrefix(line, []byte("tracepoint:")):
				p.mu.Lock()
				p.lines++
				p.mu.Unlock()
			case !said && string(line) == "ready":
				said = true
				close(ready)
			case bytes.HasPrefix(line, []byte("@matched:")):
				n, _ := strconv.ParseUint(strings.TrimSpace(string(line[len("@matched:"):])), 10, 64)
				p.mu.Lock()
				p.matched = n
				p.mu.Unlock()
			default:
				if m := lostRe.FindSubmatch(line); m != nil {
					n, _ := strconv.ParseUint(string(m[1]), 10, 64)
					p.mu.Lock()
					p.lost += n
					p.mu.Unlock()
				}
			}
		}
	}()
	// Wait only after the reader has the pipe: Wait closes it.
	go func() { <-p.readDone; p.done <- p.cmd.Wait() }()
	select {
	case <-ready:
		p.ready = time.Now()
		return p, nil
	case err := <-p.done:
		p.hwm.Stop()
		return nil, fmt.Errorf("bpftrace exited before it was ready (%v): %s", err, strings.TrimSpace(p.stderr.String()))
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.hwm.Stop()
		return nil, errors.New("bpftrace not ready after 60s")
	}
}

func (p *bpftraceProc) lineCount() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lines
}

func (p *bpftraceProc) stop() (stopResult, uint64, uint64, uint64, error) {
	r, err := p.interrupt(60 * time.Second)
	<-p.readDone
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range lostRe.FindAllStringSubmatch(p.stderr.String(), -1) {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		p.lost += n
	}
	return r, p.lines, p.lost, p.matched, err
}

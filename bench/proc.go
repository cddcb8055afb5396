package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pathtrace/pathtrace/bpf"
	"github.com/pathtrace/pathtrace/tracer"
)

// clkTck is USER_HZ, the unit of utime/stime in /proc/<pid>/stat: 100 on every Linux
// architecture Go supports.
const clkTck = 100

// cpuTime is utime+stime of a whole process (every thread), from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces and parentheses: fields start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// After the name: state(3) ppid(4) ... utime(14) stime(15); f[0] is field 3.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// statusKB reads one "Key:   N kB" line of /proc/<pid>/status.
func statusKB(pid int, key string) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, key)
}

// hwmSampler reads VmHWM every interval until stopped, keeping the last value read: the
// process's peak RSS as of the last sample before it exited.
type hwmSampler struct {
	mu   sync.Mutex
	last uint64
	stop chan struct{}
	done chan struct{}
}

func sampleHWM(pid int, every time.Duration) *hwmSampler {
	s := &hwmSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if v, err := statusKB(pid, "VmHWM"); err == nil {
				s.mu.Lock()
				s.last = v
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *hwmSampler) Stop() uint64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// kernelStats are pathtrace's own per-CPU counters (bpf/include/pathtrace.h, enum stat_index),
// read from outside the process: the map is found among the process's file descriptors.
type kernelStats struct {
	Events        uint64 `json:"events"`         // written to the ring buffer: delivered to userspace
	Lost          uint64 `json:"lost"`           // found the ring buffer full
	TrackFull     uint64 `json:"track_full"`     // packets the tracking map could not hold
	Skipped       uint64 `json:"skipped"`        // packets not started because the ring was 3/4 full
	RoutesSkipped uint64 `json:"routes_skipped"` // route lookups not reported for the same reason
	OverBudget    uint64 `json:"over_budget"`    // packets not started because the budget (--max-rate) was spent
}

func (a kernelStats) sub(b kernelStats) kernelStats {
	return kernelStats{Events: a.Events - b.Events, Lost: a.Lost - b.Lost, TrackFull: a.TrackFull - b.TrackFull,
		Skipped: a.Skipped - b.Skipped, RoutesSkipped: a.RoutesSkipped - b.RoutesSkipped, OverBudget: a.OverBudget - b.OverBudget}
}

// statsMap opens the "stats" map a process holds, by the map IDs in /proc/<pid>/fdinfo.
func statsMap(pid int) (*ebpf.Map, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			v, ok := strings.CutPrefix(line, "map_id:")
			if !ok {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				continue
			}
			m, err := ebpf.NewMapFromID(ebpf.MapID(id))
			if err != nil {
				continue
			}
			if info, err := m.Info(); err == nil && info.Name == bpf.PathtraceMapStats && m.Type() == ebpf.PerCPUArray {
				return m, nil
			}
			m.Close()
		}
	}
	return nil, fmt.Errorf("pid %d holds no BPF map named %q", pid, bpf.PathtraceMapStats)
}

func readKernelStats(m *ebpf.Map) (kernelStats, error) {
	s, err := tracer.ReadStats(m)
	return kernelStats{Events: s.Events, Lost: s.Lost, TrackFull: s.TrackFull, Skipped: s.Skipped,
		RoutesSkipped: s.RoutesSkipped, OverBudget: s.OverBudget}, err
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// cpuBusy returns the busy and total jiffies of all CPUs, from /proc/stat.
func cpuBusy() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, s := range f[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		if i == 7 { // steal: time the hypervisor gave to someone else; not ours to count
			continue
		}
		if i >= 8 { // guest, guest_nice: already in user/nice
			break
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// idleCheck measures, over d with nothing of the bench running, how busy the machine is: the
// share of all CPUs that other processes use.
func idleCheck(d time.Duration) float64 {
	b0, t0 := cpuBusy()
	time.Sleep(d)
	b1, t1 := cpuBusy()
	if t1 <= t0 {
		return 0
	}
	return 100 * float64(b1-b0) / float64(t1-t0)
}

// procCPU is one process's CPU so far: its own and its reaped children's (utime, stime,
// cutime, cstime), and its parent.
type procCPU struct {
	ppid int
	cpu  uint64 // clock ticks
}

// procSnapshot reads every process's CPU from /proc.
func procSnapshot() map[int]procCPU {
	snap := map[int]procCPU{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return snap
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		var cpu uint64
		for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseUint(f[k], 10, 64)
			cpu += v
		}
		snap[pid] = procCPU{ppid: ppid, cpu: cpu}
	}
	return snap
}

// otherCPU is the CPU time that processes other than the bench and its descendants used
// between two snapshots: other people's work that shared the machine with the measurement.
// Kernel threads are left out (ksoftirqd does the bench's own packets' work too); a process
// that started and ended between the snapshots is counted only through its parent's cutime.
func otherCPU(before, after map[int]procCPU, self int, window time.Duration) time.Duration {
	// A process new since the first snapshot contributes all its CPU, but never more than the
	// window could hold: one whose first read failed, or a reused pid, must not count its past.
	maxTicks := uint64(window.Seconds()*clkTck) * uint64(runtime.NumCPU())
	ours := func(pid int) bool {
		for n := 0; n < 64 && pid > 2; n++ {
			if pid == self {
				return true
			}
			p, ok := after[pid]
			if !ok {
				if p, ok = before[pid]; !ok {
					return false
				}
			}
			pid = p.ppid
		}
		return false
	}
	kernel := func(pid int) bool {
		p, ok := after[pid]
		return pid == 2 || (ok && p.ppid == 2)
	}
	var ticks uint64
	for pid, a := range after {
		if pid == self || kernel(pid) || ours(pid) {
			continue
		}
		if b, ok := before[pid]; ok && a.cpu >= b.cpu {
			ticks += min(a.cpu-b.cpu, maxTicks)
		} else if !ok {
			ticks += min(a.cpu, maxTicks) // started since
		}
	}
	return time.Duration(ticks) * time.Second / clkTck
}

package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/pathtrace/pathtrace/tracer"
	"github.com/pathtrace/pathtrace/tracer/nftrace"
)

// ourPrograms lists loaded BPF programs that are pathtrace's, by the kernel's own listing.
func ourPrograms() ([]string, error) {
	progs, err := tracer.LoadedPrograms()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, name := range progs {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// ourMaps lists loaded BPF maps that are pathtrace's, by name.
func ourMaps() ([]string, error) {
	names := map[string]bool{"events": true, "tracked": true, "stats": true, "learned": true, "learned_count": true, "scratch": true, "nf_calls": true}
	var found []string
	id := ebpf.MapID(0)
	for {
		next, err := ebpf.MapGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return found, nil
		}
		if err != nil {
			return nil, err
		}
		id = next
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue
		}
		info, err := m.Info()
		m.Close()
		if err == nil && names[info.Name] {
			found = append(found, "map "+info.Name)
		}
	}
}

// ourTracefsEvents lists kprobe events pathtrace would have left in tracefs: it uses perf-link
// probes only, so there must never be any.
func ourTracefsEvents() []string {
	var found []string
	for _, f := range []string{"/sys/kernel/tracing/kprobe_events", "/sys/kernel/debug/tracing/kprobe_events"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "pathtrace") || strings.Contains(line, "ebpf_") {
				found = append(found, f+": "+line)
			}
		}
	}
	return found
}

// ourTables lists pathtrace's nftables tracing tables left in the host namespace or any named one.
func ourTables() ([]string, error) {
	if !hasNetfilter() {
		// No nf_tables, no table; and nftables.WithNetNSFd would panic (see nftrace.dialIn).
		return nil, nil
	}
	paths := []string{"/proc/self/ns/net"}
	named, _ := filepath.Glob("/run/netns/*")
	paths = append(paths, named...)
	var left []string
	for _, p := range paths {
		ns, err := netns.GetFromPath(p)
		if err != nil {
			continue // removed meanwhile
		}
		c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
		if err != nil {
			ns.Close()
			return nil, err
		}
		tables, err := c.ListTables()
		ns.Close()
		if err != nil {
			continue // no nf_tables in that namespace
		}
		for _, tb := range tables {
			if strings.HasPrefix(tb.Name, nftrace.TablePrefix) {
				left = append(left, p+": "+tb.Name)
			}
		}
	}
	return left, nil
}

// requireNothingLeft checks that pathtrace's programs (and so its links, which hold them), maps,
// tracing tables and tracefs events are gone after it exited; the kernel frees them shortly after the last reference goes, so allow it a moment.
func requireNothingLeft(t *testing.T) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		progs, err := ourPrograms()
		if err != nil {
			t.Fatalf("list BPF programs: %v", err)
		}
		tables, err := ourTables()
		if err != nil {
			t.Fatalf("list nftables tables: %v", err)
		}
		maps, err := ourMaps()
		if err != nil {
			t.Fatalf("list BPF maps: %v", err)
		}
		left = append(append(append(progs, tables...), maps...), ourTracefsEvents()...)
		if len(left) == 0 {
			return
		}
	}
	t.Errorf("still there after pathtrace exited: %v", left)
}

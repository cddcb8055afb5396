package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/pathtrace/pathtrace/tracer/nftrace"
)

// ourPrograms lists loaded BPF programs that are pathtrace's, by the kernel's own listing.
func ourPrograms() ([]string, error) {
	var names []string
	id := ebpf.ProgramID(0)
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded in between
		}
		info, err := p.Info()
		p.Close()
		if err == nil && strings.HasPrefix(info.Name, "on_") {
			names = append(names, info.Name)
		}
	}
}

// ourTables lists pathtrace's nftables tracing tables left in the host namespace or any named one.
func ourTables() ([]string, error) {
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

// requireNothingLeft checks that pathtrace's programs and tracing tables are gone after it
// exited; the kernel frees them shortly after the last reference goes, so allow it a moment.
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
		if left = append(progs, tables...); len(left) == 0 {
			return
		}
	}
	t.Errorf("still there after pathtrace exited: %v", left)
}

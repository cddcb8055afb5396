// Package ksym turns kernel text addresses into "function+0xoff" using /proc/kallsyms.
package ksym

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

type symbol struct {
	addr uint64
	name string
}

// Table is a sorted symbol table of kernel text.
type Table struct {
	syms []symbol
}

// Load reads /proc/kallsyms (or path).
func Load(path string) (*Table, error) {
	if path == "" {
		path = "/proc/kallsyms"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read kernel symbols: %w", err)
	}
	defer f.Close()
	t, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("read kernel symbols from %s: %w", path, err)
	}
	return t, nil
}

// Parse reads kallsyms-format lines: "ffffffff81000000 T _text [module]".
func Parse(r io.Reader) (*Table, error) {
	t := &Table{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		// Only text symbols: drop locations are return addresses in code.
		if typ := f[1]; typ != "t" && typ != "T" {
			continue
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		t.syms = append(t.syms, symbol{addr: addr, name: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.syms) == 0 {
		// kptr_restrict hides addresses from processes without CAP_SYSLOG: every address reads 0.
		return nil, fmt.Errorf("no kernel text symbols with addresses (kernel.kptr_restrict hides them without CAP_SYSLOG)")
	}
	sort.Slice(t.syms, func(i, j int) bool { return t.syms[i].addr < t.syms[j].addr })
	return t, nil
}

// Symbolize returns "function+0xoff" for addr, or its hex form when no symbol covers it.
func (t *Table) Symbolize(addr uint64) string {
	if addr == 0 {
		return ""
	}
	if t != nil {
		i := sort.Search(len(t.syms), func(i int) bool { return t.syms[i].addr > addr }) - 1
		if i >= 0 {
			s := t.syms[i]
			return fmt.Sprintf("%s+0x%x", s.name, addr-s.addr)
		}
	}
	return fmt.Sprintf("0x%x", addr)
}

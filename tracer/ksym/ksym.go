// Package ksym turns kernel text addresses into "function+0xoff" using /proc/kallsyms.
package ksym

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
)

// Table is a sorted symbol table of kernel text. A kernel has some 100k text symbols: their
// names are kept NUL-terminated in blocks of blockSize bytes, not as a string each, so the
// table costs a few MB of heap and reading it no more than that again.
type Table struct {
	addrs  []uint64 // ascending
	starts []uint32 // of addrs[i]'s name: its block<<16 | its offset in the block
	blocks [][]byte
}

const blockSize = 1 << 16

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
	var (
		addrs  []uint64
		starts []uint32
		blocks [][]byte
		cur    []byte
	)
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer is no symbol line: skip the rest of it.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			continue
		}
		if addr, name, ok := parseLine(line); ok && len(name) < blockSize && bytes.IndexByte(name, 0) < 0 {
			if len(cur)+len(name)+1 > cap(cur) {
				if cur != nil {
					blocks = append(blocks, cur)
				}
				cur = make([]byte, 0, blockSize)
			}
			addrs = append(addrs, addr)
			starts = append(starts, uint32(len(blocks))<<16|uint32(len(cur)))
			cur = append(append(cur, name...), 0)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if len(addrs) == 0 {
		// kptr_restrict hides addresses from processes without CAP_SYSLOG: every address reads 0.
		return nil, fmt.Errorf("no kernel text symbols with addresses (kernel.kptr_restrict hides them without CAP_SYSLOG)")
	}
	if len(blocks) >= 1<<16 {
		return nil, fmt.Errorf("too many kernel symbols (%d)", len(addrs))
	}
	blocks = append(blocks, cur)

	// Sorted by address into slices of their exact size; among aliases (one address, several
	// names) the file's last one is found.
	order := make([]int32, len(addrs))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return cmp.Compare(addrs[a], addrs[b]) })
	t := &Table{addrs: make([]uint64, len(order)), starts: make([]uint32, len(order)), blocks: blocks}
	for i, j := range order {
		t.addrs[i], t.starts[i] = addrs[j], starts[j]
	}
	return t, nil
}

// parseLine takes one "addr type name [module]" line and returns a text symbol's address and
// name.
func parseLine(line []byte) (uint64, []byte, bool) {
	f0, rest := field(line)
	typ, rest := field(rest)
	name, _ := field(rest)
	// Only text symbols: drop locations are return addresses in code.
	if len(name) == 0 || len(typ) != 1 || (typ[0] != 't' && typ[0] != 'T') || len(f0) == 0 || len(f0) > 16 {
		return 0, nil, false
	}
	var addr uint64
	for _, c := range f0 {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, nil, false
		}
		addr = addr<<4 | uint64(c)
	}
	return addr, name, addr != 0
}

// field splits off the first space- or tab-separated field of b.
func field(b []byte) (f, rest []byte) {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !isSpace(b[j]) {
		j++
	}
	return b[i:j], b[j:]
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// Len is the number of symbols.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.addrs)
}

// name is symbol i's name.
func (t *Table) name(i int) []byte {
	b := t.blocks[t.starts[i]>>16][t.starts[i]&(blockSize-1):]
	return b[:bytes.IndexByte(b, 0)]
}

// Symbolize returns "function+0xoff" for addr, or its hex form when no symbol covers it.
func (t *Table) Symbolize(addr uint64) string {
	if addr == 0 {
		return ""
	}
	if t != nil {
		i := sort.Search(len(t.addrs), func(i int) bool { return t.addrs[i] > addr }) - 1
		if i >= 0 {
			return string(t.name(i)) + "+0x" + strconv.FormatUint(addr-t.addrs[i], 16)
		}
	}
	return "0x" + strconv.FormatUint(addr, 16)
}

package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Module is a kernel module ready for the initramfs: decompressed, with its dependencies.
type Module struct {
	Name    string
	Data    []byte   // the .ko, decompressed: init loads it with finit_module
	Depends []string // direct dependencies (modinfo depends=)
	SoftPre []string // softdep pre: loaded first when present
	Aliases []string
}

// moduleSet resolves module names against one kernel's modules directory. Debian's packages
// ship no modules.dep (depmod runs at install), so dependencies come from each module's own
// .modinfo section.
type moduleSet struct {
	dir     string
	files   map[string]string // name -> path (.ko, .ko.xz, .ko.zst, .ko.gz)
	builtin map[string]bool
	loaded  map[string]*Module
	tainted map[string]bool // excluded, or depending on an excluded module (see resolve)
}

func modName(file string) string {
	base := filepath.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

func newModuleSet(dir string) (*moduleSet, error) {
	s := &moduleSet{dir: dir, files: map[string]string{}, builtin: map[string]bool{}, loaded: map[string]*Module{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			s.files[modName(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			s.builtin[modName(l)] = true
		}
	}
	return s, nil
}

func readModuleFile(p string) ([]byte, error) {
	switch {
	case strings.HasSuffix(p, ".ko"):
		return os.ReadFile(p)
	case strings.HasSuffix(p, ".ko.gz"):
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		z, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		return io.ReadAll(z)
	case strings.HasSuffix(p, ".ko.xz"):
		return exec.Command("xz", "-dc", p).Output()
	case strings.HasSuffix(p, ".ko.zst"):
		return exec.Command("zstd", "-qdc", p).Output()
	}
	return nil, fmt.Errorf("%s: unknown module compression", p)
}

// modinfo returns the key=value strings of a module's .modinfo section.
func modinfo(ko []byte) (map[string][]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	info := map[string][]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if ok {
			info[k] = append(info[k], v)
		}
	}
	return info, nil
}

// parseSoftdep returns the "pre:" modules of a softdep value like "pre: crc32c post: foo".
func parseSoftdep(v string) []string {
	var pre []string
	in := false
	for _, f := range strings.Fields(v) {
		switch f {
		case "pre:":
			in = true
		case "post:":
			in = false
		default:
			if in {
				pre = append(pre, strings.ReplaceAll(f, "-", "_"))
			}
		}
	}
	return pre
}

func (s *moduleSet) load(name string) (*Module, error) {
	if m, ok := s.loaded[name]; ok {
		return m, nil
	}
	p, ok := s.files[name]
	if !ok {
		return nil, fmt.Errorf("no module %s", name)
	}
	data, err := readModuleFile(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	info, err := modinfo(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	m := &Module{Name: name, Data: data, Aliases: info["alias"]}
	for _, d := range info["depends"] {
		for _, n := range strings.Split(d, ",") {
			if n != "" {
				m.Depends = append(m.Depends, strings.ReplaceAll(n, "-", "_"))
			}
		}
	}
	for _, sd := range info["softdep"] {
		m.SoftPre = append(m.SoftPre, parseSoftdep(sd)...)
	}
	s.loaded[name] = m
	return m, nil
}

// Resolution is the outcome of resolving the wanted modules on one kernel.
type Resolution struct {
	Order   []*Module           // every module to put in the initramfs, dependencies first
	Deps    map[string][]string // module -> its transitive dependencies in load order
	Builtin []string            // wanted but built into the kernel
	Missing []string            // wanted but neither a module nor built in
}

// excludedBy says whether module name is one of exclude's names or lies under one of its
// directories (relative to the modules' kernel/ directory), or needs such a module.
func (s *moduleSet) excludedBy(name string, exclude []string) (bool, error) {
	if t, ok := s.tainted[name]; ok {
		return t, nil
	}
	if s.tainted == nil {
		s.tainted = map[string]bool{}
	}
	s.tainted[name] = false // a dependency cycle ends here
	rel, _ := filepath.Rel(filepath.Join(s.dir, "kernel"), s.files[name])
	for _, e := range exclude {
		if name == strings.ReplaceAll(e, "-", "_") || (s.files[name] != "" && strings.HasPrefix(rel, e+"/")) {
			s.tainted[name] = true
			return true, nil
		}
	}
	if _, ok := s.files[name]; !ok {
		return false, nil // built in, or missing
	}
	m, err := s.load(name)
	if err != nil {
		return false, err
	}
	for _, d := range m.Depends {
		if t, err := s.excludedBy(d, exclude); err != nil || t {
			s.tainted[name] = t
			return t, err
		}
	}
	return false, nil
}

// resolve returns the wanted modules, the modules under the onDemand directories (relative to
// the modules' kernel/ directory) and everything they need, dependencies first. Modules that
// exclude names (see excludedBy) are left out; wanting one is an error.
func (s *moduleSet) resolve(wanted, onDemand, exclude []string) (*Resolution, error) {
	r := &Resolution{Deps: map[string][]string{}}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, required bool) error
	visit = func(name string, required bool) error {
		if len(exclude) > 0 {
			out, err := s.excludedBy(name, exclude)
			if err != nil {
				return err
			}
			if out && required {
				return fmt.Errorf("module %s is excluded (or needs an excluded module)", name)
			}
			if out {
				return nil
			}
		}
		switch state[name] {
		case 1:
			if !required {
				return nil // a soft dependency back to a module being resolved
			}
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		if _, ok := s.files[name]; !ok {
			state[name] = 2
			if s.builtin[name] {
				if required {
					r.Builtin = append(r.Builtin, name)
				}
				return nil
			}
			if required {
				r.Missing = append(r.Missing, name)
			}
			return nil
		}
		state[name] = 1
		m, err := s.load(name)
		if err != nil {
			return err
		}
		for _, d := range m.SoftPre {
			if err := visit(d, false); err != nil {
				return err
			}
		}
		for _, d := range m.Depends {
			if err := visit(d, true); err != nil {
				return err
			}
		}
		state[name] = 2
		r.Order = append(r.Order, m)
		return nil
	}
	for _, w := range wanted {
		if err := visit(strings.ReplaceAll(w, "-", "_"), true); err != nil {
			return nil, err
		}
	}
	// The rest are there for the kernel to autoload (request_module runs the init as
	// /sbin/modprobe), as on a real machine: netlink families, tc actions, nft expressions...
	var extra []string
	for name, p := range s.files {
		rel, _ := filepath.Rel(filepath.Join(s.dir, "kernel"), p)
		for _, d := range onDemand {
			if strings.HasPrefix(rel, d+"/") {
				extra = append(extra, name)
				break
			}
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		if err := visit(name, false); err != nil {
			return nil, err
		}
	}
	// Transitive dependencies of each module, in Order's (load) order.
	pos := map[string]int{}
	for i, m := range r.Order {
		pos[m.Name] = i
	}
	for _, m := range r.Order {
		seen := map[string]bool{}
		var walk func(n string)
		walk = func(n string) {
			mm := s.loaded[n]
			if mm == nil {
				return
			}
			for _, d := range append(append([]string{}, mm.SoftPre...), mm.Depends...) {
				if _, in := pos[d]; in && !seen[d] {
					seen[d] = true
					walk(d)
				}
			}
		}
		walk(m.Name)
		var deps []string
		for d := range seen {
			deps = append(deps, d)
		}
		sort.Slice(deps, func(i, j int) bool { return pos[deps[i]] < pos[deps[j]] })
		r.Deps[m.Name] = deps
	}
	return r, nil
}

// depFile and aliasFile are what the VM's init and modprobe helper read (vmspec.DepFile,
// vmspec.AliasFile).
func (r *Resolution) depFile() []byte {
	var b bytes.Buffer
	for _, m := range r.Order {
		fmt.Fprintf(&b, "%s: %s\n", m.Name, strings.Join(r.Deps[m.Name], " "))
	}
	return b.Bytes()
}

func (r *Resolution) aliasFile() []byte {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	for _, m := range r.Order {
		for _, a := range m.Aliases {
			if !strings.ContainsAny(a, " \n") {
				fmt.Fprintf(w, "%s %s\n", a, m.Name)
			}
		}
	}
	w.Flush()
	return b.Bytes()
}

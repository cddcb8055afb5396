package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pathtrace/pathtrace/vmtest/vmspec"
)

// onDemandDirs hold the modules put in the initramfs for the kernel to autoload, besides the
// ones loaded at boot: everything of the network stack, the network drivers (veth, vxlan, ...)
// and the libraries and crypto they use.
var onDemandDirs = []string{"net", "drivers/net", "lib", "crypto", "kernel"}

// buildInitramfs writes the initramfs of one case on the kernel into work and returns its path
// and the modules it resolved.
func buildInitramfs(c config, work string, k *Kernel, vc vmCase, cm *common, base *vmspec.Manifest) (string, *Resolution, error) {
	set, err := newModuleSet(k.ModulesDir)
	if err != nil {
		return "", nil, err
	}
	modules := c.modules
	if vc.modules != nil {
		modules = vc.modules
	}
	res, err := set.resolve(modules, onDemandDirs, vc.exclude)
	if err != nil {
		return "", nil, err
	}
	mp, err := vc.manifest(base)
	if err != nil {
		return "", nil, err
	}
	m := *mp
	m.Modules = nil
	missing := map[string]bool{}
	for _, n := range append(append([]string{}, res.Missing...), res.Builtin...) {
		missing[n] = true
	}
	for _, n := range modules {
		if !missing[n] {
			m.Modules = append(m.Modules, n)
		}
	}

	path := filepath.Join(work, vc.label(k.Suite)+".initramfs")
	f, err := os.Create(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	var w io.Writer = bw
	var zw *gzip.Writer
	if c.compression == "gzip" {
		zw, _ = gzip.NewWriterLevel(bw, gzip.BestSpeed)
		w = zw
	}
	a := newCPIO(w)
	for _, d := range []string{"/proc", "/sys", "/run", "/var", "/usr/bin", "/usr/sbin", "/sbin"} {
		a.Dir(d, 0o755)
	}
	a.Dir("/dev", 0o755)
	// The kernel opens /dev/console for init before anything is mounted.
	a.CharDev("/dev/console", 0o600, 5, 1)
	a.CharDev("/dev/null", 0o666, 1, 3)
	a.Dir("/tmp", 0o1777)
	a.Dir("/root", 0o700)
	a.File("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"))
	a.File("/etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	a.File("/etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n"))
	a.File("/etc/hostname", 0o644, []byte("vmtest\n"))
	for _, cf := range cm.files {
		if cf.link != "" {
			a.Symlink(cf.name, cf.link)
			continue
		}
		data := cf.data
		if cf.src != "" {
			if data, err = os.ReadFile(cf.src); err != nil {
				return "", nil, err
			}
		}
		a.File(cf.name, cf.perm, data)
	}
	for _, t := range m.Tests {
		a.Dir(t.Dir, 0o755)
	}
	a.Symlink("/sbin/modprobe", "/init")
	a.File(vmspec.ManifestPath, 0o644, writeManifest(&m))
	for _, mod := range res.Order {
		a.File(vmspec.ModulesDir+"/"+mod.Name+".ko", 0o644, mod.Data)
	}
	a.File(vmspec.DepFile, 0o644, res.depFile())
	a.File(vmspec.AliasFile, 0o644, res.aliasFile())
	if err := a.Close(); err != nil {
		return "", nil, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return "", nil, err
		}
	}
	if err := bw.Flush(); err != nil {
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		return "", nil, fmt.Errorf("write %s: %w", path, err)
	}
	return path, res, nil
}

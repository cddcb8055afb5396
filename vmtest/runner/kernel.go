package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// Kernel is one Debian cloud kernel unpacked in the cache.
type Kernel struct {
	Suite      string // bullseye, bookworm, trixie
	Package    string // linux-image-6.1.0-50-cloud-amd64-unsigned
	Version    string // Debian version of the package: 6.1.176-1
	Release    string // uname -r: 6.1.0-50-cloud-amd64
	Vmlinuz    string
	ModulesDir string // <root>/lib/modules/<release> or <root>/usr/lib/modules/<release>
}

// apt runs apt-get/apt-cache against a private state for one suite: its own sources.list,
// lists and cache under dir, nothing read from or written to /etc/apt's sources or dpkg's
// status. apt.conf.d still applies (a proxy configured there is used).
type apt struct {
	suite, dir string
}

func (a apt) opts() []string {
	return []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(a.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(a.dir, "sources.list.d"),
		"-o", "Dir::Etc::Preferences=/dev/null",
		"-o", "Dir::Etc::PreferencesParts=" + filepath.Join(a.dir, "preferences.d"),
		"-o", "Dir::State=" + filepath.Join(a.dir, "state"),
		"-o", "Dir::State::Lists=" + filepath.Join(a.dir, "lists"),
		"-o", "Dir::State::status=/dev/null",
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "Acquire::Languages=none",
		"-o", "APT::Sandbox::User=root",
	}
}

func (a apt) setup(trusted bool) error {
	for _, d := range []string{"sources.list.d", "preferences.d", "state", "lists/partial", "cache/archives/partial", "debs"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return err
		}
	}
	opt := "arch=amd64 signed-by=" + keyring
	if trusted {
		opt = "arch=amd64 trusted=yes"
	}
	line := fmt.Sprintf("deb [%s] http://deb.debian.org/debian %s main\n", opt, a.suite)
	return os.WriteFile(filepath.Join(a.dir, "sources.list"), []byte(line), 0o644)
}

func (a apt) cmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, append(a.opts(), args...)...)
	c.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	return c
}

func (a apt) output(name string, args ...string) (string, error) {
	var stderr bytes.Buffer
	c := a.cmd(name, args...)
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// listsFresh says whether the suite's package lists were fetched less than maxAge ago.
func (a apt) listsFresh(maxAge time.Duration) bool {
	m, _ := filepath.Glob(filepath.Join(a.dir, "lists", "*_Packages*"))
	if len(m) == 0 {
		return false
	}
	st, err := os.Stat(filepath.Join(a.dir, "lists", "vmtest.stamp"))
	return err == nil && time.Since(st.ModTime()) < maxAge
}

func (a apt) update() error {
	out, err := a.cmd("apt-get", "-q", "update").CombinedOutput()
	if err == nil && (bytes.Contains(out, []byte("GPG error")) || bytes.Contains(out, []byte("NO_PUBKEY"))) {
		err = errors.New("signature not verified")
	}
	if err != nil {
		return fmt.Errorf("apt-get update (%s): %v\n%s", a.suite, err, out)
	}
	return os.WriteFile(filepath.Join(a.dir, "lists", "vmtest.stamp"), nil, 0o644)
}

// fetchKernel finds the suite's cloud kernel (the version linux-image-cloud-amd64 depends
// on, unsigned build), downloads its .deb unless cached, and unpacks it.
func fetchKernel(cache, spec string, refresh bool, logf func(string, ...any)) (*Kernel, error) {
	suite, pkg, _ := strings.Cut(spec, ":")
	a := apt{suite: suite, dir: filepath.Join(cache, suite)}
	if err := a.setup(false); err != nil {
		return nil, err
	}
	debs := filepath.Join(a.dir, "debs")
	if refresh || !a.listsFresh(24*time.Hour) {
		logf("%s: apt-get update", suite)
		if err := a.update(); err != nil {
			// Offline, or the archive is unreachable: a kernel downloaded before still works.
			if deb := newestDeb(debs, pkg); deb != "" {
				logf("%s: %v\n%s: using the cached %s", suite, err, suite, filepath.Base(deb))
				return unpack(cache, suite, deb)
			}
			return nil, err
		}
	}
	if pkg == "" {
		out, err := a.output("apt-cache", "depends", "linux-image-cloud-amd64")
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
				pkg = f[1]
				break
			}
		}
		if pkg == "" {
			return nil, fmt.Errorf("%s: linux-image-cloud-amd64 depends on no linux-image-*:\n%s", suite, out)
		}
		if !strings.HasSuffix(pkg, "-unsigned") {
			if _, err := a.output("apt-cache", "show", pkg+"-unsigned"); err == nil {
				pkg += "-unsigned"
			}
		}
	}
	deb, err := a.download(pkg)
	if err != nil {
		return nil, err
	}
	return unpack(cache, suite, deb)
}

// download fetches the candidate version of pkg into the debs directory, unless it is there.
func (a apt) download(pkg string) (string, error) {
	out, err := a.output("apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return "", err
	}
	var version, arch string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "Version: "); ok && version == "" {
			version = v
		}
		if v, ok := strings.CutPrefix(l, "Architecture: "); ok && arch == "" {
			arch = v
		}
	}
	if version == "" || arch == "" {
		return "", fmt.Errorf("%s: apt-cache show %s: no Version/Architecture", a.suite, pkg)
	}
	debs := filepath.Join(a.dir, "debs")
	// The name apt-get download gives the file: an epoch's colon is written %3a.
	deb := filepath.Join(debs, fmt.Sprintf("%s_%s_%s.deb", pkg, strings.ReplaceAll(version, ":", "%3a"), arch))
	if _, err := os.Stat(deb); err == nil {
		return deb, nil
	}
	logf("%s: apt-get download %s=%s", a.suite, pkg, version)
	c := a.cmd("apt-get", "-q", "download", pkg+"="+version)
	c.Dir = debs
	if out, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %v\n%s", pkg, err, out)
	}
	if _, err := os.Stat(deb); err != nil {
		return "", fmt.Errorf("apt-get download %s: no %s", pkg, deb)
	}
	return deb, nil
}

func newestDeb(dir, pkg string) string {
	pat := "linux-image-*.deb"
	if pkg != "" {
		pat = pkg + "_*.deb"
	}
	m, _ := filepath.Glob(filepath.Join(dir, pat))
	var best string
	var bestT time.Time
	for _, f := range m {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(bestT) {
			best, bestT = f, st.ModTime()
		}
	}
	return best
}

// unpack extracts deb once into <cache>/<suite>/root/<deb name>.
func unpack(cache, suite, deb string) (*Kernel, error) {
	base := strings.TrimSuffix(filepath.Base(deb), ".deb")
	root := filepath.Join(cache, suite, "root", base)
	if _, err := os.Stat(filepath.Join(root, ".unpacked")); err != nil {
		os.RemoveAll(root)
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, err
		}
		if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dpkg-deb -x %s: %v\n%s", deb, err, out)
		}
		// trixie's modules are .ko.xz: decompress them once here, not on every run.
		if err := decompressModules(root); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(root, ".unpacked"), nil, 0o644); err != nil {
			return nil, err
		}
	}
	f := strings.SplitN(base, "_", 3)
	k := &Kernel{Suite: suite, Package: f[0]}
	if len(f) > 1 {
		k.Version = strings.ReplaceAll(f[1], "%3a", ":")
	}
	vm, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vm) != 1 {
		return nil, fmt.Errorf("%s: want one boot/vmlinuz-* in %s, found %d", suite, deb, len(vm))
	}
	k.Vmlinuz = vm[0]
	k.Release = strings.TrimPrefix(filepath.Base(vm[0]), "vmlinuz-")
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		p := filepath.Join(root, d, k.Release)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			k.ModulesDir = p
		}
	}
	if k.ModulesDir == "" {
		return nil, fmt.Errorf("%s: no modules for %s in %s", suite, k.Release, deb)
	}
	return k, nil
}

// decompressModules turns every .ko.xz/.ko.zst/.ko.gz under root into a .ko.
func decompressModules(root string) error {
	var xz, zst, gz []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil || d.IsDir():
		case strings.HasSuffix(p, ".ko.xz"):
			xz = append(xz, p)
		case strings.HasSuffix(p, ".ko.zst"):
			zst = append(zst, p)
		case strings.HasSuffix(p, ".ko.gz"):
			gz = append(gz, p)
		}
		return nil
	})
	run := func(files []string, tool ...string) error {
		for len(files) > 0 {
			n := min(len(files), 500)
			if out, err := exec.Command(tool[0], append(tool[1:], files[:n]...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v\n%s", strings.Join(tool, " "), err, out)
			}
			files = files[n:]
		}
		return nil
	}
	if err := run(xz, "xz", "-d", "-T0"); err != nil {
		return err
	}
	if err := run(zst, "zstd", "-q", "-d", "--rm"); err != nil {
		return err
	}
	return run(gz, "gzip", "-d")
}

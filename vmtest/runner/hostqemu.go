package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// QEMU is the emulator the VMs run in.
type QEMU struct {
	Bin     string
	Args    []string // -L firmware directories, for a QEMU unpacked in the cache
	Env     []string // QEMU_MODULE_DIR, likewise
	Version string
}

// minQEMU is the oldest QEMU trusted here. Debian 12's QEMU 7.2 corrupts memory under TCG:
// trixie's 6.12 kernel dies in SLUB (double fault or general protection fault in
// __kmalloc*, right after its cmpxchg16b fast path) in about one boot of six, and more often
// under the tests' load; QEMU 10 from bookworm-backports boots it cleanly.
const minQEMU = 8

var reQEMUVersion = regexp.MustCompile(`QEMU emulator version (\d+)\.(\d+)\S*`)

func qemuVersion(q *QEMU) (major int, version string, err error) {
	cmd := exec.Command(q.Bin, "--version")
	cmd.Env = append(os.Environ(), q.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("%s --version: %v: %s", q.Bin, err, strings.TrimSpace(string(out)))
	}
	m := reQEMUVersion.FindStringSubmatch(string(out))
	if m == nil {
		return 0, "", fmt.Errorf("%s --version: no version in %q", q.Bin, out)
	}
	major, _ = strconv.Atoi(m[1])
	return major, strings.TrimPrefix(m[0], "QEMU emulator version "), nil
}

// findQEMU returns the QEMU to use. spec "auto": the system's if it is recent enough, else
// the host release's backports build (e.g. bookworm-backports), fetched with apt-get into the
// cache and unpacked there, nothing installed; its libraries are those the system's
// qemu-system-x86 (scripts/vmtest-deps.sh) already brought. Any other spec is a qemu binary.
func findQEMU(cache, spec string, refresh bool) (*QEMU, error) {
	if spec != "auto" {
		q := &QEMU{Bin: spec}
		_, v, err := qemuVersion(q)
		q.Version = v
		return q, err
	}
	sys := &QEMU{Bin: "qemu-system-x86_64"}
	major, v, sysErr := qemuVersion(sys)
	sys.Version = v
	if sysErr == nil && major >= minQEMU {
		return sys, nil
	}
	q, err := backportsQEMU(cache, refresh)
	if err != nil {
		if sysErr == nil {
			logf("no newer QEMU (%v): using the system's QEMU %s, which is known to crash trixie's kernel now and then", err, sys.Version)
			return sys, nil
		}
		return nil, err
	}
	return q, nil
}

func hostCodename() string {
	b, _ := os.ReadFile("/etc/os-release")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

func backportsQEMU(cache string, refresh bool) (*QEMU, error) {
	code := hostCodename()
	if code == "" {
		return nil, fmt.Errorf("no VERSION_CODENAME in /etc/os-release")
	}
	suite := code + "-backports"
	a := apt{suite: suite, dir: filepath.Join(cache, "qemu-"+suite)}
	if err := a.setup(false); err != nil {
		return nil, err
	}
	if refresh || !a.listsFresh(7*24*time.Hour) {
		logf("%s: apt-get update (for QEMU)", suite)
		if err := a.update(); err != nil {
			if q := cachedQEMU(a.dir); q != nil {
				return q, nil
			}
			return nil, err
		}
	}
	pkgs := []string{"qemu-system-x86", "qemu-system-common", "qemu-system-data", "seabios"}
	var debs []string
	for _, p := range pkgs {
		deb, err := a.download(p)
		if err != nil {
			return nil, err
		}
		debs = append(debs, deb)
	}
	root := filepath.Join(a.dir, "root", strings.TrimSuffix(filepath.Base(debs[0]), ".deb"))
	if _, err := os.Stat(filepath.Join(root, ".unpacked")); err != nil {
		os.RemoveAll(root)
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, err
		}
		for _, deb := range debs {
			if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("dpkg-deb -x %s: %v\n%s", deb, err, out)
			}
		}
		if err := os.WriteFile(filepath.Join(root, ".unpacked"), nil, 0o644); err != nil {
			return nil, err
		}
	}
	q := unpackedQEMU(root)
	_, v, err := qemuVersion(q)
	q.Version = v
	return q, err
}

func unpackedQEMU(root string) *QEMU {
	return &QEMU{
		Bin:  filepath.Join(root, "usr/bin/qemu-system-x86_64"),
		Args: []string{"-L", filepath.Join(root, "usr/share/qemu"), "-L", filepath.Join(root, "usr/share/seabios")},
		Env:  []string{"QEMU_MODULE_DIR=" + filepath.Join(root, "usr/lib/x86_64-linux-gnu/qemu")},
	}
}

// cachedQEMU is the newest QEMU unpacked before, for when the archive cannot be reached.
func cachedQEMU(dir string) *QEMU {
	m, _ := filepath.Glob(filepath.Join(dir, "root", "qemu-system-x86_*", ".unpacked"))
	if len(m) == 0 {
		return nil
	}
	q := unpackedQEMU(filepath.Dir(m[len(m)-1]))
	if _, v, err := qemuVersion(q); err == nil {
		q.Version = v
		return q
	}
	return nil
}

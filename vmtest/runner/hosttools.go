package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
)

// hostTools are the host's network tools that labs and tests run (ip netns exec, nft,
// iptables-nft, tc, setpriv), put in the initramfs with the shared libraries they load, so that
// a test that breaks a lab the way a person would, with the person's tools, runs in the VM as
// it runs on the host. They come from Debian packages `make deps` installs.
var hostTools = []string{"ip", "nft", "tc", "setpriv", "xtables-nft-multi", "xtables-legacy-multi"}

// toolLinks are the names the multi-call binaries answer to.
var toolLinks = map[string]string{
	"/usr/sbin/iptables-nft":     "xtables-nft-multi",
	"/usr/sbin/ip6tables-nft":    "xtables-nft-multi",
	"/usr/sbin/iptables":         "xtables-nft-multi",
	"/usr/sbin/ip6tables":        "xtables-nft-multi",
	"/usr/sbin/iptables-legacy":  "xtables-legacy-multi",
	"/usr/sbin/ip6tables-legacy": "xtables-legacy-multi",
}

// toolData are the files the tools read besides their libraries: xtables' match and target
// extensions (dlopened, so ldd does not list them) and the name databases.
var toolData = []string{"/usr/lib/x86_64-linux-gnu/xtables", "/usr/lib/aarch64-linux-gnu/xtables",
	"/etc/protocols", "/etc/services", "/etc/ethertypes", "/etc/iproute2", "/usr/share/iproute2"}

// lddLib matches a library line of ldd's output: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6
// (0x...)" or the loader's "/lib64/ld-linux-x86-64.so.2 (0x...)".
var lddLib = regexp.MustCompile(`(?m)^\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$`)

// hostToolFiles lists the tools, their links, libraries and data as initramfs files, each at
// its host path.
func hostToolFiles() ([]cfile, error) {
	seen := map[string]bool{}
	var files []cfile
	add := func(path string, perm uint32) {
		if !seen[path] {
			seen[path] = true
			files = append(files, cfile{name: path, perm: perm, src: path})
		}
	}
	var elfs []string
	for _, t := range hostTools {
		p, err := exec.LookPath(t)
		if err != nil {
			return nil, fmt.Errorf("host tool %s: %w (make deps installs it)", t, err)
		}
		if p, err = filepath.EvalSymlinks(p); err != nil {
			return nil, fmt.Errorf("host tool %s: %w", t, err)
		}
		add(p, 0o755)
		elfs = append(elfs, p)
		// The tests' PATH has /usr/sbin and /usr/bin; a tool found in /bin or /sbin on a
		// merged-/usr host is the same file.
		for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
			if dir != filepath.Dir(p) {
				link := filepath.Join(dir, filepath.Base(p))
				if !seen[link] {
					seen[link] = true
					files = append(files, cfile{name: link, link: p})
				}
			}
		}
	}
	for name, target := range toolLinks {
		files = append(files, cfile{name: name, link: target})
	}
	for _, d := range toolData {
		err := filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			add(p, uint32(fi.Mode().Perm()))
			if filepath.Ext(p) == ".so" {
				elfs = append(elfs, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, e := range elfs {
		out, err := exec.Command("ldd", e).Output()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", e, err)
		}
		for _, m := range lddLib.FindAllStringSubmatch(string(out), -1) {
			lib, err := filepath.EvalSymlinks(m[1])
			if err != nil {
				return nil, fmt.Errorf("%s needs %s: %w", e, m[1], err)
			}
			add(lib, 0o755)
			// The loader and libraries are looked up by the name ldd printed.
			if lib != m[1] && !seen[m[1]] {
				seen[m[1]] = true
				files = append(files, cfile{name: m[1], link: lib})
			}
		}
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files, nil
}

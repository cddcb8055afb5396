package kubetest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// The host state a node changes and the harness puts back: sysctls the kubelet sets once at
// start (and ip_forward, which the bridge plugin with isGateway sets), iptables chains the
// kubelet makes (v4 and v6), cgroups under every hierarchy, directories at fixed paths, mounts,
// links and named network namespaces.
var restoredSysctls = []string{
	"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory",
	"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding",
}

// fixedPaths are the paths outside the cluster's own directory that the kubelet, containerd
// and the CNI plugins use whatever they are told. A path that did not exist before is removed.
var fixedPaths = []string{
	"/var/lib/kubelet", "/var/lib/cni", "/var/lib/cni/results", "/var/lib/cni/networks",
	"/run/containerd", "/var/log/pods", "/var/log/containers", "/run/netns", "/var/run/netns",
	"/etc/cni", "/opt/cni", "/var/run/kubernetes", "/run/kubernetes", "/etc/kubernetes",
}

// snapshot is what the host looked like before the cluster started.
type snapshot struct {
	sysctls  map[string]string
	iptables map[string]string // "iptables"/"ip6tables" -> sorted chain list per table
	nft      string            // nft list tables
	cgroups  map[string]bool   // every cgroup directory, two levels deep
	paths    map[string]bool   // fixedPaths that exist
	mounts   map[string]bool
	links    map[string]bool
	netns    map[string]bool
}

func takeSnapshot() *snapshot {
	s := &snapshot{
		sysctls:  map[string]string{},
		iptables: map[string]string{},
		cgroups:  cgroupDirs(),
		paths:    map[string]bool{},
		mounts:   mountPoints(),
		links:    links(),
		netns:    netnsNames(),
		nft:      run("nft", "list", "tables"),
	}
	for _, k := range restoredSysctls {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			s.sysctls[k] = strings.TrimSpace(string(b))
		}
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		s.iptables[ipt] = iptablesChains(ipt)
	}
	for _, p := range fixedPaths {
		if _, err := os.Lstat(p); err == nil {
			s.paths[p] = true
		}
	}
	return s
}

// diff lists how the host now differs from s, one line per difference; empty when it does not.
func (s *snapshot) diff() []string {
	now := takeSnapshot()
	var d []string
	for _, k := range restoredSysctls {
		if s.sysctls[k] != now.sysctls[k] {
			d = append(d, fmt.Sprintf("sysctl %s is %q, was %q", strings.ReplaceAll(k, "/", "."), now.sysctls[k], s.sysctls[k]))
		}
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		if s.iptables[ipt] != now.iptables[ipt] {
			d = append(d, fmt.Sprintf("%s chains are\n%s\nwere\n%s", ipt, now.iptables[ipt], s.iptables[ipt]))
		}
	}
	if s.nft != now.nft {
		d = append(d, fmt.Sprintf("nft tables are\n%s\nwere\n%s", now.nft, s.nft))
	}
	d = append(d, added("cgroup", s.cgroups, now.cgroups)...)
	d = append(d, added("path", s.paths, now.paths)...)
	d = append(d, added("mount", s.mounts, now.mounts)...)
	d = append(d, added("link", s.links, now.links)...)
	d = append(d, added("netns", s.netns, now.netns)...)
	return d
}

func added(what string, before, now map[string]bool) []string {
	var d []string
	for k := range now {
		if !before[k] {
			d = append(d, what+" "+k+" was added")
		}
	}
	for k := range before {
		if !now[k] {
			d = append(d, what+" "+k+" was removed")
		}
	}
	sort.Strings(d)
	return d
}

// restore undoes what a node did to the host since s. It is best effort and returns what it
// could not undo; diff says what is left.
func (s *snapshot) restore(clusterDir, bridge string) []string {
	var errs []string
	// Mounts under the cluster's directory and the fixed paths, deepest first, again until none
	// is left: the kubelet stacks mounts on its root directory (a shared bind mount of itself).
	for pass := 0; pass < 10; pass++ {
		var mnts []string
		for m := range mountPoints() {
			if !s.mounts[m] && ours(m, clusterDir) {
				mnts = append(mnts, m)
			}
		}
		if len(mnts) == 0 {
			break
		}
		sort.Sort(sort.Reverse(sort.StringSlice(mnts)))
		for _, m := range mnts {
			out, err := exec.Command("umount", "-l", m).CombinedOutput()
			if err != nil && pass == 9 {
				errs = append(errs, fmt.Sprintf("umount %s: %v: %s", m, err, out))
			}
		}
	}
	for _, k := range restoredSysctls {
		if v, ok := s.sysctls[k]; ok {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		errs = append(errs, restoreChains(ipt, s.iptables[ipt])...)
	}
	// Tables that iptables-nft made (ip mangle, ip6 nat...) and are now empty.
	before := map[string]bool{}
	for _, l := range strings.Split(s.nft, "\n") {
		before[l] = true
	}
	for _, l := range strings.Split(run("nft", "list", "tables"), "\n") {
		if f := strings.Fields(l); len(f) == 3 && !before[l] {
			if out, err := exec.Command("nft", "delete", "table", f[1], f[2]).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Sprintf("nft delete table %s %s: %v: %s", f[1], f[2], err, out))
			}
		}
	}
	// cgroups: deepest first (rmdir fails on a cgroup with children or tasks).
	var cgs []string
	for c := range cgroupDirsAll() {
		if !s.cgroups[c] && strings.Contains(c, "/kubepods") {
			cgs = append(cgs, c)
		}
	}
	sort.Slice(cgs, func(i, j int) bool { return strings.Count(cgs[i], "/") > strings.Count(cgs[j], "/") })
	for _, c := range cgs {
		if err := os.Remove(c); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err.Error())
		}
	}
	for l := range links() {
		if !s.links[l] && l == bridge {
			if out, err := exec.Command("ip", "link", "del", l).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Sprintf("ip link del %s: %v: %s", l, err, out))
			}
		}
	}
	// Fixed paths, the longest first so that a parent made with its child goes after it.
	paths := append([]string(nil), fixedPaths...)
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for _, p := range paths {
		if !s.paths[p] {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	// What the kubelet and the CNI plugins left inside paths that were there before.
	for _, p := range []string{"/var/lib/cni/results", "/var/lib/cni/networks", "/run/containerd"} {
		if s.paths[p] {
			removeNewUnder(p, clusterDir)
		}
	}
	return errs
}

// ours is whether a mount point is one the cluster made: under its directory or a fixed path.
func ours(m, clusterDir string) bool {
	if strings.HasPrefix(m, clusterDir+"/") {
		return true
	}
	for _, p := range fixedPaths {
		if m == p || strings.HasPrefix(m, p+"/") {
			return true
		}
	}
	return false
}

// removeNewUnder removes the entries of dir whose name mentions the cluster (the CNI network
// name is derived from the cluster's directory) – nothing another user made.
func removeNewUnder(dir, clusterDir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), netName(clusterDir)) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

func run(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// iptablesChains is every table's chains, "table chain" per line, sorted.
func iptablesChains(bin string) string {
	var chains []string
	table := ""
	for _, l := range strings.Split(run(bin+"-save"), "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		case strings.HasPrefix(l, ":"):
			chains = append(chains, table+" "+strings.Fields(l[1:])[0])
		case strings.HasPrefix(l, "-A "):
			chains = append(chains, table+" "+l)
		}
	}
	sort.Strings(chains)
	return strings.Join(chains, "\n")
}

// restoreChains deletes the rules and chains that were not in before.
func restoreChains(bin, before string) []string {
	had := map[string]bool{}
	for _, l := range strings.Split(before, "\n") {
		had[l] = true
	}
	var errs []string
	var newChains [][2]string
	for _, l := range strings.Split(iptablesChains(bin), "\n") {
		if l == "" || had[l] {
			continue
		}
		table, rest, _ := strings.Cut(l, " ")
		if strings.HasPrefix(rest, "-A ") {
			args := append([]string{"-t", table, "-D"}, splitRule(rest[3:])...)
			if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Sprintf("%s %s: %v: %s", bin, strings.Join(args, " "), err, out))
			}
		} else {
			newChains = append(newChains, [2]string{table, rest})
		}
	}
	for _, c := range newChains {
		if out, err := exec.Command(bin, "-t", c[0], "-X", c[1]).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Sprintf("%s -t %s -X %s: %v: %s", bin, c[0], c[1], err, out))
		}
	}
	return errs
}

// splitRule splits an iptables-save rule into arguments, keeping quoted strings whole.
func splitRule(s string) []string {
	var args []string
	var cur strings.Builder
	inQ := false
	for _, r := range s {
		switch {
		case r == '"':
			inQ = !inQ
		case r == ' ' && !inQ:
			if cur.Len() > 0 {
				args = append(args, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args
}

// cgroupDirs is every cgroup directory at most two levels below a hierarchy's root.
func cgroupDirs() map[string]bool {
	m := map[string]bool{}
	for c := range cgroupDirsAll() {
		if topTwo(c) == c {
			m[c] = true
		}
	}
	return m
}

func cgroupDirsAll() map[string]bool {
	m := map[string]bool{}
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	if fi, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil && !fi.IsDir() {
		roots = []string{"/sys/fs/cgroup"} // cgroup v2 only
	}
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() || p == root {
				return nil
			}
			m[p] = true
			return nil
		})
	}
	return m
}

// topTwo cuts a cgroup path to its hierarchy plus two levels (/sys/fs/cgroup/cpu/kubepods/burstable).
func topTwo(p string) string {
	parts := strings.Split(p, "/")
	n := 7 // "", sys, fs, cgroup, <hierarchy>, a, b
	if fi, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil && !fi.IsDir() {
		n = 6
	}
	if len(parts) > n {
		parts = parts[:n]
	}
	return strings.Join(parts, "/")
}

func mountPoints() map[string]bool {
	m := map[string]bool{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 4 {
			m[fs[4]] = true
		}
	}
	return m
}

func links() map[string]bool {
	m := map[string]bool{}
	ents, _ := os.ReadDir("/sys/class/net")
	for _, e := range ents {
		m[e.Name()] = true
	}
	return m
}

func netnsNames() map[string]bool {
	m := map[string]bool{}
	for _, d := range []string{"/run/netns", "/var/run/netns"} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			m[filepath.Join(d, e.Name())] = true
		}
	}
	return m
}

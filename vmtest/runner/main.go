// Command runner is `make vmtest`: it runs pathtrace's end-to-end tests on Debian's cloud
// kernels (bullseye 5.10, bookworm 6.1, trixie 6.12) booted under qemu (TCG: no KVM needed).
//
// For each kernel it fetches the kernel package with apt-get into a private cache, builds an
// initramfs holding the vmtest init (vmtest/init), the kernel modules the tests need, a static
// pathtrace and the test binaries, boots it, reads the serial console for the init's markers
// and the tests' `go test -v` output, saves the console log under vmtest/results/<suite>.log,
// and prints one row per kernel.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/pathtrace/pathtrace/vmtest/vmspec"
)

// defaultModules are loaded at boot, with their dependencies: what the lab (veth, bridge,
// VXLAN, Geneve, IPIP, TUN, tc clsact + BPF, u32 filters with gact/mirred drops) and pathtrace's nftables tracing and the
// scenarios' NAT rules use. Those built into a kernel are skipped. br_netfilter is left out on
// purpose: a Debian host without Docker does not load it, and it changes what a bridge does.
var defaultModules = []string{
	"veth", "bridge", "vxlan", "geneve", "ipip", "tun", "dummy",
	"nfnetlink", "nf_tables", "nf_conntrack", "nf_nat", "nft_chain_nat", "nft_nat", "nft_masq",
	"nft_redir", "nft_ct", "nft_counter", "nft_log", "nft_limit", "nft_reject", "nft_reject_inet",
	"nft_reject_ipv4", "nft_fib", "nft_fib_inet", "nft_fib_ipv4", "nft_hash", "nft_quota",
	"nft_numgen", "nft_objref", "nft_compat", "nft_meta_bridge",
	// iptables-nft's xt matches and targets (kube-proxy's, CNIs'), and legacy iptables (the
	// netfilter scenarios: e2e/catalogue_netfilter_test.go).
	"x_tables", "xt_conntrack", "xt_comment", "xt_multiport", "xt_mark", "xt_addrtype",
	"xt_limit", "xt_tcpudp", "ipt_REJECT", "ip6t_REJECT", // not xt_physdev: it pulls in br_netfilter
	"ip_tables", "iptable_filter", "ip6_tables", "ip6table_filter",
	"sch_ingress", "cls_bpf", "act_bpf", "act_gact", "sch_fq_codel", "cls_u32", "act_mirred",
}

// defaultSkip are tests that cannot run in the VM, by package: they shell out to host
// binaries the initramfs does not have (ip netns exec, iptables-nft, tshark, setpriv).
var defaultSkip = map[string]string{
	"./e2e": "^TestCapture",
}

type config struct {
	kernels     []string
	cases       []vmCase
	pkgs        []string
	cache       string
	results     string
	timeout     time.Duration
	run, skip   string
	mem, smp    int
	parallel    int
	verbose     bool
	refresh     bool
	append      string
	qemuArgs    []string
	modules     []string
	compression string
	cpu         string
	qemu        string
	memlock     bool
	bootTimeout time.Duration
}

func main() {
	var c config
	home, _ := os.UserHomeDir()
	defCache := os.Getenv("PATHTRACE_VMTEST_CACHE")
	if defCache == "" {
		defCache = filepath.Join(home, ".cache", "pathtrace-vmtest")
	}
	kernels := flag.String("kernels", envOr("VMTEST_KERNELS", "bullseye,bookworm,trixie"),
		"comma-separated Debian suites (suite or suite:linux-image-package) [$VMTEST_KERNELS]")
	pkgs := flag.String("pkgs", "./e2e,./tracer", "comma-separated test packages to run in the VM")
	cases := flag.String("cases", envOr("VMTEST_CASES", "default,minimal"), "comma-separated cases (runner/cases.go), or all: how each kernel is booted and what it runs [$VMTEST_CASES]")
	flag.StringVar(&c.cache, "cache", defCache, "download and unpack cache [$PATHTRACE_VMTEST_CACHE]")
	flag.StringVar(&c.results, "results", "vmtest/results", "directory for the console logs and summary")
	// The e2e suite with its scenarios takes ~20 minutes on 5.10 under emulation on two busy cores.
	flag.DurationVar(&c.timeout, "timeout", 45*time.Minute, "per-kernel limit for one VM, boot to power-off")
	flag.DurationVar(&c.bootTimeout, "boot-timeout", 3*time.Minute, "limit from qemu's start to the init's first line")
	flag.StringVar(&c.run, "run", os.Getenv("VMTEST_RUN"), "-test.run pattern [$VMTEST_RUN]")
	flag.StringVar(&c.skip, "skip", "", "extra -test.skip pattern, or'ed with the built-in ones")
	flag.IntVar(&c.mem, "m", 2048, "VM memory, MiB")
	flag.IntVar(&c.smp, "smp", 2, "VM CPUs")
	flag.IntVar(&c.parallel, "parallel", 1, "VMs at once (TCG uses one host thread per vCPU)")
	flag.BoolVar(&c.verbose, "v", os.Getenv("VMTEST_VERBOSE") != "", "echo the serial console [$VMTEST_VERBOSE]")
	flag.BoolVar(&c.refresh, "refresh", false, "apt-get update even if the cached package lists are recent")
	flag.StringVar(&c.append, "append", "", "extra kernel command line")
	qemuArgs := flag.String("qemu-args", "", "extra qemu arguments, space-separated")
	modules := flag.String("modules", strings.Join(defaultModules, ","), "kernel modules to load at boot")
	flag.StringVar(&c.cpu, "cpu", "max", "qemu -cpu model")
	flag.StringVar(&c.qemu, "qemu", envOr("VMTEST_QEMU", "auto"), "qemu binary, or auto: the system's if it is 8.0 or newer, else the backports build [$VMTEST_QEMU]")
	flag.BoolVar(&c.memlock, "memlock-unlimited", false, "raise RLIMIT_MEMLOCK for the tests (default: the kernel's, 64 KiB on 5.10)")
	flag.StringVar(&c.compression, "initramfs", "gzip", "initramfs compression: gzip or none")
	flag.Parse()
	c.kernels = splitList(*kernels)
	var err error
	if c.cases, err = selectCases(splitList(*cases)); err != nil {
		fatalf("-cases: %v", err)
	}
	c.pkgs = splitList(*pkgs)
	c.modules = splitList(*modules)
	c.qemuArgs = strings.Fields(*qemuArgs)
	if _, err := os.Stat("go.mod"); err != nil {
		fatalf("run from the repository root (no go.mod here)")
	}
	os.Exit(run(c))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "vmtest: "+format+"\n", a...)
	os.Exit(2)
}

var logMu sync.Mutex

func logf(format string, a ...any) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Printf("vmtest: "+format+"\n", a...)
}

func run(c config) int {
	start := time.Now()
	if err := os.MkdirAll(c.results, 0o755); err != nil {
		fatalf("%v", err)
	}
	work, err := os.MkdirTemp("", "pathtrace-vmtest-")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(work)

	// Kernels first: a missing download should fail before minutes of building.
	kernels := make([]*Kernel, len(c.kernels))
	fetchErr := make([]error, len(c.kernels))
	for i, spec := range c.kernels {
		t := time.Now()
		kernels[i], fetchErr[i] = fetchKernel(c.cache, spec, c.refresh, logf)
		if fetchErr[i] != nil {
			logf("%s: %v", spec, fetchErr[i])
			continue
		}
		k := kernels[i]
		logf("%s: %s %s (%s) ready in %s", k.Suite, k.Package, k.Version, k.Release, time.Since(t).Round(100*time.Millisecond))
	}

	q, err := findQEMU(c.cache, c.qemu, c.refresh)
	if err != nil {
		fatalf("qemu: %v", err)
	}
	logf("QEMU %s (%s)", q.Version, q.Bin)

	t := time.Now()
	common, manifest, err := buildCommon(c, work)
	if err != nil {
		fatalf("build: %v", err)
	}
	logf("built init, pathtrace and %d test binaries in %s", len(manifest.Tests), time.Since(t).Round(100*time.Millisecond))

	// One VM per kernel and case that boots it, kernels in the order given.
	type job struct {
		k  *Kernel
		vc vmCase
	}
	var jobs []job
	var results []*VMResult
	for i, k := range kernels {
		if k == nil {
			results = append(results, &VMResult{Suite: strings.SplitN(c.kernels[i], ":", 2)[0], Err: fetchErr[i]})
			continue
		}
		for _, vc := range c.cases {
			if vc.boots(k.Suite) {
				jobs = append(jobs, job{k, vc})
			}
		}
	}
	ran := make([]*VMResult, len(jobs))
	sem := make(chan struct{}, max(1, c.parallel))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{} // in the loop: VMs start in the order given
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ran[i] = runKernel(c, q, work, j.k, j.vc, common, manifest)
		}()
	}
	wg.Wait()
	results = append(results, ran...)

	var summary bytes.Buffer
	info := []string{fmt.Sprintf("QEMU %s, TCG, -cpu %s -smp %d -m %d", q.Version, c.cpu, c.smp, c.mem)}
	for _, t := range manifest.Tests {
		for _, a := range t.Args {
			if p, ok := strings.CutPrefix(a, "-test.skip="); ok {
				info = append(info, "not run in the VM (-test.skip): "+t.Name+": "+p)
			}
		}
	}
	ok := writeSummary(&summary, results, info, time.Since(start))
	fmt.Print(summary.String())
	os.WriteFile(filepath.Join(c.results, "summary.txt"), summary.Bytes(), 0o644)
	if !ok {
		return 1
	}
	return 0
}

// common is what every kernel's initramfs holds besides the modules.
type common struct {
	files []cfile
}

type cfile struct {
	name string
	perm uint32
	src  string // host file
	data []byte
	link string // a symbolic link to this target instead
}

func goCmd(env []string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func buildCommon(c config, work string) (*common, *vmspec.Manifest, error) {
	cm := &common{}
	initBin := filepath.Join(work, "init")
	if err := goCmd(nil, "build", "-trimpath", "-ldflags=-s -w", "-o", initBin, "./vmtest/init"); err != nil {
		return nil, nil, err
	}
	// The same static build as `make build`.
	if err := goCmd(nil, "build", "-o", "bin/pathtrace", "./cmd/pathtrace"); err != nil {
		return nil, nil, err
	}
	cm.files = append(cm.files, cfile{name: "/init", perm: 0o755, src: initBin},
		cfile{name: "/bin/pathtrace", perm: 0o755, src: "bin/pathtrace"})

	testTimeout := c.timeout - 3*time.Minute
	if testTimeout < time.Minute {
		testTimeout = c.timeout / 2
	}
	m := &vmspec.Manifest{TimeoutSec: int((testTimeout + time.Minute).Seconds()), MemlockUnlimited: c.memlock}
	// The repository's own testdata (recorded event streams) travels too, where a top-level
	// package's tests find it: ../testdata from /tests/<package>.
	cm.files = append(cm.files, testdataFiles("testdata", "/tests/testdata")...)
	tools, err := hostToolFiles()
	if err != nil {
		return nil, nil, err
	}
	cm.files = append(cm.files, tools...)
	for _, pkg := range c.pkgs {
		name := strings.ReplaceAll(strings.Trim(strings.TrimPrefix(pkg, "./"), "/"), "/", "_")
		bin := filepath.Join(work, name+".test")
		if err := goCmd(nil, "test", "-c", "-trimpath", "-o", bin, pkg); err != nil {
			return nil, nil, err
		}
		cm.files = append(cm.files, cfile{name: "/tests/" + name + ".test", perm: 0o755, src: bin})
		// A package's testdata travels with it; the binary runs in its copy of the directory.
		cm.files = append(cm.files, testdataFiles(filepath.Join(pkg, "testdata"), "/tests/"+name+"/testdata")...)
		args := []string{"-test.v", "-test.count=1", "-test.timeout=" + testTimeout.String()}
		if c.run != "" {
			args = append(args, "-test.run="+c.run)
		}
		var skips []string
		if s := defaultSkip[pkg]; s != "" {
			skips = append(skips, s)
		}
		if c.skip != "" {
			skips = append(skips, c.skip)
		}
		if len(skips) > 0 {
			args = append(args, "-test.skip="+strings.Join(skips, "|"))
		}
		m.Tests = append(m.Tests, vmspec.Test{
			Name: pkg, Path: "/tests/" + name + ".test", Dir: "/tests/" + name, Args: args,
			// Four scenarios at once: under emulation a scenario is mostly pathtrace loading
			// its programs and the scenario's own waits, which overlap.
			Env: []string{"PATHTRACE_BIN=/bin/pathtrace", "PATHTRACE_SCENARIOS_AT_ONCE=4"},
		})
	}
	return cm, m, nil
}

// testdataFiles are the regular files under dir (none if it does not exist), placed under to.
func testdataFiles(dir, to string) []cfile {
	var files []cfile
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, cfile{name: to + "/" + filepath.ToSlash(rel), perm: 0o644, src: p})
		}
		return nil
	})
	return files
}

func writeManifest(m *vmspec.Manifest) []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return b
}

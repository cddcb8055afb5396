package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pathtrace/pathtrace/vmtest/vmspec"
)

// vmCase is one way of booting a kernel: the modules loaded at boot, the modules the kernel
// may not have at all, and the tests run. The default case runs the suites with everything the
// lab uses; each other case stands for a kind of node and runs the tests written for it.
type vmCase struct {
	name string
	// modules are loaded at boot with their dependencies; nil keeps -modules.
	modules []string
	// exclude are left out of the initramfs, so the kernel cannot load them even on demand:
	// module names, or directories under the modules' kernel/ ("net/netfilter"). A module
	// that depends on an excluded one is left out too.
	exclude []string
	// pkgs are the test packages run (each built for the default case too); nil keeps -pkgs.
	pkgs []string
	// run is the -test.run pattern; "" keeps -run (and the default skips).
	run string
	// env is added to each test binary's environment.
	env []string
	// suites are the kernels the case boots; nil: every one given.
	suites []string
}

// noNetfilter is every netfilter module: nfnetlink, nf_tables and its expressions, x_tables
// and iptables, conntrack and NAT, bridge netfilter.
var noNetfilter = []string{
	"net/netfilter", "net/ipv4/netfilter", "net/ipv6/netfilter", "net/bridge/netfilter",
	"br_netfilter",
}

var vmCases = []vmCase{
	{name: "default"},
	// A node without a CNI's or a firewall's rules: veth loaded, no netfilter module at all,
	// not even for the kernel to autoload (Debian's 6.1 cloud kernel booted so made every
	// run panic: #15). A run must trace, name a drop and say that nftables is unavailable.
	{
		name:    "minimal",
		modules: []string{"veth"},
		exclude: noNetfilter,
		pkgs:    []string{"./e2e"},
		run:     "^TestWithoutNetfilter$",
		env:     []string{"PATHTRACE_EXPECT_NO_NETFILTER=1"},
		suites:  []string{"bookworm"},
	},
}

// selectCases returns the cases named (comma-separated, "all" for every one).
func selectCases(names []string) ([]vmCase, error) {
	var out []vmCase
	for _, n := range names {
		found := false
		for _, vc := range vmCases {
			if n == "all" || vc.name == n {
				out = append(out, vc)
				found = true
			}
		}
		if !found {
			var known []string
			for _, vc := range vmCases {
				known = append(known, vc.name)
			}
			return nil, fmt.Errorf("unknown case %q (known: %s)", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// boots says whether the case runs on the kernel of suite.
func (vc vmCase) boots(suite string) bool {
	return vc.suites == nil || slices.Contains(vc.suites, suite)
}

// label names a kernel's run of the case in the report and the logs: the suite, and the
// case's name unless it is the default.
func (vc vmCase) label(suite string) string {
	if vc.name == "default" {
		return suite
	}
	return suite + "-" + vc.name
}

// manifest is base (the default case's tests) narrowed to the case's packages, with its
// -test.run and environment.
func (vc vmCase) manifest(base *vmspec.Manifest) (*vmspec.Manifest, error) {
	m := *base
	if vc.pkgs == nil && vc.run == "" && vc.env == nil {
		return &m, nil
	}
	m.Tests = nil
	for _, t := range base.Tests {
		if vc.pkgs != nil && !slices.Contains(vc.pkgs, t.Name) {
			continue
		}
		if vc.run != "" {
			var args []string
			for _, a := range t.Args {
				if !strings.HasPrefix(a, "-test.run=") && !strings.HasPrefix(a, "-test.skip=") {
					args = append(args, a)
				}
			}
			t.Args = append(args, "-test.run="+vc.run)
		}
		t.Env = append(slices.Clip(t.Env), vc.env...)
		m.Tests = append(m.Tests, t)
	}
	for _, p := range vc.pkgs {
		if !slices.ContainsFunc(m.Tests, func(t vmspec.Test) bool { return t.Name == p }) {
			return nil, fmt.Errorf("case %s: package %s is not among -pkgs", vc.name, p)
		}
	}
	return &m, nil
}

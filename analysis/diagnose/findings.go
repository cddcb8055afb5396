package diagnose

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// inNetns is cmd as typed where it must run: on the host as is, elsewhere inside the namespace.
func inNetns(netnsName, cmd string) string {
	switch {
	case netnsName == "host" || netnsName == "":
		return cmd
	case strings.HasPrefix(netnsName, "netns:"):
		return fmt.Sprintf("in %s (nsenter --net=/proc/<pid>/ns/net of a process there): %s", netnsName, cmd)
	}
	return "ip netns exec " + netnsName + " " + cmd
}

func (f *finding) sysctlSource(key string) string {
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/") + " in netns " + f.site.NetnsName
}

// dropHop is the hop where the example packet died.
func (f *finding) dropHop() trace.Hop {
	hs := f.example.Hops
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Event == trace.KindDrop && !hs[i].Copy {
			return hs[i]
		}
	}
	return trace.Hop{}
}

// headers are the example packet's headers where it died.
func (f *finding) headers() trace.Headers {
	if h := f.dropHop(); h.Tuple != nil {
		return *h.Tuple
	}
	return f.example.Tuple
}

// routeEvidence reports the route lookups the packet went through in the drop's namespace.
func (f *finding) routeEvidence() []trace.Evidence {
	var ev []trace.Evidence
	for _, h := range f.example.Hops {
		if h.Route == nil || h.Netns != f.site.Netns {
			continue
		}
		r := h.Route
		v := fmt.Sprintf("table %s: ", orDefault(r.TableName, fmt.Sprint(r.Table)))
		if r.Err != 0 {
			v += fmt.Sprintf("error %d", r.Err)
		} else {
			v += "-> " + r.OutIfname
			if r.Gateway.IsValid() {
				v += " via " + r.Gateway.String()
			}
		}
		ev = append(ev, trace.Evidence{What: "route lookup " + r.Lookup.Src.String() + " > " + r.Lookup.Dst.String(), Value: v, Source: "fib:fib_table_lookup"})
	}
	return ev
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// forwarding explains a packet the kernel would not forward (ip_error): incidents 000 and 003.
func (d *Diagnoser) forwarding(f *finding) {
	v6 := f.headers().Src.Is6()
	dev := f.site.Ifname
	global, devKey := "net.ipv4.ip_forward", "net.ipv4.conf."+dev+".forwarding"
	if v6 {
		global, devKey = "net.ipv6.conf.all.forwarding", "net.ipv6.conf."+dev+".forwarding"
	}
	f.evidence = append(f.evidence, f.routeEvidence()...)
	persist := "persist it in /etc/sysctl.d/ (and check what turned it off: a network restart or a script)"
	if d.facts == nil {
		f.cause = "forwarding disabled or no route"
		f.fix = []string{inNetns(f.site.NetnsName, "sysctl -w "+global+"=1"), inNetns(f.site.NetnsName, "sysctl -w "+devKey+"=1"), persist}
		return
	}
	g, gerr := d.facts.Sysctl(f.site.Netns, global)
	dv, derr := d.facts.Sysctl(f.site.Netns, devKey)
	if gerr == nil {
		f.evidence = append(f.evidence, trace.Evidence{What: global, Value: g, Source: f.sysctlSource(global)})
	}
	if derr == nil && dev != "" {
		f.evidence = append(f.evidence, trace.Evidence{What: devKey, Value: dv, Source: f.sysctlSource(devKey)})
	}
	switch {
	case gerr == nil && g == "0":
		f.cause = "forwarding disabled (" + global + "=0)"
		f.meaning = fmt.Sprintf("the node does not forward packets: %s is 0, so a packet arriving on %s for another host is dropped", global, dev)
		f.fix = []string{inNetns(f.site.NetnsName, "sysctl -w "+global+"=1"), persist}
		f.sure = true
	case derr == nil && dv == "0":
		f.cause = "forwarding disabled on " + dev + " (" + devKey + "=0)"
		f.meaning = fmt.Sprintf("forwarding is off for packets arriving on %s (%s=0) although %s is %s: the device's setting decides", dev, devKey, global, g)
		f.fix = []string{inNetns(f.site.NetnsName, "sysctl -w "+devKey+"=1"), persist}
		f.sure = true
	case gerr == nil && derr == nil:
		f.cause = "destination unreachable"
		f.meaning = "forwarding is enabled, so the kernel found no usable route for it (a blackhole, unreachable or prohibit route)"
		f.fix = []string{inNetns(f.site.NetnsName, "ip route get "+f.headers().Dst.String()+" from "+f.headers().Src.String()+" iif "+dev)}
	default:
		f.cause = "forwarding disabled or no route"
		f.evidence = append(f.evidence, trace.Evidence{What: "sysctl", Value: fmt.Sprint(errorsText(gerr, derr)), Source: "read failed"})
	}
}

func errorsText(errs ...error) string {
	var s []string
	for _, e := range errs {
		if e != nil {
			s = append(s, e.Error())
		}
	}
	return strings.Join(s, "; ")
}

// rpFilter explains a reverse-path filter drop: the effective value is the larger of all's and
// the device's.
func (d *Diagnoser) rpFilter(f *finding) {
	dev := f.site.Ifname
	f.cause = "reverse-path filter"
	f.fix = []string{inNetns(f.site.NetnsName, "sysctl -w net.ipv4.conf."+dev+".rp_filter=2   # loose mode, or fix the route back to "+f.headers().Src.String())}
	if d.facts == nil {
		return
	}
	keys := []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf." + dev + ".rp_filter"}
	eff := "0"
	for _, k := range keys {
		if v, err := d.facts.Sysctl(f.site.Netns, k); err == nil {
			f.evidence = append(f.evidence, trace.Evidence{What: k, Value: v, Source: f.sysctlSource(k)})
			if v > eff {
				eff = v
			}
		}
	}
	f.evidence = append(f.evidence, trace.Evidence{What: "effective rp_filter on " + dev, Value: eff, Source: "max(all, device)"})
	if eff != "0" {
		f.sure = true
		f.fix = append(f.fix, inNetns(f.site.NetnsName, "sysctl -w net.ipv4.conf.all.rp_filter=0   # all's value counts too: the effective one is the max"))
	}
}

// netfilter names the rule the kernel's nftables tracing saw drop the packet. It runs when the
// verdict is made: trace events arrive on their own socket, a little after the drop.
func (d *Diagnoser) netfilter(f *finding) {
	h := f.headers()
	d.mu.Lock()
	var hit *NetfilterDrop
	for i := range d.nf {
		n := &d.nf[i]
		if n.Netns != f.site.Netns {
			continue
		}
		if (n.Src == h.Src && n.Dst == h.Dst) || (n.Src == h.Dst && n.Dst == h.Src) {
			hit = n
			break
		}
	}
	d.mu.Unlock()
	// fexit/kretprobe on nf_hook_slow saw which hook returned the drop.
	hook := ""
	for _, hop := range f.example.Hops {
		if fn := hop.Func; fn != nil && fn.Name == "nf_hook_slow" && fn.Verdict == "DROP" {
			hook = fn.Hook
			f.evidence = append(f.evidence, trace.Evidence{What: "netfilter verdict", Value: fn.Hook + " " + fn.Family + ": DROP", Source: hop.Probe})
		}
	}
	if hit == nil {
		f.cause = "netfilter rule"
		if hook != "" {
			f.cause = "netfilter rule in the " + hook + " hook"
			f.sure = true
		}
		f.fix = []string{
			inNetns(f.site.NetnsName, "nft list ruleset"),
			inNetns(f.site.NetnsName, "iptables-save"),
		}
		f.evidence = append(f.evidence, trace.Evidence{What: "rule", Value: "not identified (legacy iptables rules, or nftables tracing off)", Source: "nftables trace"})
		return
	}
	f.sure = true
	rule := fmt.Sprintf("table %s %s chain %s", hit.Family, hit.Table, hit.Chain)
	if hit.Policy {
		f.cause = fmt.Sprintf("chain %s policy drop", hit.Chain)
		f.meaning = fmt.Sprintf("no rule of %s accepted it and the chain's policy is drop", rule)
		f.evidence = append(f.evidence, trace.Evidence{What: "chain policy", Value: rule + " policy drop", Source: "nftables trace"})
		f.fix = []string{inNetns(f.site.NetnsName, fmt.Sprintf("nft insert rule %s %s %s ip saddr %s accept   # or fix the policy", hit.Family, hit.Table, hit.Chain, h.Src))}
	} else {
		f.cause = fmt.Sprintf("netfilter rule %s %s %s handle %d", hit.Family, hit.Table, hit.Chain, hit.Handle)
		f.meaning = fmt.Sprintf("the rule \"%s\" in %s (handle %d) dropped it", hit.Rule, rule, hit.Handle)
		f.evidence = append(f.evidence, trace.Evidence{What: "rule", Value: fmt.Sprintf("%s handle %d: %s", rule, hit.Handle, hit.Rule), Source: "nftables trace"})
		f.fix = []string{inNetns(f.site.NetnsName, fmt.Sprintf("nft delete rule %s %s %s handle %d   # after checking why it is there", hit.Family, hit.Table, hit.Chain, hit.Handle))}
	}
	if hit.Hook != "" {
		f.evidence = append(f.evidence, trace.Evidence{What: "hook", Value: hit.Hook, Source: "nftables trace"})
	}
}

// tcProgram lists the programs on the tc hook that dropped the packet: on Kubernetes usually
// the CNI's policy enforcement (incident 004).
func (d *Diagnoser) tcProgram(f *finding) {
	dir := "ingress"
	if f.site.Reason == "TC_EGRESS" || strings.Contains(f.site.Location, "egress") {
		dir = "egress"
	}
	dev := f.site.Ifname
	f.cause = "tc " + dir + " program on " + dev
	f.fix = []string{inNetns(f.site.NetnsName, "tc filter show dev "+dev+" "+dir)}
	if d.facts == nil {
		return
	}
	progs, err := d.facts.TCPrograms(f.site.Netns, dev, dir)
	if err != nil {
		f.evidence = append(f.evidence, trace.Evidence{What: "tc " + dir + " programs on " + dev, Value: err.Error(), Source: "read failed"})
		return
	}
	var names []string
	cilium := false
	for _, p := range progs {
		f.evidence = append(f.evidence, trace.Evidence{
			What:   fmt.Sprintf("%s %s program on %s", p.Kind, p.Direction, dev),
			Value:  fmt.Sprintf("%s (id %d, tag %s)", p.Name, p.ID, p.Tag),
			Source: "netlink",
		})
		names = append(names, p.Name)
		cilium = cilium || strings.HasPrefix(p.Name, "cil_")
	}
	if len(progs) == 0 {
		f.evidence = append(f.evidence, trace.Evidence{What: "tc " + dir + " programs on " + dev, Value: "none now (detached since?)", Source: "netlink"})
		return
	}
	f.sure = true
	f.cause = fmt.Sprintf("tc %s program %s on %s", dir, strings.Join(names, ", "), dev)
	f.meaning = fmt.Sprintf("the BPF program %s attached to %s's %s dropped it", strings.Join(names, ", "), dev, dir)
	if cilium {
		f.meaning += ": Cilium's policy enforcement. Traffic from nodes Cilium does not manage arrives as identity \"world\""
		f.fix = []string{
			"cilium monitor --type drop   # in the Cilium agent on this node: the policy verdict and identities",
			"check the NetworkPolicies / CiliumNetworkPolicies selecting the pod behind " + dev + " (allow the source, e.g. fromEntities: world or the node CIDR)",
		}
	}
}

// tcProgramGuess explains a reasonless drop in the device layer by the tc programs attached in
// that direction, when there are any; it says it guessed.
func (d *Diagnoser) tcProgramGuess(f *finding, egress bool) {
	if d.facts == nil {
		return
	}
	dir := "ingress"
	if egress {
		dir = "egress"
	}
	progs, err := d.facts.TCPrograms(f.site.Netns, f.site.Ifname, dir)
	if err != nil || len(progs) == 0 {
		return
	}
	reason := f.site.Reason
	f.site.Reason = "TC_" + strings.ToUpper(dir)
	d.tcProgram(f)
	f.site.Reason = reason
	f.sure = false
	f.meaning += " (this kernel reports no drop reason: the tc " + dir + " hook is where " + f.site.Location + " drops, and these programs are attached there)"
}

// checksum explains a bad checksum: the receiving device's offloads, and the VXLAN bug of
// incident 001 when the packet is a VXLAN packet.
func (d *Diagnoser) checksum(f *finding) {
	dev := f.site.Ifname
	h := f.dropHop()
	f.cause = "bad checksum"
	var vxlanDev string
	if d.facts != nil {
		if o, err := d.facts.Offload(f.site.Netns, dev); err == nil {
			f.evidence = append(f.evidence, trace.Evidence{
				What:   "checksum offload on " + dev,
				Value:  fmt.Sprintf("tx %s, rx %s (%s)", onOff(o.TxChecksum), onOff(o.RxChecksum), o.Kind),
				Source: "ethtool ioctl in netns " + f.site.NetnsName,
			})
		}
		if devs, err := d.facts.VXLANDevices(f.site.Netns); err == nil {
			port := uint16(0)
			if h.Outer != nil {
				port = h.Outer.Dport
			} else if h.Tuple != nil {
				port = h.Tuple.Dport
			}
			for name, p := range devs {
				if p == port {
					vxlanDev = name
				}
			}
		}
	}
	if h.Encap == "vxlan" || vxlanDev != "" {
		if vxlanDev == "" {
			vxlanDev = "the VXLAN device"
		}
		outer := ""
		if h.Outer != nil {
			outer = fmt.Sprintf(" (outer %s:%d > %s:%d)", h.Outer.Src, h.Outer.Sport, h.Outer.Dst, h.Outer.Dport)
		}
		f.cause = "bad outer UDP checksum on VXLAN"
		f.meaning = "a VXLAN packet" + outer + " arrived with a bad UDP checksum and the receiving node dropped it before decapsulation. " +
			"Known cause: SNAT with --random-fully (or any source-port rewrite) on the sending node plus tx checksum offload on its VXLAN device"
		f.fix = []string{
			"on the sending node (" + orDefault(addrOf(h.Outer), "the outer source") + "): ethtool -K " + vxlanDev + " tx-checksum-ip-generic off",
			"or upgrade that node's kernel (fixed upstream)",
		}
		f.sure = h.Encap == "vxlan"
		return
	}
	f.fix = []string{inNetns(f.site.NetnsName, "ethtool -k "+dev+" | grep checksum   # and check the sender's offloads")}
}

func addrOf(h *trace.Headers) string {
	if h == nil {
		return ""
	}
	return h.Src.String()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// neighbour explains a failed address resolution for the next hop.
func (d *Diagnoser) neighbour(f *finding) {
	next := f.headers().Dst
	for _, h := range f.example.Hops {
		if h.Route != nil && h.Netns == f.site.Netns && h.Route.Gateway.IsValid() {
			next = h.Route.Gateway
		}
	}
	f.cause = "next hop " + next.String() + " not resolved"
	f.evidence = append(f.evidence, f.routeEvidence()...)
	f.fix = []string{inNetns(f.site.NetnsName, "ip neigh show "+next.String()), "check that " + next.String() + " is up and on the link of " + f.site.Ifname}
	if d.facts == nil || !next.IsValid() {
		return
	}
	if st, err := d.facts.Neighbour(f.site.Netns, f.site.Ifname, next); err == nil {
		f.evidence = append(f.evidence, trace.Evidence{What: "neighbour " + next.String() + " on " + f.site.Ifname, Value: st, Source: "netlink in netns " + f.site.NetnsName})
		f.sure = st == "FAILED" || st == "INCOMPLETE" || st == "none"
	}
}

func (d *Diagnoser) noRoute(f *finding) {
	f.cause = "no route"
	f.evidence = append(f.evidence, f.routeEvidence()...)
	f.fix = []string{inNetns(f.site.NetnsName, "ip route get "+f.headers().Dst.String())}
	f.sure = len(f.evidence) > 0
}

func (d *Diagnoser) noSocket(f *finding) {
	h := f.headers()
	f.cause = "nothing listening"
	f.meaning = fmt.Sprintf("it reached %s but nothing listens on %s port %d there", f.site.Area(), h.Proto, h.Dport)
	if h.Proto != trace.ProtoTCP && h.Proto != trace.ProtoUDP {
		f.meaning = fmt.Sprintf("it reached %s but no socket there takes %s", f.site.Area(), h.Proto)
	}
	f.fix = []string{"check that the service runs and listens on " + netip.AddrPortFrom(h.Dst, h.Dport).String() + " (for a Service: its endpoints and targetPort)"}
	f.sure = true
}

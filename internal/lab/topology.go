package lab

import (
	"errors"
	"fmt"
	"net/netip"
)

// Topology is the three-namespace path most tests use:
//
//	pod (eth0 10.<net>.1.2/24, default via 10.<net>.1.1)
//	-- veth -- node (veth-pod 10.<net>.1.1/24, veth-ext 10.<net>.2.1/24, ip_forward=1)
//	-- veth -- ext (eth0 10.<net>.2.2/24, default via 10.<net>.2.1)
type Topology struct {
	Lab                                *Lab
	Pod, Node, Ext                     *NS
	PodIP, NodePodIP, NodeExtIP, ExtIP netip.Addr
	NodePodIf, NodeExtIf               string
}

// Device names of the standard topology.
const (
	PodIf     = "eth0"
	ExtIf     = "eth0"
	NodePodIf = "veth-pod"
	NodeExtIf = "veth-ext"
)

// Standard builds the standard topology with subnets 10.<net>.1.0/24 and
// 10.<net>.2.0/24; net (1..254) lets callers run several side by side. On
// error everything made so far is removed.
func Standard(prefix string, net uint8) (*Topology, error) {
	if net == 0 || net == 255 {
		return nil, fmt.Errorf("standard topology %s: net %d out of range 1..254", prefix, net)
	}
	l, err := New(prefix)
	if err != nil {
		return nil, fmt.Errorf("standard topology %s: %w", prefix, err)
	}
	t, err := buildStandard(l, net)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("standard topology %s: %w", prefix, err), l.Close())
	}
	return t, nil
}

func buildStandard(l *Lab, net uint8) (*Topology, error) {
	ip := func(subnet, host byte) netip.Addr { return netip.AddrFrom4([4]byte{10, net, subnet, host}) }
	t := &Topology{
		Lab:       l,
		PodIP:     ip(1, 2),
		NodePodIP: ip(1, 1),
		NodeExtIP: ip(2, 1),
		ExtIP:     ip(2, 2),
		NodePodIf: NodePodIf,
		NodeExtIf: NodeExtIf,
	}
	var err error
	if t.Pod, err = l.AddNS("pod"); err != nil {
		return nil, err
	}
	if t.Node, err = l.AddNS("node"); err != nil {
		return nil, err
	}
	if t.Ext, err = l.AddNS("ext"); err != nil {
		return nil, err
	}
	cidr := func(a netip.Addr) string { return netip.PrefixFrom(a, 24).String() }
	if err := l.Veth(t.Pod, PodIf, cidr(t.PodIP), t.Node, NodePodIf, cidr(t.NodePodIP)); err != nil {
		return nil, err
	}
	if err := l.Veth(t.Node, NodeExtIf, cidr(t.NodeExtIP), t.Ext, ExtIf, cidr(t.ExtIP)); err != nil {
		return nil, err
	}
	if err := t.Node.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	if err := t.Pod.AddRoute("default", t.NodePodIP.String()); err != nil {
		return nil, err
	}
	if err := t.Ext.AddRoute("default", t.NodeExtIP.String()); err != nil {
		return nil, err
	}
	// Already the default in a fresh namespace (it is not inherited from the
	// host), but tests rely on ext answering pings, so say so explicitly.
	if err := t.Ext.Sysctl("net.ipv4.icmp_echo_ignore_all", "0"); err != nil {
		return nil, err
	}
	return t, nil
}

// Close removes the topology's namespaces.
func (t *Topology) Close() error { return t.Lab.Close() }

// The standard topology's IPv6 addresses, added by AddIPv6: fd00:<net>:1::/64 between pod and
// node, fd00:<net>:2::/64 between node and ext, hosts ::2 and ::1 as in IPv4.
func (t *Topology) ip6(subnet, host byte) netip.Addr {
	net := t.PodIP.As4()[1]
	return netip.AddrFrom16([16]byte{0xfd, 0x00, 0x00, net, 0x00, subnet, 15: host})
}

// AddIPv6 gives the standard topology IPv6 alongside IPv4: addresses, default routes and
// forwarding on the node. It returns the pod's and ext's addresses.
func (t *Topology) AddIPv6() (pod, ext netip.Addr, err error) {
	cidr := func(a netip.Addr) string { return netip.PrefixFrom(a, 64).String() }
	for _, a := range []struct {
		ns   *NS
		dev  string
		addr netip.Addr
	}{
		{t.Pod, PodIf, t.ip6(1, 2)}, {t.Node, NodePodIf, t.ip6(1, 1)},
		{t.Node, NodeExtIf, t.ip6(2, 1)}, {t.Ext, ExtIf, t.ip6(2, 2)},
	} {
		if err := a.ns.AddAddr(a.dev, cidr(a.addr)); err != nil {
			return pod, ext, err
		}
	}
	if err := t.Node.Sysctl("net.ipv6.conf.all.forwarding", "1"); err != nil {
		return pod, ext, err
	}
	if err := t.Pod.AddRoute("::/0", t.ip6(1, 1).String()); err != nil {
		return pod, ext, err
	}
	if err := t.Ext.AddRoute("::/0", t.ip6(2, 1).String()); err != nil {
		return pod, ext, err
	}
	return t.ip6(1, 2), t.ip6(2, 2), nil
}

package trace

import "strconv"

// Place is where on a node something happened to a packet: the network namespace, the device
// in it, and the names Kubernetes gives both. A hop, a fate and a drop site each carry one;
// String is the one way to print it and Key the one way to compare it.
type Place struct {
	Netns     uint32 `json:"netns,omitempty"`
	NetnsName string `json:"netns_name,omitempty"`
	Ifindex   uint32 `json:"ifindex,omitempty"`
	Ifname    string `json:"ifname,omitempty"`
	// Node names the node, in a merged trace (Meta.Nodes).
	Node string `json:"node,omitempty"`
	// Pod is the pod ("namespace/name") whose network namespace this is; DevicePod the pod a
	// node-side device leads to (the host end of the pod's veth: cali*, lxc*, veth*).
	Pod       string `json:"pod,omitempty"`
	DevicePod string `json:"device_pod,omitempty"`
}

// Namespace names the network namespace as a reader on the node knows it: "pod default/web"
// in a pod's, else the namespace's name, else its inode ("netns:4026532301"), which
// `lsns -t net` and `ip netns identify` map back to a name.
func (p Place) Namespace() string {
	if p.Pod == "" && p.NetnsName != "" {
		return p.NetnsName // the usual case: no copy
	}
	return string(p.AppendNamespace(nil))
}

// AppendNamespace appends Namespace to b.
func (p *Place) AppendNamespace(b []byte) []byte {
	switch {
	case p.Pod != "":
		return append(append(b, "pod "...), p.Pod...)
	case p.NetnsName != "":
		return append(b, p.NetnsName...)
	case p.Netns != 0:
		return strconv.AppendUint(append(b, "netns:"...), uint64(p.Netns), 10)
	}
	return b
}

// Device names the device: "eth0", "cali1a2b -> pod default/web" for the node's end of a
// pod's veth, "ifindex:7" when only its index is known.
func (p Place) Device() string {
	if p.Ifname != "" && (p.DevicePod == "" || p.Pod != "") {
		return p.Ifname // the usual case: no copy
	}
	return string(p.AppendDevice(nil))
}

// AppendDevice appends Device to b.
func (p *Place) AppendDevice(b []byte) []byte {
	n := len(b)
	if p.Ifname != "" {
		b = append(b, p.Ifname...)
	} else if p.Ifindex != 0 {
		b = strconv.AppendUint(append(b, "ifindex:"...), uint64(p.Ifindex), 10)
	}
	if len(b) > n && p.DevicePod != "" && p.Pod == "" {
		b = append(append(b, " -> pod "...), p.DevicePod...)
	}
	return b
}

// String is the place as pathtrace prints it: "node veth-pod", "pod default/web eth0",
// "host cali1a2b -> pod default/web". The node of a merged trace is not part of it: where
// it matters, the caller says "on node X".
func (p Place) String() string { return string(p.AppendTo(nil)) }

// AppendTo appends String to b.
func (p *Place) AppendTo(b []byte) []byte {
	n := len(b)
	b = p.AppendNamespace(b)
	if len(b) == n {
		return p.AppendDevice(b)
	}
	m := len(b)
	if b = p.AppendDevice(append(b, ' ')); len(b) == m+1 {
		b = b[:m] // no device
	}
	return b
}

// Area is the place without the device, unless the device is what names a pod ("host
// cali1a2b -> pod default/web"): enough to say where when the device is said elsewhere.
func (p Place) Area() string {
	if p.DevicePod != "" && p.Pod == "" && p.Ifname != "" {
		return p.String()
	}
	return p.Namespace()
}

// PlaceKey identifies a place: two hops, fates or drop sites at the same key happened at the
// same place. Pod labels derive from the namespace and device, so they are not part of it.
type PlaceKey struct {
	Node      string
	Netns     uint32
	NetnsName string // only when the inode is unknown (a drop site read back from a file)
	Ifname    string
}

// Key is p's identity.
func (p Place) Key() PlaceKey {
	k := PlaceKey{Node: p.Node, Netns: p.Netns, Ifname: p.Ifname}
	if p.Netns == 0 {
		k.NetnsName = p.NetnsName
	}
	return k
}

// SiteKey identifies a drop site: packets going one way, dropped for one reason at one
// location, in one place. The flow summary and the verdict group drops by it.
type SiteKey struct {
	Flow             Direction
	Reason, Location string
	Place            PlaceKey
}

// Key is d's identity.
func (d DropSite) Key() SiteKey {
	return SiteKey{Flow: d.Flow, Reason: d.Reason, Location: d.Location, Place: d.Place.Key()}
}

// SiteOf is the drop site of a dropped packet, with no count.
func SiteOf(p *Packet) DropSite {
	return DropSite{Flow: p.Flow, Reason: p.Fate.Reason, Location: p.Fate.Location, Place: p.Fate.Place}
}

package diagnose

import "net/netip"

// Facts reads the node's state in the namespace where a packet died. A live run reads the
// kernel; tests use a fake; a replayed trace has none, and its verdict says so.
type Facts interface {
	Sysctl(netns uint32, key string) (string, error)
	TCPrograms(netns uint32, dev, direction string) ([]Program, error)
	Neighbour(netns uint32, dev string, addr netip.Addr) (string, error)
	Offload(netns uint32, dev string) (Offload, error)
	// VXLANDevices lists the namespace's VXLAN devices and their UDP ports.
	VXLANDevices(netns uint32) (map[string]uint16, error)
}

// Program is a BPF program attached to a device's tc hook.
type Program struct {
	Name, Tag, Kind, Direction string
	ID                         uint32
}

// Offload is a device's checksum offload state.
type Offload struct {
	TxChecksum, RxChecksum bool
	Kind                   string
	VXLANPort              uint16
}

// NetfilterDrop is a rule (or chain policy) the kernel's nftables tracing saw drop a packet.
type NetfilterDrop struct {
	Netns                      uint32
	Family, Table, Chain, Hook string
	Rule                       string
	Handle                     uint64
	Policy                     bool
	Src, Dst                   netip.Addr
	// Iptables is the rule as `iptables -S` prints it ("-A CHAIN ...") when iptables-nft
	// made it. CtState and CtDirection are conntrack's view of the packet in the dropping
	// chain ("new", "invalid"...; "original", "reply"), "" when the kernel does not say.
	Iptables             string
	CtState, CtDirection string
}

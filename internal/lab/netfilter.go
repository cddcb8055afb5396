package lab

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NftChain is a base chain a lab adds to break a namespace the way an operator's ruleset
// would: any family (ip, ip6, inet, bridge, netdev), any hook, with its rules. The table
// is created if missing (each NftChain call adds to it).
type NftChain struct {
	Family   nftables.TableFamily
	Table    string
	Chain    string
	Hook     *nftables.ChainHook
	Priority *nftables.ChainPriority
	Device   string // netdev ingress/egress: the device
	Drop     bool   // the chain's policy is drop (accept otherwise)
	Rules    [][]expr.Any
}

// AddNftChain creates the table (if missing), the base chain and its rules in one transaction.
func (n *NS) AddNftChain(c NftChain) error {
	err := n.nft(func(conn *nftables.Conn) error {
		t := conn.AddTable(&nftables.Table{Family: c.Family, Name: c.Table})
		policy := nftables.ChainPolicyAccept
		if c.Drop {
			policy = nftables.ChainPolicyDrop
		}
		prio := c.Priority
		if prio == nil {
			prio = nftables.ChainPriorityFilter
		}
		ch := conn.AddChain(&nftables.Chain{
			Name: c.Chain, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: c.Hook, Priority: prio, Policy: &policy, Device: c.Device,
		})
		for _, r := range c.Rules {
			conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("nft add chain %s %s in %s: %w", c.Table, c.Chain, n.name, err)
	}
	return nil
}

// NftSaddr matches the network source address (IPv4 or IPv6) of a packet in a chain of the
// given family: in inet, bridge and netdev chains the protocol is checked first, as nft does.
func NftSaddr(fam nftables.TableFamily, saddr netip.Addr) []expr.Any {
	saddr = saddr.Unmap()
	var exprs []expr.Any
	switch fam {
	case nftables.TableFamilyINet:
		proto := byte(unix.NFPROTO_IPV4)
		if saddr.Is6() {
			proto = unix.NFPROTO_IPV6
		}
		exprs = append(exprs, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
	case nftables.TableFamilyBridge, nftables.TableFamilyNetdev:
		eth := uint16(unix.ETH_P_IP)
		if saddr.Is6() {
			eth = unix.ETH_P_IPV6
		}
		exprs = append(exprs, &expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(eth)})
	}
	return append(exprs, l3Match(netip.PrefixFrom(saddr, saddr.BitLen()), true)...)
}

// NftDrop is a verdict drop, to end a rule.
func NftDrop() expr.Any { return &expr.Verdict{Kind: expr.VerdictDrop} }

// NftCtStateAccept is `ct state <states> accept` (states: expr.CtStateBit*).
func NftCtStateAccept(states uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(states), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

// NftIifnameAccept is `iifname <dev> accept`.
func NftIifnameAccept(dev string) []expr.Any {
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, dev)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

// BridgePeer puts a second pod on the pod's link: the node's veth-pod becomes a port of a
// bridge br0 (which takes over the node's address on that link), and a new namespace
// "<name>" with address addr/24 on its eth0 is plugged into the bridge through a veth whose
// node end is nodeIf. Packets between the pod and the peer are then bridged in the node, not
// routed: they cross the bridge family's hooks and none of the ip family's.
func (t *Topology) BridgePeer(name, nodeIf string, addr netip.Addr) (*NS, error) {
	peer, err := t.Lab.AddNS(name)
	if err != nil {
		return nil, err
	}
	if err := t.Lab.Veth(peer, PodIf, netip.PrefixFrom(addr, 24).String(), t.Node, nodeIf, ""); err != nil {
		return nil, err
	}
	gw := netip.PrefixFrom(t.NodePodIP, 24).String()
	err = t.Node.netlink(func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("add br0: %w", err)
		}
		a, err := netlink.ParseAddr(gw)
		if err != nil {
			return err
		}
		for _, port := range []string{t.NodePodIf, nodeIf} {
			l, err := h.LinkByName(port)
			if err != nil {
				return err
			}
			if port == t.NodePodIf {
				if err := h.AddrDel(l, a); err != nil {
					return fmt.Errorf("move %s off %s: %w", gw, port, err)
				}
			}
			if err := h.LinkSetMaster(l, br); err != nil {
				return fmt.Errorf("enslave %s: %w", port, err)
			}
		}
		if err := h.AddrAdd(br, a); err != nil {
			return fmt.Errorf("address %s on br0: %w", gw, err)
		}
		return h.LinkSetUp(br)
	})
	if err != nil {
		return nil, fmt.Errorf("bridge peer %s in %s: %w", name, t.Node.name, err)
	}
	return peer, nil
}

// TCP flags for SendTCP.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPAck = 0x10
)

// SendTCP sends from n, on a raw socket, one IPv4 TCP segment src:sport -> dst:dport with the
// given flags and no payload, outside any connection: a bare ACK is what a host sends for a
// connection the firewall on the way has forgotten (conntrack then judges it INVALID when
// net.netfilter.nf_conntrack_tcp_loose is 0). src must be an address of n.
func (n *NS) SendTCP(src, dst string, sport, dport uint16, flags byte) error {
	s, err := netip.ParseAddr(src)
	if err != nil {
		return err
	}
	d, err := netip.ParseAddr(dst)
	if err != nil {
		return err
	}
	s, d = s.Unmap(), d.Unmap()
	if !s.Is4() || !d.Is4() {
		return fmt.Errorf("send tcp %s -> %s: addresses must be IPv4", src, dst)
	}
	pkt := make([]byte, ipv4HeaderLen+20)
	ip := pkt[:ipv4HeaderLen]
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(ip[2:], uint16(len(pkt)))
	copy(ip[12:16], s.AsSlice())
	copy(ip[16:20], d.AsSlice())
	tcp := pkt[ipv4HeaderLen:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], 0x1000)
	if flags&TCPAck != 0 {
		binary.BigEndian.PutUint32(tcp[8:], 0x2000)
	}
	tcp[12], tcp[13] = 5<<4, flags
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	// Checksum over the pseudo-header and the segment.
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
	}
	add(ip[12:20])
	sum += unix.IPPROTO_TCP + uint32(len(tcp))
	add(tcp)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(tcp[16:], ^uint16(sum))
	if err := n.sendRawIPv4(d, pkt); err != nil {
		return fmt.Errorf("send tcp %s:%d -> %s:%d from %s: %w", src, sport, dst, dport, n.name, err)
	}
	return nil
}

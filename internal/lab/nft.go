package lab

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Table names are fixed so that a lab's rules are easy to find with
// `ip netns exec <ns> nft list ruleset` and never collide with anything else
// (each namespace has its own ruleset anyway).
const (
	NftFilterTable = "pathtrace_lab"     // family inet
	NftNATTable    = "pathtrace_lab_nat" // family ip (ip6 for IPv6 DNAT)
)

// nft batches fn's changes into one netlink transaction in the namespace.
func (n *NS) nft(fn func(c *nftables.Conn) error) error {
	return n.withFd(func(fd netns.NsHandle) error {
		c, err := nftables.New(nftables.WithNetNSFd(int(fd)))
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
		return c.Flush()
	})
}

// l3Match returns expressions matching the IPv4/IPv6 source (src=true) or
// destination address against a host address or a CIDR.
func l3Match(p netip.Prefix, src bool) []expr.Any {
	off := uint32(16) // IPv4 daddr
	switch {
	case p.Addr().Is4() && src:
		off = 12
	case p.Addr().Is6() && src:
		off = 8
	case p.Addr().Is6():
		off = 24
	}
	l := uint32(p.Addr().BitLen() / 8)
	exprs := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: l}}
	if p.Bits() < p.Addr().BitLen() {
		mask := netipMask(p)
		exprs = append(exprs, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: l, Mask: mask, Xor: make([]byte, l)})
	}
	return append(exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()})
}

func netipMask(p netip.Prefix) []byte {
	b := make([]byte, p.Addr().BitLen()/8)
	for i := 0; i < p.Bits(); i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

// parseAddrOrPrefix accepts "10.0.1.2" or "10.0.1.0/24".
func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked(), nil
}

// NftDropForward makes the namespace drop forwarded packets from saddr (an
// address or CIDR, IPv4 or IPv6): table inet pathtrace_lab, chain forward
// (hook forward, priority 0, policy accept), rule `ip saddr <saddr> drop`
// (`ip6 saddr` for IPv6).
func (n *NS) NftDropForward(saddr string) error {
	p, err := parseAddrOrPrefix(saddr)
	if err != nil {
		return fmt.Errorf("nft drop forward %s in %s: %w", saddr, n.name, err)
	}
	proto := byte(unix.NFPROTO_IPV4)
	if p.Addr().Is6() {
		proto = unix.NFPROTO_IPV6
	}
	err = n.nft(func(c *nftables.Conn) error {
		t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: NftFilterTable})
		accept := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{
			Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
		})
		// An inet chain sees both families, so the address family has to
		// be checked before the header offsets mean anything.
		exprs := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		}
		exprs = append(exprs, l3Match(p, true)...)
		exprs = append(exprs, &expr.Verdict{Kind: expr.VerdictDrop})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
		return nil
	})
	if err != nil {
		return fmt.Errorf("nft drop forward %s in %s: %w", saddr, n.name, err)
	}
	return nil
}

func natChain(c *nftables.Conn, fam nftables.TableFamily, name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) (*nftables.Table, *nftables.Chain) {
	t := c.AddTable(&nftables.Table{Family: fam, Name: NftNATTable})
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{
		Name: name, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: hook, Priority: prio, Policy: &accept,
	})
	return t, ch
}

// NftMasquerade source-NATs everything leaving through outIf to that
// interface's address: table ip pathtrace_lab_nat, chain postrouting (nat hook
// postrouting, priority 100), rule `oifname <outIf> masquerade`.
func (n *NS) NftMasquerade(outIf string) error {
	if outIf == "" || len(outIf) >= unix.IFNAMSIZ {
		return fmt.Errorf("nft masquerade %q in %s: invalid interface name", outIf, n.name)
	}
	err := n.nft(func(c *nftables.Conn) error {
		t, ch := natChain(c, nftables.TableFamilyIPv4, "postrouting", nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
		// oifname is compared as a NUL-padded IFNAMSIZ buffer, as nft does.
		name := make([]byte, unix.IFNAMSIZ)
		copy(name, outIf)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
			&expr.Masq{},
		}})
		return nil
	})
	if err != nil {
		return fmt.Errorf("nft masquerade %s in %s: %w", outIf, n.name, err)
	}
	return nil
}

// NftDNAT rewrites the destination of packets arriving for vip to the address
// to, for all protocols: chain prerouting (nat hook prerouting, priority -100)
// of table ip pathtrace_lab_nat (ip6 pathtrace_lab_nat for IPv6), rule
// `ip daddr <vip> dnat to <to>`. Only packets entering the namespace are
// translated, not ones it sends itself.
func (n *NS) NftDNAT(vip string, to string) error {
	v, err := netip.ParseAddr(vip)
	if err != nil {
		return fmt.Errorf("nft dnat %s to %s in %s: %w", vip, to, n.name, err)
	}
	d, err := netip.ParseAddr(to)
	if err != nil {
		return fmt.Errorf("nft dnat %s to %s in %s: %w", vip, to, n.name, err)
	}
	v, d = v.Unmap(), d.Unmap()
	if v.Is4() != d.Is4() {
		return fmt.Errorf("nft dnat %s to %s in %s: address families differ", vip, to, n.name)
	}
	fam, proto := nftables.TableFamilyIPv4, uint32(unix.NFPROTO_IPV4)
	if v.Is6() {
		fam, proto = nftables.TableFamilyIPv6, unix.NFPROTO_IPV6
	}
	err = n.nft(func(c *nftables.Conn) error {
		t, ch := natChain(c, fam, "prerouting", nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
		exprs := l3Match(netip.PrefixFrom(v, v.BitLen()), false)
		exprs = append(exprs,
			&expr.Immediate{Register: 1, Data: d.AsSlice()},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: proto, RegAddrMin: 1},
		)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
		return nil
	})
	if err != nil {
		return fmt.Errorf("nft dnat %s to %s in %s: %w", vip, to, n.name, err)
	}
	return nil
}

// NftDeleteFilter removes the table NftDropForward made, as an operator deleting the rule would.
func (n *NS) NftDeleteFilter() error {
	err := n.nft(func(c *nftables.Conn) error {
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: NftFilterTable})
		return nil
	})
	if err != nil {
		return fmt.Errorf("nft delete table %s in %s: %w", NftFilterTable, n.name, err)
	}
	return nil
}

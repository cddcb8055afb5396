package nftrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// tableFlagOwner is NFT_TABLE_F_OWNER (Linux 5.12): the table belongs to the
// netlink socket that created it, only that socket may change it, and the
// kernel deletes it when the socket is released. x/sys/unix only has
// NFT_TABLE_F_DORMANT.
const tableFlagOwner = 0x2

// The nftables package always sends NFTA_TABLE_FLAGS as 0, so the batch that
// creates the table is built here; chain and rule messages follow the same
// layout as the package's AddChain and AddRule.

func nfgenHeader(family byte, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

func nftMsg(typ int, flags netlink.HeaderFlags, family byte, attrs []netlink.Attribute) (netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ),
			Flags: netlink.Request | netlink.Acknowledge | flags,
		},
		Data: append(nfgenHeader(family, 0), data...),
	}, nil
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cstr(s string) []byte { return append([]byte(s), 0) }

// markFamily is the table family of the marking table for a flow of prefix
// p's family: ip or ip6, not inet. Its hooks then see only that family's
// packets (an IPv4 trace costs IPv6 traffic nothing), and its rules need no
// meta nfproto check before reading the addresses.
func markFamily(p netip.Prefix) byte {
	if p.Addr().Is6() {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

// markBatch returns the messages creating
//
//	table ip <name> { flags owner     (ip6 for an IPv6 flow)
//	  chain prerouting { type filter hook prerouting priority <prio>; policy accept
//	    <flow match> meta nftrace set 1 ... }
//	  chain output { type filter hook output priority <prio>; policy accept; ... } }
//
// where the flow match is, per direction, source in one prefix and destination
// in the other. A packet is received (prerouting) or sent from the namespace
// (output), so each packet crosses one of the chains.
func markBatch(name string, prio int32, a, b netip.Prefix) ([]netlink.Message, error) {
	fam := markFamily(a)
	table, err := nftMsg(unix.NFT_MSG_NEWTABLE, netlink.Create|netlink.Excl, fam, []netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: cstr(name)},
		{Type: unix.NFTA_TABLE_FLAGS, Data: be32(tableFlagOwner)},
	})
	if err != nil {
		return nil, err
	}
	msgs := []netlink.Message{table}

	dirs := [][2]netip.Prefix{{a, b}}
	if a != b {
		dirs = append(dirs, [2]netip.Prefix{b, a})
	}
	comment := fmt.Sprintf("pathtrace: trace %s <-> %s", a, b)
	for _, ch := range []struct {
		name string
		hook uint32
	}{{"prerouting", unix.NF_INET_PRE_ROUTING}, {"output", unix.NF_INET_LOCAL_OUT}} {
		chain, err := baseChainMsg(fam, name, ch.name, ch.hook, prio, "")
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, chain)
		for _, d := range dirs {
			rule, err := markRule(fam, name, ch.name, d[0], d[1], comment)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, rule)
		}
	}
	return msgs, nil
}

// markExprs matches packets from src to dst in a chain of the table family
// of their addresses and sets nftrace: [ip saddr src] [ip daddr dst] meta
// nftrace set 1. A non-matching packet costs one address load and compare.
func markExprs(src, dst netip.Prefix) []expr.Any {
	saddr, daddr := uint32(12), uint32(16)
	if src.Addr().Is6() {
		saddr, daddr = 8, 24
	}
	var exprs []expr.Any
	exprs = append(exprs, prefixMatch(src, saddr)...)
	exprs = append(exprs, prefixMatch(dst, daddr)...)
	return append(exprs,
		&expr.Immediate{Register: 1, Data: []byte{1}},
		&expr.Meta{Key: expr.MetaKeyNFTRACE, SourceRegister: true, Register: 1},
	)
}

// prefixMatch compares the address at the network header offset with p;
// nothing for a /0.
func prefixMatch(p netip.Prefix, off uint32) []expr.Any {
	if p.Bits() == 0 {
		return nil
	}
	n := uint32(p.Addr().BitLen() / 8)
	exprs := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}}
	if p.Bits() < p.Addr().BitLen() {
		mask := make([]byte, n)
		for i := range p.Bits() {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		exprs = append(exprs, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)})
	}
	return append(exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()})
}

func markRule(fam byte, table, chain string, src, dst netip.Prefix, comment string) (netlink.Message, error) {
	return markRuleExprs(fam, table, chain, markExprs(src, dst), comment)
}

func markRuleExprs(fam byte, table, chain string, rule []expr.Any, comment string) (netlink.Message, error) {
	var list []netlink.Attribute
	for _, e := range rule {
		b, err := expr.Marshal(fam, e)
		if err != nil {
			return netlink.Message{}, err
		}
		list = append(list, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
	}
	exprs, err := netlink.MarshalAttributes(list)
	if err != nil {
		return netlink.Message{}, err
	}
	// libnftnl's rule comment: NFTNL_UDATA_RULE_COMMENT (0), NUL-terminated.
	udata := append([]byte{0, byte(len(comment) + 1)}, cstr(comment)...)
	return nftMsg(unix.NFT_MSG_NEWRULE, netlink.Create|netlink.Append, fam, []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: cstr(table)},
		{Type: unix.NFTA_RULE_CHAIN, Data: cstr(chain)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: exprs},
		{Type: unix.NFTA_RULE_USERDATA, Data: udata},
	})
}

// sendBatch sends msgs as one nf_tables transaction and waits for one
// acknowledgement per message. The kernel applies all or nothing; the first
// error reported is returned.
func sendBatch(c *netlink.Conn, msgs []netlink.Message) error {
	batch := make([]netlink.Message, 0, len(msgs)+2)
	batch = append(batch, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
		Data:   nfgenHeader(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	})
	batch = append(batch, msgs...)
	batch = append(batch, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
		Data:   nfgenHeader(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	})
	if err := c.SetReadDeadline(time.Now().Add(ackTimeout)); err != nil {
		return err
	}
	defer c.SetReadDeadline(time.Time{})
	if _, err := c.SendMessages(batch); err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	// Each acknowledgement (or error) comes in its own datagram; Receive
	// returns an error in place of an error message.
	var first error
	for got := 0; got < len(msgs); {
		replies, err := c.Receive()
		if err != nil {
			if isTimeout(err) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return errors.Join(first, err)
			}
			if first == nil {
				first = err
			}
			got++
			continue
		}
		for _, m := range replies {
			if m.Header.Type == netlink.Error {
				got++
			}
		}
	}
	return first
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// baseChainMsg makes the message that adds a filter chain named chain to table on hook at
// prio, policy accept; dev names the device of a netdev (or inet ingress) hook.
func baseChainMsg(fam uint8, table, chain string, hooknum uint32, prio int32, dev string) (netlink.Message, error) {
	hattrs := []netlink.Attribute{
		{Type: unix.NFTA_HOOK_HOOKNUM, Data: be32(hooknum)},
		{Type: unix.NFTA_HOOK_PRIORITY, Data: be32(uint32(prio))},
	}
	if dev != "" {
		hattrs = append(hattrs, netlink.Attribute{Type: unix.NFTA_HOOK_DEV, Data: cstr(dev)})
	}
	hook, err := netlink.MarshalAttributes(hattrs)
	if err != nil {
		return netlink.Message{}, err
	}
	return nftMsg(unix.NFT_MSG_NEWCHAIN, netlink.Create, fam, []netlink.Attribute{
		{Type: unix.NFTA_CHAIN_TABLE, Data: cstr(table)},
		{Type: unix.NFTA_CHAIN_NAME, Data: cstr(chain)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: hook},
		{Type: unix.NFTA_CHAIN_POLICY, Data: be32(nfAccept)},
		{Type: unix.NFTA_CHAIN_TYPE, Data: cstr("filter")},
	})
}

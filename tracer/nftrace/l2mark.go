package nftrace

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Bridged frames and netdev hooks run before (or without) the ip family's hooks, where the
// session's table marks packets: without their own marking, a bridge or netdev rule that
// drops a traced packet is never reported. A session whose namespace has base chains in
// these families at its start adds, in tables of the same families owned by the same socket,
// chains that mark the flow first: bridge prerouting and output, and each netdev
// ingress/egress device hook in use (and inet ingress). Chains created later in these families are not covered
// (the ip family's are, always).

// l2Hook is a netdev base chain's hook and device.
type l2Hook struct {
	hook uint32
	dev  string
}

// l2Chains lists what the namespace's ruleset needs marked: whether it has a bridge family
// base chain, and the netdev hooks in use.
func l2Chains(c *netlink.Conn) (bridge bool, netdev []l2Hook, err error) {
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETCHAIN),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: nfgenHeader(unix.AF_UNSPEC, 0),
	}
	msgs, err := c.Execute(req)
	if err != nil {
		return false, nil, err
	}
	seen := map[l2Hook]bool{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		fam := m.Data[0]
		if fam != unix.NFPROTO_BRIDGE && fam != unix.NFPROTO_NETDEV && fam != unix.NFPROTO_INET {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			continue
		}
		ad.ByteOrder = binary.BigEndian
		var table string
		var hook *uint32
		var devs []string
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_CHAIN_TABLE:
				table = ad.String()
			case unix.NFTA_CHAIN_HOOK:
				ad.Nested(func(nad *netlink.AttributeDecoder) error {
					for nad.Next() {
						switch nad.Type() {
						case unix.NFTA_HOOK_HOOKNUM:
							h := nad.Uint32()
							hook = &h
						case unix.NFTA_HOOK_DEV:
							devs = append(devs, nad.String())
						case nftaHookDevs:
							nad.Nested(func(dd *netlink.AttributeDecoder) error {
								for dd.Next() {
									devs = append(devs, dd.String())
								}
								return nil
							})
						}
					}
					return nil
				})
			}
		}
		if hook == nil || isOurTable(fam, table) {
			continue
		}
		if fam == unix.NFPROTO_BRIDGE {
			bridge = true
			continue
		}
		if fam == unix.NFPROTO_INET {
			// An inet ingress chain (Linux 5.10) runs on its device's netdev ingress hook,
			// before prerouting: marked there like a netdev chain.
			if *hook != nfInetIngress {
				continue
			}
			*hook = unix.NF_NETDEV_INGRESS
		}
		for _, d := range devs {
			h := l2Hook{*hook, d}
			if !seen[h] {
				seen[h] = true
				netdev = append(netdev, h)
			}
		}
	}
	return bridge, netdev, nil
}

// l2MarkBatch returns the messages creating the bridge and netdev marking tables (same
// name as the ip one, owned by the same socket) for what l2Chains found.
func l2MarkBatch(name string, prio int32, a, b netip.Prefix, bridge bool, netdev []l2Hook) ([]netlink.Message, error) {
	var msgs []netlink.Message
	add := func(fam byte, chains []l2Chain) error {
		if len(chains) == 0 {
			return nil
		}
		table, err := nftMsg(unix.NFT_MSG_NEWTABLE, netlink.Create|netlink.Excl, fam, []netlink.Attribute{
			{Type: unix.NFTA_TABLE_NAME, Data: cstr(name)},
			{Type: unix.NFTA_TABLE_FLAGS, Data: be32(tableFlagOwner)},
		})
		if err != nil {
			return err
		}
		msgs = append(msgs, table)
		dirs := [][2]netip.Prefix{{a, b}}
		if a != b {
			dirs = append(dirs, [2]netip.Prefix{b, a})
		}
		comment := fmt.Sprintf("pathtrace: trace %s <-> %s", a, b)
		for _, ch := range chains {
			chain, err := baseChainMsg(fam, name, ch.name, ch.hook, prio, ch.dev)
			if err != nil {
				return err
			}
			msgs = append(msgs, chain)
			for _, d := range dirs {
				rule, err := markRuleExprs(fam, name, ch.name, append(l3Proto(d[0]), markExprs(d[0], d[1])...), comment)
				if err != nil {
					return err
				}
				msgs = append(msgs, rule)
			}
		}
		return nil
	}
	var br []l2Chain
	if bridge {
		// NF_BR_PRE_ROUTING 0, NF_BR_LOCAL_OUT 3.
		br = []l2Chain{{"prerouting", 0, ""}, {"output", 3, ""}}
	}
	if err := add(unix.NFPROTO_BRIDGE, br); err != nil {
		return nil, err
	}
	var nd []l2Chain
	for i, h := range netdev {
		nd = append(nd, l2Chain{fmt.Sprintf("%s%d", hookName(unix.NFPROTO_NETDEV, h.hook), i), h.hook, h.dev})
	}
	if err := add(unix.NFPROTO_NETDEV, nd); err != nil {
		return nil, err
	}
	return msgs, nil
}

type l2Chain struct {
	name string
	hook uint32
	dev  string
}

// l3Proto checks the frame's protocol (meta protocol ip / ip6) before its network header
// is read, in a family that sees every protocol.
func l3Proto(p netip.Prefix) []expr.Any {
	eth := uint16(unix.ETH_P_IP)
	if p.Addr().Is6() {
		eth = unix.ETH_P_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(eth)},
	}
}

// nftaHookDevs is NFTA_HOOK_DEVS (Linux 5.5), missing from x/sys/unix.
const nftaHookDevs = 4

package main

import (
	"fmt"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/lab"
)

// rulesetTable is the empty nftables table the filtered-out-rulesets config puts in each lab
// namespace.
const rulesetTable = "ptbench_ruleset"

// emptyRulesets gives each of the lab's namespaces an nftables table with nothing in it, as on a
// node whose namespaces have rulesets of their own: pathtrace adds its marking table only where
// there is a table (elsewhere no rule can drop a packet, so none needs naming). The table has no
// chain, so it costs packets nothing by itself. The returned function removes the tables.
func emptyRulesets(t *lab.Topology) (func(), error) {
	var done []*lab.NS
	undo := func() {
		for _, ns := range done {
			_ = withNft(ns, func(c *nftables.Conn) {
				c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: rulesetTable})
			})
		}
	}
	for _, ns := range []*lab.NS{t.Pod, t.Node, t.Ext} {
		err := withNft(ns, func(c *nftables.Conn) {
			c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: rulesetTable})
		})
		if err != nil {
			undo()
			return nil, fmt.Errorf("nftables table in %s: %w", ns.Name(), err)
		}
		done = append(done, ns)
	}
	return undo, nil
}

func withNft(ns *lab.NS, fn func(c *nftables.Conn)) error {
	fd, err := unix.Open(ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		return err
	}
	fn(c)
	return c.Flush()
}

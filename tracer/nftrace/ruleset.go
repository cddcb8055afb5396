package nftrace

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/tracer/netns"
)

// rulesetWatch waits, in a namespace without nf_tables tables, for one to
// appear. Until then no nf_tables rule or chain policy there can drop a
// packet, so there is no rule to name, and a marking table would only make
// every packet of the namespace cross a chain (the nftables part of a
// filtered-out pathtrace's cost).
type rulesetWatch struct {
	conn      *netlink.Conn // NFNLGRP_NFTABLES listener
	appeared  chan struct{} // closed when a table that is not a marking table appears
	closeOnce sync.Once
	done      chan struct{}
}

// watchRuleset subscribes to nf_tables changes in the namespace at nsPath and
// then lists its tables. has says whether it already has a table other than
// pathtrace's marking tables; then (or on error) no watch is returned.
// Subscribing first means a table created in between is not missed.
func watchRuleset(nsPath string) (w *rulesetWatch, has bool, err error) {
	ns, err := netns.Open(nsPath)
	if err != nil {
		return nil, false, err
	}
	defer ns.Close()
	conn, err := dialIn(ns)
	if err != nil {
		return nil, false, err
	}
	if err := conn.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("join NFNLGRP_NFTABLES: %w", err)
	}
	has, err = hasOtherTables(ns)
	if err != nil || has {
		conn.Close()
		return nil, has, err
	}
	w = &rulesetWatch{conn: conn, appeared: make(chan struct{}), done: make(chan struct{})}
	go w.listen()
	return w, false, nil
}

// hasOtherTables reports whether the namespace has an nf_tables table of any
// family that is not a pathtrace marking table.
func hasOtherTables(ns *netns.File) (bool, error) {
	c, err := lastingConnIn(ns)
	if err != nil {
		return false, err
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		return false, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if !strings.HasPrefix(t.Name, TablePrefix) {
			return true, nil
		}
	}
	return false, nil
}

func (w *rulesetWatch) listen() {
	for {
		msgs, err := w.conn.Receive()
		if err != nil {
			select {
			case <-w.done:
				return
			default:
			}
			// Not closed by us: most likely ENOBUFS, notifications were lost
			// and a table may have appeared unseen. Trace the namespace.
			close(w.appeared)
			return
		}
		for _, m := range msgs {
			if isForeignNewTable(m) {
				close(w.appeared)
				return
			}
		}
	}
}

// isForeignNewTable says whether m announces a new nf_tables table that is
// not a pathtrace marking table.
func isForeignNewTable(m netlink.Message) bool {
	if int(m.Header.Type) != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWTABLE || len(m.Data) < 4 {
		return false
	}
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return true // unreadable: assume it counts
	}
	for _, a := range attrs {
		if a.Type&^unix.NLA_F_NESTED == unix.NFTA_TABLE_NAME {
			return !strings.HasPrefix(string(bytes.TrimRight(a.Data, "\x00")), TablePrefix)
		}
	}
	return true
}

// Appeared is closed once a table appears.
func (w *rulesetWatch) Appeared() <-chan struct{} { return w.appeared }

// Close stops watching.
func (w *rulesetWatch) Close() error {
	var err error
	w.closeOnce.Do(func() {
		close(w.done)
		err = w.conn.Close()
		if errors.Is(err, os.ErrClosed) {
			err = nil
		}
	})
	return err
}

// dialIn opens a NETLINK_NETFILTER socket in the namespace ns. The socket is made by a thread
// that entered the namespace (netns.File.Do), not through netlink.Config.NetNS: with a
// namespace set, mdlayher/socket v0.5.1 loses the error of a socket that could not be made
// there (a kernel without nfnetlink answers EPROTONOSUPPORT) and hands netlink.Dial a nil
// socket, which then panics in (*socket.Conn).control.
func dialIn(ns *netns.File) (*netlink.Conn, error) {
	var c *netlink.Conn
	err := ns.Do(func() error {
		var err error
		c, err = netlink.Dial(unix.NETLINK_NETFILTER, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	return c, nil
}

// lastingConnIn opens a lasting nftables connection in the namespace ns; the caller closes it
// with CloseLasting. Its socket is made inside the namespace, as dialIn's (not with
// nftables.WithNetNSFd, which goes through netlink.Config.NetNS).
func lastingConnIn(ns *netns.File, opts ...nftables.ConnOption) (*nftables.Conn, error) {
	var c *nftables.Conn
	err := ns.Do(func() error {
		var err error
		c, err = nftables.New(append([]nftables.ConnOption{nftables.AsLasting()}, opts...)...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	return c, nil
}

// Available says why this kernel cannot trace nftables at all, or nil when it can: it opens a
// NETLINK_NETFILTER socket in our own namespace and lists the tables, which loads nfnetlink
// and nf_tables where they are modules the kernel may load. A kernel with neither (a node
// without a CNI's or a firewall's rules, booted with no netfilter modules) cannot run an
// nf_tables rule, so there is none to name; without CAP_NET_ADMIN nf_tables answers nothing.
func Available() error {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		return errors.New("the kernel has no nfnetlink (not built in, module not loaded)")
	}
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	c.Close()
	nft, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer nft.CloseLasting()
	_, err = nft.ListTables()
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("nf_tables needs CAP_NET_ADMIN (list tables: %w)", err)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
		// nfnetlink answers EINVAL for a subsystem that is not there and cannot be loaded.
		return fmt.Errorf("the kernel has no nf_tables (not built in, module not loaded): list tables: %w", err)
	case err != nil:
		return fmt.Errorf("list tables: %w", err)
	}
	return nil
}

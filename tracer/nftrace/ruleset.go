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
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: ns.Fd()})
	if err != nil {
		return nil, false, fmt.Errorf("netlink socket: %w", err)
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
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		return false, fmt.Errorf("netlink socket: %w", err)
	}
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


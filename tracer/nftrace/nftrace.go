// Package nftrace names the netfilter rule that dropped a traced flow, using
// the kernel's own nftables tracing.
//
// A Session, in one network namespace, creates a temporary table
// (ip pathtrace_trace_<pid>, ip6 for an IPv6 flow) owned by its netlink socket, with base chains
// hooked at the earliest priority on prerouting and output whose rules set
// `meta nftrace set 1` on packets of the traced flow. Every nf_tables rule
// set the marked packets then cross (nft rule sets and iptables-nft alike,
// since both run on nf_tables) reports each verdict to the NFNLGRP_NFTRACE
// multicast group; the session listens there and turns drop verdicts into a
// Drop naming the table, chain, rule handle and a readable rule text.
//
// The table carries NFT_TABLE_F_OWNER, so the kernel deletes it when the
// owning socket closes: nothing is left behind even if the process is killed.
// Legacy (x_tables) iptables rules are not nf_tables and are not reported.
package nftrace

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/tracer/netns"
)

// Drop is one packet of the traced flow dropped by an nf_tables rule or by a
// base chain's policy.
type Drop struct {
	Family       string // table family: "inet", "ip", "ip6", "arp", "bridge", "netdev"
	Table, Chain string
	Handle       uint64     // rule handle; 0 for a chain policy drop
	Policy       bool       // the chain's policy dropped the packet
	Rule         string     // readable rule text, "" for a policy drop or a rule that could not be read back
	Hook         string     // "prerouting", "input", "forward", "output", "postrouting", ... when known
	Src, Dst     netip.Addr // from the traced packet's network header (as the chain saw it, i.e. after any NAT so far)
	Netns        uint32     // inode of the network namespace
	// Iptables is the rule as `iptables -S` (ip6tables for ip6) prints it, "-A CHAIN ...",
	// when iptables-nft made it; "" otherwise.
	Iptables string
	// CtState is conntrack's state of the packet as the dropping chain saw it ("new",
	// "established", "related", "invalid", "untracked"), and CtDirection its direction
	// ("original", "reply"): "" when the kernel does not tell (before Linux 6.6), or the
	// chain runs before conntrack (prerouting and output before priority -200), where no
	// state exists yet.
	CtState, CtDirection string
}

// Location is the raw reference of the rule or policy, as nft would name it:
// "table inet filter chain forward handle 5" or
// "table ip filter chain FORWARD policy drop".
func (d Drop) Location() string {
	s := fmt.Sprintf("table %s %s chain %s", d.Family, d.Table, d.Chain)
	if d.Policy {
		return s + " policy drop"
	}
	return fmt.Sprintf("%s handle %d", s, d.Handle)
}

// String is Location followed by the rule text when there is one.
func (d Drop) String() string {
	if d.Rule == "" {
		return d.Location()
	}
	return d.Location() + ": " + d.Rule
}

// TablePrefix starts the name of every table a Session creates.
const TablePrefix = "pathtrace_trace_"

// Chain priorities tried for the marking chains, earliest first: the very
// first priority, then just before conntrack defragmentation (raw is -300).
var markPriorities = []int32{-1 << 31, -400}

// Buffers between the trace socket, the rule resolver and the consumer.
const (
	drainBuffer    = 256
	pendingBuffer  = 1024
	traceRcvBuffer = 4 << 20
	ackTimeout     = 5 * time.Second
)

// tableSeq makes table names unique when one process opens several sessions
// in the same namespace.
var tableSeq atomic.Uint32

// Session traces one network namespace. Open creates the owned table and
// subscribes to trace events; Close removes everything.
type Session struct {
	netns    uint32
	table    string
	priority int32
	a, b     netip.Prefix

	ns *netns.File

	// connMu serialises use of the owner socket (conn/owner) between the
	// resolver and Close.
	connMu sync.Mutex
	conn   *nftables.Conn
	owner  *netlink.Conn // the lasting socket that owns the table
	trace  *netlink.Conn // NFNLGRP_NFTRACE listener

	drops   chan Drop
	pending chan candidate // closed by readTraces when it ends
	done    chan struct{}
	drained chan struct{} // closed by resolve when it ends
	wg      sync.WaitGroup
	// draining: Close asked readTraces to read what the socket holds and end.
	draining atomic.Bool

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool

	warnMu   sync.Mutex
	warnings []string
	warned   map[string]bool
	lost     atomic.Uint64
}

// Open starts tracing the flow between the prefixes a and b (either
// direction) in the network namespace bound at nsPath (such as
// /run/netns/x or /proc/<pid>/ns/net). Both prefixes must be of the same
// address family; a /0 prefix matches any address of that family.
func Open(nsPath string, a, b netip.Prefix) (*Session, error) {
	return openAs(nsPath, a, b, 0)
}

// openAs is Open for a namespace known by inode (0: whatever nsPath is);
// Drops carry that inode.
func openAs(nsPath string, a, b netip.Prefix, inode uint32) (*Session, error) {
	s, err := open(nsPath, a, b, inode)
	if err != nil {
		return nil, fmt.Errorf("nftrace in %s: %w", nsPath, err)
	}
	return s, nil
}

func open(nsPath string, a, b netip.Prefix, inode uint32) (*Session, error) {
	a, b, err := normalizePair(a, b)
	if err != nil {
		return nil, err
	}
	ns, err := netns.Open(nsPath)
	if err != nil {
		return nil, err
	}
	s := &Session{
		netns:   ns.Inode(),
		a:       a,
		b:       b,
		ns:      ns,
		drops:   make(chan Drop, drainBuffer),
		pending: make(chan candidate, pendingBuffer),
		done:    make(chan struct{}),
		drained: make(chan struct{}),
		warned:  map[string]bool{},
	}
	if inode != 0 && inode != s.netns {
		s.warnf("%s is namespace %d, not %d", nsPath, s.netns, inode)
		s.netns = inode
	}
	if err := s.setup(); err != nil {
		return nil, errors.Join(err, s.teardown())
	}
	s.wg.Add(2)
	go s.readTraces()
	go s.resolve()
	return s, nil
}

// normalizePair unmaps and masks the prefixes and checks their families.
func normalizePair(a, b netip.Prefix) (netip.Prefix, netip.Prefix, error) {
	if !a.IsValid() || !b.IsValid() {
		return a, b, fmt.Errorf("invalid prefix pair %v, %v", a, b)
	}
	norm := func(p netip.Prefix) netip.Prefix {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
		}
		return p.Masked()
	}
	a, b = norm(a), norm(b)
	if a.Addr().Is4() != b.Addr().Is4() {
		return a, b, fmt.Errorf("prefixes %v and %v are of different address families", a, b)
	}
	return a, b, nil
}

// setup subscribes to trace events first, so that no event of a packet
// marked by the new rules can be missed, then creates the table.
func (s *Session) setup() error {
	var err error
	s.trace, err = dialIn(s.ns)
	if err != nil {
		return err
	}
	if err := s.trace.JoinGroup(unix.NFNLGRP_NFTRACE); err != nil {
		return fmt.Errorf("join NFNLGRP_NFTRACE: %w", err)
	}
	// Best effort: a larger buffer only makes losses under load rarer.
	_ = s.trace.SetReadBuffer(traceRcvBuffer)

	var errs []error
	for _, prio := range markPriorities {
		if err := s.createTable(prio); err != nil {
			errs = append(errs, fmt.Errorf("priority %d: %w", prio, err))
			s.closeOwner()
			continue
		}
		s.priority = prio
		return nil
	}
	return fmt.Errorf("create traced table: %w", errors.Join(errs...))
}

// createTable opens a fresh lasting connection and creates the owned table
// with its marking chains in one batch, trying a few names in case another
// session of this process already traces the namespace.
func (s *Session) createTable(prio int32) error {
	var owner *netlink.Conn
	conn, err := lastingConnIn(s.ns,
		nftables.WithSockOptions(func(c *netlink.Conn) error {
			owner = c
			// Error messages from the kernel ("Could not process rule: ...").
			_ = c.SetOption(netlink.ExtendedAcknowledge, true)
			return nil
		}),
	)
	if err != nil {
		return err
	}
	if owner == nil {
		_ = conn.CloseLasting()
		return errors.New("nftables did not dial a lasting socket")
	}
	s.conn, s.owner = conn, owner

	base := fmt.Sprintf("%s%d", TablePrefix, os.Getpid())
	var last error
	for range 8 {
		name := base
		if n := tableSeq.Add(1); n > 1 {
			name = fmt.Sprintf("%s_%d", base, n)
		}
		msgs, err := markBatch(name, prio, s.a, s.b)
		if err != nil {
			return err
		}
		err = sendBatch(owner, msgs)
		// EEXIST: our own table of another session; EPERM: the same
		// name owned by another socket.
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EPERM) {
			last = fmt.Errorf("table %s: %w", name, err)
			continue
		}
		if err != nil {
			return err
		}
		s.table = name
		s.markL2(owner, name, prio)
		return nil
	}
	return fmt.Errorf("no usable table name: %w", last)
}

// markL2 adds the bridge and netdev marking tables the namespace's ruleset needs (see
// l2mark.go); a failure is a warning: the ip family's rules are traced all the same.
func (s *Session) markL2(owner *netlink.Conn, name string, prio int32) {
	bridge, netdev, err := l2Chains(owner)
	if err != nil {
		s.warnf("listing bridge and netdev chains: %v", err)
		return
	}
	msgs, err := l2MarkBatch(name, prio, s.a, s.b, bridge, netdev)
	if err == nil && len(msgs) > 0 {
		err = sendBatch(owner, msgs)
	}
	if err != nil {
		s.warnf("tracing bridge and netdev chains: %v", err)
	}
}

// closeOwner closes the owning socket, which makes the kernel delete the
// table.
func (s *Session) closeOwner() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.CloseLasting()
	s.conn, s.owner = nil, nil
	return err
}

// Netns returns the inode of the traced namespace.
func (s *Session) Netns() uint32 { return s.netns }

// Table returns the name of the owned table.
func (s *Session) Table() string { return s.table }

// Family returns the owned table's family as nft names it: "ip", or "ip6" for
// an IPv6 flow.
func (s *Session) Family() string { return familyName(markFamily(s.a)) }

// Priority returns the priority the kernel accepted for the marking chains.
func (s *Session) Priority() int32 { return s.priority }

// Drops delivers the drops seen; it is closed by Close.
func (s *Session) Drops() <-chan Drop { return s.drops }

// Warnings returns problems met while tracing (lost events, rules that could
// not be read back), each once.
func (s *Session) Warnings() []string {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	w := append([]string(nil), s.warnings...)
	if n := s.lost.Load(); n > 0 {
		w = append(w, fmt.Sprintf("trace events lost %d times (socket overflow or drop backlog full)", n))
	}
	return w
}

func (s *Session) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	if s.warned[msg] || len(s.warnings) >= 100 {
		return
	}
	s.warned[msg] = true
	s.warnings = append(s.warnings, msg)
}

// drainWait bounds how long Close waits for trace events still on their way: the kernel
// queues a rule's event on the trace socket before it frees the packet, so every drop a
// tracer saw before Close is already there; the wait only ends the read of an empty socket.
const (
	drainWait    = 50 * time.Millisecond
	drainTimeout = 2 * time.Second
)

// Close first hands over the drops whose events are already queued (a run that stops right
// after a drop must still name its rule), then deletes the table, closes the sockets and
// closes Drops. It is safe to call more than once.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		if s.trace != nil {
			s.draining.Store(true)
			if err := s.trace.SetReadDeadline(time.Now().Add(drainWait)); err == nil {
				select {
				case <-s.drained:
				case <-time.After(drainTimeout):
				}
			}
		}
		s.closed.Store(true)
		close(s.done)
		s.closeErr = s.teardown()
		s.wg.Wait()
		close(s.drops)
	})
	return s.closeErr
}

// teardown deletes the table explicitly (so it is gone when Close returns,
// not merely when the kernel gets round to the socket release) and closes
// everything. Closing the trace socket ends readTraces.
func (s *Session) teardown() error {
	var errs []error
	s.connMu.Lock()
	if s.conn != nil && s.table != "" {
		s.conn.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: s.table})
		if err := s.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete table %s: %w", s.table, err))
		}
	}
	if err := s.closeOwner(); err != nil {
		errs = append(errs, err)
	}
	s.connMu.Unlock()
	if s.trace != nil {
		if err := s.trace.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.ns.Close()
	return errors.Join(errs...)
}

// familyName names an nf_tables family as nft does.
func familyName(f byte) string {
	switch f {
	case unix.NFPROTO_INET:
		return "inet"
	case unix.NFPROTO_IPV4:
		return "ip"
	case unix.NFPROTO_IPV6:
		return "ip6"
	case unix.NFPROTO_ARP:
		return "arp"
	case unix.NFPROTO_BRIDGE:
		return "bridge"
	case unix.NFPROTO_NETDEV:
		return "netdev"
	}
	return fmt.Sprintf("family%d", f)
}

// hookName names a base chain's hook in its table family.
func hookName(family byte, hook uint32) string {
	switch family {
	case unix.NFPROTO_NETDEV:
		switch hook {
		case unix.NF_NETDEV_INGRESS:
			return "ingress"
		case unix.NF_NETDEV_EGRESS:
			return "egress"
		}
	case unix.NFPROTO_ARP:
		switch hook {
		case 0:
			return "input"
		case 1:
			return "output"
		case 2:
			return "forward"
		}
	default:
		switch hook {
		case unix.NF_INET_PRE_ROUTING:
			return "prerouting"
		case unix.NF_INET_LOCAL_IN:
			return "input"
		case unix.NF_INET_FORWARD:
			return "forward"
		case unix.NF_INET_LOCAL_OUT:
			return "output"
		case unix.NF_INET_POST_ROUTING:
			return "postrouting"
		case nfInetIngress:
			return "ingress"
		}
	}
	return fmt.Sprintf("hook%d", hook)
}

// Netfilter constants missing from x/sys/unix (linux/netfilter.h).
const (
	nfDrop        = 0 // NF_DROP
	nfAccept      = 1 // NF_ACCEPT
	nfVerdictMask = 0xff
	nfInetIngress = 5 // NF_INET_INGRESS
)

func isOurTable(family byte, name string) bool {
	switch family {
	case unix.NFPROTO_IPV4, unix.NFPROTO_IPV6, unix.NFPROTO_INET, // inet: tables of earlier versions
		unix.NFPROTO_BRIDGE, unix.NFPROTO_NETDEV:
		return strings.HasPrefix(name, TablePrefix)
	}
	return false
}

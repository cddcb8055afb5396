package nftrace

import (
	"errors"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

const (
	chainCacheLifetime = 30 * time.Second
	rulesCacheLifetime = 5 * time.Second
	// A handle missing from a fresh dump is not looked for again sooner.
	rulesRefetchGap = 200 * time.Millisecond
)

type chainInfo struct {
	base    bool
	hook    string
	prio    int32
	err     error
	fetched time.Time
}

type ruleText struct{ nft, ipt string }

type ruleSet struct {
	rules   map[uint64]ruleText // handle -> FormatRule, FormatIptables
	err     error
	fetched time.Time
}

// resolver looks rules and chains up over the owner socket and caches them.
type resolver struct {
	s      *Session
	chains map[chainRef]*chainInfo
	rules  map[chainRef]*ruleSet
}

// resolve turns drop candidates into Drops until Close.
func (s *Session) resolve() {
	defer s.wg.Done()
	defer close(s.drained)
	r := &resolver{s: s, chains: map[chainRef]*chainInfo{}, rules: map[chainRef]*ruleSet{}}
	for {
		select {
		case <-s.done:
			return
		case c, ok := <-s.pending:
			if !ok {
				return // readTraces ended: every candidate is handed over
			}
			d := r.drop(&c)
			select {
			case s.drops <- d:
			case <-s.done:
				return
			}
		}
	}
}

func (r *resolver) drop(c *candidate) Drop {
	_, policy := c.ev.isDrop()
	d := Drop{
		Family: familyName(c.ev.family),
		Table:  c.ev.table,
		Chain:  c.ev.chain,
		Policy: policy,
		Src:    c.src,
		Dst:    c.dst,
		Netns:  r.s.netns,
	}
	ref := chainRef{c.ev.family, c.ev.table, c.ev.chain}
	if !policy {
		d.Handle = c.ev.handle
		t := r.rule(ref, c.ev.handle)
		d.Rule, d.Iptables = t.nft, t.ipt
	}
	base := r.base(ref, c.path)
	if base != nil {
		d.Hook = base.hook
	}
	d.CtState, d.CtDirection = ctWords(c, base)
	return d
}

// ctWords puts conntrack's view of a dropped packet in words, when the kernel told it and it
// means something: in an ip, ip6 or inet chain that runs after conntrack saw the packet
// (conntrack runs at priority -200 in prerouting and output; a chain before it sees every
// packet as "not tracked yet", which the kernel reports as invalid).
func ctWords(c *candidate, base *chainInfo) (state, dir string) {
	switch c.ev.family {
	case unix.NFPROTO_IPV4, unix.NFPROTO_IPV6, unix.NFPROTO_INET:
	default:
		return "", ""
	}
	if c.ctState == 0 || base == nil {
		return "", ""
	}
	if (base.hook == "prerouting" || base.hook == "output") && base.prio <= -200 {
		return "", ""
	}
	switch {
	case c.ctState&1 != 0:
		state = "invalid"
	case c.ctState&2 != 0:
		state = "established"
	case c.ctState&4 != 0:
		state = "related"
	case c.ctState&8 != 0:
		state = "new"
	case c.ctState&64 != 0:
		state = "untracked"
	}
	switch c.ctDir {
	case 0:
		dir = "original"
	case 1:
		dir = "reply"
	}
	return state, dir
}

// rule returns the text of the rule with the handle, "" when it cannot be
// read back (deleted since, or the dump failed).
func (r *resolver) rule(ref chainRef, handle uint64) ruleText {
	now := time.Now()
	rs := r.rules[ref]
	if rs != nil && now.Sub(rs.fetched) < rulesCacheLifetime {
		if text, ok := rs.rules[handle]; ok {
			return text
		}
		if now.Sub(rs.fetched) < rulesRefetchGap {
			return ruleText{}
		}
	}
	rs = &ruleSet{rules: map[uint64]ruleText{}, fetched: now}
	r.rules[ref] = rs
	rules, err := r.getRules(ref)
	if err != nil {
		rs.err = err
		r.s.warnf("reading rules of table %s %s chain %s: %v", familyName(ref.family), ref.table, ref.chain, err)
		return ruleText{}
	}
	for _, rule := range rules {
		ipt, _ := FormatIptables(rule)
		rs.rules[rule.Handle] = ruleText{nft: FormatRule(rule), ipt: ipt}
	}
	text, ok := rs.rules[handle]
	if !ok {
		r.s.warnf("rule handle %d of table %s %s chain %s is gone", handle, familyName(ref.family), ref.table, ref.chain)
	}
	return text
}

// base returns the chain if it is a base chain, otherwise the latest base chain of the same
// table the packet went through before (the one that jumped to it, directly or not); nil
// when none is known.
func (r *resolver) base(ref chainRef, path []chainRef) *chainInfo {
	if ci := r.chain(ref); ci.base {
		return ci
	}
	for _, p := range path {
		if ci := r.chain(p); ci.base {
			return ci
		}
	}
	return nil
}

func (r *resolver) chain(ref chainRef) *chainInfo {
	now := time.Now()
	if ci := r.chains[ref]; ci != nil && now.Sub(ci.fetched) < chainCacheLifetime {
		return ci
	}
	ci := &chainInfo{fetched: now}
	r.chains[ref] = ci
	ch, err := r.listChain(ref)
	if err != nil {
		ci.err = err
		return ci
	}
	if ch.Hooknum != nil {
		ci.base = true
		ci.hook = hookName(ref.family, uint32(*ch.Hooknum))
		if ch.Priority != nil {
			ci.prio = int32(*ch.Priority)
		}
	}
	return ci
}

var errClosed = errors.New("session closed")

func (r *resolver) getRules(ref chainRef) ([]*nftables.Rule, error) {
	s := r.s
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conn == nil || s.closed.Load() {
		return nil, errClosed
	}
	t := &nftables.Table{Family: nftables.TableFamily(ref.family), Name: ref.table}
	return s.conn.GetRules(t, &nftables.Chain{Name: ref.chain, Table: t})
}

func (r *resolver) listChain(ref chainRef) (*nftables.Chain, error) {
	s := r.s
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conn == nil || s.closed.Load() {
		return nil, errClosed
	}
	return s.conn.ListChain(&nftables.Table{Family: nftables.TableFamily(ref.family), Name: ref.table}, ref.chain)
}

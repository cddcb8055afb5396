package nftrace

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// Manager keeps one Session per network namespace it is told about and
// reports the drops of all of them on one channel. Failures are per
// namespace and never fatal: they end up in Warnings, and a namespace whose
// session could not be opened (no nf_tables, gone already) just yields
// nothing.
//
// A namespace with no nf_tables table has no rule to name: it gets no
// marking table (which would cost each of its packets a chain) until a table
// appears there; then its session opens.
type Manager struct {
	a, b netip.Prefix

	mu       sync.Mutex
	closed   bool
	sessions map[uint32]*Session // nil value: opening, waiting for a table, or failed to open
	waiting  map[uint32]*rulesetWatch
	warnings []string

	drops chan Drop
	done  chan struct{}
	wg    sync.WaitGroup
}

// NewManager returns a Manager tracing the flow between a and b (either
// direction).
func NewManager(a, b netip.Prefix) *Manager {
	return &Manager{
		a:        a,
		b:        b,
		sessions: map[uint32]*Session{},
		waiting:  map[uint32]*rulesetWatch{},
		drops:    make(chan Drop, drainBuffer),
		done:     make(chan struct{}),
	}
}

// Watch opens a session in the namespace with inode netnsInode, reachable at
// nsPath, unless one was already opened (or tried) for that inode. It returns
// once the session is tracing, so packets sent afterwards are covered; in a
// namespace without nf_tables tables, once it watches for one to appear (the
// session then opens within milliseconds of it: a packet dropped by a rule in
// between is not named).
func (m *Manager) Watch(netnsInode uint32, nsPath string) {
	m.mu.Lock()
	if _, seen := m.sessions[netnsInode]; seen || m.closed {
		m.mu.Unlock()
		return
	}
	m.sessions[netnsInode] = nil
	m.mu.Unlock()

	// An error here (no nf_tables, say) is left to open to report.
	w, has, err := watchRuleset(nsPath)
	if err == nil && !has {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			_ = w.Close()
			return
		}
		m.waiting[netnsInode] = w
		m.wg.Add(1)
		m.mu.Unlock()
		go m.await(w, netnsInode, nsPath)
		return
	}
	m.open(netnsInode, nsPath)
}

// await opens the session of a namespace once a table appears there.
func (m *Manager) await(w *rulesetWatch, netnsInode uint32, nsPath string) {
	defer m.wg.Done()
	select {
	case <-w.Appeared():
	case <-w.done: // Unwatch or Close
		return
	case <-m.done:
		return
	}
	m.mu.Lock()
	still := m.waiting[netnsInode] == w
	delete(m.waiting, netnsInode)
	m.mu.Unlock()
	_ = w.Close()
	if still {
		m.open(netnsInode, nsPath)
	}
}

// open opens the session of a namespace Watch claimed.
func (m *Manager) open(netnsInode uint32, nsPath string) {
	// Drops carry the inode the caller knows the namespace by.
	s, err := openAs(nsPath, m.a, m.b, netnsInode)

	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.warnings = append(m.warnings, fmt.Sprintf("netns %d: %v", netnsInode, err))
		return
	}
	if m.closed {
		_ = s.Close()
		return
	}
	m.sessions[netnsInode] = s
	m.wg.Add(1)
	go m.forward(s)
}

// forward copies a session's drops until the session is closed.
func (m *Manager) forward(s *Session) {
	defer m.wg.Done()
	for d := range s.Drops() {
		select {
		case m.drops <- d:
		case <-m.done:
		}
	}
}

// Unwatch closes the session of a namespace (for instance once it is gone:
// an open session keeps the namespace alive). A later Watch opens a new one.
func (m *Manager) Unwatch(netnsInode uint32) error {
	m.mu.Lock()
	s, ok := m.sessions[netnsInode]
	if ok && s != nil {
		delete(m.sessions, netnsInode)
	}
	if w := m.waiting[netnsInode]; w != nil {
		delete(m.waiting, netnsInode)
		delete(m.sessions, netnsInode)
		_ = w.Close()
	}
	m.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.Close()
}

// Tracing reports whether a namespace's drops are reported: its session is open, or it has
// no nftables table (no nftables rule there can drop anything) and is watched for one.
func (m *Manager) Tracing(netnsInode uint32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sessions[netnsInode] != nil || m.waiting[netnsInode] != nil
}

// Drops delivers the drops of every watched namespace; it is closed by Close.
func (m *Manager) Drops() <-chan Drop { return m.drops }

// Warnings returns the namespaces that could not be traced and the problems
// the sessions met.
func (m *Manager) Warnings() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := append([]string(nil), m.warnings...)
	for inode, s := range m.sessions {
		if s == nil {
			continue
		}
		for _, sw := range s.Warnings() {
			w = append(w, fmt.Sprintf("netns %d: %s", inode, sw))
		}
	}
	return w
}

// Close closes every session (removing their tables) and then Drops.
// Warnings stays usable afterwards.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var sessions []*Session
	for _, s := range m.sessions {
		sessions = append(sessions, s)
	}
	for ino, w := range m.waiting {
		_ = w.Close()
		delete(m.waiting, ino)
	}
	m.mu.Unlock()

	// In parallel: each session first drains the events still queued for it.
	errs := make([]error, len(sessions))
	var wg sync.WaitGroup
	for i, s := range sessions {
		if s != nil {
			wg.Go(func() { errs[i] = s.Close() })
		}
	}
	wg.Wait()
	// Sessions are closed, so forwarders end; those blocked on a full
	// channel give up on done.
	close(m.done)
	m.wg.Wait()
	close(m.drops)
	return errors.Join(errs...)
}

package lab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// SendUDP sends one UDP datagram from inside the namespace on an unconnected
// socket, from sport (0 = ephemeral) to dst:dport.
func (n *NS) SendUDP(dst string, sport, dport uint16, payload []byte) error {
	addr, err := netip.ParseAddr(dst)
	if err != nil {
		return fmt.Errorf("udp %d->%s:%d from %s: %w", sport, dst, dport, n.name, err)
	}
	addr = addr.Unmap()
	network, local := "udp4", net.IPv4zero
	if addr.Is6() {
		network, local = "udp6", net.IPv6unspecified
	}
	err = n.Do(func() error {
		c, err := net.ListenUDP(network, &net.UDPAddr{IP: local, Port: int(sport)})
		if err != nil {
			return err
		}
		_, werr := c.WriteToUDPAddrPort(payload, netip.AddrPortFrom(addr, dport))
		return errors.Join(werr, c.Close())
	})
	if err != nil {
		return fmt.Errorf("udp %d->%s:%d from %s: %w", sport, dst, dport, n.name, err)
	}
	return nil
}

// ListenUDP opens a UDP socket bound to addr ("10.0.2.2:5000", ":5000")
// inside the namespace. The lab closes it on Close if the caller has not.
func (n *NS) ListenUDP(addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() error {
		var err error
		c, err = net.ListenPacket("udp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen udp %s in %s: %w", addr, n.name, err)
	}
	if !n.lab.track(c) {
		return nil, fmt.Errorf("listen udp %s in %s: lab is closed", addr, n.name)
	}
	return c, nil
}

// Listen opens a plain stream listener (network "tcp", "tcp4", "tcp6") inside
// the namespace, for callers that want to accept connections themselves.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, addr, n.name, err)
	}
	if !n.lab.track(l) {
		return nil, fmt.Errorf("listen %s %s in %s: lab is closed", network, addr, n.name)
	}
	return l, nil
}

// ListenTCP opens a TCP listener inside the namespace whose own accept loop
// echoes back whatever each connection sends, until the listener is closed.
// Because that loop owns accepting, Accept on the returned listener fails;
// use Listen for a listener to accept from.
func (n *NS) ListenTCP(addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen tcp %s in %s: %w", addr, n.name, err)
	}
	e := &echoListener{Listener: l, conns: map[net.Conn]struct{}{}}
	if !n.lab.track(e) {
		return nil, fmt.Errorf("listen tcp %s in %s: lab is closed", addr, n.name)
	}
	e.wg.Go(e.serve)
	return e, nil
}

// DialTCP connects from inside the namespace. The lab closes the connection
// on Close if the caller has not.
func (n *NS) DialTCP(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		// The socket is created, and so bound to this namespace, before
		// Dial returns; the connect itself may finish on any thread.
		c, err = (&net.Dialer{Timeout: timeout}).Dial("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial tcp %s from %s: %w", addr, n.name, err)
	}
	if !n.lab.track(c) {
		return nil, fmt.Errorf("dial tcp %s from %s: lab is closed", addr, n.name)
	}
	return c, nil
}

type echoListener struct {
	net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

var errEchoAccept = errors.New("lab: ListenTCP accepts and echoes by itself; use NS.Listen to accept connections")

func (e *echoListener) Accept() (net.Conn, error) { return nil, errEchoAccept }

func (e *echoListener) serve() {
	for {
		c, err := e.Listener.Accept()
		if err != nil {
			// Only Close ends the loop; anything else (e.g. ECONNABORTED
			// from a client that gave up) is per connection.
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			c.Close()
			return
		}
		e.conns[c] = struct{}{}
		e.mu.Unlock()
		e.wg.Go(func() {
			_, _ = io.Copy(c, c)
			c.Close()
			e.mu.Lock()
			delete(e.conns, c)
			e.mu.Unlock()
		})
	}
}

// Close stops accepting, closes open connections and waits for the echo
// goroutines, so nothing of the listener outlives it.
func (e *echoListener) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	err := e.Listener.Close()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
	return err
}

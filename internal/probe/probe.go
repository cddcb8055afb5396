// Package probe sends a flow's traffic on demand (pathtrace --probe): a few packets paced over
// the run, from a network namespace (a pod's, entered on its node), so an engineer need not exec
// into a pod that has no ping or curl. Every probe's payload starts with Marker.
package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Kinds are the probes --probe takes.
var Kinds = []string{"icmp", "tcp", "udp", "dns"}

// Marker starts every probe's payload (ICMP and UDP), so the probes are recognisable in a capture.
const Marker = "pathtrace-probe"

// Probe is what to send.
type Probe struct {
	Kind     string     // icmp, tcp, udp, dns
	Netns    string     // path of the network namespace to send from; "" for this one
	Dst      netip.Addr // where to
	Dport    uint16     // tcp/udp; dns defaults to 53
	Count    int        // how many packets; 0 means 5
	Interval time.Duration
	Name     string // dns: the name asked for; "" means kubernetes.default.svc.cluster.local
	// Sent is told of each packet as it leaves (for the log line "probe: sent ...").
	Sent func(format string, args ...any)
	// Ident is told, before the packets that carry it leave, the ICMP echo id or the source
	// port (TCP: one per probe) they leave with, so that they and their replies can be known
	// for the probes in the trace. Not told when the socket's cannot be read.
	Ident func(id uint16)
}

// Validate checks the probe's settings before anything is traced.
func (p *Probe) Validate() error {
	switch p.Kind {
	case "icmp", "udp", "dns":
	case "tcp":
	default:
		return fmt.Errorf("--probe: want one of %s, not %q", strings.Join(Kinds, ", "), p.Kind)
	}
	if !p.Dst.IsValid() {
		return errors.New("--probe needs a destination: --dst ADDR or a pod")
	}
	if (p.Kind == "tcp" || p.Kind == "udp") && p.Dport == 0 {
		return fmt.Errorf("--probe %s needs --dport", p.Kind)
	}
	if p.Kind == "dns" && p.Dport == 0 {
		p.Dport = 53
	}
	if p.Count <= 0 {
		p.Count = 5
	}
	if p.Interval <= 0 {
		p.Interval = 200 * time.Millisecond
	}
	if p.Name == "" {
		p.Name = "kubernetes.default.svc.cluster.local"
	}
	return nil
}

// Run sends the probe's packets, one per Interval, until Count or ctx ends. The ICMP and UDP
// socket stays open until ctx ends, so that the replies find it (else the trace would show them
// dropped for want of a socket).
func (p Probe) Run(ctx context.Context) error {
	if err := p.Validate(); err != nil {
		return err
	}
	v6 := p.Dst.Is6() && !p.Dst.Is4In6()
	dom := unix.AF_INET
	if v6 {
		dom = unix.AF_INET6
	}
	var sa unix.Sockaddr
	if v6 {
		sa = &unix.SockaddrInet6{Addr: p.Dst.As16(), Port: int(p.Dport)}
	} else {
		sa = &unix.SockaddrInet4{Addr: p.Dst.Unmap().As4(), Port: int(p.Dport)}
	}
	fd := -1
	var err error
	switch p.Kind {
	case "icmp":
		proto := unix.IPPROTO_ICMP
		if v6 {
			proto = unix.IPPROTO_ICMPV6
			sa.(*unix.SockaddrInet6).Port = 0
		} else {
			sa.(*unix.SockaddrInet4).Port = 0
		}
		// A ping socket where the namespace allows it (net.ipv4.ping_group_range): the replies
		// are then delivered to it. A raw socket sees them too, but the kernel's ping code,
		// finding no ping socket, drops its own copy, and the trace would show that drop.
		if fd, err = pingSocketIn(p.Netns, dom, proto); err != nil {
			fd, err = socketIn(p.Netns, dom, unix.SOCK_RAW, proto)
		}
	case "udp", "dns":
		fd, err = socketIn(p.Netns, dom, unix.SOCK_DGRAM, unix.IPPROTO_UDP)
	}
	if err != nil {
		return fmt.Errorf("probe %s to %s: %w", p.Kind, p.Dst, err)
	}
	if fd >= 0 {
		defer unix.Close(fd)
		if p.Kind == "icmp" && isRaw(fd) {
			p.ident(uint16(os.Getpid())) // what sendOne writes; a ping socket's own is bound
		} else {
			p.bind(fd, v6)
		}
	}
	for i := 0; i < p.Count; i++ {
		if err := p.sendOne(fd, sa, dom, i, v6); err != nil {
			return fmt.Errorf("probe %s to %s: %w", p.Kind, p.Dst, err)
		}
		if i < p.Count-1 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(p.Interval):
			}
		}
	}
	<-ctx.Done()
	return nil
}

func (p Probe) sendOne(fd int, sa unix.Sockaddr, dom, seq int, v6 bool) error {
	switch p.Kind {
	case "icmp":
		typ := byte(8)
		if v6 {
			typ = 128
		}
		msg := make([]byte, 8, 8+len(Marker))
		msg[0] = typ
		binary.BigEndian.PutUint16(msg[4:], uint16(os.Getpid()))
		binary.BigEndian.PutUint16(msg[6:], uint16(seq))
		msg = append(msg, Marker...)
		if !v6 { // the kernel fills in ICMPv6's checksum
			binary.BigEndian.PutUint16(msg[2:], checksum(msg))
		}
		if err := unix.Sendto(fd, msg, 0, sa); err != nil {
			return err
		}
		p.sent("icmp echo-request seq=%d to %s", seq, p.Dst)
	case "udp", "dns":
		payload := []byte(Marker)
		what := "udp datagram"
		if p.Kind == "dns" {
			payload, what = dnsQuery(uint16(os.Getpid()+seq), p.Name), "dns query A "+p.Name
		}
		if err := unix.Sendto(fd, payload, 0, sa); err != nil {
			return err
		}
		p.sent("%s to %s port %d", what, p.Dst, p.Dport)
	case "tcp":
		fd, err := socketIn(p.Netns, dom, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
		if err != nil {
			return err
		}
		// The SYN leaves on connect; the socket is closed a little later, so each probe is one
		// new connection attempt.
		p.bind(fd, v6)
		if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			unix.Close(fd)
			return err
		}
		p.sent("tcp SYN to %s port %d", p.Dst, p.Dport)
		go func() { time.Sleep(p.Interval / 2); unix.Close(fd) }()
	}
	return nil
}

// bind gives the socket its port now (a ping socket: its echo id), which the kernel would
// give it on the first send, and tells Ident.
func (p Probe) bind(fd int, v6 bool) {
	if p.Ident == nil {
		return
	}
	var sa unix.Sockaddr = &unix.SockaddrInet4{}
	if v6 {
		sa = &unix.SockaddrInet6{}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return
	}
	switch a := sockname(fd).(type) {
	case *unix.SockaddrInet4:
		p.ident(uint16(a.Port))
	case *unix.SockaddrInet6:
		p.ident(uint16(a.Port))
	}
}

func sockname(fd int) unix.Sockaddr {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil
	}
	return sa
}

func isRaw(fd int) bool {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	return err == nil && typ == unix.SOCK_RAW
}

func (p Probe) ident(id uint16) {
	if p.Ident != nil && id != 0 {
		p.Ident(id)
	}
}

func (p Probe) sent(format string, args ...any) {
	if p.Sent != nil {
		p.Sent(format, args...)
	}
}

// pingSocketIn opens an ICMP ping socket in the namespace at path. Where the namespace's
// net.ipv4.ping_group_range does not let root open one (the kernel's default, and
// containerd's), the range is opened to root for the moment of the socket() call and put
// back at once: the kernel checks it only then.
func pingSocketIn(path string, domain, proto int) (int, error) {
	return inNetns(path, func() (int, error) {
		fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
		if err == nil || !(errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) {
			return fd, err
		}
		const knob = "/proc/sys/net/ipv4/ping_group_range" // one knob for IPv4 and IPv6
		old, rerr := os.ReadFile(knob)
		if rerr != nil {
			return -1, err
		}
		if werr := os.WriteFile(knob, []byte("0 0"), 0o644); werr != nil {
			return -1, err
		}
		fd, err = unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
		if werr := os.WriteFile(knob, old, 0o644); werr != nil && err == nil {
			unix.Close(fd)
			return -1, fmt.Errorf("restore %s: %w", knob, werr)
		}
		return fd, err
	})
}

// socketIn opens a socket in the network namespace at path (a socket stays in the namespace it
// was made in): on a locked thread that enters the namespace and comes back.
func socketIn(path string, domain, typ, proto int) (int, error) {
	return inNetns(path, func() (int, error) { return unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto) })
}

// inNetns runs open on a locked thread in the network namespace at path ("" for this one) and
// comes back.
func inNetns(path string, open func() (int, error)) (int, error) {
	if path == "" {
		return open()
	}
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the source's network namespace: %w", err)
	}
	defer unix.Close(target)
	runtime.LockOSThread()
	self, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer unix.Close(self)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return -1, fmt.Errorf("enter the source's network namespace %s: %w", path, err)
	}
	fd, openErr := open()
	if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the other namespace: leave it locked so that it dies with
		// this goroutine instead of serving others.
		if openErr == nil {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("return from the source's network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return fd, openErr
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// dnsQuery is a DNS query (RD set) for name's A record.
func dnsQuery(id uint16, name string) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], 0x0100)
	binary.BigEndian.PutUint16(b[4:], 1)
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0, 0, 1, 0, 1)
}

package nodestate

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Socket is one socket bound to a port in a namespace, as `ss -lunp -m` (or -ltnp) shows it.
type Socket struct {
	Proto string // "tcp" or "udp"
	Local netip.AddrPort
	State string // "LISTEN", "UNCONN", "ESTAB", ...
	Inode uint32
	// RecvQ is the bytes queued (UDP) or, for a listener, the connections waiting in the
	// accept queue; SendQ is, for a listener, its backlog (the listen() argument, capped by
	// net.core.somaxconn).
	RecvQ, SendQ uint32
	// From SK_MEMINFO: the receive buffer's bytes in use and its size (SO_RCVBUF, doubled by
	// the kernel), and the packets the socket dropped.
	RmemAlloc, Rcvbuf, Drops uint32
	HasMem                   bool
	// Procs are the processes holding the socket, "name(pid)", as ss -p prints them: only
	// those whose namespace could be read.
	Procs []string
}

// SocketsOn lists the TCP listeners or UDP sockets (proto "tcp", "udp") of both families bound
// to port in the namespace with inode ino, with their memory and the processes that hold them.
func (r *Reader) SocketsOn(ino uint32, proto string, port uint16) ([]Socket, error) {
	var socks []Socket
	err := r.Do(ino, func() error {
		for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
			s, err := diagSockets(fam, proto, port)
			if err != nil {
				return err
			}
			socks = append(socks, s...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s sockets on port %d in netns %d: %w", proto, port, ino, err)
	}
	if len(socks) > 0 {
		owners := socketOwners(r.ns.Proc(), socks)
		for i := range socks {
			socks[i].Procs = owners[socks[i].Inode]
		}
	}
	return socks, nil
}

// The sock_diag request and the attributes read (linux/inet_diag.h, sock_diag.h).
const (
	inetDiagSkMeminfo                                   = 7 // INET_DIAG_SKMEMINFO
	skMeminfoRmemAlloc, skMeminfoRcvbuf, skMeminfoDrops = 0, 1, 8
)

var tcpStates = map[uint8]string{1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2", 6: "TIME-WAIT", 7: "UNCONN", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING"}

// diagSockets asks the calling thread's namespace for its sockets of fam and proto bound to port.
func diagSockets(fam uint8, proto string, port uint16) ([]Socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	p := uint8(unix.IPPROTO_TCP)
	if proto == "udp" {
		p = unix.IPPROTO_UDP
	}
	// nlmsghdr (16) + inet_diag_req_v2 (56)
	req := make([]byte, 16+56)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], 20) // SOCK_DIAG_BY_FAMILY
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1)
	b := req[16:]
	b[0], b[1], b[2] = fam, p, 1<<(inetDiagSkMeminfo-1)
	// TCP: listeners only (what a SYN looks for, and what overflows); a busy node's
	// established sockets would make the dump long for nothing. UDP: all.
	states := uint32(0xfff)
	if p == unix.IPPROTO_TCP {
		states = 1 << 10 // TCP_LISTEN
	}
	ne.PutUint32(b[4:], states)
	// The kernel filters a dump by port only with a bytecode filter: take all, keep port's.
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []Socket
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(ne.Uint32(m.Data)); e != 0 {
						return nil, unix.Errno(-e)
					}
				}
				return out, nil
			}
			if s, ok := parseDiag(m.Data, fam, proto, port); ok {
				out = append(out, s)
			}
		}
	}
}

// parseDiag reads one inet_diag_msg and its attributes.
func parseDiag(d []byte, fam uint8, proto string, port uint16) (Socket, bool) {
	if len(d) < 72 {
		return Socket{}, false
	}
	ne := binary.NativeEndian
	sport := binary.BigEndian.Uint16(d[4:])
	if sport != port {
		return Socket{}, false
	}
	var addr netip.Addr
	if fam == unix.AF_INET {
		addr = netip.AddrFrom4([4]byte(d[8:12]))
	} else {
		addr = netip.AddrFrom16([16]byte(d[8:24]))
	}
	s := Socket{Proto: proto, Local: netip.AddrPortFrom(addr, sport), State: tcpStates[d[1]],
		RecvQ: ne.Uint32(d[56:]), SendQ: ne.Uint32(d[60:]), Inode: ne.Uint32(d[68:])}
	for a := d[72:]; len(a) >= 4; {
		l := int(ne.Uint16(a))
		if l < 4 || l > len(a) {
			break
		}
		if ne.Uint16(a[2:]) == inetDiagSkMeminfo {
			v := a[4:l]
			get := func(i int) uint32 {
				if 4*i+4 <= len(v) {
					return ne.Uint32(v[4*i:])
				}
				return 0
			}
			s.RmemAlloc, s.Rcvbuf, s.Drops, s.HasMem = get(skMeminfoRmemAlloc), get(skMeminfoRcvbuf), get(skMeminfoDrops), true
		}
		a = a[(l+3)&^3:]
	}
	return s, true
}

// socketOwners maps the socket inodes of socks to the processes that hold them, reading
// proc/*/fd as ss -p does. Every process is read, not only those whose namespace is the
// socket's: a process may make a socket in a namespace from one thread (setns) and live in
// another, and socket inodes are unique on the node.
func socketOwners(proc string, socks []Socket) map[uint32][]string {
	owners := map[uint32][]string{}
	want := map[uint32]bool{}
	for _, s := range socks {
		want[s.Inode] = true
	}
	pids, _ := filepath.Glob(filepath.Join(proc, "[0-9]*"))
	for _, dir := range pids {
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		who := strings.TrimSpace(string(comm)) + "(" + filepath.Base(dir) + ")"
		for _, fd := range fds {
			l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(l, "socket:[") {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]"), 10, 32)
			if err != nil {
				continue
			}
			if want[uint32(n)] && !contains(owners[uint32(n)], who) {
				owners[uint32(n)] = append(owners[uint32(n)], who)
			}
		}
	}
	for _, v := range owners {
		sort.Strings(v)
	}
	return owners
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

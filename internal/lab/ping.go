package lab

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

const (
	icmpv4EchoRequest = 8
	icmpv4EchoReply   = 0
	icmpv6EchoRequest = 128
	icmpv6EchoReply   = 129
	pingTokenLen      = 8
)

// Ping sends count ICMP echo requests (IPv4 or IPv6 by dst) from inside the
// namespace with a raw socket, interval apart, using identifier id, and returns
// how many distinct replies came back within timeout after the last send.
//
// A raw ICMP socket receives a copy of every ICMP packet the namespace gets,
// so replies are matched on source, id, sequence and a random per-call token
// in the payload; that keeps concurrent pings and late replies to an earlier
// Ping with the same id from being counted. ICMP errors coming back (e.g.
// host unreachable, admin prohibited) count as "no reply", not as an error:
// an unconnected raw socket without IP_RECVERR gets them only as ordinary
// ICMP packets, never as an errno. err is for local failures such as no
// route.
func (n *NS) Ping(dst string, id uint16, count int, interval, timeout time.Duration) (replies int, err error) {
	replies, err = n.ping(dst, id, count, interval, timeout)
	if err != nil {
		return replies, fmt.Errorf("ping %s from %s: %w", dst, n.name, err)
	}
	return replies, nil
}

func (n *NS) ping(dst string, id uint16, count int, interval, timeout time.Duration) (int, error) {
	addr, err := netip.ParseAddr(dst)
	if err != nil {
		return 0, err
	}
	addr = addr.Unmap()
	if count <= 0 {
		return 0, errors.New("count must be positive")
	}
	if count > 0xffff {
		return 0, errors.New("count must fit the 16-bit sequence number")
	}
	network, laddr, reqType, replyType := "ip4:icmp", "0.0.0.0", byte(icmpv4EchoRequest), byte(icmpv4EchoReply)
	if addr.Is6() {
		network, laddr, reqType, replyType = "ip6:ipv6-icmp", "::", icmpv6EchoRequest, icmpv6EchoReply
	}

	var token [pingTokenLen]byte
	if _, err := rand.Read(token[:]); err != nil {
		return 0, err
	}

	var conn net.PacketConn
	err = n.Do(func() error {
		var err error
		conn, err = net.ListenPacket(network, laddr)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("open raw socket: %w", err)
	}
	defer conn.Close()

	to := &net.IPAddr{IP: net.IP(addr.AsSlice()), Zone: addr.Zone()}
	var (
		wg      sync.WaitGroup
		sendErr error
		stop    = make(chan struct{})
	)
	wg.Go(func() {
		for seq := range count {
			if seq > 0 {
				select {
				case <-time.After(interval):
				case <-stop:
					return
				}
			}
			pkt := echoRequest(reqType, id, uint16(seq), token[:])
			if _, err := conn.WriteTo(pkt, to); err != nil {
				sendErr = err
				_ = conn.SetReadDeadline(time.Now())
				return
			}
		}
		// The reader has no deadline until now, so the wait for replies
		// starts exactly at the last send.
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
	})

	seen := make(map[uint16]bool, count)
	buf := make([]byte, 1500)
	var readErr error
	for {
		nr, from, err := conn.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				readErr = err
			}
			break
		}
		ip, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		src, ok := netip.AddrFromSlice(ip.IP)
		if !ok || src.Unmap() != addr.WithZone("") {
			continue
		}
		// The IPv4 header is already stripped by net.IPConn; ICMPv6 raw
		// sockets never include the IPv6 header.
		seq, ok := parseEchoReply(buf[:nr], replyType, id, token[:])
		if !ok || int(seq) >= count {
			continue
		}
		seen[seq] = true
		if len(seen) == count {
			// Every request has been answered, so nothing is left to wait for.
			break
		}
	}
	close(stop)
	wg.Wait()
	return len(seen), errors.Join(sendErr, readErr)
}

func echoRequest(typ byte, id, seq uint16, token []byte) []byte {
	pkt := make([]byte, 8+len(token)+8)
	pkt[0] = typ
	binary.BigEndian.PutUint16(pkt[4:], id)
	binary.BigEndian.PutUint16(pkt[6:], seq)
	copy(pkt[8:], token)
	binary.BigEndian.PutUint64(pkt[8+len(token):], uint64(time.Now().UnixNano()))
	if typ == icmpv4EchoRequest {
		// ICMPv6 raw sockets get their checksum from the kernel (it needs
		// the pseudo-header); ICMPv4 has none and is ours to fill in.
		binary.BigEndian.PutUint16(pkt[2:], checksum(pkt))
	}
	return pkt
}

func parseEchoReply(b []byte, typ byte, id uint16, token []byte) (uint16, bool) {
	if len(b) < 8+len(token) || b[0] != typ || b[1] != 0 {
		return 0, false
	}
	if binary.BigEndian.Uint16(b[4:]) != id {
		return 0, false
	}
	if string(b[8:8+len(token)]) != string(token) {
		return 0, false
	}
	return binary.BigEndian.Uint16(b[6:]), true
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return ^uint16(sum)
}

package trace

import (
	"fmt"
	"strconv"
	"strings"
)

// Proto is an IP protocol number that prints and parses by name.
type Proto uint8

const (
	ProtoAny    Proto = 0
	ProtoICMP   Proto = 1
	ProtoTCP    Proto = 6
	ProtoUDP    Proto = 17
	ProtoICMPv6 Proto = 58
)

var protoNames = map[Proto]string{ProtoICMP: "icmp", ProtoTCP: "tcp", ProtoUDP: "udp", ProtoICMPv6: "icmpv6"}

func (p Proto) String() string {
	switch p { // protoNames, without a map lookup: every hop's headers print it
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMPv6:
		return "icmpv6"
	case ProtoAny:
		return "any"
	}
	return strconv.Itoa(int(p))
}

// ParseProto accepts a protocol name or number; "" and "any" mean any protocol.
func ParseProto(in string) (Proto, error) {
	s := strings.ToLower(strings.TrimSpace(in))
	if s == "" || s == "any" {
		return ProtoAny, nil
	}
	for p, n := range protoNames {
		if n == s {
			return p, nil
		}
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("unknown protocol %q (want icmp, tcp, udp, icmpv6 or a number 1-255)", in)
	}
	return Proto(n), nil
}

func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p *Proto) UnmarshalText(b []byte) error {
	v, err := ParseProto(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// HasPorts says whether a filter with this protocol may name ports: TCP, UDP, or any (then
// the ports restrict it to TCP and UDP).
func (p Proto) HasPorts() bool {
	return p == ProtoTCP || p == ProtoUDP || p == ProtoAny
}

// TCPFlags is the TCP flags byte, printed as "SYN,ACK".
type TCPFlags uint8

var tcpFlagNames = []string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

func (f TCPFlags) String() string { return string(f.AppendTo(nil)) }

// AppendTo appends String to b.
func (f TCPFlags) AppendTo(b []byte) []byte {
	n := len(b)
	for i, name := range tcpFlagNames {
		if f&(1<<i) != 0 {
			if len(b) > n {
				b = append(b, ',')
			}
			b = append(b, name...)
		}
	}
	return b
}

func (f TCPFlags) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

func (f *TCPFlags) UnmarshalText(b []byte) error {
	var v TCPFlags
	if len(b) > 0 {
	next:
		for _, n := range strings.Split(string(b), ",") {
			for i, name := range tcpFlagNames {
				if name == n {
					v |= 1 << i
					continue next
				}
			}
			return fmt.Errorf("unknown TCP flag %q", n)
		}
	}
	*f = v
	return nil
}

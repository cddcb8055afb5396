package nodestate

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Counters reads the namespace's protocol counters, as nstat names them: /proc/net/snmp's
// ("IpFragFails", "IcmpMsgOutType3") and /proc/net/snmp6's ("Icmp6OutPktTooBigs"). They are
// read through /proc/thread-self, whose net directory is the reading thread's namespace.
func (r *Reader) Counters(ino uint32) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := r.Do(ino, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		parseSNMP(b, out)
		if b, err := os.ReadFile("/proc/thread-self/net/snmp6"); err == nil {
			parseSNMP6(b, out)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read counters in netns %d: %w", ino, err)
	}
	return out, nil
}

// parseSNMP reads /proc/net/snmp's pairs of lines: "Ip: Forwarding DefaultTTL ..." and
// "Ip: 1 64 ...".
func parseSNMP(b []byte, out map[string]uint64) {
	var names []string
	prefix := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		p, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if p != prefix || names == nil {
			prefix, names = p, fields
			continue
		}
		for i, f := range fields {
			if v, err := strconv.ParseUint(f, 10, 64); err == nil && i < len(names) {
				out[p+names[i]] = v
			}
		}
		names = nil
	}
}

// parseSNMP6 reads /proc/net/snmp6's "Icmp6OutPktTooBigs  3" lines.
func parseSNMP6(b []byte, out map[string]uint64) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 {
			if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				out[f[0]] = v
			}
		}
	}
}

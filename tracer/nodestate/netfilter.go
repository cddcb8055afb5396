package nodestate

import (
	"errors"
	"io/fs"
	"os"
	"strings"
)

// LegacyIptables lists the legacy iptables (x_tables) tables instantiated in a namespace:
// /proc/net/ip_tables_names (ip6_tables_names for IPv6), read from inside it. iptables-nft
// does not make them; iptables-legacy (and anything else using x_tables) does. Reading the
// file changes nothing (asking the tables themselves, with getsockopt, would create them).
func (r *Reader) LegacyIptables(ino uint32, ipv6 bool) ([]string, error) {
	file := "/proc/thread-self/net/ip_tables_names"
	if ipv6 {
		file = "/proc/thread-self/net/ip6_tables_names"
	}
	var names []string
	err := r.Do(ino, func() error {
		b, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // x_tables not loaded: no legacy table anywhere
		}
		if err != nil {
			return err
		}
		names = strings.Fields(string(b))
		return nil
	})
	return names, err
}

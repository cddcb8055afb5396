package nodestate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// sysctlRoot is our own /proc/sys, not hostProc's: /proc/sys/net shows the namespace of the
// thread that opens it whichever procfs mount it is reached through.
const sysctlRoot = "/proc/sys"

// deviceTrees are the sysctl directories whose next component is a device name, which may
// itself contain dots ("flannel.1", "eth0.100").
var deviceTrees = []string{"net.ipv4.conf.", "net.ipv6.conf.", "net.ipv4.neigh.", "net.ipv6.neigh.", "net.mpls.conf."}

// sysctlRel maps a key to its path under /proc/sys. It takes three forms:
//   - dotted, as given: "net.ipv4.conf.flannel.1.forwarding", where everything between a
//     device tree and the last dot is the device;
//   - dotted with the device's dots written as slashes, as sysctl(8) wants:
//     "net.ipv4.conf.flannel/1.forwarding";
//   - a path: "net/ipv4/conf/flannel.1/forwarding" or "/proc/sys/net/...".
//
// Only net.* is allowed: everything else under /proc/sys is global, so reading it "in a
// namespace" would present the host's value as the namespace's.
func sysctlRel(key string) (string, error) {
	var rel string
	switch first := strings.IndexAny(key, "./"); {
	case first >= 0 && key[first] == '/':
		rel = strings.Trim(strings.TrimPrefix(key, sysctlRoot+"/"), "/")
	case strings.Contains(key, "/"):
		rel = strings.Map(func(c rune) rune {
			switch c {
			case '.':
				return '/'
			case '/':
				return '.'
			}
			return c
		}, key)
	default:
		rel = strings.ReplaceAll(key, ".", "/")
		for _, tree := range deviceTrees {
			rest, ok := strings.CutPrefix(key, tree)
			if !ok {
				continue
			}
			i := strings.LastIndexByte(rest, '.')
			if i <= 0 || i == len(rest)-1 {
				return "", fmt.Errorf("sysctl %q: want %s<device>.<name>", key, tree)
			}
			rel = strings.ReplaceAll(tree, ".", "/") + rest[:i] + "/" + rest[i+1:]
			break
		}
	}
	if filepath.Clean(rel) != rel || !strings.HasPrefix(rel, "net/") {
		return "", fmt.Errorf("sysctl %q: not a net.* key", key)
	}
	return rel, nil
}

// deviceKey is the path form of a per-device sysctl, which needs no guessing about dots.
func deviceKey(tree, dev, name string) (string, error) {
	if dev == "" || dev == "." || dev == ".." || strings.ContainsAny(dev, "/\x00") {
		return "", fmt.Errorf("invalid device name %q", dev)
	}
	return "net/" + tree + "/" + dev + "/" + name, nil
}

// readSysctl reads a sysctl given in path form; it must run inside the namespace.
func readSysctl(rel string) (string, error) {
	b, err := os.ReadFile(filepath.Join(sysctlRoot, rel))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readSysctls reads several path-form sysctls in one visit to the namespace.
func (r *Reader) readSysctls(ino uint32, rels ...string) ([]string, error) {
	vals := make([]string, len(rels))
	err := r.Do(ino, func() error {
		var errs []error
		for i, rel := range rels {
			v, err := readSysctl(rel)
			if err != nil {
				errs = append(errs, err)
			}
			vals[i] = v
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return nil, fmt.Errorf("read %s in netns %d: %w", strings.Join(rels, ", "), ino, err)
	}
	return vals, nil
}

// Sysctl reads a net.* sysctl inside the namespace with inode ino. See sysctlRel for the
// forms key may take.
func (r *Reader) Sysctl(ino uint32, key string) (string, error) {
	rel, err := sysctlRel(key)
	if err != nil {
		return "", fmt.Errorf("read %s in netns %d: %w", key, ino, err)
	}
	var v string
	err = r.Do(ino, func() error {
		var err error
		v, err = readSysctl(rel)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read %s in netns %d: %w", key, ino, err)
	}
	return v, nil
}

// Forwarding is whether a namespace forwards packets, globally and on one device. IPv4 needs
// both ip_forward and the receiving device's forwarding; IPv6's all.forwarding sets every
// device's, but a device's own value can be changed afterwards.
type Forwarding struct {
	Global     string // net.ipv4.ip_forward or net.ipv6.conf.all.forwarding
	Device     string // net.ipv{4,6}.conf.<DeviceName>.forwarding; empty when DeviceName is
	DeviceName string
	IPv6       bool
}

// Forwarding reads the forwarding sysctls of the namespace with inode ino; dev may be empty to
// read only the global one.
func (r *Reader) Forwarding(ino uint32, dev string, ipv6 bool) (Forwarding, error) {
	f := Forwarding{DeviceName: dev, IPv6: ipv6}
	tree, global := "ipv4/conf", "net/ipv4/ip_forward"
	if ipv6 {
		tree, global = "ipv6/conf", "net/ipv6/conf/all/forwarding"
	}
	rels := []string{global}
	if dev != "" {
		k, err := deviceKey(tree, dev, "forwarding")
		if err != nil {
			return f, fmt.Errorf("read forwarding of %s in netns %d: %w", dev, ino, err)
		}
		rels = append(rels, k)
	}
	vals, err := r.readSysctls(ino, rels...)
	if err != nil {
		return f, err
	}
	f.Global = vals[0]
	if dev != "" {
		f.Device = vals[1]
	}
	return f, nil
}

// RPFilter is reverse path filtering on a device: 0 off, 1 strict, 2 loose. The kernel uses
// the larger of conf.all and conf.<dev>, so a device set to 0 still filters when all is 1.
type RPFilter struct {
	All, Device, Effective int
}

// RPFilter reads the rp_filter sysctls of dev in the namespace with inode ino.
func (r *Reader) RPFilter(ino uint32, dev string) (RPFilter, error) {
	k, err := deviceKey("ipv4/conf", dev, "rp_filter")
	if err != nil {
		return RPFilter{}, fmt.Errorf("read rp_filter of %s in netns %d: %w", dev, ino, err)
	}
	vals, err := r.readSysctls(ino, "net/ipv4/conf/all/rp_filter", k)
	if err != nil {
		return RPFilter{}, err
	}
	all, err1 := strconv.Atoi(vals[0])
	d, err2 := strconv.Atoi(vals[1])
	if err := errors.Join(err1, err2); err != nil {
		return RPFilter{}, fmt.Errorf("read rp_filter of %s in netns %d: %w", dev, ino, err)
	}
	return RPFilter{All: all, Device: d, Effective: max(all, d)}, nil
}

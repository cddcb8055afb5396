// Package kube names Kubernetes pods on the command line and resolves them to the node's pod
// sandboxes (through the container runtime's CRI socket, package cri), with the Kubernetes API as a
// fallback that says where a pod on another node runs.
package kube

import (
	"fmt"
	"net/netip"
	"strings"
)

// PodRef names a pod as the user typed it. Namespace is "" when the user gave none: the pod is
// then looked for in every namespace.
type PodRef struct {
	Namespace string
	Name      string
}

// String is "namespace/name", or the bare name without a namespace.
func (r PodRef) String() string {
	if r.Namespace == "" {
		return r.Name
	}
	return r.Namespace + "/" + r.Name
}

// acceptedForms is what ParsePodRef's errors list.
const acceptedForms = "an IPv4/IPv6 address or CIDR, or a pod as POD, NAMESPACE/POD or pod/NAMESPACE/POD"

// ParsePodRef tells a pod reference from an address in a --src/--dst value:
//
//	POD, NAMESPACE/POD, pod/NAMESPACE/POD, pod/POD (also pods/...)  a pod: isPod
//	10.1.2.3, 10.0.0.0/8, fd00::1, 2001:db8::/32                   an address or CIDR: not isPod
//	""                                                              neither, and no error (any)
//
// A value with a ':' or made of digits and dots (with an optional /N) is taken for an address:
// when it does not parse as one, the error is about the address. Pod names are checked as
// Kubernetes checks them (a DNS-1123 subdomain), namespaces likewise (a DNS-1123 label). A
// namespace that is itself called "pod" must be written pod/pod/NAME ("pod" alone is a pod of
// that name).
func ParsePodRef(s string) (ref PodRef, isPod bool, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return PodRef{}, false, nil
	}
	if looksLikeAddr(s) {
		if strings.Contains(s, "/") {
			if _, err := netip.ParsePrefix(s); err != nil {
				return PodRef{}, false, fmt.Errorf("bad CIDR %q: want %s", s, acceptedForms)
			}
		} else if _, err := netip.ParseAddr(s); err != nil {
			return PodRef{}, false, fmt.Errorf("bad address %q: want %s", s, acceptedForms)
		}
		return PodRef{}, false, nil
	}

	parts := strings.Split(s, "/")
	if (parts[0] == "pod" || parts[0] == "pods") && len(parts) > 1 {
		parts = parts[1:]
	}
	switch len(parts) {
	case 1:
		ref = PodRef{Name: parts[0]}
	case 2:
		ref = PodRef{Namespace: parts[0], Name: parts[1]}
	default:
		return PodRef{}, false, fmt.Errorf("%q has too many '/': want %s", s, acceptedForms)
	}
	if msg := checkName(ref.Name, 253, true); msg != "" {
		return PodRef{}, false, fmt.Errorf("%q is not an address and %q is not a valid pod name (%s): want %s", s, ref.Name, msg, acceptedForms)
	}
	if ref.Namespace != "" || len(parts) == 2 {
		if msg := checkName(ref.Namespace, 63, false); msg != "" {
			return PodRef{}, false, fmt.Errorf("%q is not an address and %q is not a valid namespace (%s): want %s", s, ref.Namespace, msg, acceptedForms)
		}
	}
	return ref, true, nil
}

// looksLikeAddr: pod names never hold ':', and a dotted run of digits is an IPv4 address (or a
// mistyped one), not a pod.
func looksLikeAddr(s string) bool {
	if strings.Contains(s, ":") {
		return true
	}
	addr, bits, slash := strings.Cut(s, "/")
	if !strings.Contains(addr, ".") || !digitsAndDots(addr) {
		return false
	}
	return !slash || (bits != "" && digitsAndDots(bits))
}

func digitsAndDots(s string) bool {
	for _, c := range s {
		if c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// checkName checks a DNS-1123 label (dots false) or subdomain (dots true) of at most max bytes,
// returning what is wrong or "".
func checkName(s string, max int, dots bool) string {
	if s == "" {
		return "empty"
	}
	if len(s) > max {
		return fmt.Sprintf("longer than %d characters", max)
	}
	allowed := "lowercase letters, digits and '-'"
	if dots {
		allowed = "lowercase letters, digits, '-' and '.'"
	}
	labels := []string{s}
	if dots {
		labels = strings.Split(s, ".")
	}
	for _, l := range labels {
		if l == "" {
			return "empty part between dots"
		}
		if len(l) > 63 {
			return "a part longer than 63 characters"
		}
		for i, c := range l {
			alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
			switch {
			case alnum:
			case c == '-' && i > 0 && i < len(l)-1:
			case c == '-':
				return "must start and end with a lowercase letter or digit"
			default:
				return "only " + allowed
			}
		}
	}
	return ""
}

package kube

import (
	"strings"
	"testing"
)

func TestParsePodRef(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ref     PodRef
		isPod   bool
		errHas  string // "" for no error
		comment string
	}{
		{in: "", comment: "empty: any address"},
		{in: "10.0.0.1"},
		{in: "10.0.0.0/8", comment: "a CIDR, not namespace 10.0.0.0 pod 8"},
		{in: "fd00::1"},
		{in: "2001:db8::/32"},
		{in: "::ffff:10.0.0.1"},
		{in: "fe80::1%eth0"},
		{in: " 10.1.2.3 ", comment: "spaces trimmed"},
		{in: "web", ref: PodRef{Name: "web"}, isPod: true},
		{in: "web-7c9d8-x2x", ref: PodRef{Name: "web-7c9d8-x2x"}, isPod: true},
		{in: "default/web", ref: PodRef{Namespace: "default", Name: "web"}, isPod: true},
		{in: "pod/default/web", ref: PodRef{Namespace: "default", Name: "web"}, isPod: true},
		{in: "pods/default/web", ref: PodRef{Namespace: "default", Name: "web"}, isPod: true},
		{in: "pod/web", ref: PodRef{Name: "web"}, isPod: true, comment: "kubectl's TYPE/NAME"},
		{in: "pod/pod/web", ref: PodRef{Namespace: "pod", Name: "web"}, isPod: true},
		{in: "kube-system/coredns-5d78c9869d-abcde", ref: PodRef{Namespace: "kube-system", Name: "coredns-5d78c9869d-abcde"}, isPod: true},
		{in: "ns/my.pod.name", ref: PodRef{Namespace: "ns", Name: "my.pod.name"}, isPod: true, comment: "pod names are subdomains"},
		{in: "123", ref: PodRef{Name: "123"}, isPod: true, comment: "digits alone are a valid pod name, not an address"},
		{in: "web/8", ref: PodRef{Namespace: "web", Name: "8"}, isPod: true},
		{in: "10.0.0.300", errHas: `bad address "10.0.0.300"`},
		{in: "10.0.0.0/33", errHas: `bad CIDR "10.0.0.0/33"`},
		{in: "10.0.0/8", errHas: `bad CIDR`},
		{in: "fd00::g", errHas: `bad address`},
		{in: "Web", errHas: `"Web" is not a valid pod name (only lowercase letters, digits, '-' and '.')`},
		{in: "default/web_1", errHas: "not a valid pod name"},
		{in: "-web", errHas: "must start and end with a lowercase letter or digit"},
		{in: "my.ns/web", errHas: `"my.ns" is not a valid namespace (only lowercase letters, digits and '-')`},
		{in: "/web", errHas: `"" is not a valid namespace (empty)`},
		{in: "default/", errHas: `"" is not a valid pod name (empty)`},
		{in: "pod/", errHas: "not a valid pod name"},
		{in: "pod", ref: PodRef{Name: "pod"}, isPod: true, comment: "a pod called pod"},
		{in: "a/b/c", errHas: "too many '/'"},
		{in: "pod/a/b/c", errHas: "too many '/'"},
		{in: "web..x", errHas: "empty part between dots"},
		{in: strings.Repeat("a", 64) + "/web", errHas: "longer than 63"},
		{in: strings.Repeat("a", 254), errHas: "longer than 253"},
		{in: "a." + strings.Repeat("b", 64), errHas: "a part longer than 63"},
	} {
		ref, isPod, err := ParsePodRef(tc.in)
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("ParsePodRef(%q) error = %v, want one with %q", tc.in, err, tc.errHas)
			} else if !strings.Contains(err.Error(), "POD, NAMESPACE/POD or pod/NAMESPACE/POD") || !strings.Contains(err.Error(), "address or CIDR") {
				t.Errorf("ParsePodRef(%q) error %q does not say which forms are accepted", tc.in, err)
			}
			continue
		}
		if err != nil || ref != tc.ref || isPod != tc.isPod {
			t.Errorf("ParsePodRef(%q) = %+v, %v, %v; want %+v, %v (%s)", tc.in, ref, isPod, err, tc.ref, tc.isPod, tc.comment)
		}
	}
}

func TestPodRefString(t *testing.T) {
	if s := (PodRef{Namespace: "a", Name: "b"}).String(); s != "a/b" {
		t.Errorf("String = %q", s)
	}
	if s := (PodRef{Name: "b"}).String(); s != "b" {
		t.Errorf("String = %q", s)
	}
}

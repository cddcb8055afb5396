package nftrace

import (
	"testing"

	"golang.org/x/sys/unix"
)

// Conntrack's view is told only where it means something: an ip/ip6/inet chain after
// conntrack ran (a chain before priority -200 in prerouting/output sees "not tracked yet",
// which the kernel reports as the invalid bit).
func TestCtWords(t *testing.T) {
	cases := []struct {
		fam          byte
		state        uint32
		dir          int8
		hook         string
		prio         int32
		wantS, wantD string
	}{
		{unix.NFPROTO_INET, 8, 0, "forward", 0, "new", "original"},
		{unix.NFPROTO_IPV4, 2, 1, "input", 0, "established", "reply"},
		{unix.NFPROTO_IPV4, 1, -1, "forward", 0, "invalid", ""},
		{unix.NFPROTO_IPV4, 1, -1, "prerouting", -300, "", ""},
		{unix.NFPROTO_IPV4, 8, 0, "prerouting", -150, "new", "original"},
		{unix.NFPROTO_IPV6, 64, -1, "output", 0, "untracked", ""},
		{unix.NFPROTO_BRIDGE, 8, 0, "forward", 0, "", ""},
		{unix.NFPROTO_IPV4, 0, -1, "forward", 0, "", ""},
	}
	for _, c := range cases {
		s, d := ctWords(&candidate{ev: event{family: c.fam}, ctState: c.state, ctDir: c.dir}, &chainInfo{base: true, hook: c.hook, prio: c.prio})
		if s != c.wantS || d != c.wantD {
			t.Errorf("%s %s/%d state %d: %q %q, want %q %q", familyName(c.fam), c.hook, c.prio, c.state, s, d, c.wantS, c.wantD)
		}
	}
	if s, _ := ctWords(&candidate{ev: event{family: unix.NFPROTO_IPV4}, ctState: 8}, nil); s != "" {
		t.Errorf("no base chain known: %q", s)
	}
}

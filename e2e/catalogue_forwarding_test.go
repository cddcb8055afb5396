package e2e

import (
	"testing"
)

// pingFromPod is traffic: count pings from the pod to dst, whatever comes back.
func pingFromPod(s *scenarioLab, dst string, count int) func(t *testing.T) {
	return func(t *testing.T) {
		if _, err := s.Pod.Ping(dst, 0x4242, count, 100e6, 300e6); err != nil {
			t.Fatalf("ping %s: %v", dst, err)
		}
	}
}

var _ = addScenario(scenario{
	name:  "forwarding/ipv4-off",
	about: "the node's net.ipv4.ip_forward is 0 (incidents 000, 003)",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		if err := s.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
			t.Fatal(err)
		}
		return []string{"--src", s.PodIP.String(), "--dst", s.ExtIP.String(), "--proto", "icmp"}, pingFromPod(s, s.ExtIP.String(), 2)
	},
	want: want{
		outcome: "dropped", class: "forwarding", netns: "node", ifname: "veth-pod", reason: "IP_INADDRERRORS",
		cause:    "forwarding disabled (net.ipv4.ip_forward=0)",
		evidence: []evidence{{"net.ipv4.ip_forward", "0"}},
		fix:      "sysctl -w net.ipv4.ip_forward=1",
	},
})

var _ = addScenario(scenario{
	name:  "forwarding/ipv6-off",
	about: "the node's net.ipv6.conf.all.forwarding is 0",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		if err := s.Node.Sysctl("net.ipv6.conf.all.forwarding", "0"); err != nil {
			t.Fatal(err)
		}
		return []string{"--src", s.Pod6, "--dst", s.Ext6, "--proto", "icmp"}, pingFromPod(s, s.Ext6, 2)
	},
	want: want{
		v6: true, outcome: "dropped", class: "forwarding", netns: "node", ifname: "veth-pod",
		cause:    "forwarding disabled",
		evidence: []evidence{{"net.ipv6.conf.all.forwarding", "0"}},
		fix:      "sysctl -w net.ipv6.conf.all.forwarding=1",
	},
})

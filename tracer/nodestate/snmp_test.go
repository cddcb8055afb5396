package nodestate

import "testing"

func TestParseSNMP(t *testing.T) {
	out := map[string]uint64{}
	parseSNMP([]byte("Ip: Forwarding DefaultTTL FragFails\nIp: 1 64 3\nIcmpMsg: InType3 OutType3\nIcmpMsg: 2 5\n"), out)
	parseSNMP6([]byte("Ip6FragFails                    4\nIcmp6OutPktTooBigs              2\n"), out)
	for k, want := range map[string]uint64{"IpForwarding": 1, "IpFragFails": 3, "IcmpMsgOutType3": 5, "Ip6FragFails": 4, "Icmp6OutPktTooBigs": 2} {
		if out[k] != want {
			t.Errorf("%s = %d, want %d (%v)", k, out[k], want, out)
		}
	}
}

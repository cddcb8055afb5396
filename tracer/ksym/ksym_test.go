package ksym

import (
	"strings"
	"testing"
)

const sample = `ffffffff81000000 T _text
ffffffff81a00000 t ip_error
ffffffff81a00100 T ip_forward
ffffffff81a00200 d some_data
ffffffff81b00000 t veth_xmit	[veth]
`

func TestSymbolize(t *testing.T) {
	tab, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[uint64]string{
		0xffffffff81a0005a: "ip_error+0x5a",
		0xffffffff81a00100: "ip_forward+0x0",
		0xffffffff81a00250: "ip_forward+0x150", // data symbols are not code: the covering function is
		0xffffffff81b00010: "veth_xmit+0x10",
		0x1000:             "0x1000",
		0:                  "",
	}
	for addr, want := range cases {
		if got := tab.Symbolize(addr); got != want {
			t.Errorf("Symbolize(%#x) = %q, want %q", addr, got, want)
		}
	}
}

func TestHiddenAddresses(t *testing.T) {
	_, err := Parse(strings.NewReader("0000000000000000 T _text\n0000000000000000 t ip_error\n"))
	if err == nil || !strings.Contains(err.Error(), "kptr_restrict") {
		t.Fatalf("want a kptr_restrict error, got %v", err)
	}
}

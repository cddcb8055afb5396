package ksym

import (
	"fmt"
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

// kallsyms lists the kernel before its modules, not in address order throughout; aliases
// share an address. Names fill several storage blocks here, and each must come back whole.
func TestUnsortedManySymbols(t *testing.T) {
	var b strings.Builder
	const n = 20000 // with their long names, some 30 blocks of names
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "%016x t function_with_a_long_name_number_%05d\n", 0xffffffff81000000+uint64(i)*0x100, i)
	}
	b.WriteString("ffffffff81000000 T alias_of_number_0\n")
	b.WriteString("ffffffffc0001000 t mod_fn\t[somemod]\n")
	b.WriteString(strings.Repeat("x", 100000) + "\n") // not a symbol line: skipped whole
	b.WriteString("ffffffffc0002000 t bad\x00name\n")
	b.WriteString("ffffffffg0000000 T not_hex\n")
	b.WriteString("1ffffffffc0000000 T too_long\n")
	tab, err := Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != n+2 {
		t.Errorf("%d symbols, want %d", tab.Len(), n+2)
	}
	for _, i := range []int{1, 255, 256, 4097, n / 2, n - 1} {
		addr := 0xffffffff81000000 + uint64(i)*0x100 + 0x10
		if got, want := tab.Symbolize(addr), fmt.Sprintf("function_with_a_long_name_number_%05d+0x10", i); got != want {
			t.Errorf("Symbolize(%#x) = %q, want %q", addr, got, want)
		}
	}
	if got := tab.Symbolize(0xffffffff81000004); got != "alias_of_number_0+0x4" {
		t.Errorf("alias: %q, want the file's last name for the address", got)
	}
	if got := tab.Symbolize(0xffffffffc0002004); got != "mod_fn+0x1004" {
		t.Errorf("past the last module symbol: %q", got)
	}
}

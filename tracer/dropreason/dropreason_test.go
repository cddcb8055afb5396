package dropreason

import (
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func TestFromKernelBTF(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("kernel BTF not available: %v", err)
	}
	names, err := FromBTF(spec)
	if errors.Is(err, ErrNoReasons) {
		t.Skip("this kernel has no enum skb_drop_reason (before 5.17)")
	}
	if err != nil {
		t.Fatalf("FromBTF: %v", err)
	}

	// Read the values back from the kernel's own enum rather than hard-coding them: they
	// move between kernel versions.
	var e *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &e); err != nil {
		t.Fatal(err)
	}
	values := map[string]uint32{}
	for _, v := range e.Values {
		values[v.Name] = uint32(v.Value)
	}
	for _, want := range []string{"NOT_SPECIFIED", "NO_SOCKET", "NETFILTER_DROP", "IP_INADDRERRORS"} {
		v, ok := values["SKB_DROP_REASON_"+want]
		if !ok {
			t.Errorf("kernel enum has no SKB_DROP_REASON_%s", want)
			continue
		}
		if got := names.Name(v); got != want {
			t.Errorf("Name(%d) = %q, want %q", v, got, want)
		}
	}
	if len(names) != len(e.Values) {
		t.Errorf("%d names for %d enum values", len(names), len(e.Values))
	}
	for v, n := range names {
		if strings.HasPrefix(n, "SKB_DROP_REASON_") || n == "" {
			t.Errorf("value %d has name %q: want the name without its prefix", v, n)
		}
	}
}

func TestName(t *testing.T) {
	n := Names{2: "NOT_SPECIFIED", 3: "NO_SOCKET"}
	cases := map[uint32]string{
		2:          "NOT_SPECIFIED",
		3:          "NO_SOCKET",
		0:          "reason-0",
		4:          "reason-4",
		4294967295: "reason-4294967295",
	}
	for v, want := range cases {
		if got := n.Name(v); got != want {
			t.Errorf("Name(%d) = %q, want %q", v, got, want)
		}
	}
	var none Names
	if got := none.Name(7); got != "reason-7" {
		t.Errorf("nil Names: Name(7) = %q, want reason-7", got)
	}
}

func specOf(t *testing.T, types ...btf.Type) *btf.Spec {
	t.Helper()
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := b.Spec()
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestFromBTFNoEnum(t *testing.T) {
	cases := map[string][]btf.Type{
		"only an int": {&btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}},
		"another enum": {&btf.Enum{Name: "skb_free_reason", Size: 4, Values: []btf.EnumValue{
			{Name: "SKB_DROP_REASON_NOT_SPECIFIED", Value: 2},
		}}},
		// The name, but not an enum: still no reasons.
		"struct of that name": {&btf.Struct{Name: "skb_drop_reason", Size: 0}},
	}
	for name, types := range cases {
		t.Run(name, func(t *testing.T) {
			names, err := FromBTF(specOf(t, types...))
			if !errors.Is(err, ErrNoReasons) {
				t.Fatalf("FromBTF = %v, %v; want ErrNoReasons", names, err)
			}
			if names != nil {
				t.Errorf("names %v returned with ErrNoReasons", names)
			}
		})
	}
}

func TestFromBTFBuiltEnum(t *testing.T) {
	spec := specOf(t,
		&btf.Int{Name: "int", Size: 4, Encoding: btf.Signed},
		&btf.Enum{Name: "skb_drop_reason", Size: 4, Values: []btf.EnumValue{
			{Name: "SKB_NOT_DROPPED_YET", Value: 0},
			{Name: "SKB_CONSUMED", Value: 1},
			{Name: "SKB_DROP_REASON_NOT_SPECIFIED", Value: 2},
			{Name: "SKB_DROP_REASON_NO_SOCKET", Value: 3},
			{Name: "SKB_DROP_REASON_MAX", Value: 200},
			{Name: "SKB_DROP_REASON_SUBSYS_MASK", Value: 0xffff0000},
		}},
	)
	names, err := FromBTF(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := Names{0: "SKB_NOT_DROPPED_YET", 1: "SKB_CONSUMED", 2: "NOT_SPECIFIED", 3: "NO_SOCKET", 200: "MAX", 0xffff0000: "SUBSYS_MASK"}
	if len(names) != len(want) {
		t.Errorf("FromBTF = %v, want %v", names, want)
	}
	for v, n := range want {
		if names[v] != n {
			t.Errorf("names[%d] = %q, want %q", v, names[v], n)
		}
	}
	if got := names.Name(4); got != "reason-4" {
		t.Errorf("Name(4) = %q", got)
	}
}

func TestInfer(t *testing.T) {
	for loc, want := range map[string]string{"nf_hook_slow+0x9a": "NETFILTER_DROP", "ip_error+0x5a": "", "": ""} {
		got, ok := Infer(loc)
		if got != want || ok != (want != "") {
			t.Errorf("Infer(%q) = %q, %v; want %q", loc, got, ok, want)
		}
	}
}

// Package tcprog holds a tiny tc BPF program for the lab: cil_from_container and
// cil_to_container, named like Cilium's per-endpoint policy programs, drop IPv4 packets whose
// source address is DENY_SRC. lab.NS.AttachTCDrop loads and attaches them. mirror_to clones
// every IPv4 packet to the egress of device MIRROR_IFINDEX, like tc's mirred mirror action;
// lab.NS.AttachTCMirror loads and attaches it.
//
// The generated tcprog_bpfel.go and .o are committed so that building needs no clang.
package tcprog

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target bpfel Tcprog tcprog.c

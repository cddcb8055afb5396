// Package bpf holds pathtrace's kernel programs and the Go bindings bpf2go generates for them.
// The generated pathtrace_bpfel.go and .o are committed so that building needs no clang.
package bpf

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target bpfel -type event -type filter -type packet -type route -type event_kind -type stat_index -type encap_kind -type func_id -type func_call -type snap Pathtrace pathtrace.c -- -I./include

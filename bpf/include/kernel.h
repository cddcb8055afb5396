/* Only the kernel types and fields pathtrace reads. preserve_access_index makes every access a
 * CO-RE relocation, so field offsets come from the running kernel's BTF, not from this file. */
#pragma once

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum { BPF_ANY = 0, BPF_NOEXIST = 1, BPF_EXIST = 2 };
#define BPF_RB_NO_WAKEUP 1
/* bpf_ringbuf_query flags */
#define BPF_RB_AVAIL_DATA 0
#define BPF_RB_RING_SIZE 1

/* x86-64's saved registers, as kprobe programs receive them (kernel field names: bpf_tracing.h
 * reads di, si... when __VMLINUX_H__ is defined). */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	unsigned long orig_ax, ip, cs, flags, sp, ss;
};
#define __VMLINUX_H__ 1

struct nf_hook_state {
	__u8 hook;
	__u8 pf;
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

/* A task's network namespace (route.h: a failed output lookup's namespace). */
struct nsproxy {
	struct net *net_ns;
} __attribute__((preserve_access_index));

struct task_struct {
	struct nsproxy *nsproxy;
} __attribute__((preserve_access_index));

struct net_device {
	char name[16];
	int ifindex;
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sock_common {
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned int len;
	__u8 cloned : 1; /* a clone (skb_clone), or the original of one */
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	unsigned char *head;
	unsigned char *data;
	unsigned int tail; /* sk_buff_data_t: an offset from head on 64-bit kernels */
} __attribute__((preserve_access_index));

struct flowi_common {
	int flowic_oif;
	int flowic_iif;
	__u8 flowic_proto;
} __attribute__((preserve_access_index));

struct flowi4 {
	struct flowi_common __fl_common;
	__be32 saddr;
	__be32 daddr;
} __attribute__((preserve_access_index));

struct in6_addr {
	__u8 s6_addr[16];
};

struct fib_nh_common {
	struct net_device *nhc_dev;
	__u8 nhc_gw_family;
	union {
		__be32 ipv4;
		struct in6_addr ipv6;
	} nhc_gw;
} __attribute__((preserve_access_index));

/* The tracepoints' own records: only used to ask, through CO-RE, whether this kernel's
 * tracepoint has an argument (reason since 5.17, consume location since 6.3). */
/* Names must match the kernel's for CO-RE; the values come from the kernel, not from here. */
enum skb_drop_reason {
	SKB_DROP_REASON_NOT_SPECIFIED = 2,
};

struct trace_event_raw_kfree_skb {
	void *location;
	enum skb_drop_reason reason;
} __attribute__((preserve_access_index));

struct trace_event_raw_consume_skb {
	void *location;
} __attribute__((preserve_access_index));

/* Wire formats: UAPI, stable, no relocation needed. */
struct iphdr {
	__u8 ihl_version; /* ihl: low nibble, version: high nibble (little endian bitfields) */
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6hdr {
	__u8 priority_version;
	__u8 flow_lbl[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	struct in6_addr saddr;
	struct in6_addr daddr;
};

struct l4hdr {
	/* TCP and UDP: ports. ICMP: type, code, checksum, then id and sequence for echo. */
	union {
		struct {
			__be16 source;
			__be16 dest;
		};
		struct {
			__u8 type;
			__u8 code;
			__u16 csum;
		};
	};
	union {
		__be32 seq; /* TCP */
		struct {
			__be16 echo_id;
			__be16 echo_seq;
		};
	};
	__be32 ack_seq;
	__u8 doff_res;
	__u8 flags;
};

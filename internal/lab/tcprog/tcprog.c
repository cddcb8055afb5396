//go:build ignore

/* A stand-in for Cilium's per-endpoint policy programs, for pathtrace's lab: two tc programs
 * named like Cilium's (cil_from_container on the host veth's ingress, cil_to_container on its
 * egress) that drop IPv4 packets from one source address, so that the tracer meets a drop
 * made by a tc BPF program the way it would on a Cilium node.
 *
 * A third, mirror_to, stands in for `action mirred egress mirror`: it clones every IPv4 packet
 * to the egress of another device and lets the original go on, so that the tracer meets a
 * clone that travels on (the kernel here has no act_mirred).
 *
 * Self-contained on purpose: no <linux/bpf.h> (which needs the host's <asm/types.h>), only
 * the few uapi definitions used here. Context fields are rewritten by the verifier by their
 * uapi offset, so struct __sk_buff must match the uapi layout up to data_end. */

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define ETH_P_IP 0x0800

struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
};

struct ethhdr {
	__u8 h_dest[6];
	__u8 h_source[6];
	__be16 h_proto;
} __attribute__((packed));

struct iphdr {
	__u8 ihl_version;
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

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The IPv4 source address to drop, in network byte order; set before loading. 0 drops nothing. */
volatile const __u32 DENY_SRC = 0;

/* The device is assumed to have Ethernet framing (veth, bridge ports): at tc, data points at
 * the MAC header. */
static __always_inline int verdict(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || (ip->ihl_version >> 4) != 4)
		return TC_ACT_OK;
	if (DENY_SRC != 0 && ip->saddr == DENY_SRC)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

/* The ifindex of the device mirror_to clones packets to (its egress); set before loading. 0
 * mirrors nothing. */
volatile const __u32 MIRROR_IFINDEX = 0;

static __always_inline int is_ipv4(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end)
		return 0;
	return eth->h_proto == bpf_htons(ETH_P_IP) && (ip->ihl_version >> 4) == 4;
}

SEC("tc")
int cil_from_container(struct __sk_buff *skb)
{
	return verdict(skb);
}

SEC("tc")
int cil_to_container(struct __sk_buff *skb)
{
	return verdict(skb);
}

/* Like `action mirred egress mirror dev <MIRROR_IFINDEX>`: a clone of each IPv4 packet goes out
 * of that device (flags 0: its egress, not its ingress); the original goes on unchanged
 * whether or not the clone could be sent, as with mirred's mirror. */
SEC("tc")
int mirror_to(struct __sk_buff *skb)
{
	if (MIRROR_IFINDEX != 0 && is_ipv4(skb))
		bpf_clone_redirect(skb, MIRROR_IFINDEX, 0);
	return TC_ACT_OK;
}

/* The contract between the BPF programs and pathtrace's Go side: the event record, the
 * configuration and the counters. Go types are generated from these by bpf2go (-type). */
#pragma once

#define IFNAMSIZ 16

enum event_kind {
	EV_RECEIVE = 1, /* net:netif_receive_skb */
	EV_QUEUE = 2,   /* net:net_dev_queue */
	EV_XMIT = 3,    /* net:net_dev_start_xmit */
	EV_ROUTE = 4,   /* fib:fib_table_lookup */
	EV_DROP = 5,    /* skb:kfree_skb */
	EV_CONSUME = 6, /* skb:consume_skb */
	EV_FUNC = 7,    /* a kernel function the packet went through (fentry/fexit or kprobe) */
};

/* The kernel functions traced where the kernel lets us (fentry, else kprobes). */
enum func_id {
	FN_IP_FORWARD = 1,
	FN_IP_LOCAL_DELIVER = 2,
	FN_IP_OUTPUT = 3,
	FN_IP_FINISH_OUTPUT2 = 4,
	FN_NF_HOOK_SLOW = 5, /* with the hook, the family and the verdict */
	FN_BR_FORWARD = 6,
	FN_IP6_FORWARD = 7,
	FN_IP6_OUTPUT = 8,
};

struct func_call {
	enum func_id id;
	__s32 ret;    /* the return value, when has_ret */
	__u8 has_ret;
	__u8 nf_hook; /* NF_INET_PRE_ROUTING... for nf_hook_slow */
	__u8 nf_pf;   /* NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_BRIDGE... */
	__u8 _pad;
};

enum encap_kind {
	ENCAP_NONE = 0,
	ENCAP_VXLAN = 1,  /* UDP, any port: 4789, flannel's 8472... recognised by its header */
	ENCAP_GENEVE = 2, /* UDP, header version 0 carrying Ethernet */
	ENCAP_IPIP = 3,   /* IPv4 or IPv6 inside IPv4 (tunl0, Calico IPIP) */
};

enum stat_index {
	STAT_EVENTS = 0,      /* events written to the ring buffer */
	STAT_LOST = 1,        /* events that found the ring buffer full */
	STAT_TRACK_FULL = 2,  /* packets that could not be tracked (map update failed) */
	STAT_LEARNED = 3,     /* NAT translations learned */
	STAT_SKIPPED = 4,     /* packets not started because the ring buffer was filling up */
	STAT_ROUTES_SKIPPED = 5, /* route lookups not reported for the same reason */
	STAT_OVER_BUDGET = 6, /* packets not started because the budget (--max-rate) was spent */
	STAT_ROUTES_OVER_BUDGET = 7, /* route lookups not reported for the same reason */
	STAT_MAX = 8,
};

struct packet {
	__u8 saddr[16]; /* IPv4 in the first four bytes */
	__u8 daddr[16];
	__u8 family;    /* 4 or 6, 0 when the headers could not be read */
	__u8 proto;
	__u8 ttl;
	__u8 tcp_flags;
	__be16 sport;   /* TCP/UDP ports; for ICMP echo both carry the identifier */
	__be16 dport;
	__be16 ip_id;
	__u8 icmp_type;
	__u8 icmp_code;
	__be16 icmp_seq;
	__u16 payload;  /* TCP/UDP payload bytes: a retransmission repeats a segment with data */
	__be32 tcp_seq;
};

/* A flow's addresses, ports and protocol: what NAT rewrites and what is learned. */
struct flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u16 _pad;
};

struct route {
	__u32 table;
	__s32 err;
	__u32 out_ifindex;
	__u32 iif;
	__u8 gw[16];
	__u8 gw_family; /* 4, 6 or 0 */
	__u8 _pad[3];
	char out_ifname[IFNAMSIZ];
};

struct event {
	__u64 ts;       /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u64 skb;      /* sk_buff address: identity of the packet while it lives */
	__u64 location; /* kfree_skb/consume_skb caller */
	enum event_kind kind;
	__u32 cpu;
	__u32 netns;    /* network namespace inode */
	__u32 ifindex;
	__u32 len;
	__u32 reason;   /* enum skb_drop_reason of the running kernel */
	char ifname[IFNAMSIZ];
	enum encap_kind encap; /* pkt is the outer packet, inner the one it carries */
	__u8 first;            /* the first event of this sk_buff's life that pathtrace saw */
	__u8 gap;              /* events of this packet were lost before this one */
	__u8 _pad[2];
	__u32 vni;             /* with ENCAP_VXLAN or ENCAP_GENEVE: the tunnel's network identifier */
	struct packet pkt;
	struct packet inner;
	struct route route;
	struct func_call fn;
};

struct filter {
	__u8 src[16];
	__u8 src_mask[16];
	__u8 dst[16];
	__u8 dst_mask[16];
	__u8 family; /* 0: any, 4, 6 */
	__u8 proto;  /* 0: any */
	__be16 sport;
	__be16 dport;
	__u16 _pad;
};

/* --pcapng: the most bytes of a packet a hop keeps, counted from its IP header. */
#define SNAP_LEN 128

/* With config.snap on, every event is followed by this in its ring-buffer record: the first
 * bytes of the packet from its network (IP) header, as the kernel holds them at that hop. Only
 * the linear part of the sk_buff is read, and never more than SNAP_LEN bytes. Without it the
 * records are struct event alone: runs without --pcapng carry nothing more. */
struct snap {
	__u16 len; /* bytes in data: 0 (route hops, no IP header), up to SNAP_LEN */
	__u8 _pad[6];
	__u8 data[SNAP_LEN];
};

/* A ring-buffer record with config.snap on: the event and its packet's bytes. (With it off a
 * record is struct event alone.) */
struct event_snap {
	struct event event;
	struct snap snap;
};

struct config {
	struct filter filter;
	/* The budget for new packets (--max-rate), a token bucket (budget.h): a token comes back
	 * every budget_interval_ns, and the bucket holds budget_depth_ns of them. 0: no budget. */
	__u64 budget_interval_ns;
	__u64 budget_depth_ns;
	__u8 snap; /* 1: follow every event with its struct snap (--pcapng) */
	__u8 _pad2[7];
};

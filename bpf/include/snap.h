/* The packet's own bytes for --pcapng: the first SNAP_LEN bytes from the IP header, copied
 * after the event in its ring-buffer record (struct snap). Only with CFG.snap: a run without
 * it reserves, reads and copies nothing more. */
#pragma once

#include "maps.h"

/* The size of one event's ring-buffer record. A constant the verifier knows: CFG is
 * read-only once loaded, so each program sees one branch. */
static __always_inline __u64 event_record_size(void)
{
	return CFG.snap ? sizeof(struct event_snap) : sizeof(struct event);
}

/* Copies the packet from its IP header: at receive skb->data points at it; elsewhere the
 * stack has set network_header. Only the linear data (head to tail) is read: past tail is
 * either paged (payload) or not the packet's. */
static __always_inline void snap_packet(struct sk_buff *skb, bool at_data, struct snap *sn)
{
	sn->len = 0;
	if (!skb)
		return;
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u32 l3;
	if (at_data) {
		l3 = BPF_CORE_READ(skb, data) - head;
	} else {
		l3 = BPF_CORE_READ(skb, network_header);
		if (l3 == 0 || l3 == 0xffff)
			return;
	}
	__u32 tail = BPF_CORE_READ(skb, tail);
	if (tail <= l3)
		return;
	__u32 n = tail - l3;
	if (n > SNAP_LEN)
		n = SNAP_LEN;
	/* Bounded for the verifier: 1..SNAP_LEN. */
	n &= 0xff;
	if (n == 0 || n > SNAP_LEN)
		return;
	if (bpf_probe_read_kernel(sn->data, n, head + l3))
		return;
	sn->len = n;
}

// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * decap.bpf.c - tc ingress program on a real (skeleton tg_decap): strips the
 * outer header the balancer added, so the inner packet (client -> VIP)
 * reaches the local stack as if it had come straight from the client.
 *
 * The kernel here has no ipip/ip6tnl devices (MACHINE-NOTES), so this
 * program is the tunnel endpoint: IPv4 with protocol 4 (IPIP) or IPv6 with
 * next header 41 (IP6IP6), non-fragmented, whose inner destination is one of
 * the configured VIPs (tg_decap_vips) loses its outer header through
 * bpf_skb_adjust_room(skb, -outer_len, BPF_ADJ_ROOM_MAC, ...). Same family
 * inside and out, so skb->protocol stays right. Everything else is left
 * exactly as it was.
 *
 * Returns TC_ACT_UNSPEC (tcx: TCX_NEXT) for every packet: the packet goes on
 * to the next program or the stack, decapsulated or not, so this program
 * coexists with others on the hook.
 */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "abi.h"

#define ETH_P_IP       0x0800
#define ETH_P_IPV6     0x86DD
#define IP_MF	       0x2000
#define IP_OFFSET      0x1FFF
#define IPPROTO_IPIP_  4
#define IPPROTO_IPV6_  41
#define TC_ACT_UNSPEC_ (-1)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Inner destinations this real accepts (its VIPs). Written by `tidegate decap`. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TG_DECAP_MAX_VIPS);
	__type(key, struct tg_decap_key);
	__type(value, __u8);
} tg_decap_vips SEC(".maps");

/* Counters by enum tg_decap_stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TG_DECAP_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tg_decap_stats SEC(".maps");

static __always_inline void stat_inc(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&tg_decap_stats, &stat);

	if (v)
		*v += 1;
}

/* Removes outer_len bytes after the MAC header. GSO size is kept: the
 * segments' payload does not change when a header goes away. */
static __always_inline int strip(struct __sk_buff *skb, __u32 outer_len, __u32 ok_stat)
{
	if (bpf_skb_adjust_room(skb, -(__s32)outer_len, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO)) {
		stat_inc(TG_DECAP_STAT_FAIL);
		return TC_ACT_UNSPEC_;
	}
	stat_inc(ok_stat);
	return TC_ACT_UNSPEC_;
}

SEC("tc")
int decap_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tg_decap_key key = {};
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return TC_ACT_UNSPEC_;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		struct iphdr *in;
		__u32 hlen;

		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5 ||
		    ip->protocol != IPPROTO_IPIP_ || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
			return TC_ACT_UNSPEC_;
		hlen = (__u32)ip->ihl * 4;
		in = (void *)ip + hlen;
		if ((void *)(in + 1) > end || in->version != 4)
			return TC_ACT_UNSPEC_;
		key.family = TG_FAMILY_V4;
		key.addr[0] = in->daddr;
		if (!bpf_map_lookup_elem(&tg_decap_vips, &key)) {
			stat_inc(TG_DECAP_STAT_PASS_NOT_VIP);
			return TC_ACT_UNSPEC_;
		}
		return strip(skb, hlen, TG_DECAP_STAT_DECAP4);
	}

	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct ipv6hdr *in = (void *)(ip6 + 1);

		if ((void *)(in + 1) > end || ip6->version != 6 || ip6->nexthdr != IPPROTO_IPV6_ ||
		    in->version != 6)
			return TC_ACT_UNSPEC_;
		key.family = TG_FAMILY_V6;
		__builtin_memcpy(key.addr, &in->daddr, 16);
		if (!bpf_map_lookup_elem(&tg_decap_vips, &key)) {
			stat_inc(TG_DECAP_STAT_PASS_NOT_VIP);
			return TC_ACT_UNSPEC_;
		}
		return strip(skb, sizeof(*ip6), TG_DECAP_STAT_DECAP6);
	}
	return TC_ACT_UNSPEC_;
}

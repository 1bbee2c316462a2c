/*
 * xdp_sink.bpf.c - runs on each real during the benchmark: drops the
 * generated traffic (IPv4 UDP, and IPIP carrying it) as early as possible so
 * that a real costs the shared CPUs nothing, and lets everything else (ARP,
 * the balancer's TCP health checks) through. The veth counts the drops
 * (ethtool -S: rx_queue_0_xdp_drops): that is the delivered-packet count.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>

#define SEC(name) __attribute__((section(name), used))

SEC("xdp") int xdp_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > end || eth->h_proto != __builtin_bswap16(ETH_P_IP))
		return XDP_PASS;
	if (ip->protocol == IPPROTO_UDP || ip->protocol == IPPROTO_IPIP)
		return XDP_DROP;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

/*
 * xdp_fwd.bpf.c - the benchmark's ceiling: a forwarder that does nothing but
 * rewrite the Ethernet addresses of IPv4 frames and send them back out of the
 * interface they came in on (XDP_TX), like the balancer "on a stick" but
 * without parsing past L2, hashing, flow table, Maglev or encapsulation.
 *
 * Not built by the Makefile: bench/l4/run compiles it with the MACs of the
 * topology it builds:
 *   clang -O2 -target bpf -DDST_MAC=0x02,0,0,0,0,1 -DSRC_MAC=... -c xdp_fwd.bpf.c
 *
 * Why not the datapath in l2 mode as the ceiling: that still runs the whole
 * balancer (VIP lookup, flow table, Maglev, bpf_fib_lookup), so it would
 * measure the balancer against itself; this program is the cost floor of any
 * XDP forwarder on this veth topology.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>

#ifndef DST_MAC
#error "compile with -DDST_MAC=a,b,c,d,e,f -DSRC_MAC=a,b,c,d,e,f"
#endif

#define SEC(name) __attribute__((section(name), used))

static const unsigned char dst_mac[ETH_ALEN] = {DST_MAC};
static const unsigned char src_mac[ETH_ALEN] = {SRC_MAC};

SEC("xdp") int xdp_fwd(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	/* ARP and the rest go to the kernel so neighbours still resolve. */
	if (eth->h_proto != __builtin_bswap16(ETH_P_IP))
		return XDP_PASS;
	__builtin_memcpy(eth->h_dest, dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src_mac, ETH_ALEN);
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";

/*
 * fixture.h - packet building and BPF_PROG_TEST_RUN helpers shared by the
 * tests/bpf fixtures (header-only: each test_*.c is linked alone).
 *
 * Packets are built in C, field by field, so a test reads as the packet it
 * sends; expected outputs are built the same way, independently of the BPF
 * code, and compared byte for byte.
 */
#ifndef TG_TESTS_BPF_FIXTURE_H
#define TG_TESTS_BPF_FIXTURE_H

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "abi.h"

#define FX_MAX_PKT 2048

/* A packet: its bytes and length. */
typedef struct fx_pkt {
	uint8_t b[FX_MAX_PKT]; /* frame bytes */
	size_t len;	       /* frame length */
} fx_pkt_t;

/* What to build. Addresses are text ("198.18.0.1", "fd00:7467::1"). */
typedef struct fx_spec {
	int family;	    /* 4 or 6 */
	uint8_t proto;	    /* 6 TCP, 17 UDP, anything else: raw payload */
	const char *src;    /* source address */
	const char *dst;    /* destination address */
	uint16_t sport;	    /* source port (host order) */
	uint16_t dport;	    /* destination port (host order) */
	size_t payload;	    /* payload bytes after the L4 header */
	uint8_t tos;	    /* IPv4 TOS / IPv6 traffic class */
	uint8_t ttl;	    /* 0 -> 64 */
	uint16_t vlan;	    /* 802.1Q VID, 0 = untagged */
	uint16_t frag_off;  /* IPv4 frag_off field (host order: flags|offset) */
	uint8_t ip_opt_len; /* IPv4 option bytes (multiple of 4, NOPs) */
} fx_spec_t;

static const uint8_t FX_MAC_CLIENT[6] = {0x02, 0, 0, 0, 0xc1, 0x01}; /* router/client side */
static const uint8_t FX_MAC_LB[6] = {0x02, 0, 0, 0, 0x1b, 0x01};     /* balancer NIC */

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

/* RFC 1071 sum of n bytes added to `sum` (not folded, not inverted). */
static inline uint32_t fx_sum(const uint8_t *p, size_t n, uint32_t sum)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += get16(p + i);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

static inline uint16_t fx_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* True when an IPv4 header's checksum verifies. */
static inline bool fx_ip4_csum_ok(const uint8_t *ip)
{
	size_t hl = (size_t)(ip[0] & 0xf) * 4;
	return fx_fold(fx_sum(ip, hl, 0)) == 0;
}

static inline void fx_addr(int family, const char *text, uint8_t out[16])
{
	memset(out, 0, 16);
	if (inet_pton(family == 4 ? AF_INET : AF_INET6, text, out) != 1) {
		fprintf(stderr, "fixture: bad address %s\n", text);
		abort();
	}
}

/* Builds eth(+tag) / IP / L4 / payload into p. L3 and L4 checksums valid. */
static inline void fx_build(const fx_spec_t *s, fx_pkt_t *p)
{
	uint8_t *b = p->b;
	size_t off = 0, l4_len, hl;
	uint8_t src[16], dst[16];

	memset(p, 0, sizeof(*p));
	fx_addr(s->family, s->src, src);
	fx_addr(s->family, s->dst, dst);
	memcpy(b, FX_MAC_LB, 6);
	memcpy(b + 6, FX_MAC_CLIENT, 6);
	off = 12;
	if (s->vlan) {
		put16(b + off, 0x8100);
		put16(b + off + 2, s->vlan);
		off += 4;
	}
	put16(b + off, s->family == 4 ? 0x0800 : 0x86dd);
	off += 2;

	l4_len = s->proto == 6 ? 20 : s->proto == 17 ? 8 : 0;
	l4_len += s->payload;
	uint8_t *ip = b + off;
	if (s->family == 4) {
		hl = 20 + s->ip_opt_len;
		ip[0] = (uint8_t)(0x40 | (hl / 4));
		ip[1] = s->tos;
		put16(ip + 2, (uint16_t)(hl + l4_len));
		put16(ip + 4, 0x1234);
		put16(ip + 6, s->frag_off);
		ip[8] = s->ttl ? s->ttl : 64;
		ip[9] = s->proto;
		memcpy(ip + 12, src, 4);
		memcpy(ip + 16, dst, 4);
		memset(ip + 20, 1, s->ip_opt_len); /* NOP options */
		put16(ip + 10, fx_fold(fx_sum(ip, hl, 0)));
	} else {
		hl = 40;
		uint32_t vtc = (6u << 28) | ((uint32_t)s->tos << 20) | 0x12345;
		put16(ip, (uint16_t)(vtc >> 16));
		put16(ip + 2, (uint16_t)vtc);
		put16(ip + 4, (uint16_t)l4_len);
		ip[6] = s->proto;
		ip[7] = s->ttl ? s->ttl : 64;
		memcpy(ip + 8, src, 16);
		memcpy(ip + 24, dst, 16);
	}
	uint8_t *l4 = ip + hl;
	uint8_t *pl = l4 + (s->proto == 6 ? 20 : s->proto == 17 ? 8 : 0);
	for (size_t i = 0; i < s->payload; i++)
		pl[i] = (uint8_t)(0xa0 + i);
	if (s->proto == 6 || s->proto == 17) {
		put16(l4, s->sport);
		put16(l4 + 2, s->dport);
		if (s->proto == 6) {
			put16(l4 + 4, 0x0102); /* seq */
			l4[12] = 5 << 4;       /* data offset */
			l4[13] = 0x02;	       /* SYN */
			put16(l4 + 14, 64240);
		} else {
			put16(l4 + 4, (uint16_t)l4_len);
		}
		/* Pseudo-header checksum so the inner packet is one a real accepts. */
		size_t alen = s->family == 4 ? 4 : 16;
		uint32_t sum = fx_sum(src, alen, 0);
		sum = fx_sum(dst, alen, sum);
		sum += s->proto + (uint32_t)l4_len;
		sum = fx_sum(l4, l4_len, sum);
		uint16_t c = fx_fold(sum);
		put16(l4 + (s->proto == 6 ? 16 : 6), c ? c : 0xffff);
	}
	p->len = (size_t)(pl + s->payload - b);
}

/* The client->VIP flow key of a spec, as the datapath builds it. */
static inline struct tg_flow_key fx_flow_key(const fx_spec_t *s)
{
	struct tg_flow_key k;

	memset(&k, 0, sizeof(k));
	fx_addr(s->family, s->src, (uint8_t *)k.src);
	fx_addr(s->family, s->dst, (uint8_t *)k.dst);
	k.sport = htons(s->sport);
	k.dport = htons(s->dport);
	k.proto = s->proto;
	k.family = s->family == 4 ? TG_FAMILY_V4 : TG_FAMILY_V6;
	return k;
}

/* Runs an XDP or tc program once on `in`; output in *out, verdict returned
 * (or -errno when the run itself failed). ifindex 0 = no ctx (loopback). */
static inline int fx_run(int prog_fd, const fx_pkt_t *in, fx_pkt_t *out, int ifindex, bool xdp)
{
	struct xdp_md xctx;
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in->b, .data_size_in = (uint32_t)in->len,
		    .data_out = out->b, .data_size_out = sizeof(out->b), .repeat = 1);

	memset(out, 0, sizeof(*out));
	if (xdp && ifindex) {
		memset(&xctx, 0, sizeof(xctx));
		xctx.data_end = (uint32_t)in->len;
		xctx.ingress_ifindex = (uint32_t)ifindex;
		o.ctx_in = &xctx;
		o.ctx_size_in = sizeof(xctx);
	}
	if (bpf_prog_test_run_opts(prog_fd, &o))
		return -errno;
	out->len = o.data_size_out;
	return (int)o.retval;
}

/* Prints both packets as hex when they differ (for failing assertions). */
static inline bool fx_same(const fx_pkt_t *a, const fx_pkt_t *b)
{
	if (a->len == b->len && memcmp(a->b, b->b, a->len) == 0)
		return true;
	fprintf(stderr, "packets differ: got %zu bytes, want %zu\n", a->len, b->len);
	size_t n = a->len > b->len ? a->len : b->len;
	for (size_t i = 0; i < n; i++) {
		int x = i < a->len ? a->b[i] : -1, y = i < b->len ? b->b[i] : -1;
		if (x != y)
			fprintf(stderr, "  [%3zu] got %02x want %02x\n", i, x & 0xff, y & 0xff);
	}
	return false;
}

/* Runs a shell command (ip/sysctl setup inside the test's own netns). */
static inline int fx_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int fx_sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "fixture: `%s` failed (%d)\n", cmd, rc);
	return rc;
}

/*
 * Moves the test process into a private network namespace (anonymous: it
 * disappears with the process, veths included) and pins it to CPU 0 so
 * per-CPU state (rate guard) is deterministic. Returns false with a reason
 * printed when the machine does not allow it.
 */
static inline bool fx_private_netns(void)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);
	if (unshare(CLONE_NEWNET) != 0) {
		fprintf(stderr, "SKIP: unshare(CLONE_NEWNET): %s (needs CAP_SYS_ADMIN)\n",
			strerror(errno));
		return false;
	}
	return fx_sh("ip link set lo up") == 0;
}

#endif

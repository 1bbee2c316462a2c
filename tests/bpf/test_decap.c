/*
 * test_decap.c - packet fixtures for the tc decap program (bpf/decap.bpf.c)
 * through BPF_PROG_TEST_RUN (sched_cls), plus one round trip: the
 * balancer's IPIP output fed to decap gives back the client's packet.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "balancer.skel.h"
#include "decap.skel.h"
#include "fixture.h"
#include "l4/datapath.h"

#include <netinet/in.h>

#define VIP4 "198.18.100.1"
#define VIP6 "fd00:7467:100::1"

typedef struct dfx {
	struct tg_decap *skel; /* loaded decap program */
	int prog;	       /* its fd */
} dfx_t;

static void vip_add(dfx_t *d, int family, const char *text)
{
	struct tg_decap_key k;
	uint8_t one = 1;

	memset(&k, 0, sizeof(k));
	fx_addr(family, text, (uint8_t *)k.addr);
	k.family = family == 4 ? TG_FAMILY_V4 : TG_FAMILY_V6;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(d->skel->maps.tg_decap_vips), &k, &one, 0),
			 0);
}

static int setup(void **state)
{
	dfx_t *d = calloc(1, sizeof(*d));

	if (!d)
		return -1;
	d->skel = tg_decap__open_and_load();
	if (!d->skel) {
		free(d);
		return -1;
	}
	d->prog = bpf_program__fd(d->skel->progs.decap_tc);
	vip_add(d, 4, VIP4);
	vip_add(d, 6, VIP6);
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	dfx_t *d = *state;

	tg_decap__destroy(d->skel);
	free(d);
	return 0;
}

static uint64_t stat_get(dfx_t *d, uint32_t s)
{
	int n = libbpf_num_possible_cpus();
	uint64_t v[1024], sum = 0;

	assert_true(n > 0 && n <= 1024);
	assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(d->skel->maps.tg_decap_stats), &s, v), 0);
	for (int i = 0; i < n; i++)
		sum += v[i];
	return sum;
}

/* Wraps the L3 packet of `inner` in an outer IPv4 (proto 4) or IPv6 (next
 * header 41) header as the balancer does; opt = IPv4 option bytes. */
static void wrap(const fx_pkt_t *inner, int family, size_t opt, fx_pkt_t *out)
{
	size_t il = inner->len - 14, ol = family == 4 ? 20 + opt : 40;
	uint8_t *o = out->b + 14;

	memset(out, 0, sizeof(*out));
	memcpy(out->b, inner->b, 12);
	put16(out->b + 12, family == 4 ? 0x0800 : 0x86dd);
	if (family == 4) {
		o[0] = (uint8_t)(0x40 | (ol / 4));
		put16(o + 2, (uint16_t)(ol + il));
		put16(o + 6, 0x4000);
		o[8] = 64;
		o[9] = 4;
		fx_addr(4, "198.19.1.2", o + 12);
		fx_addr(4, "198.18.1.11", o + 16);
		memset(o + 20, 1, opt);
		put16(o + 10, fx_fold(fx_sum(o, ol, 0)));
	} else {
		o[0] = 0x60;
		put16(o + 4, (uint16_t)il);
		o[6] = 41;
		o[7] = 64;
		fx_addr(6, "fd00:7467:ffff:ffff::1", o + 8);
		fx_addr(6, "fd00:7467:1::11", o + 24);
	}
	memcpy(o + ol, inner->b + 14, il);
	out->len = 14 + ol + il;
}

static void run_expect(dfx_t *d, const fx_pkt_t *in, const fx_pkt_t *want)
{
	fx_pkt_t out;

	assert_int_equal(fx_run(d->prog, in, &out, 0, false), -1 /* TC_ACT_UNSPEC */);
	assert_true(fx_same(&out, want));
}

static fx_spec_t client4(void)
{
	fx_spec_t s = {.family = 4,
		       .proto = 6,
		       .src = "198.18.50.7",
		       .dst = VIP4,
		       .sport = 40000,
		       .dport = 80,
		       .payload = 20};
	return s;
}

static void test_ipip_stripped(void **state)
{
	dfx_t *d = *state;
	fx_spec_t s = client4();
	fx_pkt_t inner, in;

	fx_build(&s, &inner);
	wrap(&inner, 4, 0, &in);
	run_expect(d, &in, &inner);
	s.proto = 17;
	s.dport = 53;
	fx_build(&s, &inner);
	wrap(&inner, 4, 0, &in);
	run_expect(d, &in, &inner);
	/* outer header with options: IHL decides how much goes */
	wrap(&inner, 4, 8, &in);
	run_expect(d, &in, &inner);
	assert_int_equal(stat_get(d, TG_DECAP_STAT_DECAP4), 3);
}

static void test_ip6ip6_stripped(void **state)
{
	dfx_t *d = *state;
	fx_spec_t s = {.family = 6,
		       .proto = 6,
		       .src = "fd00:7467:50::7",
		       .dst = VIP6,
		       .sport = 40000,
		       .dport = 80,
		       .payload = 20};
	fx_pkt_t inner, in;

	fx_build(&s, &inner);
	wrap(&inner, 6, 0, &in);
	run_expect(d, &in, &inner);
	assert_int_equal(stat_get(d, TG_DECAP_STAT_DECAP6), 1);
}

static void test_other_traffic_untouched(void **state)
{
	dfx_t *d = *state;
	fx_spec_t s = client4();
	fx_pkt_t inner, in;

	/* tunnel to an address that is not a VIP here */
	s.dst = "198.18.100.9";
	fx_build(&s, &inner);
	wrap(&inner, 4, 0, &in);
	run_expect(d, &in, &in);
	assert_int_equal(stat_get(d, TG_DECAP_STAT_PASS_NOT_VIP), 1);
	/* plain traffic to the VIP (no tunnel) */
	s = client4();
	fx_build(&s, &inner);
	run_expect(d, &inner, &inner);
	/* a fragmented outer packet cannot be decapsulated piecewise */
	wrap(&inner, 4, 0, &in);
	put16(in.b + 20, 0x2000);
	in.b[24] = in.b[25] = 0;
	put16(in.b + 24, fx_fold(fx_sum(in.b + 14, 20, 0)));
	run_expect(d, &in, &in);
	/* inner header cut short */
	wrap(&inner, 4, 0, &in);
	in.len = 14 + 20 + 12;
	run_expect(d, &in, &in);
	/* IPv6 tunnel carrying IPv4 is not ours */
	wrap(&inner, 6, 0, &in);
	run_expect(d, &in, &in);
	/* ARP */
	memset(&in, 0, sizeof(in));
	put16(in.b + 12, 0x0806);
	in.len = 60;
	run_expect(d, &in, &in);
	assert_int_equal(stat_get(d, TG_DECAP_STAT_DECAP4), 0);
}

/* Malformed tunnels to a VIP: each goes to the kernel exactly as it came
 * (which drops what is broken), none is stripped, none reaches the VIP lookup. */
static void test_malformed_tunnels_untouched(void **state)
{
	dfx_t *d = *state;
	fx_spec_t s = client4();
	fx_spec_t s6 = client4();
	fx_pkt_t inner, inner6, in;

	s6.family = 6;
	s6.src = "fd00:7467:50::7";
	s6.dst = VIP6;
	fx_build(&s, &inner);
	fx_build(&s6, &inner6);

	/* (An outer IPv4 header cut short cannot be fed to a tc program: the
	 * kernel's BPF_PROG_TEST_RUN refuses it with -EINVAL.) */
	/* outer IPv4 IHL 4 */
	wrap(&inner, 4, 0, &in);
	in.b[14] = 0x44;
	run_expect(d, &in, &in);
	/* IPv4 ethertype, outer header says version 6 */
	wrap(&inner, 4, 0, &in);
	in.b[14] = 0x65;
	run_expect(d, &in, &in);
	/* outer IHL 15: its options cover the inner header, which is then cut */
	wrap(&inner, 4, 0, &in);
	in.b[14] = 0x4f;
	in.len = 14 + 60 + 10;
	run_expect(d, &in, &in);
	/* IPIP whose inner header claims version 6 */
	wrap(&inner, 4, 0, &in);
	in.b[14 + 20] = (uint8_t)((in.b[14 + 20] & 0x0f) | 0x60);
	run_expect(d, &in, &in);
	/* IP6IP6 cut inside the inner header */
	wrap(&inner6, 6, 0, &in);
	in.len = 14 + 40 + 20;
	run_expect(d, &in, &in);
	/* IPv6 ethertype, outer header says version 4 */
	wrap(&inner6, 6, 0, &in);
	in.b[14] = (uint8_t)((in.b[14] & 0x0f) | 0x40);
	run_expect(d, &in, &in);
	/* IP6IP6 whose inner header claims version 4 */
	wrap(&inner6, 6, 0, &in);
	in.b[14 + 40] = (uint8_t)((in.b[14 + 40] & 0x0f) | 0x40);
	run_expect(d, &in, &in);

	assert_int_equal(stat_get(d, TG_DECAP_STAT_DECAP4), 0);
	assert_int_equal(stat_get(d, TG_DECAP_STAT_DECAP6), 0);
	assert_int_equal(stat_get(d, TG_DECAP_STAT_PASS_NOT_VIP), 0);
	assert_int_equal(stat_get(d, TG_DECAP_STAT_FAIL), 0);
	/* the unmodified tunnels are stripped (the cases above were refused for
	 * what was changed in them) */
	fx_pkt_t out;
	wrap(&inner, 4, 0, &in);
	assert_int_equal(fx_run(d->prog, &in, &out, 0, false), -1);
	wrap(&inner6, 6, 0, &in);
	assert_int_equal(fx_run(d->prog, &in, &out, 0, false), -1);
	assert_int_equal(stat_get(d, TG_DECAP_STAT_DECAP4), 1);
	assert_int_equal(stat_get(d, TG_DECAP_STAT_DECAP6), 1);
}

/* Balancer output -> decap gives back the client's frame's L3 bytes. */
static void test_round_trip_through_balancer(void **state)
{
	dfx_t *d = *state;
	tg_dp_t *dp = NULL;
	tg_dp_opts_t o;
	tg_dp_vip_t v;
	struct sockaddr_in real;
	uint32_t table[5] = {7, 7, 7, 7, 7};
	fx_pkt_t in, enc, dec;

	if (!fx_private_netns() ||
	    fx_sh("ip link add tg-lb0 type veth peer name tg-rt0 && ip link set tg-lb0 up && "
		  "ip link set tg-rt0 up && ip addr add 198.18.1.1/24 dev tg-lb0 && "
		  "ip neigh add 198.18.1.11 lladdr 02:00:00:00:0a:11 nud permanent dev tg-lb0 && "
		  "sysctl -qw net.ipv4.ip_forward=1")) {
		fprintf(stderr, "SKIP: round trip needs a private netns with a veth\n");
		skip();
	}
	memset(&o, 0, sizeof(o));
	o.test_mode = true;
	assert_int_equal(tg_dp_open(&o, &dp), 0);
	memset(&v, 0, sizeof(v));
	struct sockaddr_in *va = (struct sockaddr_in *)&v.addr;
	va->sin_family = AF_INET;
	va->sin_port = htons(80);
	inet_pton(AF_INET, VIP4, &va->sin_addr);
	v.proto = IPPROTO_TCP;
	assert_int_equal(tg_dp_vip_set(dp, 0, &v), 0);
	memset(&real, 0, sizeof(real));
	real.sin_family = AF_INET;
	inet_pton(AF_INET, "198.18.1.11", &real.sin_addr);
	assert_int_equal(tg_dp_real_set(dp, 7, (struct sockaddr *)&real), 0);
	assert_int_equal(tg_dp_maglev_swap(dp, 0, table, 5), 0);

	fx_spec_t s = client4();
	fx_build(&s, &in);
	int prog = bpf_program__fd(tg_dp_skeleton(dp)->progs.balancer_xdp);
	assert_int_equal(fx_run(prog, &in, &enc, (int)if_nametoindex("tg-lb0"), true), XDP_TX);
	assert_int_equal(enc.len, in.len + 20);
	assert_int_equal(fx_run(d->prog, &enc, &dec, 0, false), -1);
	/* Same IP packet; only the MACs differ (rewritten for the real). */
	assert_int_equal(dec.len, in.len);
	assert_memory_equal(dec.b + 12, in.b + 12, in.len - 12);
	tg_dp_close(dp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_ipip_stripped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ip6ip6_stripped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_other_traffic_untouched, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_tunnels_untouched, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_round_trip_through_balancer, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

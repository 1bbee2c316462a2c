/*
 * pkt_cost.c - per-packet cost of the XDP balancer under BPF_PROG_TEST_RUN,
 * beside a trivial XDP program (return XDP_PASS) measured in the same run.
 *
 * Two kinds of measurement, because BPF_PROG_TEST_RUN with repeat > 1 does
 * not reset the packet between runs (MACHINE-NOTES): an IPIP encapsulation
 * would wrap its own output again.
 *   repeat  l2-forwarding VIP, flow hit: parse, VIP lookup, flow cache hit,
 *           counters, cached next hop, MAC rewrite, XDP_TX. Idempotent, so
 *           the kernel's own loop (repeat = N) times it with little overhead.
 *   single  many runs of repeat = 1, kernel-reported duration of each
 *           (includes the per-run timer overhead, the same for both
 *           programs), on the IPIP VIP (encapsulation included):
 *             flow hit          the same flow every run (flow cache hit)
 *             flow-table hit    two flows that share a flow-cache slot, in
 *                               turn: each packet misses this CPU's cache
 *                               and is decided by the LRU flow table
 *             new flow          a new client port every run, two packets
 *                               each: the first misses, is picked through
 *                               Maglev and left pending in the flow cache;
 *                               the second is admitted: flow-table insert
 *             table full        the same once this CPU's share of the flow
 *                               table is full: every insert evicts
 * Runs alternate the two programs. The repeat rounds report their median;
 * single runs report the mean of the middle 80% (the kernel's per-run
 * figure comes in steps of ~10 ns, so a median jumps between steps from
 * one invocation to the next). Prints ns/packet, the ratio to the trivial
 * program and Katran's published figure.
 */
#include "fixture.h"
#include "l4/datapath.h"
#include "balancer.skel.h"

#include <linux/bpf.h>
#include <netinet/in.h>

#define ROUNDS	    9
#define REPEAT	    1000000u
#define SINGLE_RUNS 100000
#define NEW_FLOWS   60000 /* stays under one CPU's share of the flow table */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

/* Mean of the samples between the 10th and 90th percentile. */
static double trimmed_mean(uint64_t *v, size_t n)
{
	double sum = 0;
	size_t lo = n / 10, hi = n - n / 10;

	qsort(v, n, sizeof(*v), cmp_u64);
	for (size_t i = lo; i < hi; i++)
		sum += (double)v[i];
	return hi > lo ? sum / (double)(hi - lo) : 0.0;
}

static void row(const char *path, double trivial, double lb)
{
	printf("  %-46s %6.0f ns %6.0f ns %6.2fx\n", path, trivial, lb,
	       trivial > 0 ? lb / trivial : 0.0);
}

/* Kernel-measured mean ns per run over `repeat` runs; 0 on failure. */
static uint64_t timed(int prog, const fx_pkt_t *in, int ifindex, uint32_t repeat, int want)
{
	fx_pkt_t out;
	struct xdp_md ctx = {.data_end = (uint32_t)in->len, .ingress_ifindex = (uint32_t)ifindex};
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in->b, .data_size_in = (uint32_t)in->len,
		    .data_out = out.b, .data_size_out = sizeof(out.b), .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .repeat = repeat);

	if (bpf_prog_test_run_opts(prog, &o) || (int)o.retval != want) {
		fprintf(stderr, "bench: run failed (errno %d, retval %u, want %d)\n", errno,
			o.retval, want);
		return 0;
	}
	return o.duration;
}

/* n new flows from clients 198.18.<net>.x (a port each), two packets each
 * through the balancer lb (the second admits the flow to the flow table)
 * and, when pass >= 0, one through the trivial program; durations stored in
 * tp (trivial), tl (first packet), tl2 (second) when not NULL. Returns 0,
 * or -1 when a run failed. */
static int new_flows(int lb, int pass, int ifindex, const fx_spec_t *s, int net, uint32_t n,
		     uint64_t *tp, uint64_t *tl, uint64_t *tl2)
{
	char src[32];
	fx_spec_t f = *s; /* s itself stays as it was (src would point here) */
	for (uint32_t i = 0; i < n; i++) {
		fx_pkt_t pkt;
		snprintf(src, sizeof(src), "198.18.%d.%u", net, 1 + i / 50000);
		f.src = src;
		f.sport = (uint16_t)(10000 + i % 50000);
		fx_build(&f, &pkt);
		if (pass >= 0 && !(tp[i] = timed(pass, &pkt, ifindex, 1, XDP_PASS)))
			return -1;
		uint64_t t = timed(lb, &pkt, ifindex, 1, XDP_TX);
		uint64_t t2 = t ? timed(lb, &pkt, ifindex, 1, XDP_TX) : 0;
		if (!t || !t2)
			return -1;
		if (tl)
			tl[i] = t;
		if (tl2)
			tl2[i] = t2;
	}
	return 0;
}

static int trivial_prog(void)
{
	/* r0 = XDP_PASS; exit */
	struct bpf_insn insns[2];

	memset(insns, 0, sizeof(insns));
	insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
	insns[0].dst_reg = BPF_REG_0;
	insns[0].imm = XDP_PASS;
	insns[1].code = BPF_JMP | BPF_EXIT;
	return bpf_prog_load(BPF_PROG_TYPE_XDP, "tg_pass", "GPL", insns, 2, NULL);
}

static int vip(tg_dp_t *dp, uint32_t id, const char *addr, bool l2)
{
	tg_dp_vip_t v;
	struct sockaddr_in *s = (struct sockaddr_in *)&v.addr;

	memset(&v, 0, sizeof(v));
	s->sin_family = AF_INET;
	s->sin_port = htons(80);
	inet_pton(AF_INET, addr, &s->sin_addr);
	v.proto = IPPROTO_TCP;
	v.forward_l2 = l2;
	return tg_dp_vip_set(dp, id, &v);
}

int main(void)
{
	tg_dp_t *dp = NULL;
	tg_dp_opts_t o;
	static uint32_t table[65537];
	struct sockaddr_in real;
	fx_pkt_t ipip_pkt, l2_pkt;
	int rc = 1;

	if (!fx_private_netns() ||
	    fx_sh("ip link add tg-lb0 type veth peer name tg-rt0 && ip link set tg-lb0 up && "
		  "ip link set tg-rt0 up && ip addr add 198.18.1.1/24 dev tg-lb0 && "
		  "ip neigh add 198.18.1.11 lladdr 02:00:00:00:0a:11 nud permanent dev tg-lb0 && "
		  "sysctl -qw net.ipv4.ip_forward=1")) {
		fprintf(stderr, "bench/bpf: SKIP: needs a private network namespace (root)\n");
		return 0;
	}
	int ifindex = (int)if_nametoindex("tg-lb0");

	memset(&o, 0, sizeof(o));
	o.test_mode = true;
	if (tg_dp_open(&o, &dp))
		return 1;
	memset(&real, 0, sizeof(real));
	real.sin_family = AF_INET;
	inet_pton(AF_INET, "198.18.1.11", &real.sin_addr);
	for (size_t i = 0; i < 65537; i++)
		table[i] = 1;
	if (vip(dp, 0, "198.18.100.1", false) || vip(dp, 1, "198.18.100.3", true) ||
	    tg_dp_real_set(dp, 1, (struct sockaddr *)&real) ||
	    tg_dp_maglev_swap(dp, 0, table, 65537) || tg_dp_maglev_swap(dp, 1, table, 65537)) {
		fprintf(stderr, "bench/bpf: programming the datapath failed\n");
		goto out;
	}
	int lb = bpf_program__fd(tg_dp_skeleton(dp)->progs.balancer_xdp);
	int pass = trivial_prog();
	if (pass < 0) {
		fprintf(stderr, "bench/bpf: loading the trivial program: %s\n", strerror(errno));
		goto out;
	}

	fx_spec_t s = {.family = 4,
		       .proto = 6,
		       .src = "198.18.50.7",
		       .dst = "198.18.100.1",
		       .sport = 40000,
		       .dport = 80,
		       .payload = 6};
	fx_build(&s, &ipip_pkt);
	s.dst = "198.18.100.3";
	fx_build(&s, &l2_pkt);
	/* First packets create the flow entries: everything after is a hit. */
	if (!timed(lb, &ipip_pkt, ifindex, 1, XDP_TX) || !timed(lb, &l2_pkt, ifindex, 1, XDP_TX))
		goto out;

	uint64_t rp[ROUNDS], rl[ROUNDS];
	for (int r = 0; r < ROUNDS; r++) {
		rp[r] = timed(pass, &l2_pkt, ifindex, REPEAT, XDP_PASS);
		rl[r] = timed(lb, &l2_pkt, ifindex, REPEAT, XDP_TX);
		if (!rp[r] || !rl[r])
			goto out;
	}
	static uint64_t sp[SINGLE_RUNS], sl[SINGLE_RUNS];
	for (int i = 0; i < SINGLE_RUNS; i++) {
		sp[i] = timed(pass, &ipip_pkt, ifindex, 1, XDP_PASS);
		sl[i] = timed(lb, &ipip_pkt, ifindex, 1, XDP_TX);
		if (!sp[i] || !sl[i])
			goto out;
	}
	uint64_t mp = median(rp, ROUNDS), ml = median(rl, ROUNDS);
	double msp = trimmed_mean(sp, SINGLE_RUNS), msl = trimmed_mean(sl, SINGLE_RUNS);

	/* A second flow whose flow-cache slot is the first one's. */
	struct tg_vip_info vi;
	uint32_t vip0 = 0;
	if (bpf_map_lookup_elem(bpf_map__fd(tg_dp_skeleton(dp)->maps.tg_vip_info), &vip0, &vi)) {
		fprintf(stderr, "bench/bpf: reading the VIP's flow tag: %s\n", strerror(errno));
		goto out;
	}
	struct tg_flow_key k = fx_flow_key(&s);
	uint32_t want_slot = tg_flow_cache_slot(k.src[0], htons(40000), vi.flow_tag);
	uint16_t other_port = 0;
	for (uint32_t port = 1024; port < 65536 && !other_port; port++)
		if (port != 40000 &&
		    tg_flow_cache_slot(k.src[0], htons((uint16_t)port), vi.flow_tag) == want_slot)
			other_port = (uint16_t)port;
	if (!other_port) {
		fprintf(stderr, "bench/bpf: no second flow for the same cache slot\n");
		goto out;
	}
	fx_pkt_t pair_pkt[2];
	s.dst = "198.18.100.1";
	fx_build(&s, &pair_pkt[0]);
	s.sport = other_port;
	fx_build(&s, &pair_pkt[1]);
	if (!timed(lb, &pair_pkt[1], ifindex, 1, XDP_TX))
		goto out;
	static uint64_t tp[SINGLE_RUNS], tl[SINGLE_RUNS];
	for (int i = 0; i < SINGLE_RUNS; i++) {
		tp[i] = timed(pass, &pair_pkt[i & 1], ifindex, 1, XDP_PASS);
		tl[i] = timed(lb, &pair_pkt[i & 1], ifindex, 1, XDP_TX);
		if (!tp[i] || !tl[i])
			goto out;
	}
	double mtp = trimmed_mean(tp, SINGLE_RUNS), mtl = trimmed_mean(tl, SINGLE_RUNS);

	/* New flows: client 198.18.60.x, a port per run. */
	static uint64_t np[NEW_FLOWS], nl[NEW_FLOWS], nl2[NEW_FLOWS];
	if (new_flows(lb, pass, ifindex, &s, 60, NEW_FLOWS, np, nl, nl2))
		goto out;
	double mnp = trimmed_mean(np, NEW_FLOWS), mnl = trimmed_mean(nl, NEW_FLOWS);
	double mnl2 = trimmed_mean(nl2, NEW_FLOWS);

	/* New flows with the table full: it is filled first (more entries than
	 * it holds), so every insert measured evicts an entry (the steady state
	 * of a flood of new flows). */
	static uint64_t fp[NEW_FLOWS], fl[NEW_FLOWS], fl2[NEW_FLOWS];
	if (new_flows(lb, -1, ifindex, &s, 61, TG_FLOW_TABLE_DEFAULT + 10000, NULL, NULL, NULL) ||
	    new_flows(lb, pass, ifindex, &s, 62, NEW_FLOWS, fp, fl, fl2))
		goto out;
	double mfp = trimmed_mean(fp, NEW_FLOWS), mfl2 = trimmed_mean(fl2, NEW_FLOWS);
	(void)fl;

	printf("bench/bpf: XDP balancer per-packet cost, BPF_PROG_TEST_RUN, 1 CPU, %zu-byte TCP\n",
	       ipip_pkt.len);
	printf("  %-46s %9s %9s %7s\n", "path", "trivial", "balancer", "ratio");
	row("flow hit, l2 (MAC rewrite), repeat=1e6, median", (double)mp, (double)ml);
	row("flow hit, IPIP encap, 1e5 single runs", msp, msl);
	row("flow-table hit (cache miss), IPIP, 1e5 single", mtp, mtl);
	row("new flow, 1st packet (pick, pending), 6e4 single", mnp, mnl);
	row("new flow, 2nd packet (flow-table insert)", mnp, mnl2);
	row("2nd packet, table full (each insert evicts)", mfp, mfl2);
	printf("  target: flow hit <= 3x trivial (issue 5); reference: Katran publishes 101-119 "
	       "ns/packet\n");
	printf("  (single runs include the kernel's per-run timer overhead on both sides)\n");
	rc = 0;
	close(pass);
out:
	tg_dp_close(dp);
	return rc;
}

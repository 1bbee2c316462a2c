/*
 * test_plane.c - the control plane against a recording fake datapath: which
 * reals take new flows, drains, ids across reloads, zones, fail open, and the
 * order of datapath updates (a table never names an invalid real).
 */
#include "l4/config.h"
#include "l4/plane.h"

#include "abi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* What the fake datapath holds. */
typedef struct fake_dp {
	bool vip_used[TG_MAX_VIPS];	  /* vip_set called, no vip_del since */
	uint32_t *table[TG_MAX_VIPS];	  /* installed Maglev table */
	uint32_t table_size[TG_MAX_VIPS]; /* its size */
	bool valid[TG_MAX_REALS];	  /* real valid */
	tg_l4_ip_t addr[TG_MAX_REALS];	  /* real address */
	int swaps;			  /* maglev_swap calls */
	int invalidations;		  /* real_invalidate calls */
	int violations;			  /* ordering rules broken */
	int purges;			  /* flows_purge calls */
	uint32_t purge_vip, purge_real;	  /* arguments of the last one */
} fake_dp_t;

static fake_dp_t dp;

static int f_vip_set(void *ctx, uint32_t id, const tg_l4_vip_cfg_t *v)
{
	(void)ctx;
	(void)v;
	dp.vip_used[id] = true;
	return 0;
}

static int f_vip_del(void *ctx, uint32_t id)
{
	(void)ctx;
	dp.vip_used[id] = false;
	free(dp.table[id]);
	dp.table[id] = NULL;
	return 0;
}

static int f_real_set(void *ctx, uint32_t id, const tg_l4_ip_t *ip)
{
	(void)ctx;
	dp.valid[id] = true;
	dp.addr[id] = *ip;
	return 0;
}

static int f_real_invalidate(void *ctx, uint32_t id)
{
	(void)ctx;
	/* Rule: no installed table may still name it. */
	for (uint32_t v = 0; v < TG_MAX_VIPS; v++)
		for (uint32_t s = 0; dp.table[v] && s < dp.table_size[v]; s++)
			if (dp.table[v][s] == id)
				dp.violations++;
	dp.valid[id] = false;
	dp.invalidations++;
	return 0;
}

static int f_swap(void *ctx, uint32_t id, const uint32_t *t, uint32_t size)
{
	(void)ctx;
	if (!dp.vip_used[id])
		return -ENOENT;
	/* Rule: every real a table names is valid. */
	for (uint32_t s = 0; s < size; s++)
		if (t[s] != TG_REAL_NONE && !dp.valid[t[s]])
			dp.violations++;
	free(dp.table[id]);
	dp.table[id] = malloc(size * sizeof(*t));
	memcpy(dp.table[id], t, size * sizeof(*t));
	dp.table_size[id] = size;
	dp.swaps++;
	return 0;
}

static int f_purge(void *ctx, uint32_t vip, uint32_t real)
{
	(void)ctx;
	/* Only meaningful for a real other VIPs keep valid. */
	if (!dp.valid[real])
		dp.violations++;
	dp.purges++;
	dp.purge_vip = vip;
	dp.purge_real = real;
	return 3;
}

static tg_l4_plane_t *plane;

static int setup(void **state)
{
	(void)state;
	for (uint32_t v = 0; v < TG_MAX_VIPS; v++)
		free(dp.table[v]);
	memset(&dp, 0, sizeof(dp));
	tg_l4_dp_ops_t ops = {
	    .vip_set = f_vip_set,
	    .vip_del = f_vip_del,
	    .real_set = f_real_set,
	    .real_invalidate = f_real_invalidate,
	    .maglev_swap = f_swap,
	    .flows_purge = f_purge,
	};
	return tg_l4_plane_create(&ops, &plane);
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(dp.violations, 0);
	tg_l4_plane_free(plane);
	for (uint32_t v = 0; v < TG_MAX_VIPS; v++) {
		free(dp.table[v]);
		dp.table[v] = NULL;
	}
	return 0;
}

static tg_l4_config_t *cfg(const char *y)
{
	tg_l4_config_t *c = NULL;
	char err[TG_L4_ERR_MAX];
	if (tg_l4_config_parse(y, strlen(y), &c, err, sizeof(err)) != 0)
		fail_msg("config rejected: %s", err);
	return c;
}

static void apply(const char *y, uint64_t now)
{
	char err[TG_L4_ERR_MAX];
	int rc = tg_l4_plane_apply(plane, cfg(y), now, err, sizeof(err));
	if (rc != 0)
		fail_msg("apply: %s", err);
}

static tg_l4_ip_t ip(const char *s)
{
	tg_l4_ip_t a;
	assert_int_equal(tg_l4_ip_parse(s, strlen(s), &a), 0);
	return a;
}

static int rid(const char *s)
{
	tg_l4_ip_t a = ip(s);
	return tg_l4_plane_real_id(plane, &a);
}

/* Slots of vip id 0 owned by the real with address s. */
static uint32_t slots(uint32_t vip, const char *s)
{
	int id = rid(s);
	uint32_t n = 0;
	for (uint32_t i = 0; id >= 0 && dp.table[vip] && i < dp.table_size[vip]; i++)
		n += dp.table[vip][i] == (uint32_t)id;
	return n;
}

static int state_of(const char *vip, uint16_t port, const char *real)
{
	tg_l4_ip_t v = ip(vip), r = ip(real);
	return tg_l4_plane_member_state(plane, &v, port, TG_L4_TCP, &r);
}

/* The health key the plane uses for a real in vip id 0. */
static uint64_t key0(const char *real)
{
	return (uint64_t)0 << 32 | (uint32_t)rid(real);
}

#define Y3(dereg)                                                                                  \
	"interface: eth0\nvips:\n  - address: 198.18.100.1\n    port: 80\n    ring-size: 1009\n"   \
	"    deregistration-delay: " dereg "\n    reals:\n      - address: 198.18.2.11\n"          \
	"      - address: 198.18.2.12\n      - address: 198.18.2.13\n"

static void test_first_apply(void **state)
{
	(void)state;
	apply(Y3("3s"), 1000);
	assert_true(dp.vip_used[0]);
	assert_int_equal(dp.table_size[0], 1009);
	/* Every real healthy at start, each about a third of the table. */
	const char *r[] = {"198.18.2.11", "198.18.2.12", "198.18.2.13"};
	for (int i = 0; i < 3; i++) {
		assert_true(rid(r[i]) >= 0);
		assert_true(dp.valid[rid(r[i])]);
		assert_in_range(slots(0, r[i]), 336, 337);
		assert_int_equal(state_of("198.18.100.1", 80, r[i]), TG_L4_MEMBER_ACTIVE);
	}
	assert_true(tg_l4_plane_has_usable_vip(plane));
	/* Health targets: one per real, keyed by vip id and real id. */
	tg_health_target_t *t;
	int n = tg_l4_plane_health_targets(plane, &t);
	assert_int_equal(n, 3);
	for (int i = 0; i < n; i++) {
		assert_true(t[i].initially_healthy);
		assert_int_equal(t[i].cfg.port, 80);
		assert_int_equal(t[i].key >> 32, 0);
	}
	free(t);
}

/* Unhealthy: out of the table at once, valid until deregistration-delay
 * ends, then gone; healthy again: back in the table. */
static void test_unhealthy_drains_then_gone(void **state)
{
	(void)state;
	apply(Y3("3s"), 1000);
	int id2 = rid("198.18.2.12");
	tg_l4_plane_set_health(plane, key0("198.18.2.12"), false, 2000);
	assert_int_equal(slots(0, "198.18.2.12"), 0);
	assert_in_range(slots(0, "198.18.2.11"), 504, 505);
	assert_int_equal(state_of("198.18.100.1", 80, "198.18.2.12"), TG_L4_MEMBER_DRAINING);
	assert_true(dp.valid[id2]); /* its flows keep going */
	assert_int_equal(tg_l4_plane_tick(plane, 4999), 5000);
	assert_true(dp.valid[id2]);
	tg_l4_plane_tick(plane, 5000);
	assert_false(dp.valid[id2]); /* gone: the datapath re-picks its flows */
	assert_int_equal(state_of("198.18.100.1", 80, "198.18.2.12"), TG_L4_MEMBER_GONE);
	assert_int_equal(tg_l4_plane_tick(plane, 6000), UINT64_MAX);
	/* Recovery. */
	tg_l4_plane_set_health(plane, key0("198.18.2.12"), true, 7000);
	assert_true(dp.valid[id2]);
	assert_in_range(slots(0, "198.18.2.12"), 336, 337);
	assert_int_equal(state_of("198.18.100.1", 80, "198.18.2.12"), TG_L4_MEMBER_ACTIVE);
}

/* Every real unhealthy: all of them in the table (fail open). */
static void test_fail_open(void **state)
{
	(void)state;
	apply(Y3("0s"), 1000);
	tg_l4_plane_set_health(plane, key0("198.18.2.11"), false, 2000);
	tg_l4_plane_set_health(plane, key0("198.18.2.12"), false, 2000);
	assert_int_equal(slots(0, "198.18.2.13"), 1009);
	assert_false(dp.valid[rid("198.18.2.11")]); /* delay 0: gone at once */
	tg_l4_plane_set_health(plane, key0("198.18.2.13"), false, 3000);
	assert_in_range(slots(0, "198.18.2.11"), 336, 337);
	assert_in_range(slots(0, "198.18.2.12"), 336, 337);
	assert_in_range(slots(0, "198.18.2.13"), 336, 337);
	assert_true(dp.valid[rid("198.18.2.11")]);
	assert_true(tg_l4_plane_has_usable_vip(plane));
	/* One recovers: only it. */
	tg_l4_plane_set_health(plane, key0("198.18.2.12"), true, 4000);
	assert_int_equal(slots(0, "198.18.2.12"), 1009);
}

/* Removed by a reload: drains for deregistration-delay (still valid, no new
 * flows), then is gone and forgotten. Ids of the others do not change, and
 * the removed real gets its old id back when it returns. */
static void test_reload_drain_and_ids(void **state)
{
	(void)state;
	apply(Y3("3s"), 1000);
	int id1 = rid("198.18.2.11"), id2 = rid("198.18.2.12"), id3 = rid("198.18.2.13");
	uint32_t before = slots(0, "198.18.2.11");
	/* Reordered, 198.18.2.12 removed, 198.18.2.14 added. */
	apply("interface: eth0\nvips:\n  - address: 198.18.100.1\n    port: 80\n"
	      "    ring-size: 1009\n    deregistration-delay: 3s\n    reals:\n"
	      "      - address: 198.18.2.14\n      - address: 198.18.2.13\n"
	      "      - address: 198.18.2.11\n",
	      10000);
	assert_int_equal(rid("198.18.2.11"), id1);
	assert_int_equal(rid("198.18.2.13"), id3);
	assert_int_equal(state_of("198.18.100.1", 80, "198.18.2.12"), TG_L4_MEMBER_DRAINING);
	assert_int_equal(slots(0, "198.18.2.12"), 0);
	assert_true(dp.valid[id2]);
	/* The new real starts unhealthy (NLB "initial") and takes nothing yet. */
	assert_int_equal(slots(0, "198.18.2.14"), 0);
	assert_in_range(slots(0, "198.18.2.11"), 504, 505);
	assert_true(slots(0, "198.18.2.11") > before);
	/* Its health target says so. */
	tg_health_target_t *t;
	int n = tg_l4_plane_health_targets(plane, &t);
	assert_int_equal(n, 3);
	for (int i = 0; i < n; i++)
		assert_int_equal(t[i].initially_healthy,
				 (uint32_t)t[i].key != (uint32_t)rid("198.18.2.14"));
	free(t);
	tg_l4_plane_set_health(plane, key0("198.18.2.14"), true, 11000);
	assert_in_range(slots(0, "198.18.2.14"), 336, 337);
	/* Drain ends: gone and forgotten. */
	assert_int_equal(tg_l4_plane_tick(plane, 12000), 13000);
	tg_l4_plane_tick(plane, 13000);
	assert_false(dp.valid[id2]);
	assert_int_equal(state_of("198.18.100.1", 80, "198.18.2.12"), -1);
	/* It comes back: same id as before. */
	apply(Y3("3s"), 20000);
	assert_int_equal(rid("198.18.2.12"), id2);
	assert_int_equal(state_of("198.18.100.1", 80, "198.18.2.14"), TG_L4_MEMBER_DRAINING);
}

/* A real shared by two VIPs (ports 80 and 443) and drained in one of them
 * stays valid for the other; when its deregistration delay in the first
 * ends, that VIP's flows on it are ended (purged) instead of living on until
 * they idle out. A real drained everywhere is invalidated, no purge. */
static void test_shared_real_drain_purges_flows(void **state)
{
	(void)state;
	const char *two = "interface: eth0\nvips:\n"
			  "  - address: 198.18.100.1\n    port: 80\n    ring-size: 1009\n"
			  "    deregistration-delay: 3s\n    reals:\n"
			  "      - address: 198.18.2.11\n      - address: 198.18.2.12\n"
			  "  - address: 198.18.100.1\n    port: 443\n    ring-size: 1009\n"
			  "    deregistration-delay: 3s\n    reals:\n"
			  "      - address: 198.18.2.11\n      - address: 198.18.2.12\n";
	apply(two, 1000);
	int id2 = rid("198.18.2.12");
	/* Unhealthy for port 80 only (key: vip id 0). */
	tg_l4_plane_set_health(plane, key0("198.18.2.12"), false, 2000);
	assert_int_equal(state_of("198.18.100.1", 80, "198.18.2.12"), TG_L4_MEMBER_DRAINING);
	assert_int_equal(state_of("198.18.100.1", 443, "198.18.2.12"), TG_L4_MEMBER_ACTIVE);
	tg_l4_plane_tick(plane, 4999);
	assert_int_equal(dp.purges, 0); /* draining: its flows keep going */
	tg_l4_plane_tick(plane, 5000);
	assert_true(dp.valid[id2]); /* still serves port 443 */
	assert_int_equal(dp.purges, 1);
	assert_int_equal(dp.purge_vip, 0);
	assert_int_equal(dp.purge_real, (uint32_t)id2);
	assert_int_equal(state_of("198.18.100.1", 80, "198.18.2.12"), TG_L4_MEMBER_GONE);
	/* Removed from both by a reload with no delay: invalidated, no purge. */
	apply("interface: eth0\nvips:\n"
	      "  - address: 198.18.100.1\n    port: 80\n    ring-size: 1009\n"
	      "    deregistration-delay: 0s\n    reals:\n      - address: 198.18.2.12\n"
	      "  - address: 198.18.100.1\n    port: 443\n    ring-size: 1009\n"
	      "    deregistration-delay: 0s\n    reals:\n      - address: 198.18.2.12\n",
	      6000);
	int id1 = rid("198.18.2.11");
	assert_true(id1 < 0 || !dp.valid[id1]);
	assert_int_equal(dp.purges, 1);
}

/* The same configuration applied again changes nothing in the datapath. */
static void test_reload_same_is_quiet(void **state)
{
	(void)state;
	apply(Y3("3s"), 1000);
	int swaps = dp.swaps;
	apply(Y3("3s"), 2000);
	assert_int_equal(dp.swaps, swaps);
	assert_int_equal(dp.invalidations, 0);
}

/* cross-zone false: only this node's zone while it has a healthy real. */
static void test_zones(void **state)
{
	(void)state;
	const char *y = "interface: eth0\nzone: a\nvips:\n"
			"  - address: 198.18.100.1\n    port: 80\n    ring-size: 1009\n"
			"    deregistration-delay: 0s\n    reals:\n"
			"      - {address: 198.18.2.11, zone: a}\n"
			"      - {address: 198.18.2.12, zone: b}\n"
			"      - {address: 198.18.2.13, zone: b}\n"
			"  - address: 198.18.100.1\n    port: 443\n    ring-size: 1009\n"
			"    cross-zone: true\n    reals:\n"
			"      - {address: 198.18.2.11, zone: a}\n"
			"      - {address: 198.18.2.12, zone: b}\n";
	apply(y, 1000);
	assert_int_equal(slots(0, "198.18.2.11"), 1009);
	assert_in_range(slots(1, "198.18.2.11"), 504, 505); /* cross-zone: both */
	tg_l4_plane_set_health(plane, key0("198.18.2.11"), false, 2000);
	assert_in_range(slots(0, "198.18.2.12"), 504, 505);
	assert_in_range(slots(0, "198.18.2.13"), 504, 505);
	/* 198.18.2.11 is still valid: VIP :443 uses it (health is per VIP). */
	assert_true(dp.valid[rid("198.18.2.11")]);
	assert_in_range(slots(1, "198.18.2.11"), 504, 505);
	tg_l4_plane_set_health(plane, key0("198.18.2.11"), true, 3000);
	assert_int_equal(slots(0, "198.18.2.11"), 1009);
}

/* A VIP removed by a reload leaves the datapath; its reals become gone
 * unless another VIP uses them. Weights shape the table. */
static void test_vip_removed_and_weights(void **state)
{
	(void)state;
	apply("interface: eth0\nvips:\n"
	      "  - address: 198.18.100.1\n    port: 80\n    ring-size: 1009\n    reals:\n"
	      "      - address: 198.18.2.11\n"
	      "  - address: 198.18.100.2\n    port: 80\n    ring-size: 1009\n    reals:\n"
	      "      - {address: 198.18.2.12, weight: 3}\n      - address: 198.18.2.13\n",
	      1000);
	assert_int_equal(slots(1, "198.18.2.12"), 757);
	assert_int_equal(slots(1, "198.18.2.13"), 252);
	apply("interface: eth0\nvips:\n"
	      "  - address: 198.18.100.2\n    port: 80\n    ring-size: 1009\n    reals:\n"
	      "      - {address: 198.18.2.12, weight: 3}\n      - address: 198.18.2.13\n",
	      2000);
	assert_false(dp.vip_used[0]);
	assert_true(dp.vip_used[1]); /* the staying VIP keeps its id */
	assert_false(dp.valid[rid("198.18.2.11")]);
	assert_true(dp.valid[rid("198.18.2.12")]);
	/* A ring-size change rebuilds. */
	int swaps = dp.swaps;
	apply("interface: eth0\nvips:\n"
	      "  - address: 198.18.100.2\n    port: 80\n    ring-size: 65537\n    reals:\n"
	      "      - {address: 198.18.2.12, weight: 3}\n      - address: 198.18.2.13\n",
	      3000);
	assert_int_equal(dp.swaps, swaps + 1);
	assert_int_equal(dp.table_size[1], 65537);
}

/* More new reals than free real ids: rejected before anything changes. */
static void test_id_space_exhausted(void **state)
{
	(void)state;
	apply(Y3("5m"), 1000);
	/* 4 VIPs x 1000 reals = 4000 new + 3 draining > 4096? no: fits.
	 * 5 configurations in a row of 1000 new reals each, all draining,
	 * exhaust it. */
	char *y = malloc(64 * 1024);
	int rc = 0;
	char err[TG_L4_ERR_MAX];
	int round;
	for (round = 0; round < 6 && rc == 0; round++) {
		size_t o =
		    (size_t)snprintf(y, 64 * 1024,
				     "interface: eth0\nvips:\n  - address: 198.18.100.1\n"
				     "    port: 80\n    deregistration-delay: 5m\n    reals:\n");
		for (int r = 0; r < 1000; r++)
			o += (size_t)snprintf(y + o, 64 * 1024 - o,
					      "      - address: 198.19.%d.%d\n",
					      round * 4 + r / 250, r % 250 + 1);
		tg_l4_config_t *c = cfg(y);
		rc = tg_l4_plane_apply(plane, c, 2000 + (uint64_t)round, err, sizeof(err));
	}
	assert_int_equal(rc, -ENOSPC);
	assert_int_equal(round, 5); /* 4 x 1000 + 3 fit, the 5th thousand does not */
	assert_string_equal(err, "1000 new reals but only 93 free real ids (the datapath holds "
				 "4096; reals still draining keep theirs)");
	/* The running configuration is the previous one. */
	assert_int_equal(tg_l4_plane_config(plane)->vips[0].n_reals, 1000);
	assert_true(tg_l4_plane_has_usable_vip(plane));
	free(y);
}

static int f_real_stats(void *ctx, uint32_t id, tg_l4_counter_t *out)
{
	(void)ctx;
	out->packets = 100 + id;
	out->bytes = 1000 + id;
	return 0;
}

static int f_totals(void *ctx, tg_l4_dp_totals_t *out)
{
	(void)ctx;
	out->flow_hit = 7;
	out->flow_miss = 3;
	out->flow_admitted = 4;
	out->new_flow_guard = 2;
	out->n_events = 2;
	out->events[0].name = "drop_no_real";
	out->events[0].value = 5;
	out->events[1].name = "pass_not_vip";
	out->events[1].value = 9;
	return 0;
}

/* The metrics page names every real of every VIP with its state. */
static void test_metrics(void **state)
{
	(void)state;
	tg_l4_plane_free(plane);
	tg_l4_dp_ops_t ops = {
	    .vip_set = f_vip_set,
	    .vip_del = f_vip_del,
	    .real_set = f_real_set,
	    .real_invalidate = f_real_invalidate,
	    .maglev_swap = f_swap,
	    .real_stats = f_real_stats,
	    .totals = f_totals,
	};
	assert_int_equal(tg_l4_plane_create(&ops, &plane), 0);
	apply(Y3("3s"), 1000);
	apply("interface: eth0\nvips:\n  - address: 198.18.100.1\n    port: 80\n"
	      "    ring-size: 1009\n    deregistration-delay: 3s\n    reals:\n"
	      "      - address: 198.18.2.11\n      - address: 198.18.2.13\n",
	      2000);
	tg_l4_plane_note_reload(plane, true);
	tg_sbuf_t b = {0};
	tg_l4_plane_metrics(plane, &b);
	assert_false(b.oom);
	char want[256];
	snprintf(want, sizeof(want),
		 "tidegate_l4_packets_total{vip=\"198.18.100.1:80/tcp\",real=\"198.18.2.12\"} %d\n",
		 100 + rid("198.18.2.12"));
	const char *const lines[] = {
	    "# TYPE tidegate_l4_packets_total counter\n",
	    "tidegate_l4_real_state{vip=\"198.18.100.1:80/tcp\",real=\"198.18.2.12\","
	    "state=\"draining\"} 1\n",
	    "tidegate_l4_real_state{vip=\"198.18.100.1:80/tcp\",real=\"198.18.2.11\","
	    "state=\"active\"} 1\n",
	    "tidegate_l4_real_healthy{vip=\"198.18.100.1:80/tcp\",real=\"198.18.2.12\"} 0\n",
	    "tidegate_l4_real_healthy{vip=\"198.18.100.1:80/tcp\",real=\"198.18.2.13\"} 1\n",
	    "tidegate_l4_flow_table_lookups_total{result=\"hit\"} 7\n",
	    "tidegate_l4_flow_table_lookups_total{result=\"miss\"} 3\n",
	    "tidegate_l4_flows_admitted_total 4\n",
	    "tidegate_l4_new_flow_guard_total 2\n",
	    "tidegate_l4_drops_total{reason=\"no_real\"} 5\n",
	    "tidegate_l4_events_total{event=\"pass_not_vip\"} 9\n",
	    "tidegate_l4_maglev_rebuilds_total{vip=\"198.18.100.1:80/tcp\"} 2\n",
	    "tidegate_l4_config_reloads_total{result=\"success\"} 1\n",
	    want,
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		if (!strstr(b.data, lines[i]))
			fail_msg("missing: %s\nin:\n%s", lines[i], b.data);
	/* Drops are only the drop_* events. */
	assert_null(strstr(b.data, "tidegate_l4_drops_total{reason=\"pass_not_vip\"}"));
	tg_sbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_first_apply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unhealthy_drains_then_gone, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fail_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reload_drain_and_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reload_same_is_quiet, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shared_real_drain_purges_flows, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_zones, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vip_removed_and_weights, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_id_space_exhausted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

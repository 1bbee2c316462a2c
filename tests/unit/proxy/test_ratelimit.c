/*
 * test_ratelimit.c - limit-rps / limit-rpm / limit-connections state: nginx's
 * leaky-bucket arithmetic on an injected clock, zones that survive rebuilds,
 * bounded memory, and a connection counter shared by threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/ratelimit.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <sys/socket.h>

static const uint8_t A[4] = {10, 0, 0, 1};
static const uint8_t B[4] = {10, 0, 0, 2};

static tg_rl_policy_t policy(tg_rl_zone_t *z, uint32_t rps, uint32_t rpm, uint32_t mult,
			     uint32_t conns)
{
	return (tg_rl_policy_t){.zone = z,
				.rps = rps,
				.rpm = rpm,
				.burst_rps = rps * mult,
				.burst_rpm = rpm * mult,
				.conns = conns};
}

/* One request without a connection limit: -1 (passes) or the kind. */
static int req(tg_rl_table_t *t, const tg_rl_policy_t *p, const uint8_t *a, uint64_t now)
{
	tg_rl_slot_t *s;
	int k = tg_rl_request(t, p, AF_INET, a, now, &s);
	assert_null(s);
	return k;
}

static void test_burst_then_reject(void **state)
{
	(void)state;
	tg_rl_table_t *t = tg_rl_table_new(1024);
	assert_non_null(t);
	tg_rl_zone_t *z = tg_rl_zone_get(t, "ns", "ing");
	tg_rl_policy_t p = policy(z, 2, 0, 5, 0); /* burst 10 */
	for (int i = 0; i < 11; i++)
		assert_int_equal(req(t, &p, A, 1000), -1);
	assert_int_equal(req(t, &p, A, 1000), TG_RL_RPS);
	assert_int_equal(req(t, &p, A, 1000), TG_RL_RPS);
	assert_int_equal(tg_rl_rejected(z, TG_RL_RPS), 2);
	/* Another address has its own bucket. */
	assert_int_equal(req(t, &p, B, 1000), -1);
	tg_rl_table_free(t);
}

static void test_refill_and_rejected_not_accounted(void **state)
{
	(void)state;
	tg_rl_table_t *t = tg_rl_table_new(1024);
	tg_rl_zone_t *z = tg_rl_zone_get(t, "ns", "ing");
	tg_rl_policy_t p = policy(z, 2, 0, 5, 0); /* 2000 milli/s, burst 10000 */
	for (int i = 0; i < 11; i++)
		assert_int_equal(req(t, &p, A, 0), -1); /* excess 10000 */
	/* 10000 - 800 + 1000 > 10000: rejected, and nothing stored... */
	assert_int_equal(req(t, &p, A, 400), TG_RL_RPS);
	/* ...so at 500 the bucket drained 1000 since 0: exactly one passes. */
	assert_int_equal(req(t, &p, A, 500), -1);
	assert_int_equal(req(t, &p, A, 500), TG_RL_RPS);
	/* Fully drained after 5.5 s: burst + 1 again. */
	for (int i = 0; i < 11; i++)
		assert_int_equal(req(t, &p, A, 6000), -1);
	assert_int_equal(req(t, &p, A, 6000), TG_RL_RPS);
	tg_rl_table_free(t);
}

static void test_rps_and_rpm(void **state)
{
	(void)state;
	tg_rl_table_t *t = tg_rl_table_new(1024);
	tg_rl_zone_t *z = tg_rl_zone_get(t, "ns", "ing");
	/* rpm 1, multiplier 1: burst 1, so two pass although rps allows 500. */
	tg_rl_policy_t p = policy(z, 100, 1, 1, 0);
	p.burst_rps = 500;
	assert_int_equal(req(t, &p, A, 0), -1);
	assert_int_equal(req(t, &p, A, 0), -1);
	assert_int_equal(req(t, &p, A, 0), TG_RL_RPM);
	assert_int_equal(tg_rl_rejected(z, TG_RL_RPM), 1);

	/* A request rejected by rps leaves the rpm bucket alone: rps 1 burst 1,
	 * rpm 3 burst 3 (50 milli/s). */
	tg_rl_zone_t *z2 = tg_rl_zone_get(t, "ns", "other");
	tg_rl_policy_t q = policy(z2, 1, 3, 1, 0);
	assert_int_equal(req(t, &q, A, 0), -1);
	assert_int_equal(req(t, &q, A, 0), -1);
	assert_int_equal(req(t, &q, A, 0), TG_RL_RPS);	  /* rpm would be 3000 if counted */
	assert_int_equal(req(t, &q, A, 1000), -1);	  /* rpm 1950 */
	assert_int_equal(req(t, &q, A, 2000), -1);	  /* rpm 2900 */
	assert_int_equal(req(t, &q, A, 3000), TG_RL_RPM); /* 3850 > 3000 */
	tg_rl_table_free(t);
}

static void test_zone_survives_rebuild(void **state)
{
	(void)state;
	tg_rl_table_t *t = tg_rl_table_new(1024);
	tg_rl_zone_t *z = tg_rl_zone_get(t, "ns", "ing");
	tg_rl_policy_t p = policy(z, 1, 0, 2, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(req(t, &p, A, 0), -1);
	assert_int_equal(req(t, &p, A, 0), TG_RL_RPS);
	/* A rebuild: the zone is looked up again, a new policy with the same
	 * values: still limited. */
	assert_ptr_equal(tg_rl_zone_get(t, "ns", "x"), tg_rl_zone_get(t, "ns", "x"));
	tg_rl_zone_t *z2 = tg_rl_zone_get(t, "ns", "ing");
	assert_ptr_equal(z2, z);
	tg_rl_policy_t same = policy(z2, 1, 0, 2, 0);
	assert_int_equal(req(t, &same, A, 0), TG_RL_RPS);
	/* A changed value starts the buckets afresh. */
	tg_rl_policy_t changed = policy(z2, 2, 0, 2, 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(req(t, &changed, A, 0), -1);
	assert_int_equal(req(t, &changed, A, 0), TG_RL_RPS);
	/* Zones with the same address are independent. */
	tg_rl_policy_t other = policy(tg_rl_zone_get(t, "ns2", "ing"), 1, 0, 2, 0);
	assert_int_equal(req(t, &other, A, 0), -1);
	tg_rl_table_free(t);
}

static void test_connections(void **state)
{
	(void)state;
	tg_rl_table_t *t = tg_rl_table_new(1024);
	tg_rl_zone_t *z = tg_rl_zone_get(t, "ns", "ing");
	tg_rl_policy_t p = policy(z, 0, 0, 5, 2);
	tg_rl_slot_t *s1, *s2, *s3;
	assert_int_equal(tg_rl_request(t, &p, AF_INET, A, 0, &s1), -1);
	assert_int_equal(tg_rl_request(t, &p, AF_INET, A, 0, &s2), -1);
	assert_non_null(s1);
	assert_non_null(s2);
	assert_int_equal(tg_rl_request(t, &p, AF_INET, A, 0, &s3), TG_RL_CONN);
	assert_null(s3);
	assert_int_equal(tg_rl_conns(t, z, AF_INET, A), 2);
	tg_rl_release(t, s1);
	assert_int_equal(tg_rl_request(t, &p, AF_INET, A, 0, &s3), -1);
	tg_rl_release(t, s2);
	tg_rl_release(t, s3);
	assert_int_equal(tg_rl_conns(t, z, AF_INET, A), 0);
	assert_int_equal(tg_rl_rejected(z, TG_RL_CONN), 1);
	/* IPv6 keys are whole 16 bytes. */
	uint8_t v6a[16], v6b[16];
	inet_pton(AF_INET6, "fd00::1", v6a);
	inet_pton(AF_INET6, "fd00::2", v6b);
	assert_int_equal(tg_rl_request(t, &p, AF_INET6, v6a, 0, &s1), -1);
	assert_int_equal(tg_rl_request(t, &p, AF_INET6, v6a, 0, &s2), -1);
	assert_int_equal(tg_rl_request(t, &p, AF_INET6, v6b, 0, &s3), -1);
	tg_rl_release(t, s1);
	tg_rl_release(t, s2);
	tg_rl_release(t, s3);
	tg_rl_table_free(t);
}

static void test_bounded_and_eviction(void **state)
{
	(void)state;
	/* 64 entries: one per shard. */
	tg_rl_table_t *t = tg_rl_table_new(64);
	tg_rl_zone_t *z = tg_rl_zone_get(t, "ns", "ing");
	tg_rl_policy_t p = policy(z, 1, 0, 1, 0);
	assert_int_equal(req(t, &p, A, 0), -1);
	assert_int_equal(req(t, &p, A, 0), -1);
	assert_int_equal(req(t, &p, A, 0), TG_RL_RPS);
	/* A flood of other addresses never grows the table past its cap... */
	for (uint32_t i = 0; i < 5000; i++) {
		uint8_t a[4] = {192, 168, (uint8_t)(i >> 8), (uint8_t)i};
		assert_int_equal(req(t, &p, a, 0), -1);
		assert_true(tg_rl_entries(t) <= 64);
	}
	assert_int_equal(tg_rl_entries(t), 64);
	/* ...and reused A's entry: A starts afresh (nginx's forced expiry). */
	assert_int_equal(req(t, &p, A, 0), -1);

	/* An entry with a request in progress is never reused. */
	tg_rl_policy_t c = policy(z, 0, 0, 1, 1);
	tg_rl_slot_t *held, *s;
	assert_int_equal(tg_rl_request(t, &c, AF_INET, B, 0, &held), -1);
	for (uint32_t i = 0; i < 5000; i++) {
		uint8_t a[4] = {172, 16, (uint8_t)(i >> 8), (uint8_t)i};
		if (tg_rl_request(t, &c, AF_INET, a, 0, &s) < 0)
			tg_rl_release(t, s);
	}
	assert_int_equal(tg_rl_conns(t, z, AF_INET, B), 1);
	assert_int_equal(tg_rl_request(t, &c, AF_INET, B, 0, &s), TG_RL_CONN);
	tg_rl_release(t, held);
	assert_int_equal(tg_rl_request(t, &c, AF_INET, B, 0, &s), -1);
	tg_rl_release(t, s);
	tg_rl_table_free(t);
}

#define THREAD_OPS 100000

typedef struct targ {
	tg_rl_table_t *t;    /* shared table */
	tg_rl_policy_t *p;   /* shared policy */
	tg_rl_slot_t **keep; /* THREAD_OPS slots kept (phase 2) */
	bool release;	     /* phase 1: take and give back at once */
} targ_t;

static void *worker(void *arg)
{
	targ_t *a = arg;
	for (int i = 0; i < THREAD_OPS; i++) {
		tg_rl_slot_t *s;
		if (tg_rl_request(a->t, a->p, AF_INET, A, 0, &s) >= 0)
			return (void *)1;
		if (a->release)
			tg_rl_release(a->t, s);
		else
			a->keep[i] = s;
	}
	return NULL;
}

static void test_two_threads(void **state)
{
	(void)state;
	tg_rl_table_t *t = tg_rl_table_new(1024);
	tg_rl_zone_t *z = tg_rl_zone_get(t, "ns", "ing");
	tg_rl_policy_t p = policy(z, 0, 0, 5, 1000000);
	for (int phase = 0; phase < 2; phase++) {
		static tg_rl_slot_t *keep[2][THREAD_OPS];
		targ_t args[2] = {{t, &p, keep[0], phase == 0}, {t, &p, keep[1], phase == 0}};
		pthread_t th[2];
		for (int i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
		for (int i = 0; i < 2; i++) {
			void *rv;
			pthread_join(th[i], &rv);
			assert_null(rv);
		}
		if (phase == 0) {
			assert_int_equal(tg_rl_conns(t, z, AF_INET, A), 0);
		} else {
			/* Every increment counted: none lost to a race. */
			assert_int_equal(tg_rl_conns(t, z, AF_INET, A), 2 * THREAD_OPS);
			for (int i = 0; i < 2; i++)
				for (int j = 0; j < THREAD_OPS; j++)
					tg_rl_release(t, keep[i][j]);
			assert_int_equal(tg_rl_conns(t, z, AF_INET, A), 0);
		}
	}
	tg_rl_table_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_burst_then_reject),
	    cmocka_unit_test(test_refill_and_rejected_not_accounted),
	    cmocka_unit_test(test_rps_and_rpm),
	    cmocka_unit_test(test_zone_survives_rebuild),
	    cmocka_unit_test(test_connections),
	    cmocka_unit_test(test_bounded_and_eviction),
	    cmocka_unit_test(test_two_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

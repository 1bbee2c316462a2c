/*
 * test_snapshot.c - publish / acquire / release / generation: workers keep
 * using the snapshot they hold while new ones are published, and a snapshot
 * lives exactly as long as its last reference (ASan/LSan builds turn a
 * use-after-free or a leak here into a failure).
 */
#include "ingress_fixture.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* A snapshot routing h.com/ to Service `svc`. */
static tg_snapshot_t *make(const char *svc)
{
	tg_store_t *st = tg_store_new();
	char yaml[1024];
	snprintf(yaml, sizeof(yaml),
		 INGFX_CLASS
		 "apiVersion: networking.k8s.io/v1\nkind: Ingress\n"
		 "metadata: {name: i, namespace: default}\n"
		 "spec:\n  ingressClassName: tidegate\n  rules:\n  - host: h.com\n"
		 "    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: "
		 "{service: {name: %s, port: {number: 80}}}}\n",
		 svc);
	assert_int_equal(ingfx_apply(st, yaml), 0);
	assert_int_equal(ingfx_services(st, "default", svc), 0);
	tg_snapshot_t *s = ingfx_build(st, NULL);
	tg_store_free(st); /* the snapshot owns copies of everything it needs */
	assert_non_null(s);
	return s;
}

static void test_before_first_publish(void **state)
{
	(void)state;
	assert_int_equal(tg_snapshot_generation(), 0);
	assert_null(tg_snapshot_acquire());
	tg_snapshot_release(NULL); /* accepted */
}

static void test_publish_acquire_release(void **state)
{
	(void)state;
	tg_snapshot_t *s1 = make("one");
	assert_int_equal(atomic_load(&s1->refs), 1);
	tg_snapshot_publish(s1);
	uint64_t g1 = tg_snapshot_generation();
	assert_true(g1 > 0);
	assert_int_equal(s1->generation, g1);

	tg_snapshot_t *w = tg_snapshot_acquire(); /* a worker's reference */
	assert_ptr_equal(w, s1);
	assert_int_equal(atomic_load(&w->refs), 2);

	tg_snapshot_t *s2 = make("two");
	tg_snapshot_publish(s2);
	assert_true(tg_snapshot_generation() > g1);
	assert_int_equal(s2->generation, tg_snapshot_generation());
	/* The publisher's reference to s1 is gone; the worker's remains and
	 * its requests still route on it. */
	assert_int_equal(atomic_load(&w->refs), 1);
	assert_string_equal(ingfx_route(w, "h.com", "/"), "one:80");

	tg_snapshot_t *w2 = tg_snapshot_acquire();
	assert_ptr_equal(w2, s2);
	assert_string_equal(ingfx_route(w2, "h.com", "/"), "two:80");
	tg_snapshot_release(w);	 /* last reference: s1 freed */
	tg_snapshot_release(w2); /* s2 stays: still published */
	assert_int_equal(atomic_load(&s2->refs), 1);
}

static atomic_bool stop;
static atomic_ulong lookups;

static void *worker(void *arg)
{
	(void)arg;
	tg_snapshot_t *cur = NULL;
	uint64_t gen = 0;
	while (!atomic_load(&stop)) {
		uint64_t g = tg_snapshot_generation();
		if (g != gen) {
			tg_snapshot_t *n = tg_snapshot_acquire();
			tg_snapshot_release(cur);
			cur = n;
			gen = g;
		}
		const tg_route_t *r = ingfx_find(cur, "h.com", "/x");
		if (!r || !r->backend || r->backend->n_endpoints != 1)
			abort();
		atomic_fetch_add(&lookups, 1);
	}
	tg_snapshot_release(cur);
	return NULL;
}

static void test_concurrent_publish(void **state)
{
	(void)state;
	tg_snapshot_publish(make("base"));
	pthread_t th[2];
	atomic_store(&stop, false);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, worker, NULL), 0);
	uint64_t prev = tg_snapshot_generation();
	char name[32];
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "svc%d", i);
		tg_snapshot_publish(make(name));
		uint64_t g = tg_snapshot_generation();
		assert_true(g > prev); /* strictly increasing */
		prev = g;
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_true(atomic_load(&lookups) > 0);
	tg_snapshot_t *s = tg_snapshot_acquire();
	assert_string_equal(ingfx_route(s, "h.com", "/"), "svc199:80");
	assert_int_equal(atomic_load(&s->refs), 2);
	tg_snapshot_release(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_before_first_publish),
	    cmocka_unit_test(test_publish_acquire_release),
	    cmocka_unit_test(test_concurrent_publish),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

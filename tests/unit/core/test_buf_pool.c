/*
 * test_buf_pool.c - I/O buffers, their free lists, object pools and the
 * SPSC ring used by the access log.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/pool.h"
#include "core/ring.h"

static void test_buf_invariants_and_reuse(void **state)
{
	(void)state;
	tg_bufpool_t p;
	tg_bufpool_init(&p, 1024, 2);
	tg_buf_t *a = tg_buf_get(&p);
	assert_non_null(a);
	assert_int_equal(tg_buf_size(a), 1024);
	assert_ptr_equal(a->pos, a->start);
	assert_ptr_equal(a->last, a->start);
	assert_int_equal(tg_buf_space(a), 1024);
	memcpy(a->last, "hello world", 11);
	a->last += 11;
	a->pos += 6;
	assert_int_equal(tg_buf_avail(a), 5);
	tg_buf_compact(a);
	assert_ptr_equal(a->pos, a->start);
	assert_memory_equal(a->start, "world", 5);
	assert_int_equal(tg_buf_space(a), 1019);
	assert_int_equal(p.live, 1);
	/* returned buffers are handed out again, emptied */
	tg_buf_put(&p, a);
	assert_int_equal(p.live, 0);
	tg_buf_t *b = tg_buf_get(&p);
	assert_ptr_equal(a, b);
	assert_int_equal(tg_buf_avail(b), 0);
	/* the cache is bounded: a third returned buffer is freed */
	tg_buf_t *c = tg_buf_get(&p), *d = tg_buf_get(&p);
	tg_buf_put(&p, b);
	tg_buf_put(&p, c);
	tg_buf_put(&p, d);
	assert_int_equal(p.nfree, 2);
	/* a buffer of another size is freed, never cached */
	tg_buf_t *big = tg_buf_alloc(5000);
	tg_buf_put(&p, big);
	assert_int_equal(p.nfree, 2);
	tg_buf_put(&p, NULL);
	tg_bufpool_destroy(&p);
}

static void test_pool_reuse_and_bound(void **state)
{
	(void)state;
	tg_pool_t p;
	tg_pool_init(&p, 100, 1);
	void *a = tg_pool_get(&p), *b = tg_pool_get(&p);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	memset(a, 0xab, 100);
	memset(b, 0xcd, 100);
	assert_int_equal(p.live, 2);
	tg_pool_put(&p, a);
	tg_pool_put(&p, b); /* over max_free: freed */
	assert_int_equal(p.nfree, 1);
	assert_ptr_equal(tg_pool_get(&p), a);
	tg_pool_put(&p, a);
	tg_pool_put(&p, NULL);
	tg_pool_destroy(&p);
	assert_int_equal(p.nfree, 0);
}

/* Pool buffers are mapped pages of their own; a malloc'd buffer that happens
 * to have the pool's size must still be freed, not cached (or unmapped). */
static void test_buf_alloc_of_pool_size_is_not_cached(void **state)
{
	(void)state;
	tg_bufpool_t p;
	tg_bufpool_init(&p, 16384, 4);
	tg_buf_t *a = tg_buf_get(&p);
	assert_non_null(a);
	memset(a->start, 'x', tg_buf_size(a)); /* the whole storage is usable */
	tg_buf_t *m = tg_buf_alloc(16384);
	assert_non_null(m);
	tg_buf_put(&p, m);
	assert_int_equal(p.nfree, 0);
	tg_buf_put(&p, a);
	assert_int_equal(p.nfree, 1);
	assert_ptr_equal(tg_buf_get(&p), a);
	tg_buf_put(&p, a);
	tg_bufpool_destroy(&p);
	assert_int_equal(p.nfree, 0);
}

/* Objects of a page or more (exchanges) come from their own mappings: usable
 * to the last byte, reused while cached, released beyond max_free. */
static void test_pool_large_objects(void **state)
{
	(void)state;
	tg_pool_t p;
	tg_pool_init(&p, 3 * 4096 + 100, 1);
	char *a = tg_pool_get(&p), *b = tg_pool_get(&p);
	assert_non_null(a);
	assert_non_null(b);
	memset(a, 0x11, 3 * 4096 + 100);
	memset(b, 0x22, 3 * 4096 + 100);
	assert_int_equal(a[3 * 4096 + 99], 0x11);
	assert_int_equal(p.live, 2);
	tg_pool_put(&p, a);
	tg_pool_put(&p, b); /* over max_free: unmapped */
	assert_int_equal(p.nfree, 1);
	assert_int_equal(p.live, 0);
	assert_ptr_equal(tg_pool_get(&p), a);
	tg_pool_put(&p, a);
	tg_pool_destroy(&p);
	assert_int_equal(p.nfree, 0);
}

static void test_ring_all_or_nothing_and_wrap(void **state)
{
	(void)state;
	tg_ring_t r;
	assert_int_equal(tg_ring_init(&r, 4096), 0);
	char line[2000];
	memset(line, 'a', sizeof(line));
	for (int i = 0; i < 4; i++)
		assert_true(tg_ring_put(&r, line, 1000));
	assert_false(tg_ring_put(&r, line, 1000)); /* 96 bytes left: refused whole */
	assert_true(tg_ring_put(&r, line, 96));
	struct iovec iov[2];
	assert_int_equal(tg_ring_peek(&r, iov), 4096);
	tg_ring_consume(&r, 3000);
	/* this one wraps around the end */
	memset(line, 'b', sizeof(line));
	assert_true(tg_ring_put(&r, line, 2000));
	size_t n = tg_ring_peek(&r, iov);
	assert_int_equal(n, 1096 + 2000);
	assert_int_equal(iov[0].iov_len + iov[1].iov_len, n);
	assert_true(iov[1].iov_len > 0);
	const char *last = (const char *)iov[1].iov_base + iov[1].iov_len - 1;
	assert_int_equal(*last, 'b');
	tg_ring_consume(&r, n);
	assert_int_equal(tg_ring_peek(&r, iov), 0);
	tg_ring_destroy(&r);
}

#define MSGS 200000

static void *producer(void *arg)
{
	tg_ring_t *r = arg;
	for (uint32_t i = 0; i < MSGS;) {
		uint32_t rec[3] = {i, i * 7, ~i};
		if (tg_ring_put(r, rec, sizeof(rec)))
			i++;
	}
	return NULL;
}

/* One producer thread, this thread consuming: every record arrives intact and
 * in order (the release/acquire pairing). */
static void test_ring_two_threads(void **state)
{
	(void)state;
	tg_ring_t r;
	assert_int_equal(tg_ring_init(&r, 4096), 0);
	pthread_t t;
	pthread_create(&t, NULL, producer, &r);
	uint32_t expect = 0;
	uint8_t partial[12];
	size_t have = 0;
	while (expect < MSGS) {
		struct iovec iov[2];
		size_t n = tg_ring_peek(&r, iov);
		size_t used = 0;
		for (int k = 0; k < 2; k++) {
			const uint8_t *p = iov[k].iov_base;
			for (size_t j = 0; j < iov[k].iov_len; j++) {
				partial[have++] = p[j];
				if (have == sizeof(partial)) {
					uint32_t rec[3];
					memcpy(rec, partial, sizeof(rec));
					assert_int_equal(rec[0], expect);
					assert_int_equal(rec[1], expect * 7);
					assert_int_equal(rec[2], ~expect);
					expect++;
					have = 0;
				}
				used++;
			}
		}
		tg_ring_consume(&r, used);
		(void)n;
	}
	pthread_join(t, NULL);
	tg_ring_destroy(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buf_invariants_and_reuse),
	    cmocka_unit_test(test_pool_reuse_and_bound),
	    cmocka_unit_test(test_buf_alloc_of_pool_size_is_not_cached),
	    cmocka_unit_test(test_pool_large_objects),
	    cmocka_unit_test(test_ring_all_or_nothing_and_wrap),
	    cmocka_unit_test(test_ring_two_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

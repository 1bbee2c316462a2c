/*
 * test_timer.c - the per-worker timer heap: order, lazy extension, moving
 * earlier, cancel, re-arming from a callback, and a randomized check against
 * a brute-force model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/timer.h"

#define N 64

typedef struct rec {
	tg_timer_t t; /* the timer under test */
	int id;	      /* index */
	int fired;    /* times fired */
	uint64_t at;  /* `now` when it last fired */
} rec_t;

static rec_t recs[N];
static int order[N * 4];
static int norder;
static uint64_t cur_now;

static void on_fire(tg_timer_t *t)
{
	rec_t *r = (rec_t *)t;
	r->fired++;
	r->at = cur_now;
	if (norder < (int)(sizeof(order) / sizeof(order[0])))
		order[norder++] = r->id;
}

static void setup_recs(void)
{
	for (int i = 0; i < N; i++) {
		recs[i].id = i;
		recs[i].fired = 0;
		recs[i].at = 0;
		tg_timer_init(&recs[i].t, on_fire);
	}
	norder = 0;
}

static unsigned run(tg_timers_t *h, uint64_t now)
{
	cur_now = now;
	return tg_timers_run(h, now);
}

static void test_fires_in_deadline_order(void **state)
{
	(void)state;
	tg_timers_t h;
	tg_timers_init(&h);
	setup_recs();
	uint64_t when[5] = {50, 10, 40, 20, 30};
	for (int i = 0; i < 5; i++)
		assert_int_equal(tg_timer_set(&h, &recs[i].t, when[i]), 0);
	assert_int_equal(tg_timers_next(&h), 10);
	assert_int_equal(run(&h, 9), 0);
	assert_int_equal(run(&h, 35), 3);
	assert_int_equal(order[0], 1);
	assert_int_equal(order[1], 3);
	assert_int_equal(order[2], 4);
	assert_false(tg_timer_armed(&recs[1].t));
	assert_true(tg_timer_armed(&recs[0].t));
	assert_int_equal(run(&h, 100), 2);
	assert_int_equal(tg_timers_next(&h), UINT64_MAX);
	tg_timers_destroy(&h);
}

static void test_extension_is_lazy_and_correct(void **state)
{
	(void)state;
	tg_timers_t h;
	tg_timers_init(&h);
	setup_recs();
	tg_timer_set(&h, &recs[0].t, 10);
	tg_timer_set(&h, &recs[1].t, 20);
	/* Later deadline: recorded only; the heap key stays 10. */
	tg_timer_set(&h, &recs[0].t, 30);
	assert_int_equal(tg_timers_next(&h), 10);
	/* At 10 nothing is due: the entry is re-keyed, not fired. */
	assert_int_equal(run(&h, 10), 0);
	assert_int_equal(recs[0].fired, 0);
	assert_int_equal(tg_timers_next(&h), 20);
	assert_int_equal(run(&h, 25), 1);
	assert_int_equal(order[0], 1);
	assert_int_equal(run(&h, 30), 1);
	assert_int_equal(recs[0].fired, 1);
	assert_int_equal(recs[0].at, 30);
	tg_timers_destroy(&h);
}

static void test_move_earlier_and_cancel(void **state)
{
	(void)state;
	tg_timers_t h;
	tg_timers_init(&h);
	setup_recs();
	for (int i = 0; i < 10; i++)
		tg_timer_set(&h, &recs[i].t, 100 + (uint64_t)i);
	tg_timer_set(&h, &recs[9].t, 5); /* earlier: O(log n) move */
	assert_int_equal(tg_timers_next(&h), 5);
	tg_timer_cancel(&h, &recs[9].t);
	tg_timer_cancel(&h, &recs[9].t); /* twice is harmless */
	tg_timer_cancel(&h, &recs[3].t);
	assert_false(tg_timer_armed(&recs[3].t));
	assert_int_equal(run(&h, 1000), 8);
	assert_int_equal(recs[9].fired, 0);
	assert_int_equal(recs[3].fired, 0);
	for (int i = 1; i < norder; i++)
		assert_true(order[i - 1] < order[i]);
	tg_timers_destroy(&h);
}

static tg_timers_t *rearm_heap;

static void rearm(tg_timer_t *t)
{
	rec_t *r = (rec_t *)t;
	r->fired++;
	if (r->fired < 3)
		tg_timer_set(rearm_heap, t, cur_now + 10);
	/* cancel another armed timer from inside a callback */
	tg_timer_cancel(rearm_heap, &recs[1].t);
}

static void test_callback_rearms_and_cancels(void **state)
{
	(void)state;
	tg_timers_t h;
	tg_timers_init(&h);
	rearm_heap = &h;
	setup_recs();
	tg_timer_init(&recs[0].t, rearm);
	tg_timer_set(&h, &recs[0].t, 10);
	tg_timer_set(&h, &recs[1].t, 15);
	run(&h, 10);
	assert_int_equal(recs[0].fired, 1);
	assert_false(tg_timer_armed(&recs[1].t));
	run(&h, 20);
	run(&h, 30);
	run(&h, 40);
	assert_int_equal(recs[0].fired, 3);
	assert_false(tg_timer_armed(&recs[0].t));
	tg_timers_destroy(&h);
}

/* Random operations against a model: every timer fires exactly when its
 * last deadline is <= now, never earlier, never twice. */
static void test_random_against_model(void **state)
{
	(void)state;
	tg_timers_t h;
	tg_timers_init(&h);
	setup_recs();
	uint64_t model[N];
	for (int i = 0; i < N; i++)
		model[i] = UINT64_MAX;
	srand(12345);
	uint64_t now = 0;
	for (int step = 0; step < 20000; step++) {
		int i = rand() % N;
		int op = rand() % 10;
		if (op < 6) {
			uint64_t d = now + 1 + (uint64_t)(rand() % 200);
			tg_timer_set(&h, &recs[i].t, d);
			model[i] = d;
		} else if (op < 7) {
			tg_timer_cancel(&h, &recs[i].t);
			model[i] = UINT64_MAX;
		} else {
			now += (uint64_t)(rand() % 30);
			int before[N];
			for (int k = 0; k < N; k++)
				before[k] = recs[k].fired;
			run(&h, now);
			for (int k = 0; k < N; k++) {
				bool due = model[k] <= now;
				assert_int_equal(recs[k].fired - before[k], due ? 1 : 0);
				if (due) {
					assert_true(recs[k].at >= model[k]);
					model[k] = UINT64_MAX;
				}
				assert_int_equal(tg_timer_armed(&recs[k].t),
						 model[k] != UINT64_MAX);
			}
		}
	}
	tg_timers_destroy(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fires_in_deadline_order),
	    cmocka_unit_test(test_extension_is_lazy_and_correct),
	    cmocka_unit_test(test_move_earlier_and_cancel),
	    cmocka_unit_test(test_callback_rearms_and_cancels),
	    cmocka_unit_test(test_random_against_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_fdlimit.c - the open-file limit a proxy starts with: a soft limit of
 * 1024 (the usual default) would cap the connections far below
 * max-worker-connections, so tg_fdlimit_raise lifts it to the hard limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/fdlimit.h"

#include <sys/resource.h>

static void test_soft_limit_raised_to_hard(void **state)
{
	(void)state;
	struct rlimit old;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	if (old.rlim_max != RLIM_INFINITY && old.rlim_max <= 64) {
		print_message("hard open-file limit %llu: nothing to raise, skipped\n",
			      (unsigned long long)old.rlim_max);
		skip();
	}
	struct rlimit low = {64, old.rlim_max};
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

	int64_t got = tg_fdlimit_raise();
	struct rlimit now;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &now), 0);
	assert_true(got > 64);
	assert_int_equal((uint64_t)got, (uint64_t)now.rlim_cur);
	if (old.rlim_max != RLIM_INFINITY)
		assert_int_equal((uint64_t)now.rlim_cur, (uint64_t)old.rlim_max);
	assert_true(now.rlim_max == old.rlim_max); /* the hard limit is left alone */

	/* already at the hard limit: unchanged, same answer */
	assert_int_equal(tg_fdlimit_raise(), got);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_soft_limit_raised_to_hard),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

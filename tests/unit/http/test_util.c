/*
 * test_util.c - reason phrases, the Date text, idempotent methods.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <cmocka.h>

#include "http/http.h"

static void test_reason(void **state)
{
	(void)state;
	assert_string_equal(tg_http_reason(200), "OK");
	assert_string_equal(tg_http_reason(101), "Switching Protocols");
	assert_string_equal(tg_http_reason(404), "Not Found");
	assert_string_equal(tg_http_reason(414), "URI Too Long");
	assert_string_equal(tg_http_reason(431), "Request Header Fields Too Large");
	assert_string_equal(tg_http_reason(502), "Bad Gateway");
	assert_string_equal(tg_http_reason(505), "HTTP Version Not Supported");
	assert_string_equal(tg_http_reason(299), "");
	assert_string_equal(tg_http_reason(-1), "");
	/* every status the parsers can ask for has a phrase */
	static const int used[] = {400, 413, 414, 417, 431, 501, 502, 503, 504, 505};
	for (size_t i = 0; i < TG_ARRAY_SIZE(used); i++)
		assert_true(tg_http_reason(used[i])[0] != '\0');
}

/* The text equals strftime's IMF-fixdate for the same second (retried when a
 * second boundary falls between the two readings). */
static void test_date(void **state)
{
	(void)state;
	for (int attempt = 0; attempt < 5; attempt++) {
		char out[30] = {0}, want[64];
		time_t before = time(NULL);
		tg_http_date(out);
		time_t after = time(NULL);
		if (before != after)
			continue;
		struct tm tm;
		gmtime_r(&before, &tm);
		strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		assert_int_equal(strlen(want), 29);
		assert_memory_equal(out, want, 29);
		assert_int_equal(out[29], 0); /* writes exactly 29 bytes */
		/* the cached copy is identical within the second */
		char again[29];
		tg_http_date(again);
		if (time(NULL) == before)
			assert_memory_equal(again, out, 29);
		return;
	}
	fail_msg("clock kept crossing second boundaries");
}

/* The cached text follows the clock once the second changes. */
static void test_date_advances(void **state)
{
	(void)state;
	char first[29], later[29], want[64];
	time_t t0 = time(NULL), t1;

	tg_http_date(first);
	/* wait (at most ~3 s) for the next second */
	for (int i = 0; i < 60 && (t1 = time(NULL)) == t0; i++)
		nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
	t1 = time(NULL);
	if (t1 == t0)
		skip();
	tg_http_date(later);
	if (time(NULL) != t1)
		return; /* crossed yet another boundary: nothing reliable to compare */
	struct tm tm;
	gmtime_r(&t1, &tm);
	strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	assert_memory_equal(later, want, 29);
	assert_memory_not_equal(later, first, 29);
}

static void test_idempotent(void **state)
{
	(void)state;
	assert_true(tg_http_method_idempotent(TG_METHOD_GET));
	assert_true(tg_http_method_idempotent(TG_METHOD_HEAD));
	assert_true(tg_http_method_idempotent(TG_METHOD_PUT));
	assert_true(tg_http_method_idempotent(TG_METHOD_DELETE));
	assert_true(tg_http_method_idempotent(TG_METHOD_OPTIONS));
	assert_true(tg_http_method_idempotent(TG_METHOD_TRACE));
	assert_false(tg_http_method_idempotent(TG_METHOD_POST));
	assert_false(tg_http_method_idempotent(TG_METHOD_PATCH));
	assert_false(tg_http_method_idempotent(TG_METHOD_CONNECT));
	assert_false(tg_http_method_idempotent(TG_METHOD_OTHER));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reason),
	    cmocka_unit_test(test_date),
	    cmocka_unit_test(test_date_advances),
	    cmocka_unit_test(test_idempotent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

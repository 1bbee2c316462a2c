/*
 * test_accesslog.c - the access log line: field order, "-" for absent
 * values, escaping of client-controlled bytes, bounded length.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/accesslog.h"

static void test_full_line(void **state)
{
	(void)state;
	tg_logrec_t r = {
	    .client_ip = TG_STR("10.0.0.9"),
	    .time_local = "26/Nov/2026:09:30:00 +0000",
	    .request_line = TG_STR("GET /a?b HTTP/1.1"),
	    .status = 200,
	    .body_bytes = 12,
	    .referer = TG_STR("http://r/"),
	    .user_agent = TG_STR("curl/8"),
	    .request_length = 90,
	    .request_time_us = 1500,
	    .upstream_name = "ns-svc-80",
	    .upstream_addr = "10.1.1.1:8080",
	    .upstream_length = 120,
	    .upstream_time_us = 1234,
	    .upstream_status = 200,
	    .request_id = TG_STR("abc"),
	    .ns = "ns",
	    .ingress = "ing",
	    .service = "svc",
	};
	char out[4096];
	size_t n = tg_accesslog_format(&r, out, sizeof(out));
	out[n] = '\0';
	assert_string_equal(
	    out, "10.0.0.9 - - [26/Nov/2026:09:30:00 +0000] \"GET /a?b HTTP/1.1\" 200 12 "
		 "\"http://r/\" \"curl/8\" 90 0.002 [ns-svc-80] [] 10.1.1.1:8080 120 "
		 "0.001 200 abc ns/ing svc\n");
}

static void test_absent_fields_and_escaping(void **state)
{
	(void)state;
	tg_logrec_t r = {
	    .client_ip = TG_STR("::1"),
	    .time_local = "t",
	    .request_line = TG_STR("GET /\"x\\\x01\xff HTTP/1.1"),
	    .status = 404,
	};
	char out[4096];
	size_t n = tg_accesslog_format(&r, out, sizeof(out));
	out[n] = '\0';
	assert_string_equal(
	    out, "::1 - - [t] \"GET /\\x22x\\x5C\\x01\\xFF HTTP/1.1\" 404 0 \"-\" \"-\" 0 "
		 "0.000 [] [] - - - - - - -\n");
}

static void test_bounded_output(void **state)
{
	(void)state;
	static char big[10000];
	memset(big, '"', sizeof(big));
	tg_logrec_t r = {
	    .client_ip = TG_STR("1.2.3.4"),
	    .time_local = "t",
	    .request_line = {big, sizeof(big)},
	    .user_agent = {big, sizeof(big)},
	    .status = 400,
	};
	char out[4096];
	size_t n = tg_accesslog_format(&r, out, sizeof(out));
	assert_true(n <= sizeof(out));
	assert_int_equal(out[n - 1], '\n');
	assert_null(memchr(out, '\n', n - 1));
	char small[64];
	n = tg_accesslog_format(&r, small, sizeof(small));
	assert_int_equal(n, sizeof(small));
	assert_int_equal(small[n - 1], '\n');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_line),
	    cmocka_unit_test(test_absent_fields_and_escaping),
	    cmocka_unit_test(test_bounded_output),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

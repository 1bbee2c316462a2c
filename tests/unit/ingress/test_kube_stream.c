/*
 * test_kube_stream.c - the watch-body splitter: events arriving split across
 * arbitrary chunk boundaries (every byte boundary, every pair of
 * boundaries), several events in one chunk, strings holding braces and
 * escaped quotes, and the malformed streams it must refuse. Also the status
 * comparison that decides whether an Ingress's status is rewritten.
 */
#include "ingress/kube_status.h"
#include "ingress/kube_stream.h"
#include "core/common.h"
#include "guard.h"

#include <errno.h>
#include <libfyaml.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char *const events[] = {
    "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Service\",\"metadata\":{\"name\":\"a\","
    "\"resourceVersion\":\"5\"}}}",
    /* Braces and brackets inside strings, an escaped quote and an escaped
     * backslash right before a closing quote. */
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"annotations\":{\"x\":"
    "\"}{ ][ \\\" }\",\"y\":\"\\\\\"}},\"spec\":[{},[]]}}",
    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}",
};
#define N_EVENTS 3

/* The stream as the API server writes it: one event per line. */
static char *whole(size_t *len)
{
	static char buf[1024];
	size_t n = 0;
	for (int i = 0; i < N_EVENTS; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\n", events[i]);
	*len = n;
	return buf;
}

/* Feeds `data` in pieces ending at the given cut offsets and checks that
 * exactly the three events come out, in order. */
static void feed_cut(const char *data, size_t len, const size_t *cuts, size_t ncuts)
{
	tg_kube_stream_t s;
	tg_kube_stream_init(&s);
	int got = 0;
	size_t prev = 0;
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		/* Each piece sits before a guard page: a read past it crashes. */
		const char *piece = tg_guard_dup(data + prev, end - prev);
		assert_int_equal(tg_kube_stream_feed(&s, piece, end - prev), 0);
		tg_guard_free(piece, end - prev);
		prev = end;
		for (;;) {
			const char *obj;
			long n = tg_kube_stream_next(&s, &obj);
			if (n == TG_AGAIN)
				break;
			assert_true(n > 0);
			assert_true(got < N_EVENTS);
			if ((size_t)n != strlen(events[got]) || memcmp(obj, events[got], (size_t)n))
				fail_msg("event %d differs with cuts at %zu/%zu", got,
					 ncuts ? cuts[0] : 0, ncuts > 1 ? cuts[1] : 0);
			got++;
		}
	}
	assert_int_equal(got, N_EVENTS);
	assert_int_equal(s.depth, 0);
	tg_kube_stream_free(&s);
}

static void test_every_single_split(void **state)
{
	(void)state;
	size_t len;
	const char *d = whole(&len);
	feed_cut(d, len, NULL, 0);
	for (size_t i = 1; i < len; i++)
		feed_cut(d, len, &i, 1);
}

static void test_every_pair_of_splits(void **state)
{
	(void)state;
	size_t len;
	const char *d = whole(&len);
	for (size_t i = 1; i < len; i++)
		for (size_t j = i + 1; j < len; j += 3) {
			size_t cuts[2] = {i, j};
			feed_cut(d, len, cuts, 2);
		}
}

static void test_byte_by_byte(void **state)
{
	(void)state;
	size_t len;
	const char *d = whole(&len);
	size_t cuts[1024];
	for (size_t i = 1; i < len; i++)
		cuts[i - 1] = i;
	feed_cut(d, len, cuts, len - 1);
}

static void test_whitespace_only_and_no_newlines(void **state)
{
	(void)state;
	tg_kube_stream_t s;
	tg_kube_stream_init(&s);
	const char *obj;
	assert_int_equal(tg_kube_stream_feed(&s, " \r\n\t\n", 5), 0);
	assert_int_equal(tg_kube_stream_next(&s, &obj), TG_AGAIN);
	/* Whitespace is dropped, not accumulated. */
	assert_int_equal(tg_kube_stream_feed(&s, "{\"a\":1}{\"b\":2}", 14), 0);
	assert_int_equal(s.len, 14);
	assert_int_equal(tg_kube_stream_next(&s, &obj), 7);
	assert_memory_equal(obj, "{\"a\":1}", 7);
	assert_int_equal(tg_kube_stream_next(&s, &obj), 7);
	assert_memory_equal(obj, "{\"b\":2}", 7);
	assert_int_equal(tg_kube_stream_next(&s, &obj), TG_AGAIN);
	/* Reset forgets a partial event (a new connection). */
	assert_int_equal(tg_kube_stream_feed(&s, "{\"partial\":", 11), 0);
	assert_int_equal(tg_kube_stream_next(&s, &obj), TG_AGAIN);
	tg_kube_stream_reset(&s);
	assert_int_equal(tg_kube_stream_feed(&s, "{}", 2), 0);
	assert_int_equal(tg_kube_stream_next(&s, &obj), 2);
	tg_kube_stream_free(&s);
	tg_kube_stream_free(NULL);
}

/* Each input must be refused with a reason. */
static void expect_malformed(const char *in, size_t len, size_t max, const char *why)
{
	tg_kube_stream_t s;
	tg_kube_stream_init(&s);
	s.max = max;
	const char *obj;
	long n = 0;
	assert_int_equal(tg_kube_stream_feed(&s, in, len), 0);
	while ((n = tg_kube_stream_next(&s, &obj)) > 0)
		;
	if (n != TG_ERROR || !strstr(s.reason, why))
		fail_msg("input \"%.40s\": got %ld reason \"%s\", want \"%s\"", in, n, s.reason,
			 why);
	/* Sticky until reset. */
	assert_int_equal(tg_kube_stream_next(&s, &obj), TG_ERROR);
	tg_kube_stream_free(&s);
}

static void test_malformed(void **state)
{
	(void)state;
	expect_malformed("{}\nHTTP/1.1 200 OK", 17, 0, "unexpected byte between events");
	expect_malformed("[1,2]", 5, 0, "unexpected byte between events");
	expect_malformed("{\"a\":1}}", 8, 0, "unexpected byte");
	expect_malformed("{\"a\":[1}]}", 10, 0, "mismatched closing bracket");
	expect_malformed("{\"a\":{\"b\":2]}", 13, 0, "mismatched closing bracket");
	expect_malformed("{\"a\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 52, 32,
			 "larger than the limit");
	static char deep[1200];
	memset(deep, '[', sizeof(deep));
	deep[0] = '{';
	expect_malformed(deep, sizeof(deep), 0, "nesting deeper");
}

/* ---- status comparison ---------------------------------------------------- */

static struct fy_document *json(const char *text)
{
	struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET | FYPCF_JSON_FORCE};
	struct fy_document *d = fy_document_build_from_string(&cfg, text, strlen(text));
	assert_non_null(d);
	return d;
}

/* The canonical form of an Ingress's current status. */
static char *current(const char *ingress_json)
{
	struct fy_document *d = json(ingress_json);
	tg_sbuf_t b = {0};
	tg_sbuf_append(&b, "", 0);
	tg_kube_status_current(fy_document_root(d), &b);
	fy_document_destroy(d);
	return b.data;
}

static void test_status_desired(void **state)
{
	(void)state;
	tg_kube_status_t st;
	char err[200];
	assert_int_equal(
	    tg_kube_status_build(" 198.18.0.1 ,LB.example.com,2001:DB8::1", &st, err, sizeof(err)),
	    0);
	assert_string_equal(st.canonical, "hostname:lb.example.com ip:198.18.0.1 ip:2001:db8::1");
	assert_string_equal(st.patch,
			    "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"198.18.0.1\"},"
			    "{\"hostname\":\"lb.example.com\"},{\"ip\":\"2001:db8::1\"}]}}}");

	/* The same set in another order and case, as the API returns it: equal,
	 * so no rewrite. */
	char *c = current("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"2001:db8:0::1\"},"
			  "{\"hostname\":\"lb.example.com\"},{\"ip\":\"198.18.0.1\"}]}}}");
	assert_string_equal(c, st.canonical);
	free(c);
	/* Missing one address, or carrying ports: different, so rewritten. */
	c = current("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"198.18.0.1\"}]}}}");
	assert_string_not_equal(c, st.canonical);
	free(c);
	c = current("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"2001:db8::1\"},"
		    "{\"hostname\":\"lb.example.com\"},{\"ip\":\"198.18.0.1\",\"ports\":[{\"port\":"
		    "80}]}]}}}");
	assert_string_not_equal(c, st.canonical);
	free(c);
	/* No status at all: empty. */
	c = current("{\"metadata\":{\"name\":\"x\"}}");
	assert_string_equal(c, "");
	free(c);
	tg_kube_status_free(&st);
	tg_kube_status_free(NULL);

	assert_int_equal(tg_kube_status_build("198.18.0.1,bad host!", &st, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "bad host!"));
	assert_null(st.patch);
	assert_int_equal(tg_kube_status_build("*.example.com", &st, err, sizeof(err)), -EINVAL);
	/* An empty list is valid: it clears the status. */
	assert_int_equal(tg_kube_status_build(" , ", &st, err, sizeof(err)), 0);
	assert_string_equal(st.canonical, "");
	assert_string_equal(st.patch, "{\"status\":{\"loadBalancer\":{\"ingress\":[]}}}");
	tg_kube_status_free(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_single_split),
	    cmocka_unit_test(test_every_pair_of_splits),
	    cmocka_unit_test(test_byte_by_byte),
	    cmocka_unit_test(test_whitespace_only_and_no_newlines),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_status_desired),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

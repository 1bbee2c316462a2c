/*
 * test_chunked.c - tg_http_chunked_scan: valid bodies with extensions and
 * trailers fed at every split point (and byte by byte), each piece before a
 * guard page; every kind of malformed framing; sizes at and past 2^63.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "guard.h"
#include "http/http.h"

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			print_error("%s:%d: check failed: %s\n  case: ", __FILE__, __LINE__,       \
				    #cond);                                                        \
			print_error(__VA_ARGS__);                                                  \
			print_error("\n");                                                         \
			fail();                                                                    \
		}                                                                                  \
	} while (0)

/* Result of scanning an input given in pieces. */
struct outcome {
	ssize_t used;	 /* bytes consumed in total, or TG_ERROR */
	bool done;	 /* the body ended */
	uint64_t data;	 /* body_bytes */
	const char *err; /* error reason */
};

/* Scans in[0..n) split at the offsets in cuts[] (ascending), each piece copied
 * before its own guard page. Stops at done or error. */
static struct outcome scan_pieces(const char *in, size_t n, const size_t *cuts, size_t ncuts)
{
	tg_http_chunked_t c;
	struct outcome o = {0, false, 0, NULL};
	size_t start = 0;

	memset(&c, 0, sizeof(c));
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		const char *p = tg_guard_dup(in + start, end - start);
		bool done = true; /* the scanner must set it */
		ssize_t r = tg_http_chunked_scan(&c, p, end - start, &done);
		tg_guard_free(p, end - start);
		if (r == TG_ERROR) {
			o.used = TG_ERROR;
			o.err = c.error;
			/* errors are sticky */
			bool d2;
			if (tg_http_chunked_scan(&c, "0\r\n\r\n", 5, &d2) != TG_ERROR)
				o.err = "error not sticky";
			return o;
		}
		o.used += r;
		if (done) {
			o.done = true;
			break;
		}
		if ((size_t)r != end - start) {
			o.err = "stopped early without done";
			return o;
		}
		start = end;
	}
	o.data = c.body_bytes;
	return o;
}

struct valid_case {
	const char *name; /* what the case shows */
	const char *in;	  /* the body (the part after it is not body) */
	size_t body_len;  /* bytes of in that are the body; 0 = all of in */
	uint64_t data;	  /* decoded data bytes */
};

static const struct valid_case valid_cases[] = {
    {"one chunk", "5\r\nhello\r\n0\r\n\r\n", 0, 5},
    {"several chunks, hex sizes", "a\r\n0123456789\r\nA\r\nabcdefghij\r\n1\r\n!\r\n0\r\n\r\n", 0,
     21},
    {"upper- and lower-case hex", "1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n", 0, 31},
    {"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", 0, 5},
    {"empty body", "0\r\n\r\n", 0, 0},
    {"extensions", "5;a=b\r\nhello\r\n3 ; name ; x = \"q \\\" d\" ;y=1\r\nabc\r\n0;last\r\n\r\n", 0,
     8},
    {"extension with tab BWS", "2\t;\tk\t=\tv\r\nab\r\n0\r\n\r\n", 0, 2},
    {"trailers", "2\r\nab\r\n0\r\nX-Sum: 12\r\nX-Empty:\r\n\r\n", 0, 2},
    {"bytes after the body stay", "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 11, 1},
    {"data holding CRLFs", "6\r\n\r\n\r\n\r\n\r\n0\r\n\r\n", 0, 6},
};

static void test_valid_every_split(void **state)
{
	(void)state;
	for (size_t i = 0; i < TG_ARRAY_SIZE(valid_cases); i++) {
		const struct valid_case *c = &valid_cases[i];
		size_t n = strlen(c->in);
		struct outcome whole = scan_pieces(c->in, n, NULL, 0);

		CHECK(whole.err == NULL, "%s: %s", c->name, whole.err);
		CHECK(whole.done, "%s: not done", c->name);
		size_t want = c->body_len ? c->body_len : n;
		CHECK(whole.used == (ssize_t)want, "%s: used %zd want %zu", c->name, whole.used,
		      want);
		CHECK(whole.data == c->data, "%s: data %llu", c->name,
		      (unsigned long long)whole.data);
		/* one cut anywhere, then every byte alone */
		for (size_t k = 0; k <= n; k++) {
			struct outcome o = scan_pieces(c->in, n, &k, 1);
			CHECK(o.err == NULL && o.done && o.used == whole.used &&
				  o.data == whole.data,
			      "%s: cut at %zu differs", c->name, k);
		}
		size_t *cuts = malloc(n * sizeof(*cuts));
		assert_non_null(cuts);
		for (size_t k = 0; k < n; k++)
			cuts[k] = k + 1;
		struct outcome o = scan_pieces(c->in, n, cuts, n ? n - 1 : 0);
		CHECK(o.err == NULL && o.done && o.used == whole.used && o.data == whole.data,
		      "%s: byte by byte differs", c->name);
		free(cuts);
	}
}

struct bad_case {
	const char *name; /* what is wrong */
	const char *in;	  /* the body */
};

static const struct bad_case bad_cases[] = {
    {"no size", "\r\nhello\r\n0\r\n\r\n"},
    {"non-hex size", "g\r\n"},
    {"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"},
    {"negative size", "-5\r\n"},
    {"plus sign", "+5\r\n"},
    {"space before size", " 5\r\nhello\r\n0\r\n\r\n"},
    {"whitespace after size", "5 \r\nhello\r\n0\r\n\r\n"},
    {"bare LF after size", "5\nhello\r\n0\r\n\r\n"},
    {"bare CR after size", "5\rhello\r\n0\r\n\r\n"},
    {"size 2^63", "8000000000000000\r\n"},
    {"size 2^64", "10000000000000000\r\n"},
    {"huge size", "ffffffffffffffffffff\r\n"},
    {"data longer than size", "3\r\nhello\r\n0\r\n\r\n"},
    {"data without CRLF", "5\r\nhello0\r\n\r\n"},
    {"data with bare LF", "5\r\nhello\n0\r\n\r\n"},
    {"empty extension", "5;\r\nhello\r\n0\r\n\r\n"},
    {"extension without name", "5;=x\r\nhello\r\n0\r\n\r\n"},
    {"extension without value", "5;a=\r\nhello\r\n0\r\n\r\n"},
    {"extension with bad name", "5;a@b\r\nhello\r\n0\r\n\r\n"},
    {"extension trailing whitespace", "5;a \r\nhello\r\n0\r\n\r\n"},
    {"extension value trailing whitespace", "5;a=b \r\nhello\r\n0\r\n\r\n"},
    {"extension value bad char", "5;a=b/c\r\nhello\r\n0\r\n\r\n"},
    {"unterminated quoted value", "5;a=\"x\r\nhello\r\n0\r\n\r\n"},
    {"control in quoted value", "5;a=\"x\x01\"\r\nhello\r\n0\r\n\r\n"},
    {"garbage after quoted value", "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n"},
    {"bare LF in extension", "5;a=b\nhello\r\n0\r\n\r\n"},
    {"obs-fold in trailer", "0\r\nX: 1\r\n 2\r\n\r\n"},
    {"space before colon in trailer", "0\r\nX : 1\r\n\r\n"},
    {"trailer without colon", "0\r\nX\r\n\r\n"},
    {"control in trailer", "0\r\nX: \x01\r\n\r\n"},
    {"bare LF in trailer", "0\r\nX: 1\n\r\n"},
    {"bare LF ending trailer", "0\r\n\n"},
    {"bare CR ending body", "0\r\n\rX"},
    {"last chunk with bare LF", "0\n\r\n"},
};

static void test_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < TG_ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		size_t n = strlen(c->in);
		struct outcome whole = scan_pieces(c->in, n, NULL, 0);

		CHECK(whole.used == TG_ERROR, "%s: used %zd done %d", c->name, whole.used,
		      whole.done);
		CHECK(whole.err && strcmp(whole.err, "error not sticky") != 0, "%s: %s", c->name,
		      whole.err ? whole.err : "no reason");
		for (size_t k = 0; k <= n; k++) {
			struct outcome o = scan_pieces(c->in, n, &k, 1);
			CHECK(o.used == TG_ERROR && strcmp(o.err, whole.err) == 0,
			      "%s: cut at %zu gave %s", c->name, k, o.err ? o.err : "success");
		}
	}
}

static void test_large_sizes(void **state)
{
	(void)state;
	tg_http_chunked_t c = {0};
	bool done;
	/* the largest size is accepted and counted down as data arrives */
	ssize_t r = tg_http_chunked_scan(&c, "7fffffffffffffff\r\nabc", 21, &done);
	assert_int_equal(r, 21);
	assert_false(done);
	assert_int_equal(c.chunk_left, (uint64_t)INT64_MAX - 3);
	assert_int_equal(c.body_bytes, 3);
}

static void test_limits(void **state)
{
	(void)state;
	size_t n = TG_HTTP_CHUNK_LINE_MAX + 64;
	char *b = malloc(n);
	assert_non_null(b);

	/* an extension line just under and just over the line limit */
	for (int over = 0; over < 2; over++) {
		/* "1;" + name + CRLF: exactly the limit, then one byte more */
		size_t ext = TG_HTTP_CHUNK_LINE_MAX - 2 + (size_t)over;
		size_t len = 0;
		b[len++] = '1';
		b[len++] = ';';
		memset(b + len, 'e', ext - 2);
		len += ext - 2;
		memcpy(b + len, "\r\n", 2);
		len += 2;
		tg_http_chunked_t c = {0};
		bool done;
		const char *p = tg_guard_dup(b, len);
		ssize_t r = tg_http_chunked_scan(&c, p, len, &done);
		tg_guard_free(p, len);
		CHECK(over ? r == TG_ERROR : r == (ssize_t)len, "line of %zu bytes: %zd", len, r);
	}
	free(b);

	/* a trailer section over the limit, fed in small pieces */
	tg_http_chunked_t c = {0};
	bool done;
	ssize_t r = tg_http_chunked_scan(&c, "0\r\n", 3, &done);
	assert_int_equal(r, 3);
	static const char line[] = "X-Trailer-Field: 0123456789012345678901234567890123456789\r\n";
	size_t total = 0;
	while (r != TG_ERROR && total < 2 * TG_HTTP_CHUNK_TRAILER_MAX) {
		r = tg_http_chunked_scan(&c, line, sizeof(line) - 1, &done);
		total += sizeof(line) - 1;
	}
	assert_int_equal(r, TG_ERROR);
	assert_true(total > TG_HTTP_CHUNK_TRAILER_MAX);
	assert_true(total <= TG_HTTP_CHUNK_TRAILER_MAX + sizeof(line));
}

static void test_done_is_final(void **state)
{
	(void)state;
	tg_http_chunked_t c = {0};
	bool done;

	assert_int_equal(tg_http_chunked_scan(&c, "0\r\n\r\nrest", 9, &done), 5);
	assert_true(done);
	assert_int_equal(tg_http_chunked_scan(&c, "more", 4, &done), 0);
	assert_true(done);
	/* an empty call before the end changes nothing */
	tg_http_chunked_t d = {0};
	assert_int_equal(tg_http_chunked_scan(&d, "", 0, &done), 0);
	assert_false(done);
}

/* tg_http_chunked_next_data: one data run per call, framing skipped; the
 * runs are the decoded body whatever the split. */
static void test_next_data_decodes(void **state)
{
	(void)state;
	static const char body[] = "3;ext=1\r\nabc\r\n"
				   "A\r\n0123456789\r\n"
				   "1\r\nZ\r\n"
				   "0\r\nX-T: y\r\n\r\nnext";
	size_t n = sizeof(body) - 1, end = n - 4;

	for (size_t piece = 1; piece <= n; piece++) {
		tg_http_chunked_t c = {0};
		char out[32];
		size_t got = 0, pos = 0, calls = 0;
		bool done = false;
		while (!done && pos < n) {
			size_t lim = TG_MIN(piece, n - pos), off, len;
			ssize_t r =
			    tg_http_chunked_next_data(&c, body + pos, lim, &done, &off, &len);
			assert_true(r >= 0 && (size_t)r <= lim);
			if (len) {
				assert_true(off + len <= (size_t)r);
				memcpy(out + got, body + pos + off, len);
				got += len;
			}
			pos += (size_t)r;
			assert_true(++calls < 200);
		}
		assert_true(done);
		assert_int_equal(pos, end);
		assert_int_equal(got, 14);
		assert_memory_equal(out, "abc0123456789Z", 14);
		assert_int_equal(c.body_bytes, 14);
	}
	tg_http_chunked_t c = {0};
	size_t off, len;
	bool done;
	assert_int_equal(tg_http_chunked_next_data(&c, "2\r\nab\rX", 7, &done, &off, &len), 5);
	assert_int_equal(off, 3);
	assert_int_equal(len, 2);
	assert_int_equal(tg_http_chunked_next_data(&c, "\rX", 2, &done, &off, &len), TG_ERROR);
	assert_string_equal(c.error, "missing CRLF after chunk data");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid_every_split), cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_large_sizes),	      cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_done_is_final),     cmocka_unit_test(test_next_data_decodes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

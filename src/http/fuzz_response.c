/*
 * fuzz_response.c - libFuzzer target for tg_http_parse_response.
 *
 * Input: byte 0 picks the request method, limits and header array size,
 * byte 1 seeds the split points, the rest is the response. Checks that a
 * success is well formed and framed per RFC 9112 6.3, that results are
 * prefix-consistent, and that resumed split feeding (bytes past each prefix
 * poisoned for ASan) ends exactly like one call.
 */
#include "http/http.h"

#include <stdio.h>
#include <stdlib.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#endif
#endif
#ifndef ASAN_POISON_MEMORY_REGION
#define ASAN_POISON_MEMORY_REGION(a, n)	  ((void)(a), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(a, n) ((void)(a), (void)(n))
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXH 32

static void die(const char *what)
{
	fprintf(stderr, "fuzz_response: property violated: %s\n", what);
	abort();
}

static uint32_t next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void same(const char *a, const tg_http_response_t *x, int rx, const char *b,
		 const tg_http_response_t *y, int ry)
{
	if (rx != ry)
		die("different results");
	if (rx == TG_ERROR) {
		if (strcmp(x->error, y->error) != 0)
			die("different errors");
		return;
	}
	if (rx < 0)
		return;
	if (x->num_headers != y->num_headers || x->status != y->status ||
	    x->version_minor != y->version_minor || x->body != y->body ||
	    x->content_length != y->content_length || x->keep_alive != y->keep_alive ||
	    x->upgrade != y->upgrade || x->tunnel != y->tunnel || x->reason.len != y->reason.len ||
	    (x->reason.len && x->reason.ptr - a != y->reason.ptr - b))
		die("fields");
	for (size_t i = 0; i < x->num_headers; i++)
		if (x->headers[i].name.ptr - a != y->headers[i].name.ptr - b ||
		    x->headers[i].name.len != y->headers[i].name.len ||
		    x->headers[i].value.len != y->headers[i].value.len ||
		    (x->headers[i].value.len &&
		     x->headers[i].value.ptr - a != y->headers[i].value.ptr - b) ||
		    x->headers[i].flags != y->headers[i].flags)
			die("header fields");
}

static void well_formed(const char *a, size_t n, int r, const tg_http_response_t *q,
			tg_http_method_t m, size_t maxh)
{
	if (r == TG_ERROR) {
		if (!q->error || !q->error[0])
			die("error without reason");
		return;
	}
	if (r == TG_AGAIN)
		return;
	if (r < 4 || (size_t)r > n || memcmp(a + r - 4, "\r\n\r\n", 4) != 0)
		die("head does not end with CRLF CRLF");
	if (q->status < 100 || q->status > 599 || q->num_headers > maxh || q->error)
		die("status, num_headers or error");
	if (q->reason.len && (q->reason.ptr < a || q->reason.ptr + q->reason.len > a + r))
		die("reason outside the head");
	bool no_body = m == TG_METHOD_HEAD || q->status < 200 || q->status == 204 ||
		       q->status == 304 || (m == TG_METHOD_CONNECT && q->status < 300);
	if (no_body && q->body != TG_BODY_NONE)
		die("body where RFC 9112 6.3 says none");
	if (q->body == TG_BODY_UNTIL_CLOSE && q->keep_alive)
		die("keep-alive with a body until close");
	if (q->tunnel && (q->keep_alive || q->body != TG_BODY_NONE))
		die("tunnel");
	if (q->body == TG_BODY_LENGTH && q->content_length == 0)
		die("zero length body");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const tg_http_method_t methods[4] = {TG_METHOD_GET, TG_METHOD_HEAD,
						    TG_METHOD_CONNECT, TG_METHOD_POST};
	static const tg_http_limits_t limits[2] = {{0, 0}, {200, 50}};
	static const size_t maxhs[2] = {MAXH, 2};

	if (size < 2)
		return 0;
	tg_http_method_t m = methods[data[0] & 3];
	const tg_http_limits_t *lim = &limits[(data[0] >> 2) & 1];
	size_t maxh = maxhs[(data[0] >> 3) & 1];
	uint32_t rnd = 0x85ebca6bu ^ data[1] ^ (uint32_t)size << 8;
	size_t n = size - 2;
	tg_http_header_t h1[MAXH], h2[MAXH];
	tg_http_response_t whole, part, inc;
	char *a = malloc(n ? n : 1);

	if (!a)
		abort();
	if (n)
		memcpy(a, data + 2, n);
	memset(&whole, 0x5a, sizeof(whole));
	whole.headers = h1;
	whole.max_headers = maxh;
	int r = tg_http_parse_response(a, n, &whole, m, lim);
	well_formed(a, n, r, &whole, m, maxh);

	for (int i = 0; i < 6 && n; i++) {
		size_t k = next_rand(&rnd) % n;
		char *p = malloc(k ? k : 1);
		if (!p)
			abort();
		if (k)
			memcpy(p, a, k);
		part.headers = h2;
		part.max_headers = maxh;
		int rk = tg_http_parse_response(p, k, &part, m, lim);
		if (rk != TG_AGAIN)
			same(a, &whole, r, p, &part, rk);
		free(p);
	}

	memset(&inc, 0, sizeof(inc));
	inc.headers = h2;
	inc.max_headers = maxh;
	size_t k = 0;
	int ri;
	for (;;) {
		ASAN_POISON_MEMORY_REGION(a + k, n - k);
		ri = tg_http_parse_response_resume(a, k, &inc, m, lim);
		ASAN_UNPOISON_MEMORY_REGION(a + k, n - k);
		if (ri != TG_AGAIN || k == n)
			break;
		uint32_t x = next_rand(&rnd);
		k = TG_MIN(n, k + ((x & 3) ? 1 + (x >> 8) % 8 : 1 + (x >> 8) % (n + 1)));
	}
	/* the resumed parse re-ran on the same buffer: compare against a
	 * one-shot parse of it (whole's slices point into a as well) */
	same(a, &whole, r, a, &inc, ri);
	free(a);
	return 0;
}

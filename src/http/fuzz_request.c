/*
 * fuzz_request.c - libFuzzer target for tg_http_parse_request.
 *
 * Input: byte 0 picks limits and the header array size, byte 1 seeds the
 * split points, the rest is the request. Checked beyond "no crash":
 *  - a successful result is well formed (slices inside the head, names are
 *    tokens, values trimmed and free of controls, framing consistent);
 *  - prefix consistency: a result other than TG_AGAIN on a random prefix is
 *    the result on the whole input;
 *  - split feeding: the resume API fed growing prefixes of one buffer (the
 *    bytes past each prefix poisoned for ASan) ends exactly like one call.
 * A violated property aborts, so libFuzzer keeps the input as a crash.
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

#define MAXH 64

static void die(const char *what)
{
	fprintf(stderr, "fuzz_request: property violated: %s\n", what);
	abort();
}

static uint32_t next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static bool in_buf(tg_str_t s, const char *b, size_t n)
{
	return s.len == 0 || (s.ptr >= b && s.ptr + s.len <= b + n);
}

/* Slices are equal when their bytes are, and both lie at the same offset in
 * their buffers or both outside them (the static "/" and "*"). */
static bool same_slice(tg_str_t x, const char *a, tg_str_t y, const char *b, size_t n)
{
	if (x.len != y.len || (x.len && memcmp(x.ptr, y.ptr, x.len) != 0))
		return false;
	if (x.len == 0)
		return true;
	bool xi = x.ptr >= a && x.ptr < a + n, yi = y.ptr >= b && y.ptr < b + n;
	return xi == yi && (!xi || x.ptr - a == y.ptr - b);
}

static void same(const char *a, const tg_http_request_t *x, int rx, const char *b,
		 const tg_http_request_t *y, int ry, size_t n)
{
	if (rx != ry)
		die("different results");
	if (rx == TG_ERROR) {
		if (x->status != y->status || strcmp(x->error, y->error) != 0)
			die("different errors");
		return;
	}
	if (rx < 0)
		return;
	if (x->num_headers != y->num_headers)
		die("num_headers");
	for (size_t i = 0; i < x->num_headers; i++) {
		if (!same_slice(x->headers[i].name, a, y->headers[i].name, b, n) ||
		    !same_slice(x->headers[i].value, a, y->headers[i].value, b, n) ||
		    x->headers[i].flags != y->headers[i].flags)
			die("header fields");
	}
	if (!same_slice(x->method, a, y->method, b, n) ||
	    !same_slice(x->target, a, y->target, b, n) || !same_slice(x->path, a, y->path, b, n) ||
	    !same_slice(x->query, a, y->query, b, n) || !same_slice(x->host, a, y->host, b, n) ||
	    !same_slice(x->upgrade_protocol, a, y->upgrade_protocol, b, n))
		die("slices");
	if (x->method_id != y->method_id || x->form != y->form ||
	    x->version_minor != y->version_minor || x->body != y->body ||
	    x->content_length != y->content_length || x->keep_alive != y->keep_alive ||
	    x->expect_continue != y->expect_continue || x->upgrade != y->upgrade)
		die("scalar fields");
}

static const uint8_t tchar_chars[] = "!#$%&'*+-.^_`|~";

static bool is_tchar(char c)
{
	return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
	       (c && memchr(tchar_chars, c, sizeof(tchar_chars) - 1));
}

static void well_formed(const char *a, size_t n, int r, const tg_http_request_t *q, size_t maxh)
{
	if (r == TG_ERROR) {
		if (!q->error || !q->error[0])
			die("error without reason");
		if (q->status != 400 && q->status != 414 && q->status != 431 && q->status != 501 &&
		    q->status != 505)
			die("unexpected status");
		return;
	}
	if (r == TG_AGAIN)
		return;
	size_t head = (size_t)r;
	if (r < 4 || head > n || memcmp(a + head - 4, "\r\n\r\n", 4) != 0)
		die("head does not end with CRLF CRLF");
	if (q->error || q->num_headers > maxh)
		die("error or num_headers");
	if (q->method.len == 0 || !in_buf(q->method, a, head) || !in_buf(q->target, a, head) ||
	    !in_buf(q->query, a, head) || !in_buf(q->host, a, head) ||
	    !in_buf(q->upgrade_protocol, a, head))
		die("slice outside the head");
	for (size_t i = 0; i < q->method.len; i++)
		if (!is_tchar(q->method.ptr[i]))
			die("method not a token");
	for (size_t i = 0; i < q->num_headers; i++) {
		tg_str_t nm = q->headers[i].name, v = q->headers[i].value;
		if (nm.len == 0 || !in_buf(nm, a, head) || !in_buf(v, a, head))
			die("field outside the head");
		for (size_t j = 0; j < nm.len; j++)
			if (!is_tchar(nm.ptr[j]))
				die("field name not a token");
		for (size_t j = 0; j < v.len; j++) {
			uint8_t c = (uint8_t)v.ptr[j];
			if ((c < 0x20 && c != '\t') || c == 0x7f)
				die("control in field value");
		}
		if (v.len && (v.ptr[0] == ' ' || v.ptr[0] == '\t' || v.ptr[v.len - 1] == ' ' ||
			      v.ptr[v.len - 1] == '\t'))
			die("value not trimmed");
	}
	if (q->version_minor != 0 && q->version_minor != 1)
		die("version");
	if (q->body == TG_BODY_LENGTH && (q->content_length == 0 || q->content_length > INT64_MAX))
		die("content length");
	if (q->body == TG_BODY_CHUNKED && q->version_minor != 1)
		die("chunked in HTTP/1.0");
	if (q->body == TG_BODY_UNTIL_CLOSE)
		die("request body until close");
	if (q->upgrade && (q->upgrade_protocol.len == 0 || q->version_minor != 1))
		die("upgrade");
	if (q->form == TG_TARGET_AUTHORITY && q->method_id != TG_METHOD_CONNECT)
		die("authority-form without CONNECT");
	if (q->form == TG_TARGET_ASTERISK && q->method_id != TG_METHOD_OPTIONS)
		die("asterisk-form without OPTIONS");
	size_t hosts = 0;
	for (size_t i = 0; i < q->num_headers; i++)
		hosts += (q->headers[i].flags & TG_HDR_HOST) != 0;
	if (hosts > 1 || (q->version_minor == 1 && hosts == 0))
		die("Host count");
}

static int parse_copy(const uint8_t *msg, size_t n, tg_http_request_t *q, tg_http_header_t *h,
		      size_t maxh, const tg_http_limits_t *lim, char **copy)
{
	char *a = malloc(n ? n : 1);

	if (!a)
		abort();
	if (n)
		memcpy(a, msg, n);
	memset(q, 0xa5, sizeof(*q));
	q->headers = h;
	q->max_headers = maxh;
	*copy = a;
	return tg_http_parse_request(a, n, q, lim);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const tg_http_limits_t limits[4] = {
	    {0, 0},
	    {256, 64},
	    {64, 16},
	    {100, 1000},
	};
	static const size_t maxhs[4] = {MAXH, 8, 1, 0};

	if (size < 2)
		return 0;
	const tg_http_limits_t *lim = &limits[data[0] & 3];
	size_t maxh = maxhs[(data[0] >> 2) & 3];
	uint32_t rnd = 0x9e3779b9u ^ data[1] ^ (uint32_t)size << 8;
	const uint8_t *msg = data + 2;
	size_t n = size - 2;
	tg_http_header_t h1[MAXH], h2[MAXH], h3[MAXH];
	tg_http_request_t whole, part, inc;
	char *a, *p;

	int r = parse_copy(msg, n, &whole, h1, maxh, lim, &a);
	well_formed(a, n, r, &whole, maxh);

	/* prefix consistency on a few random prefixes */
	for (int i = 0; i < 6 && n; i++) {
		size_t k = next_rand(&rnd) % n;
		int rk = parse_copy(msg, k, &part, h2, maxh, lim, &p);
		if (rk != TG_AGAIN)
			same(a, &whole, r, p, &part, rk, n);
		free(p);
	}

	/* split feeding through the resume API on one growing buffer */
	char *b = malloc(n ? n : 1);
	if (!b)
		abort();
	if (n)
		memcpy(b, msg, n);
	memset(&inc, 0, sizeof(inc));
	inc.headers = h3;
	inc.max_headers = maxh;
	size_t k = 0;
	int ri = TG_AGAIN;
	for (;;) {
		ASAN_POISON_MEMORY_REGION(b + k, n - k);
		ri = tg_http_parse_request_resume(b, k, &inc, lim);
		ASAN_UNPOISON_MEMORY_REGION(b + k, n - k);
		if (ri != TG_AGAIN || k == n)
			break;
		/* mostly small steps, sometimes large ones */
		uint32_t x = next_rand(&rnd);
		size_t step = (x & 3) ? 1 + (x >> 8) % 8 : 1 + (x >> 8) % (n + 1);
		k = TG_MIN(n, k + step);
	}
	same(a, &whole, r, b, &inc, ri, n);
	if (ri != TG_AGAIN && inc.priv.base)
		die("resume state kept after a result");
	free(b);

	/* the next pipelined request, for crashes only */
	if (r > 0 && (size_t)r < n) {
		part.headers = h2;
		part.max_headers = maxh;
		int r2 = tg_http_parse_request(a + r, n - (size_t)r, &part, lim);
		well_formed(a + r, n - (size_t)r, r2, &part, maxh);
	}
	free(a);
	return 0;
}

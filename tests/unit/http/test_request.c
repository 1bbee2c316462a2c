/*
 * test_request.c - tg_http_parse_request: every accepted and rejected case of
 * the codec's contract, each input placed right before a guard page; every
 * split point of valid and invalid requests; resumed parsing; pipelining.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "guard.h"
#include "http/http.h"

#define MAXH 64

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

static bool str_is(tg_str_t s, const char *want)
{
	if (!want)
		return s.len == 0;
	return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

/* Parses in (a C string) placed before a guard page. */
static int parse(const char *in, size_t len, tg_http_request_t *req, tg_http_header_t *h,
		 size_t maxh, const tg_http_limits_t *lim)
{
	memset(req, 0xa5, sizeof(*req)); /* the parser must not rely on a zeroed struct */
	req->headers = h;
	req->max_headers = maxh;
	return tg_http_parse_request(in, len, req, lim);
}

/* ---- accepted requests ---- */

struct accept_case {
	const char *name;	    /* what the case shows */
	const char *in;		    /* the input */
	size_t head_len;	    /* expected head length; 0 = all of in */
	tg_http_method_t method;    /* method_id */
	tg_http_target_form_t form; /* target form */
	const char *path;	    /* path, NULL = empty */
	const char *query;	    /* query, NULL = empty */
	const char *host;	    /* host, NULL = empty */
	int minor;		    /* version_minor */
	tg_http_body_t body;	    /* body framing */
	uint64_t cl;		    /* content_length */
	bool keep_alive;	    /* keep_alive */
	bool upgrade;		    /* upgrade */
	bool expect;		    /* expect_continue */
	size_t nh;		    /* num_headers */
};

static const struct accept_case accept_cases[] = {
    {"simple GET", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 0, TG_METHOD_GET,
     TG_TARGET_ORIGIN, "/", NULL, "example.com", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"path and query", "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h:8080\r\n\r\n", 0, TG_METHOD_GET,
     TG_TARGET_ORIGIN, "/a/b", "x=1&y=%20", "h:8080", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"empty query", "GET /p? HTTP/1.1\r\nHost: h\r\n\r\n", 0, TG_METHOD_GET, TG_TARGET_ORIGIN, "/p",
     NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"HTTP/1.0 without Host closes", "GET /x HTTP/1.0\r\n\r\n", 0, TG_METHOD_GET, TG_TARGET_ORIGIN,
     "/x", NULL, NULL, 0, TG_BODY_NONE, 0, false, false, false, 0},
    {"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0, TG_METHOD_GET,
     TG_TARGET_ORIGIN, "/", NULL, NULL, 0, TG_BODY_NONE, 0, true, false, false, 1},
    {"HTTP/1.1 close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 0, TG_METHOD_GET,
     TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_NONE, 0, false, false, false, 2},
    {"close wins over keep-alive",
     "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, CLOSE\r\n\r\n", 0, TG_METHOD_GET,
     TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_NONE, 0, false, false, false, 2},
    {"Content-Length body", "POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", 48,
     TG_METHOD_POST, TG_TARGET_ORIGIN, "/f", NULL, "h", 1, TG_BODY_LENGTH, 5, true, false, false,
     2},
    {"Content-Length with OWS", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \t 12 \t\r\n\r\n", 0,
     TG_METHOD_POST, TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_LENGTH, 12, true, false, false,
     2},
    {"Content-Length leading zeros", "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n", 0,
     TG_METHOD_PUT, TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_LENGTH, 7, true, false, false, 2},
    {"Content-Length 0 is no body", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 0,
     TG_METHOD_POST, TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 2},
    {"largest Content-Length",
     "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n", 0, TG_METHOD_POST,
     TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_LENGTH, INT64_MAX, true, false, false, 2},
    {"chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
     TG_METHOD_POST, TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_CHUNKED, 0, true, false, false,
     2},
    {"chunked any case, trailing OWS",
     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ChUnKeD \r\n\r\n", 0, TG_METHOD_POST,
     TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_CHUNKED, 0, true, false, false, 2},
    {"absolute-form routes on its authority",
     "GET http://example.com:8080/a?b=c HTTP/1.1\r\nHost: other\r\n\r\n", 0, TG_METHOD_GET,
     TG_TARGET_ABSOLUTE, "/a", "b=c", "example.com:8080", 1, TG_BODY_NONE, 0, true, false, false,
     1},
    {"absolute-form without path", "GET HTTPS://Example.com HTTP/1.1\r\nHost: x\r\n\r\n", 0,
     TG_METHOD_GET, TG_TARGET_ABSOLUTE, "/", NULL, "Example.com", 1, TG_BODY_NONE, 0, true, false,
     false, 1},
    {"absolute-form query without path", "GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     TG_METHOD_GET, TG_TARGET_ABSOLUTE, "/", "q", "h", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"absolute-form OPTIONS without path", "OPTIONS http://h:81 HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     TG_METHOD_OPTIONS, TG_TARGET_ABSOLUTE, "*", NULL, "h:81", 1, TG_BODY_NONE, 0, true, false,
     false, 1},
    {"absolute-form IPv6", "GET http://[2001:db8::1]:80/ HTTP/1.1\r\nHost: x\r\n\r\n", 0,
     TG_METHOD_GET, TG_TARGET_ABSOLUTE, "/", NULL, "[2001:db8::1]:80", 1, TG_BODY_NONE, 0, true,
     false, false, 1},
    {"CONNECT authority-form", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
     0, TG_METHOD_CONNECT, TG_TARGET_AUTHORITY, NULL, NULL, "example.com:443", 1, TG_BODY_NONE, 0,
     true, false, false, 1},
    {"CONNECT IPv6", "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n", 0,
     TG_METHOD_CONNECT, TG_TARGET_AUTHORITY, NULL, NULL, "[::1]:8443", 1, TG_BODY_NONE, 0, true,
     false, false, 1},
    {"OPTIONS asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0, TG_METHOD_OPTIONS,
     TG_TARGET_ASTERISK, "*", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"Expect: 100-continue",
     "PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", 0,
     TG_METHOD_PUT, TG_TARGET_ORIGIN, "/u", NULL, "h", 1, TG_BODY_LENGTH, 3, true, false, true, 3},
    {"Expect ignored in HTTP/1.0",
     "PUT /u HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", 0, TG_METHOD_PUT,
     TG_TARGET_ORIGIN, "/u", NULL, NULL, 0, TG_BODY_LENGTH, 3, false, false, false, 2},
    {"other expectation ignored", "GET / HTTP/1.1\r\nHost: h\r\nExpect: foo\r\n\r\n", 0,
     TG_METHOD_GET, TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 2},
    {"WebSocket upgrade",
     "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
     0, TG_METHOD_GET, TG_TARGET_ORIGIN, "/chat", NULL, "h", 1, TG_BODY_NONE, 0, true, true, false,
     5},
    {"upgrade among Connection options",
     "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
     0, TG_METHOD_GET, TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_NONE, 0, true, true, false, 3},
    {"Upgrade without Connection: upgrade", "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n", 0,
     TG_METHOD_GET, TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 2},
    {"Upgrade ignored in HTTP/1.0",
     "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", 0, TG_METHOD_GET,
     TG_TARGET_ORIGIN, "/", NULL, NULL, 0, TG_BODY_NONE, 0, false, false, false, 2},
    {"leading empty lines", "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 0, TG_METHOD_GET,
     TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"OWS around values", "GET / HTTP/1.1\r\nHost:  \t h \t \r\nX-E:\r\nX-F: \r\n\r\n", 0,
     TG_METHOD_GET, TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 3},
    {"obs-text in value and UTF-8 in path",
     "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\nX-U: na\xefve \x80\xff\r\n\r\n", 0, TG_METHOD_GET,
     TG_TARGET_ORIGIN, "/caf\xc3\xa9", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 2},
    {"unknown method", "PURGE /c HTTP/1.1\r\nHost: h\r\n\r\n", 0, TG_METHOD_OTHER, TG_TARGET_ORIGIN,
     "/c", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"methods are case-sensitive", "get / HTTP/1.1\r\nHost: h\r\n\r\n", 0, TG_METHOD_OTHER,
     TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 0, TG_METHOD_GET, TG_TARGET_ORIGIN, "/", NULL,
     NULL, 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"IPv6 Host", "GET / HTTP/1.1\r\nHost: [fe80::1]:8080\r\n\r\n", 0, TG_METHOD_GET,
     TG_TARGET_ORIGIN, "/", NULL, "[fe80::1]:8080", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"pct-encoded Host", "GET / HTTP/1.1\r\nHost: a%2Db.example\r\n\r\n", 0, TG_METHOD_GET,
     TG_TARGET_ORIGIN, "/", NULL, "a%2Db.example", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"DELETE", "DELETE /r/1 HTTP/1.1\r\nhost: h\r\n\r\n", 0, TG_METHOD_DELETE, TG_TARGET_ORIGIN,
     "/r/1", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"PATCH", "PATCH /r HTTP/1.1\r\nHOST: h\r\n\r\n", 0, TG_METHOD_PATCH, TG_TARGET_ORIGIN, "/r",
     NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"HEAD and TRACE ids", "HEAD /r HTTP/1.1\r\nHost: h\r\n\r\n", 0, TG_METHOD_HEAD,
     TG_TARGET_ORIGIN, "/r", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"TRACE", "TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", 0, TG_METHOD_TRACE, TG_TARGET_ORIGIN, "/",
     NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 1},
    {"empty Connection elements", "GET / HTTP/1.1\r\nHost: h\r\nConnection: ,, close ,\r\n\r\n", 0,
     TG_METHOD_GET, TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_NONE, 0, false, false, false, 2},
    {"next request not consumed", "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\n", 27,
     TG_METHOD_GET, TG_TARGET_ORIGIN, "/", NULL, "h", 1, TG_BODY_NONE, 0, true, false, false, 1},
};

static void check_accept(const struct accept_case *c, const char *p, size_t n, int r,
			 const tg_http_request_t *req)
{
	size_t want = c->head_len ? c->head_len : n;

	CHECK(r == (int)want, "%s: returned %d (%s, %d), want %zu", c->name, r,
	      req->error ? req->error : "-", req->status, want);
	CHECK(req->method_id == c->method, "%s: method_id %d", c->name, req->method_id);
	CHECK(req->form == c->form, "%s: form %d", c->name, req->form);
	CHECK(str_is(req->path, c->path), "%s: path '%.*s'", c->name, (int)req->path.len,
	      req->path.ptr);
	CHECK(str_is(req->query, c->query), "%s: query '%.*s'", c->name, (int)req->query.len,
	      req->query.ptr);
	CHECK(str_is(req->host, c->host), "%s: host '%.*s'", c->name, (int)req->host.len,
	      req->host.ptr);
	CHECK(req->version_minor == c->minor, "%s: minor %d", c->name, req->version_minor);
	CHECK(req->body == c->body, "%s: body %d", c->name, req->body);
	CHECK(req->content_length == c->cl, "%s: content_length %llu", c->name,
	      (unsigned long long)req->content_length);
	CHECK(req->keep_alive == c->keep_alive, "%s: keep_alive %d", c->name, req->keep_alive);
	CHECK(req->upgrade == c->upgrade, "%s: upgrade %d", c->name, req->upgrade);
	CHECK(req->expect_continue == c->expect, "%s: expect %d", c->name, req->expect_continue);
	CHECK(req->num_headers == c->nh, "%s: num_headers %zu", c->name, req->num_headers);
	CHECK(req->error == NULL, "%s: error set", c->name);
	/* every slice lies inside the head (the static "/" and "*" excepted) */
	CHECK(req->method.ptr >= p && req->method.ptr + req->method.len <= p + want, "%s", c->name);
	CHECK(req->target.ptr > p && req->target.ptr + req->target.len <= p + want, "%s", c->name);
	for (size_t i = 0; i < req->num_headers; i++) {
		const tg_http_header_t *h = &req->headers[i];
		CHECK(h->name.ptr >= p && h->name.ptr + h->name.len <= p + want, "%s", c->name);
		CHECK(h->value.ptr >= p && h->value.ptr + h->value.len <= p + want, "%s", c->name);
		CHECK(h->value.len == 0 || (h->value.ptr[0] != ' ' && h->value.ptr[0] != '\t' &&
					    h->value.ptr[h->value.len - 1] != ' ' &&
					    h->value.ptr[h->value.len - 1] != '\t'),
		      "%s: value not trimmed", c->name);
	}
}

static void test_accept(void **state)
{
	(void)state;
	for (size_t i = 0; i < TG_ARRAY_SIZE(accept_cases); i++) {
		const struct accept_case *c = &accept_cases[i];
		tg_http_header_t h[MAXH];
		tg_http_request_t req;
		size_t n;
		const char *p = tg_guard_str(c->in, &n);
		int r = parse(p, n, &req, h, MAXH, NULL);
		check_accept(c, p, n, r, &req);
		tg_guard_free(p, n);
	}
}

/* Compares two parses of the same bytes held in two buffers (a and b). */
static void same_result(const char *name, const char *a, const tg_http_request_t *ra, int r1,
			const char *b, const tg_http_request_t *rb, int r2)
{
#define SAME_SLICE(f)                                                                              \
	CHECK(ra->f.len == rb->f.len &&                                                            \
		  (ra->f.len == 0 || memcmp(ra->f.ptr, rb->f.ptr, ra->f.len) == 0) &&              \
		  ((ra->f.ptr >= a && ra->f.ptr <= a + (r1 > 0 ? r1 : 0)) ==                       \
		   (rb->f.ptr >= b && rb->f.ptr <= b + (r2 > 0 ? r2 : 0))),                        \
	      "%s: field " #f " differs", name)

	CHECK(r1 == r2, "%s: %d vs %d (%s / %s)", name, r1, r2, ra->error ? ra->error : "-",
	      rb->error ? rb->error : "-");
	if (r1 == TG_ERROR) {
		CHECK(ra->status == rb->status && strcmp(ra->error, rb->error) == 0,
		      "%s: errors differ: %d %s / %d %s", name, ra->status, ra->error, rb->status,
		      rb->error);
		return;
	}
	if (r1 < 0)
		return;
	CHECK(ra->num_headers == rb->num_headers, "%s", name);
	for (size_t i = 0; i < ra->num_headers; i++) {
		CHECK(ra->headers[i].name.ptr - a == rb->headers[i].name.ptr - b, "%s", name);
		CHECK(ra->headers[i].value.ptr - a == rb->headers[i].value.ptr - b, "%s", name);
		CHECK(ra->headers[i].name.len == rb->headers[i].name.len, "%s", name);
		CHECK(ra->headers[i].value.len == rb->headers[i].value.len, "%s", name);
		CHECK(ra->headers[i].flags == rb->headers[i].flags, "%s: flags of %zu", name, i);
	}
	SAME_SLICE(method);
	SAME_SLICE(target);
	SAME_SLICE(path);
	SAME_SLICE(query);
	SAME_SLICE(host);
	SAME_SLICE(upgrade_protocol);
	CHECK(ra->method_id == rb->method_id && ra->form == rb->form &&
		  ra->version_minor == rb->version_minor && ra->body == rb->body &&
		  ra->content_length == rb->content_length && ra->keep_alive == rb->keep_alive &&
		  ra->expect_continue == rb->expect_continue && ra->upgrade == rb->upgrade,
	      "%s: scalar fields differ", name);
#undef SAME_SLICE
}

/* Every proper prefix of a valid head is TG_AGAIN; feeding it byte by byte
 * through the resume API ends exactly like a one-shot parse. */
static void test_accept_every_split(void **state)
{
	(void)state;
	for (size_t i = 0; i < TG_ARRAY_SIZE(accept_cases); i++) {
		const struct accept_case *c = &accept_cases[i];
		size_t n = strlen(c->in), head = c->head_len ? c->head_len : n;
		tg_http_header_t h1[MAXH], h2[MAXH];
		tg_http_request_t whole, inc;
		const char *a = tg_guard_dup(c->in, n);
		int r1 = parse(a, n, &whole, h1, MAXH, NULL);

		for (size_t k = 0; k < head; k++) {
			const char *p = tg_guard_dup(c->in, k);
			tg_http_request_t req;
			tg_http_header_t h[MAXH];
			int r = parse(p, k, &req, h, MAXH, NULL);
			CHECK(r == TG_AGAIN, "%s: prefix %zu returned %d (%s)", c->name, k, r,
			      req.error ? req.error : "-");
			tg_guard_free(p, k);
		}
		/* resumed: one buffer growing by one byte per call */
		char *b = malloc(n + 1);
		assert_non_null(b);
		memcpy(b, c->in, n);
		memset(&inc, 0, sizeof(inc));
		inc.headers = h2;
		inc.max_headers = MAXH;
		int r2 = TG_AGAIN;
		for (size_t k = 0; k <= n && r2 == TG_AGAIN; k++)
			r2 = tg_http_parse_request_resume(b, k, &inc, NULL);
		same_result(c->name, a, &whole, r1, b, &inc, r2);
		CHECK(inc.priv.base == NULL, "%s: resume state kept after a result", c->name);
		free(b);
		tg_guard_free(a, n);
	}
}

/* ---- rejected requests ---- */

struct reject_case {
	const char *name; /* what is wrong */
	const char *in;	  /* the input */
	int status;	  /* expected status */
	size_t len;	  /* input length (inputs may hold NUL) */
	const char *why;  /* a word the reason must contain, or NULL */
};
#define R(name, lit, status)                                                                       \
	{                                                                                          \
		name, lit, status, sizeof(lit) - 1, NULL                                           \
	}
#define RW(name, lit, status, why)                                                                 \
	{                                                                                          \
		name, lit, status, sizeof(lit) - 1, why                                            \
	}

#define H11 " HTTP/1.1\r\nHost: h\r\n"
static const struct reject_case reject_cases[] = {
    /* field syntax */
    RW("obs-fold", "GET /" H11 "X-A: a\r\n b\r\n\r\n", 400, "obs-fold"),
    RW("obs-fold with tab", "GET /" H11 "X-A: a\r\n\tb\r\n\r\n", 400, "obs-fold"),
    R("whitespace before the first field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),
    RW("NUL in value", "GET /" H11 "X-A: a\0b\r\n\r\n", 400, "NUL"),
    RW("bare CR in value", "GET /" H11 "X-A: a\rb\r\n\r\n", 400, "bare CR"),
    R("CR CR LF", "GET /" H11 "X-A: a\r\r\n\r\n", 400),
    RW("bare LF between fields", "GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n", 400, "bare LF"),
    RW("bare LF ending the head", "GET /" H11 "\n", 400, "bare LF"),
    RW("bare LF after the request line", "GET / HTTP/1.1\nHost: h\r\n\r\n", 400, "bare LF"),
    R("bare CR ending the head", "GET /" H11 "\rX", 400),
    R("leading bare LF", "\nGET /" H11 "\r\n", 400),
    R("control character in value", "GET /" H11 "X-A: a\x01\r\n\r\n", 400),
    R("DEL in value", "GET /" H11 "X-A: a\x7f\r\n\r\n", 400),
    R("vertical tab in value", "GET /" H11 "X-A: a\x0b\r\n\r\n", 400),
    RW("space before colon", "GET /" H11 "X-A : b\r\n\r\n", 400, "colon"),
    R("tab before colon", "GET /" H11 "X-A\t: b\r\n\r\n", 400),
    R("space before colon of Content-Length", "POST /" H11 "Content-Length : 5\r\n\r\n", 400),
    R("invalid character in name", "GET /" H11 "X(A): b\r\n\r\n", 400),
    R("control character in name", "GET /" H11 "X\x01: b\r\n\r\n", 400),
    R("non-ASCII name", "GET /" H11 "X\xc3\xa9: b\r\n\r\n", 400),
    R("empty name", "GET /" H11 ": b\r\n\r\n", 400),
    R("no colon", "GET /" H11 "X-A\r\n\r\n", 400),
    /* request line */
    R("invalid method character", "GE(T /" H11 "\r\n", 400),
    R("method with slash", "GET/ /" H11 "\r\n", 400),
    R("empty method", " /" H11 "\r\n", 400),
    R("two spaces after method", "GET  /" H11 "\r\n", 400),
    R("two spaces before version", "GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    R("tab as separator", "GET\t/" H11 "\r\n", 400),
    R("space inside target", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    R("control character in target", "GET /a\x01" H11 "\r\n", 400),
    R("DEL in target", "GET /a\x7f" H11 "\r\n", 400),
    R("NUL in target", "GET /a\0b" H11 "\r\n", 400),
    R("NUL in name", "GET /" H11 "X\0: b\r\n\r\n", 400),
    R("NUL in method", "G\0T /" H11 "\r\n", 400),
    RW("HTTP/0.9", "GET /\r\n\r\n", 400, "HTTP/0.9"),
    R("trailing space after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400),
    R("HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505),
    R("HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    R("HTTP/0.9 spelled out", "GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505),
    R("lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", 400),
    R("HTTP/1.10", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400),
    R("HTTP/1", "GET / HTTP/1\r\nHost: h\r\n\r\n", 400),
    R("HTTP/11", "GET / HTTP/11\r\nHost: h\r\n\r\n", 400),
    R("relative target", "GET foo" H11 "\r\n", 400),
    R("asterisk for GET", "GET *" H11 "\r\n", 400),
    R("CONNECT with origin-form", "CONNECT /" H11 "\r\n", 400),
    R("CONNECT without port", "CONNECT example.com" H11 "\r\n", 400),
    R("CONNECT with userinfo", "CONNECT u@h:443" H11 "\r\n", 400),
    R("absolute-form with userinfo", "GET http://user:pw@h/" H11 "\r\n", 400),
    R("absolute-form empty host", "GET http:///p" H11 "\r\n", 400),
    R("absolute-form other scheme", "GET ftp://h/" H11 "\r\n", 400),
    R("absolute-form bad port", "GET http://h:8x/" H11 "\r\n", 400),
    /* Host */
    RW("missing Host in HTTP/1.1", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400, "missing Host"),
    R("two Host fields", "GET /" H11 "Host: h\r\n\r\n", 400),
    R("two different Host fields", "GET /" H11 "Host: evil\r\n\r\n", 400),
    R("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 400),
    R("Host with path", "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", 400),
    R("Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    R("Host with bad port", "GET / HTTP/1.1\r\nHost: h:http\r\n\r\n", 400),
    R("Host with empty port", "GET / HTTP/1.1\r\nHost: h:\r\n\r\n", 400),
    R("Host with bad pct-encoding", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", 400),
    /* Content-Length */
    R("duplicate Content-Length", "POST /" H11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
      400),
    R("conflicting Content-Length", "POST /" H11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
      400),
    R("Content-Length list", "POST /" H11 "Content-Length: 5, 5\r\n\r\n", 400),
    R("Content-Length plus sign", "POST /" H11 "Content-Length: +5\r\n\r\n", 400),
    R("Content-Length negative", "POST /" H11 "Content-Length: -1\r\n\r\n", 400),
    R("Content-Length hex", "POST /" H11 "Content-Length: 0x5\r\n\r\n", 400),
    R("Content-Length inner space", "POST /" H11 "Content-Length: 1 0\r\n\r\n", 400),
    R("Content-Length empty", "POST /" H11 "Content-Length:\r\n\r\n", 400),
    R("Content-Length decimal point", "POST /" H11 "Content-Length: 5.0\r\n\r\n", 400),
    R("Content-Length 2^63", "POST /" H11 "Content-Length: 9223372036854775808\r\n\r\n", 400),
    R("Content-Length overflow", "POST /" H11 "Content-Length: 99999999999999999999\r\n\r\n", 400),
    /* Transfer-Encoding */
    RW("TE and CL", "POST /" H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
       "both"),
    R("CL and TE", "POST /" H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    R("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    R("final coding not chunked", "POST /" H11 "Transfer-Encoding: gzip\r\n\r\n", 400),
    R("chunked then gzip", "POST /" H11 "Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    RW("chunked twice", "POST /" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n", 400, "twice"),
    R("chunked twice over two lines",
      "POST /" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    R("xchunked", "POST /" H11 "Transfer-Encoding: xchunked\r\n\r\n", 400),
    R("chunked with parameter", "POST /" H11 "Transfer-Encoding: chunked;q=1\r\n\r\n", 400),
    R("chunked with garbage", "POST /" H11 "Transfer-Encoding: chunked x\r\n\r\n", 400),
    R("chunked with a control", "POST /" H11 "Transfer-Encoding: chunked\x0b\r\n\r\n", 400),
    R("chunked in quotes", "POST /" H11 "Transfer-Encoding: \"chunked\"\r\n\r\n", 400),
    R("trailing comma", "POST /" H11 "Transfer-Encoding: chunked,\r\n\r\n", 400),
    R("leading comma", "POST /" H11 "Transfer-Encoding: , chunked\r\n\r\n", 400),
    R("empty Transfer-Encoding", "POST /" H11 "Transfer-Encoding:\r\n\r\n", 400),
    R("identity", "POST /" H11 "Transfer-Encoding: identity\r\n\r\n", 400),
    R("identity, chunked", "POST /" H11 "Transfer-Encoding: identity, chunked\r\n\r\n", 501),
    R("gzip, chunked", "POST /" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    R("gzip with parameter, chunked",
      "POST /" H11 "Transfer-Encoding: gzip;level=\"9\", chunked\r\n\r\n", 501),
    /* Connection */
    R("invalid Connection option", "GET /" H11 "Connection: close;x\r\n\r\n", 400),
    R("too many Connection options",
      "GET /" H11 "Connection: a0,a1,a2,a3,a4,a5,a6,a7,a8,a9,b0,b1,b2,b3,b4,b5,b6,b7,b8,b9,"
      "c0,c1,c2,c3,c4,c5,c6,c7,c8,c9,d0,d1,d2\r\n\r\n",
      400),
};

static void test_reject(void **state)
{
	(void)state;
	for (size_t i = 0; i < TG_ARRAY_SIZE(reject_cases); i++) {
		const struct reject_case *c = &reject_cases[i];
		size_t n = c->len;
		tg_http_header_t h[MAXH];
		tg_http_request_t req;
		const char *p = tg_guard_dup(c->in, n);
		int r = parse(p, n, &req, h, MAXH, NULL);
		CHECK(r == TG_ERROR, "%s: returned %d", c->name, r);
		CHECK(req.status == c->status, "%s: status %d (%s), want %d", c->name, req.status,
		      req.error, c->status);
		CHECK(req.error && req.error[0], "%s: no reason", c->name);
		CHECK(!c->why || strstr(req.error, c->why), "%s: reason '%s' lacks '%s'", c->name,
		      req.error, c->why);

		/* Prefix consistency: every prefix is TG_AGAIN or this same error. */
		bool final = false;
		for (size_t k = 0; k <= n; k++) {
			const char *q = tg_guard_dup(c->in, k);
			tg_http_request_t rq;
			int rk = parse(q, k, &rq, h, MAXH, NULL);
			if (final)
				CHECK(rk == TG_ERROR && rq.status == req.status &&
					  strcmp(rq.error, req.error) == 0,
				      "%s: prefix %zu changed the result", c->name, k);
			else if (rk != TG_AGAIN)
				CHECK(rk == TG_ERROR && rq.status == req.status &&
					  strcmp(rq.error, req.error) == 0,
				      "%s: prefix %zu gave %d %s", c->name, k, rk,
				      rq.error ? rq.error : "-");
			final = final || rk != TG_AGAIN;
			tg_guard_free(q, k);
		}
		tg_guard_free(p, n);
	}
}

/* ---- limits ---- */

/* Builds "GET /<a*pathlen> HTTP/1.1\r\nHost: h\r\n" + nfields "X-N: <vlen>" + CRLF. */
static char *build(size_t pathlen, size_t nfields, size_t vlen, size_t *len)
{
	size_t cap = pathlen + nfields * (vlen + 16) + 64, n = 0;
	char *b = malloc(cap);

	assert_non_null(b);
	n += (size_t)snprintf(b + n, cap - n, "GET /");
	memset(b + n, 'a', pathlen);
	n += pathlen;
	n += (size_t)snprintf(b + n, cap - n, " HTTP/1.1\r\nHost: h\r\n");
	for (size_t i = 0; i < nfields; i++) {
		n += (size_t)snprintf(b + n, cap - n, "X-%04zu: ", i);
		memset(b + n, 'v', vlen);
		n += vlen;
		b[n++] = '\r';
		b[n++] = '\n';
	}
	b[n++] = '\r';
	b[n++] = '\n';
	*len = n;
	return b;
}

/* Parses the first feed bytes (0 = all) of build(...) before a guard page;
 * *n receives the built length. */
static int try_built(size_t pathlen, size_t nfields, size_t vlen, size_t feed, size_t maxh,
		     const tg_http_limits_t *lim, tg_http_request_t *req, size_t *n)
{
	static tg_http_header_t h[256];
	char *b = build(pathlen, nfields, vlen, n);
	size_t len = feed ? feed : *n;
	const char *p = tg_guard_dup(b, len);
	int r = parse(p, len, req, h, maxh, lim);

	tg_guard_free(p, len);
	free(b);
	return r;
}

static void test_limits(void **state)
{
	(void)state;
	tg_http_request_t req;
	size_t n;
	int r;
	/* the request line "GET /" + path + " HTTP/1.1" is 14 + pathlen bytes */
	const tg_http_limits_t lim = {.max_head_bytes = 4096, .max_line_bytes = 200};

	r = try_built(186, 0, 0, 0, 8, &lim, &req, &n);
	assert_int_equal(r, (int)n);
	r = try_built(187, 0, 0, 0, 8, &lim, &req, &n);
	assert_int_equal(r, TG_ERROR);
	assert_int_equal(req.status, 414);
	/* a request line without its end yet: TG_AGAIN, then 414 once past the limit */
	assert_int_equal(try_built(300, 0, 0, 201, 8, &lim, &req, &n), TG_AGAIN);
	assert_int_equal(try_built(300, 0, 0, 202, 8, &lim, &req, &n), TG_ERROR);
	assert_int_equal(req.status, 414);
	/* one field line "X-0000: " + value is 8 + vlen bytes */
	r = try_built(1, 1, 192, 0, 8, &lim, &req, &n);
	assert_int_equal(r, (int)n);
	r = try_built(1, 1, 193, 0, 8, &lim, &req, &n);
	assert_int_equal(r, TG_ERROR);
	assert_int_equal(req.status, 431);
	/* the whole head, exactly at and one byte over the limit */
	char *b = build(1, 40, 90, &n);
	free(b);
	tg_http_limits_t head = {.max_head_bytes = (uint32_t)n, .max_line_bytes = 0};
	r = try_built(1, 40, 90, 0, 64, &head, &req, &n);
	assert_int_equal(r, (int)n);
	head.max_head_bytes = (uint32_t)n - 1;
	r = try_built(1, 40, 90, 0, 64, &head, &req, &n);
	assert_int_equal(r, TG_ERROR);
	assert_int_equal(req.status, 431);
	/* default limits: 8192 per line, 32768 per head */
	r = try_built(1, 1, 8184, 0, 8, NULL, &req, &n);
	assert_int_equal(r, (int)n);
	r = try_built(1, 1, 8185, 0, 8, NULL, &req, &n);
	assert_int_equal(r, TG_ERROR);
	assert_int_equal(req.status, 431);
	r = try_built(8178, 0, 0, 0, 8, NULL, &req, &n);
	assert_int_equal(r, (int)n);
	r = try_built(8179, 0, 0, 0, 8, NULL, &req, &n);
	assert_int_equal(r, TG_ERROR);
	assert_int_equal(req.status, 414);
	r = try_built(1, 5, 8000, 0, 8, NULL, &req, &n);
	assert_int_equal(r, TG_ERROR);
	assert_int_equal(req.status, 431);
	/* number of fields: Host + 7 fit in 8, one more does not */
	r = try_built(1, 7, 3, 0, 8, NULL, &req, &n);
	assert_int_equal(r, (int)n);
	assert_int_equal(req.num_headers, 8);
	r = try_built(1, 8, 3, 0, 8, NULL, &req, &n);
	assert_int_equal(r, TG_ERROR);
	assert_int_equal(req.status, 431);
	/* no header array at all */
	r = try_built(1, 0, 0, 0, 0, NULL, &req, &n);
	assert_int_equal(r, TG_ERROR);
	assert_int_equal(req.status, 431);
}

/* ---- header flags ---- */

static void test_flags(void **state)
{
	(void)state;
	static const char in[] = "GET / HTTP/1.1\r\n"
				 "Host: h\r\n"
				 "Connection: close, X-Secret, host, content-length\r\n"
				 "Keep-Alive: timeout=5\r\n"
				 "Proxy-Connection: keep-alive\r\n"
				 "TE: trailers\r\n"
				 "Trailer: X-T\r\n"
				 "Upgrade: websocket\r\n"
				 "X-Secret: 1\r\n"
				 "x-secret: 2\r\n"
				 "X-Forwarded-For: 1.2.3.4\r\n"
				 "X-Forwarded-Proto: https\r\n"
				 "X-Forwarded-Host: a\r\n"
				 "X-Forwarded-Port: 443\r\n"
				 "X-Real-IP: 1.2.3.4\r\n"
				 "Forwarded: for=1.2.3.4\r\n"
				 "X-Request-ID: abc\r\n"
				 "Content-Length: 1\r\n"
				 "Accept: */*\r\n"
				 "\r\n";
	static const uint32_t want[] = {
	    TG_HDR_HOST,
	    TG_HDR_HOP,
	    TG_HDR_HOP,
	    TG_HDR_HOP,
	    TG_HDR_HOP,
	    TG_HDR_HOP,
	    TG_HDR_HOP,
	    TG_HDR_HOP,
	    TG_HDR_HOP,
	    TG_HDR_XFWD,
	    TG_HDR_XFWD,
	    TG_HDR_XFWD,
	    TG_HDR_XFWD,
	    TG_HDR_XFWD,
	    TG_HDR_XFWD,
	    TG_HDR_REQUEST_ID,
	    TG_HDR_CONTENT_LENGTH,
	    0,
	};
	tg_http_header_t h[MAXH];
	tg_http_request_t req;
	size_t n;
	const char *p = tg_guard_str(in, &n);

	assert_int_equal(parse(p, n, &req, h, MAXH, NULL), (int)n);
	assert_int_equal(req.num_headers, TG_ARRAY_SIZE(want));
	for (size_t i = 0; i < req.num_headers; i++)
		CHECK(h[i].flags == want[i], "field %zu (%.*s): flags %#x, want %#x", i,
		      (int)h[i].name.len, h[i].name.ptr, h[i].flags, want[i]);
	assert_false(req.keep_alive);
	assert_false(req.upgrade); /* Connection does not list upgrade */
	tg_guard_free(p, n);
}

/* ---- pipelining ---- */

static void test_pipelined(void **state)
{
	(void)state;
	static const char in[] = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
				 "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody"
				 "\r\n" /* a stray CRLF between requests is allowed */
				 "POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "4;x=y\r\nwiki\r\n0\r\nT: v\r\n\r\n"
				 "GET /4 HTTP/1.0\r\n\r\n";
	static const char *paths[] = {"/1", "/2", "/3", "/4"};
	tg_http_header_t h[MAXH];
	tg_http_request_t req;
	size_t n, off = 0;
	const char *p = tg_guard_str(in, &n);

	for (size_t i = 0; i < 4; i++) {
		int r = parse(p + off, n - off, &req, h, MAXH, NULL);
		CHECK(r > 0, "request %zu: %d %s", i, r, req.error ? req.error : "-");
		CHECK(str_is(req.path, paths[i]), "request %zu path", i);
		off += (size_t)r;
		if (req.body == TG_BODY_LENGTH) {
			off += req.content_length;
		} else if (req.body == TG_BODY_CHUNKED) {
			tg_http_chunked_t ch = {0};
			bool done;
			ssize_t used = tg_http_chunked_scan(&ch, p + off, n - off, &done);
			assert_true(done);
			assert_int_equal(ch.body_bytes, 4);
			off += (size_t)used;
		}
	}
	assert_int_equal(off, n);
	assert_int_equal(parse(p + off, 0, &req, h, MAXH, NULL), TG_AGAIN);
	tg_guard_free(p, n);
}

/* ---- resume API details ---- */

static void test_resume(void **state)
{
	(void)state;
	static const char in[] = "POST /r HTTP/1.1\r\nHost: h\r\nConnection: x-a\r\n"
				 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
				 "X-A: 1\r\n\r\n";
	tg_http_header_t h[MAXH];
	tg_http_request_t req;
	size_t n = strlen(in);
	char *b = malloc(n);

	assert_non_null(b);
	memcpy(b, in, n);
	/* state spanning lines: the TE of two lines decides 501 */
	memset(&req, 0, sizeof(req));
	req.headers = h;
	req.max_headers = MAXH;
	assert_int_equal(tg_http_parse_request_resume(b, 60, &req, NULL), TG_AGAIN);
	assert_int_equal(tg_http_parse_request_resume(b, 90, &req, NULL), TG_AGAIN);
	assert_int_equal(tg_http_parse_request_resume(b, n, &req, NULL), TG_ERROR);
	assert_int_equal(req.status, 501);

	/* a moved buffer restarts from the beginning and gives the same answer */
	memset(&req, 0, sizeof(req));
	req.headers = h;
	req.max_headers = MAXH;
	assert_int_equal(tg_http_parse_request_resume(b, 60, &req, NULL), TG_AGAIN);
	char *moved = malloc(n);
	assert_non_null(moved);
	memcpy(moved, in, n);
	free(b);
	assert_int_equal(tg_http_parse_request_resume(moved, n, &req, NULL), TG_ERROR);
	assert_int_equal(req.status, 501);
	/* after a result the same struct parses a new message from scratch */
	static const char ok[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
	memcpy(moved, ok, sizeof(ok) - 1);
	assert_int_equal(tg_http_parse_request_resume(moved, sizeof(ok) - 1, &req, NULL),
			 (int)sizeof(ok) - 1);
	assert_int_equal(req.num_headers, 1);
	free(moved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accept), cmocka_unit_test(test_accept_every_split),
	    cmocka_unit_test(test_reject), cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_flags),  cmocka_unit_test(test_pipelined),
	    cmocka_unit_test(test_resume),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

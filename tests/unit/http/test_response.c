/*
 * test_response.c - tg_http_parse_response: tolerated server quirks, body
 * framing by RFC 9112 6.3, and the CL/TE ambiguities still refused; inputs
 * placed before a guard page, every split point checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "guard.h"
#include "http/http.h"

#define MAXH 32

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

static int parse(const char *p, size_t n, tg_http_method_t m, tg_http_response_t *resp,
		 tg_http_header_t *h)
{
	memset(resp, 0x5a, sizeof(*resp));
	resp->headers = h;
	resp->max_headers = MAXH;
	return tg_http_parse_response(p, n, resp, m, NULL);
}

struct accept_case {
	const char *name;	 /* what the case shows */
	const char *in;		 /* the input (the head only) */
	tg_http_method_t method; /* the request's method */
	int status;		 /* status */
	const char *reason;	 /* reason phrase */
	int minor;		 /* version_minor */
	tg_http_body_t body;	 /* body framing */
	uint64_t cl;		 /* content_length */
	bool keep_alive;	 /* keep_alive */
	bool upgrade;		 /* upgrade */
	bool tunnel;		 /* tunnel */
};

static const struct accept_case accept_cases[] = {
    {"200 with length", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", TG_METHOD_GET, 200, "OK",
     1, TG_BODY_LENGTH, 12, true, false, false},
    {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", TG_METHOD_GET, 200, "OK",
     1, TG_BODY_CHUNKED, 0, true, false, false},
    {"no framing: until close", "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", TG_METHOD_GET, 200, "OK", 1,
     TG_BODY_UNTIL_CLOSE, 0, false, false, false},
    {"HTTP/1.0 without reason", "HTTP/1.0 200\r\nContent-Length: 1\r\n\r\n", TG_METHOD_GET, 200, "",
     0, TG_BODY_LENGTH, 1, false, false, false},
    {"empty reason after SP", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", TG_METHOD_GET, 404, "",
     1, TG_BODY_NONE, 0, true, false, false},
    {"odd reason phrase",
     "HTTP/1.1 200 Alright, \"fine\" (\xc3\xa9t\xc3\xa9)\t!\r\n"
     "Content-Length: 2\r\n\r\n",
     TG_METHOD_GET, 200, "Alright, \"fine\" (\xc3\xa9t\xc3\xa9)\t!", 1, TG_BODY_LENGTH, 2, true,
     false, false},
    {"HTTP/1.0 keep-alive",
     "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n", TG_METHOD_GET, 200,
     "OK", 0, TG_BODY_LENGTH, 3, true, false, false},
    {"HTTP/1.0 keep-alive without length cannot persist",
     "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", TG_METHOD_GET, 200, "OK", 0,
     TG_BODY_UNTIL_CLOSE, 0, false, false, false},
    {"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n",
     TG_METHOD_GET, 200, "OK", 1, TG_BODY_LENGTH, 3, false, false, false},
    {"HEAD has no body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", TG_METHOD_HEAD, 200,
     "OK", 1, TG_BODY_NONE, 100, true, false, false},
    {"HEAD with chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", TG_METHOD_HEAD,
     200, "OK", 1, TG_BODY_NONE, 0, true, false, false},
    {"204 has no body", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", TG_METHOD_GET, 204,
     "No Content", 1, TG_BODY_NONE, 5, true, false, false},
    {"304 has no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", TG_METHOD_GET,
     304, "Not Modified", 1, TG_BODY_NONE, 5, true, false, false},
    {"100 Continue", "HTTP/1.1 100 Continue\r\n\r\n", TG_METHOD_POST, 100, "Continue", 1,
     TG_BODY_NONE, 0, true, false, false},
    {"103 Early Hints", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
     TG_METHOD_GET, 103, "Early Hints", 1, TG_BODY_NONE, 0, true, false, false},
    {"101 Switching Protocols",
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
     TG_METHOD_GET, 101, "Switching Protocols", 1, TG_BODY_NONE, 0, false, true, true},
    {"CONNECT 200 is a tunnel", "HTTP/1.1 200 Connection Established\r\n\r\n", TG_METHOD_CONNECT,
     200, "Connection Established", 1, TG_BODY_NONE, 0, false, false, true},
    {"CONNECT 407 is not", "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 0\r\n\r\n",
     TG_METHOD_CONNECT, 407, "Proxy Auth", 1, TG_BODY_NONE, 0, true, false, false},
    {"repeated identical Content-Length",
     "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", TG_METHOD_GET, 200, "OK",
     1, TG_BODY_LENGTH, 7, true, false, false},
    {"Content-Length list of one value", "HTTP/1.1 200 OK\r\nContent-Length: 7, 7,7\r\n\r\n",
     TG_METHOD_GET, 200, "OK", 1, TG_BODY_LENGTH, 7, true, false, false},
    {"leading CRLF", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", TG_METHOD_GET, 200, "OK",
     1, TG_BODY_LENGTH, 1, true, false, false},
    {"599", "HTTP/1.1 599 Whatever\r\nContent-Length: 1\r\n\r\n", TG_METHOD_GET, 599, "Whatever", 1,
     TG_BODY_LENGTH, 1, true, false, false},
};

static void test_accept(void **state)
{
	(void)state;
	for (size_t i = 0; i < TG_ARRAY_SIZE(accept_cases); i++) {
		const struct accept_case *c = &accept_cases[i];
		tg_http_header_t h[MAXH];
		tg_http_response_t resp;
		size_t n;
		const char *p = tg_guard_str(c->in, &n);
		int r = parse(p, n, c->method, &resp, h);

		CHECK(r == (int)n, "%s: returned %d (%s)", c->name, r,
		      r == TG_ERROR ? resp.error : "-");
		CHECK(resp.status == c->status, "%s: status %d", c->name, resp.status);
		CHECK(resp.reason.len == strlen(c->reason) &&
			  memcmp(resp.reason.ptr, c->reason, resp.reason.len) == 0,
		      "%s: reason '%.*s'", c->name, (int)resp.reason.len, resp.reason.ptr);
		CHECK(resp.version_minor == c->minor, "%s: minor", c->name);
		CHECK(resp.body == c->body, "%s: body %d", c->name, resp.body);
		CHECK(resp.content_length == c->cl, "%s: content_length", c->name);
		CHECK(resp.keep_alive == c->keep_alive, "%s: keep_alive %d", c->name,
		      resp.keep_alive);
		CHECK(resp.upgrade == c->upgrade, "%s: upgrade", c->name);
		CHECK(resp.tunnel == c->tunnel, "%s: tunnel", c->name);
		CHECK(resp.error == NULL, "%s: error set", c->name);

		/* every proper prefix needs more; resuming byte by byte agrees */
		for (size_t k = 0; k < n; k++) {
			const char *q = tg_guard_dup(c->in, k);
			tg_http_response_t rq;
			tg_http_header_t hq[MAXH];
			int rk = parse(q, k, c->method, &rq, hq);
			CHECK(rk == TG_AGAIN, "%s: prefix %zu gave %d", c->name, k, rk);
			tg_guard_free(q, k);
		}
		char *b = malloc(n);
		assert_non_null(b);
		memcpy(b, c->in, n);
		tg_http_response_t inc = {0};
		tg_http_header_t hi[MAXH];
		inc.headers = hi;
		inc.max_headers = MAXH;
		int ri = TG_AGAIN;
		for (size_t k = 0; k <= n && ri == TG_AGAIN; k++)
			ri = tg_http_parse_response_resume(b, k, &inc, c->method, NULL);
		CHECK(ri == r && inc.status == resp.status && inc.body == resp.body &&
			  inc.keep_alive == resp.keep_alive &&
			  inc.num_headers == resp.num_headers &&
			  inc.content_length == resp.content_length && inc.tunnel == resp.tunnel,
		      "%s: resumed parse differs", c->name);
		for (size_t j = 0; j < inc.num_headers; j++)
			CHECK(hi[j].name.ptr - b == h[j].name.ptr - p &&
				  hi[j].value.len == h[j].value.len && hi[j].flags == h[j].flags,
			      "%s: field %zu differs when resumed", c->name, j);
		free(b);
		tg_guard_free(p, n);
	}
}

struct reject_case {
	const char *name; /* what is wrong */
	const char *in;	  /* the input */
	size_t len;	  /* its length (inputs may hold NUL) */
};
#define R(name, lit)                                                                               \
	{                                                                                          \
		name, lit, sizeof(lit) - 1                                                         \
	}

static const struct reject_case reject_cases[] = {
    R("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
    R("TE and CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
    R("conflicting Content-Length",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
    R("conflicting Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"),
    R("Content-Length empty element", "HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n"),
    R("Content-Length sign", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"),
    R("TE gzip only", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
    R("TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
    R("TE chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
    R("TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    R("HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n"),
    R("HTTP/2", "HTTP/2 200\r\n\r\n"),
    R("lower-case version", "http/1.1 200 OK\r\n\r\n"),
    R("two-digit status", "HTTP/1.1 20 OK\r\n\r\n"),
    R("four-digit status", "HTTP/1.1 2000 OK\r\n\r\n"),
    R("status 600", "HTTP/1.1 600 Nope\r\n\r\n"),
    R("status 099", "HTTP/1.1 099 Nope\r\n\r\n"),
    R("no space after version", "HTTP/1.1200 OK\r\n\r\n"),
    R("reason with control", "HTTP/1.1 200 O\x01K\r\n\r\n"),
    R("reason with NUL", "HTTP/1.1 200 O\0K\r\n\r\n"),
    R("bare LF after status line", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"),
    R("bare LF in fields", "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"),
    R("obs-fold", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n"),
    R("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"),
    R("CR in value", "HTTP/1.1 200 OK\r\nX-A: 1\r2\r\n\r\n"),
    R("HTTP/0.9 style body", "<html>hello</html>\r\n\r\n"),
};

static void test_reject(void **state)
{
	(void)state;
	for (size_t i = 0; i < TG_ARRAY_SIZE(reject_cases); i++) {
		const struct reject_case *c = &reject_cases[i];
		tg_http_header_t h[MAXH];
		tg_http_response_t resp;
		const char *p = tg_guard_dup(c->in, c->len);
		int r = parse(p, c->len, TG_METHOD_GET, &resp, h);

		CHECK(r == TG_ERROR, "%s: returned %d", c->name, r);
		CHECK(resp.error && resp.error[0], "%s: no reason", c->name);
		tg_guard_free(p, c->len);
	}
}

static void test_flags(void **state)
{
	(void)state;
	static const char in[] = "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
				 "Server: origin\r\nConnection: X-Internal\r\nX-Internal: 1\r\n"
				 "Keep-Alive: timeout=5\r\nContent-Length: 1\r\nX-Other: 2\r\n\r\n";
	static const uint32_t want[] = {TG_HDR_DATE, TG_HDR_SERVER,	    TG_HDR_HOP, TG_HDR_HOP,
					TG_HDR_HOP,  TG_HDR_CONTENT_LENGTH, 0};
	tg_http_header_t h[MAXH];
	tg_http_response_t resp;
	size_t n;
	const char *p = tg_guard_str(in, &n);

	assert_int_equal(parse(p, n, TG_METHOD_GET, &resp, h), (int)n);
	assert_int_equal(resp.num_headers, TG_ARRAY_SIZE(want));
	for (size_t i = 0; i < resp.num_headers; i++)
		CHECK(h[i].flags == want[i], "field %zu: %#x want %#x", i, h[i].flags, want[i]);
	tg_guard_free(p, n);
}

/* An interim 100 followed by the final response in one buffer. */
static void test_interim(void **state)
{
	(void)state;
	static const char in[] = "HTTP/1.1 100 Continue\r\n\r\n"
				 "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
	tg_http_header_t h[MAXH];
	tg_http_response_t resp;
	size_t n;
	const char *p = tg_guard_str(in, &n);
	int r = parse(p, n, TG_METHOD_POST, &resp, h);

	assert_int_equal(r, 25);
	assert_int_equal(resp.status, 100);
	r = parse(p + 25, n - 25, TG_METHOD_POST, &resp, h);
	assert_int_equal(r, (int)n - 25 - 2);
	assert_int_equal(resp.status, 201);
	assert_int_equal(resp.body, TG_BODY_LENGTH);
	tg_guard_free(p, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accept),
	    cmocka_unit_test(test_reject),
	    cmocka_unit_test(test_flags),
	    cmocka_unit_test(test_interim),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

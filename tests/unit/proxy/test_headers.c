/*
 * test_headers.c - the upstream request head and the client response head
 * built as iovecs: exact output text, and that forwarded lines are referenced
 * in the received buffer rather than copied.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/headers.h"

static tg_http_header_t hdrs[64];
static struct iovec iov[96];
static char scratch[640];
static char out[8192];

static size_t flatten(int n)
{
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	out[len] = '\0';
	return len;
}

static bool in_range(const void *p, const char *lo, size_t len)
{
	return (const char *)p >= lo && (const char *)p < lo + len;
}

static int build_req(const char *raw, tg_http_request_t *req, const tg_fwd_info_t *fi)
{
	memset(req, 0, sizeof(*req));
	req->headers = hdrs;
	req->max_headers = 64;
	int r = tg_http_parse_request(raw, strlen(raw), req, NULL);
	assert_true(r > 0);
	int n = tg_proxy_request_head(req, raw, (size_t)r, fi, iov, 96, scratch, sizeof(scratch));
	assert_true(n > 0);
	flatten(n);
	return n;
}

static const tg_fwd_info_t FI = {
    .client_ip = {"10.1.2.3", 8},
    .server_port = {"80", 2},
    .proto = {"http", 4},
    .request_id = {"0123456789abcdef0123456789abcdef", 32},
};

static void test_request_head_basic(void **state)
{
	(void)state;
	const char *raw = "GET /a?b=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: t\r\n"
			  "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nAccept: */*\r\n\r\n";
	tg_http_request_t req;
	int n = build_req(raw, &req, &FI);
	assert_string_equal(out, "GET /a?b=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: t\r\n"
				 "Accept: */*\r\n"
				 "X-Request-ID: 0123456789abcdef0123456789abcdef\r\n"
				 "X-Real-IP: 10.1.2.3\r\nX-Forwarded-For: 10.1.2.3\r\n"
				 "X-Forwarded-Host: app.test\r\nX-Forwarded-Port: 80\r\n"
				 "X-Forwarded-Proto: http\r\n\r\n");
	/* Request line + first fields are one iovec into the input (no copy),
	 * the field after the dropped ones another, then the additions, with the
	 * X-Forwarded-Host value referenced in the input too. */
	assert_int_equal(n, 5);
	assert_true(in_range(iov[0].iov_base, raw, strlen(raw)));
	assert_true(in_range(iov[1].iov_base, raw, strlen(raw)));
	assert_true(in_range(iov[2].iov_base, scratch, sizeof(scratch)));
	assert_ptr_equal(iov[3].iov_base, strstr(raw, "app.test"));
	assert_true(in_range(iov[4].iov_base, scratch, sizeof(scratch)));
}

static void test_request_forwarded_fields(void **state)
{
	(void)state;
	const char *raw = "POST /x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\n"
			  "X-Forwarded-For: 2.2.2.2, 3.3.3.3\r\nX-Real-IP: 9.9.9.9\r\n"
			  "X-Forwarded-Proto: https\r\nForwarded: for=x\r\nX-Request-ID: mine\r\n"
			  "Transfer-Encoding: chunked\r\n\r\n";
	tg_http_request_t req;
	tg_fwd_info_t fi = FI;
	fi.request_id = (tg_str_t){NULL, 0}; /* the client's is kept */
	build_req(raw, &req, &fi);
	assert_string_equal(out, "POST /x HTTP/1.1\r\nHost: h\r\nX-Request-ID: mine\r\n"
				 "X-Real-IP: 10.1.2.3\r\n"
				 "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3\r\n"
				 "X-Forwarded-Host: h\r\nX-Forwarded-Port: 80\r\n"
				 "X-Forwarded-Proto: http\r\nTransfer-Encoding: chunked\r\n\r\n");
	/* trusted: the client's proto is kept, ours not added */
	fi.trust_forwarded = true;
	build_req(raw, &req, &fi);
	assert_non_null(strstr(out, "X-Forwarded-Proto: https\r\n"));
	assert_null(strstr(out, "X-Forwarded-Proto: http\r\n"));
	assert_null(strstr(out, "Forwarded: for=x"));
}

static void test_request_absolute_form_upgrade_http10(void **state)
{
	(void)state;
	tg_http_request_t req;
	build_req("GET http://Abs.Test:8080/p/q?z HTTP/1.1\r\nHost: other\r\n\r\n", &req, &FI);
	assert_non_null(strstr(out, "GET /p/q?z HTTP/1.1\r\n"));
	assert_null(strstr(out, "Host: other"));
	assert_non_null(strstr(out, "\r\nHost: Abs.Test:8080\r\n"));

	build_req(
	    "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	    &req, &FI);
	assert_non_null(strstr(out, "\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"));

	build_req("GET / HTTP/1.0\r\n\r\n", &req, &FI);
	assert_true(strncmp(out, "GET / HTTP/1.0\r\n", 16) == 0);
	assert_non_null(strstr(out, "\r\nConnection: keep-alive\r\n\r\n"));
	assert_null(strstr(out, "X-Forwarded-Host"));

	tg_fwd_info_t fi = FI;
	fi.drop_expect = true;
	build_req("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
		  &req, &fi);
	assert_null(strstr(out, "Expect"));
	assert_non_null(strstr(out, "Content-Length: 3\r\n"));
}

static int build_resp(const char *raw, tg_http_method_t m, const tg_resp_info_t *ri)
{
	tg_http_response_t resp;
	memset(&resp, 0, sizeof(resp));
	resp.headers = hdrs;
	resp.max_headers = 64;
	int r = tg_http_parse_response(raw, strlen(raw), &resp, m, NULL);
	assert_true(r > 0);
	int n =
	    tg_proxy_response_head(&resp, raw, (size_t)r, ri, iov, 96, scratch, sizeof(scratch));
	assert_true(n > 0);
	flatten(n);
	return n;
}

static const char DATE[] = "Sun, 06 Nov 1994 08:49:37 GMT";

static void test_response_head(void **state)
{
	(void)state;
	tg_resp_info_t ri = {.keep_alive = true, .date = DATE};
	const char *raw = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-S\r\n"
			  "X-S: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: y\r\n\r\nok";
	build_resp(raw, TG_METHOD_GET, &ri);
	assert_string_equal(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Kept: y\r\n"
				 "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tidegate\r\n\r\n");
	/* the backend's own Date and Server stay; chunked is re-added; close */
	ri.keep_alive = false;
	build_resp(
	    "HTTP/1.1 404 Not Found\r\nDate: x\r\nServer: s\r\nTransfer-Encoding: chunked\r\n\r\n",
	    TG_METHOD_GET, &ri);
	assert_string_equal(out, "HTTP/1.1 404 Not Found\r\nDate: x\r\nServer: s\r\n"
				 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
	/* HTTP/1.0 client kept alive */
	ri.keep_alive = true;
	ri.client_http10 = true;
	build_resp("HTTP/1.1 204 No Content\r\nServer: s\r\nDate: d\r\n\r\n", TG_METHOD_GET, &ri);
	assert_string_equal(out, "HTTP/1.1 204 No Content\r\nServer: s\r\nDate: d\r\n"
				 "Connection: keep-alive\r\n\r\n");
	/* 101: Connection: upgrade and the backend's Upgrade value */
	tg_resp_info_t up = {.upgrade = true, .date = DATE};
	build_resp(
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: abc\r\n\r\n",
	    TG_METHOD_GET, &up);
	assert_string_equal(out, "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: abc\r\n"
				 "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tidegate\r\n"
				 "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
}

static void test_too_small_outputs_fail_cleanly(void **state)
{
	(void)state;
	const char *raw =
	    "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nConnection: A\r\nB: 2\r\nC: 3\r\n\r\n";
	tg_http_request_t req;
	memset(&req, 0, sizeof(req));
	req.headers = hdrs;
	req.max_headers = 64;
	int r = tg_http_parse_request(raw, strlen(raw), &req, NULL);
	assert_true(r > 0);
	assert_int_equal(tg_proxy_request_head(&req, raw, (size_t)r, &FI, iov, 2, scratch, 640),
			 -1);
	assert_int_equal(tg_proxy_request_head(&req, raw, (size_t)r, &FI, iov, 96, scratch, 20),
			 -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_head_basic),
	    cmocka_unit_test(test_request_forwarded_fields),
	    cmocka_unit_test(test_request_absolute_form_upgrade_http10),
	    cmocka_unit_test(test_response_head),
	    cmocka_unit_test(test_too_small_outputs_fail_cleanly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

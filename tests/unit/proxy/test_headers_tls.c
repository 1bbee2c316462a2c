/*
 * test_headers_tls.c - what TLS adds to the upstream request head: the
 * ssl-client-* lines of a verified client certificate, the removal of any
 * client-sent ssl-client-* field, X-Forwarded-Proto https, and the
 * X-Forwarded-For chain when forwarded headers are trusted.
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

static void build(const char *raw, const tg_fwd_info_t *fi)
{
	tg_http_request_t req;
	memset(&req, 0, sizeof(req));
	req.headers = hdrs;
	req.max_headers = 64;
	int r = tg_http_parse_request(raw, strlen(raw), &req, NULL);
	assert_true(r > 0);
	int n = tg_proxy_request_head(&req, raw, (size_t)r, fi, iov, 96, scratch, sizeof(scratch));
	assert_true(n > 0);
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	out[len] = '\0';
}

static void test_client_cert_lines_replace_forged_ones(void **state)
{
	(void)state;
	const char *raw = "GET / HTTP/1.1\r\nHost: h\r\nssl-client-verify: SUCCESS\r\n"
			  "SSL-Client-Subject-DN: CN=mallory\r\nssl-clientish: kept\r\n\r\n";
	static const char lines[] =
	    "ssl-client-verify: SUCCESS\r\nssl-client-subject-dn: CN=alice\r\n";
	tg_fwd_info_t fi = {
	    .client_ip = {"10.1.2.3", 8},
	    .server_port = {"443", 3},
	    .proto = {"https", 5},
	    .extra = {lines, sizeof(lines) - 1},
	};
	build(raw, &fi);
	assert_string_equal(
	    out, "GET / HTTP/1.1\r\nHost: h\r\nssl-clientish: kept\r\n"
		 "X-Real-IP: 10.1.2.3\r\nX-Forwarded-For: 10.1.2.3\r\n"
		 "X-Forwarded-Host: h\r\nX-Forwarded-Port: 443\r\n"
		 "X-Forwarded-Proto: https\r\n"
		 "ssl-client-verify: SUCCESS\r\nssl-client-subject-dn: CN=alice\r\n\r\n");
	/* Without a policy, forged fields are dropped all the same. */
	fi.extra = (tg_str_t){NULL, 0};
	build(raw, &fi);
	assert_null(strstr(out, "SUCCESS"));
	assert_null(strstr(out, "mallory"));
}

static void test_trusted_chain_appends_the_peer(void **state)
{
	(void)state;
	const char *raw = "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7, 10.1.1.1\r\n"
			  "X-Forwarded-Proto: https\r\n\r\n";
	tg_fwd_info_t fi = {
	    .client_ip = {"203.0.113.7", 11},
	    .peer_ip = {"10.9.9.9", 8},
	    .server_port = {"80", 2},
	    .proto = {"http", 4},
	    .trust_forwarded = true,
	};
	build(raw, &fi);
	assert_non_null(strstr(out, "X-Real-IP: 203.0.113.7\r\n"));
	assert_non_null(strstr(out, "X-Forwarded-For: 203.0.113.7, 10.1.1.1, 10.9.9.9\r\n"));
	assert_non_null(strstr(out, "X-Forwarded-Proto: https\r\n"));
	assert_null(strstr(out, "X-Forwarded-Proto: http\r\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_cert_lines_replace_forged_ones),
	    cmocka_unit_test(test_trusted_chain_appends_the_peer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

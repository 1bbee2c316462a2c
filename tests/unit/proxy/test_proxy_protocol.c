/*
 * test_proxy_protocol.c - PROXY protocol v1/v2 parser. Every input sits right
 * before a PROT_NONE guard page (tests/unit/guard.h), so an overread crashes.
 */
#include "proxy/proxy_protocol.h"

#include "guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <cmocka.h>

static const char V2SIG[] = "\r\n\r\n\0\r\nQUIT\n";

/* Parses len bytes of data from a guarded copy. */
static int parse(const void *data, size_t len, tg_proxy_hdr_t *h, const char **why)
{
	const char *p = tg_guard_dup(data, len);
	int rc = tg_proxy_protocol_parse(p, len, h, why);
	/* tlvs points into the copy: keep it meaningful for the caller by
	 * pointing it back into data. */
	if (rc > 0 && h->tlvs.ptr)
		h->tlvs.ptr = (const char *)data + (h->tlvs.ptr - p);
	tg_guard_free(p, len);
	return rc;
}

static int parse_str(const char *s, tg_proxy_hdr_t *h, const char **why)
{
	return parse(s, strlen(s), h, why);
}

/* Every strict prefix of a valid header is TG_AGAIN. */
static void assert_prefixes_again(const void *data, size_t hdr_len)
{
	tg_proxy_hdr_t h;
	const char *why;
	for (size_t n = 0; n < hdr_len; n++) {
		int rc = parse(data, n, &h, &why);
		if (rc != TG_AGAIN)
			fail_msg("prefix of %zu bytes: %d (%s)", n, rc, why ? why : "");
	}
}

static void assert_addr4(const struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
	char buf[INET_ADDRSTRLEN];
	assert_int_equal(a->sin_family, AF_INET);
	inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
	assert_string_equal(buf, ip);
	assert_int_equal(ntohs(a->sin_port), port);
}

static void assert_addr6(const struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
	char buf[INET6_ADDRSTRLEN];
	assert_int_equal(a->sin6_family, AF_INET6);
	inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
	assert_string_equal(buf, ip);
	assert_int_equal(ntohs(a->sin6_port), port);
}

/* ------------------------------------------------------------------- v1 */

static void test_v1_tcp4(void **state)
{
	(void)state;
	static const char in[] =
	    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
	size_t hl = strlen("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
	tg_proxy_hdr_t h;
	const char *why;
	assert_int_equal(parse_str(in, &h, &why), (int)hl);
	assert_int_equal(h.version, 1);
	assert_false(h.local);
	assert_int_equal(h.addrlen, sizeof(struct sockaddr_in));
	assert_addr4(&h.src, "192.168.0.1", 56324);
	assert_addr4(&h.dst, "192.168.0.11", 443);
	assert_prefixes_again(in, hl);
	/* Exactly the header, nothing after it. */
	assert_int_equal(parse(in, hl, &h, &why), (int)hl);
}

static void test_v1_tcp6_and_limits(void **state)
{
	(void)state;
	tg_proxy_hdr_t h;
	const char *why;
	const char *in = "PROXY TCP6 2001:db8::1 fd00:7467::2 65535 0\r\n";
	assert_int_equal(parse_str(in, &h, &why), (int)strlen(in));
	assert_addr6(&h.src, "2001:db8::1", 65535);
	assert_addr6(&h.dst, "fd00:7467::2", 0);
	assert_int_equal(h.addrlen, sizeof(struct sockaddr_in6));

	/* The longest TCP6 line the spec lists (104 bytes). */
	const char *longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	assert_int_equal(strlen(longest), 104);
	assert_int_equal(parse_str(longest, &h, &why), 104);
	assert_prefixes_again(longest, 104);

	const char *ipv4 = "PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n";
	assert_int_equal(parse_str(ipv4, &h, &why), (int)strlen(ipv4));
	assert_addr4(&h.src, "255.255.255.255", 65535);
}

static void test_v1_unknown(void **state)
{
	(void)state;
	tg_proxy_hdr_t h;
	const char *why;
	assert_int_equal(parse_str("PROXY UNKNOWN\r\n", &h, &why), 15);
	assert_true(h.local);
	assert_int_equal(h.addrlen, 0);
	/* Anything before the CRLF is ignored. */
	assert_int_equal(parse_str("PROXY UNKNOWN whatever ::1 %% 7\r\nX", &h, &why), 33);
	assert_true(h.local);

	/* 107 bytes is the maximum, 108 is refused. */
	char line[200];
	memcpy(line, "PROXY UNKNOWN ", 14);
	memset(line + 14, 'f', 91);
	memcpy(line + 105, "\r\n", 2);
	assert_int_equal(parse(line, 107, &h, &why), 107);
	assert_prefixes_again(line, 107);
	memset(line + 14, 'f', 92);
	memcpy(line + 106, "\r\n", 2);
	assert_int_equal(parse(line, 108, &h, &why), TG_ERROR);
	assert_non_null(strstr(why, "107"));
	/* No CRLF at all within 107 bytes: refused without waiting. */
	memset(line + 14, 'f', 100);
	assert_int_equal(parse(line, 107, &h, &why), TG_ERROR);
}

static void test_v1_invalid(void **state)
{
	(void)state;
	static const struct {
		const char *in;	  /* input */
		const char *want; /* substring of the reason */
	} bad[] = {
	    {"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n", "LF"},
	    {"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX", "CR"},
	    {"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n", "extra field"},
	    {"PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n", "empty field"},
	    {"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n", "missing"},
	    {"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 1\r\n", "extra"},
	    {"PROXY TCP4 192.168.000.1 192.168.0.11 1 2\r\n", "source address"},
	    {"PROXY TCP4 192.168.0.01 192.168.0.11 1 2\r\n", "source address"},
	    {"PROXY TCP4 256.1.1.1 192.168.0.11 1 2\r\n", "source address"},
	    {"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", "source address"},
	    {"PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\n", "source address"},
	    {"PROXY TCP4 1.2.3.4 1.2.3.4x 1 2\r\n", "destination address"},
	    {"PROXY TCP4 ::1 ::1 1 2\r\n", "source address"},
	    {"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "source address"},
	    {"PROXY TCP6 ::1 fe80::1%eth0 1 2\r\n", "destination address"},
	    {"PROXY TCP6 ::1 ::1::1 1 2\r\n", "destination address"},
	    {"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "source port"},
	    {"PROXY TCP4 1.2.3.4 1.2.3.4 0443 2\r\n", "source port"},
	    {"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "source port"},
	    {"PROXY TCP4 1.2.3.4 1.2.3.4 1 +2\r\n", "destination port"},
	    {"PROXY TCP4 1.2.3.4 1.2.3.4 1 99999999\r\n", "destination port"},
	    {"PROXY TCP4\r\n", "protocol"},
	    {"PROXY UNKNOWNX\r\n", "protocol"},
	    {"PROXY TCP5 1.2.3.4", "protocol"}, /* refused before the CRLF */
	    {"PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", "protocol"},
	    {"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "no PROXY"},
	    {"PROXY\tTCP4", "no PROXY"},
	    {"GET / HTTP/1.1\r\n", "no PROXY"},
	    {"\x16\x03\x01\x02\x00\x01", "no PROXY"}, /* a TLS ClientHello */
	};
	for (size_t i = 0; i < TG_ARRAY_SIZE(bad); i++) {
		tg_proxy_hdr_t h;
		const char *why = NULL;
		int rc = parse_str(bad[i].in, &h, &why);
		if (rc != TG_ERROR || !why || !strstr(why, bad[i].want))
			fail_msg("case %zu (%s): rc %d, reason %s", i, bad[i].in, rc,
				 why ? why : "(none)");
	}
}

/* ------------------------------------------------------------------- v2 */

/* CRC32C, independent of the parser's (checked against the RFC 3720 test
 * vector below). */
static uint32_t test_crc32c(const unsigned char *p, size_t n)
{
	uint32_t crc = 0xFFFFFFFFu;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

/* Builds a v2 header in out: command, family byte, then body bytes. */
static size_t v2(unsigned char *out, uint8_t ver_cmd, uint8_t fam, const void *body, size_t n)
{
	memcpy(out, V2SIG, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(n >> 8);
	out[15] = (uint8_t)n;
	memcpy(out + 16, body, n);
	return 16 + n;
}

static void test_v2_tcp4(void **state)
{
	(void)state;
	unsigned char body[12] = {198, 18, 0, 1, 198, 18, 100, 1, 0xDB, 0xF0, 0x01, 0xBB};
	unsigned char buf[64];
	size_t n = v2(buf, 0x21, 0x11, body, sizeof(body));
	memcpy(buf + n, "\x16\x03\x01", 3); /* the client's first bytes follow */
	tg_proxy_hdr_t h;
	const char *why;
	assert_int_equal(parse(buf, n + 3, &h, &why), (int)n);
	assert_int_equal(h.version, 2);
	assert_false(h.local);
	assert_addr4(&h.src, "198.18.0.1", 56304);
	assert_addr4(&h.dst, "198.18.100.1", 443);
	assert_int_equal(h.tlvs.len, 0);
	assert_prefixes_again(buf, n);
}

static void test_v2_tcp6_tlvs(void **state)
{
	(void)state;
	unsigned char body[36 + 32];
	struct in6_addr a, b;
	inet_pton(AF_INET6, "fd00:7467::10", &a);
	inet_pton(AF_INET6, "fd00:7467::1", &b);
	memcpy(body, &a, 16);
	memcpy(body + 16, &b, 16);
	body[32] = 0x30;
	body[33] = 0x39; /* 12345 */
	body[34] = 0x00;
	body[35] = 0x50; /* 80 */
	size_t t = 36;
	/* AUTHORITY "example.com", then NOOP of 2 bytes. */
	body[t++] = TG_PP2_TYPE_AUTHORITY;
	body[t++] = 0;
	body[t++] = 11;
	memcpy(body + t, "example.com", 11);
	t += 11;
	body[t++] = TG_PP2_TYPE_NOOP;
	body[t++] = 0;
	body[t++] = 2;
	body[t++] = 0;
	body[t++] = 0;
	unsigned char buf[128];
	size_t n = v2(buf, 0x21, 0x21, body, t);
	tg_proxy_hdr_t h;
	const char *why;
	assert_int_equal(parse(buf, n, &h, &why), (int)n);
	assert_addr6(&h.src, "fd00:7467::10", 12345);
	assert_addr6(&h.dst, "fd00:7467::1", 80);
	tg_str_t v;
	assert_true(tg_proxy_protocol_tlv(&h, TG_PP2_TYPE_AUTHORITY, &v));
	assert_true(tg_str_eq(v, "example.com", 11));
	assert_true(tg_proxy_protocol_tlv(&h, TG_PP2_TYPE_NOOP, &v));
	assert_int_equal(v.len, 2);
	assert_false(tg_proxy_protocol_tlv(&h, TG_PP2_TYPE_UNIQUE_ID, &v));
	assert_prefixes_again(buf, n);

	/* A TLV running past the header. */
	body[t - 4] = 9;
	n = v2(buf, 0x21, 0x21, body, t);
	assert_int_equal(parse(buf, n, &h, &why), TG_ERROR);
	assert_non_null(strstr(why, "TLV"));
	/* Two bytes after the addresses: not even a TLV header. */
	n = v2(buf, 0x21, 0x21, body, 38);
	assert_int_equal(parse(buf, n, &h, &why), TG_ERROR);
}

static void test_v2_crc32c(void **state)
{
	(void)state;
	assert_int_equal(test_crc32c((const unsigned char *)"123456789", 9), 0xE3069283u);
	unsigned char body[12 + 7] = {10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2, TG_PP2_TYPE_CRC32C,
				      0,  4, 0, 0, 0,  0};
	unsigned char buf[64];
	size_t n = v2(buf, 0x21, 0x11, body, sizeof(body));
	uint32_t crc = test_crc32c(buf, n);
	buf[n - 4] = (uint8_t)(crc >> 24);
	buf[n - 3] = (uint8_t)(crc >> 16);
	buf[n - 2] = (uint8_t)(crc >> 8);
	buf[n - 1] = (uint8_t)crc;
	tg_proxy_hdr_t h;
	const char *why;
	assert_int_equal(parse(buf, n, &h, &why), (int)n);
	assert_addr4(&h.src, "10.0.0.1", 1);
	buf[17] ^= 1; /* one address bit changed in transit */
	assert_int_equal(parse(buf, n, &h, &why), TG_ERROR);
	assert_non_null(strstr(why, "CRC32C"));
	buf[17] ^= 1;
	buf[n - 1] ^= 0x80;
	assert_int_equal(parse(buf, n, &h, &why), TG_ERROR);
}

static void test_v2_local_and_fallbacks(void **state)
{
	(void)state;
	unsigned char buf[300], body[260] = {0};
	tg_proxy_hdr_t h;
	const char *why;
	/* LOCAL (health check): addresses, if any, ignored. */
	size_t n = v2(buf, 0x20, 0x00, body, 0);
	assert_int_equal(parse(buf, n, &h, &why), 16);
	assert_true(h.local);
	n = v2(buf, 0x20, 0x11, body, 12);
	assert_int_equal(parse(buf, n, &h, &why), 28);
	assert_true(h.local);
	/* PROXY with AF_UNSPEC, UDP, or UNIX: accepted, socket addresses used. */
	n = v2(buf, 0x21, 0x00, body, 5);
	assert_int_equal(parse(buf, n, &h, &why), 21);
	assert_true(h.local);
	n = v2(buf, 0x21, 0x12, body, 12);
	assert_int_equal(parse(buf, n, &h, &why), 28);
	assert_true(h.local);
	n = v2(buf, 0x21, 0x31, body, 216);
	assert_int_equal(parse(buf, n, &h, &why), 232);
	assert_true(h.local);
	assert_int_equal(h.addrlen, 0);
}

static void test_v2_invalid(void **state)
{
	(void)state;
	unsigned char buf[300], body[260] = {0};
	tg_proxy_hdr_t h;
	const char *why;
	size_t n = v2(buf, 0x11, 0x11, body, 12);
	assert_int_equal(parse(buf, n, &h, &why), TG_ERROR);
	assert_non_null(strstr(why, "version"));
	assert_int_equal(parse(buf, 13, &h, &why), TG_ERROR); /* decided early */
	n = v2(buf, 0x22, 0x11, body, 12);
	assert_int_equal(parse(buf, n, &h, &why), TG_ERROR);
	assert_non_null(strstr(why, "command"));
	n = v2(buf, 0x21, 0x13, body, 12);
	assert_int_equal(parse(buf, n, &h, &why), TG_ERROR);
	assert_non_null(strstr(why, "family"));
	n = v2(buf, 0x21, 0x41, body, 12);
	assert_int_equal(parse(buf, 14, &h, &why), TG_ERROR);
	/* Address block too short for the family. */
	n = v2(buf, 0x21, 0x11, body, 11);
	assert_int_equal(parse(buf, n, &h, &why), TG_ERROR);
	assert_non_null(strstr(why, "too short"));
	n = v2(buf, 0x21, 0x21, body, 12);
	assert_int_equal(parse(buf, n, &h, &why), TG_ERROR);
	n = v2(buf, 0x21, 0x31, body, 200);
	assert_int_equal(parse(buf, n, &h, &why), TG_ERROR);
	/* A signature broken at its fifth byte is refused at once. */
	memcpy(buf, V2SIG, 12);
	buf[4] = 'x';
	assert_int_equal(parse(buf, 5, &h, &why), TG_ERROR);
	assert_int_equal(parse(buf, 4, &h, &why), TG_AGAIN);
	/* Announced length not there yet. */
	n = v2(buf, 0x21, 0x11, body, 12);
	assert_int_equal(parse(buf, n - 1, &h, &why), TG_AGAIN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_v1_tcp4),    cmocka_unit_test(test_v1_tcp6_and_limits),
	    cmocka_unit_test(test_v1_unknown), cmocka_unit_test(test_v1_invalid),
	    cmocka_unit_test(test_v2_tcp4),    cmocka_unit_test(test_v2_tcp6_tlvs),
	    cmocka_unit_test(test_v2_crc32c),  cmocka_unit_test(test_v2_local_and_fallbacks),
	    cmocka_unit_test(test_v2_invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

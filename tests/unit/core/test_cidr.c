/*
 * test_cidr.c - proxy-real-ip-cidr blocks: parsing, lists, membership,
 * IPv4-mapped IPv6 peers.
 */
#include "core/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

static bool in(const tg_cidr_t *l, int n, const char *ip)
{
	int fam;
	uint8_t a[16];
	assert_int_equal(tg_cidr_parse_ip(ip, strlen(ip), &fam, a), 0);
	return tg_cidr_match(l, (size_t)n, fam, a);
}

static void test_blocks(void **state)
{
	(void)state;
	tg_cidr_t l[4];
	const char *txt = "10.0.0.0/8, 192.168.1.7 ,fd00::/8,172.16.0.0/12";
	int n = tg_cidr_parse_list(txt, strlen(txt), l, 4, NULL);
	assert_int_equal(n, 4);
	assert_true(in(l, n, "10.255.1.2"));
	assert_false(in(l, n, "11.0.0.1"));
	assert_true(in(l, n, "192.168.1.7"));
	assert_false(in(l, n, "192.168.1.8"));
	assert_true(in(l, n, "172.31.255.255"));
	assert_false(in(l, n, "172.32.0.0"));
	assert_true(in(l, n, "fd12::1"));
	assert_false(in(l, n, "fe80::1"));
	assert_true(in(l, n, "::ffff:10.1.1.1")); /* a v4 peer on a dual-stack socket */
}

static void test_zero_prefix_and_host_bits(void **state)
{
	(void)state;
	tg_cidr_t c;
	assert_int_equal(tg_cidr_parse("0.0.0.0/0", 9, &c), 0);
	assert_true(in(&c, 1, "203.0.113.9"));
	assert_false(in(&c, 1, "2001:db8::1")); /* ingress-nginx's default trusts IPv4 only */
	assert_int_equal(tg_cidr_parse("10.1.2.3/8", 10, &c), 0); /* host bits ignored */
	assert_true(in(&c, 1, "10.200.0.1"));
	assert_int_equal(tg_cidr_parse("10.1.2.3/13", 11, &c), 0);
	assert_true(in(&c, 1, "10.7.255.255"));
	assert_false(in(&c, 1, "10.8.0.0"));
}

static void test_rejects(void **state)
{
	(void)state;
	tg_cidr_t l[2];
	const char *bad[] = {"",
			     "10.0.0.0/33",
			     "fd00::/129",
			     "10.0.0/8",
			     "10.0.0.0/",
			     "x",
			     "10.0.0.0/8,",
			     "1.2.3.4/-1",
			     "1.2.3.4, 5.6.7.8, 9.9.9.9"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *where = NULL;
		assert_int_equal(tg_cidr_parse_list(bad[i], strlen(bad[i]), l, 2, &where), -EINVAL);
		assert_non_null(where);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_blocks),
	    cmocka_unit_test(test_zero_prefix_and_host_bits),
	    cmocka_unit_test(test_rejects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

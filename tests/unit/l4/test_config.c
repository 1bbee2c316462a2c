/*
 * test_config.c - balancer YAML: defaults, the example file, and the exact
 * reason given for each kind of mistake.
 */
#include "l4/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static tg_l4_config_t *parse_ok(const char *y)
{
	tg_l4_config_t *c = NULL;
	char err[TG_L4_ERR_MAX];
	int rc = tg_l4_config_parse(y, strlen(y), &c, err, sizeof(err));
	if (rc != 0)
		fail_msg("rejected: %s\n--\n%s", err, y);
	return c;
}

/* Parses y expecting a rejection whose message equals want. */
static void parse_err(const char *y, const char *want)
{
	tg_l4_config_t *c = NULL;
	char err[TG_L4_ERR_MAX];
	int rc = tg_l4_config_parse(y, strlen(y), &c, err, sizeof(err));
	if (rc == 0) {
		tg_l4_config_free(c);
		fail_msg("accepted, wanted \"%s\"\n--\n%s", want, y);
	}
	assert_int_equal(rc, -EINVAL);
	assert_null(c);
	if (strcmp(err, want) != 0)
		fail_msg("got  \"%s\"\nwant \"%s\"", err, want);
}

/* Parses y expecting a rejection whose message starts with want. */
static void parse_err_prefix(const char *y, const char *want)
{
	tg_l4_config_t *c = NULL;
	char err[TG_L4_ERR_MAX];
	int rc = tg_l4_config_parse(y, strlen(y), &c, err, sizeof(err));
	if (rc == 0) {
		tg_l4_config_free(c);
		fail_msg("accepted, wanted \"%s...\"", want);
	}
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("got  \"%s\"\nwant \"%s...\"", err, want);
}

#define HEAD "interface: eth0\nvips:\n"
#define VIP0 "  - address: 198.18.100.1\n    port: 80\n"

static void test_defaults(void **state)
{
	(void)state;
	tg_l4_config_t *c = parse_ok(HEAD VIP0 "    reals:\n      - address: 198.18.2.11\n"
					       "  - address: 198.18.100.1\n    port: 53\n"
					       "    protocol: udp\n");
	assert_string_equal(c->interface, "eth0");
	assert_int_equal(c->xdp_mode, TG_L4_XDP_NATIVE);
	assert_string_equal(c->admin_listen, "0.0.0.0:10255");
	assert_string_equal(c->zone, "");
	assert_int_equal(c->max_new_flows_per_sec, 0);
	assert_false(c->has_encap_src4);
	assert_int_equal(c->n_vips, 2);
	const tg_l4_vip_cfg_t *v = &c->vips[0];
	assert_int_equal(v->ip.family, AF_INET);
	assert_int_equal(v->port, 80);
	assert_int_equal(v->proto, TG_L4_TCP);
	assert_int_equal(v->forwarding, TG_L4_FWD_IPIP);
	assert_int_equal(v->hash, TG_L4_HASH_5TUPLE);
	assert_int_equal(v->ring_size, 65537);
	assert_int_equal(v->idle_timeout_ms, 350000); /* NLB TCP */
	assert_int_equal(v->dereg_delay_ms, 300000);
	assert_false(v->cross_zone);
	assert_int_equal(v->health.proto, TG_L4_HC_TCP);
	assert_int_equal(v->health.port, 80); /* traffic port */
	assert_string_equal(v->health.path, "/");
	assert_int_equal(v->health.interval_ms, 30000);
	assert_int_equal(v->health.timeout_ms, 6000);
	assert_int_equal(v->health.healthy_threshold, 5);
	assert_int_equal(v->health.unhealthy_threshold, 2);
	assert_int_equal(v->n_reals, 1);
	assert_int_equal(v->reals[0].weight, 1);
	assert_string_equal(v->reals[0].zone, "");
	assert_int_equal(c->vips[1].idle_timeout_ms, 120000); /* NLB UDP */
	assert_int_equal(c->vips[1].health.port, 53);
	assert_int_equal(c->vips[1].n_reals, 0);
	tg_l4_config_free(c);
}

static void test_example_file(void **state)
{
	(void)state;
	tg_l4_config_t *c = NULL;
	char err[TG_L4_ERR_MAX];
	int rc = tg_l4_config_load("examples/balancer.yaml", &c, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s", err);
	assert_int_equal(c->n_vips, 1);
	const tg_l4_vip_cfg_t *v = &c->vips[0];
	char a[INET6_ADDRSTRLEN];
	assert_string_equal(tg_l4_ip_format(&v->ip, a, sizeof(a)), "198.18.100.1");
	assert_int_equal(v->port, 80);
	assert_int_equal(v->forwarding, TG_L4_FWD_IPIP);
	assert_int_equal(v->n_reals, 3);
	assert_string_equal(tg_l4_ip_format(&v->reals[2].ip, a, sizeof(a)), "198.18.2.13");
	assert_int_equal(v->health.proto, TG_L4_HC_HTTP);
	assert_string_equal(v->health.path, "/healthz");
	assert_string_equal(c->zone, "a");
	tg_l4_config_free(c);
}

static void test_full(void **state)
{
	(void)state;
	tg_l4_config_t *c = parse_ok(
	    "interface: tg-lb1\nxdp-mode: generic\nadmin-listen: \"[::]:9000\"\nzone: b\n"
	    "encap-source-v4: 198.19.0.0\nencap-source-v6: \"fd00:7467:ffff:ffff::\"\n"
	    "max-new-flows-per-second: 100000\n"
	    "vips:\n"
	    "  - address: fd00:7467::100\n    port: 443\n    protocol: tcp\n"
	    "    forwarding: l2\n    hash: source-ip\n    ring-size: 251\n"
	    "    idle-timeout: 1m30s\n    deregistration-delay: 500ms\n    cross-zone: true\n"
	    "    health-check: {protocol: http, port: 8080, path: /ready?x=1, interval: 500ms,"
	    " timeout: 200ms, healthy-threshold: 1, unhealthy-threshold: 3}\n"
	    "    reals:\n"
	    "      - {address: \"fd00:7467::11\", weight: 3, zone: b}\n"
	    "      - address: fd00:7467::12\n");
	assert_int_equal(c->xdp_mode, TG_L4_XDP_GENERIC);
	assert_string_equal(c->admin_listen, "[::]:9000");
	assert_string_equal(c->zone, "b");
	assert_true(c->has_encap_src4 && c->has_encap_src6);
	assert_int_equal(c->max_new_flows_per_sec, 100000);
	const tg_l4_vip_cfg_t *v = &c->vips[0];
	assert_int_equal(v->ip.family, AF_INET6);
	assert_int_equal(v->forwarding, TG_L4_FWD_L2);
	assert_int_equal(v->hash, TG_L4_HASH_SRC_IP);
	assert_int_equal(v->ring_size, 251);
	assert_int_equal(v->idle_timeout_ms, 90000);
	assert_int_equal(v->dereg_delay_ms, 500);
	assert_true(v->cross_zone);
	assert_int_equal(v->health.proto, TG_L4_HC_HTTP);
	assert_int_equal(v->health.port, 8080);
	assert_string_equal(v->health.path, "/ready?x=1");
	assert_int_equal(v->health.interval_ms, 500);
	assert_int_equal(v->health.timeout_ms, 200);
	assert_int_equal(v->health.healthy_threshold, 1);
	assert_int_equal(v->health.unhealthy_threshold, 3);
	assert_int_equal(v->reals[0].weight, 3);
	assert_string_equal(v->reals[0].zone, "b");
	tg_l4_config_free(c);
}

static void test_field_errors(void **state)
{
	(void)state;
	parse_err(HEAD VIP0
		  "    reals:\n      - address: 198.18.2.11\n      - address: 198.18.2.12\n"
		  "      - address: 1.2.3\n",
		  "vips[0].reals[2].address: \"1.2.3\" is not an IPv4 or IPv6 address");
	parse_err(HEAD VIP0 "    ring-size: 65536\n",
		  "vips[0].ring-size: 65536 is not a prime number (Maglev needs a prime table "
		  "size, e.g. 65537)");
	parse_err(HEAD VIP0 "    port: 80\n" VIP0, "YAML syntax error at line 5, column 5: "
						   "duplicate key");
	parse_err(HEAD VIP0 VIP0,
		  "vips[1]: duplicate VIP 198.18.100.1 port 80/tcp (same as vips[0])");
	parse_err(HEAD VIP0 "    reals:\n      - address: fd00:7467::11\n",
		  "vips[0].reals[0].address: fd00:7467::11 is IPv6 but the VIP 198.18.100.1 is "
		  "IPv4; ipip forwarding needs the same family (IPIP or IP6IP6)");
	parse_err(HEAD VIP0
		  "    reals:\n      - address: 198.18.2.11\n      - address: 198.18.2.11\n",
		  "vips[0].reals[1].address: 198.18.2.11 is already listed as reals[0]");
	parse_err(HEAD VIP0 "    colour: blue\n", "vips[0].colour: unknown key");
	parse_err("interface: eth0\nfoo: 1\nvips: []\n", "foo: unknown key");
	parse_err(HEAD VIP0 "    health-check:\n      intervall: 5s\n",
		  "vips[0].health-check.intervall: unknown key");
	parse_err(HEAD VIP0 "    health-check:\n      interval: 5 s\n",
		  "vips[0].health-check.interval: \"5 s\" is not a duration (e.g. 500ms, 30s, 5m)");
	parse_err(HEAD VIP0 "    health-check:\n      interval: 1s\n      timeout: 2s\n",
		  "vips[0].health-check.timeout: 2000ms is longer than the interval (1000ms)");
	parse_err(HEAD VIP0 "    protocol: sctp\n",
		  "vips[0].protocol: \"sctp\" is not one of: tcp, udp");
	parse_err(HEAD VIP0 "    forwarding: gre\n",
		  "vips[0].forwarding: \"gre\" is not one of: ipip, l2");
	parse_err(HEAD VIP0 "    hash: random\n",
		  "vips[0].hash: \"random\" is not one of: 5-tuple, source-ip");
	parse_err(HEAD "  - address: 198.18.100.1\n    port: 70000\n",
		  "vips[0].port: \"70000\" is out of range (1..65535)");
	parse_err(HEAD VIP0 "    reals:\n      - address: 198.18.2.11\n        weight: 0\n",
		  "vips[0].reals[0].weight: \"0\" is out of range (1..65535)");
	parse_err(HEAD VIP0 "    reals:\n      - weight: 2\n",
		  "vips[0].reals[0]: address is required");
	parse_err(HEAD "  - port: 80\n", "vips[0]: address is required");
	parse_err(HEAD "  - address: 198.18.100.1\n", "vips[0]: port is required");
	parse_err(HEAD VIP0 "    cross-zone: maybe\n",
		  "vips[0].cross-zone: \"maybe\" is not true or false");
	parse_err(HEAD VIP0 "    idle-timeout: 0s\n",
		  "vips[0].idle-timeout: \"0s\" is out of range (1000ms..604800s)");
	parse_err(HEAD VIP0 "    reals: 198.18.2.11\n", "vips[0].reals: expected a list");
	parse_err(HEAD VIP0 "    health-check: [1]\n", "vips[0].health-check: expected a mapping");
	parse_err(HEAD VIP0 "    health-check:\n      path: no-slash\n",
		  "vips[0].health-check.path: \"no-slash\" is not a request path (starts with '/', "
		  "no spaces or control characters, under 256 bytes)");
	parse_err(HEAD VIP0 "    ring-size: 3\n    reals:\n      - address: 198.18.2.11\n"
			    "      - address: 198.18.2.12\n      - address: 198.18.2.13\n",
		  "vips[0]: ring-size 3 must be larger than the number of reals (3)");
	parse_err(HEAD "  - address: 198.18.100.1\n    port:\n", "vips[0].port: missing value");
	parse_err(HEAD VIP0 "    reals:\n      - address: 198.18.2.11\n        zone: \"a b\"\n",
		  "vips[0].reals[0].zone: \"a b\" is not a zone name (up to 31 letters, digits, "
		  "'-', '_', '.')");
	parse_err("interface: eth0\nadmin-listen: localhost\nvips: []\n",
		  "admin-listen: \"localhost\" is not an address:port (e.g. 0.0.0.0:10255, "
		  "[::]:10255)");
	parse_err("interface: eth0\nencap-source-v4: \"fd00::\"\nvips: []\n",
		  "encap-source-v4: expected an IPv4 address");
	parse_err("interface: eth0\nxdp-mode: offload\nvips: []\n",
		  "xdp-mode: \"offload\" is not one of: native, generic");
	parse_err("interface: \"a/b\"\nvips: []\n", "interface: \"a/b\" is not an interface name");
	parse_err(HEAD VIP0 "    reals:\n      - address: \"::ffff:1.2.3.4\"\n",
		  "vips[0].reals[0].address: \"::ffff:1.2.3.4\" is not an IPv4 or IPv6 address");
	parse_err(HEAD "  - address: \"198.18.100.1\\x01\"\n    port: 80\n",
		  "vips[0].address: \"198.18.100.1\\x01\" is not an IPv4 or IPv6 address");
}

static void test_document_errors(void **state)
{
	(void)state;
	parse_err("", "the configuration is empty or not valid YAML");
	parse_err("vips: []\n", "interface: required (the link XDP attaches to)");
	parse_err("interface: eth0\n", "vips: at least one VIP is required");
	parse_err("interface: eth0\nvips: []\n", "vips: at least one VIP is required");
	parse_err("interface: eth0\nvips: {a: 1}\n", "vips: expected a list");
	parse_err("- 1\n- 2\n", "the configuration must be a mapping (interface:, vips:, ...)");
	parse_err("just text\n", "the configuration must be a mapping (interface:, vips:, ...)");
	parse_err_prefix("interface: eth0\nvips: [\n", "YAML syntax error at line ");
	parse_err("interface: &i eth0\nzone: *i\nvips: []\n",
		  "zone: YAML aliases are not supported");
	parse_err("interface: eth0\n[a]: 1\nvips: []\n", "keys must be plain names");
	/* Invalid UTF-8 is refused before libfyaml sees it (0.7.12 loops
	 * forever on this one, found by fuzz_l4config). */
	static const char hang[] = "interface: t1\n%one: \xff\xff\n";
	parse_err(hang, "line 2: not valid UTF-8 text");
	parse_err("interface: eth0\nzone: \xc0\xafx\n", "line 2: not valid UTF-8 text");
	parse_err("interface: eth0\nzone: \xed\xa0\x80\n", "line 2: not valid UTF-8 text");
	parse_err("a: 1\n\nb: \xe2\x82", "line 3: not valid UTF-8 text");
	{
		static const char nul[] = "interface: eth0\0\n";
		tg_l4_config_t *c = NULL;
		char err[TG_L4_ERR_MAX];
		assert_int_equal(tg_l4_config_parse(nul, sizeof(nul) - 1, &c, err, sizeof(err)),
				 -EINVAL);
		assert_string_equal(err, "line 1: not valid UTF-8 text");
	}
	/* '' escapes are ordinary YAML (libfyaml 0.7.12 leaks 512 bytes on many of
	 * them: see tests/lsan.supp); they reach the field checks. */
	parse_err_prefix("interface: eth0\nzone: 'a''''''''''''b'\nvips: []\n", "zone: ");
	parse_err_prefix("interface: eth0\nzone: 'a''''''b'\nvips: []\n", "zone: ");
	/* Valid multi-byte text is fine (and then judged on its merits). */
	parse_err("interface: eth0\nzone: \xc3\xa9t\xc3\xa9\nvips: []\n",
		  "zone: \"\\xc3\\xa9t\\xc3\\xa9\" is not a zone name (up to 31 letters, digits, "
		  "'-', '_', '.')");
}

static void test_too_many_reals(void **state)
{
	(void)state;
	/* 5 VIPs x 1000 distinct reals: over the datapath's 4096 real ids. */
	size_t cap = 5 * 1000 * 40 + 1024, o = 0;
	char *y = malloc(cap);
	o += (size_t)snprintf(y + o, cap - o, "interface: eth0\nvips:\n");
	for (int v = 0; v < 5; v++) {
		o += (size_t)snprintf(y + o, cap - o,
				      "  - address: 198.18.100.1\n    port: %d\n    reals:\n",
				      80 + v);
		for (int r = 0; r < 1000; r++)
			o += (size_t)snprintf(y + o, cap - o, "      - address: 198.18.%d.%d\n",
					      10 + v * 4 + r / 250, r % 250 + 1);
	}
	parse_err(y, "vips: 5000 distinct real addresses; the datapath holds at most 4096");
	free(y);
}

static void test_load_errors(void **state)
{
	(void)state;
	tg_l4_config_t *c = NULL;
	char err[TG_L4_ERR_MAX];
	assert_int_equal(tg_l4_config_load("/nonexistent/balancer.yaml", &c, err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "/nonexistent/balancer.yaml: No such file or directory");
	assert_int_equal(tg_l4_config_load("/", &c, err, sizeof(err)), -EINVAL);
	assert_null(c);
	/* A reason from the parser is prefixed with the file name. */
	char path[] = "/tmp/tg-l4-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *y = HEAD VIP0 "    ring-size: 9\n";
	assert_int_equal(write(fd, y, strlen(y)), (ssize_t)strlen(y));
	close(fd);
	assert_int_equal(tg_l4_config_load(path, &c, err, sizeof(err)), -EINVAL);
	char want[256];
	snprintf(want, sizeof(want),
		 "%s: vips[0].ring-size: 9 is not a prime number (Maglev needs a prime table size, "
		 "e.g. 65537)",
		 path);
	assert_string_equal(err, want);
	unlink(path);
}

static void test_ip_helpers(void **state)
{
	(void)state;
	tg_l4_ip_t a, b;
	char buf[INET6_ADDRSTRLEN];
	assert_int_equal(tg_l4_ip_parse("198.18.2.11", 11, &a), 0);
	assert_string_equal(tg_l4_ip_format(&a, buf, sizeof(buf)), "198.18.2.11");
	assert_int_equal(tg_l4_ip_parse("fd00:7467::1", 12, &b), 0);
	assert_string_equal(tg_l4_ip_format(&b, buf, sizeof(buf)), "fd00:7467::1");
	assert_false(tg_l4_ip_eq(&a, &b));
	assert_int_equal(tg_l4_ip_parse("198.18.2.1", 10, &b), 0);
	assert_false(tg_l4_ip_eq(&a, &b));
	/* Slices are not NUL-terminated. */
	assert_int_equal(tg_l4_ip_parse("198.18.2.11xyz", 11, &b), 0);
	assert_true(tg_l4_ip_eq(&a, &b));
	assert_int_equal(tg_l4_ip_parse("", 0, &b), -EINVAL);
	assert_int_equal(tg_l4_ip_parse("1.2.3.4.5", 9, &b), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_example_file),
	    cmocka_unit_test(test_full),
	    cmocka_unit_test(test_field_errors),
	    cmocka_unit_test(test_document_errors),
	    cmocka_unit_test(test_too_many_reals),
	    cmocka_unit_test(test_load_errors),
	    cmocka_unit_test(test_ip_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

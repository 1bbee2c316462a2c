/*
 * test_annotations.c - ingress-nginx annotations a migrating user relies on:
 * unsupported protections refuse the Ingress (its routes answer 503, the last
 * good version is NOT kept), source ranges, auth-tls-match-cn, upstream TLS
 * profiles, redirects, and regex paths with ingress-nginx's ordering.
 */
#include "ingress_fixture.h"
#include "ingress/manifest.h"
#include "tls/upstream.h"

#include <arpa/inet.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define A "nginx.ingress.kubernetes.io/"

static tg_store_t *st;
static tg_snapshot_t *snap;
static tg_translator_t *tr;

static int setup(void **state)
{
	(void)state;
	st = tg_store_new();
	snap = NULL;
	tg_translate_config_t cfg = ingfx_config();
	tr = tg_translator_new(&cfg);
	if (!st || !tr || ingfx_services(st, "default", "a b c") ||
	    ingfx_apply(st, INGFX_CLASS) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tg_snapshot_release(snap);
	tg_translator_free(tr);
	tg_store_free(st);
	return 0;
}

/* Builds with the test's translator (kept across builds, like the process). */
static void build(void)
{
	tg_snapshot_release(snap);
	snap = tg_translator_build(tr, st, NULL);
	assert_non_null(snap);
}

/* Applies one Ingress `name` in default: host h.com, Prefix `path` -> svc:80,
 * with the annotation lines given (each "key: value"). Returns what
 * ingfx_apply returns (rejected objects). */
static int ingress(const char *name, const char *path, const char *svc, const char *ann)
{
	char yaml[4096];
	snprintf(yaml, sizeof(yaml),
		 "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: %s\n"
		 "  namespace: default\n%s%s"
		 "spec:\n  ingressClassName: tidegate\n  rules:\n  - host: h.com\n    http:\n"
		 "      paths:\n      - path: %s\n        pathType: Prefix\n"
		 "        backend: {service: {name: %s, port: {number: 80}}}\n",
		 name, ann && *ann ? "  annotations:\n" : "", ann ? ann : "", path, svc);
	return ingfx_apply(st, yaml);
}

static const tg_route_extra_t *extra_of(const char *path)
{
	const tg_route_t *r = ingfx_find(snap, "h.com", path);
	assert_non_null(r);
	return r->opts.extra;
}

static void assert_denied(const char *path, const char *needle)
{
	const tg_route_extra_t *x = extra_of(path);
	assert_non_null(x);
	assert_non_null(x->denied);
	if (!strstr(x->denied, needle))
		fail_msg("reason \"%s\" lacks \"%s\"", x->denied, needle);
}

/* ---- 1. unsupported protections ------------------------------------------ */

static void test_unsupported_protections_refuse(void **state)
{
	(void)state;
	static const char *const cases[] = {
	    "auth-url: \"http://auth.svc/verify\"",
	    "auth-type: basic",
	    "auth-secret: htpasswd",
	    "auth-realm: \"Authentication Required\"",
	    "auth-signin: \"https://login.example.com\"",
	    "satisfy: any",
	    "configuration-snippet: \"more_set_headers 'X: y';\"",
	    "server-snippet: \"location /x { deny all; }\"",
	    "auth-snippet: \"x\"",
	    "enable-modsecurity: \"true\"",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char ann[512];
		snprintf(ann, sizeof(ann), "    " A "%s\n", cases[i]);
		assert_int_equal(ingress("x", "/", "a", ann), 0); /* accepted, not rejected */
		build();
		const char *colon = strchr(cases[i], ':');
		char name[128];
		snprintf(name, sizeof(name), A "%.*s", (int)(colon - cases[i]), cases[i]);
		assert_denied("/", name);
		assert_denied("/", "not supported");
		assert_int_equal(snap->n_ingresses, 1); /* still owned: it claims h.com / */
	}
	/* Switched off, a protection asks for nothing. */
	assert_int_equal(ingress("x", "/", "a", "    " A "enable-modsecurity: \"false\"\n"), 0);
	build();
	assert_null(extra_of("/"));
	assert_string_equal(ingfx_route(snap, "h.com", "/"), "a:80");
}

static void test_refusal_does_not_keep_last_good(void **state)
{
	(void)state;
	/* Served openly first ... */
	assert_int_equal(ingress("x", "/admin", "a", NULL), 0);
	assert_int_equal(ingress("y", "/", "b", NULL), 0);
	build();
	assert_string_equal(ingfx_route(snap, "h.com", "/admin/users"), "a:80");
	/* ... then the owner asks for an authentication tidegate cannot do: the
	 * new version replaces the old one (never served without it), and its
	 * paths do not fall through to y's "/". */
	assert_int_equal(ingress("x", "/admin", "a", "    " A "auth-url: \"http://auth/\"\n"), 0);
	build();
	assert_denied("/admin/users", "auth-url");
	assert_string_equal(ingfx_route(snap, "h.com", "/other"), "b:80");
	/* Removing the annotation serves it again. */
	assert_int_equal(ingress("x", "/admin", "a", NULL), 0);
	build();
	assert_null(extra_of("/admin/users"));
}

static void test_backend_protocols_refused(void **state)
{
	(void)state;
	static const struct {
		const char *proto, *needle;
	} cases[] = {{"GRPC", "backend-protocol: GRPC needs HTTP/2 to the backend"},
		     {"grpcs", "needs HTTP/2 to the backend"},
		     {"AJP", "backend-protocol: AJP is not supported"},
		     {"FCGI", "backend-protocol: FCGI is not supported"}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char ann[256];
		snprintf(ann, sizeof(ann), "    " A "backend-protocol: %s\n", cases[i].proto);
		assert_int_equal(ingress("x", "/", "a", ann), 0);
		build();
		assert_denied("/", cases[i].needle);
	}
	/* AUTO_HTTP is HTTP/1.1; an unknown protocol is a bad value (the last
	 * good version stays). */
	assert_int_equal(ingress("x", "/", "a", "    " A "backend-protocol: AUTO_HTTP\n"), 0);
	build();
	assert_null(extra_of("/"));
	assert_int_equal(ingress("x", "/", "b", "    " A "backend-protocol: SPDY\n"), 1);
	build();
	assert_string_equal(ingfx_route(snap, "h.com", "/"), "a:80");
}

/* ---- 2. source ranges ----------------------------------------------------- */

static bool allowed(const tg_route_extra_t *x, const char *ip)
{
	uint8_t a[16] = {0};
	int fam = strchr(ip, ':') ? AF_INET6 : AF_INET;
	assert_int_equal(inet_pton(fam, ip, a), 1);
	if (x->n_deny && tg_cidr_match(x->deny, x->n_deny, fam, a))
		return false;
	return !x->n_allow || tg_cidr_match(x->allow, x->n_allow, fam, a);
}

static void test_source_ranges(void **state)
{
	(void)state;
	assert_int_equal(ingress("x", "/", "a",
				 "    " A "whitelist-source-range: \"10.0.0.0/8, fd00:7467::/32\"\n"
				 "    " A "denylist-source-range: \"10.9.0.0/16\"\n"),
			 0);
	build();
	const tg_route_extra_t *x = extra_of("/");
	assert_non_null(x);
	assert_null(x->denied);
	assert_int_equal(x->n_allow, 2);
	assert_true(allowed(x, "10.1.2.3"));
	assert_false(allowed(x, "10.9.2.3"));	 /* denylist first */
	assert_false(allowed(x, "192.168.1.1")); /* not in the list */
	assert_true(allowed(x, "fd00:7467::5"));
	assert_false(allowed(x, "fd00:7468::5"));
	assert_true(allowed(x, "::ffff:10.0.0.1")); /* v4-mapped counts as IPv4 */

	/* allowlist- is the newer name and wins over whitelist-. */
	assert_int_equal(ingress("x", "/", "a",
				 "    " A "whitelist-source-range: \"10.0.0.0/8\"\n"
				 "    " A "allowlist-source-range: \"192.168.0.0/16\"\n"),
			 0);
	build();
	x = extra_of("/");
	assert_true(allowed(x, "192.168.3.4"));
	assert_false(allowed(x, "10.0.0.1"));
}

static void test_bad_source_range_refuses(void **state)
{
	(void)state;
	assert_int_equal(
	    ingress("x", "/", "a", "    " A "whitelist-source-range: \"10.0.0.0/8\"\n"), 0);
	build();
	assert_null(extra_of("/")->denied);
	/* A typo must not leave the previous list (or none) in force silently:
	 * the Ingress is refused with the reason. */
	static const char *const bad[] = {"10.0.0.0/33", "10.0.0.300", "10.0.0.0/8,,", "everyone",
					  "\"\""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char ann[256];
		snprintf(ann, sizeof(ann), "    " A "whitelist-source-range: %s\n", bad[i]);
		assert_int_equal(ingress("x", "/", "a", ann), 0);
		build();
		assert_denied("/", "whitelist-source-range: bad value");
	}
}

static void test_global_source_ranges(void **state)
{
	(void)state;
	assert_int_equal(ingfx_apply(st, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "
					 "tidegate, namespace: tidegate-system}\n"
					 "data: {whitelist-source-range: \"198.18.0.0/15\"}\n"),
			 0);
	assert_int_equal(ingress("x", "/", "a", NULL), 0);
	assert_int_equal(ingress("y", "/own", "b", "    " A "whitelist-source-range: 10.0.0.1\n"),
			 0);
	build();
	const tg_route_extra_t *x = extra_of("/");
	assert_non_null(x); /* the ConfigMap's list is the default ... */
	assert_true(allowed(x, "198.19.0.1"));
	assert_false(allowed(x, "10.0.0.1"));
	x = extra_of("/own");
	assert_true(allowed(x, "10.0.0.1")); /* ... an annotation replaces it */
	assert_false(allowed(x, "198.19.0.1"));

	/* A bad global value fails closed for the routes it governs. */
	assert_int_equal(ingfx_apply(st, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "
					 "tidegate, namespace: tidegate-system}\n"
					 "data: {whitelist-source-range: \"198.18.0.0/99\"}\n"),
			 0);
	build();
	assert_denied("/", "ConfigMap");
	assert_true(snap->settings.ranges_bad);
}

/* ---- auth-tls-match-cn ---------------------------------------------------- */

static void test_match_cn(void **state)
{
	(void)state;
	assert_int_equal(ingress("x", "/", "a",
				 "    " A "auth-tls-secret: default/ca\n"
				 "    " A "auth-tls-match-cn: \"CN=(alice|bob)\"\n"),
			 0);
	build();
	const tg_route_extra_t *x = extra_of("/");
	assert_non_null(x->match_cn);
	/* Matched against the subject DN, unanchored, as nginx's !~ does. */
	assert_int_equal(regexec(x->match_cn, "CN=alice,O=Example", 0, NULL, 0), 0);
	assert_int_equal(regexec(x->match_cn, "O=Example,CN=bob", 0, NULL, 0), 0);
	assert_int_not_equal(regexec(x->match_cn, "CN=mallory", 0, NULL, 0), 0);

	/* Without a client-certificate policy there is nothing to check. */
	assert_int_equal(ingress("x", "/", "a", "    " A "auth-tls-match-cn: \"CN=alice\"\n"), 0);
	build();
	assert_denied("/", "auth-tls-secret");
	/* Bad patterns refuse the Ingress. */
	assert_int_equal(ingress("x", "/", "a",
				 "    " A "auth-tls-secret: ca\n    " A
				 "auth-tls-match-cn: \"CN=(a\"\n"),
			 0);
	build();
	assert_denied("/", "auth-tls-match-cn: bad value");
	assert_int_equal(ingress("x", "/", "a",
				 "    " A "auth-tls-secret: ca\n    " A
				 "auth-tls-match-cn: alice\n"),
			 0);
	build();
	assert_denied("/", "want CN=");
}

/* ---- 3. upstream TLS -------------------------------------------------------- */

#define CA_B64                                                                                     \
	"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJlakNDQVNHZ0F3SUJBZ0lVSWpUVTBqRUkzOVU3azZCV1JE" \
	"SEpFN0pzWTlRd0NnWUlLb1pJemowRUF3SXcKRWpFUU1BNEdBMVVFQXd3SGRXNXBkQ0JEUVRBZ0Z3MHlOakV4TWpZ" \
	"eE1URXhNemxhR0E4eU1USTJNVEV3TWpFeApNVEV6T1Zvd0VqRVFNQTRHQTFVRUF3d0hkVzVwZENCRFFUQlpNQk1H" \
	"QnlxR1NNNDlBZ0VHQ0NxR1NNNDlBd0VICkEwSUFCTml6TUhjcDRnVEd2NnFCMFhqS3lycHJIVUwra242aGlibjFP" \
	"R0hKRlBxNXY4b2k3bXZpcU9wZHR3K2QKWlRDaWh3em5aTndCRmRDMlo2Sk42UlhvdXV5alV6QlJNQjBHQTFVZERn" \
	"UVdCQlFiYnZYY3RzVWJGSUVPQk1odwpLeVZQdTJCaTREQWZCZ05WSFNNRUdEQVdnQlFiYnZYY3RzVWJGSUVPQk1o" \
	"d0t5VlB1MkJpNERBUEJnTlZIUk1CCkFmOEVCVEFEQVFIL01Bb0dDQ3FHU000OUJBTUNBMGNBTUVRQ0lEdVJuUklr" \
	"ZUdoc25MblZGS0RzcGhFY2lUVSsKMFZqOENhWVdIaUJzNldqN0FpQUFyam1YQ3ZhbE5WcDZLV1FNdiswb28zVGVp" \
	"ZnhnQjErMjQ0aExiZlJYd2c9PQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg=="

static void test_https_profiles(void **state)
{
	(void)state;
	/* Plain backend-protocol HTTPS: no SNI, no verification (nginx defaults). */
	assert_int_equal(ingress("x", "/", "a", "    " A "backend-protocol: HTTPS\n"), 0);
	build();
	const tg_route_extra_t *x = extra_of("/");
	assert_non_null(x->up_tls);
	assert_null(x->denied);
	tg_tls_upstream_t *first = x->up_tls;
	uint64_t key = tg_tls_upstream_key(first);
	/* A rebuild for an unrelated change reuses the profile (no new SSL_CTX). */
	assert_int_equal(ingress("z", "/z", "c", NULL), 0);
	build();
	assert_ptr_equal(extra_of("/")->up_tls, first);

	/* Verification needs the backend's CA. */
	assert_int_equal(ingress("x", "/", "a",
				 "    " A "backend-protocol: HTTPS\n    " A
				 "proxy-ssl-verify: \"on\"\n"),
			 0);
	build();
	assert_denied("/", "proxy-ssl-secret");
	/* A Secret that does not exist: 503, as ingress-nginx denies the location. */
	assert_int_equal(ingress("x", "/", "a",
				 "    " A "backend-protocol: HTTPS\n    " A
				 "proxy-ssl-verify: \"on\"\n"
				 "    " A "proxy-ssl-secret: default/backend-ca\n"
				 "    " A "proxy-ssl-name: a.default.svc\n"
				 "    " A "proxy-ssl-server-name: \"on\"\n"),
			 0);
	build();
	assert_denied("/", "not found");
	/* Now it exists: a profile with another key (verification, SNI). */
	assert_int_equal(ingfx_apply(st, "apiVersion: v1\nkind: Secret\nmetadata: {name: "
					 "backend-ca, namespace: default}\n"
					 "data: {ca.crt: " CA_B64 "}\n"),
			 0);
	build();
	x = extra_of("/");
	assert_null(x->denied);
	assert_non_null(x->up_tls);
	assert_true(tg_tls_upstream_key(x->up_tls) != key);
	/* A broken ca.crt: 503 with the reason. */
	assert_int_equal(ingfx_apply(st, "apiVersion: v1\nkind: Secret\nmetadata: {name: "
					 "backend-ca, namespace: default}\n"
					 "data: {ca.crt: bm90IGEgY2VydGlmaWNhdGU=}\n"),
			 0);
	build();
	assert_denied("/", "ca.crt");
	/* Another namespace's Secret is refused (ingress-nginx's default). */
	assert_int_equal(ingress("x", "/", "a",
				 "    " A "backend-protocol: HTTPS\n"
				 "    " A "proxy-ssl-secret: other/backend-ca\n"),
			 0);
	build();
	assert_denied("/", "another namespace");
	/* proxy-ssl-verify must be on or off: an unreadable value refuses. */
	assert_int_equal(ingress("x", "/", "a",
				 "    " A "backend-protocol: HTTPS\n    " A
				 "proxy-ssl-verify: yes\n"),
			 0);
	build();
	assert_denied("/", "proxy-ssl-verify: bad value");
}

/* ---- 4. routing annotations --------------------------------------------------- */

static void test_redirects(void **state)
{
	(void)state;
	assert_int_equal(ingress("x", "/", "a",
				 "    " A
				 "permanent-redirect: \"https://new.example.com$request_uri\"\n"
				 "    " A "permanent-redirect-code: \"308\"\n"
				 "    " A "temporal-redirect: \"https://tmp.example.com/\"\n"),
			 0);
	build();
	const tg_route_extra_t *x = extra_of("/");
	assert_string_equal(x->redirect_url, "https://new.example.com$request_uri");
	assert_int_equal(x->redirect_code, 308); /* permanent wins, with its code */
	assert_int_equal(
	    ingress("x", "/", "a", "    " A "temporal-redirect: \"http://t.example/\"\n"), 0);
	build();
	x = extra_of("/");
	assert_int_equal(x->redirect_code, 302);
	/* Bad values are ordinary rejections: the last good version stays. */
	assert_int_equal(ingress("x", "/", "b", "    " A "permanent-redirect: \"ftp://x/\"\n"), 1);
	assert_int_equal(ingress("x", "/", "b", "    " A "permanent-redirect-code: \"200\"\n"), 1);
	assert_int_equal(ingress("x", "/", "b", "    " A "app-root: \"app\"\n"), 1);
	assert_int_equal(ingress("x", "/", "b", "    " A "upstream-vhost: \"a b\"\n"), 1);
	build();
	assert_int_equal(extra_of("/")->redirect_code, 302);
	assert_int_equal(ingress("x", "/", "a",
				 "    " A "app-root: /app\n    " A "upstream-vhost: internal.svc\n"
				 "    " A "x-forwarded-prefix: /api\n"),
			 0);
	build();
	x = extra_of("/");
	assert_string_equal(x->app_root, "/app");
	assert_string_equal(x->upstream_vhost, "internal.svc");
	assert_string_equal(x->x_forwarded_prefix, "/api");
	assert_null(x->redirect_url);
}

static void test_regex_paths(void **state)
{
	(void)state;
	assert_int_equal(ingress("x", "/foo/.+", "a", "    " A "use-regex: \"true\"\n"), 0);
	assert_int_equal(ingress("y", "/foo/bar", "b", NULL), 0);
	assert_int_equal(ingress("z", "/api", "c", NULL), 0);
	/* Another host without regex keeps segment-wise Prefix matching. */
	assert_int_equal(
	    ingfx_apply(st, "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
			    "  name: other\n  namespace: default\nspec:\n  ingressClassName: "
			    "tidegate\n  rules:\n  - host: g.com\n    http:\n      paths:\n"
			    "      - {path: /api, pathType: Prefix, backend: {service: {name: c, "
			    "port: {number: 80}}}}\n"),
	    0);
	build();
	/* Longer path text first: /foo/bar (8) before /foo/.+ (7). */
	assert_string_equal(ingfx_route(snap, "h.com", "/foo/bar"), "b:80");
	assert_string_equal(ingfx_route(snap, "h.com", "/foo/baz"), "a:80");
	assert_string_equal(ingfx_route(snap, "h.com", "/FOO/Baz"), "a:80"); /* ~* */
	assert_string_equal(ingfx_route(snap, "h.com", "/foo/"), "404");
	/* y's and z's paths became regexes too (the whole host does, as in
	 * ingress-nginx): "^/api" matches /apiv2, "^/foo/bar" /foo/barn. */
	assert_string_equal(ingfx_route(snap, "h.com", "/apiv2"), "c:80");
	assert_string_equal(ingfx_route(snap, "h.com", "/foo/barn"), "b:80");
	assert_string_equal(ingfx_route(snap, "g.com", "/apiv2"), "404");
	assert_string_equal(ingfx_route(snap, "g.com", "/api/v2"), "c:80");

	/* rewrite-target gives each route its own compiled path for $N. */
	assert_int_equal(ingress("x", "/foo(/|$)(.*)", "a", "    " A "rewrite-target: /$2\n"), 0);
	build();
	const tg_route_t *r = ingfx_find(snap, "h.com", "/foo/x/y");
	assert_non_null(r);
	assert_string_equal(r->backend->service, "a");
	assert_non_null(r->opts.extra->rewrite_re);
	assert_string_equal(r->opts.extra->rewrite_target, "/$2");
	regmatch_t m[3];
	assert_int_equal(regexec(r->opts.extra->rewrite_re, "/foo/x/y", 3, m, 0), 0);
	assert_int_equal(m[2].rm_so, 5);
	/* Patterns that would blow regcomp up are refused, not compiled. */
	assert_int_equal(
	    ingress("x", "/((a{100}){100}){100}", "a", "    " A "use-regex: \"true\"\n"), 0);
	build();
	assert_denied("/((a{100}){100}){100}", "repetition bounds too large");
	/* An invalid ERE answers 503 with the reason instead of matching nothing. */
	assert_int_equal(ingress("x", "/foo(", "a", "    " A "use-regex: \"true\"\n"), 0);
	build();
	assert_denied("/foo(", "not a valid POSIX extended regular expression");
}

static void test_canary_not_routed(void **state)
{
	(void)state;
	/* The canary is older: routed, it would take every request. */
	assert_int_equal(ingress("canary", "/", "b",
				 "    " A "canary: \"true\"\n    " A "canary-weight: \"10\"\n"),
			 0);
	assert_int_equal(ingress("main", "/", "a", NULL), 0);
	build();
	assert_string_equal(ingfx_route(snap, "h.com", "/"), "a:80");
	assert_int_equal(snap->n_ingresses, 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_unsupported_protections_refuse),
	    T(test_refusal_does_not_keep_last_good),
	    T(test_backend_protocols_refused),
	    T(test_source_ranges),
	    T(test_bad_source_range_refuses),
	    T(test_global_source_ranges),
	    T(test_match_cn),
	    T(test_https_profiles),
	    T(test_redirects),
	    T(test_regex_paths),
	    T(test_canary_not_routed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_router.c - Ingress v1 host and path semantics as a client sees them:
 * which Service answers a request (conformance-suite behaviour).
 */
#include "ingress_fixture.h"
#include "ingress/manifest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/*
 * Adds one Ingress (class tidegate) from a compact spec: entries separated by
 * ';', each "HOST PATH TYPE SERVICE" (HOST "-" for a rule without host, TYPE
 * E/P/I for Exact/Prefix/ImplementationSpecific) or "default SERVICE".
 * ts may be NULL (no creationTimestamp).
 */
static int add_ing(tg_store_t *st, const char *ns, const char *name, const char *ts,
		   const char *spec)
{
	char yaml[16384];
	size_t off = 0;
	off += (size_t)snprintf(yaml + off, sizeof(yaml) - off,
				"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
				"  name: %s\n  namespace: %s\n",
				name, ns);
	if (ts)
		off += (size_t)snprintf(yaml + off, sizeof(yaml) - off,
					"  creationTimestamp: \"%s\"\n", ts);
	off += (size_t)snprintf(yaml + off, sizeof(yaml) - off,
				"spec:\n  ingressClassName: tidegate\n  rules:\n");
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", spec);
	char *save = NULL;
	char dflt[64] = "";
	for (char *e = strtok_r(buf, ";", &save); e; e = strtok_r(NULL, ";", &save)) {
		char host[128], path[256], type[8], svc[64];
		while (*e == ' ')
			e++;
		if (sscanf(e, "default %63s", svc) == 1) {
			snprintf(dflt, sizeof(dflt), "%s", svc);
			continue;
		}
		if (sscanf(e, "%127s %255s %7s %63s", host, path, type, svc) != 4)
			return -1;
		const char *t = type[0] == 'E'	 ? "Exact"
				: type[0] == 'P' ? "Prefix"
						 : "ImplementationSpecific";
		if (strcmp(host, "-") == 0)
			off += (size_t)snprintf(yaml + off, sizeof(yaml) - off, "  - http:\n");
		else
			off += (size_t)snprintf(yaml + off, sizeof(yaml) - off,
						"  - host: \"%s\"\n    http:\n", host);
		off +=
		    (size_t)snprintf(yaml + off, sizeof(yaml) - off,
				     "      paths:\n      - path: \"%s\"\n        pathType: %s\n"
				     "        backend: {service: {name: %s, port: {number: 80}}}\n",
				     path, t, svc);
	}
	if (dflt[0])
		off += (size_t)snprintf(
		    yaml + off, sizeof(yaml) - off,
		    "  defaultBackend: {service: {name: %s, port: {number: 80}}}\n", dflt);
	if (off >= sizeof(yaml))
		return -1;
	return ingfx_apply(st, yaml);
}

typedef struct fx {
	tg_store_t *st;
	tg_snapshot_t *s;
} fx_t;

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof(*f));
	f->st = tg_store_new();
	assert_int_equal(ingfx_apply(f->st, INGFX_CLASS), 0);
	assert_int_equal(ingfx_services(f->st, "default", "a b c d e f g h"), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	tg_snapshot_release(f->s);
	tg_store_free(f->st);
	free(f);
	return 0;
}

static void build(fx_t *f)
{
	tg_snapshot_release(f->s);
	f->s = ingfx_build(f->st, NULL);
	assert_non_null(f->s);
}

#define ROUTE(host, path, want) assert_string_equal(ingfx_route(f->s, host, path), want)

static void test_exact_host_case_and_port(void **state)
{
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", NULL, "foo.bar.com / P a"), 0);
	build(f);
	ROUTE("foo.bar.com", "/", "a:80");
	ROUTE("FOO.Bar.COM", "/x", "a:80");
	ROUTE("foo.bar.com:8080", "/", "a:80");
	ROUTE("foo.bar.com.", "/", "a:80");
	ROUTE("bar.com", "/", "404");
	ROUTE("xfoo.bar.com", "/", "404");
	ROUTE("", "/", "404");
}

static void test_wildcard_one_label(void **state)
{
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", NULL, "*.foo.com / P a"), 0);
	build(f);
	ROUTE("bar.foo.com", "/", "a:80");
	ROUTE("BAZ.FOO.COM:443", "/p", "a:80");
	ROUTE("foo.com", "/", "404");	    /* the wildcard needs one label */
	ROUTE("a.bar.foo.com", "/", "404"); /* ...and exactly one */
	ROUTE(".foo.com", "/", "404");
}

static void test_precise_beats_wildcard(void **state)
{
	fx_t *f = *state;
	assert_int_equal(
	    add_ing(f->st, "default", "i1", NULL, "*.foo.com / P a; exact.foo.com / P b"), 0);
	build(f);
	ROUTE("exact.foo.com", "/", "b:80");
	ROUTE("other.foo.com", "/", "a:80");
}

static void test_host_selects_one_rule_set(void **state)
{
	/* The host is matched first and picks one rule set (precise, else
	 * wildcard, else rules without host); a host's unmatched paths never
	 * fall through to another set: they get the host's declaring Ingress's
	 * defaultBackend (here d). */
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", NULL,
				 "x.foo.com /api P a; *.foo.com /w P b; - /any P c; default d"),
			 0);
	build(f);
	ROUTE("x.foo.com", "/api/v1", "a:80");
	ROUTE("x.foo.com", "/w", "d:80");	  /* not the wildcard's /w */
	ROUTE("x.foo.com", "/any/thing", "d:80"); /* not the host-less /any */
	ROUTE("x.foo.com", "/nothing", "d:80");
	ROUTE("y.foo.com", "/w/1", "b:80");
	ROUTE("y.foo.com", "/any", "d:80"); /* the wildcard's set, not the host-less one */
	ROUTE("unrelated.org", "/any", "c:80");
	ROUTE("unrelated.org", "/", "d:80");
}

static void test_host_without_default_is_404(void **state)
{
	/* The Ingress declaring x.foo.com has no defaultBackend: its unmatched
	 * paths are 404 even though a wildcard, host-less rules and another
	 * Ingress's defaultBackend exist (ingress-nginx's server block). */
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", "2024-01-01T00:00:00Z",
				 "x.foo.com /api P a; *.foo.com / P b; - / P c"),
			 0);
	assert_int_equal(add_ing(f->st, "default", "i2", "2024-01-02T00:00:00Z", "default d"), 0);
	build(f);
	ROUTE("x.foo.com", "/api", "a:80");
	ROUTE("x.foo.com", "/other", "404");
	assert_null(ingfx_find(f->s, "x.foo.com", "/other"));
	ROUTE("y.foo.com", "/other", "b:80");
	ROUTE("elsewhere.org", "/other", "c:80");
}

static void test_host_fallback_from_first_declaring_ingress(void **state)
{
	/* Two Ingresses share h.com: paths merge, and the unmatched paths get the
	 * defaultBackend of the older one only, whatever the younger says. */
	fx_t *f = *state;
	assert_int_equal(
	    add_ing(f->st, "default", "young", "2024-05-01T00:00:00Z", "h.com /y P b; default c"),
	    0);
	assert_int_equal(
	    add_ing(f->st, "default", "old", "2023-05-01T00:00:00Z", "h.com /o P a; default d"), 0);
	build(f);
	ROUTE("h.com", "/o", "a:80");
	ROUTE("h.com", "/y", "b:80");
	ROUTE("h.com", "/z", "d:80");
	assert_string_equal(ingfx_find(f->s, "h.com", "/z")->ingress_name, "old");
	/* The older one loses its defaultBackend: h.com was still declared by it
	 * first, so unmatched paths become 404 (not the younger's c). */
	assert_int_equal(add_ing(f->st, "default", "old", "2023-05-01T00:00:00Z", "h.com /o P a"),
			 0);
	build(f);
	ROUTE("h.com", "/z", "404");
	ROUTE("other.com", "/", "c:80"); /* the global default: first with one */
}

static void test_host_rule_without_paths(void **state)
{
	/* "rules: [{host: h.com}]" with a defaultBackend sends all of h.com
	 * there, and claims the host away from the wildcard. */
	fx_t *f = *state;
	const char *yaml = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
			   "  name: bare\n  namespace: default\n"
			   "  creationTimestamp: \"2024-01-01T00:00:00Z\"\n"
			   "spec:\n  ingressClassName: tidegate\n"
			   "  rules:\n  - host: h.foo.com\n"
			   "  defaultBackend: {service: {name: e, port: {number: 80}}}\n";
	assert_int_equal(ingfx_apply(f->st, yaml), 0);
	assert_int_equal(
	    add_ing(f->st, "default", "wild", "2024-02-01T00:00:00Z", "*.foo.com / P a"), 0);
	build(f);
	ROUTE("h.foo.com", "/", "e:80");
	ROUTE("h.foo.com", "/deep/path", "e:80");
	ROUTE("g.foo.com", "/", "a:80");
}

static void test_host_fallback_root_prefix_wins(void **state)
{
	/* A Prefix "/" path of the host (from any Ingress) beats the host's
	 * fallback, like a "/" location replacing nginx's default one. */
	fx_t *f = *state;
	assert_int_equal(
	    add_ing(f->st, "default", "i1", "2024-01-01T00:00:00Z", "h.com /x P a; default d"), 0);
	assert_int_equal(add_ing(f->st, "default", "i2", "2024-01-02T00:00:00Z", "h.com / P b"), 0);
	build(f);
	ROUTE("h.com", "/x/1", "a:80");
	ROUTE("h.com", "/anything", "b:80");
}

static void test_rule_without_host_applies_to_all(void **state)
{
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", NULL, "- / P a"), 0);
	build(f);
	ROUTE("anything.example", "/", "a:80");
	ROUTE("", "/x/y", "a:80");
	/* No Host field at all (HTTP/1.0): the proxy passes a NULL slice. */
	tg_str_t none = {NULL, 0}, path = {"/x", 2};
	const tg_route_t *r = tg_snapshot_route(f->s, none, path);
	assert_non_null(r);
	assert_string_equal(r->backend->service, "a");
	ROUTE("[fd00::1]:80", "/", "a:80");
}

static void test_prefix_segments(void **state)
{
	fx_t *f = *state;
	assert_int_equal(
	    add_ing(f->st, "default", "i1", NULL, "h.com /foo P a; h.com /aaa/bbb/ P b"), 0);
	build(f);
	ROUTE("h.com", "/foo", "a:80");
	ROUTE("h.com", "/foo/", "a:80");
	ROUTE("h.com", "/foo/bar", "a:80");
	ROUTE("h.com", "/foobar", "404");
	ROUTE("h.com", "/fo", "404");
	ROUTE("h.com", "/", "404");
	/* trailing slash on the rule is ignored */
	ROUTE("h.com", "/aaa/bbb", "b:80");
	ROUTE("h.com", "/aaa/bbb/", "b:80");
	ROUTE("h.com", "/aaa/bbb/ccc", "b:80");
	ROUTE("h.com", "/aaa/bbbxyz", "404");
	ROUTE("h.com", "/aaa", "404");
}

static void test_root_prefix_matches_everything(void **state)
{
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", NULL, "h.com / P a"), 0);
	build(f);
	ROUTE("h.com", "/", "a:80");
	ROUTE("h.com", "/anything/at/all", "a:80");
	ROUTE("h.com", "", "a:80");
}

static void test_exact(void **state)
{
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", NULL, "h.com /foo E a"), 0);
	build(f);
	ROUTE("h.com", "/foo", "a:80");
	ROUTE("h.com", "/foo/", "404");
	ROUTE("h.com", "/foo/bar", "404");
	ROUTE("h.com", "/FOO", "404"); /* case-sensitive */
}

static void test_exact_beats_prefix_and_longest_wins(void **state)
{
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", NULL,
				 "h.com /foo P a; h.com /foo E b; h.com /foo/bar P c; "
				 "h.com /foo/bar/baz E d; h.com / P e"),
			 0);
	build(f);
	ROUTE("h.com", "/foo", "b:80");
	ROUTE("h.com", "/foo/", "a:80");
	ROUTE("h.com", "/foo/x", "a:80");
	ROUTE("h.com", "/foo/bar", "c:80");
	ROUTE("h.com", "/foo/bar/baz", "d:80");
	ROUTE("h.com", "/foo/bar/baz/", "c:80");
	ROUTE("h.com", "/other", "e:80");
}

static void test_paths_case_sensitive(void **state)
{
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", NULL, "h.com /Foo P a; h.com /foo P b"),
			 0);
	build(f);
	ROUTE("h.com", "/Foo/x", "a:80");
	ROUTE("h.com", "/foo/x", "b:80");
	ROUTE("h.com", "/FOO", "404");
}

static void test_implementation_specific_is_prefix(void **state)
{
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", NULL, "h.com /api I a"), 0);
	build(f);
	ROUTE("h.com", "/api", "a:80");
	ROUTE("h.com", "/api/x", "a:80");
	ROUTE("h.com", "/apix", "404");
	const tg_route_t *r = ingfx_find(f->s, "h.com", "/api/x");
	assert_non_null(r);
	assert_int_equal(r->path_type, TG_PATH_PREFIX);
}

static void test_conflict_older_wins(void **state)
{
	fx_t *f = *state;
	/* Applied newest first: the order must come from the timestamps. */
	assert_int_equal(add_ing(f->st, "default", "new", "2024-06-01T00:00:00Z",
				 "h.com /x P b; h.com /only-new P b"),
			 0);
	assert_int_equal(add_ing(f->st, "default", "old", "2024-01-01T00:00:00Z", "h.com /x P a"),
			 0);
	build(f);
	ROUTE("h.com", "/x", "a:80");
	ROUTE("h.com", "/only-new", "b:80"); /* non-conflicting paths merge */
	const tg_route_t *r = ingfx_find(f->s, "h.com", "/x");
	assert_string_equal(r->ingress_name, "old");
}

static void test_conflict_same_time_by_namespace_then_name(void **state)
{
	fx_t *f = *state;
	assert_int_equal(ingfx_services(f->st, "alpha", "a"), 0);
	assert_int_equal(ingfx_services(f->st, "beta", "b"), 0);
	const char *ts = "2024-01-01T00:00:00Z";
	assert_int_equal(add_ing(f->st, "beta", "a-first-by-name", ts, "h.com / P b"), 0);
	assert_int_equal(add_ing(f->st, "alpha", "z-last-by-name", ts, "h.com / P a"), 0);
	assert_int_equal(add_ing(f->st, "default", "zz", ts, "g.com / P c"), 0);
	assert_int_equal(add_ing(f->st, "default", "aa", ts, "g.com / P d"), 0);
	build(f);
	ROUTE("h.com", "/", "a:80"); /* namespace alpha < beta */
	ROUTE("g.com", "/", "d:80"); /* same namespace: name aa < zz */
}

static void test_conflict_trailing_slash_same_prefix(void **state)
{
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", "2024-01-01T00:00:00Z", "h.com /p/ P a"),
			 0);
	assert_int_equal(add_ing(f->st, "default", "i2", "2024-01-02T00:00:00Z", "h.com /p P b"),
			 0);
	build(f);
	ROUTE("h.com", "/p", "a:80");
	ROUTE("h.com", "/p/q", "a:80");
}

static void test_default_backend_oldest(void **state)
{
	fx_t *f = *state;
	assert_int_equal(
	    add_ing(f->st, "default", "young", "2024-05-01T00:00:00Z", "h.com /x P a; default b"),
	    0);
	assert_int_equal(
	    add_ing(f->st, "default", "old", "2023-05-01T00:00:00Z", "g.com /y P a; default c"), 0);
	build(f);
	ROUTE("h.com", "/x", "a:80");
	ROUTE("h.com", "/nope", "b:80"); /* h.com's own Ingress's defaultBackend */
	ROUTE("nobody.com", "/", "c:80");
	const tg_route_t *r = ingfx_find(f->s, "nobody.com", "/");
	assert_string_equal(r->ingress_name, "old");
}

static void test_no_match_is_null(void **state)
{
	fx_t *f = *state;
	assert_int_equal(add_ing(f->st, "default", "i1", NULL, "h.com /x P a"), 0);
	build(f);
	assert_null(ingfx_find(f->s, "h.com", "/y"));
	assert_null(ingfx_find(f->s, "g.com", "/x"));
}

static void test_empty_store(void **state)
{
	fx_t *f = *state;
	build(f);
	assert_null(ingfx_find(f->s, "h.com", "/"));
	assert_int_equal(f->s->n_backends, 0);
	assert_int_equal(f->s->n_ingresses, 0);
}

static void test_many_hosts(void **state)
{
	/* Thousands of hosts, every one resolvable, none confused with another. */
	fx_t *f = *state;
	enum { N = 3000 };
	char spec[128], name[32], host[64];
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "i%d", i);
		snprintf(spec, sizeof(spec), "host-%d.example.com /p%d P %c", i, i % 7,
			 'a' + (i % 8));
		assert_int_equal(add_ing(f->st, "default", name, NULL, spec), 0);
	}
	build(f);
	for (int i = 0; i < N; i++) {
		char path[32], want[16];
		snprintf(host, sizeof(host), "HOST-%d.example.com", i);
		snprintf(path, sizeof(path), "/p%d/x", i % 7);
		snprintf(want, sizeof(want), "%c:80", 'a' + (i % 8));
		ROUTE(host, path, want);
		snprintf(path, sizeof(path), "/p%d/x", (i + 1) % 7);
		ROUTE(host, path, "404");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_exact_host_case_and_port, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wildcard_one_label, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_precise_beats_wildcard, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_selects_one_rule_set, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_without_default_is_404, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_fallback_from_first_declaring_ingress, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_host_rule_without_paths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_fallback_root_prefix_wins, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rule_without_host_applies_to_all, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prefix_segments, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_root_prefix_matches_everything, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_exact, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_exact_beats_prefix_and_longest_wins, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_paths_case_sensitive, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_implementation_specific_is_prefix, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_conflict_older_wins, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_conflict_same_time_by_namespace_then_name, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_conflict_trailing_slash_same_prefix, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_default_backend_oldest, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_match_is_null, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_hosts, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

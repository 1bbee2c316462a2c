/*
 * test_scale.c - correctness at scale, and the scale figures.
 *
 * Always: builds N Ingresses (TG_SCALE_INGRESSES, default 1000) with 2 hosts,
 * 4 paths, a Service and a 5-endpoint EndpointSlice each, and checks that
 * every host and path routes to its own Service. Prints parse/build/lookup
 * times and RSS; never asserts them (no timing thresholds in tests).
 *
 * With TG_SCALE_DIR=DIR (see bench/gen_manifests.py): starts the directory
 * source on DIR, prints the first-load time and RSS, then rewrites one file 5
 * times (TG_SCALE_CHANGES), 100 ms apart, and prints how long each change
 * took to be published (debounce included), restoring the file afterwards.
 */
#include "ingress_fixture.h"
#include "ingress/manifest.h"
#include "ingress/source.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t fl = strlen(field);
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, field, fl) == 0)
			v = strtol(line + fl + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static void one(char *buf, size_t len, int i)
{
	char eps[1024];
	size_t off = 0;
	for (int e = 0; e < 5; e++)
		off += (size_t)snprintf(eps + off, sizeof(eps) - off,
					"- addresses: [\"10.%d.%d.%d\"]\n", (i >> 8) & 255, i & 255,
					e + 1);
	snprintf(
	    buf, len,
	    "apiVersion: v1\nkind: Service\nmetadata: {name: svc-%d, namespace: ns-%d}\n"
	    "spec: {ports: [{name: http, port: 80, targetPort: 8080}]}\n---\n"
	    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	    "metadata: {name: svc-%d-x, namespace: ns-%d, labels: {kubernetes.io/service-name: "
	    "svc-%d}}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n%s---\n"
	    "apiVersion: networking.k8s.io/v1\nkind: Ingress\n"
	    "metadata: {name: ing-%d, namespace: ns-%d}\n"
	    "spec:\n  ingressClassName: tidegate\n  rules:\n"
	    "  - host: app-%d.example.com\n    http:\n      paths:\n"
	    "      - {path: /, pathType: Prefix, backend: {service: {name: svc-%d, port: {number: "
	    "80}}}}\n"
	    "      - {path: /api/v1, pathType: Exact, backend: {service: {name: svc-%d, port: "
	    "{name: http}}}}\n"
	    "  - host: \"%s%d.example.net\"\n    http:\n      paths:\n"
	    "      - {path: /, pathType: Prefix, backend: {service: {name: svc-%d, port: {number: "
	    "80}}}}\n"
	    "      - {path: /static, pathType: Prefix, backend: {service: {name: svc-%d, port: "
	    "{number: 80}}}}\n",
	    i, i % 50, i, i % 50, i, eps, i, i % 50, i, i, i, i % 10 == 0 ? "*.wild-" : "api-", i,
	    i, i);
}

static void test_in_memory_scale(void **state)
{
	(void)state;
	const char *env = getenv("TG_SCALE_INGRESSES");
	int n = env ? atoi(env) : 1000;
	if (n < 10)
		n = 10;
	tg_store_t *st = tg_store_new();
	assert_int_equal(ingfx_apply(st, INGFX_CLASS), 0);
	char *buf = malloc(8192);
	double t0 = now_ms();
	for (int i = 0; i < n; i++) {
		one(buf, 8192, i);
		assert_int_equal(ingfx_apply(st, buf), 0);
	}
	double t1 = now_ms();
	tg_translate_config_t c = ingfx_config();
	tg_translator_t *t = tg_translator_new(&c);
	tg_build_stats_t bs;
	tg_snapshot_t *s = tg_translator_build(t, st, &bs);
	assert_non_null(s);
	tg_snapshot_t *s2 = tg_translator_build(t, st, &bs); /* a rebuild, as after a change */
	assert_non_null(s2);
	/* TG_SCALE_REBUILDS=N: N more rebuilds (for profiling), average printed. */
	const char *rb = getenv("TG_SCALE_REBUILDS");
	int nrb = rb ? atoi(rb) : 0;
	double wall = 0, cpu = 0;
	for (int i = 0; i < nrb; i++) {
		tg_build_stats_t x;
		tg_snapshot_release(tg_translator_build(t, st, &x));
		wall += x.build_ms;
		cpu += x.build_cpu_ms;
	}
	if (nrb)
		printf("scale: %d rebuilds: average %.1f ms (CPU %.1f ms)\n", nrb, wall / nrb,
		       cpu / nrb);
	assert_int_equal(bs.ingresses_routed, n);
	/* port written as 80 and as "http": two backends per Service, sharing
	 * one endpoint array */
	assert_int_equal(bs.backends, 2 * n);
	assert_int_equal(bs.endpoints, n * 5);
	/* Every host and path reaches its own Service. */
	char host[64], want[64];
	double t2 = now_ms();
	long lookups = 0;
	for (int i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "svc-%d:80", i);
		snprintf(host, sizeof(host), "app-%d.example.com", i);
		assert_string_equal(ingfx_route(s2, host, "/"), want);
		assert_string_equal(ingfx_route(s2, host, "/x/y"), want);
		snprintf(want, sizeof(want), "svc-%d:http", i);
		assert_string_equal(ingfx_route(s2, host, "/api/v1"), want);
		snprintf(want, sizeof(want), "svc-%d:80", i);
		if (i % 10 == 0)
			snprintf(host, sizeof(host), "x.wild-%d.example.net", i);
		else
			snprintf(host, sizeof(host), "api-%d.example.net", i);
		assert_string_equal(ingfx_route(s2, host, "/static/a.css"), want);
		lookups += 4;
	}
	double t3 = now_ms();
	/* Raw lookup cost, without the string formatting above. */
	enum { ROUNDS = 2000000 };
	const char *hosts[4] = {"app-1.example.com", "api-3.example.net", "x.wild-10.example.net",
				"unknown.example.org"};
	const char *paths[4] = {"/", "/api/v1", "/static/img/logo.png", "/x"};
	double t4 = now_ms();
	unsigned hits = 0;
	for (int i = 0; i < ROUNDS; i++) {
		tg_str_t h = {hosts[i & 3], strlen(hosts[i & 3])};
		tg_str_t p = {paths[(i >> 2) & 3], strlen(paths[(i >> 2) & 3])};
		hits += tg_snapshot_route(s2, h, p) != NULL;
	}
	double t5 = now_ms();
	assert_true(hits > 0);
	printf("scale: %d Ingresses (%u hosts + %u wildcards, %u routes, %u backends, %u "
	       "endpoints)\n",
	       n, bs.hosts, bs.wildcards, bs.routes, bs.backends, bs.endpoints);
	printf("scale: parse+apply %.1f ms, snapshot build %.1f ms (CPU %.1f ms, arena %zu KiB), "
	       "%ld checked lookups %.1f ms, raw lookup %.0f ns, RSS %ld KiB (peak %ld KiB)\n",
	       t1 - t0, bs.build_ms, bs.build_cpu_ms, bs.bytes / 1024, lookups, t3 - t2,
	       (t5 - t4) * 1e6 / ROUNDS, status_kib("VmRSS:"), status_kib("VmHWM:"));
	tg_snapshot_release(s);
	tg_snapshot_release(s2);
	tg_translator_free(t);
	tg_store_free(st);
	free(buf);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	if (b) {
		b[n] = '\0';
		*len = (size_t)n;
	}
	return b;
}

static void spit(const char *dir, const char *name, const char *text, size_t len)
{
	char tmp[1024], path[1024];
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(tmp, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
	assert_int_equal(rename(tmp, path), 0);
}

static void test_directory_scale(void **state)
{
	(void)state;
	const char *dir = getenv("TG_SCALE_DIR");
	if (!dir) {
		printf("scale: TG_SCALE_DIR not set; directory measurement skipped "
		       "(bench/gen_manifests.py DIR, then TG_SCALE_DIR=DIR)\n");
		skip();
	}
	const char *name = "apps-00000.yaml";
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	size_t len = 0;
	char *orig = slurp(path, &len);
	if (!orig || !strstr(orig, "path: /static\n")) {
		printf("scale: %s is not from bench/gen_manifests.py; skipped\n", path);
		free(orig);
		skip();
	}
	tg_source_config_t c = {
	    .manifests_dir = dir,
	    .ingress_class = "tidegate",
	    .controller_class = "tidegate.io/ingress-controller",
	    .configmap = "tidegate-system/tidegate",
	};
	double t0 = now_ms();
	assert_int_equal(tg_source_start(&c), 0);
	double t1 = now_ms();
	printf("scale: first load of %s %.0f ms, RSS %ld KiB (peak %ld KiB)\n", dir, t1 - t0,
	       status_kib("VmRSS:"), status_kib("VmHWM:"));
	size_t cap = len + 64;
	char *mod = malloc(cap);
	const char *nc = getenv("TG_SCALE_CHANGES");
	int changes = nc ? atoi(nc) : 5;
	for (int k = 1; k <= changes; k++) {
		/* Same file, the first /static path renamed: one Ingress changes. */
		char *at = strstr(orig, "path: /static\n");
		size_t head = (size_t)(at - orig) + strlen("path: /static");
		int n = snprintf(mod, cap, "%.*s%d%s", (int)head, orig, k, orig + head);
		/* A lone change after a quiet moment (the watcher treats changes
		 * closer than its debounce to the last reload as a burst). */
		usleep(100 * 1000);
		uint64_t g = tg_snapshot_generation();
		double a = now_ms();
		spit(dir, name, mod, (size_t)n);
		while (tg_snapshot_generation() == g && now_ms() - a < 10000)
			usleep(200);
		double b = now_ms();
		assert_true(tg_snapshot_generation() != g);
		char p[32];
		snprintf(p, sizeof(p), "/static%d/x", k);
		tg_snapshot_t *s = tg_snapshot_acquire();
		const tg_route_t *r = ingfx_find(s, "x.wild-0.example.com", p);
		assert_non_null(r);
		snprintf(p, sizeof(p), "/static%d", k);
		assert_string_equal(r->path, p);
		tg_snapshot_release(s);
		printf("scale: change %d live after %.1f ms (debounce included)\n", k, b - a);
	}
	printf("scale: RSS after changes %ld KiB (peak %ld KiB)\n", status_kib("VmRSS:"),
	       status_kib("VmHWM:"));
	spit(dir, name, orig, len);
	tg_source_stop();
	free(mod);
	free(orig);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_in_memory_scale),
	    cmocka_unit_test(test_directory_scale),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

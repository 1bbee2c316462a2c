/*
 * test_manifest.c - manifest files into objects: multi-document YAML, List,
 * JSON, ignored kinds, errors with line numbers, whole-file failure, Secret
 * decoding; and the store's apply/delete interface a watcher would use.
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

static tg_manifest_t m;

static void parse(const char *name, const char *text)
{
	assert_int_equal(tg_manifest_parse(name, text, strlen(text), &m), 0);
}

static int teardown(void **state)
{
	(void)state;
	tg_manifest_free(&m);
	return 0;
}

#define SVC(name)                                                                                  \
	"apiVersion: v1\nkind: Service\nmetadata:\n  name: " name                                  \
	"\nspec:\n  ports:\n  - port: 80\n"

static void test_multi_document(void **state)
{
	(void)state;
	parse("a.yaml",
	      "---\n" SVC("one") "---\n# comment only\n---\n" SVC(
		  "two") "...\n---\n"
			 "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ignored}\n");
	assert_false(m.failed);
	assert_int_equal(m.n_items, 2);
	assert_string_equal(m.items[0].obj->name, "one");
	assert_string_equal(m.items[0].obj->ns, "default");
	assert_string_equal(m.items[1].obj->name, "two");
	assert_int_equal(m.items[1].obj->kind, TG_KIND_SERVICE);
}

static void test_list(void **state)
{
	(void)state;
	parse("l.yaml", "apiVersion: v1\nkind: List\nitems:\n"
			"- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: x}\n"
			"  spec: {ports: [{port: 80}]}\n"
			"- apiVersion: networking.k8s.io/v1\n  kind: IngressClass\n"
			"  metadata: {name: c}\n  spec: {controller: foo}\n");
	assert_false(m.failed);
	assert_int_equal(m.n_items, 2);
	assert_string_equal(m.items[0].obj->ns, "x");
	assert_int_equal(m.items[1].obj->kind, TG_KIND_INGRESS_CLASS);
	assert_string_equal(m.items[1].obj->ns, "");
	assert_string_equal(m.items[1].obj->u.ingress_class.controller, "foo");
}

static void test_json(void **state)
{
	(void)state;
	parse("s.json", "{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": "
			"{\"name\": \"j\", \"namespace\": \"n\", \"creationTimestamp\": "
			"\"2024-01-02T03:04:05Z\"}, \"spec\": {\"ports\": [{\"name\": \"http\", "
			"\"port\": 80, \"targetPort\": 8080}]}}");
	assert_false(m.failed);
	assert_int_equal(m.n_items, 1);
	const tg_object_t *o = m.items[0].obj;
	assert_string_equal(o->name, "j");
	assert_int_equal(o->created, 1704164645);
	assert_int_equal(o->u.service.n_ports, 1);
	assert_int_equal(o->u.service.ports[0].target_port, 8080);
}

static void test_syntax_error_fails_file_with_line(void **state)
{
	(void)state;
	parse("bad.yaml", SVC("ok") "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: x\n"
				    "  bad: [unclosed\n");
	assert_true(m.failed);
	assert_int_equal(m.n_items, 0); /* nothing of the file is used */
	assert_true(m.line >= 11);
	assert_non_null(strstr(m.reason, "YAML"));
}

static void test_duplicate_key_fails(void **state)
{
	(void)state;
	parse("dup.yaml", "apiVersion: v1\nkind: Service\nkind: Service\n");
	assert_true(m.failed);
	assert_int_equal(m.line, 3);
}

static void test_unidentified_object_fails_file(void **state)
{
	(void)state;
	parse("noname.yaml", SVC("ok") "---\napiVersion: v1\nkind: Service\nmetadata: {}\n");
	assert_true(m.failed);
	assert_non_null(strstr(m.reason, "metadata.name"));
	assert_int_equal(m.n_items, 0);
	tg_manifest_free(&m);
	parse("scalar.yaml", "just a string\n");
	assert_true(m.failed);
}

static void test_invalid_object_rejected_alone(void **state)
{
	(void)state;
	parse("ing.yaml",
	      SVC("ok") "---\n"
			"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: bad\n"
			"  namespace: ns1\nspec:\n  rules:\n  - host: h.com\n    http:\n      "
			"paths:\n"
			"      - path: /x\n        pathType: Sometimes\n"
			"        backend: {service: {name: s, port: {number: 80}}}\n");
	assert_false(m.failed);
	assert_int_equal(m.n_items, 2);
	assert_non_null(m.items[0].obj);
	assert_null(m.items[1].obj);
	assert_true(m.items[1].error.identified);
	assert_int_equal(m.items[1].error.kind, TG_KIND_INGRESS);
	assert_string_equal(m.items[1].error.ns, "ns1");
	assert_string_equal(m.items[1].error.name, "bad");
	assert_int_equal(m.items[1].error.line, 20); /* the pathType line */
	assert_non_null(strstr(m.items[1].error.reason, "spec.rules[0].http.paths[0].pathType"));
}

static void expect_rejected(const char *yaml, const char *reason_part)
{
	tg_manifest_free(&m);
	parse("x.yaml", yaml);
	assert_false(m.failed);
	assert_int_equal(m.n_items, 1);
	if (m.items[0].obj)
		fail_msg("accepted: %s", yaml);
	if (!strstr(m.items[0].error.reason, reason_part))
		fail_msg("reason \"%s\" lacks \"%s\"", m.items[0].error.reason, reason_part);
}

#define ING(spec)                                                                                  \
	"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec:\n" spec

static void test_ingress_validation(void **state)
{
	(void)state;
	expect_rejected(
	    ING("  rules:\n  - host: h.com\n    http:\n      paths:\n"
		"      - {path: x, pathType: Prefix, backend: {service: {name: s, port: "
		"{number: 80}}}}\n"),
	    "absolute path");
	expect_rejected(
	    ING("  rules:\n  - host: \"a.*.com\"\n    http:\n      paths:\n"
		"      - {path: /, pathType: Prefix, backend: {service: {name: s, port: "
		"{number: 80}}}}\n"),
	    "not a valid host");
	expect_rejected(
	    ING("  rules:\n  - host: h.com\n    http:\n      paths:\n"
		"      - {path: /, backend: {service: {name: s, port: {number: 80}}}}\n"),
	    "pathType is required");
	expect_rejected(ING("  rules:\n  - host: h.com\n    http:\n      paths:\n"
			    "      - {path: /, pathType: Exact, backend: {service: {name: s, port: "
			    "{number: 70000}}}}\n"),
			"1..65535");
	expect_rejected(ING("  rules:\n  - host: h.com\n    http:\n      paths:\n"
			    "      - {path: /, pathType: Exact, backend: {service: {name: s}}}\n"),
			"port");
	expect_rejected(ING("  ingressClassName: x\n"), "either defaultBackend or rules");
	expect_rejected("apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: i}\n"
			"spec: {}\n",
			"not supported");
	/* A bad timestamp next to annotations (crashed once: found by fuzzing). */
	expect_rejected("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i\n"
			"  creationTimestamp: \"2024-01-01T00:0v100Z\"\n"
			"  annotations: {kubernetes.io/ingress.class: x, a: b}\n"
			"spec: {defaultBackend: {service: {name: s, port: {number: 80}}}}\n",
			"creationTimestamp");
	expect_rejected(ING("  rules: &r\n  - host: h.com\n  tls: *r\n"), "aliases");
}

static void test_endpointslice(void **state)
{
	(void)state;
	parse("es.yaml", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
			 "  name: s-1\n  labels: {kubernetes.io/service-name: s}\n"
			 "addressType: IPv6\nports: [{name: http, port: 8080, protocol: TCP}]\n"
			 "endpoints:\n- addresses: [\"fd00::1\", \"fd00::9\"]\n"
			 "  conditions: {ready: false, serving: true, terminating: true}\n");
	assert_false(m.failed);
	const tg_slice_spec_t *sl = &m.items[0].obj->u.slice;
	assert_string_equal(sl->service, "s");
	assert_int_equal(sl->n_endpoints, 1);
	assert_false(sl->endpoints[0].ready);
	assert_true(sl->endpoints[0].serving);
	assert_true(sl->endpoints[0].terminating);
	assert_int_equal(sl->endpoints[0].addr[15], 1); /* first address only */
	expect_rejected(
	    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\n"
	    "addressType: IPv4\nendpoints:\n- addresses: [\"fd00::1\"]\n",
	    "not an IPv4 address");
}

static void test_secret_tls(void **state)
{
	(void)state;
	/* "-----BEGIN X-----\n" and "key!" base64-encoded */
	parse("sec.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: cert, namespace: web}\n"
			  "type: kubernetes.io/tls\ndata:\n"
			  "  tls.crt: LS0tLS1CRUdJTiBYLS0tLS0K\n  tls.key: a2V5IQ==\n");
	assert_false(m.failed);
	const tg_secret_spec_t *s = &m.items[0].obj->u.secret;
	assert_int_equal(s->tls_crt_len, 18);
	assert_memory_equal(s->tls_crt, "-----BEGIN X-----\n", 18);
	assert_int_equal(s->tls_key_len, 4);
	assert_memory_equal(s->tls_key, "key!", 4);
	expect_rejected(
	    "apiVersion: v1\nkind: Secret\nmetadata: {name: c}\ntype: kubernetes.io/tls\n"
	    "data:\n  tls.crt: \"%%%notbase64\"\n  tls.key: a2V5IQ==\n",
	    "not valid base64");
	/* The reason never quotes key material. */
	assert_null(strstr(m.items[0].error.reason, "notbase64"));
	expect_rejected(
	    "apiVersion: v1\nkind: Secret\nmetadata: {name: c}\ntype: kubernetes.io/tls\n"
	    "data:\n  tls.crt: a2V5IQ==\n",
	    "tls.key");
}

static void test_invalid_utf8_fails_file(void **state)
{
	(void)state;
	/* libfyaml 0.7.12 looped forever on this (found by fuzz_manifest). */
	parse("u.yaml", "apiVersion: v0\n%kind: Config\xfb\n");
	assert_true(m.failed);
	assert_int_equal(m.line, 2);
	assert_non_null(strstr(m.reason, "UTF-8"));
	tg_manifest_free(&m);
	parse("u.yaml", SVC("caf\xc3\xa9-ok-in-a-comment") "# \xe2\x9c\x93\n");
	assert_true(m.failed); /* the name is invalid, the UTF-8 is fine */
	assert_null(strstr(m.reason, "UTF-8"));
	tg_manifest_free(&m);
	parse("u.yaml", SVC("ok") "# caf\xc3\xa9 \xe2\x9c\x93\n");
	assert_false(m.failed);
}

static void test_store_apply_delete(void **state)
{
	(void)state;
	tg_store_t *st = tg_store_new();
	parse("a.yaml", SVC("one") "---\n" SVC("two"));
	for (size_t i = 0; i < m.n_items; i++) {
		assert_int_equal(tg_store_apply(st, m.items[i].obj), 1);
		m.items[i].obj = NULL;
	}
	uint64_t seq = tg_store_seq(st);
	uint32_t n;
	tg_store_list(st, TG_KIND_SERVICE, &n);
	assert_int_equal(n, 2);
	/* Same content again (different formatting): unchanged, seq stays. */
	tg_manifest_free(&m);
	parse("a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: one}\n"
			"spec: {ports: [{port: 80}]}\n");
	assert_int_equal(tg_store_apply(st, m.items[0].obj), 0);
	m.items[0].obj = NULL;
	assert_int_equal(tg_store_seq(st), seq);
	/* Changed content replaces. */
	tg_manifest_free(&m);
	parse("a.yaml", SVC("one") "  - port: 81\n");
	assert_int_equal(tg_store_apply(st, m.items[0].obj), 1);
	m.items[0].obj = NULL;
	assert_int_equal(tg_store_get(st, TG_KIND_SERVICE, "default", "one")->u.service.n_ports, 2);
	assert_true(tg_store_delete(st, TG_KIND_SERVICE, "default", "one"));
	assert_false(tg_store_delete(st, TG_KIND_SERVICE, "default", "one"));
	assert_null(tg_store_get(st, TG_KIND_SERVICE, "default", "one"));
	tg_store_list(st, TG_KIND_SERVICE, &n);
	assert_int_equal(n, 1);
	tg_store_free(st);
}

static void test_store_slice_index(void **state)
{
	(void)state;
	tg_store_t *st = tg_store_new();
	char yaml[512];
	for (int i = 0; i < 50; i++) {
		snprintf(yaml, sizeof(yaml),
			 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
			 "  name: s-%d\n  labels: {kubernetes.io/service-name: svc%d}\n"
			 "addressType: IPv4\nendpoints: [{addresses: [10.0.0.%d]}]\n",
			 i, i % 5, i);
		assert_int_equal(ingfx_apply(st, yaml), 0);
	}
	uint32_t n;
	tg_store_slices(st, "default", "svc3", &n);
	assert_int_equal(n, 10);
	for (int i = 3; i < 50; i += 5) {
		char name[16];
		snprintf(name, sizeof(name), "s-%d", i);
		assert_true(tg_store_delete(st, TG_KIND_ENDPOINTSLICE, "default", name));
	}
	tg_store_slices(st, "default", "svc3", &n);
	assert_int_equal(n, 0);
	tg_object_t *const *v = tg_store_slices(st, "default", "svc2", &n);
	assert_int_equal(n, 10);
	for (uint32_t i = 0; i < n; i++)
		assert_string_equal(v[i]->u.slice.service, "svc2");
	tg_store_free(st);
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_multi_document),
	    T(test_list),
	    T(test_json),
	    T(test_syntax_error_fails_file_with_line),
	    T(test_duplicate_key_fails),
	    T(test_unidentified_object_fails_file),
	    T(test_invalid_object_rejected_alone),
	    T(test_ingress_validation),
	    T(test_endpointslice),
	    T(test_secret_tls),
	    T(test_invalid_utf8_fails_file),
	    T(test_store_apply_delete),
	    T(test_store_slice_index),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_translate.c - objects -> snapshot: IngressClass ownership, Service
 * ports by number and name, EndpointSlice readiness, IPv6, shared backends,
 * annotations and ConfigMap settings, and rejected objects keeping their last
 * good version.
 */
#include "ingress_fixture.h"
#include "ingress/manifest.h"
#include "ingress/settings.h"

#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ING_HDR(name, extra_meta)                                                                  \
	"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: " name                \
	"\n  namespace: default\n" extra_meta

#define RULE_TO(svc)                                                                               \
	"  rules:\n  - host: h.com\n    http:\n      paths:\n      - path: /\n"                    \
	"        pathType: Prefix\n        backend: {service: {name: " svc                         \
	", port: {number: 80}}}\n"

static tg_store_t *st;
static tg_snapshot_t *snap;

static int setup(void **state)
{
	(void)state;
	st = tg_store_new();
	snap = NULL;
	return st ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	tg_snapshot_release(snap);
	tg_store_free(st);
	return 0;
}

static void build_with(const tg_translate_config_t *cfg)
{
	tg_snapshot_release(snap);
	snap = ingfx_build(st, cfg);
	assert_non_null(snap);
}

static void build(void)
{
	build_with(NULL);
}

/* ---- IngressClass ownership ---------------------------------------------- */

static void test_class_by_name_and_controller(void **state)
{
	(void)state;
	assert_int_equal(ingfx_services(st, "default", "a b c"), 0);
	assert_int_equal(
	    ingfx_apply(
		st, INGFX_CLASS
		"apiVersion: networking.k8s.io/v1\nkind: IngressClass\n"
		"metadata: {name: other}\nspec: {controller: k8s.io/ingress-nginx}\n"
		"---\n" ING_HDR("ours", "") "spec:\n  ingressClassName: tidegate\n" RULE_TO(
		    "a") "---\n" ING_HDR("theirs",
					 "") "spec:\n  ingressClassName: other\n" RULE_TO("b")),
	    0);
	build();
	assert_string_equal(ingfx_route(snap, "h.com", "/"), "a:80");
	assert_int_equal(snap->n_ingresses, 1);
}

static void test_class_missing_is_not_ours(void **state)
{
	(void)state;
	assert_int_equal(ingfx_services(st, "default", "a"), 0);
	assert_int_equal(
	    ingfx_apply(st, ING_HDR("x", "") "spec:\n  ingressClassName: tidegate\n" RULE_TO("a")),
	    0);
	build(); /* no IngressClass object named tidegate exists */
	assert_string_equal(ingfx_route(snap, "h.com", "/"), "404");
}

static void test_legacy_annotation(void **state)
{
	(void)state;
	assert_int_equal(ingfx_services(st, "default", "a b"), 0);
	assert_int_equal(
	    ingfx_apply(
		st,
		ING_HDR(
		    "ours",
		    "  annotations: {kubernetes.io/ingress.class: "
		    "tidegate}\n") "spec:\n" RULE_TO("a") "---\n" ING_HDR("theirs",
									  "  annotations: "
									  "{kubernetes.io/"
									  "ingress.class: "
									  "nginx}\n") "spec:\n  "
										      "rules:\n  - "
										      "host: "
										      "g.com\n    "
										      "http:\n     "
										      " paths:\n"
										      "      - "
										      "{path: /, "
										      "pathType: "
										      "Prefix, "
										      "backend: "
										      "{service: "
										      "{name: b, "
										      "port: "
										      "{number: "
										      "80}}}}\n"),
	    0);
	build();
	assert_string_equal(ingfx_route(snap, "h.com", "/"), "a:80");
	assert_string_equal(ingfx_route(snap, "g.com", "/"), "404");
}

static void test_without_class(void **state)
{
	(void)state;
	assert_int_equal(ingfx_services(st, "default", "a"), 0);
	assert_int_equal(ingfx_apply(st, INGFX_CLASS ING_HDR("x", "") "spec:\n" RULE_TO("a")), 0);
	build(); /* our class is not the default and the flag is off */
	assert_string_equal(ingfx_route(snap, "h.com", "/"), "404");

	tg_translate_config_t c = ingfx_config();
	c.watch_ingress_without_class = true;
	build_with(&c);
	assert_string_equal(ingfx_route(snap, "h.com", "/"), "a:80");
}

static void test_default_class(void **state)
{
	(void)state;
	assert_int_equal(ingfx_services(st, "default", "a"), 0);
	assert_int_equal(
	    ingfx_apply(st, "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n"
			    "  name: tidegate\n  annotations:\n"
			    "    ingressclass.kubernetes.io/is-default-class: \"true\"\n"
			    "spec: {controller: tidegate.io/ingress-controller}\n---\n" ING_HDR(
				"x", "") "spec:\n" RULE_TO("a")),
	    0);
	build();
	assert_string_equal(ingfx_route(snap, "h.com", "/"), "a:80");
}

static void test_default_class_of_other_controller(void **state)
{
	(void)state;
	assert_int_equal(ingfx_services(st, "default", "a"), 0);
	assert_int_equal(
	    ingfx_apply(st, INGFX_CLASS
			"apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n"
			"  name: nginx\n  annotations:\n"
			"    ingressclass.kubernetes.io/is-default-class: \"true\"\n"
			"spec: {controller: k8s.io/ingress-nginx}\n---\n" ING_HDR(
			    "x", "") "spec:\n" RULE_TO("a")),
	    0);
	build();
	assert_string_equal(ingfx_route(snap, "h.com", "/"), "404");
}

/* ---- backends and endpoints ---------------------------------------------- */

#define SVC_WEB                                                                                    \
	"apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n"        \
	"  ports:\n  - {name: http, port: 80, targetPort: web}\n"                                  \
	"  - {name: admin, port: 9000, targetPort: 9001}\n---\n"

static void test_port_by_number_and_name(void **state)
{
	(void)state;
	assert_int_equal(
	    ingfx_apply(
		st, INGFX_CLASS SVC_WEB
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		"metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: "
		"web}}\n"
		"addressType: IPv4\nports: [{name: http, port: 8080}, {name: admin, port: 9001}]\n"
		"endpoints:\n- addresses: [10.1.0.1]\n- addresses: [10.1.0.2]\n---\n" ING_HDR(
		    "x", "") "spec:\n  ingressClassName: tidegate\n  rules:\n  - host: h.com\n"
			     "    http:\n      paths:\n"
			     "      - {path: /a, pathType: Prefix, backend: {service: {name: web, "
			     "port: {number: 80}}}}\n"
			     "      - {path: /b, pathType: Prefix, backend: {service: {name: web, "
			     "port: {name: http}}}}\n"
			     "      - {path: /c, pathType: Prefix, backend: {service: {name: web, "
			     "port: {name: admin}}}}\n"
			     "      - {path: /d, pathType: Prefix, backend: {service: {name: web, "
			     "port: {number: 81}}}}\n"
			     "      - {path: /e, pathType: Prefix, backend: {service: {name: nope, "
			     "port: {number: 80}}}}\n"
			     "      - {path: /f, pathType: Prefix, backend: {service: {name: web, "
			     "port: {number: 80}}}}\n"),
	    0);
	build();
	const tg_route_t *a = ingfx_find(snap, "h.com", "/a");
	assert_non_null(a);
	assert_non_null(a->backend);
	assert_int_equal(a->backend->n_endpoints, 2);
	assert_string_equal(a->backend->endpoints[0].text,
			    "10.1.0.1:8080"); /* never the cluster IP */
	assert_string_equal(a->backend->endpoints[1].text, "10.1.0.2:8080");
	assert_string_equal(a->backend->label, "default-web-80");
	const tg_route_t *b = ingfx_find(snap, "h.com", "/b");
	assert_non_null(b->backend);
	assert_string_equal(b->backend->endpoints[0].text, "10.1.0.1:8080");
	const tg_route_t *c = ingfx_find(snap, "h.com", "/c");
	assert_string_equal(c->backend->endpoints[0].text, "10.1.0.1:9001");
	/* Port 81 and Service "nope" do not exist: route present, backend NULL (503). */
	assert_non_null(ingfx_find(snap, "h.com", "/d"));
	assert_null(ingfx_find(snap, "h.com", "/d")->backend);
	assert_null(ingfx_find(snap, "h.com", "/e")->backend);
	/* Routes naming the same Service port share one backend; ids are dense. */
	assert_ptr_equal(a->backend, ingfx_find(snap, "h.com", "/f")->backend);
	assert_int_equal(snap->n_backends, 3);
	for (uint32_t i = 0; i < snap->n_backends; i++)
		assert_int_equal(snap->backends[i].id, i);
	assert_ptr_equal(&snap->backends[a->backend->id], a->backend);
}

static void test_slices_joined_and_deduplicated(void **state)
{
	(void)state;
	assert_int_equal(
	    ingfx_apply(st, INGFX_CLASS SVC_WEB
			"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
			"metadata: {name: web-1, namespace: default, labels: "
			"{kubernetes.io/service-name: web}}\n"
			"addressType: IPv4\nports: [{name: http, port: 8080}]\n"
			"endpoints:\n- addresses: [10.1.0.2]\n- addresses: [10.1.0.1]\n---\n"
			"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
			"metadata: {name: web-2, namespace: default, labels: "
			"{kubernetes.io/service-name: web}}\n"
			"addressType: IPv4\nports: [{name: http, port: 8080}]\n"
			"endpoints:\n- addresses: [10.1.0.3]\n- addresses: [10.1.0.1]\n---\n"
			"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
			"metadata: {name: other, namespace: default, labels: "
			"{kubernetes.io/service-name: x}}\n"
			"addressType: IPv4\nports: [{name: http, port: 8080}]\n"
			"endpoints:\n- addresses: [10.9.9.9]\n---\n" ING_HDR(
			    "x", "") "spec:\n  ingressClassName: tidegate\n" RULE_TO("web")),
	    0);
	build();
	const tg_route_t *r = ingfx_find(snap, "h.com", "/");
	assert_non_null(r->backend);
	assert_int_equal(r->backend->n_endpoints, 3);
	assert_string_equal(r->backend->endpoints[0].text, "10.1.0.1:8080");
	assert_string_equal(r->backend->endpoints[1].text, "10.1.0.2:8080");
	assert_string_equal(r->backend->endpoints[2].text, "10.1.0.3:8080");
}

#define SLICE_HDR(name)                                                                            \
	"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: " name             \
	", namespace: default, labels: {kubernetes.io/service-name: web}}\n"                       \
	"addressType: IPv4\nports: [{name: http, port: 8080}]\n"

static void test_ready_and_terminating_fallback(void **state)
{
	(void)state;
	assert_int_equal(
	    ingfx_apply(
		st,
		INGFX_CLASS SVC_WEB SLICE_HDR(
		    "web-1") "endpoints:\n"
			     "- addresses: [10.1.0.1]\n  conditions: {ready: true}\n"
			     "- addresses: [10.1.0.2]\n" /* no conditions: ready */
			     "- addresses: [10.1.0.3]\n  conditions: {ready: false, serving: true, "
			     "terminating: true}\n"
			     "- addresses: [10.1.0.4]\n  conditions: {ready: false}\n---\n" ING_HDR(
				 "x", "") "spec:\n  ingressClassName: tidegate\n" RULE_TO("web")),
	    0);
	build();
	const tg_backend_t *b = ingfx_find(snap, "h.com", "/")->backend;
	assert_int_equal(b->n_endpoints, 2);
	assert_string_equal(b->endpoints[0].text, "10.1.0.1:8080");
	assert_string_equal(b->endpoints[1].text, "10.1.0.2:8080");
	assert_false(b->endpoints[0].terminating);

	/* Nothing ready: serving-and-terminating ones only. */
	assert_int_equal(
	    ingfx_apply(
		st, SLICE_HDR("web-1") "endpoints:\n"
				       "- addresses: [10.1.0.1]\n  conditions: {ready: false, "
				       "serving: false, terminating: true}\n"
				       "- addresses: [10.1.0.3]\n  conditions: {ready: false, "
				       "serving: true, terminating: true}\n"
				       "- addresses: [10.1.0.4]\n  conditions: {ready: false}\n"),
	    0);
	build();
	b = ingfx_find(snap, "h.com", "/")->backend;
	assert_int_equal(b->n_endpoints, 1);
	assert_string_equal(b->endpoints[0].text, "10.1.0.3:8080");
	assert_true(b->endpoints[0].terminating);

	/* None usable at all: empty backend (503), still a backend. */
	assert_int_equal(
	    ingfx_apply(
		st, SLICE_HDR("web-1") "endpoints:\n"
				       "- addresses: [10.1.0.4]\n  conditions: {ready: false}\n"),
	    0);
	build();
	b = ingfx_find(snap, "h.com", "/")->backend;
	assert_non_null(b);
	assert_int_equal(b->n_endpoints, 0);
}

static void test_ipv6_endpoints(void **state)
{
	(void)state;
	assert_int_equal(
	    ingfx_apply(st, INGFX_CLASS SVC_WEB
			"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
			"metadata: {name: web-v6, namespace: default, labels: "
			"{kubernetes.io/service-name: web}}\n"
			"addressType: IPv6\nports: [{name: http, port: 8080}]\n"
			"endpoints:\n- addresses: [\"fd00:7467::2\"]\n---\n" SLICE_HDR(
			    "web-v4") "endpoints:\n- addresses: "
				      "[10.1.0.1]\n---\n" ING_HDR("x", "") "spec:\n  "
									   "ingressClassName"
									   ": "
									   "tidegate"
									   "\n" RULE_TO("we"
											"b")),
	    0);
	build();
	const tg_backend_t *b = ingfx_find(snap, "h.com", "/")->backend;
	assert_int_equal(b->n_endpoints, 2);
	assert_string_equal(b->endpoints[0].text, "10.1.0.1:8080");
	assert_string_equal(b->endpoints[1].text, "[fd00:7467::2]:8080");
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&b->endpoints[1].addr;
	assert_int_equal(in6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(in6->sin6_port), 8080);
	assert_int_equal(b->endpoints[1].addrlen, sizeof(struct sockaddr_in6));
}

static void test_slice_without_ports_uses_target_port(void **state)
{
	(void)state;
	assert_int_equal(
	    ingfx_apply(
		st, INGFX_CLASS SVC_WEB
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		"metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: "
		"web}}\n"
		"addressType: IPv4\nendpoints:\n- addresses: [10.1.0.1]\n---\n" ING_HDR(
		    "x", "") "spec:\n  ingressClassName: tidegate\n  rules:\n  - host: h.com\n"
			     "    http:\n      paths:\n"
			     "      - {path: /n, pathType: Prefix, backend: {service: {name: web, "
			     "port: {number: 9000}}}}\n"
			     "      - {path: /s, pathType: Prefix, backend: {service: {name: web, "
			     "port: {number: 80}}}}\n"),
	    0);
	build();
	const tg_backend_t *n = ingfx_find(snap, "h.com", "/n")->backend;
	assert_int_equal(n->n_endpoints, 1);
	assert_string_equal(n->endpoints[0].text, "10.1.0.1:9001"); /* numeric targetPort */
	/* targetPort "web" is a name that only slice ports could resolve */
	assert_int_equal(ingfx_find(snap, "h.com", "/s")->backend->n_endpoints, 0);
}

static void test_resource_backend_skipped(void **state)
{
	(void)state;
	assert_int_equal(ingfx_services(st, "default", "a"), 0);
	assert_int_equal(
	    ingfx_apply(st,
			INGFX_CLASS ING_HDR(
			    "x", "") "spec:\n  ingressClassName: tidegate\n  rules:\n  - host: "
				     "h.com\n    http:\n      paths:\n"
				     "      - {path: /r, pathType: Prefix, backend: {resource: "
				     "{apiGroup: k8s.example.com, kind: StorageBucket, name: b}}}\n"
				     "      - {path: /, pathType: Prefix, backend: {service: "
				     "{name: a, port: {number: 80}}}}\n"),
	    0);
	build();
	assert_string_equal(ingfx_route(snap, "h.com", "/r"), "a:80"); /* falls to "/" */
}

/* ---- annotations, tls ------------------------------------------------------ */

static void test_annotations_and_tls(void **state)
{
	(void)state;
	assert_int_equal(ingfx_services(st, "default", "a b"), 0);
	assert_int_equal(
	    ingfx_apply(st, INGFX_CLASS ING_HDR(
				"x", "  annotations:\n"
				     "    nginx.ingress.kubernetes.io/proxy-body-size: 8m\n"
				     "    nginx.ingress.kubernetes.io/proxy-connect-timeout: "
				     "\"7\"\n"
				     "    nginx.ingress.kubernetes.io/proxy-read-timeout: \"90s\"\n"
				     "    nginx.ingress.kubernetes.io/ssl-redirect: \"false\"\n"
				     "    nginx.ingress.kubernetes.io/force-ssl-redirect: "
				     "\"true\"\n"
				     "    nginx.ingress.kubernetes.io/backend-protocol: HTTPS\n"
				     "    nginx.ingress.kubernetes.io/whitelist-source-range: "
				     "10.0.0.0/8\n"
				     "    nginx.ingress.kubernetes.io/auth-tls-secret: default/ca\n"
				     "    nginx.ingress.kubernetes.io/some-future-thing: "
				     "whatever\n") "spec:\n  ingressClassName: tidegate\n"
						   "  tls:\n  - hosts: [h.com, \"*.w.com\"]\n    "
						   "secretName: cert\n"
						   "  rules:\n"
						   "  - host: h.com\n    http:\n      paths:\n"
						   "      - {path: /, pathType: Prefix, backend: "
						   "{service: {name: a, port: {number: 80}}}}\n"
						   "  - host: x.w.com\n    http:\n      paths:\n"
						   "      - {path: /, pathType: Prefix, backend: "
						   "{service: {name: a, port: {number: 80}}}}\n"
						   "  - host: g.com\n    http:\n      paths:\n"
						   "      - {path: /, pathType: Prefix, backend: "
						   "{service: {name: a, port: {number: 80}}}}\n"
						   "---\n" ING_HDR(
						       "plain",
						       "") "spec:\n  ingressClassName: tidegate\n  "
							   "rules:\n"
							   "  - host: p.com\n    http:\n      "
							   "paths:\n"
							   "      - {path: /, pathType: Prefix, "
							   "backend: {service: {name: b, port: "
							   "{number: 80}}}}\n"),
	    0);
	build();
	const tg_route_t *r = ingfx_find(snap, "h.com", "/");
	assert_int_equal(r->opts.proxy_body_size, 8 << 20);
	assert_int_equal(r->opts.proxy_connect_timeout_ms, 7000);
	assert_int_equal(r->opts.proxy_read_timeout_ms, 90000);
	assert_int_equal(r->opts.proxy_send_timeout_ms, 60000); /* global default */
	assert_false(r->opts.ssl_redirect);
	assert_true(r->opts.force_ssl_redirect);
	assert_true(r->opts.tls);
	assert_int_equal(r->backend->protocol, TG_PROTO_HTTPS);
	assert_non_null(r->opts.extra);
	assert_non_null(r->opts.extra->up_tls);
	assert_int_equal(r->opts.extra->n_allow, 1); /* whitelist-source-range */
	assert_true(ingfx_find(snap, "x.w.com", "/")->opts.tls);
	assert_false(ingfx_find(snap, "g.com", "/")->opts.tls);
	const tg_route_t *p = ingfx_find(snap, "p.com", "/");
	assert_int_equal(p->opts.proxy_body_size, 1 << 20);
	assert_true(p->opts.ssl_redirect);
	assert_false(p->opts.force_ssl_redirect);
	assert_int_equal(p->backend->protocol, TG_PROTO_HTTP);
	assert_null(p->opts.extra); /* plain routes carry no extra */
	/* auth-tls-* kept raw for the TLS store builder */
	const tg_object_t *o = tg_store_get(st, TG_KIND_INGRESS, "default", "x");
	assert_int_equal(o->u.ingress.ann.n_raw, 1);
}

static void test_bad_annotation_keeps_last_good(void **state)
{
	(void)state;
	assert_int_equal(ingfx_services(st, "default", "a b"), 0);
	assert_int_equal(
	    ingfx_apply(st,
			INGFX_CLASS ING_HDR(
			    "x", "  annotations: {nginx.ingress.kubernetes.io/proxy-read-timeout: "
				 "\"30\"}\n") "spec:\n  ingressClassName: tidegate\n" RULE_TO("a")),
	    0);
	/* The new version has a bad value and a new backend: rejected as a whole. */
	assert_int_equal(
	    ingfx_apply(
		st,
		ING_HDR("x", "  annotations: {nginx.ingress.kubernetes.io/proxy-read-timeout: "
			     "\"soon\"}\n") "spec:\n  ingressClassName: tidegate\n" RULE_TO("b")),
	    1);
	build();
	const tg_route_t *r = ingfx_find(snap, "h.com", "/");
	assert_string_equal(r->backend->service, "a");
	assert_int_equal(r->opts.proxy_read_timeout_ms, 30000);
	/* Other bad values are rejected too, with the reason naming them. */
	static const char *const bad[] = {
	    "nginx.ingress.kubernetes.io/proxy-body-size: \"8q\"",
	    "nginx.ingress.kubernetes.io/ssl-redirect: \"maybe\"",
	    "nginx.ingress.kubernetes.io/backend-protocol: SPDY",
	    "nginx.ingress.kubernetes.io/proxy-connect-timeout: \"0\"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char yaml[1024];
		snprintf(yaml, sizeof(yaml),
			 ING_HDR("y", "  annotations: {%s}\n") "spec:\n  ingressClassName: "
							       "tidegate\n" RULE_TO("b"),
			 bad[i]);
		tg_manifest_t m;
		assert_int_equal(tg_manifest_parse("t.yaml", yaml, strlen(yaml), &m), 0);
		assert_false(m.failed);
		assert_int_equal(m.n_items, 1);
		assert_null(m.items[0].obj);
		assert_true(m.items[0].error.identified);
		assert_string_equal(m.items[0].error.name, "y");
		assert_non_null(strstr(m.items[0].error.reason, "annotation"));
		tg_manifest_free(&m);
	}
}

/* ---- ConfigMap settings ------------------------------------------------------ */

static void test_settings_defaults(void **state)
{
	(void)state;
	tg_settings_t s;
	tg_settings_defaults(&s);
	assert_int_equal(s.keep_alive_ms, 75000);
	assert_int_equal(s.proxy_connect_timeout_ms, 5000);
	assert_int_equal(s.proxy_body_size, 1 << 20);
	assert_int_equal(s.worker_shutdown_timeout_ms, 240000);
	assert_int_equal(s.large_client_header_buffers, 32768);
	assert_int_equal(s.upstream_keepalive_connections, 320);
	assert_true(s.ssl_redirect);
	assert_int_equal(s.load_balance, TG_LB_ROUND_ROBIN);
	build(); /* no ConfigMap at all */
	assert_memory_equal(&snap->settings, &s, sizeof(s));
}

#define CM(data)                                                                                   \
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tidegate, namespace: "                  \
	"tidegate-system}\n"                                                                       \
	"data:\n" data

static void test_configmap_formats(void **state)
{
	(void)state;
	assert_int_equal(ingfx_apply(st, CM("  keep-alive: \"10\"\n"
					    "  proxy-read-timeout: \"120s\"\n"
					    "  proxy-connect-timeout: \"1m30s\"\n"
					    "  proxy-body-size: 8k\n"
					    "  client-header-buffer-size: 2k\n"
					    "  large-client-header-buffers: \"8 16k\"\n"
					    "  keep-alive-time: 2h\n"
					    "  use-forwarded-headers: \"true\"\n"
					    "  ssl-redirect: \"false\"\n"
					    "  load-balance: ewma\n"
					    "  max-worker-connections: \"100\"\n"
					    "  some-unknown-key: \"1\"\n")),
			 0);
	build();
	const tg_settings_t *s = &snap->settings;
	assert_int_equal(s->keep_alive_ms, 10000);
	assert_int_equal(s->proxy_read_timeout_ms, 120000);
	assert_int_equal(s->proxy_connect_timeout_ms, 90000);
	assert_int_equal(s->proxy_body_size, 8192);
	assert_int_equal(s->client_header_buffer_size, 2048);
	assert_int_equal(s->large_client_header_buffers, 8 * 16384);
	assert_int_equal(s->keep_alive_time_ms, 7200000);
	assert_true(s->use_forwarded_headers);
	assert_false(s->ssl_redirect);
	assert_int_equal(s->load_balance, TG_LB_EWMA);
	assert_int_equal(s->max_worker_connections, 100);
	assert_int_equal(s->proxy_send_timeout_ms, 60000); /* absent: default */
	/* The global value reaches routes without an annotation. */
	assert_int_equal(ingfx_services(st, "default", "a"), 0);
	assert_int_equal(
	    ingfx_apply(st, INGFX_CLASS ING_HDR(
				"x", "") "spec:\n  ingressClassName: tidegate\n" RULE_TO("a")),
	    0);
	build();
	assert_int_equal(ingfx_find(snap, "h.com", "/")->opts.proxy_read_timeout_ms, 120000);
	assert_false(ingfx_find(snap, "h.com", "/")->opts.ssl_redirect);
}

static void test_configmap_bad_value_keeps_previous(void **state)
{
	(void)state;
	tg_translate_config_t c = ingfx_config();
	tg_translator_t *t = tg_translator_new(&c);
	assert_int_equal(ingfx_apply(st, CM("  proxy-read-timeout: \"30\"\n"
					    "  keep-alive: \"20\"\n")),
			 0);
	tg_build_stats_t bs;
	tg_snapshot_t *s1 = tg_translator_build(t, st, &bs);
	assert_int_equal(s1->settings.proxy_read_timeout_ms, 30000);
	assert_int_equal(bs.settings_errors, 0);
	/* A bad value keeps that key's previous value; other keys still apply,
	 * and a key that disappears returns to its default. */
	assert_int_equal(ingfx_apply(st, CM("  proxy-read-timeout: \"thirty\"\n"
					    "  proxy-send-timeout: \"45\"\n"
					    "  large-client-header-buffers: \"4\"\n")),
			 0);
	tg_snapshot_t *s2 = tg_translator_build(t, st, &bs);
	assert_int_equal(bs.settings_errors, 2);
	assert_int_equal(s2->settings.proxy_read_timeout_ms, 30000);
	assert_int_equal(s2->settings.proxy_send_timeout_ms, 45000);
	assert_int_equal(s2->settings.keep_alive_ms, 75000);
	assert_int_equal(s2->settings.large_client_header_buffers, 32768);
	tg_snapshot_release(s1);
	tg_snapshot_release(s2);
	tg_translator_free(t);
}

static void test_settings_parser_direct(void **state)
{
	(void)state;
	tg_settings_t prev, out;
	tg_settings_defaults(&prev);
	prev.keep_alive_requests = 7;
	tg_kv_t kv[] = {
	    {"keep-alive-requests", "-1", 2},
	    {"tcp-keepalive", "30", 2},
	    {"use-proxy-protocol", "yes", 3},
	    {"worker-shutdown-timeout", " 10s ", 5},
	};
	assert_int_equal(tg_settings_from_configmap(kv, 4, &prev, "t/t", &out), 1);
	assert_int_equal(out.keep_alive_requests, 7);
	assert_int_equal(out.tcp_keepalive_ms, 30000);
	assert_true(out.use_proxy_protocol);
	assert_int_equal(out.worker_shutdown_timeout_ms, 10000);
}

/* The demo's manifests (examples/manifests, read from the repository root
 * where `make unit` runs) route as the demo script expects. */
static void test_example_manifests(void **state)
{
	(void)state;
	static const char *const files[] = {"00-ingressclass.yaml", "01-configmap.yaml",
					    "10-echo.yaml", "11-hello.yaml", "20-ingress.yaml"};
	char path[256], text[8192];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "examples/manifests/%s", files[i]);
		FILE *f = fopen(path, "r");
		if (!f) {
			printf("examples/manifests not found from here; skipped\n");
			skip();
		}
		size_t n = fread(text, 1, sizeof(text) - 1, f);
		fclose(f);
		text[n] = '\0';
		assert_int_equal(ingfx_apply(st, text), 0);
	}
	build();
	const tg_route_t *r = ingfx_find(snap, "demo.tidegate.test", "/");
	assert_non_null(r);
	assert_string_equal(r->backend->service, "echo");
	assert_int_equal(r->backend->n_endpoints, 2);
	assert_string_equal(r->backend->endpoints[0].text, "127.0.0.1:18081");
	assert_string_equal(r->backend->endpoints[1].text, "127.0.0.1:18082");
	r = ingfx_find(snap, "demo.tidegate.test:80", "/hello/world");
	assert_string_equal(r->backend->service, "hello");
	assert_int_equal(r->backend->n_endpoints, 1);
	assert_string_equal(r->backend->endpoints[0].text, "127.0.0.1:18083");
	assert_int_equal(r->opts.proxy_read_timeout_ms, 30000);
	assert_string_equal(ingfx_route(snap, "demo.tidegate.test", "/hellothere"), "echo:80");
	assert_string_equal(ingfx_route(snap, "198.18.100.1", "/hello"), "echo:http");
	assert_false(snap->settings.ssl_redirect);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_class_by_name_and_controller),
	    T(test_class_missing_is_not_ours),
	    T(test_legacy_annotation),
	    T(test_without_class),
	    T(test_default_class),
	    T(test_default_class_of_other_controller),
	    T(test_port_by_number_and_name),
	    T(test_slices_joined_and_deduplicated),
	    T(test_ready_and_terminating_fallback),
	    T(test_ipv6_endpoints),
	    T(test_slice_without_ports_uses_target_port),
	    T(test_resource_backend_skipped),
	    T(test_annotations_and_tls),
	    T(test_bad_annotation_keeps_last_good),
	    T(test_settings_defaults),
	    T(test_configmap_formats),
	    T(test_configmap_bad_value_keeps_previous),
	    T(test_settings_parser_direct),
	    T(test_example_manifests),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

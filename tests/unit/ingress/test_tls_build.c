/*
 * test_tls_build.c - the TLS part of a snapshot build: certificate Secrets
 * by SNI, a broken Secret keeping its last good version, client-certificate
 * policies in the routes, auth-tls-* annotation validation, ssl-* and
 * proxy-real-ip-cidr ConfigMap keys.
 */
#include "ingress_fixture.h"
#include "ingress/settings.h"
#include "ingress/tls_build.h"
#include "tls/tls_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

static tg_store_t *st;
static tg_translator_t *tr;
static tg_snapshot_t *snap;
static tcert_t ca, a_cert, b_cert, other;

static char *b64(const char *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *o = calloc(1, (n + 2) / 3 * 4 + 1), *q = o;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)(unsigned char)p[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)p[i + 2];
		*q++ = tab[v >> 18];
		*q++ = tab[(v >> 12) & 63];
		*q++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*q++ = i + 2 < n ? tab[v & 63] : '=';
	}
	return o;
}

/* Applies a kubernetes.io/tls Secret (crt/key may be any bytes) and, with
 * ca_pem, an Opaque one holding ca.crt. */
static void secret(const char *name, const char *crt, size_t crt_len, const char *key,
		   size_t key_len, const char *ca_pem)
{
	char *c = crt ? b64(crt, crt_len) : NULL, *k = key ? b64(key, key_len) : NULL;
	char *a = ca_pem ? b64(ca_pem, strlen(ca_pem)) : NULL;
	size_t len = 256 + (c ? strlen(c) : 0) + (k ? strlen(k) : 0) + (a ? strlen(a) : 0);
	char *y = malloc(len);
	snprintf(y, len,
		 "apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: default}\n"
		 "type: %s\ndata:\n%s%s%s%s%s%s%s%s%s",
		 name, c ? "kubernetes.io/tls" : "Opaque", c ? "  tls.crt: " : "", c ? c : "",
		 c ? "\n" : "", k ? "  tls.key: " : "", k ? k : "", k ? "\n" : "",
		 a ? "  ca.crt: " : "", a ? a : "", a ? "\n" : "");
	assert_int_equal(ingfx_apply(st, y), 0);
	free(y);
	free(c);
	free(k);
	free(a);
}

static int ingress(const char *name, const char *host, const char *tls_secret,
		   const char *annotations)
{
	char tls[256] = "";
	if (tls_secret)
		snprintf(tls, sizeof(tls), "  tls:\n  - hosts: [\"%s\"]\n    secretName: %s\n",
			 host, tls_secret);
	char y[2048];
	snprintf(
	    y, sizeof(y),
	    INGFX_CLASS "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
			"  name: %s\n  namespace: default\n%s%s"
			"spec:\n  ingressClassName: tidegate\n%s"
			"  rules:\n  - host: \"%s\"\n    http:\n      paths:\n"
			"      - {path: /, pathType: Prefix, backend: {service: {name: a, port: "
			"{number: 80}}}}\n",
	    name, annotations ? "  annotations:\n" : "", annotations ? annotations : "", tls, host);
	return ingfx_apply(st, y);
}

static void build(void)
{
	tg_snapshot_release(snap);
	snap = tg_translator_build(tr, st, NULL);
	assert_non_null(snap);
	assert_non_null(snap->tls);
}

static const char *cert_for(const char *host)
{
	return tg_tls_store_lookup(snap->tls, host, host ? strlen(host) : 0);
}

static int setup(void **state)
{
	(void)state;
	st = tg_store_new();
	tg_translate_config_t c = ingfx_config();
	tr = tg_translator_new(&c);
	snap = NULL;
	assert_int_equal(ingfx_services(st, "default", "a"), 0);
	return st && tr ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	tg_snapshot_release(snap);
	tg_translator_free(tr);
	tg_store_free(st);
	return 0;
}

static void test_certificates_by_sni(void **state)
{
	(void)state;
	secret("a-tls", a_cert.cert_pem, a_cert.cert_len, a_cert.key_pem, a_cert.key_len, NULL);
	secret("b-tls", b_cert.cert_pem, b_cert.cert_len, b_cert.key_pem, b_cert.key_len, NULL);
	assert_int_equal(ingress("a", "a.test", "a-tls", NULL), 0);
	assert_int_equal(ingress("b", "*.b.test", "b-tls", NULL), 0);
	build();
	assert_string_equal(cert_for("a.test"), "default/a-tls");
	assert_string_equal(cert_for("X.B.Test"), "default/b-tls");
	assert_string_equal(cert_for("unknown.test"), "tidegate default");
	assert_string_equal(cert_for(NULL), "tidegate default");
	assert_true(ingfx_find(snap, "a.test", "/")->opts.tls);
	assert_null(ingfx_find(snap, "a.test", "/")->opts.client_auth);
	assert_int_equal(ingfx_find(snap, "a.test", "/")->opts.client_auth_verify,
			 TG_TLS_VERIFY_OFF);
}

static void test_bad_secret_keeps_last_good(void **state)
{
	(void)state;
	/* Never good: its hosts get the default certificate. */
	secret("a-tls", a_cert.cert_pem, a_cert.cert_len, other.key_pem, other.key_len, NULL);
	assert_int_equal(ingress("a", "a.test", "a-tls", NULL), 0);
	build();
	assert_string_equal(cert_for("a.test"), "tidegate default");
	/* Good, then broken twice: the good one stays. */
	secret("a-tls", a_cert.cert_pem, a_cert.cert_len, a_cert.key_pem, a_cert.key_len, NULL);
	build();
	assert_string_equal(cert_for("a.test"), "default/a-tls");
	secret("a-tls", a_cert.cert_pem, a_cert.cert_len, other.key_pem, other.key_len, NULL);
	build();
	assert_string_equal(cert_for("a.test"), "default/a-tls");
	secret("a-tls", "junk", 4, "junk", 4, NULL);
	build();
	assert_string_equal(cert_for("a.test"), "default/a-tls");
	/* Deleted: gone (as ingress-nginx: the default certificate again). */
	assert_true(tg_store_delete(st, TG_KIND_SECRET, "default", "a-tls"));
	build();
	assert_string_equal(cert_for("a.test"), "tidegate default");
}

static void test_default_certificate_secret(void **state)
{
	(void)state;
	secret("fallback", b_cert.cert_pem, b_cert.cert_len, b_cert.key_pem, b_cert.key_len, NULL);
	assert_int_equal(ingress("a", "a.test", NULL, NULL), 0);
	tg_tls_build_set_default_certificate("default/fallback");
	build();
	assert_string_equal(cert_for("nowhere.test"), "default/fallback");
	tg_tls_build_set_default_certificate(NULL);
	build();
	assert_string_equal(cert_for("nowhere.test"), "tidegate default");
}

static void test_client_auth_in_routes(void **state)
{
	(void)state;
	secret("ca", NULL, 0, NULL, 0, ca.cert_pem);
	assert_int_equal(
	    ingress("a", "a.test", NULL,
		    "    nginx.ingress.kubernetes.io/auth-tls-secret: default/ca\n"
		    "    nginx.ingress.kubernetes.io/auth-tls-verify-client: optional\n"
		    "    nginx.ingress.kubernetes.io/auth-tls-verify-depth: \"2\"\n"),
	    0);
	assert_int_equal(ingress("m", "m.test", NULL,
				 "    nginx.ingress.kubernetes.io/auth-tls-secret: missing\n"),
			 0);
	build();
	const tg_route_t *r = ingfx_find(snap, "a.test", "/");
	assert_non_null(r->opts.client_auth);
	assert_int_equal(r->opts.client_auth_verify, TG_TLS_VERIFY_OPTIONAL);
	assert_string_equal(tg_tls_client_auth_source(r->opts.client_auth), "default/ca");
	/* Secret missing: verify on (the default) without a policy -> 503. */
	r = ingfx_find(snap, "m.test", "/");
	assert_null(r->opts.client_auth);
	assert_int_equal(r->opts.client_auth_verify, TG_TLS_VERIFY_ON);
	/* A CA Secret turning bad keeps its last good CA. */
	secret("ca", NULL, 0, NULL, 0,
	       "-----BEGIN CERTIFICATE-----\nbad\n-----END CERTIFICATE-----\n");
	build();
	assert_non_null(ingfx_find(snap, "a.test", "/")->opts.client_auth);
}

static void test_bad_auth_annotations_reject_the_ingress(void **state)
{
	(void)state;
	const char *bad[] = {
	    "    nginx.ingress.kubernetes.io/auth-tls-secret: default/ca\n"
	    "    nginx.ingress.kubernetes.io/auth-tls-verify-client: sometimes\n",
	    "    nginx.ingress.kubernetes.io/auth-tls-secret: default/ca\n"
	    "    nginx.ingress.kubernetes.io/auth-tls-verify-depth: \"0\"\n",
	    "    nginx.ingress.kubernetes.io/auth-tls-secret: default/ca\n"
	    "    nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream: maybe\n",
	    "    nginx.ingress.kubernetes.io/auth-tls-secret: a/b/c\n",
	};
	/* A bad auth-tls-* value does not keep an older, unprotected version in
	 * force: the Ingress is stored but refused, and its paths answer 503. */
	for (size_t i = 0; i < TG_ARRAY_SIZE(bad); i++) {
		assert_int_equal(ingress("x", "x.test", NULL, NULL), 0);
		build();
		const tg_route_t *r = tg_snapshot_route(snap, TG_STR("x.test"), TG_STR("/"));
		assert_non_null(r);
		assert_true(!r->opts.extra || !r->opts.extra->denied);
		assert_int_equal(ingress("x", "x.test", NULL, bad[i]), 0);
		build();
		r = tg_snapshot_route(snap, TG_STR("x.test"), TG_STR("/"));
		assert_non_null(r);
		assert_non_null(r->opts.extra);
		assert_non_null(r->opts.extra->denied);
		assert_non_null(strstr(r->opts.extra->denied, "refusing to serve"));
	}
	assert_int_equal(ingress("x", "x.test", NULL,
				 "    nginx.ingress.kubernetes.io/auth-tls-verify-client: "
				 "optional_no_ca\n"
				 "    nginx.ingress.kubernetes.io/auth-tls-secret: ca\n"),
			 0);
}

static void test_tls_settings_keys(void **state)
{
	(void)state;
	char raw[80];
	for (int i = 0; i < 80; i++)
		raw[i] = (char)i;
	char *key = b64(raw, sizeof(raw));
	tg_kv_t good[] = {
	    {"ssl-protocols", "TLSv1.3", 7},
	    {"ssl-ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256", 29},
	    {"ssl-session-timeout", "5m", 2},
	    {"ssl-session-tickets", "false", 5},
	    {"proxy-real-ip-cidr", "10.0.0.0/8, fd00::/8", 20},
	    {"ssl-session-ticket-key", key, strlen(key)},
	};
	tg_settings_t s, s2;
	assert_int_equal(tg_settings_from_configmap(good, TG_ARRAY_SIZE(good), NULL, "t", &s), 0);
	assert_string_equal(s.ssl_protocols, "TLSv1.3");
	assert_string_equal(s.ssl_ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
	assert_int_equal(s.ssl_session_timeout_ms, 300000);
	assert_false(s.ssl_session_tickets);
	assert_int_equal(s.n_proxy_real_ip_cidr, 2);
	assert_true(s.has_ssl_session_ticket_key);
	assert_int_equal(s.ssl_session_ticket_key[79], 79);
	free(key);
	tg_kv_t bad[] = {
	    {"ssl-protocols", "TLSv1.4", 7},
	    {"ssl-ciphers", "NOTHING-KNOWN", 13},
	    {"proxy-real-ip-cidr", "10.0.0.0/40", 11},
	    {"ssl-session-ticket-key", "c2hvcnQ=", 8},
	};
	assert_int_equal(tg_settings_from_configmap(bad, TG_ARRAY_SIZE(bad), &s, "t", &s2), 4);
	assert_string_equal(s2.ssl_protocols, "TLSv1.3"); /* previous values kept */
	assert_string_equal(s2.ssl_ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
	assert_int_equal(s2.n_proxy_real_ip_cidr, 2);
	assert_true(s2.has_ssl_session_ticket_key);
	tg_settings_defaults(&s);
	assert_true(s.ssl_session_tickets);
	assert_int_equal(s.n_proxy_real_ip_cidr, 1); /* 0.0.0.0/0 */
	assert_int_equal(s.proxy_real_ip_cidr[0].bits, 0);
}

static void test_options_reach_the_store(void **state)
{
	(void)state;
	secret("a-tls", a_cert.cert_pem, a_cert.cert_len, a_cert.key_pem, a_cert.key_len, NULL);
	assert_int_equal(ingress("a", "a.test", "a-tls", NULL), 0);
	assert_int_equal(ingfx_apply(st,
				     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tidegate, "
				     "namespace: tidegate-system}\ndata:\n  ssl-protocols: "
				     "TLSv1.3\n"),
			 0);
	build();
	/* A TLS 1.2-only client cannot connect any more. */
	SSL_CTX *cctx = tclient_ctx(TLS1_2_VERSION, TLS1_2_VERSION, NULL, 0, NULL);
	int sv[2];
	tpair(sv);
	SSL *cli = tclient_new(cctx, sv[1], "a.test", NULL);
	tg_tls_conn_t *c = tg_tls_conn_new(snap->tls, sv[0]);
	assert_int_not_equal(thandshake(cli, c), 0);
	tg_tls_conn_free(c);
	SSL_free(cli);
	SSL_CTX_free(cctx);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	tg_tls_init();
	ca = tcert_make(&(tcert_opts_t){.cn = "Client CA", .ca = true});
	a_cert = tcert_make(&(tcert_opts_t){.cn = "a.test", .sans = "DNS:a.test"});
	b_cert = tcert_make(&(tcert_opts_t){.cn = "b", .sans = "DNS:*.b.test"});
	other = tcert_make(&(tcert_opts_t){.cn = "other"});
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_certificates_by_sni),
	    T(test_bad_secret_keeps_last_good),
	    T(test_default_certificate_secret),
	    T(test_client_auth_in_routes),
	    T(test_bad_auth_annotations_reject_the_ingress),
	    T(test_tls_settings_keys),
	    T(test_options_reach_the_store),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	tcert_free(&ca);
	tcert_free(&a_cert);
	tcert_free(&b_cert);
	tcert_free(&other);
	return rc;
}

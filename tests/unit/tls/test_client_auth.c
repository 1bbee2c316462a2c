/*
 * test_client_auth.c - client certificates with ingress-nginx's semantics:
 * auth-tls-verify-client on / optional / optional_no_ca, wrong CA, expired,
 * revoked (ca.crl), absent; the 400 texts nginx answers; the headers passed
 * upstream; 421 when the SNI's policy is not the route's; resumed sessions
 * keep their verdict; a broken CA Secret is rejected with its name.
 */
#include "tls_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

static tcert_t ca1, ca2, srv, good, wrong_ca, expired, revoked;
static char *crl_pem;
static size_t crl_len;

/* A CRL from ca1 revoking `revoked`. */
static void make_crl(void)
{
	X509_CRL *crl = X509_CRL_new();
	X509_CRL_set_version(crl, 1);
	X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca1.x509));
	ASN1_TIME *t = ASN1_TIME_adj(NULL, time(NULL), -1, 0);
	X509_CRL_set1_lastUpdate(crl, t);
	ASN1_TIME_adj(t, time(NULL), 30, 0);
	X509_CRL_set1_nextUpdate(crl, t);
	X509_REVOKED *r = X509_REVOKED_new();
	X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(revoked.x509));
	ASN1_TIME_adj(t, time(NULL), -1, 0);
	X509_REVOKED_set_revocationDate(r, t);
	X509_CRL_add0_revoked(crl, r);
	X509_CRL_sort(crl);
	X509_CRL_sign(crl, ca1.key, EVP_sha256());
	BIO *m = BIO_new(BIO_s_mem());
	PEM_write_bio_X509_CRL(m, crl);
	crl_pem = bio_to_str(m, &crl_len);
	BIO_free(m);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
}

static int setup(void **state)
{
	(void)state;
	if (tg_tls_init() < 0)
		return -1;
	ca1 = tcert_make(&(tcert_opts_t){.cn = "Test CA 1", .ca = true, .not_after = 864000});
	ca2 = tcert_make(&(tcert_opts_t){.cn = "Test CA 2", .ca = true, .not_after = 864000});
	srv = tcert_make(&(tcert_opts_t){
	    .cn = "srv",
	    .sans = "DNS:secure.example.com,DNS:opt.example.com,DNS:noca.example.com,"
		    "DNS:crl.example.com,DNS:open.example.com,DNS:alias.example.com"});
	good = tcert_make(&(tcert_opts_t){.cn = "alice", .issuer = &ca1, .client = true});
	wrong_ca = tcert_make(&(tcert_opts_t){.cn = "mallory", .issuer = &ca2, .client = true});
	expired = tcert_make(&(tcert_opts_t){.cn = "bob",
					     .issuer = &ca1,
					     .client = true,
					     .not_before = -20 * 86400,
					     .not_after = -86400});
	revoked = tcert_make(&(tcert_opts_t){.cn = "eve", .issuer = &ca1, .client = true});
	make_crl();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tcert_t *all[] = {&ca1, &ca2, &srv, &good, &wrong_ca, &expired, &revoked};
	for (size_t i = 0; i < TG_ARRAY_SIZE(all); i++)
		tcert_free(all[i]);
	free(crl_pem);
	tg_tls_cleanup();
	return 0;
}

/* The store of one snapshot and the policies its routes would carry. */
typedef struct world {
	tg_tls_store_t *store;		  /* the store */
	const tg_tls_client_auth_t *on;	  /* secure.example.com and alias.example.com */
	const tg_tls_client_auth_t *opt;  /* opt.example.com */
	const tg_tls_client_auth_t *noca; /* noca.example.com */
	const tg_tls_client_auth_t *crl;  /* crl.example.com */
} world_t;

static void world_build(world_t *w)
{
	char err[TG_TLS_ERR_MAX];
	tg_tls_store_builder_t *b = tg_tls_store_builder_new(NULL, NULL, err, sizeof(err));
	assert_non_null(b);
	assert_int_equal(tg_tls_store_add_cert(b, "ns/srv", srv.cert_pem, srv.cert_len, srv.key_pem,
					       srv.key_len, NULL, 0, err, sizeof(err)),
			 0);
	tg_tls_client_auth_config_t cfg = {.ca_pem = ca1.cert_pem,
					   .ca_len = ca1.cert_len,
					   .verify = TG_TLS_VERIFY_ON,
					   .pass_cert = true};
	const char *on_hosts[] = {"secure.example.com", "alias.example.com"};
	w->on = tg_tls_store_add_client_auth(b, "ns/ca", on_hosts, 2, &cfg, err, sizeof(err));
	assert_non_null(w->on);
	assert_string_equal(tg_tls_client_auth_source(w->on), "ns/ca");
	cfg.verify = TG_TLS_VERIFY_OPTIONAL;
	cfg.pass_cert = false;
	const char *opt_hosts[] = {"opt.example.com"};
	w->opt = tg_tls_store_add_client_auth(b, "ns/ca", opt_hosts, 1, &cfg, err, sizeof(err));
	cfg.verify = TG_TLS_VERIFY_OPTIONAL_NO_CA;
	const char *noca_hosts[] = {"noca.example.com"};
	w->noca = tg_tls_store_add_client_auth(b, "ns/ca", noca_hosts, 1, &cfg, err, sizeof(err));
	cfg.verify = TG_TLS_VERIFY_ON;
	cfg.crl_pem = crl_pem;
	cfg.crl_len = crl_len;
	const char *crl_hosts[] = {"crl.example.com"};
	w->crl = tg_tls_store_add_client_auth(b, "ns/ca-crl", crl_hosts, 1, &cfg, err, sizeof(err));
	assert_non_null(w->opt);
	assert_non_null(w->noca);
	assert_non_null(w->crl);
	w->store = tg_tls_store_build(b, err, sizeof(err));
	assert_non_null(w->store);
}

/* Result of one request over a fresh connection. */
typedef struct verdict {
	int hs;		    /* thandshake result */
	int status;	    /* tg_tls_conn_check_client_auth */
	const char *reason; /* its reason */
	char headers[8192]; /* headers for upstream */
	long verify;	    /* tg_tls_conn_client_verify_result */
	bool resumed;	    /* the handshake resumed */
} verdict_t;

/* When set, the client's supported groups (forces a HelloRetryRequest when
 * its first group is one the server does not offer). */
static const char *client_groups;

static verdict_t *request(const world_t *w, const char *sni, const tcert_t *client,
			  const tg_tls_client_auth_t *route, int max_version, SSL_SESSION **sess)
{
	static verdict_t v;
	memset(&v, 0, sizeof(v));
	int sv[2];
	tpair(sv);
	SSL_CTX *cctx = tclient_ctx(0, max_version, NULL, 0, client);
	if (client_groups)
		SSL_CTX_set1_groups_list(cctx, client_groups);
	SSL *cli = tclient_new(cctx, sv[1], sni, sess ? *sess : NULL);
	tg_tls_conn_t *c = tg_tls_conn_new(w->store, sv[0]);
	v.hs = thandshake(cli, c);
	if (v.hs == 0) {
		/* The handshake never fails because of a client certificate:
		 * data flows, and the verdict is given per request. */
		assert_int_equal(texchange(cli, c), 0);
		tg_sbuf_t h = {0};
		v.status = tg_tls_conn_check_client_auth(c, route, &v.reason, &h);
		if (h.data)
			snprintf(v.headers, sizeof(v.headers), "%s", h.data);
		tg_sbuf_free(&h);
		v.verify = tg_tls_conn_client_verify_result(c);
		v.resumed = tg_tls_conn_resumed(c);
		if (sess && !*sess)
			*sess = SSL_get1_session(cli);
	}
	tg_tls_conn_free(c);
	SSL_shutdown(cli);
	SSL_free(cli);
	SSL_CTX_free(cctx);
	close(sv[0]);
	close(sv[1]);
	return &v;
}

static void test_on(void **state)
{
	(void)state;
	world_t w;
	world_build(&w);
	for (int i = 0; i < 2; i++) {
		int maxv = i ? TLS1_2_VERSION : 0;
		verdict_t *v = request(&w, "secure.example.com", &good, w.on, maxv, NULL);
		assert_int_equal(v->hs, 0);
		assert_int_equal(v->status, 0);
		assert_int_equal(v->verify, X509_V_OK);
		assert_non_null(strstr(v->headers, "ssl-client-verify: SUCCESS\r\n"));
		assert_non_null(strstr(v->headers, "ssl-client-subject-dn: CN=alice\r\n"));
		assert_non_null(strstr(v->headers, "ssl-client-issuer-dn: CN=Test CA 1\r\n"));
		assert_non_null(
		    strstr(v->headers, "ssl-client-cert: -----BEGIN%20CERTIFICATE-----%0A"));

		uint64_t missing = tmetric(
		    "tidegate_tls_client_certificate_rejections_total{reason=\"missing\"} ");
		v = request(&w, "secure.example.com", NULL, w.on, maxv, NULL);
		assert_int_equal(v->hs, 0);
		assert_int_equal(v->status, 400);
		assert_string_equal(v->reason, "No required SSL certificate was sent");
		assert_int_equal(tmetric("tidegate_tls_client_certificate_rejections_total"
					 "{reason=\"missing\"} "),
				 missing + 1);

		v = request(&w, "secure.example.com", &wrong_ca, w.on, maxv, NULL);
		assert_int_equal(v->status, 400);
		assert_string_equal(v->reason, "The SSL certificate error");
		assert_int_not_equal(v->verify, X509_V_OK);

		v = request(&w, "secure.example.com", &expired, w.on, maxv, NULL);
		assert_int_equal(v->status, 400);
		assert_string_equal(v->reason, "The SSL certificate error");
		assert_int_equal(v->verify, X509_V_ERR_CERT_HAS_EXPIRED);
	}
	tg_tls_store_free(w.store);
}

static void test_optional(void **state)
{
	(void)state;
	world_t w;
	world_build(&w);
	verdict_t *v = request(&w, "opt.example.com", NULL, w.opt, 0, NULL);
	assert_int_equal(v->status, 0);
	assert_string_equal(v->headers, "ssl-client-verify: NONE\r\n");
	v = request(&w, "opt.example.com", &good, w.opt, 0, NULL);
	assert_int_equal(v->status, 0);
	assert_non_null(strstr(v->headers, "ssl-client-verify: SUCCESS"));
	assert_null(strstr(v->headers, "ssl-client-cert:")); /* pass_cert off */
	v = request(&w, "opt.example.com", &wrong_ca, w.opt, 0, NULL);
	assert_int_equal(v->status, 400);
	assert_string_equal(v->reason, "The SSL certificate error");

	/* optional_no_ca: an unknown issuer passes (and is reported upstream),
	 * an expired certificate does not. */
	v = request(&w, "noca.example.com", &wrong_ca, w.noca, 0, NULL);
	assert_int_equal(v->status, 0);
	assert_non_null(strstr(v->headers, "ssl-client-verify: FAILED:"));
	assert_non_null(strstr(v->headers, "ssl-client-subject-dn: CN=mallory"));
	v = request(&w, "noca.example.com", &expired, w.noca, 0, NULL);
	assert_int_equal(v->status, 400);
	tg_tls_store_free(w.store);
}

static void test_crl(void **state)
{
	(void)state;
	world_t w;
	world_build(&w);
	verdict_t *v = request(&w, "crl.example.com", &revoked, w.crl, 0, NULL);
	assert_int_equal(v->status, 400);
	assert_int_equal(v->verify, X509_V_ERR_CERT_REVOKED);
	v = request(&w, "crl.example.com", &good, w.crl, 0, NULL);
	assert_int_equal(v->status, 0);
	/* Without the CRL the same certificate is fine. */
	v = request(&w, "secure.example.com", &revoked, w.on, 0, NULL);
	assert_int_equal(v->status, 0);
	tg_tls_store_free(w.store);
}

/* SNI picks the policy during the handshake; Host picks the route later. */
static void test_misdirected(void **state)
{
	(void)state;
	world_t w;
	world_build(&w);
	uint64_t before =
	    tmetric("tidegate_tls_client_certificate_rejections_total{reason=\"misdirected\"} ");
	/* SNI of a host without client certificates, Host of one with. */
	verdict_t *v = request(&w, "open.example.com", &good, w.on, 0, NULL);
	assert_int_equal(v->status, 421);
	assert_string_equal(v->reason, "Misdirected Request");
	/* Another policy (optional instead of on). */
	v = request(&w, "opt.example.com", &good, w.on, 0, NULL);
	assert_int_equal(v->status, 421);
	assert_int_equal(
	    tmetric("tidegate_tls_client_certificate_rejections_total{reason=\"misdirected\"} "),
	    before + 2);
	/* Another host with the very same policy: allowed. */
	v = request(&w, "alias.example.com", &good, w.on, 0, NULL);
	assert_int_equal(v->status, 0);
	/* A route without client certificates: nothing to check. */
	v = request(&w, "secure.example.com", &good, NULL, 0, NULL);
	assert_int_equal(v->status, 0);
	assert_string_equal(v->headers, "");
	/* Plain HTTP (no TLS connection). */
	assert_int_equal(tg_tls_conn_check_client_auth(NULL, w.on, NULL, NULL), 0);
	tg_tls_store_free(w.store);
}

/* A resumed session keeps its certificate and verdict; a session made
 * without the policy does not resume under it. */
static void test_resumed(void **state)
{
	(void)state;
	world_t w;
	world_build(&w);
	for (int i = 0; i < 2; i++) {
		int maxv = i ? TLS1_2_VERSION : 0;
		SSL_SESSION *sess = NULL;
		verdict_t *v = request(&w, "secure.example.com", &good, w.on, maxv, &sess);
		assert_int_equal(v->status, 0);
		assert_non_null(sess);
		v = request(&w, "secure.example.com", &good, w.on, maxv, &sess);
		assert_true(v->resumed);
		assert_int_equal(v->status, 0);
		assert_non_null(strstr(v->headers, "ssl-client-subject-dn: CN=alice"));
		SSL_SESSION_free(sess);

		sess = NULL;
		v = request(&w, "secure.example.com", &wrong_ca, w.on, maxv, &sess);
		assert_int_equal(v->status, 400);
		v = request(&w, "secure.example.com", &wrong_ca, w.on, maxv, &sess);
		assert_true(v->resumed);
		assert_int_equal(v->status, 400);
		SSL_SESSION_free(sess);

		/* Same certificate, no policy on open.example.com: its session
		 * must not resume on secure.example.com. */
		sess = NULL;
		v = request(&w, "open.example.com", NULL, NULL, maxv, &sess);
		assert_int_equal(v->hs, 0);
		v = request(&w, "secure.example.com", NULL, w.on, maxv, &sess);
		assert_false(v->resumed);
		assert_int_equal(v->status, 400);
		SSL_SESSION_free(sess);
	}
	tg_tls_store_free(w.store);
}

/* A HelloRetryRequest runs the ClientHello callback twice: the certificate
 * and the client-certificate request must survive it. */
static void test_hello_retry(void **state)
{
	(void)state;
	world_t w;
	world_build(&w);
	client_groups = "P-521:P-384"; /* key share for P-521, which we do not offer */
	verdict_t *v = request(&w, "secure.example.com", &good, w.on, 0, NULL);
	client_groups = NULL;
	assert_int_equal(v->hs, 0);
	assert_int_equal(v->status, 0);
	assert_non_null(strstr(v->headers, "ssl-client-subject-dn: CN=alice"));
	tg_tls_store_free(w.store);
}

static void test_bad_ca_secret(void **state)
{
	(void)state;
	char err[TG_TLS_ERR_MAX];
	tg_tls_client_auth_config_t cfg = {.ca_pem = "nope", .ca_len = 4};
	assert_int_equal(tg_tls_client_auth_validate(&cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "ca.crt"));
	tg_tls_store_builder_t *b = tg_tls_store_builder_new(NULL, NULL, err, sizeof(err));
	const char *hosts[] = {"secure.example.com"};
	assert_null(tg_tls_store_add_client_auth(b, "team/ca", hosts, 1, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "team/ca: ca.crt"));
	cfg = (tg_tls_client_auth_config_t){
	    .ca_pem = ca1.cert_pem, .ca_len = ca1.cert_len, .crl_pem = "bad", .crl_len = 3};
	assert_null(tg_tls_store_add_client_auth(b, "team/ca", hosts, 1, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "ca.crl"));
	cfg.crl_pem = NULL;
	cfg.depth = 1000;
	assert_null(tg_tls_store_add_client_auth(b, "team/ca", hosts, 1, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "auth-tls-verify-depth"));
	tg_tls_store_builder_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_on),
	    cmocka_unit_test(test_optional),
	    cmocka_unit_test(test_crl),
	    cmocka_unit_test(test_misdirected),
	    cmocka_unit_test(test_resumed),
	    cmocka_unit_test(test_hello_retry),
	    cmocka_unit_test(test_bad_ca_secret),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

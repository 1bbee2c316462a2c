/*
 * test_store.c - the certificate store: options, Secret validation, which
 * certificate a handshake gets for a given SNI (exact, wildcard, case,
 * default), spec.tls hosts, --default-ssl-certificate.
 */
#include "tls_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

static tcert_t a_cert, wild_cert, cn_cert, other_cert;

static int setup(void **state)
{
	(void)state;
	if (tg_tls_init() < 0)
		return -1;
	a_cert = tcert_make(&(tcert_opts_t){.cn = "a", .sans = "DNS:a.example.com"});
	wild_cert = tcert_make(&(tcert_opts_t){.cn = "wild", .sans = "DNS:*.example.com"});
	cn_cert = tcert_make(&(tcert_opts_t){.cn = "c.example.org"}); /* no SAN: CN counts */
	other_cert = tcert_make(&(tcert_opts_t){.cn = "other", .sans = "DNS:other.example.net"});
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tcert_free(&a_cert);
	tcert_free(&wild_cert);
	tcert_free(&cn_cert);
	tcert_free(&other_cert);
	tg_tls_cleanup();
	return 0;
}

static void test_options(void **state)
{
	(void)state;
	char err[TG_TLS_ERR_MAX];
	assert_int_equal(tg_tls_options_check(NULL, err, sizeof(err)), 0);
	assert_int_equal(
	    tg_tls_options_check(&(tg_tls_options_t){.protocols = "TLSv1.3"}, err, sizeof(err)), 0);
	/* Legacy versions are dropped with a warning, not fatal. */
	assert_int_equal(
	    tg_tls_options_check(&(tg_tls_options_t){.protocols = "TLSv1 TLSv1.1 TLSv1.2"}, err,
				 sizeof(err)),
	    0);

	assert_int_equal(tg_tls_options_check(&(tg_tls_options_t){.protocols = "TLSv1.2 TLSv1.4"},
					      err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "ssl-protocols"));
	assert_non_null(strstr(err, "TLSv1.4"));

	assert_int_equal(
	    tg_tls_options_check(&(tg_tls_options_t){.protocols = "TLSv1.1"}, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "neither"));

	assert_int_equal(
	    tg_tls_options_check(&(tg_tls_options_t){.ciphers = "NOPE-CIPHER"}, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "ssl-ciphers"));
	/* One bad name among good ones: accepted (warned). */
	assert_int_equal(
	    tg_tls_options_check(&(tg_tls_options_t){.ciphers = "NOPE:ECDHE-RSA-AES128-GCM-SHA256"},
				 err, sizeof(err)),
	    0);
	/* The TLS 1.2 list does not matter when only TLS 1.3 is on. */
	assert_int_equal(
	    tg_tls_options_check(&(tg_tls_options_t){.protocols = "TLSv1.3", .ciphers = "NOPE"},
				 err, sizeof(err)),
	    0);
	assert_int_equal(tg_tls_options_check(&(tg_tls_options_t){.http2 = true}, err, sizeof(err)),
			 -EINVAL);

	/* The builder refuses bad options with the same message. */
	assert_null(tg_tls_store_builder_new(&(tg_tls_options_t){.protocols = "SSLv9"}, NULL, err,
					     sizeof(err)));
	assert_non_null(strstr(err, "SSLv9"));
}

static void test_verify_parse(void **state)
{
	(void)state;
	tg_tls_verify_t v;
	assert_int_equal(tg_tls_verify_parse("on", 2, &v), 0);
	assert_int_equal(v, TG_TLS_VERIFY_ON);
	assert_int_equal(tg_tls_verify_parse("Optional_No_CA", 14, &v), 0);
	assert_int_equal(v, TG_TLS_VERIFY_OPTIONAL_NO_CA);
	assert_int_equal(tg_tls_verify_parse("optional", 8, &v), 0);
	assert_int_equal(v, TG_TLS_VERIFY_OPTIONAL);
	assert_int_equal(tg_tls_verify_parse("off", 3, &v), 0);
	assert_int_equal(v, TG_TLS_VERIFY_OFF);
	assert_int_equal(tg_tls_verify_parse("yes", 3, &v), -EINVAL);
}

static void test_validate(void **state)
{
	(void)state;
	char err[TG_TLS_ERR_MAX];
	assert_int_equal(tg_tls_cert_validate(a_cert.cert_pem, a_cert.cert_len, a_cert.key_pem,
					      a_cert.key_len, err, sizeof(err)),
			 0);

	static const char junk[] = "-----BEGIN CERTIFICATE-----\nnot base64 !!\n"
				   "-----END CERTIFICATE-----\n";
	assert_int_equal(tg_tls_cert_validate(junk, sizeof(junk) - 1, a_cert.key_pem,
					      a_cert.key_len, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "tls.crt"));

	assert_int_equal(
	    tg_tls_cert_validate("", 0, a_cert.key_pem, a_cert.key_len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "tls.crt is empty"));

	assert_int_equal(
	    tg_tls_cert_validate(a_cert.cert_pem, a_cert.cert_len, "garbage", 7, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "tls.key"));

	/* Key of another certificate. */
	assert_int_equal(tg_tls_cert_validate(a_cert.cert_pem, a_cert.cert_len, wild_cert.key_pem,
					      wild_cert.key_len, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "does not match"));

	/* Encrypted key: refused, never prompted for. */
	BIO *m = BIO_new(BIO_s_mem());
	PEM_write_bio_PKCS8PrivateKey(m, a_cert.key, EVP_aes_128_cbc(), NULL, 0, NULL,
				      (void *)"secret");
	char *p;
	long n = BIO_get_mem_data(m, &p);
	assert_int_equal(
	    tg_tls_cert_validate(a_cert.cert_pem, a_cert.cert_len, p, (size_t)n, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "encrypted"));
	BIO_free(m);

	/* Expired: accepted (logged when added). */
	tcert_t old = tcert_make(&(tcert_opts_t){.cn = "old",
						 .sans = "DNS:old.example.com",
						 .not_before = -20 * 86400,
						 .not_after = -10 * 86400});
	assert_int_equal(tg_tls_cert_validate(old.cert_pem, old.cert_len, old.key_pem, old.key_len,
					      err, sizeof(err)),
			 0);
	tg_tls_store_t *s = tstore(NULL, NULL, &old, 1);
	assert_non_null(s);
	assert_string_equal(tg_tls_store_lookup(s, "old.example.com", 15), "ns/c0");
	tg_tls_store_free(s);
	tcert_free(&old);
}

/* A broken Secret is rejected with its name; the builder stays usable and
 * the caller can add the previous good version instead. */
static void test_broken_secret_rejected(void **state)
{
	(void)state;
	char err[TG_TLS_ERR_MAX];
	tg_tls_store_builder_t *b = tg_tls_store_builder_new(NULL, NULL, err, sizeof(err));
	assert_non_null(b);
	assert_int_equal(tg_tls_store_add_cert(b, "shop/tls", a_cert.cert_pem, a_cert.cert_len,
					       wild_cert.key_pem, wild_cert.key_len, NULL, 0, err,
					       sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "shop/tls: "));
	assert_non_null(strstr(err, "does not match"));
	assert_int_equal(tg_tls_store_add_cert(b, "shop/tls", a_cert.cert_pem, a_cert.cert_len,
					       a_cert.key_pem, a_cert.key_len, NULL, 0, err,
					       sizeof(err)),
			 0);
	tg_tls_store_t *s = tg_tls_store_build(b, err, sizeof(err));
	assert_non_null(s);
	assert_string_equal(tg_tls_store_lookup(s, "a.example.com", 13), "shop/tls");
	assert_int_equal(tg_tls_store_count(s), 2);
	tg_tls_store_free(s);
}

static void test_lookup(void **state)
{
	(void)state;
	tcert_t certs[] = {a_cert, wild_cert, cn_cert};
	tg_tls_store_t *s = tstore(NULL, NULL, certs, 3);
	assert_non_null(s);
#define L(h) tg_tls_store_lookup(s, h, strlen(h))
	assert_string_equal(L("a.example.com"), "ns/c0"); /* exact beats wildcard */
	assert_string_equal(L("A.Example.COM"), "ns/c0"); /* case-insensitive */
	assert_string_equal(L("a.example.com."), "ns/c0");
	assert_string_equal(L("b.example.com"), "ns/c1");	       /* wildcard */
	assert_string_equal(L("x.b.example.com"), "tidegate default"); /* one label only */
	assert_string_equal(L("example.com"), "tidegate default");
	assert_string_equal(L("c.example.org"), "ns/c2"); /* CN when no SAN */
	assert_string_equal(L("unknown.test"), "tidegate default");
	assert_string_equal(L("bad host"), "tidegate default");
	assert_string_equal(tg_tls_store_lookup(s, NULL, 0), "tidegate default");
#undef L
	tg_tls_store_free(s);
}

/* spec.tls hosts are served even when the certificate does not list them,
 * and beat another certificate's SAN. */
static void test_spec_tls_hosts(void **state)
{
	(void)state;
	char err[TG_TLS_ERR_MAX];
	tg_tls_store_builder_t *b = tg_tls_store_builder_new(NULL, NULL, err, sizeof(err));
	assert_non_null(b);
	assert_int_equal(tg_tls_store_add_cert(b, "ns/a", a_cert.cert_pem, a_cert.cert_len,
					       a_cert.key_pem, a_cert.key_len, NULL, 0, err,
					       sizeof(err)),
			 0);
	const char *hosts[] = {"a.example.com", "extra.example.net", "not a host"};
	assert_int_equal(tg_tls_store_add_cert(b, "ns/other", other_cert.cert_pem,
					       other_cert.cert_len, other_cert.key_pem,
					       other_cert.key_len, hosts, 3, err, sizeof(err)),
			 0);
	/* Same source again: only adds hosts. */
	const char *more[] = {"*.more.example.net"};
	assert_int_equal(
	    tg_tls_store_add_cert(b, "ns/other", NULL, 0, NULL, 0, more, 1, err, sizeof(err)), 0);
	tg_tls_store_t *s = tg_tls_store_build(b, err, sizeof(err));
	assert_non_null(s);
	assert_string_equal(tg_tls_store_lookup(s, "a.example.com", 13), "ns/other");
	assert_string_equal(tg_tls_store_lookup(s, "extra.example.net", 17), "ns/other");
	assert_string_equal(tg_tls_store_lookup(s, "other.example.net", 17), "ns/other");
	assert_string_equal(tg_tls_store_lookup(s, "x.more.example.net", 18), "ns/other");
	assert_int_equal(tg_tls_store_count(s), 3);
	tg_tls_store_free(s);
}

static int connect_cn(tg_tls_store_t *s, const char *sni, char *cn, size_t cnlen)
{
	int sv[2];
	tpair(sv);
	SSL_CTX *cctx = tclient_ctx(0, 0, NULL, 0, NULL);
	SSL *cli = tclient_new(cctx, sv[1], sni, NULL);
	tg_tls_conn_t *c = tg_tls_conn_new(s, sv[0]);
	assert_non_null(c);
	int rc = thandshake(cli, c);
	tpeer_cn(cli, cn, cnlen);
	if (rc == 0 && sni) {
		assert_non_null(tg_tls_conn_sni(c));
	}
	tg_tls_conn_free(c);
	SSL_free(cli);
	SSL_CTX_free(cctx);
	close(sv[0]);
	close(sv[1]);
	return rc;
}

/* Real handshakes: the certificate sent follows the SNI. */
static void test_handshake_sni(void **state)
{
	(void)state;
	tcert_t certs[] = {a_cert, wild_cert};
	tg_tls_store_t *s = tstore(NULL, NULL, certs, 2);
	assert_non_null(s);
	char cn[64];
	uint64_t defaults = tmetric("tidegate_tls_default_certificate_total ");
	assert_int_equal(connect_cn(s, "a.example.com", cn, sizeof(cn)), 0);
	assert_string_equal(cn, "a");
	assert_int_equal(connect_cn(s, "B.EXAMPLE.COM", cn, sizeof(cn)), 0);
	assert_string_equal(cn, "wild");
	assert_int_equal(tmetric("tidegate_tls_default_certificate_total "), defaults);
	assert_int_equal(connect_cn(s, "unknown.example.org", cn, sizeof(cn)), 0);
	assert_string_equal(cn, "tidegate default");
	assert_int_equal(connect_cn(s, NULL, cn, sizeof(cn)), 0);
	assert_string_equal(cn, "tidegate default");
	assert_int_equal(tmetric("tidegate_tls_default_certificate_total "), defaults + 2);
	tg_tls_store_free(s);
}

/* --default-ssl-certificate replaces the generated one. */
static void test_default_certificate(void **state)
{
	(void)state;
	char err[TG_TLS_ERR_MAX];
	tg_tls_store_builder_t *b = tg_tls_store_builder_new(NULL, NULL, err, sizeof(err));
	assert_non_null(b);
	assert_int_equal(tg_tls_store_set_default_cert(b, "ingress/default", a_cert.key_pem,
						       a_cert.key_len, a_cert.key_pem,
						       a_cert.key_len, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "ingress/default: tls.crt"));
	assert_int_equal(tg_tls_store_set_default_cert(b, "ingress/default", other_cert.cert_pem,
						       other_cert.cert_len, other_cert.key_pem,
						       other_cert.key_len, err, sizeof(err)),
			 0);
	tg_tls_store_t *s = tg_tls_store_build(b, err, sizeof(err));
	assert_non_null(s);
	char cn[64];
	assert_int_equal(connect_cn(s, "nobody.example.com", cn, sizeof(cn)), 0);
	assert_string_equal(cn, "other");
	/* The default certificate does not serve its own names by itself. */
	assert_string_equal(tg_tls_store_lookup(s, "other.example.net", 17), "ingress/default");
	assert_int_equal(tg_tls_store_count(s), 1);
	tg_tls_store_free(s);
}

/* A rebuild that passes the previous store gives the same answers. */
static void test_rebuild_reuses(void **state)
{
	(void)state;
	tcert_t certs[] = {a_cert, wild_cert};
	tg_tls_store_t *s1 = tstore(NULL, NULL, certs, 2);
	tg_tls_store_t *s2 = tstore(NULL, s1, certs, 2);
	assert_non_null(s1);
	assert_non_null(s2);
	tg_tls_store_free(s1); /* s2 must not depend on s1 */
	char cn[64];
	assert_int_equal(connect_cn(s2, "zz.example.com", cn, sizeof(cn)), 0);
	assert_string_equal(cn, "wild");
	assert_int_equal(connect_cn(s2, NULL, cn, sizeof(cn)), 0);
	assert_string_equal(cn, "tidegate default");
	tg_tls_store_free(s2);
}

/* Runs fn with stderr captured into buf (NUL-terminated). */
static void capture_stderr(void (*fn)(void *), void *arg, char *buf, size_t len)
{
	char path[] = "/tmp/tg-tls-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	int saved = dup(2);
	dup2(fd, 2);
	fn(arg);
	dup2(saved, 2);
	close(saved);
	ssize_t n = pread(fd, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
}

typedef struct rebuild {
	tg_tls_store_t *prev; /* in: template */
	tg_tls_store_t *out;  /* out: new store */
} rebuild_t;

static void build_with_warnings(void *arg)
{
	rebuild_t *r = arg;
	char err[TG_TLS_ERR_MAX];
	tg_tls_store_builder_t *b = tg_tls_store_builder_new(NULL, r->prev, err, sizeof(err));
	const char *hosts[] = {"uncovered.example.com"};
	tg_tls_store_add_cert(b, "ns/a", a_cert.cert_pem, a_cert.cert_len, a_cert.key_pem,
			      a_cert.key_len, hosts, 1, err, sizeof(err));
	r->out = tg_tls_store_build(b, err, sizeof(err));
}

/* A misconfiguration is logged when it appears, not again at every rebuild
 * (snapshots are rebuilt for every EndpointSlice change). */
static void test_warnings_once(void **state)
{
	(void)state;
	char log[4096];
	rebuild_t r1 = {0}, r2, r3 = {0};
	capture_stderr(build_with_warnings, &r1, log, sizeof(log));
	assert_non_null(r1.out);
	assert_non_null(strstr(log, "ns/a: certificate does not cover spec.tls host "
				    "uncovered.example.com"));
	r2 = (rebuild_t){.prev = r1.out};
	capture_stderr(build_with_warnings, &r2, log, sizeof(log));
	assert_non_null(r2.out);
	assert_string_equal(log, "");
	/* Without the previous store it is news again. */
	capture_stderr(build_with_warnings, &r3, log, sizeof(log));
	assert_non_null(strstr(log, "uncovered.example.com"));
	tg_tls_store_free(r1.out);
	tg_tls_store_free(r2.out);
	tg_tls_store_free(r3.out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_options),	   cmocka_unit_test(test_verify_parse),
	    cmocka_unit_test(test_validate),	   cmocka_unit_test(test_broken_secret_rejected),
	    cmocka_unit_test(test_lookup),	   cmocka_unit_test(test_spec_tls_hosts),
	    cmocka_unit_test(test_handshake_sni),  cmocka_unit_test(test_default_certificate),
	    cmocka_unit_test(test_rebuild_reuses), cmocka_unit_test(test_warnings_once),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

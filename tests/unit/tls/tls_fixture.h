/*
 * tls_fixture.h - shared by the tests/unit/tls tests (header-only so that it
 * is not linked into every other unit test): certificates generated at test
 * time with the OpenSSL API, an OpenSSL client, and a loop that drives a
 * client and a tg_tls_conn_t over a non-blocking socketpair.
 */
#ifndef TG_TESTS_TLS_FIXTURE_H
#define TG_TESTS_TLS_FIXTURE_H

#include "tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct tcert {
	char *cert_pem;	 /* PEM of the certificate (owned) */
	size_t cert_len; /* bytes */
	char *key_pem;	 /* PEM of the private key (owned) */
	size_t key_len;	 /* bytes */
	X509 *x509;	 /* the certificate (owned) */
	EVP_PKEY *key;	 /* the key (owned) */
} tcert_t;

typedef struct tcert_opts {
	const char *cn;	       /* subject CN */
	const char *sans;      /* subjectAltName in openssl.cnf syntax, or NULL */
	const tcert_t *issuer; /* NULL: self-signed */
	long not_before;       /* seconds from now (negative: past) */
	long not_after;	       /* seconds from now */
	bool ca;	       /* CA:TRUE */
	bool client;	       /* clientAuth EKU instead of serverAuth */
	bool rsa;	       /* RSA 2048 instead of ECDSA P-256 */
} tcert_opts_t;

static TG_UNUSED char *bio_to_str(BIO *m, size_t *len)
{
	char *p;
	long n = BIO_get_mem_data(m, &p);
	char *s = malloc((size_t)n + 1);
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	*len = (size_t)n;
	return s;
}

static TG_UNUSED int tcert_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!e)
		return -1;
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return 0;
}

/* Makes a certificate; aborts the test program on failure. */
static TG_UNUSED tcert_t tcert_make(const tcert_opts_t *o)
{
	tcert_t c = {0};
	c.key = o->rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
	X509 *x = X509_new();
	if (!c.key || !x)
		abort();
	unsigned char serial[8];
	RAND_bytes(serial, sizeof(serial));
	ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), (*(uint64_t *)serial) >> 2);
	X509_set_version(x, 2);
	X509_gmtime_adj(X509_getm_notBefore(x), o->not_before);
	X509_gmtime_adj(X509_getm_notAfter(x), o->not_after ? o->not_after : 86400);
	X509_set_pubkey(x, c.key);
	X509_NAME *nm = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)o->cn, -1, -1, 0);
	X509 *issuer = o->issuer ? o->issuer->x509 : x;
	X509_set_issuer_name(x, X509_get_subject_name(issuer));
	tcert_ext(x, issuer, NID_basic_constraints, o->ca ? "critical,CA:TRUE" : "CA:FALSE");
	if (o->ca)
		tcert_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
	else
		tcert_ext(x, issuer, NID_ext_key_usage, o->client ? "clientAuth" : "serverAuth");
	tcert_ext(x, issuer, NID_subject_key_identifier, "hash");
	if (o->issuer)
		tcert_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
	if (o->sans && tcert_ext(x, issuer, NID_subject_alt_name, o->sans) < 0)
		abort();
	if (!X509_sign(x, o->issuer ? o->issuer->key : c.key, EVP_sha256()))
		abort();
	c.x509 = x;
	BIO *m = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(m, x);
	c.cert_pem = bio_to_str(m, &c.cert_len);
	BIO_free(m);
	m = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(m, c.key, NULL, NULL, 0, NULL, NULL);
	c.key_pem = bio_to_str(m, &c.key_len);
	BIO_free(m);
	return c;
}

static TG_UNUSED void tcert_free(tcert_t *c)
{
	free(c->cert_pem);
	free(c->key_pem);
	X509_free(c->x509);
	EVP_PKEY_free(c->key);
	memset(c, 0, sizeof(*c));
}

/* A non-blocking socketpair: sv[0] server side, sv[1] client side. */
static TG_UNUSED void tpair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	for (int i = 0; i < 2; i++)
		fcntl(sv[i], F_SETFL, fcntl(sv[i], F_GETFL) | O_NONBLOCK);
}

/* A client context. min/max 0 mean OpenSSL's defaults; alpn in wire format
 * (NULL: none); cert: client certificate or NULL. Trusts nothing (the tests
 * look at what the server sent instead of verifying it). */
static TG_UNUSED SSL_CTX *tclient_ctx(int min, int max, const char *alpn, size_t alpn_len,
				      const tcert_t *cert)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (min)
		SSL_CTX_set_min_proto_version(ctx, min);
	if (max)
		SSL_CTX_set_max_proto_version(ctx, max);
	if (alpn)
		SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)alpn, (unsigned)alpn_len);
	if (cert) {
		SSL_CTX_use_certificate(ctx, cert->x509);
		SSL_CTX_use_PrivateKey(ctx, cert->key);
	}
	/* No client cache: freeing a context marks its cached sessions not
	 * resumable, and the tests carry sessions across contexts. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
}

static TG_UNUSED SSL *tclient_new(SSL_CTX *ctx, int fd, const char *sni, SSL_SESSION *sess)
{
	SSL *s = SSL_new(ctx);
	SSL_set_fd(s, fd);
	SSL_set_connect_state(s);
	if (sni)
		SSL_set_tlsext_host_name(s, sni);
	if (sess)
		SSL_set_session(s, sess);
	return s;
}

/*
 * Steps both sides until both finished or one failed. Returns 0 when both
 * completed, -1 when the client failed, -2 when the server failed (the
 * server's error wins when both failed).
 */
static TG_UNUSED int thandshake(SSL *cli, tg_tls_conn_t *srv)
{
	bool cdone = false, sdone = false, cfail = false;
	for (int i = 0; i < 200 && !(cdone && sdone); i++) {
		if (!cdone && !cfail) {
			int r = SSL_do_handshake(cli);
			if (r == 1) {
				cdone = true;
			} else {
				int e = SSL_get_error(cli, r);
				if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
					cfail = true;
			}
		}
		if (!sdone) {
			int r = tg_tls_conn_handshake(srv);
			if (r == TG_OK)
				sdone = true;
			else if (r == TG_ERROR)
				return -2;
		}
		if (cfail && i > 20)
			break;
	}
	ERR_clear_error();
	if (cdone && sdone)
		return 0;
	return cfail ? -1 : -3;
}

/* Subject CN of the certificate the server presented, into buf. */
static TG_UNUSED const char *tpeer_cn(SSL *cli, char *buf, size_t len)
{
	X509 *x = SSL_get0_peer_certificate(cli);
	buf[0] = '\0';
	if (x)
		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)len);
	return buf;
}

/* Server writes a few bytes and the client reads them, which also makes the
 * client process the TLS 1.3 session tickets sent after the handshake.
 * Returns 0 when the bytes arrived intact. */
static TG_UNUSED int texchange(SSL *cli, tg_tls_conn_t *srv)
{
	static const char msg[] = "hello";
	struct iovec iov = {(void *)msg, sizeof(msg) - 1};
	if (tg_tls_conn_writev(srv, &iov, 1) != (ssize_t)(sizeof(msg) - 1))
		return -1;
	char buf[16];
	for (int i = 0; i < 50; i++) {
		int n = SSL_read(cli, buf, sizeof(buf));
		if (n > 0)
			return n == (int)sizeof(msg) - 1 && memcmp(buf, msg, (size_t)n) == 0 ? 0
											     : -1;
		if (SSL_get_error(cli, n) != SSL_ERROR_WANT_READ)
			return -1;
	}
	return -1;
}

/* Value of the metric sample line starting with `line` (name and labels
 * followed by a space), UINT64_MAX when absent. */
static TG_UNUSED uint64_t tmetric(const char *line)
{
	tg_sbuf_t b = {0};
	tg_tls_metrics(&b);
	/* Match at a line start: the HELP line also names the metric. */
	char *p = b.data;
	while ((p = strstr(p, line)) && p != b.data && p[-1] != '\n')
		p++;
	uint64_t v = p ? strtoull(p + strlen(line), NULL, 10) : UINT64_MAX;
	tg_sbuf_free(&b);
	return v;
}

/* A store with the given certificates added under source names "ns/c<i>" and
 * no spec.tls hosts. */
static TG_UNUSED tg_tls_store_t *tstore(const tg_tls_options_t *opts, const tg_tls_store_t *prev,
					const tcert_t *certs, size_t n)
{
	char err[TG_TLS_ERR_MAX];
	tg_tls_store_builder_t *b = tg_tls_store_builder_new(opts, prev, err, sizeof(err));
	if (!b) {
		fprintf(stderr, "builder: %s\n", err);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		char src[32];
		snprintf(src, sizeof(src), "ns/c%zu", i);
		if (tg_tls_store_add_cert(b, src, certs[i].cert_pem, certs[i].cert_len,
					  certs[i].key_pem, certs[i].key_len, NULL, 0, err,
					  sizeof(err)) < 0) {
			fprintf(stderr, "add: %s\n", err);
			tg_tls_store_builder_free(b);
			return NULL;
		}
	}
	return tg_tls_store_build(b, err, sizeof(err));
}

#endif

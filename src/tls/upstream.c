/*
 * upstream.c - client-side TLS profiles for backends (contract in upstream.h).
 *
 * A profile is one SSL_CTX: verification mode, trusted CAs, the name checked
 * in the backend's certificate and the optional client certificate are all
 * fixed per profile, so a connection only needs SSL_new, the SNI and the
 * session to resume.
 */
#include "tls/upstream.h"
#include "tls/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PEM (1u << 20) /* as store.c: larger Secrets are refused */

struct tg_tls_upstream {
	_Atomic uint32_t refs; /* snapshots naming it + pooled connections' users */
	SSL_CTX *ctx;	       /* one reference */
	char *sni;	       /* SNI to send, or NULL (proxy-ssl-server-name off) */
	uint64_t key;	       /* tg_tls_upstream_key */
};

static int no_password(char *buf, int size, int rw, void *u)
{
	(void)buf;
	(void)size;
	(void)rw;
	(void)u;
	return -1; /* never prompt: an encrypted key is an error */
}

static void digest(uint64_t *out, const tg_tls_upstream_config_t *cfg, const char *name)
{
	uint8_t md[32] = {0};
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	if (m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1) {
		uint8_t flags[2] = {cfg->verify, cfg->server_name};
		uint32_t depth = cfg->verify_depth;
		const void *p[] = {flags, &depth, name, cfg->ca_pem, cfg->cert_pem, cfg->key_pem};
		size_t l[] = {2,
			      4,
			      strlen(name),
			      cfg->ca_pem ? cfg->ca_len : 0,
			      cfg->cert_pem ? cfg->cert_len : 0,
			      cfg->key_pem ? cfg->key_len : 0};
		for (size_t i = 0; i < TG_ARRAY_SIZE(p); i++) {
			uint32_t len = (uint32_t)l[i];
			EVP_DigestUpdate(m, &len, sizeof(len)); /* field boundaries count */
			if (len)
				EVP_DigestUpdate(m, p[i], len);
		}
		EVP_DigestFinal_ex(m, md, NULL);
	}
	EVP_MD_CTX_free(m);
	memcpy(out, md, sizeof(*out));
	if (*out == 0)
		*out = 1;
}

/* Trusted CAs into the context's store. Returns 0 or a reason. */
static const char *load_ca(SSL_CTX *ctx, const char *pem, size_t len)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return "out of memory";
	STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio(bio, NULL, no_password, NULL);
	BIO_free(bio);
	if (!infos)
		return "ca.crt: no valid PEM certificate";
	X509_STORE *st = SSL_CTX_get_cert_store(ctx);
	int n = 0;
	const char *why = NULL;
	for (int i = 0; i < sk_X509_INFO_num(infos) && !why; i++) {
		X509_INFO *info = sk_X509_INFO_value(infos, i);
		if (!info->x509)
			continue;
		if (X509_STORE_add_cert(st, info->x509) != 1)
			why = "ca.crt: a certificate could not be added";
		n++;
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	if (!why && n == 0)
		why = "ca.crt: no valid PEM certificate";
	return why;
}

/* The client certificate (chain) and key presented to the backend. */
static const char *load_client_cert(SSL_CTX *ctx, const tg_tls_upstream_config_t *cfg)
{
	const char *why = NULL;
	BIO *bio = BIO_new_mem_buf(cfg->cert_pem, (int)cfg->cert_len);
	X509 *leaf = bio ? PEM_read_bio_X509(bio, NULL, no_password, NULL) : NULL;
	if (!leaf || SSL_CTX_use_certificate(ctx, leaf) != 1) {
		why = "tls.crt: no valid PEM certificate";
		goto out;
	}
	for (;;) {
		X509 *x = PEM_read_bio_X509(bio, NULL, no_password, NULL);
		if (!x)
			break;
		if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
			X509_free(x);
			why = "tls.crt: bad intermediate certificate";
			goto out;
		}
	}
	BIO_free(bio);
	bio = BIO_new_mem_buf(cfg->key_pem, (int)cfg->key_len);
	EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL) : NULL;
	if (!key || SSL_CTX_use_PrivateKey(ctx, key) != 1)
		why = "tls.key: no valid (unencrypted) PEM private key";
	else if (SSL_CTX_check_private_key(ctx) != 1)
		why = "tls.key does not match the certificate in tls.crt";
	EVP_PKEY_free(key);
out:
	X509_free(leaf);
	BIO_free(bio);
	return why;
}

tg_tls_upstream_t *tg_tls_upstream_new(const tg_tls_upstream_config_t *cfg, char *err,
				       size_t errlen)
{
	if (tg_tls_init() < 0) {
		snprintf(err, errlen, "TLS library initialisation failed");
		return NULL;
	}
	const char *name = cfg->name && *cfg->name ? cfg->name : TG_TLS_UPSTREAM_DEFAULT_NAME;
	const char *why = NULL;
	if ((cfg->ca_pem && cfg->ca_len > MAX_PEM) || (cfg->cert_pem && cfg->cert_len > MAX_PEM) ||
	    (cfg->key_pem && cfg->key_len > MAX_PEM)) {
		snprintf(err, errlen, "proxy-ssl-secret: a key is larger than 1 MiB");
		return NULL;
	}
	if (cfg->verify && (!cfg->ca_pem || !cfg->ca_len)) {
		snprintf(err, errlen, "proxy-ssl-verify on needs ca.crt in proxy-ssl-secret");
		return NULL;
	}
	if (!cfg->cert_pem != !cfg->key_pem) {
		snprintf(err, errlen, "proxy-ssl-secret: tls.crt and tls.key go together");
		return NULL;
	}
	tg_tls_upstream_t *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&p->refs, 1);
	ERR_clear_error();
	p->ctx = SSL_CTX_new(TLS_client_method());
	if (!p->ctx || SSL_CTX_set_min_proto_version(p->ctx, TLS1_2_VERSION) != 1) {
		why = "out of memory";
		goto fail;
	}
	SSL_CTX_set_options(p->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
					SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(p->ctx, SSL_MODE_RELEASE_BUFFERS);
	/* Sessions are kept by the caller (per endpoint), not in a cache here. */
	SSL_CTX_set_session_cache_mode(p->ctx, SSL_SESS_CACHE_OFF);
	if (cfg->ca_pem && cfg->ca_len && (why = load_ca(p->ctx, cfg->ca_pem, cfg->ca_len)))
		goto fail;
	if (cfg->cert_pem && (why = load_client_cert(p->ctx, cfg)))
		goto fail;
	if (cfg->verify) {
		SSL_CTX_set_verify(p->ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_verify_depth(p->ctx, (int)(cfg->verify_depth ? cfg->verify_depth : 1));
		X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(p->ctx);
		unsigned char ip[16];
		bool is_ip =
		    inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
		if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name)
			   : X509_VERIFY_PARAM_set1_host(vp, name, 0)) != 1) {
			why = "proxy-ssl-name: not a usable host name";
			goto fail;
		}
	} else {
		SSL_CTX_set_verify(p->ctx, SSL_VERIFY_NONE, NULL);
	}
	if (cfg->server_name && !(p->sni = strdup(name))) {
		why = "out of memory";
		goto fail;
	}
	digest(&p->key, cfg, name);
	ERR_clear_error();
	return p;
fail:
	snprintf(err, errlen, "%s", why);
	ERR_clear_error();
	SSL_CTX_free(p->ctx);
	free(p->sni);
	free(p);
	return NULL;
}

tg_tls_upstream_t *tg_tls_upstream_ref(tg_tls_upstream_t *p)
{
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
	return p;
}

void tg_tls_upstream_free(tg_tls_upstream_t *p)
{
	if (!p || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
		return;
	SSL_CTX_free(p->ctx);
	free(p->sni);
	free(p);
}

uint64_t tg_tls_upstream_key(const tg_tls_upstream_t *p)
{
	return p->key;
}

tg_tls_conn_t *tg_tls_upstream_conn(const tg_tls_upstream_t *p, int fd,
				    const tg_tls_session_t *session)
{
	tg_tls_conn_t *c = tg_tls_conn_new_client(p->ctx, fd);
	if (!c)
		return NULL;
	if (p->sni && SSL_set_tlsext_host_name(c->ssl, p->sni) != 1) {
		ERR_clear_error();
		tg_tls_conn_free(c);
		return NULL;
	}
	/* A session OpenSSL refuses is only a lost resumption. */
	if (session)
		SSL_set_session(c->ssl, (SSL_SESSION *)session);
	ERR_clear_error();
	return c;
}

tg_tls_session_t *tg_tls_upstream_session(const tg_tls_conn_t *c)
{
	if (!c || !c->established || c->failed)
		return NULL;
	SSL_SESSION *s = SSL_get1_session(c->ssl);
	if (s && !SSL_SESSION_is_resumable(s)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return (tg_tls_session_t *)s;
}

void tg_tls_session_free(tg_tls_session_t *s)
{
	SSL_SESSION_free((SSL_SESSION *)s);
}

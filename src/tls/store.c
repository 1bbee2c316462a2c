/*
 * store.c - the certificate store: options, PEM validation, the builder, the
 * SSL_CTX settings, the host table and the ClientHello callback that picks a
 * certificate and a client-certificate policy by SNI.
 *
 * One SSL_CTX per certificate. Every connection starts on the default
 * certificate's context; the ClientHello callback (which OpenSSL runs before
 * session resumption and extension processing) switches it to the SNI's
 * context and applies the client-certificate policy on the SSL itself, so a
 * policy never multiplies contexts.
 */
#include "tls/internal.h"

#include "core/log.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_PROTOCOLS "TLSv1.2 TLSv1.3"
/* ingress-nginx's ssl-ciphers default: Mozilla "intermediate" for TLS 1.2. */
#define DEFAULT_CIPHERS                                                                            \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                               \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"
#define GROUPS			  "X25519:P-256:P-384"
#define DEFAULT_SESSION_TIMEOUT_S 600u	     /* ingress-nginx ssl-session-timeout 10m */
#define MAX_PEM			  (1u << 20) /* larger Secrets are refused */
#define MAX_VERIFY_DEPTH	  100u

/* ALPN offered, in preference order (wire format). h2 goes first here once
 * the proxy speaks it (tg_tls_options_t.http2). */
static const unsigned char alpn_http11[] = "\x08http/1.1";

/* Options after defaults and parsing. */
typedef struct eff_opts {
	int min_version;     /* TLS1_2_VERSION or TLS1_3_VERSION */
	int max_version;     /* idem */
	const char *ciphers; /* TLS 1.2 cipher list (points into the builder) */
	uint32_t timeout_s;  /* session lifetime */
	bool tickets;	     /* session tickets on */
	bool ocsp;	     /* OCSP stapling (enable-ocsp) */
} eff_opts_t;

struct tg_tls_store_builder {
	eff_opts_t o;		      /* effective options */
	char *ciphers;		      /* owned copy o.ciphers points to */
	uint8_t opts_fp[32];	      /* SHA-256 of o: part of every reuse key */
	const tg_tls_store_t *prev;   /* store whose contexts may be reused (borrowed) */
	tls_cert_t *certs;	      /* [0]: default certificate slot */
	uint32_t n_certs;	      /* entries used (>= 1) */
	uint32_t cap_certs;	      /* entries allocated */
	bool has_default;	      /* slot 0 filled by set_default_cert */
	bool *named;		      /* per cert: its own DNS names were added */
	tg_tls_client_auth_t **auths; /* policies */
	uint32_t n_auths;	      /* entries used */
	uint32_t cap_auths;	      /* entries allocated */
	tls_host_t *hosts;	      /* open-addressing table (moved into the store) */
	uint32_t host_mask;	      /* table size - 1, 0 when no table */
	uint32_t n_hosts;	      /* names in the table */
	uint64_t *warns;	      /* hashes of the warnings of this build */
	uint32_t n_warns;	      /* entries used */
	uint32_t cap_warns;	      /* entries allocated */
};

/* ------------------------------------------------------------ helpers */

int tg_tls_fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

const char *tg_tls_ossl_reason(const char *fallback)
{
	unsigned long e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	ERR_clear_error();
	return r ? r : fallback;
}

/* SHA-256 over (ptr, len) pairs; a NULL ptr contributes its len as 4 bytes,
 * so that field boundaries are part of the hash. */
static void sha256_parts(uint8_t out[32], size_t n, const void *const *ptr, const size_t *len)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	memset(out, 0, 32);
	if (!m || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1)
		goto out;
	for (size_t i = 0; i < n; i++) {
		uint32_t l = (uint32_t)len[i];
		EVP_DigestUpdate(m, &l, sizeof(l));
		if (ptr[i] && len[i])
			EVP_DigestUpdate(m, ptr[i], len[i]);
	}
	EVP_DigestFinal_ex(m, out, NULL);
out:
	EVP_MD_CTX_free(m);
}

/* Refuses to decrypt: an encrypted key in a Secret is an error, and OpenSSL's
 * default callback would prompt on the terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/*
 * Lowercases and validates a host name. Writes it NUL-terminated to out (256
 * bytes) and returns its length, or 0 when it is not a host name (letters,
 * digits, '-', '_', non-empty labels of at most 63, at most 253 in all; one
 * trailing dot allowed). With wild != NULL, "*.rest" is accepted when rest has
 * at least two labels: *wild is set and out holds rest.
 */
static size_t host_norm(const char *in, size_t n, char out[256], bool *wild)
{
	if (wild)
		*wild = false;
	if (!in)
		return 0;
	if (n && in[n - 1] == '.')
		n--;
	if (wild && n >= 2 && in[0] == '*' && in[1] == '.') {
		*wild = true;
		in += 2;
		n -= 2;
	}
	if (n == 0 || n > 253)
		return 0;
	size_t label = 0;
	bool dot = false;
	for (size_t i = 0; i < n; i++) {
		char ch = tg_lower(in[i]);
		if (ch == '.') {
			if (label == 0)
				return 0;
			label = 0;
			dot = true;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
			   ch == '_') {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
		out[i] = ch;
	}
	if (label == 0 || (wild && *wild && !dot))
		return 0;
	out[n] = '\0';
	return n;
}

static uint32_t host_hash(const char *p, size_t n, bool wild)
{
	uint32_t h = wild ? 0x9dc5811cu : 0x811c9dc5u;
	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)p[i];
		h *= 0x01000193u;
	}
	return h ^ (h >> 15);
}

static tls_host_t *host_find(tls_host_t *tab, uint32_t mask, const char *name, size_t n, bool wild)
{
	if (!tab)
		return NULL;
	for (uint32_t i = host_hash(name, n, wild) & mask;; i = (i + 1) & mask) {
		tls_host_t *h = &tab[i];
		if (!h->name)
			return NULL;
		if (h->wildcard == wild && h->len == n && memcmp(h->name, name, n) == 0)
			return h;
	}
}

/* Finds or inserts a host entry; NULL when out of memory. Load stays <= 1/2. */
static tls_host_t *host_get(tg_tls_store_builder_t *b, const char *name, size_t n, bool wild)
{
	tls_host_t *h = host_find(b->hosts, b->host_mask, name, n, wild);
	if (h)
		return h;
	uint32_t size = b->hosts ? b->host_mask + 1 : 0;
	if ((b->n_hosts + 1) * 2 > size) {
		uint32_t nsize = size ? size * 2 : 16;
		tls_host_t *nt = calloc(nsize, sizeof(*nt));
		if (!nt)
			return NULL;
		for (uint32_t i = 0; i < size; i++) {
			tls_host_t *o = &b->hosts[i];
			if (!o->name)
				continue;
			uint32_t j = host_hash(o->name, o->len, o->wildcard) & (nsize - 1);
			while (nt[j].name)
				j = (j + 1) & (nsize - 1);
			nt[j] = *o;
		}
		free(b->hosts);
		b->hosts = nt;
		b->host_mask = nsize - 1;
	}
	char *copy = strndup(name, n);
	if (!copy)
		return NULL;
	uint32_t j = host_hash(name, n, wild) & b->host_mask;
	while (b->hosts[j].name)
		j = (j + 1) & b->host_mask;
	h = &b->hosts[j];
	*h = (tls_host_t){
	    .name = copy, .len = (uint32_t)n, .wildcard = wild, .cert = -1, .auth = -1};
	b->n_hosts++;
	return h;
}

/* Certificate and policy indexes for a normalized SNI (n == 0: none). Exact
 * names beat the wildcard covering them, independently for the two. */
static void resolve(const tg_tls_store_t *s, const char *name, size_t n, int *cert, int *auth)
{
	*cert = -1;
	*auth = -1;
	if (n == 0)
		return;
	const tls_host_t *h = host_find(s->hosts, s->host_mask, name, n, false);
	if (h) {
		*cert = h->cert;
		*auth = h->auth;
	}
	if (*cert >= 0 && *auth >= 0)
		return;
	const char *dot = memchr(name, '.', n);
	if (!dot)
		return;
	size_t rest = n - (size_t)(dot + 1 - name);
	h = host_find(s->hosts, s->host_mask, dot + 1, rest, true);
	if (!h)
		return;
	if (*cert < 0)
		*cert = h->cert;
	if (*auth < 0)
		*auth = h->auth;
}

/*
 * Logs a configuration warning once: a snapshot is rebuilt for every
 * EndpointSlice change, and the same misconfigured Secret must not flood the
 * log. The hashes of a build's warnings are kept in the store; a build fed
 * that store as `prev` logs only warnings it does not already have.
 */
static void bwarn(tg_tls_store_builder_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void bwarn(tg_tls_store_builder_t *b, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *p = msg; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	for (uint32_t i = 0; i < b->n_warns; i++)
		if (b->warns[i] == h)
			return;
	bool known = false;
	for (uint32_t i = 0; b->prev && i < b->prev->n_warns; i++)
		if (b->prev->warns[i] == h)
			known = true;
	if (!known)
		tg_warn("tls", "%s", msg);
	if (b->n_warns == b->cap_warns) {
		uint32_t ncap = b->cap_warns ? b->cap_warns * 2 : 16;
		uint64_t *nw = realloc(b->warns, ncap * sizeof(*nw));
		if (!nw)
			return;
		b->warns = nw;
		b->cap_warns = ncap;
	}
	b->warns[b->n_warns++] = h;
}

/* ----------------------------------------------------------- options */

static int parse_protocols(const char *s, eff_opts_t *o, bool warn, char *err, size_t errlen)
{
	static const char *const old[] = {"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"};
	bool v12 = false, v13 = false;
	const char *p = s;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		const char *t = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		int n = (int)(p - t);
		if (n == 7 && strncasecmp(t, "TLSv1.2", 7) == 0) {
			v12 = true;
			continue;
		}
		if (n == 7 && strncasecmp(t, "TLSv1.3", 7) == 0) {
			v13 = true;
			continue;
		}
		bool known = false;
		for (size_t i = 0; i < TG_ARRAY_SIZE(old); i++)
			if ((size_t)n == strlen(old[i]) && strncasecmp(t, old[i], (size_t)n) == 0)
				known = true;
		if (!known)
			return tg_tls_fail(err, errlen,
					   "ssl-protocols: unknown protocol \"%.*s\" (expected "
					   "TLSv1.2 and/or TLSv1.3)",
					   n, t);
		/* Migrating configurations often still list them: drop them
		 * rather than refusing the whole ConfigMap. */
		if (warn)
			tg_warn("tls", "ssl-protocols: %.*s is not supported (insecure), ignored",
				n, t);
	}
	if (!v12 && !v13)
		return tg_tls_fail(err, errlen,
				   "ssl-protocols: \"%s\" enables neither TLSv1.2 nor TLSv1.3", s);
	o->min_version = v12 ? TLS1_2_VERSION : TLS1_3_VERSION;
	o->max_version = v13 ? TLS1_3_VERSION : TLS1_2_VERSION;
	return 0;
}

/* Refuses a list with no usable TLS 1.2 cipher; warns once per name that
 * matches nothing (OpenSSL silently skips those). */
static int check_ciphers(const char *list, bool warn, char *err, size_t errlen)
{
	SSL_CTX *tmp = SSL_CTX_new(TLS_server_method());
	if (!tmp)
		return tg_tls_fail(err, errlen, "ssl-ciphers: out of memory");
	int rc = 0;
	ERR_clear_error();
	if (SSL_CTX_set_cipher_list(tmp, list) != 1) {
		ERR_clear_error();
		rc = tg_tls_fail(err, errlen, "ssl-ciphers: no usable TLSv1.2 cipher in \"%s\"",
				 list);
		goto out;
	}
	if (!warn)
		goto out;
	for (const char *p = list; *p;) {
		while (*p == ':' || *p == ',' || *p == ' ' || *p == ';')
			p++;
		const char *t = p;
		while (*p && *p != ':' && *p != ',' && *p != ' ' && *p != ';')
			p++;
		size_t n = (size_t)(p - t);
		char tok[128];
		if (n == 0 || n >= sizeof(tok) || strchr("!-+@", t[0]))
			continue;
		memcpy(tok, t, n);
		tok[n] = '\0';
		if (SSL_CTX_set_cipher_list(tmp, tok) != 1)
			tg_warn("tls", "ssl-ciphers: \"%s\" matches no cipher, ignored", tok);
	}
out:
	ERR_clear_error();
	SSL_CTX_free(tmp);
	return rc;
}

/* Applies defaults and checks; fills o (o->ciphers points into in or the
 * default). `warn` logs cipher names that match nothing. */
static int resolve_opts(const tg_tls_options_t *in, eff_opts_t *o, bool warn, char *err,
			size_t errlen)
{
	static const tg_tls_options_t defaults;
	if (!in)
		in = &defaults;
	memset(o, 0, sizeof(*o));
	if (in->http2)
		return tg_tls_fail(err, errlen, "http2: HTTP/2 is not supported yet");
	int rc =
	    parse_protocols(in->protocols && *in->protocols ? in->protocols : DEFAULT_PROTOCOLS, o,
			    warn, err, errlen);
	if (rc < 0)
		return rc;
	o->ciphers = in->ciphers && *in->ciphers ? in->ciphers : DEFAULT_CIPHERS;
	o->timeout_s = in->session_timeout_s ? in->session_timeout_s : DEFAULT_SESSION_TIMEOUT_S;
	o->tickets = !in->no_session_tickets;
	o->ocsp = in->ocsp;
	if (o->min_version <= TLS1_2_VERSION)
		return check_ciphers(o->ciphers, warn, err, errlen);
	return 0;
}

int tg_tls_options_check(const tg_tls_options_t *opts, char *err, size_t errlen)
{
	eff_opts_t o;
	return resolve_opts(opts, &o, true, err, errlen);
}

static void opts_fingerprint(const eff_opts_t *o, uint8_t out[32])
{
	uint32_t v[5] = {(uint32_t)o->min_version, (uint32_t)o->max_version, o->timeout_s,
			 o->tickets, o->ocsp};
	const void *ptr[] = {v, o->ciphers};
	size_t len[] = {sizeof(v), strlen(o->ciphers)};
	sha256_parts(out, 2, ptr, len);
}

/* ------------------------------------------------------ SSL_CTX set-up */

/* Picks the first of our protocols the client offers. No overlap is fatal
 * (no_application_protocol), as nginx does since 1.21.4: a client that only
 * speaks h2 must not get HTTP/1.1 it did not ask for. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	unsigned char *sel = NULL;
	unsigned char sellen = 0;
	if (SSL_select_next_proto(&sel, &sellen, alpn_http11, sizeof(alpn_http11) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	*outlen = sellen;
	return SSL_TLSEXT_ERR_OK;
}

/* Accepts every client certificate during the handshake: like nginx, the
 * verdict (SSL_get_verify_result) is applied per request by
 * tg_tls_conn_check_client_auth, which answers 400 instead of an alert. */
static int verify_accept(int ok, X509_STORE_CTX *x)
{
	(void)ok;
	(void)x;
	return 1;
}

static int ctx_configure(SSL_CTX *ctx, const eff_opts_t *o, char *why, size_t whylen)
{
	if (SSL_CTX_set_min_proto_version(ctx, o->min_version) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, o->max_version) != 1)
		return tg_tls_fail(why, whylen, "cannot set protocol versions: %s",
				   tg_tls_ossl_reason("unknown error"));
	uint64_t opts =
	    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF;
	if (!o->tickets)
		opts |= SSL_OP_NO_TICKET;
	SSL_CTX_set_options(ctx, opts);
	/* Mozilla intermediate: the client's preference (it knows whether it has
	 * AES hardware); every offered cipher is strong. */
	SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx, o->ciphers) != 1)
		return tg_tls_fail(why, whylen, "ssl-ciphers: %s",
				   tg_tls_ossl_reason("no cipher match"));
	if (SSL_CTX_set1_groups_list(ctx, GROUPS) != 1)
		return tg_tls_fail(why, whylen, "cannot set ECDHE groups: %s",
				   tg_tls_ossl_reason("unknown error"));
	SSL_CTX_set_dh_auto(ctx, 1); /* DHE-RSA suites of the intermediate list */
	/* Stateless tickets only: a per-context cache would be per store and
	 * lost at each snapshot swap. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_timeout(ctx, (long)o->timeout_s);
	if (o->tickets)
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tg_tls_ticket_cb);
	else
		SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
	SSL_CTX_set_client_hello_cb(ctx, tg_tls_client_hello_cb, NULL);
	/* One recv per socket read instead of one per record header and body;
	 * see tg_tls_conn_has_pending_input. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return 0;
}

/* ---------------------------------------------------- ClientHello callback */

/* Extracts the host_name of a server_name extension body into out (256
 * bytes), normalized. Returns its length, 0 when absent or not a host name. */
static size_t sni_parse(const unsigned char *p, size_t len, char out[256])
{
	if (len < 2 || (size_t)((p[0] << 8) | p[1]) != len - 2)
		return 0;
	p += 2;
	len -= 2;
	while (len >= 3) {
		unsigned type = p[0];
		size_t n = (size_t)((p[1] << 8) | p[2]);
		p += 3;
		len -= 3;
		if (n > len)
			return 0;
		if (type == 0)
			return host_norm((const char *)p, n, out, NULL);
		p += n;
		len -= n;
	}
	return 0;
}

int tg_tls_client_hello_cb(SSL *ssl, int *al, void *arg)
{
	(void)arg;
	tg_tls_conn_t *c = SSL_get_app_data(ssl);
	if (!c || !c->store) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	const tg_tls_store_t *s = c->store;
	char name[256];
	size_t n = 0;
	const unsigned char *ext;
	size_t extlen;
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &extlen))
		n = sni_parse(ext, extlen, name);

	int ci, ai;
	resolve(s, name, n, &ci, &ai);
	bool first = !c->hello_seen; /* a HelloRetryRequest makes OpenSSL call us twice */
	c->hello_seen = true;
	if (n && !c->sni)
		c->sni = strndup(name, n); /* NULL on OOM: only the accessor loses */
	if (ci < 0) {
		ci = 0;
		if (first)
			tg_tls_count(CTR_DEFAULT_CERT);
	}
	const tls_cert_t *cert = &s->certs[ci];
	if (SSL_get_SSL_CTX(ssl) != cert->ctx && !SSL_set_SSL_CTX(ssl, cert->ctx)) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}

	const tg_tls_client_auth_t *a = ai >= 0 ? s->auths[ai] : NULL;
	if (a && a->verify == TG_TLS_VERIFY_OFF)
		a = NULL;
	/* The session id context binds tickets to (certificate, policy): a
	 * session made without a client certificate never resumes on a host that
	 * requires one, nor one from another certificate's hosts. */
	uint8_t sid[2 * FP_LEN];
	memcpy(sid, cert->fp, FP_LEN);
	if (a)
		memcpy(sid + FP_LEN, a->fp, FP_LEN);
	else
		memset(sid + FP_LEN, 0, FP_LEN);
	if (SSL_set_session_id_context(ssl, sid, sizeof(sid)) != 1) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (!a) {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
		c->auth_verify = TG_TLS_VERIFY_OFF;
		memset(c->auth_fp, 0, FP_LEN);
		return SSL_CLIENT_HELLO_SUCCESS;
	}
	/* After SSL_set_SSL_CTX, which replaces the SSL's certificate settings
	 * (the verify store lives there). */
	STACK_OF(X509_NAME) *names = SSL_dup_CA_list(a->ca_names);
	if (!names || SSL_set1_verify_cert_store(ssl, a->store) != 1) {
		sk_X509_NAME_pop_free(names, X509_NAME_free);
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	SSL_set_client_CA_list(ssl, names);
	SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_accept);
	SSL_set_verify_depth(ssl, (int)a->depth);
	c->auth_verify = (uint8_t)a->verify;
	memcpy(c->auth_fp, a->fp, FP_LEN);
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* ------------------------------------------------------ PEM parsing */

typedef struct parsed_cert {
	X509 *leaf;		/* first certificate of tls.crt */
	STACK_OF(X509) * chain; /* the following ones */
	EVP_PKEY *key;		/* tls.key */
} parsed_cert_t;

static void parsed_free(parsed_cert_t *p)
{
	X509_free(p->leaf);
	sk_X509_pop_free(p->chain, X509_free);
	EVP_PKEY_free(p->key);
	memset(p, 0, sizeof(*p));
}

static bool pem_end(void)
{
	unsigned long e = ERR_peek_last_error();
	return e == 0 ||
	       (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
}

static int parse_cert(const char *crt, size_t crt_len, const char *key, size_t key_len,
		      parsed_cert_t *p, char *why, size_t whylen)
{
	memset(p, 0, sizeof(*p));
	if (!crt || crt_len == 0)
		return tg_tls_fail(why, whylen, "tls.crt is empty");
	if (!key || key_len == 0)
		return tg_tls_fail(why, whylen, "tls.key is empty");
	if (crt_len > MAX_PEM || key_len > MAX_PEM)
		return tg_tls_fail(why, whylen, "tls.crt or tls.key is larger than 1 MiB");

	int rc = -EINVAL;
	ERR_clear_error();
	BIO *bio = BIO_new_mem_buf(crt, (int)crt_len);
	if (!bio)
		return tg_tls_fail(why, whylen, "out of memory");
	p->leaf = PEM_read_bio_X509(bio, NULL, no_password, NULL);
	if (!p->leaf) {
		tg_tls_fail(why, whylen, "tls.crt: no valid PEM certificate (%s)",
			    tg_tls_ossl_reason("no certificate"));
		goto out;
	}
	p->chain = sk_X509_new_null();
	if (!p->chain) {
		tg_tls_fail(why, whylen, "out of memory");
		goto out;
	}
	for (;;) {
		X509 *x = PEM_read_bio_X509(bio, NULL, no_password, NULL);
		if (!x)
			break;
		if (!sk_X509_push(p->chain, x)) {
			X509_free(x);
			tg_tls_fail(why, whylen, "out of memory");
			goto out;
		}
	}
	if (!pem_end()) {
		tg_tls_fail(why, whylen, "tls.crt: certificate %d is invalid (%s)",
			    sk_X509_num(p->chain) + 2, tg_tls_ossl_reason("bad PEM"));
		goto out;
	}
	ERR_clear_error();
	BIO_free(bio);

	if (memmem(key, key_len, "ENCRYPTED", 9)) {
		bio = NULL;
		tg_tls_fail(why, whylen, "tls.key: encrypted private keys are not supported");
		goto out;
	}
	bio = BIO_new_mem_buf(key, (int)key_len);
	if (!bio) {
		tg_tls_fail(why, whylen, "out of memory");
		goto out;
	}
	p->key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
	if (!p->key) {
		tg_tls_fail(why, whylen, "tls.key: no valid PEM private key (%s)",
			    tg_tls_ossl_reason("no key"));
		goto out;
	}
	if (X509_check_private_key(p->leaf, p->key) != 1) {
		ERR_clear_error();
		tg_tls_fail(why, whylen, "tls.key does not match the certificate in tls.crt");
		goto out;
	}
	rc = 0;
out:
	BIO_free(bio);
	if (rc < 0)
		parsed_free(p);
	ERR_clear_error();
	return rc;
}

int tg_tls_cert_validate(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
			 char *err, size_t errlen)
{
	parsed_cert_t p;
	int rc = parse_cert(cert_pem, cert_len, key_pem, key_len, &p, err, errlen);
	parsed_free(&p);
	return rc;
}

static void format_time(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;
	if (!t || ASN1_TIME_to_tm(t, &tm) != 1 || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "(unknown date)");
}

static void log_validity(tg_tls_store_builder_t *b, const char *source, const X509 *leaf)
{
	char when[64];
	if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
		format_time(X509_get0_notAfter(leaf), when, sizeof(when));
		bwarn(b, "%s: certificate expired on %s; served anyway", source, when);
	} else if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
		format_time(X509_get0_notBefore(leaf), when, sizeof(when));
		bwarn(b, "%s: certificate not valid before %s; served anyway", source, when);
	}
}

/* Calls fn for each DNS name of the certificate (SAN dNSNames, or the subject
 * CN when there is no dNSName), normalized; `wild` tells a "*." name. */
static int for_each_name(const X509 *leaf,
			 int (*fn)(void *arg, const char *name, size_t n, bool wild), void *arg)
{
	char buf[256];
	bool wild;
	int rc = 0, seen = 0;
	GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		if (g->type != GEN_DNS)
			continue;
		seen++;
		const ASN1_STRING *s = g->d.dNSName;
		size_t n = host_norm((const char *)ASN1_STRING_get0_data(s),
				     (size_t)ASN1_STRING_length(s), buf, &wild);
		if (n && (rc = fn(arg, buf, n, wild)) < 0)
			break;
	}
	GENERAL_NAMES_free(sans);
	if (seen || rc < 0)
		return rc;
	const X509_NAME *subj = X509_get_subject_name(leaf);
	int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	if (idx < 0)
		return 0;
	unsigned char *utf8 = NULL;
	int len =
	    ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
	if (len > 0) {
		size_t n = host_norm((const char *)utf8, (size_t)len, buf, &wild);
		if (n)
			rc = fn(arg, buf, n, wild);
	}
	OPENSSL_free(utf8);
	return rc;
}

/* ------------------------------------------------------------ builder */

tg_tls_store_builder_t *tg_tls_store_builder_new(const tg_tls_options_t *opts,
						 const tg_tls_store_t *prev, char *err,
						 size_t errlen)
{
	eff_opts_t o;
	/* Validate quietly first; warn about cipher names only when the options
	 * differ from the previous store's (once per change, not per snapshot). */
	if (resolve_opts(opts, &o, false, err, errlen) < 0)
		return NULL;
	uint8_t fp[32];
	opts_fingerprint(&o, fp);
	if (!prev || memcmp(prev->opts_fp, fp, sizeof(fp)) != 0)
		(void)resolve_opts(opts, &o, true, NULL, 0);

	tg_tls_store_builder_t *b = calloc(1, sizeof(*b));
	if (!b)
		goto oom;
	b->ciphers = strdup(o.ciphers);
	b->cap_certs = 8;
	b->certs = calloc(b->cap_certs, sizeof(*b->certs));
	b->named = calloc(b->cap_certs, sizeof(*b->named));
	if (!b->ciphers || !b->certs || !b->named)
		goto oom;
	b->o = o;
	b->o.ciphers = b->ciphers;
	memcpy(b->opts_fp, fp, sizeof(fp));
	b->prev = prev;
	b->n_certs = 1; /* slot 0: default certificate, filled by set_default or build */
	return b;
oom:
	tg_tls_store_builder_free(b);
	tg_tls_fail(err, errlen, "out of memory");
	return NULL;
}

static void cert_free(tls_cert_t *c)
{
	SSL_CTX_free(c->ctx);
	free(c->source);
	memset(c, 0, sizeof(*c));
}

static void auth_free(tg_tls_client_auth_t *a)
{
	if (!a)
		return;
	X509_STORE_free(a->store);
	sk_X509_NAME_pop_free(a->ca_names, X509_NAME_free);
	free(a->source);
	free(a);
}

static void hosts_free(tls_host_t *tab, uint32_t mask)
{
	if (!tab)
		return;
	for (uint32_t i = 0; i <= mask; i++)
		free(tab[i].name);
	free(tab);
}

void tg_tls_store_builder_free(tg_tls_store_builder_t *b)
{
	if (!b)
		return;
	for (uint32_t i = 0; i < b->n_certs && b->certs; i++)
		cert_free(&b->certs[i]);
	for (uint32_t i = 0; i < b->n_auths; i++)
		auth_free(b->auths[i]);
	hosts_free(b->hosts, b->host_mask);
	free(b->auths);
	free(b->certs);
	free(b->named);
	free(b->ciphers);
	free(b->warns);
	free(b);
}

/* Builds a context for leaf+chain+key with the builder's options. */
static SSL_CTX *make_ctx(const tg_tls_store_builder_t *b, X509 *leaf, STACK_OF(X509) * chain,
			 EVP_PKEY *key, char *why, size_t whylen)
{
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		tg_tls_fail(why, whylen, "out of memory");
		return NULL;
	}
	if (ctx_configure(ctx, &b->o, why, whylen) < 0)
		goto bad;
	if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
		tg_tls_fail(why, whylen, "tls.crt: certificate refused (%s)",
			    tg_tls_ossl_reason("unknown error"));
		goto bad;
	}
	for (int i = 0; chain && i < sk_X509_num(chain); i++)
		if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i)) != 1) {
			tg_tls_fail(why, whylen, "tls.crt: chain certificate %d refused (%s)",
				    i + 2, tg_tls_ossl_reason("unknown error"));
			goto bad;
		}
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		tg_tls_fail(why, whylen, "tls.key refused (%s)",
			    tg_tls_ossl_reason("does not match the certificate"));
		goto bad;
	}
	return ctx;
bad:
	SSL_CTX_free(ctx);
	return NULL;
}

static void leaf_fp(const X509 *leaf, uint8_t out[FP_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	memset(out, 0, FP_LEN);
	if (X509_digest(leaf, EVP_sha256(), md, &n) == 1 && n >= FP_LEN)
		memcpy(out, md, FP_LEN);
}

/* Fills *out for a certificate: shares the previous store's context when the
 * PEM and the options are unchanged, else parses and builds one. */
static int load_cert(tg_tls_store_builder_t *b, const char *source, const char *crt, size_t crt_len,
		     const char *key, size_t key_len, tls_cert_t *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	const void *ptr[] = {b->opts_fp, crt, key};
	size_t len[] = {sizeof(b->opts_fp), crt_len, key_len};
	sha256_parts(out->pem_fp, 3, ptr, len);
	out->source = strdup(source);
	if (!out->source)
		return tg_tls_fail(why, whylen, "out of memory");

	for (uint32_t i = 0; b->prev && i < b->prev->n_certs; i++) {
		const tls_cert_t *o = &b->prev->certs[i];
		if (memcmp(o->pem_fp, out->pem_fp, sizeof(out->pem_fp)) == 0 &&
		    SSL_CTX_up_ref(o->ctx) == 1) {
			out->ctx = o->ctx;
			out->leaf = o->leaf;
			memcpy(out->fp, o->fp, FP_LEN);
			return 0;
		}
	}

	parsed_cert_t p;
	if (parse_cert(crt, crt_len, key, key_len, &p, why, whylen) < 0)
		goto bad;
	out->ctx = make_ctx(b, p.leaf, p.chain, p.key, why, whylen);
	if (!out->ctx) {
		parsed_free(&p);
		goto bad;
	}
	if (b->o.ocsp) {
		/* A certificate without a responder is served without stapling,
		 * silently (most are); one whose issuer is missing is worth a word. */
		char w[200];
		if (tg_tls_ocsp_attach(out->ctx, p.leaf, p.chain, w, sizeof(w)) < 0 &&
		    !strstr(w, "no OCSP responder"))
			bwarn(b, "%s: no OCSP stapling: %s", source, w);
	}
	parsed_free(&p);
	out->leaf = SSL_CTX_get0_certificate(out->ctx);
	leaf_fp(out->leaf, out->fp);
	return 0;
bad:
	cert_free(out);
	return -EINVAL;
}

static int find_source(const tg_tls_store_builder_t *b, const char *source)
{
	for (uint32_t i = 0; i < b->n_certs; i++)
		if (b->certs[i].source && strcmp(b->certs[i].source, source) == 0)
			return (int)i;
	return -1;
}

/* Maps a host to certificate idx with priority prio. */
static int map_cert_host(tg_tls_store_builder_t *b, int idx, const char *name, size_t n, bool wild,
			 int prio)
{
	tls_host_t *h = host_get(b, name, n, wild);
	if (!h)
		return -ENOMEM;
	if (h->cert < 0 || prio > h->cert_prio) {
		h->cert = idx;
		h->cert_prio = (int8_t)prio;
	} else if (h->cert != idx && prio == h->cert_prio && prio == 2) {
		bwarn(b, "host %s%s is listed in spec.tls for %s and %s; using %s",
		      wild ? "*." : "", h->name, b->certs[h->cert].source, b->certs[idx].source,
		      b->certs[h->cert].source);
	}
	return 0;
}

typedef struct name_ctx {
	tg_tls_store_builder_t *b; /* builder */
	int idx;		   /* certificate index */
	const char *host;	   /* coverage check: host looked for */
	size_t host_len;	   /* its length */
	bool host_wild;		   /* it is a "*." host */
	bool covered;		   /* result of the coverage check */
} name_ctx_t;

static int add_name(void *arg, const char *name, size_t n, bool wild)
{
	name_ctx_t *nc = arg;
	return map_cert_host(nc->b, nc->idx, name, n, wild, 1);
}

/* Does certificate name (name, wild) cover host (nc->host, nc->host_wild)? */
static int cover_name(void *arg, const char *name, size_t n, bool wild)
{
	name_ctx_t *nc = arg;
	if (wild == nc->host_wild && n == nc->host_len && memcmp(name, nc->host, n) == 0)
		nc->covered = true;
	if (wild && !nc->host_wild) {
		const char *dot = memchr(nc->host, '.', nc->host_len);
		if (dot && nc->host_len - (size_t)(dot + 1 - nc->host) == n &&
		    memcmp(dot + 1, name, n) == 0)
			nc->covered = true;
	}
	return 0;
}

static int grow_certs(tg_tls_store_builder_t *b)
{
	if (b->n_certs < b->cap_certs)
		return 0;
	uint32_t ncap = b->cap_certs * 2;
	tls_cert_t *nc = realloc(b->certs, ncap * sizeof(*nc));
	if (!nc)
		return -ENOMEM;
	b->certs = nc;
	bool *nn = realloc(b->named, ncap * sizeof(*nn));
	if (!nn)
		return -ENOMEM;
	b->named = nn;
	memset(b->certs + b->cap_certs, 0, (ncap - b->cap_certs) * sizeof(*nc));
	memset(b->named + b->cap_certs, 0, (ncap - b->cap_certs) * sizeof(*nn));
	b->cap_certs = ncap;
	return 0;
}

int tg_tls_store_add_cert(tg_tls_store_builder_t *b, const char *source, const char *cert_pem,
			  size_t cert_len, const char *key_pem, size_t key_len,
			  const char *const *hosts, size_t n_hosts, char *err, size_t errlen)
{
	char why[TG_TLS_ERR_MAX];
	if (!b || !source || !*source)
		return tg_tls_fail(err, errlen, "certificate without a source name");
	int idx = find_source(b, source);
	if (idx < 0) {
		if (grow_certs(b) < 0)
			return tg_tls_fail(err, errlen, "%s: out of memory", source), -ENOMEM;
		if (load_cert(b, source, cert_pem, cert_len, key_pem, key_len,
			      &b->certs[b->n_certs], why, sizeof(why)) < 0)
			return tg_tls_fail(err, errlen, "%s: %s", source, why);
		idx = (int)b->n_certs++;
		log_validity(b, source, b->certs[idx].leaf);
	}
	name_ctx_t nc = {.b = b, .idx = idx};
	if (!b->named[idx]) {
		if (for_each_name(b->certs[idx].leaf, add_name, &nc) < 0)
			return tg_tls_fail(err, errlen, "%s: out of memory", source), -ENOMEM;
		b->named[idx] = true;
	}
	for (size_t i = 0; hosts && i < n_hosts; i++) {
		char name[256];
		bool wild;
		size_t n = host_norm(hosts[i], hosts[i] ? strlen(hosts[i]) : 0, name, &wild);
		if (!n) {
			bwarn(b, "%s: spec.tls host \"%s\" is not a valid host name, ignored",
			      source, hosts[i] ? hosts[i] : "(null)");
			continue;
		}
		nc.host = name;
		nc.host_len = n;
		nc.host_wild = wild;
		nc.covered = false;
		for_each_name(b->certs[idx].leaf, cover_name, &nc);
		if (!nc.covered)
			bwarn(b,
			      "%s: certificate does not cover spec.tls host %s%s; served "
			      "anyway",
			      source, wild ? "*." : "", name);
		if (map_cert_host(b, idx, name, n, wild, 2) < 0)
			return tg_tls_fail(err, errlen, "%s: out of memory", source), -ENOMEM;
	}
	return 0;
}

int tg_tls_store_set_default_cert(tg_tls_store_builder_t *b, const char *source,
				  const char *cert_pem, size_t cert_len, const char *key_pem,
				  size_t key_len, char *err, size_t errlen)
{
	char why[TG_TLS_ERR_MAX];
	if (!b || !source || !*source)
		return tg_tls_fail(err, errlen, "default certificate without a source name");
	tls_cert_t nc;
	if (load_cert(b, source, cert_pem, cert_len, key_pem, key_len, &nc, why, sizeof(why)) < 0)
		return tg_tls_fail(err, errlen, "%s: %s", source, why);
	log_validity(b, source, nc.leaf);
	cert_free(&b->certs[0]);
	b->certs[0] = nc;
	b->named[0] = false;
	b->has_default = true;
	return 0;
}

/* ------------------------------------------------------- client auth */

int tg_tls_verify_parse(const char *s, size_t len, tg_tls_verify_t *out)
{
	static const struct {
		const char *name;  /* annotation value */
		tg_tls_verify_t v; /* its meaning */
	} map[] = {{"on", TG_TLS_VERIFY_ON},
		   {"off", TG_TLS_VERIFY_OFF},
		   {"optional", TG_TLS_VERIFY_OPTIONAL},
		   {"optional_no_ca", TG_TLS_VERIFY_OPTIONAL_NO_CA}};
	tg_str_t in = {s, len};
	for (size_t i = 0; i < TG_ARRAY_SIZE(map); i++)
		if (tg_str_caseeq(in, map[i].name, strlen(map[i].name))) {
			*out = map[i].v;
			return 0;
		}
	return -EINVAL;
}

/* Reads PEM certificates and CRLs from (pem, len) into st. Counts them. */
static int read_x509_infos(const char *pem, size_t len, X509_STORE *st, STACK_OF(X509_NAME) * names,
			   int *n_certs, int *n_crls)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	ERR_clear_error();
	STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio(bio, NULL, no_password, NULL);
	BIO_free(bio);
	if (!infos)
		return -EINVAL;
	int rc = 0;
	for (int i = 0; i < sk_X509_INFO_num(infos) && rc == 0; i++) {
		X509_INFO *info = sk_X509_INFO_value(infos, i);
		if (info->x509) {
			if (X509_STORE_add_cert(st, info->x509) != 1) {
				rc = -EINVAL;
				break;
			}
			if (names) {
				X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(info->x509));
				if (!nm || !sk_X509_NAME_push(names, nm)) {
					X509_NAME_free(nm);
					rc = -ENOMEM;
				}
			}
			(*n_certs)++;
		}
		if (info->crl) {
			if (X509_STORE_add_crl(st, info->crl) != 1)
				rc = -EINVAL;
			(*n_crls)++;
		}
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	return rc;
}

static int parse_auth(const tg_tls_client_auth_config_t *cfg, X509_STORE **st_out,
		      STACK_OF(X509_NAME) * *names_out, char *why, size_t whylen)
{
	*st_out = NULL;
	*names_out = NULL;
	if (!cfg->ca_pem || cfg->ca_len == 0)
		return tg_tls_fail(why, whylen, "ca.crt is empty");
	if (cfg->ca_len > MAX_PEM || cfg->crl_len > MAX_PEM)
		return tg_tls_fail(why, whylen, "ca.crt or ca.crl is larger than 1 MiB");
	if ((unsigned)cfg->verify > TG_TLS_VERIFY_OPTIONAL_NO_CA)
		return tg_tls_fail(why, whylen, "auth-tls-verify-client: bad value %d",
				   (int)cfg->verify);
	if (cfg->depth > MAX_VERIFY_DEPTH)
		return tg_tls_fail(why, whylen, "auth-tls-verify-depth: %u is out of range (1-%u)",
				   cfg->depth, MAX_VERIFY_DEPTH);
	X509_STORE *st = X509_STORE_new();
	STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
	int n_certs = 0, n_crls = 0, rc;
	if (!st || !names) {
		rc = tg_tls_fail(why, whylen, "out of memory");
		goto bad;
	}
	rc = read_x509_infos(cfg->ca_pem, cfg->ca_len, st, names, &n_certs, &n_crls);
	if (rc < 0 || n_certs == 0) {
		rc = tg_tls_fail(why, whylen, "ca.crt: no valid PEM CA certificate (%s)",
				 tg_tls_ossl_reason(rc < 0 ? "bad PEM" : "no certificate"));
		goto bad;
	}
	if (cfg->crl_pem && cfg->crl_len) {
		int crl_certs = 0, crls = 0;
		rc = read_x509_infos(cfg->crl_pem, cfg->crl_len, st, NULL, &crl_certs, &crls);
		if (rc < 0 || crls == 0) {
			rc = tg_tls_fail(why, whylen, "ca.crl: no valid PEM CRL (%s)",
					 tg_tls_ossl_reason(rc < 0 ? "bad PEM" : "no CRL"));
			goto bad;
		}
		n_crls += crls;
	}
	/* nginx's ssl_crl: every certificate of the chain is checked. */
	if (n_crls)
		X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	ERR_clear_error();
	*st_out = st;
	*names_out = names;
	return 0;
bad:
	X509_STORE_free(st);
	sk_X509_NAME_pop_free(names, X509_NAME_free);
	ERR_clear_error();
	return rc;
}

int tg_tls_client_auth_validate(const tg_tls_client_auth_config_t *cfg, char *err, size_t errlen)
{
	X509_STORE *st;
	STACK_OF(X509_NAME) * names;
	if (!cfg)
		return tg_tls_fail(err, errlen, "no client-auth configuration");
	int rc = parse_auth(cfg, &st, &names, err, errlen);
	X509_STORE_free(st);
	sk_X509_NAME_pop_free(names, X509_NAME_free);
	return rc;
}

static void auth_fingerprint(const tg_tls_client_auth_config_t *cfg, uint8_t out[FP_LEN])
{
	uint32_t v[3] = {(uint32_t)cfg->verify, cfg->depth ? cfg->depth : 1, cfg->pass_cert};
	const void *ptr[] = {v, cfg->ca_pem, cfg->crl_pem};
	size_t len[] = {sizeof(v), cfg->ca_len, cfg->crl_pem ? cfg->crl_len : 0};
	uint8_t full[32];
	sha256_parts(full, 3, ptr, len);
	memcpy(out, full, FP_LEN);
}

const tg_tls_client_auth_t *tg_tls_store_add_client_auth(tg_tls_store_builder_t *b,
							 const char *source,
							 const char *const *hosts, size_t n_hosts,
							 const tg_tls_client_auth_config_t *cfg,
							 char *err, size_t errlen)
{
	char why[TG_TLS_ERR_MAX];
	if (!b || !source || !*source || !cfg) {
		tg_tls_fail(err, errlen, "client-auth policy without a source name");
		return NULL;
	}
	uint8_t fp[FP_LEN];
	auth_fingerprint(cfg, fp);
	tg_tls_client_auth_t *a = NULL;
	int ai = -1;
	for (uint32_t i = 0; i < b->n_auths; i++)
		if (memcmp(b->auths[i]->fp, fp, FP_LEN) == 0) {
			a = b->auths[i];
			ai = (int)i;
		}
	if (!a) {
		if (b->n_auths == b->cap_auths) {
			uint32_t ncap = b->cap_auths ? b->cap_auths * 2 : 8;
			tg_tls_client_auth_t **na = realloc(b->auths, ncap * sizeof(*na));
			if (!na)
				goto oom;
			b->auths = na;
			b->cap_auths = ncap;
		}
		a = calloc(1, sizeof(*a));
		if (!a || !(a->source = strdup(source)))
			goto oom_free;
		memcpy(a->fp, fp, FP_LEN);
		a->verify = cfg->verify;
		a->depth = cfg->depth ? cfg->depth : 1;
		a->pass_cert = cfg->pass_cert;
		const tg_tls_client_auth_t *old = NULL;
		for (uint32_t i = 0; b->prev && i < b->prev->n_auths; i++)
			if (memcmp(b->prev->auths[i]->fp, fp, FP_LEN) == 0)
				old = b->prev->auths[i];
		if (old && X509_STORE_up_ref(old->store) == 1) {
			a->store = old->store;
			a->ca_names = SSL_dup_CA_list(old->ca_names);
			if (!a->ca_names)
				goto oom_free;
		} else if (parse_auth(cfg, &a->store, &a->ca_names, why, sizeof(why)) < 0) {
			auth_free(a);
			tg_tls_fail(err, errlen, "%s: %s", source, why);
			return NULL;
		}
		ai = (int)b->n_auths;
		b->auths[b->n_auths++] = a;
	}
	for (size_t i = 0; hosts && i < n_hosts; i++) {
		char name[256];
		bool wild;
		size_t n = host_norm(hosts[i], hosts[i] ? strlen(hosts[i]) : 0, name, &wild);
		if (!n) {
			bwarn(b,
			      "%s: host \"%s\" is not a valid host name, no client "
			      "certificate requested for it",
			      source, hosts[i] ? hosts[i] : "(null)");
			continue;
		}
		tls_host_t *h = host_get(b, name, n, wild);
		if (!h)
			goto oom;
		if (h->auth < 0)
			h->auth = ai;
		else if (h->auth != ai)
			bwarn(b,
			      "host %s%s has client-certificate settings from %s already; "
			      "those of %s are ignored for it",
			      wild ? "*." : "", name, b->auths[h->auth]->source, source);
	}
	return a;
oom_free:
	auth_free(a);
oom:
	tg_tls_fail(err, errlen, "%s: out of memory", source);
	return NULL;
}

const char *tg_tls_client_auth_source(const tg_tls_client_auth_t *auth)
{
	return auth ? auth->source : "";
}

/* -------------------------------------------------------------- build */

tg_tls_store_t *tg_tls_store_build(tg_tls_store_builder_t *b, char *err, size_t errlen)
{
	char why[TG_TLS_ERR_MAX];
	if (!b) {
		tg_tls_fail(err, errlen, "no builder");
		return NULL;
	}
	if (!b->has_default) {
		X509 *x = tg_tls_default_x509();
		EVP_PKEY *k = tg_tls_default_pkey();
		tls_cert_t *d = &b->certs[0];
		if (!x || !k) {
			tg_tls_fail(err, errlen, "tg_tls_init() was not called");
			goto fail;
		}
		uint8_t xfp[FP_LEN];
		leaf_fp(x, xfp);
		const void *ptr[] = {b->opts_fp, xfp};
		size_t len[] = {sizeof(b->opts_fp), sizeof(xfp)};
		sha256_parts(d->pem_fp, 2, ptr, len);
		d->source = strdup(TG_TLS_GENERATED_NAME);
		if (!d->source) {
			tg_tls_fail(err, errlen, "out of memory");
			goto fail;
		}
		const tls_cert_t *o = b->prev ? &b->prev->certs[0] : NULL;
		if (o && memcmp(o->pem_fp, d->pem_fp, sizeof(d->pem_fp)) == 0 &&
		    SSL_CTX_up_ref(o->ctx) == 1) {
			d->ctx = o->ctx;
		} else {
			d->ctx = make_ctx(b, x, NULL, k, why, sizeof(why));
			if (!d->ctx) {
				tg_tls_fail(err, errlen, "default certificate: %s", why);
				goto fail;
			}
		}
		d->leaf = SSL_CTX_get0_certificate(d->ctx);
		memcpy(d->fp, xfp, FP_LEN);
	}
	tg_tls_store_t *s = calloc(1, sizeof(*s));
	if (!s) {
		tg_tls_fail(err, errlen, "out of memory");
		goto fail;
	}
	atomic_init(&s->refs, 1);
	s->certs = b->certs;
	s->n_certs = b->n_certs;
	s->auths = b->auths;
	s->n_auths = b->n_auths;
	s->hosts = b->hosts;
	s->host_mask = b->host_mask;
	memcpy(s->opts_fp, b->opts_fp, sizeof(s->opts_fp));
	s->warns = b->warns;
	s->n_warns = b->n_warns;
	free(b->named);
	free(b->ciphers);
	free(b);
	return s;
fail:
	tg_tls_store_builder_free(b);
	return NULL;
}

tg_tls_store_t *tg_tls_store_ref(tg_tls_store_t *s)
{
	if (s)
		atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void tg_tls_store_free(tg_tls_store_t *s)
{
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (uint32_t i = 0; i < s->n_certs; i++)
		cert_free(&s->certs[i]);
	for (uint32_t i = 0; i < s->n_auths; i++)
		auth_free(s->auths[i]);
	hosts_free(s->hosts, s->host_mask);
	free(s->certs);
	free(s->auths);
	free(s->warns);
	free(s);
}

const char *tg_tls_store_lookup(const tg_tls_store_t *s, const char *host, size_t len)
{
	char name[256];
	int ci, ai;
	size_t n = host ? host_norm(host, len, name, NULL) : 0;
	resolve(s, name, n, &ci, &ai);
	return s->certs[ci < 0 ? 0 : ci].source;
}

size_t tg_tls_store_count(const tg_tls_store_t *s)
{
	return s ? s->n_certs : 0;
}

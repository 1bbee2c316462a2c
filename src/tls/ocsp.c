/*
 * ocsp.c - OCSP stapling (ConfigMap enable-ocsp, as ingress-nginx).
 *
 * Every server context built while enable-ocsp is on registers its leaf
 * certificate here (tg_tls_ocsp_attach). One background thread fetches each
 * registered certificate's OCSP response from the responder its Authority
 * Information Access names (HTTP POST, 10 s timeout), checks it (signed by
 * the issuer or a responder the issuer delegated, about this certificate,
 * within its validity window) and keeps its DER; the handshake callback
 * staples a copy when the client asks for status and the response is still
 * valid. Nothing on the handshake path waits for the network: a certificate
 * whose response is not there yet, or no longer valid, is served without
 * one, as nginx does.
 *
 * Refresh: after an hour, or at half of the time left to nextUpdate when
 * sooner (at least a minute apart); a failed fetch is retried after a
 * minute and logged when the state changes (not on every retry). Entries
 * are per leaf (SHA-256 of the DER), shared by the contexts that use the
 * same certificate, and freed by the thread once no context uses them.
 */
#include "tls/internal.h"
#include "core/log.h"
#include "core/sbuf.h"

#include <curl/curl.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OCSP_REFRESH_S	  3600 /* refetch a good response after this long */
#define OCSP_RETRY_S	  60   /* retry a failed fetch after this long */
#define OCSP_TIMEOUT_S	  10   /* whole HTTP exchange with the responder */
#define OCSP_MAX_RESPONSE (64 * 1024)
#define OCSP_CLOCK_SKEW_S 300 /* tolerance on thisUpdate / nextUpdate */

typedef struct ocsp_entry {
	struct ocsp_entry *next; /* g.list link */
	uint8_t fp[32];		 /* SHA-256 of the leaf's DER */
	X509 *leaf, *issuer;	 /* references held */
	char *url;		 /* responder URL (first OCSP access location) */
	int users;		 /* contexts using it (g.mu) */
	bool busy;		 /* the thread is fetching it (g.mu) */
	bool failing;		 /* the last fetch failed (logged once per change) */
	time_t next_fetch;	 /* when to fetch (g.mu) */
	pthread_mutex_t mu;	 /* guards der, der_len, expires */
	unsigned char *der;	 /* current response, or NULL */
	int der_len;		 /* its length */
	time_t expires;		 /* staple until then (nextUpdate; 0: no nextUpdate) */
} ocsp_entry_t;

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	ocsp_entry_t *list;
	bool started;
	int ex_idx; /* SSL_CTX ex_data index holding the context's entry */
} g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, false, -1};

static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

/* Metrics (tg_tls_ocsp_metrics). */
static atomic_ullong n_fetch_ok, n_fetch_err, n_stapled;

/* A context goes: one user fewer (the thread frees unused entries). */
static void ctx_gone(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	ocsp_entry_t *e = ptr;
	if (!e)
		return;
	pthread_mutex_lock(&g.mu);
	e->users--;
	pthread_mutex_unlock(&g.mu);
}

static void ex_init(void)
{
	g.ex_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_gone);
}

static void entry_free(ocsp_entry_t *e)
{
	X509_free(e->leaf);
	X509_free(e->issuer);
	free(e->url);
	OPENSSL_free(e->der);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

/* ------------------------------------------------------------ fetching */

typedef struct body {
	unsigned char *p;
	size_t n;
	bool too_big;
} body_t;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	body_t *b = arg;
	size_t n = size * nmemb;
	if (b->n + n > OCSP_MAX_RESPONSE) {
		b->too_big = true;
		return 0;
	}
	unsigned char *q = realloc(b->p, b->n + n);
	if (!q)
		return 0;
	memcpy(q + b->n, ptr, n);
	b->p = q;
	b->n += n;
	return n;
}

/* Seconds from now to t (negative: past); INT64_MIN when unreadable. */
static int64_t secs_until(const ASN1_GENERALIZEDTIME *t)
{
	int day, sec;
	if (!t || !ASN1_TIME_diff(&day, &sec, NULL, t))
		return INT64_MIN;
	return (int64_t)day * 86400 + sec;
}

/* One fetch for e (called without g.mu). Returns NULL and fills the
 * response, or a reason. */
static const char *fetch(ocsp_entry_t *e, unsigned char **der, int *der_len, time_t *expires,
			 int64_t *next_in)
{
	static _Thread_local char why[160];
	const char *fail = NULL;
	OCSP_CERTID *id = OCSP_cert_to_id(NULL, e->leaf, e->issuer);
	OCSP_REQUEST *req = OCSP_REQUEST_new();
	OCSP_RESPONSE *resp = NULL;
	OCSP_BASICRESP *bs = NULL;
	STACK_OF(X509) *certs = sk_X509_new_null();
	X509_STORE *st = X509_STORE_new();
	unsigned char *reqder = NULL;
	body_t body = {0};
	CURL *h = NULL;
	struct curl_slist *hdr = NULL;

	if (!id || !req || !certs || !st || !OCSP_request_add0_id(req, OCSP_CERTID_dup(id))) {
		fail = "out of memory";
		goto out;
	}
	int reqlen = i2d_OCSP_REQUEST(req, &reqder);
	h = curl_easy_init();
	hdr = curl_slist_append(NULL, "Content-Type: application/ocsp-request");
	if (reqlen <= 0 || !h || !hdr) {
		fail = "out of memory";
		goto out;
	}
	curl_easy_setopt(h, CURLOPT_URL, e->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, (const char *)reqder);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)reqlen);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)OCSP_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	CURLcode cc = curl_easy_perform(h);
	long code = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	if (cc != CURLE_OK) {
		snprintf(why, sizeof(why), "%s",
			 body.too_big ? "response over 64 KiB" : curl_easy_strerror(cc));
		fail = why;
		goto out;
	}
	if (code != 200) {
		snprintf(why, sizeof(why), "responder answered HTTP %ld", code);
		fail = why;
		goto out;
	}
	const unsigned char *p = body.p;
	resp = d2i_OCSP_RESPONSE(NULL, &p, (long)body.n);
	if (!resp) {
		fail = "not an OCSP response";
		goto out;
	}
	int rs = OCSP_response_status(resp);
	if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		snprintf(why, sizeof(why), "responder status %s", OCSP_response_status_str(rs));
		fail = why;
		goto out;
	}
	bs = OCSP_response_get1_basic(resp);
	/* The issuer is the trust anchor (it need not be a root): a response
	 * signed by it, or by a responder it delegated, is accepted. */
	if (!bs || !sk_X509_push(certs, e->issuer) || !X509_STORE_add_cert(st, e->issuer) ||
	    !X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN)) {
		fail = "out of memory";
		goto out;
	}
	if (OCSP_basic_verify(bs, certs, st, 0) != 1) {
		fail = "signature not from the issuer or a responder it delegated";
		goto out;
	}
	int status, reason;
	ASN1_GENERALIZEDTIME *rev, *thisupd, *nextupd;
	if (!OCSP_resp_find_status(bs, id, &status, &reason, &rev, &thisupd, &nextupd)) {
		fail = "response does not name this certificate";
		goto out;
	}
	if (!OCSP_check_validity(thisupd, nextupd, OCSP_CLOCK_SKEW_S, -1)) {
		fail = "response outside its validity window";
		goto out;
	}
	/* Staple what the responder said, good or revoked: the client decides. */
	int64_t left = nextupd ? secs_until(nextupd) : INT64_MAX;
	*expires = nextupd ? time(NULL) + (time_t)left : 0;
	*next_in = OCSP_REFRESH_S;
	if (nextupd && left / 2 < *next_in)
		*next_in = left / 2 > OCSP_RETRY_S ? left / 2 : OCSP_RETRY_S;
	*der = OPENSSL_malloc(body.n);
	if (!*der) {
		fail = "out of memory";
		goto out;
	}
	memcpy(*der, body.p, body.n);
	*der_len = (int)body.n;
out:
	OCSP_CERTID_free(id);
	OCSP_REQUEST_free(req);
	OCSP_RESPONSE_free(resp);
	OCSP_BASICRESP_free(bs);
	sk_X509_free(certs);
	X509_STORE_free(st);
	OPENSSL_free(reqder);
	free(body.p);
	curl_slist_free_all(hdr);
	if (h)
		curl_easy_cleanup(h);
	return fail;
}

static void *fetcher(void *arg)
{
	(void)arg;
	curl_global_init(CURL_GLOBAL_DEFAULT); /* thread-safe, counted (libcurl >= 7.84) */
	pthread_mutex_lock(&g.mu);
	for (;;) {
		time_t now = time(NULL), wake = now + OCSP_RETRY_S;
		ocsp_entry_t *due = NULL, **pp = &g.list;
		while (*pp) {
			ocsp_entry_t *e = *pp;
			if (e->users <= 0 && !e->busy) {
				*pp = e->next;
				entry_free(e);
				continue;
			}
			if (!due && e->users > 0 && e->next_fetch <= now)
				due = e;
			else if (e->users > 0 && e->next_fetch < wake)
				wake = e->next_fetch;
			pp = &e->next;
		}
		if (!due) {
			struct timespec ts = {.tv_sec = wake};
			pthread_cond_timedwait(&g.cv, &g.mu, &ts);
			continue;
		}
		due->busy = true;
		pthread_mutex_unlock(&g.mu);

		unsigned char *der = NULL;
		int der_len = 0;
		time_t expires = 0;
		int64_t next_in = OCSP_RETRY_S;
		const char *why = fetch(due, &der, &der_len, &expires, &next_in);
		atomic_fetch_add_explicit(why ? &n_fetch_err : &n_fetch_ok, 1,
					  memory_order_relaxed);
		if (why) {
			if (!due->failing)
				tg_warn("tls",
					"OCSP: no response from %s: %s (retrying every %d s; "
					"the certificate is served without stapling meanwhile)",
					due->url, why, OCSP_RETRY_S);
			due->failing = true;
		} else {
			if (due->failing)
				tg_info("tls", "OCSP: response from %s stapled again", due->url);
			due->failing = false;
			pthread_mutex_lock(&due->mu);
			OPENSSL_free(due->der);
			due->der = der;
			due->der_len = der_len;
			due->expires = expires;
			pthread_mutex_unlock(&due->mu);
		}

		pthread_mutex_lock(&g.mu);
		due->busy = false;
		due->next_fetch = time(NULL) + (time_t)next_in;
	}
	return NULL;
}

/* ------------------------------------------------------------ handshake */

static int status_cb(SSL *ssl, void *arg)
{
	ocsp_entry_t *e = arg;
	unsigned char *copy = NULL;
	int len = 0;
	pthread_mutex_lock(&e->mu);
	if (e->der && (e->expires == 0 || time(NULL) < e->expires)) {
		copy = OPENSSL_malloc((size_t)e->der_len);
		if (copy) {
			memcpy(copy, e->der, (size_t)e->der_len);
			len = e->der_len;
		}
	}
	pthread_mutex_unlock(&e->mu);
	if (!copy)
		return SSL_TLSEXT_ERR_NOACK;
	if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, len) != 1) {
		OPENSSL_free(copy);
		return SSL_TLSEXT_ERR_NOACK;
	}
	atomic_fetch_add_explicit(&n_stapled, 1, memory_order_relaxed);
	return SSL_TLSEXT_ERR_OK;
}

void tg_tls_ocsp_metrics(struct tg_sbuf *out)
{
	unsigned long long with = 0, without = 0;
	time_t now = time(NULL);
	pthread_mutex_lock(&g.mu);
	for (ocsp_entry_t *e = g.list; e; e = e->next) {
		if (e->users <= 0)
			continue;
		pthread_mutex_lock(&e->mu);
		bool ok = e->der && (e->expires == 0 || now < e->expires);
		pthread_mutex_unlock(&e->mu);
		ok ? with++ : without++;
	}
	pthread_mutex_unlock(&g.mu);
	tg_sbuf_printf(out,
		       "# HELP tidegate_tls_ocsp_certificates Certificates with an OCSP responder "
		       "in use (enable-ocsp), by whether a valid response is there to staple.\n"
		       "# TYPE tidegate_tls_ocsp_certificates gauge\n"
		       "tidegate_tls_ocsp_certificates{state=\"stapled\"} %llu\n"
		       "tidegate_tls_ocsp_certificates{state=\"without_response\"} %llu\n",
		       with, without);
	tg_sbuf_printf(out,
		       "# HELP tidegate_tls_ocsp_fetches_total OCSP responses fetched, by result "
		       "(error: no answer, or an answer that failed the checks).\n"
		       "# TYPE tidegate_tls_ocsp_fetches_total counter\n"
		       "tidegate_tls_ocsp_fetches_total{result=\"ok\"} %llu\n"
		       "tidegate_tls_ocsp_fetches_total{result=\"error\"} %llu\n",
		       (unsigned long long)atomic_load(&n_fetch_ok),
		       (unsigned long long)atomic_load(&n_fetch_err));
	tg_sbuf_printf(out,
		       "# HELP tidegate_tls_ocsp_staples_total TLS handshakes that asked for "
		       "certificate status and got a stapled OCSP response.\n"
		       "# TYPE tidegate_tls_ocsp_staples_total counter\n"
		       "tidegate_tls_ocsp_staples_total %llu\n",
		       (unsigned long long)atomic_load(&n_stapled));
}

/* ------------------------------------------------------------ attach */

int tg_tls_ocsp_attach(SSL_CTX *ctx, X509 *leaf, STACK_OF(X509) * chain, char *why, size_t whylen)
{
	pthread_once(&ex_once, ex_init);
	if (g.ex_idx < 0)
		return tg_tls_fail(why, whylen, "out of memory");
	X509 *issuer = NULL;
	for (int i = 0; chain && i < sk_X509_num(chain); i++)
		if (X509_check_issued(sk_X509_value(chain, i), leaf) == X509_V_OK) {
			issuer = sk_X509_value(chain, i);
			break;
		}
	STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(leaf);
	const char *url =
	    urls && sk_OPENSSL_STRING_num(urls) > 0 ? sk_OPENSSL_STRING_value(urls, 0) : NULL;
	if (!url || !issuer) {
		X509_email_free(urls);
		return tg_tls_fail(why, whylen,
				   !url ? "tls.crt: no OCSP responder in the certificate"
					: "tls.crt: the issuer's certificate is not in the chain");
	}
	uint8_t fp[32];
	unsigned int n = 0;
	unsigned char md[EVP_MAX_MD_SIZE];
	if (X509_digest(leaf, EVP_sha256(), md, &n) != 1 || n < sizeof(fp)) {
		X509_email_free(urls);
		return tg_tls_fail(why, whylen, "out of memory");
	}
	memcpy(fp, md, sizeof(fp));

	pthread_mutex_lock(&g.mu);
	ocsp_entry_t *e = g.list;
	while (e && memcmp(e->fp, fp, sizeof(fp)) != 0)
		e = e->next;
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (e && !(e->url = strdup(url))) {
			free(e);
			e = NULL;
		}
		if (e) {
			memcpy(e->fp, fp, sizeof(fp));
			X509_up_ref(leaf);
			X509_up_ref(issuer);
			e->leaf = leaf;
			e->issuer = issuer;
			pthread_mutex_init(&e->mu, NULL);
			e->next = g.list;
			g.list = e;
		}
	}
	if (e && !g.started) {
		pthread_t t;
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		g.started = pthread_create(&t, &a, fetcher, NULL) == 0;
		pthread_attr_destroy(&a);
	}
	if (!e || !g.started || !SSL_CTX_set_ex_data(ctx, g.ex_idx, e)) {
		pthread_mutex_unlock(&g.mu);
		X509_email_free(urls);
		return tg_tls_fail(why, whylen, "out of memory");
	}
	e->users++;
	pthread_cond_signal(&g.cv);
	pthread_mutex_unlock(&g.mu);
	X509_email_free(urls);
	SSL_CTX_set_tlsext_status_cb(ctx, status_cb);
	SSL_CTX_set_tlsext_status_arg(ctx, e);
	return 0;
}

/*
 * global.c - process-wide TLS state: initialisation, the generated default
 * certificate, the session-ticket key ring and per-thread metric counters.
 */
#include "tls/internal.h"

#include "core/log.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ ticket keys */

/* One ticket key, nginx's 80-byte layout. */
typedef struct ticket_key {
	uint8_t name[16]; /* key name sent in clear inside the ticket */
	uint8_t hmac[32]; /* HMAC-SHA256 key */
	uint8_t aes[32];  /* AES-256-CBC key */
} ticket_key_t;

/*
 * The ring is read by every handshake that issues or presents a ticket and
 * written every 12 hours. A read-write lock is the simplest correct choice:
 * the read side costs an uncontended atomic, negligible next to the public-key
 * operations of a handshake, and the writer holds it for a 160-byte copy.
 */
static struct {
	pthread_rwlock_t lock; /* guards keys and n */
	ticket_key_t keys[2];  /* [0] current (seals and opens), [1] previous (opens) */
	unsigned n;	       /* valid entries in keys */
} ring = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static bool inited;			/* tg_tls_init succeeded */
static X509 *def_x509;			/* generated default certificate */
static EVP_PKEY *def_pkey;		/* its key */
static EVP_CIPHER *ticket_cipher;	/* AES-256-CBC, fetched once (fetching per call is slow) */
static char ticket_digest[] = "SHA256"; /* OSSL_PARAM wants a non-const string */

static int new_key(ticket_key_t *k)
{
	return RAND_bytes((unsigned char *)k, sizeof(*k)) == 1 ? 0 : -EIO;
}

static void install_key(const ticket_key_t *k)
{
	pthread_rwlock_wrlock(&ring.lock);
	ring.keys[1] = ring.keys[0];
	ring.keys[0] = *k;
	ring.n = ring.n ? 2 : 1;
	pthread_rwlock_unlock(&ring.lock);
}

int tg_tls_ticket_keys_rotate(void)
{
	ticket_key_t k;
	if (new_key(&k) < 0)
		return -EIO;
	install_key(&k);
	OPENSSL_cleanse(&k, sizeof(k));
	tg_tls_count(CTR_TICKET_ROTATIONS);
	return 0;
}

int tg_tls_ticket_keys_set(const void *key, size_t len, char *err, size_t errlen)
{
	if (len != sizeof(ticket_key_t))
		return tg_tls_fail(err, errlen,
				   "ssl-session-ticket-key: need %zu bytes (name, HMAC and AES "
				   "keys), got %zu",
				   sizeof(ticket_key_t), len);
	ticket_key_t k;
	memcpy(&k, key, sizeof(k));
	install_key(&k);
	OPENSSL_cleanse(&k, sizeof(k));
	return 0;
}

/*
 * OpenSSL calls this to seal a new ticket (enc = 1) and to open a presented
 * one (enc = 0). Opening with the previous key returns 2 so that OpenSSL
 * re-issues the ticket under the current key: a client that keeps resuming
 * never falls off the end of the ring.
 */
int tg_tls_ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *ctx,
		     EVP_MAC_CTX *hctx, int enc)
{
	ticket_key_t k;
	int ret;

	if (enc) {
		if (RAND_bytes(iv, 16) != 1)
			return -1;
		pthread_rwlock_rdlock(&ring.lock);
		if (ring.n == 0) {
			pthread_rwlock_unlock(&ring.lock);
			return 0;
		}
		k = ring.keys[0];
		pthread_rwlock_unlock(&ring.lock);
		memcpy(key_name, k.name, sizeof(k.name));
		ret = 1;
	} else {
		unsigned i;
		pthread_rwlock_rdlock(&ring.lock);
		for (i = 0; i < ring.n; i++)
			if (memcmp(ring.keys[i].name, key_name, sizeof(k.name)) == 0)
				break;
		if (i == ring.n) {
			pthread_rwlock_unlock(&ring.lock);
			return 0; /* unknown or dropped key: full handshake */
		}
		k = ring.keys[i];
		pthread_rwlock_unlock(&ring.lock);
		ret = i == 0 ? 1 : 2;
	}

	OSSL_PARAM params[3];
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac));
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, ticket_digest, 0);
	params[2] = OSSL_PARAM_construct_end();
	if (EVP_MAC_CTX_set_params(hctx, params) != 1)
		ret = -1;
	else if (enc ? EVP_EncryptInit_ex(ctx, ticket_cipher, NULL, k.aes, iv) != 1
		     : EVP_DecryptInit_ex(ctx, ticket_cipher, NULL, k.aes, iv) != 1)
		ret = -1;
	OPENSSL_cleanse(&k, sizeof(k));
	return ret;
}

/* ---------------------------------------------------- default certificate */

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!e)
		return -1;
	int ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok == 1 ? 0 : -1;
}

/* Self-signed ECDSA P-256 certificate, CN "tidegate default", like
 * ingress-nginx's "Kubernetes Ingress Controller Fake Certificate". */
static int generate_default(void)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	BIGNUM *serial = BN_new();
	int rc = -1;

	if (!pkey || !x || !serial)
		goto out;
	if (!BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)))
		goto out;
	if (!X509_set_version(x, 2) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400) || !X509_set_pubkey(x, pkey))
		goto out;
	X509_NAME *nm = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)"tidegate",
					-1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
					(const unsigned char *)TG_TLS_GENERATED_NAME, -1, -1, 0) ||
	    !X509_set_issuer_name(x, nm))
		goto out;
	if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext(x, NID_ext_key_usage, "serverAuth") < 0)
		goto out;
	if (!X509_sign(x, pkey, EVP_sha256()))
		goto out;
	def_x509 = x;
	def_pkey = pkey;
	x = NULL;
	pkey = NULL;
	rc = 0;
out:
	BN_free(serial);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return rc;
}

X509 *tg_tls_default_x509(void)
{
	return def_x509;
}

EVP_PKEY *tg_tls_default_pkey(void)
{
	return def_pkey;
}

/* -------------------------------------------------------------- init */

int tg_tls_init(void)
{
	int rc = 0;
	pthread_mutex_lock(&init_lock);
	if (inited)
		goto out;
	if (OPENSSL_init_ssl(0, NULL) != 1) {
		rc = -EIO;
		goto out;
	}
	ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	if (!ticket_cipher) {
		rc = -EIO;
		goto out;
	}
	if (generate_default() < 0 || tg_tls_bio_init() < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	ticket_key_t k;
	if (new_key(&k) < 0) {
		rc = -EIO;
		goto fail;
	}
	install_key(&k);
	OPENSSL_cleanse(&k, sizeof(k));
	inited = true;
	goto out;
fail:
	tg_tls_bio_cleanup();
	X509_free(def_x509);
	EVP_PKEY_free(def_pkey);
	EVP_CIPHER_free(ticket_cipher);
	def_x509 = NULL;
	def_pkey = NULL;
	ticket_cipher = NULL;
	ERR_clear_error();
out:
	pthread_mutex_unlock(&init_lock);
	return rc;
}

void tg_tls_cleanup(void)
{
	pthread_mutex_lock(&init_lock);
	if (inited) {
		tg_tls_bio_cleanup();
		X509_free(def_x509);
		EVP_PKEY_free(def_pkey);
		EVP_CIPHER_free(ticket_cipher);
		def_x509 = NULL;
		def_pkey = NULL;
		ticket_cipher = NULL;
		pthread_rwlock_wrlock(&ring.lock);
		OPENSSL_cleanse(ring.keys, sizeof(ring.keys));
		ring.n = 0;
		pthread_rwlock_unlock(&ring.lock);
		inited = false;
	}
	pthread_mutex_unlock(&init_lock);
}

/* ------------------------------------------------------------ metrics */

/*
 * Each thread counts into its own block (written only by that thread, read by
 * the scraper with relaxed atomics, so no lock and no shared cache line on the
 * handshake path). Blocks are linked once and never freed, so totals never go
 * backwards when a thread exits; a block is ~130 bytes per thread ever used.
 */
typedef struct ctr_block {
	_Atomic uint64_t v[CTR_MAX]; /* the counters */
	struct ctr_block *next;	     /* next block (immutable once linked) */
} ctr_block_t;

static _Atomic(ctr_block_t *) ctr_head;
static _Thread_local ctr_block_t *ctr_mine;

void tg_tls_count(enum tls_counter which)
{
	ctr_block_t *b = ctr_mine;
	if (TG_UNLIKELY(!b)) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return;
		b->next = atomic_load(&ctr_head);
		while (!atomic_compare_exchange_weak(&ctr_head, &b->next, b))
			;
		ctr_mine = b;
	}
	uint64_t v = atomic_load_explicit(&b->v[which], memory_order_relaxed);
	atomic_store_explicit(&b->v[which], v + 1, memory_order_relaxed);
}

static uint64_t sum(enum tls_counter which)
{
	uint64_t t = 0;
	for (ctr_block_t *b = atomic_load(&ctr_head); b; b = b->next)
		t += atomic_load_explicit(&b->v[which], memory_order_relaxed);
	return t;
}

static void family(tg_sbuf_t *out, const char *name, const char *help)
{
	tg_sbuf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
}

void tg_tls_metrics(tg_sbuf_t *out)
{
	static const struct {
		enum tls_counter c; /* counter */
		const char *label;  /* its reason label */
	} errs[] = {
	    {CTR_ERR_PEER_CLOSED, "peer_closed"}, {CTR_ERR_IO, "io"},
	    {CTR_ERR_PROTOCOL, "protocol"},	  {CTR_ERR_PLAIN_HTTP, "plain_http"},
	    {CTR_ERR_INTERNAL, "internal"},	  {CTR_ERR_ABANDONED, "abandoned"},
	};

	family(out, "tidegate_tls_handshakes_total", "TLS handshakes completed, by protocol.");
	tg_sbuf_printf(out, "tidegate_tls_handshakes_total{protocol=\"TLSv1.2\"} %llu\n",
		       (unsigned long long)sum(CTR_HS_TLS12));
	tg_sbuf_printf(out, "tidegate_tls_handshakes_total{protocol=\"TLSv1.3\"} %llu\n",
		       (unsigned long long)sum(CTR_HS_TLS13));
	family(out, "tidegate_tls_resumed_handshakes_total",
	       "Completed TLS handshakes that resumed a session from a ticket, by protocol.");
	tg_sbuf_printf(out, "tidegate_tls_resumed_handshakes_total{protocol=\"TLSv1.2\"} %llu\n",
		       (unsigned long long)sum(CTR_RESUMED_TLS12));
	tg_sbuf_printf(out, "tidegate_tls_resumed_handshakes_total{protocol=\"TLSv1.3\"} %llu\n",
		       (unsigned long long)sum(CTR_RESUMED_TLS13));
	family(out, "tidegate_tls_handshake_errors_total",
	       "TLS handshakes that did not complete, by reason (abandoned: timed out or "
	       "closed by the proxy).");
	for (size_t i = 0; i < TG_ARRAY_SIZE(errs); i++)
		tg_sbuf_printf(out, "tidegate_tls_handshake_errors_total{reason=\"%s\"} %llu\n",
			       errs[i].label, (unsigned long long)sum(errs[i].c));
	family(out, "tidegate_tls_default_certificate_total",
	       "TLS handshakes answered with the default certificate (SNI absent or unknown).");
	tg_sbuf_printf(out, "tidegate_tls_default_certificate_total %llu\n",
		       (unsigned long long)sum(CTR_DEFAULT_CERT));
	family(out, "tidegate_tls_client_certificate_rejections_total",
	       "Requests refused by the client-certificate check, by reason (missing and "
	       "invalid: 400, misdirected: 421).");
	tg_sbuf_printf(
	    out, "tidegate_tls_client_certificate_rejections_total{reason=\"missing\"} %llu\n",
	    (unsigned long long)sum(CTR_CERT_MISSING));
	tg_sbuf_printf(
	    out, "tidegate_tls_client_certificate_rejections_total{reason=\"invalid\"} %llu\n",
	    (unsigned long long)sum(CTR_CERT_INVALID));
	tg_sbuf_printf(out,
		       "tidegate_tls_client_certificate_rejections_total{reason=\"misdirected\"} "
		       "%llu\n",
		       (unsigned long long)sum(CTR_CERT_MISDIRECTED));
	family(out, "tidegate_tls_ticket_key_rotations_total",
	       "Session-ticket key rotations since start.");
	tg_sbuf_printf(out, "tidegate_tls_ticket_key_rotations_total %llu\n",
		       (unsigned long long)sum(CTR_TICKET_ROTATIONS));
	tg_tls_ocsp_metrics(out);
}

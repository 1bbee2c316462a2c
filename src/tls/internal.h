/*
 * internal.h - structures shared by the files of src/tls (not for other
 * modules: they use tls.h).
 *
 *   global.c  tg_tls_init, the generated default certificate, the ticket key
 *             ring and its OpenSSL callback, per-thread metric counters
 *   store.c   options, PEM validation, the builder, SSL_CTX settings, the host
 *             table and the ClientHello callback that picks a certificate
 *   conn.c    the socket BIO, handshake, read/writev/flush/shutdown,
 *             accessors, client-certificate decision
 */
#ifndef TG_TLS_INTERNAL_H
#define TG_TLS_INTERNAL_H

#include "tls/tls.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdatomic.h>

/* Bytes of the fingerprints that identify a certificate or a client-auth
 * policy; two of them make the 32-byte session id context. */
#define FP_LEN 16

/* Source name of the generated default certificate. */
#define TG_TLS_GENERATED_NAME "tidegate default"

/* One certificate and the SSL_CTX that serves it. */
typedef struct tls_cert {
	char *source;	    /* "ns/name" (owned) */
	SSL_CTX *ctx;	    /* one reference owned by this entry */
	uint8_t fp[FP_LEN]; /* SHA-256 prefix of the leaf DER: session id context */
	uint8_t pem_fp[32]; /* SHA-256 of cert PEM + key PEM + options: reuse key */
	X509 *leaf;	    /* borrowed from ctx, for host coverage checks */
} tls_cert_t;

/* A client-certificate policy. */
struct tg_tls_client_auth {
	char *source;			/* "ns/name" of the auth-tls-secret (owned) */
	X509_STORE *store;		/* CA certificates and CRLs (one reference owned) */
	STACK_OF(X509_NAME) * ca_names; /* names sent in CertificateRequest (owned) */
	tg_tls_verify_t verify;		/* auth-tls-verify-client */
	uint32_t depth;			/* auth-tls-verify-depth */
	bool pass_cert;			/* auth-tls-pass-certificate-to-upstream */
	uint8_t fp[FP_LEN];		/* SHA-256 prefix of CA PEM, CRL PEM and settings */
};

/* One host name in the store's table. */
typedef struct tls_host {
	char *name;	  /* lowercase; for a wildcard the part after "*." (owned) */
	uint32_t len;	  /* bytes in name */
	bool wildcard;	  /* entry for "*.name" */
	int8_t cert_prio; /* 2: Ingress spec.tls host, 1: certificate name, 0: none */
	int32_t cert;	  /* index into certs, -1 when none */
	int32_t auth;	  /* index into auths, -1 when none */
} tls_host_t;

struct tg_tls_store {
	_Atomic uint32_t refs;	      /* references (snapshots, handshaking connections) */
	tls_cert_t *certs;	      /* [0] is the default certificate */
	uint32_t n_certs;	      /* entries in certs */
	tg_tls_client_auth_t **auths; /* policies (owned) */
	uint32_t n_auths;	      /* entries in auths */
	tls_host_t *hosts;	      /* open-addressing table, NULL names are free */
	uint32_t host_mask;	      /* table size - 1 (power of two), 0 when empty */
	uint8_t opts_fp[32];	      /* SHA-256 of the effective options, reuse key */
	uint64_t *warns;	      /* hashes of the warnings logged for this store */
	uint32_t n_warns;	      /* entries in warns */
};

/* The connection. Small on purpose: an idle connection is this, the SSL
 * object (its buffers released) and a BIO. */
struct tg_tls_conn {
	SSL *ssl;		 /* OpenSSL state (owned) */
	tg_tls_store_t *store;	 /* reference held until the handshake ends */
	char *out;		 /* ciphertext the socket did not take (malloc, or NULL) */
	uint32_t out_pos;	 /* first unsent byte in out */
	uint32_t out_len;	 /* bytes used in out */
	uint32_t out_cap;	 /* bytes allocated for out */
	char *prefix;		 /* bytes read before the connection existed (owned) */
	uint32_t prefix_pos;	 /* next prefix byte to hand to OpenSSL */
	uint32_t prefix_len;	 /* bytes in prefix */
	int fd;			 /* the socket (not owned) */
	int io_errno;		 /* errno of the last failed recv/send, 0 when none */
	char *sni;		 /* SNI sent by the client, lowercased (owned), or NULL */
	const char *err;	 /* static reason of the failure, NULL when none */
	uint8_t err_kind;	 /* tg_tls_error_kind_t */
	uint8_t want;		 /* TG_TLS_WANT_* after TG_AGAIN */
	bool established;	 /* handshake completed */
	bool failed;		 /* fatal error: no further TLS I/O */
	bool rd_eof;		 /* recv returned 0 */
	bool shut_sent;		 /* close_notify queued */
	bool hello_seen;	 /* the ClientHello callback ran once */
	uint8_t auth_verify;	 /* tg_tls_verify_t requested during the handshake */
	uint8_t auth_fp[FP_LEN]; /* fingerprint of that policy (zeros: none) */
	bool client;		 /* our side connects (upstream TLS, client.c): not counted
				  * in the tidegate_tls_* listener metrics */
};

/* ---- global.c */

/* The ticket key callback installed on every SSL_CTX. */
int tg_tls_ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *ctx,
		     EVP_MAC_CTX *hctx, int enc);

/* The generated default certificate and key (borrowed; valid after
 * tg_tls_init). */
X509 *tg_tls_default_x509(void);
EVP_PKEY *tg_tls_default_pkey(void);

/* Metric counters. */
enum tls_counter {
	CTR_HS_TLS12,	     /* handshakes completed, TLS 1.2 */
	CTR_HS_TLS13,	     /* handshakes completed, TLS 1.3 */
	CTR_RESUMED_TLS12,   /* of which resumed, TLS 1.2 */
	CTR_RESUMED_TLS13,   /* of which resumed, TLS 1.3 */
	CTR_ERR_PEER_CLOSED, /* handshake errors by tg_tls_error_kind_t ... */
	CTR_ERR_IO,
	CTR_ERR_PROTOCOL,
	CTR_ERR_PLAIN_HTTP,
	CTR_ERR_INTERNAL,
	CTR_ERR_ABANDONED,    /* freed before the handshake ended */
	CTR_DEFAULT_CERT,     /* handshakes answered with the default certificate */
	CTR_CERT_MISSING,     /* client-certificate decisions: none sent (400) */
	CTR_CERT_INVALID,     /* verification failed (400) */
	CTR_CERT_MISDIRECTED, /* policy mismatch (421) */
	CTR_TICKET_ROTATIONS, /* tg_tls_ticket_keys_rotate calls that succeeded */
	CTR_MAX
};

/* Adds one to a counter of the calling thread. */
void tg_tls_count(enum tls_counter which);

/* ---- conn.c */

/* A connection in client (connect) state over fd for ctx (one reference of
 * ctx is taken by the SSL object). NULL when out of memory. For client.c. */
tg_tls_conn_t *tg_tls_conn_new_client(SSL_CTX *ctx, int fd);

/* Creates / frees the socket BIO method (called by tg_tls_init/cleanup). */
int tg_tls_bio_init(void);
void tg_tls_bio_cleanup(void);

/* ---- store.c */

/* The ClientHello callback: SNI -> certificate and client-auth policy. */
int tg_tls_client_hello_cb(SSL *ssl, int *al, void *arg);

/* ocsp.c: staples OCSP responses for leaf on ctx (fetched in the background
 * from the leaf's responder; the issuer must be in chain). Returns 0, or
 * -EINVAL with why (no responder URL, no issuer, out of memory): the context
 * then works without stapling. */
int tg_tls_ocsp_attach(SSL_CTX *ctx, X509 *leaf, STACK_OF(X509) * chain, char *why, size_t whylen);

/* ocsp.c: the OCSP families of the metrics page (tg_tls_metrics). */
struct tg_sbuf;
void tg_tls_ocsp_metrics(struct tg_sbuf *out);

/* Writes "fmt..." into err (truncating) and returns -EINVAL. */
int tg_tls_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns the static reason text of the first error in the thread's OpenSSL
 * error queue (or `fallback` when it is empty) and clears the queue. */
const char *tg_tls_ossl_reason(const char *fallback);

#endif

/*
 * upstream.h - TLS from the proxy to a backend (ingress-nginx's
 * backend-protocol: HTTPS and its proxy-ssl-* annotations): client-side
 * profiles built off the workers, and connections in connect state that use
 * the same non-blocking I/O as the listener side (tls.h: tg_tls_conn_*).
 *
 * Defaults are nginx's as ingress-nginx configures them:
 *   - no SNI (proxy_ssl_server_name off); with server_name on, the SNI is
 *     `name` (proxy-ssl-name), else nginx's $proxy_host, which ingress-nginx
 *     makes "upstream_balancer";
 *   - no verification (proxy_ssl_verify off); with verify on, the chain must
 *     lead to ca.crt within verify_depth [1] and the certificate must name
 *     `name` (same default as the SNI: set proxy-ssl-name);
 *   - TLS 1.2 and 1.3 (nginx's default proxy_ssl_protocols since 1.23.4;
 *     ingress-nginx's proxy-ssl-protocols default lists TLSv1 and TLSv1.1,
 *     which tidegate never offers);
 *   - sessions are reused (proxy_ssl_session_reuse on): the caller keeps the
 *     last session per endpoint and hands it to the next connection.
 *
 * Threads: a profile is immutable once built and shared by every worker; it
 * is reference-counted because pooled connections outlive the snapshot whose
 * routes named it. A connection belongs to one worker.
 */
#ifndef TG_TLS_UPSTREAM_H
#define TG_TLS_UPSTREAM_H

#include "tls/tls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a profile is built from (ingress-nginx annotation in brackets). */
typedef struct tg_tls_upstream_config {
	const char *ca_pem;    /* ca.crt of proxy-ssl-secret, or NULL */
	size_t ca_len;	       /* its bytes */
	const char *cert_pem;  /* tls.crt of proxy-ssl-secret: the client certificate
				* presented to the backend (chain), or NULL */
	size_t cert_len;       /* its bytes */
	const char *key_pem;   /* tls.key of proxy-ssl-secret, or NULL */
	size_t key_len;	       /* its bytes */
	bool verify;	       /* [proxy-ssl-verify] on; needs ca_pem */
	uint32_t verify_depth; /* [proxy-ssl-verify-depth], 0 taken as 1 */
	const char *name;      /* [proxy-ssl-name], or NULL: "upstream_balancer" */
	bool server_name;      /* [proxy-ssl-server-name] on: send `name` as SNI */
} tg_tls_upstream_config_t;

typedef struct tg_tls_upstream tg_tls_upstream_t; /* a client profile (SSL_CTX) */
typedef struct tg_tls_session tg_tls_session_t;	  /* a resumable session (opaque) */

/* nginx's $proxy_host in ingress-nginx: the name used when proxy-ssl-name is
 * not set. */
#define TG_TLS_UPSTREAM_DEFAULT_NAME "upstream_balancer"

/* Builds a profile (one reference). Returns NULL with the reason in err (bad
 * ca.crt, tls.crt/tls.key not matching, verify without ca.crt, out of
 * memory). */
tg_tls_upstream_t *tg_tls_upstream_new(const tg_tls_upstream_config_t *cfg, char *err,
				       size_t errlen);

/* Takes one more reference. Returns p. */
tg_tls_upstream_t *tg_tls_upstream_ref(tg_tls_upstream_t *p);

/* Drops a reference; the last frees it. Accepts NULL. Thread-safe. */
void tg_tls_upstream_free(tg_tls_upstream_t *p);

/* A fingerprint of everything that decides what a connection made with p is
 * (SNI, verification, CA, client certificate): idle pooled connections are
 * only reused by requests whose profile has the same key. Never 0 (0 means
 * plain TCP to the callers). */
uint64_t tg_tls_upstream_key(const tg_tls_upstream_t *p);

/* Starts a client connection over connected (or connecting) non-blocking
 * socket fd, resuming `session` when not NULL (borrowed). Drive it with
 * tg_tls_conn_handshake() and use it with tg_tls_conn_read/writev/free as a
 * listener connection. NULL when out of memory. */
tg_tls_conn_t *tg_tls_upstream_conn(const tg_tls_upstream_t *p, int fd,
				    const tg_tls_session_t *session);

/* The connection's session for a later resumption (one reference), or NULL
 * when it has none that can be resumed (handshake unfinished, no ticket). */
tg_tls_session_t *tg_tls_upstream_session(const tg_tls_conn_t *c);

/* Drops a session reference. Accepts NULL. */
void tg_tls_session_free(tg_tls_session_t *s);

#endif

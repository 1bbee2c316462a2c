/*
 * tls.h - TLS termination for the ingress proxy: a certificate store chosen by
 * SNI, a non-blocking per-connection TLS layer over a socket, session tickets
 * shared by every worker, client certificates per host (ingress-nginx's
 * auth-tls-* annotations), and metrics. OpenSSL 3.0.
 *
 * Three seams, each with one owner:
 *
 * 1. Process (main / `tidegate ingress` start-up), once:
 *      tg_tls_init()                       before anything else here
 *      tg_tls_ticket_keys_rotate()         from a timer, every
 *                                          TG_TLS_TICKET_ROTATE_MS (12 h)
 *      tg_tls_metrics(out)                 from the /metrics handler
 *      tg_tls_cleanup()                    at exit (optional)
 *
 * 2. Configuration builder (src/ingress, on the source thread, off the workers),
 *    once per snapshot:
 *      b = tg_tls_store_builder_new(&opts, previous_store, err)
 *      tg_tls_store_set_default_cert(b, ...)   only with --default-ssl-certificate
 *      tg_tls_store_add_cert(b, "ns/secret", crt, key, tls_hosts, ...)   per Secret
 *      auth = tg_tls_store_add_client_auth(b, "ns/secret", hosts, &cfg, ...)
 *                                              per Ingress with auth-tls-secret;
 *                                              keep `auth` in the routes
 *      store = tg_tls_store_build(b, err)
 *    The snapshot keeps `store` (opaque pointer) and frees it with
 *    tg_tls_store_free(). Passing the previous store lets the builder reuse the
 *    OpenSSL contexts of unchanged Secrets, so a snapshot rebuilt for an
 *    EndpointSlice change costs almost nothing here. A rejected Secret (bad PEM,
 *    key not matching) returns -EINVAL with "<source>: <reason>" in err and adds
 *    nothing: the caller logs it and adds the last good PEM of that Secret
 *    instead (tg_tls_cert_validate() checks a candidate without a builder).
 *
 * 3. Worker (src/proxy), per accepted connection on the HTTPS listener:
 *      c = tg_tls_conn_new(store_of_current_snapshot, fd)
 *      [tg_tls_conn_set_prefix(c, bytes, n)  when bytes were read already,
 *                                            e.g. after a PROXY protocol header]
 *      loop: tg_tls_conn_handshake(c) -> TG_AGAIN: wait for tg_tls_conn_want(c)
 *                                     -> TG_ERROR: log tg_tls_conn_error(c), close
 *                                     -> TG_OK: established
 *      tg_tls_conn_read(c, ...) / tg_tls_conn_writev(c, ...) like read(2)/writev(2)
 *      after routing each request:
 *        tg_tls_conn_check_client_auth(c, route_auth, &reason, &headers)
 *      tg_tls_conn_shutdown(c) (close_notify, best effort), close(fd),
 *      tg_tls_conn_free(c)
 *    A connection keeps a reference to its store only until its handshake ends,
 *    so it may outlive the snapshot it was accepted under.
 *
 * Return conventions: builder/validation functions return 0 or -errno (-EINVAL
 * with a reason in the caller's err buffer, -ENOMEM); handshake, flush and
 * shutdown return TG_OK / TG_AGAIN / TG_ERROR; read and writev return a byte
 * count or -errno like the system calls they stand in for.
 *
 * Threads: the store is immutable once built and shared by all workers; a
 * connection is used by one thread at a time. Nothing here blocks: the only
 * lock a worker can meet is the ticket-key read lock, held by the rotation for
 * the time of a 240-byte copy every 12 hours.
 */
#ifndef TG_TLS_TLS_H
#define TG_TLS_TLS_H

#include "core/common.h"
#include "core/sbuf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* ------------------------------------------------------------------ types */

/* How often the owner should call tg_tls_ticket_keys_rotate(). Two keys are
 * kept (current and previous), so a ticket stays usable for 12 to 24 hours,
 * and never longer than the session timeout. */
#define TG_TLS_TICKET_ROTATE_MS (12ull * 3600 * 1000)

/* Longest error message the functions below write (callers size err buffers
 * with it; a shorter buffer truncates the message). */
#define TG_TLS_ERR_MAX 256

/* Global TLS settings: ingress-nginx ConfigMap keys. A zeroed struct means
 * the defaults. */
typedef struct tg_tls_options {
	const char *protocols;	    /* ssl-protocols ["TLSv1.2 TLSv1.3"], space separated */
	const char *ciphers;	    /* ssl-ciphers [Mozilla intermediate]: TLS 1.2 list in
				     * OpenSSL syntax; TLS 1.3 keeps OpenSSL's default suites */
	uint32_t session_timeout_s; /* ssl-session-timeout [600]: lifetime of a resumable
				     * session (ticket) */
	bool no_session_tickets;    /* ssl-session-tickets "false": no tickets, hence no
				     * resumption at all (there is no shared session cache).
				     * Default false = tickets on; see the note in the report
				     * about ingress-nginx's default. */
	bool http2;		    /* reserved for h2 in ALPN; must be false until the proxy
				     * speaks HTTP/2 */
	bool ocsp;		    /* enable-ocsp [false]: staple OCSP responses fetched in
				     * the background (ocsp.c) */
} tg_tls_options_t;

/* ingress-nginx's auth-tls-verify-client values. */
typedef enum tg_tls_verify {
	TG_TLS_VERIFY_OFF = 0,		  /* "off": no certificate requested */
	TG_TLS_VERIFY_ON = 1,		  /* "on" [default]: required; none -> 400 */
	TG_TLS_VERIFY_OPTIONAL = 2,	  /* "optional": requested; a bad one -> 400 */
	TG_TLS_VERIFY_OPTIONAL_NO_CA = 3, /* "optional_no_ca": requested; an unknown issuer
					   * is tolerated, other errors -> 400 */
} tg_tls_verify_t;

/* A client-certificate policy built from an auth-tls-secret Secret and the
 * other auth-tls-* annotations. */
typedef struct tg_tls_client_auth_config {
	const char *ca_pem;	/* ca.crt: one or more PEM CA certificates */
	size_t ca_len;		/* bytes in ca_pem */
	const char *crl_pem;	/* ca.crl: PEM CRLs, or NULL */
	size_t crl_len;		/* bytes in crl_pem */
	tg_tls_verify_t verify; /* auth-tls-verify-client [on] */
	uint32_t depth;		/* auth-tls-verify-depth [1]; 0 is taken as 1 */
	bool pass_cert;		/* auth-tls-pass-certificate-to-upstream [false]: add the
				 * ssl-client-cert header */
} tg_tls_client_auth_config_t;

/* Opaque types. */
typedef struct tg_tls_store tg_tls_store_t;		    /* immutable, refcounted */
typedef struct tg_tls_store_builder tg_tls_store_builder_t; /* one per build */
typedef struct tg_tls_client_auth tg_tls_client_auth_t;	    /* owned by a store */
typedef struct tg_tls_conn tg_tls_conn_t;		    /* one per TLS connection */

/* What a connection waits for after TG_AGAIN / -EAGAIN (bit mask). */
#define TG_TLS_WANT_READ  1u /* readable socket (EPOLLIN) */
#define TG_TLS_WANT_WRITE 2u /* writable socket (EPOLLOUT): encrypted bytes pending */

/* Why a connection failed (tg_tls_conn_error_kind). Doubles as metric label. */
typedef enum tg_tls_error_kind {
	TG_TLS_ERR_NONE = 0,	    /* no error */
	TG_TLS_ERR_PEER_CLOSED = 1, /* EOF or reset before the handshake ended: usually a
				     * client giving up or a port scanner; not worth a log */
	TG_TLS_ERR_IO = 2,	    /* socket error (errno in the message) */
	TG_TLS_ERR_PROTOCOL = 3,    /* TLS-level failure: no shared version/cipher/ALPN,
				     * bad record, alert from the client */
	TG_TLS_ERR_PLAIN_HTTP = 4,  /* the client spoke plain HTTP to the TLS port: the
				     * proxy may answer nginx's 400 "The plain HTTP request
				     * was sent to HTTPS port" in clear text, then close */
	TG_TLS_ERR_INTERNAL = 5,    /* out of memory or OpenSSL internal error */
} tg_tls_error_kind_t;

/* -------------------------------------------------------- process-wide */

/* Initialises the library: OpenSSL, the ticket key ring (one random key), the
 * generated default certificate (self-signed ECDSA P-256, CN "tidegate
 * default", valid 10 years). Idempotent and thread-safe. Returns 0 or -ENOMEM /
 * -EIO. */
int tg_tls_init(void);

/* Frees what tg_tls_init allocated. Only when no store or connection is left
 * (end of process, tests). */
void tg_tls_cleanup(void);

/* Rotates the session-ticket keys: a new random key becomes current, the
 * previous current key is kept for decryption only (tickets it sealed resume
 * and are re-issued under the new key), the one before is dropped. Called by
 * the owner from a timer; thread-safe against running handshakes. Returns 0 or
 * -EIO (no randomness; keys unchanged). */
int tg_tls_ticket_keys_rotate(void);

/* Installs an 80-byte ticket key in nginx's ssl_session_ticket_key layout
 * (16 name, 32 HMAC, 32 AES) as the current key, e.g. the same file on every
 * ingress node so tickets resume across nodes. Rotation continues from it.
 * Returns 0 or -EINVAL with a reason. */
int tg_tls_ticket_keys_set(const void *key, size_t len, char *err, size_t errlen);

/* Appends the TLS metrics (tidegate_tls_*) in Prometheus text format:
 * handshakes by protocol, resumed handshakes, handshake errors by kind,
 * default-certificate answers, client-certificate rejections by reason, ticket
 * key rotations. Counters are per thread, summed here. */
void tg_tls_metrics(tg_sbuf_t *out);

/* ---------------------------------------------------------- validation */

/* Checks ssl-protocols / ssl-ciphers options. Returns 0, or -EINVAL with
 * "ssl-protocols: ..." / "ssl-ciphers: ..." in err (unknown protocol, no
 * usable TLS 1.2 cipher, http2 set). Logs a warning for each cipher name that
 * matches nothing and for TLSv1/TLSv1.1 (dropped) when the rest is usable. */
int tg_tls_options_check(const tg_tls_options_t *opts, char *err, size_t errlen);

/* Validates one certificate Secret (tls.crt chain, tls.key) without a builder:
 * parses the chain and key (an encrypted key is refused, never prompted for),
 * checks that the key matches the first certificate. Expired or not yet valid
 * certificates pass (tg_tls_store_add_cert logs them). Returns 0 or -EINVAL
 * with the reason in err ("tls.key does not match the certificate", ...). */
int tg_tls_cert_validate(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
			 char *err, size_t errlen);

/* Validates a client-auth CA bundle (ca.crt) and optional CRL (ca.crl).
 * Returns 0 or -EINVAL with the reason in err. */
int tg_tls_client_auth_validate(const tg_tls_client_auth_config_t *cfg, char *err, size_t errlen);

/* Parses an auth-tls-verify-client value ("on", "off", "optional",
 * "optional_no_ca"; case-insensitive). Returns 0 or -EINVAL. */
int tg_tls_verify_parse(const char *s, size_t len, tg_tls_verify_t *out);

/* ------------------------------------------------------------- builder */

/* Starts a store. opts NULL means defaults; opts are checked as by
 * tg_tls_options_check (NULL returned, reason in err). prev, when not NULL, is
 * the store of the snapshot in force: its contexts are reused for Secrets
 * whose PEM and options did not change (prev is only read during the build).
 * Returns NULL on error. */
tg_tls_store_builder_t *tg_tls_store_builder_new(const tg_tls_options_t *opts,
						 const tg_tls_store_t *prev, char *err,
						 size_t errlen);

/*
 * Adds a certificate Secret. `source` names it in messages ("ns/name").
 * It serves the hosts listed for it in Ingress spec.tls (`hosts`, n_hosts, may
 * be 0) and every DNS name of the certificate (SAN dNSNames, else the subject
 * CN). Host names are case-insensitive; "*.x.com" covers exactly one label.
 * When two Secrets claim a name, a spec.tls host beats a certificate name, and
 * otherwise the first added wins (logged). A spec.tls host the certificate does
 * not cover is still served by it, with a warning. Adding the same source again
 * only adds hosts (the PEM of the first call is kept).
 * Expired certificates are accepted with a warning. Warnings are logged once:
 * a build that was given the previous store does not repeat the warnings that
 * store's build logged. Returns 0, -EINVAL with
 * "<source>: <reason>" in err (nothing added), or -ENOMEM.
 */
int tg_tls_store_add_cert(tg_tls_store_builder_t *b, const char *source, const char *cert_pem,
			  size_t cert_len, const char *key_pem, size_t key_len,
			  const char *const *hosts, size_t n_hosts, char *err, size_t errlen);

/* Sets the certificate answered for unknown or absent SNI
 * (--default-ssl-certificate). Without it the generated one is used. It serves
 * no host by name unless also added with tg_tls_store_add_cert. Returns 0,
 * -EINVAL (reason in err) or -ENOMEM. */
int tg_tls_store_set_default_cert(tg_tls_store_builder_t *b, const char *source,
				  const char *cert_pem, size_t cert_len, const char *key_pem,
				  size_t key_len, char *err, size_t errlen);

/*
 * Adds a client-certificate policy (an Ingress's auth-tls-* annotations) for
 * `hosts` (that Ingress's rule hosts; wildcards allowed). The certificate is
 * requested during the handshake when the SNI matches one of the hosts (first
 * policy added for a host wins, logged). Returns the policy, owned by the store
 * being built and valid until that store is freed: the ingress translation
 * stores it in each route of the Ingress and the proxy passes it to
 * tg_tls_conn_check_client_auth(). Identical policies are shared. Returns NULL
 * with "<source>: <reason>" in err (bad CA PEM, bad CRL, depth > 100).
 */
const tg_tls_client_auth_t *tg_tls_store_add_client_auth(tg_tls_store_builder_t *b,
							 const char *source,
							 const char *const *hosts, size_t n_hosts,
							 const tg_tls_client_auth_config_t *cfg,
							 char *err, size_t errlen);

/* Finishes the store and frees the builder (also on failure). Returns the
 * store with one reference, or NULL with a reason (out of memory). */
tg_tls_store_t *tg_tls_store_build(tg_tls_store_builder_t *b, char *err, size_t errlen);

/* Abandons a builder (and the client-auth policies it returned). Accepts NULL. */
void tg_tls_store_builder_free(tg_tls_store_builder_t *b);

/* Takes one more reference (e.g. a new snapshot sharing an unchanged store). */
tg_tls_store_t *tg_tls_store_ref(tg_tls_store_t *s);

/* Drops a reference; the last one frees the store. The snapshot's free
 * function. Accepts NULL. */
void tg_tls_store_free(tg_tls_store_t *s);

/* The source name of the certificate a handshake with this SNI gets
 * ("tidegate default" for the generated one). host need not be lowercase;
 * NULL/0 means no SNI. For logs, the admin page and tests. */
const char *tg_tls_store_lookup(const tg_tls_store_t *s, const char *host, size_t len);

/* Number of certificates (default included). */
size_t tg_tls_store_count(const tg_tls_store_t *s);

/* ---------------------------------------------------------- connection */

/* Creates the TLS state of an accepted, non-blocking socket. The connection
 * takes a store reference until its handshake ends. Does not take ownership
 * of fd (the caller closes it). Returns NULL when out of memory. */
tg_tls_conn_t *tg_tls_conn_new(tg_tls_store_t *store, int fd);

/* Gives the connection bytes already read from fd (the start of the
 * ClientHello read together with a PROXY protocol header). Copied; call before
 * the first handshake step. Returns 0 or -ENOMEM. */
int tg_tls_conn_set_prefix(tg_tls_conn_t *c, const void *data, size_t len);

/*
 * Runs the handshake as far as the socket allows. Returns TG_OK when it is
 * complete (and every byte of it flushed), TG_AGAIN when waiting for the peer:
 * tg_tls_conn_want() says for what; the caller arms its handshake timeout (a
 * stall is always the peer's doing). TG_ERROR when it failed:
 * tg_tls_conn_error() / tg_tls_conn_error_kind() say why; close the socket.
 * Never blocks. After TG_OK, read at once: the client's first request often
 * arrives with its last handshake message and is then already buffered inside
 * the connection, so no further EPOLLIN would announce it.
 */
int tg_tls_conn_handshake(tg_tls_conn_t *c);

/* TG_TLS_WANT_READ and/or TG_TLS_WANT_WRITE after TG_AGAIN or -EAGAIN. */
unsigned tg_tls_conn_want(const tg_tls_conn_t *c);

/*
 * Reads decrypted bytes, like read(2) on a non-blocking socket: returns the
 * count (> 0), 0 at end of stream (close_notify, or a TCP FIN without one,
 * which HTTP framing makes harmless), -EAGAIN (see tg_tls_conn_want: may
 * include WANT_WRITE when a TLS 1.3 reply is pending), -ENOTCONN before the
 * handshake completed, -ECONNRESET / other -errno on socket errors, -EPROTO on
 * a TLS error (tg_tls_conn_error). With edge-triggered epoll, a caller that
 * stops reading before -EAGAIN must check tg_tls_conn_has_pending_input():
 * decrypted bytes may wait inside the connection with nothing left in the
 * socket to wake it up.
 */
ssize_t tg_tls_conn_read(tg_tls_conn_t *c, void *buf, size_t len);

/*
 * Writes like writev(2): returns how many bytes of the iovecs were accepted
 * (the caller advances past them), or -EAGAIN (nothing accepted; wait for
 * EPOLLOUT), -EPIPE/-ECONNRESET/-errno, -EPROTO, -ENOTCONN. Small iovecs are
 * gathered into one record (one copy into a per-thread 16 KiB buffer); iovecs
 * of 4 KiB and more are encrypted straight from the caller's memory.
 * Accepted bytes are encrypted at once; when the socket is full the ciphertext
 * of at most one record waits in the connection (tg_tls_conn_has_pending_output)
 * and goes out with the next writev / tg_tls_conn_flush(). Unlike plain
 * OpenSSL, the caller is free to retry with different data after -EAGAIN.
 */
ssize_t tg_tls_conn_writev(tg_tls_conn_t *c, const struct iovec *iov, int iovcnt);

/* Sends pending ciphertext. TG_OK when nothing is left, TG_AGAIN (want write),
 * TG_ERROR (socket error). Call on EPOLLOUT when has_pending_output, and before
 * closing after the last response. */
int tg_tls_conn_flush(tg_tls_conn_t *c);

/* True when decrypted bytes are buffered inside the connection. */
bool tg_tls_conn_has_pending_input(const tg_tls_conn_t *c);

/* True when accepted bytes wait (encrypted) for the socket. */
bool tg_tls_conn_has_pending_output(const tg_tls_conn_t *c);

/* Sends close_notify, best effort: TG_OK when sent (or nothing to do: failed
 * or unfinished handshake), TG_AGAIN when the socket is full (call again on
 * EPOLLOUT or give up), TG_ERROR on a socket error. Does not wait for the
 * peer's close_notify. */
int tg_tls_conn_shutdown(tg_tls_conn_t *c);

/* Frees the connection (not the fd). A connection freed before its handshake
 * ended counts as an abandoned handshake (timeout or client gone). Accepts
 * NULL. */
void tg_tls_conn_free(tg_tls_conn_t *c);

/* Static text of the last error ("" when none). */
const char *tg_tls_conn_error(const tg_tls_conn_t *c);

/* Kind of the last error. */
tg_tls_error_kind_t tg_tls_conn_error_kind(const tg_tls_conn_t *c);

/* SNI the client sent, lowercased, or NULL. Valid for the connection's life. */
const char *tg_tls_conn_sni(const tg_tls_conn_t *c);

/* Negotiated protocol ("TLSv1.2", "TLSv1.3") after the handshake. */
const char *tg_tls_conn_protocol(const tg_tls_conn_t *c);

/* Negotiated cipher (OpenSSL name, e.g. "TLS_AES_128_GCM_SHA256"). */
const char *tg_tls_conn_cipher(const tg_tls_conn_t *c);

/* Negotiated ALPN protocol ("http/1.1"), empty slice when none. */
tg_str_t tg_tls_conn_alpn(const tg_tls_conn_t *c);

/* True when the handshake resumed a session (ticket / TLS 1.3 PSK). */
bool tg_tls_conn_resumed(const tg_tls_conn_t *c);

/* True when the client presented a certificate. */
bool tg_tls_conn_has_client_cert(const tg_tls_conn_t *c);

/* X509_V_OK (0) or the X509_V_ERR_* code of the client certificate check;
 * also meaningful for resumed sessions. */
long tg_tls_conn_client_verify_result(const tg_tls_conn_t *c);

/* Appends the client's certificate as PEM (URL-encoded like nginx's
 * $ssl_client_escaped_cert when `escaped`). Returns 0, -ENOENT (no certificate)
 * or -ENOMEM. */
int tg_tls_conn_client_cert_pem(const tg_tls_conn_t *c, bool escaped, tg_sbuf_t *out);

/*
 * The decision ingress-nginx makes after routing, for a request that arrived
 * on c (NULL for plain HTTP: always 0) and was routed to a route whose
 * Ingress has client-auth policy `auth` (NULL or verify off: always 0).
 * Returns:
 *   0    proceed; when auth is set, `headers` (if not NULL) gets the header
 *        lines to add to the upstream request, each "name: value\r\n":
 *        ssl-client-verify (SUCCESS / FAILED:<reason> / NONE),
 *        ssl-client-subject-dn, ssl-client-issuer-dn (when a certificate was
 *        sent), ssl-client-cert (URL-encoded PEM, with pass_cert). The proxy
 *        must remove any client-sent header of these names.
 *   400  *reason = "No required SSL certificate was sent" (verify on, none
 *        sent) or "The SSL certificate error" (verification failed);
 *   421  *reason = "Misdirected Request": the certificate was requested (or
 *        not) under another policy than this route's, because the client's SNI
 *        named another host than its Host header, or the policy changed since
 *        the handshake. nginx answers 421 in the same case; clients retry on a
 *        new connection, whose SNI then selects the right policy.
 * The certificate is requested during the handshake by SNI (like
 * ingress-nginx's server blocks); the 400 is decided here, per request, so the
 * handshake never fails because of a client certificate.
 */
int tg_tls_conn_check_client_auth(const tg_tls_conn_t *c, const tg_tls_client_auth_t *auth,
				  const char **reason, tg_sbuf_t *headers);

/* Source name ("ns/secret") of a client-auth policy, for logs. */
const char *tg_tls_client_auth_source(const tg_tls_client_auth_t *auth);

#endif

/*
 * tls_io.h - what a client connection needs beyond plain HTTP: the HTTPS
 * listeners, the PROXY protocol header, the TLS handshake and TLS I/O, the
 * per-request TLS decisions (ssl-redirect, client certificates) and the
 * forwarded-header trust rules (use-forwarded-headers, proxy-real-ip-cidr).
 *
 * Connection start (tg_client_accept_from -> tg_cio_accepted):
 *   use-proxy-protocol   CP_PREFACE: the header must arrive within
 *                        client-header-timeout; a malformed or oversized one
 *                        closes the connection. Its source address becomes
 *                        the client address (logs, X-Real-IP,
 *                        X-Forwarded-For). Bytes after it go to TLS or HTTP.
 *   HTTPS listener       CP_HANDSHAKE: the handshake runs step by step on the
 *                        worker's loop and must end within
 *                        client-header-timeout of the accept (as nginx, which
 *                        has no separate handshake timeout for HTTP). A client
 *                        speaking plain HTTP gets nginx's 400 "The plain HTTP
 *                        request was sent to HTTPS port" in clear text.
 *   then                 CP_IDLE, as a plain connection.
 *
 * I/O: tg_cio_read/writev/send keep the read(2)/writev(2)/send(2) conventions
 * (-1 with errno) so the state machine in client.c treats both kinds alike. A
 * TLS read is continued until the buffer is full or the socket says EAGAIN:
 * a short read then means "drained", which edge-triggered epoll needs
 * (decrypted bytes can wait inside OpenSSL with nothing left in the socket).
 *
 * Forwarded headers (per request, tg_cio_forwarded). The client address is
 * the TCP peer, or the PROXY header's source. When use-forwarded-headers is
 * true AND that address is inside proxy-real-ip-cidr [0.0.0.0/0]:
 *   - without use-proxy-protocol, X-Forwarded-For names the client: its
 *     entries are read right to left, skipping those inside
 *     proxy-real-ip-cidr; the first one outside is the client (all inside:
 *     the leftmost). nginx's real_ip_recursive, as ingress-nginx configures
 *     it. It is used in the access log and X-Real-IP; X-Forwarded-For is
 *     passed on with the peer appended;
 *   - X-Forwarded-Proto, -Host and -Port are passed on as sent, and
 *     X-Forwarded-Proto: https counts as HTTPS for ssl-redirect.
 * Otherwise X-Forwarded-Proto/-Host/-Port are replaced by ours and
 * X-Forwarded-For is extended with the client address. (ingress-nginx trusts
 * -Proto/-Host/-Port from any peer once use-forwarded-headers is on;
 * tidegate also requires proxy-real-ip-cidr, which by default contains every
 * IPv4 peer, so the default behaviour is the same for IPv4.)
 * Client-sent ssl-client-* fields never reach a backend.
 */
#ifndef TG_PROXY_TLS_IO_H
#define TG_PROXY_TLS_IO_H

#include "proxy/worker.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Opens one HTTPS listener per worker (SO_REUSEPORT group on addr; port 0:
 * the kernel picks one for all). *port receives the port. Returns 0 or
 * -errno (logged with the address). */
int tg_cio_listen(tg_worker_t *workers, int n, const char *addr, int *port);

/* Prepares a just accepted connection c from listener lfd (peer address ss):
 * PROXY protocol and TLS phases. Returns 0, or -1 when c must be closed (no
 * certificate store yet, out of memory). */
int tg_cio_accepted(tg_cconn_t *c, int lfd, const struct sockaddr_storage *ss);

/* Runs the CP_PREFACE / CP_HANDSHAKE phase. Returns 0 (blocked) or 1
 * (phase changed: step again), like client.c's steps. */
int tg_cio_step(tg_cconn_t *c);

/* An epoll event for c: flushes TLS bytes waiting for EPOLLOUT. */
void tg_cio_event(tg_cconn_t *c, uint32_t ev);

/* Ends our sending direction: TLS close_notify first, then SHUT_WR. Returns
 * false when ciphertext still waits for EPOLLOUT (c->tls_shut is set: call
 * again when writable). */
bool tg_cio_shutdown_wr(tg_cconn_t *c);

/* True when TLS bytes accepted for c still wait for the socket. */
bool tg_cio_output_pending(const tg_cconn_t *c);

/* Releases c's TLS state (close_notify, best effort) and scratch. Before
 * close(fd). */
void tg_cio_close(tg_cconn_t *c);

/* Per request, before routing: decides whether its X-Forwarded-* are trusted
 * and which client address it has (see the top of this file). */
void tg_cio_forwarded(tg_cconn_t *c);

/* Per request, after routing to rt: 0 to proceed, or the status to answer
 * (308 to https, 400/421 for client certificates with c->x->local_detail set,
 * 503 for a client-auth policy whose Secret is missing or bad). Fills
 * c->tlsh with the ssl-client-* lines to add upstream. */
int tg_cio_route_check(tg_cconn_t *c, const tg_route_t *rt);

/* The client address of the current request (logs, X-Real-IP). */
static inline tg_str_t tg_cio_client_ip(const tg_cconn_t *c)
{
	const tg_exch_t *x = c->x;
	return x && x->xiplen ? (tg_str_t){x->xip, x->xiplen} : (tg_str_t){c->ip, c->iplen};
}

/* The TLS halves of the wrappers below (same conventions). */
ssize_t tg_cio_tls_read(tg_tls_conn_t *t, void *buf, size_t len);
/* Writes through TLS; -1 with errno like writev(2). */
ssize_t tg_cio_tls_writev(tg_tls_conn_t *t, const struct iovec *iov, int n);
/* Queues close_notify and flushes; true when nothing is left to send. */
bool tg_cio_tls_shut(tg_tls_conn_t *t);

/* read(2) on a socket, through TLS when t is not NULL. recv(2), not read(2):
 * the same result without the file layer's work (position lock, permission
 * hooks), which is measurable at two reads per request. */
static inline ssize_t tg_cio_read(tg_tls_conn_t *t, int fd, void *buf, size_t len)
{
	return TG_LIKELY(!t) ? recv(fd, buf, len, 0) : tg_cio_tls_read(t, buf, len);
}

/* writev(2) on a socket without SIGPIPE, through TLS when t is not NULL
 * (sendmsg(2): see tg_cio_read). */
static inline ssize_t tg_cio_writev(tg_tls_conn_t *t, int fd, const struct iovec *iov, int n)
{
	if (TG_LIKELY(!t)) {
		struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
		return sendmsg(fd, &m, MSG_NOSIGNAL);
	}
	return tg_cio_tls_writev(t, iov, n);
}

/* send(2) without SIGPIPE, through TLS when t is not NULL. */
static inline ssize_t tg_cio_send(tg_tls_conn_t *t, int fd, const void *p, size_t len)
{
	if (TG_LIKELY(!t))
		return send(fd, p, len, MSG_NOSIGNAL);
	struct iovec v = {(void *)p, len};
	return tg_cio_tls_writev(t, &v, 1);
}

/* shutdown(fd, SHUT_WR), after close_notify when t is not NULL (best effort:
 * when the close_notify cannot be flushed yet, SHUT_WR is left out and the
 * final close ends the connection). */
static inline void tg_cio_shut(tg_tls_conn_t *t, int fd)
{
	if (!t || tg_cio_tls_shut(t))
		shutdown(fd, SHUT_WR);
}

#endif

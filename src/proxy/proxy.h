/*
 * proxy.h - the L7 data path as a whole: N worker threads, each with its own
 * epoll loop and SO_REUSEPORT listener, the access-log thread, and what the
 * admin endpoints read (health, metrics). Used by `tidegate ingress`.
 *
 * Lifecycle: tg_proxy_start -> tg_proxy_drain -> tg_proxy_unlisten ->
 * tg_proxy_wait -> tg_proxy_free (tg_proxy_abort at any point stops at once).
 * The routing configuration comes from the published snapshot
 * (ingress/snapshot.h); workers pick up a new one on their next loop iteration.
 */
#ifndef TG_PROXY_PROXY_H
#define TG_PROXY_PROXY_H

#include "core/sbuf.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct tg_proxy_config {
	const char *http_listen;    /* "0.0.0.0:80", "[::]:8080", "127.0.0.1:0" */
	int workers;		    /* worker threads (>= 1) */
	int access_log_fd;	    /* where access log lines go (stdout) */
	const int *inherit_fds;	    /* listening sockets handed over by the previous
				     * process (SIGUSR2), used instead of binding; the
				     * proxy owns them from tg_proxy_start on */
	int n_inherit;		    /* entries in inherit_fds */
	const int *inherit_tls_fds; /* the same for HTTPS listeners (used instead of
				     * binding https_listen) */
	int n_inherit_tls;	    /* entries in inherit_tls_fds */
	const char *https_listen;   /* "0.0.0.0:443"; NULL or "": no HTTPS listener */
} tg_proxy_config_t;

typedef struct tg_proxy tg_proxy_t;

/* Binds one listener per worker and starts the workers and the access-log
 * thread. Returns 0 or -errno (bind failure is logged with the address). */
int tg_proxy_start(const tg_proxy_config_t *cfg, tg_proxy_t **out);

/* The HTTP port actually bound. */
int tg_proxy_http_port(const tg_proxy_t *p);

/* The HTTPS port actually bound (0 without an HTTPS listener). */
int tg_proxy_https_port(const tg_proxy_t *p);

/* Starts the drain (first SIGTERM): every response from now on carries
 * Connection: close and its connection ends after it; idle keep-alive
 * connections are closed with a FIN once idle for TG_DRAIN_IDLE_MS (1 s);
 * connections still arriving are accepted (one request each).
 * Thread-safe, idempotent. */
void tg_proxy_drain(tg_proxy_t *p);

/* Closes the listeners (end of the grace period), implies tg_proxy_drain.
 * With handed_over false, the connections already queued on them are
 * accepted first; with true (the sockets now belong to an upgraded process
 * too) they are left to it. The workers then exit once they have no
 * connection left, or at worker-shutdown-timeout. Thread-safe, idempotent. */
void tg_proxy_unlisten(tg_proxy_t *p, bool handed_over);

/* Open client connections over all workers. */
uint64_t tg_proxy_connections(tg_proxy_t *p);

/* Connections the workers closed because worker-shutdown-timeout passed
 * (read after tg_proxy_wait returned true). */
uint64_t tg_proxy_forced(tg_proxy_t *p);

/* Writes the listening sockets (every worker's, for the SIGUSR2 handover) into
 * fds (at most max), and into tls[i] whether fds[i] is an HTTPS listener.
 * Returns how many. Call from the thread that calls tg_proxy_unlisten, before
 * it (the workers only change their listener lists when told to). */
int tg_proxy_listen_fds(const tg_proxy_t *p, int *fds, bool *tls, int max);

/* Stops the workers at once (connections are closed). Thread-safe. */
void tg_proxy_abort(tg_proxy_t *p);

/* Waits up to timeout_ms (-1: forever) for every worker to exit. Returns true
 * when they all have. */
bool tg_proxy_wait(tg_proxy_t *p, int timeout_ms);

/* Joins everything, flushes the access log and frees p. Accepts NULL. */
void tg_proxy_free(tg_proxy_t *p);

/* Appends the data-path metrics (tidegate_http_*, tidegate_upstream_*,
 * tidegate_client_connections, tidegate_access_log_dropped_total,
 * tidegate_draining). */
void tg_proxy_metrics(tg_proxy_t *p, tg_sbuf_t *out);

#endif

/*
 * proxy.h - the L7 data path as a whole: N worker threads, each with its own
 * epoll loop and SO_REUSEPORT listener, the access-log thread, and what the
 * admin endpoints read (health, metrics). Used by `tidegate ingress`.
 *
 * Lifecycle: tg_proxy_start -> (tg_proxy_drain) -> tg_proxy_wait -> tg_proxy_free.
 * The routing configuration comes from the published snapshot
 * (ingress/snapshot.h); workers pick up a new one on their next loop iteration.
 */
#ifndef TG_PROXY_PROXY_H
#define TG_PROXY_PROXY_H

#include "core/sbuf.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct tg_proxy_config {
	const char *http_listen; /* "0.0.0.0:80", "[::]:8080", "127.0.0.1:0" */
	int workers;		 /* worker threads (>= 1) */
	int access_log_fd;	 /* where access log lines go (stdout) */
} tg_proxy_config_t;

typedef struct tg_proxy tg_proxy_t;

/* Binds one listener per worker and starts the workers and the access-log
 * thread. Returns 0 or -errno (bind failure is logged with the address). */
int tg_proxy_start(const tg_proxy_config_t *cfg, tg_proxy_t **out);

/* The HTTP port actually bound. */
int tg_proxy_http_port(const tg_proxy_t *p);

/* Starts the drain: every worker closes its listener, closes idle keep-alive
 * connections, answers the next response of every other connection with
 * Connection: close, and exits when it has no connection left or when the
 * snapshot's worker-shutdown-timeout has passed. Thread-safe, idempotent. */
void tg_proxy_drain(tg_proxy_t *p);

/* Stops the workers at once (connections are closed). Thread-safe. */
void tg_proxy_abort(tg_proxy_t *p);

/* Waits up to timeout_ms (-1: forever) for every worker to exit. Returns true
 * when they all have. */
bool tg_proxy_wait(tg_proxy_t *p, int timeout_ms);

/* Joins everything, flushes the access log and frees p. Accepts NULL. */
void tg_proxy_free(tg_proxy_t *p);

/* Appends the data-path metrics (tidegate_http_*, tidegate_upstream_*,
 * tidegate_client_connections, tidegate_access_log_dropped_total). */
void tg_proxy_metrics(tg_proxy_t *p, tg_sbuf_t *out);

#endif

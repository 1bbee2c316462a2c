/*
 * admin.h - the admin HTTP listener shared by `tidegate ingress` and
 * `tidegate balancer`: GET /healthz and GET /metrics, served from a thread of
 * its own so that a slow scraper never touches a worker.
 */
#ifndef TG_CORE_ADMIN_H
#define TG_CORE_ADMIN_H

#include "core/sbuf.h"

#include <stdbool.h>

typedef struct tg_admin_ops {
	/* /healthz: 200 "ok" when it returns true, 503 with the reason it wrote
	 * into `why` (may be left empty) otherwise. */
	bool (*healthy)(void *ctx, tg_sbuf_t *why);
	/* /metrics: appends the whole exposition (text format 0.0.4). */
	void (*metrics)(void *ctx, tg_sbuf_t *out);
	void *ctx;
} tg_admin_ops_t;

typedef struct tg_admin tg_admin_t;

/* Binds `listen` ("0.0.0.0:10254", "[::]:10254", "127.0.0.1:0") and starts the
 * thread. *out receives the handle. Returns 0 or -errno. */
int tg_admin_start(const char *listen, const tg_admin_ops_t *ops, tg_admin_t **out);

/* Serves on fd, a listening socket handed over by a previous process (the
 * SIGUSR2 upgrade of `tidegate ingress`); a owns fd from now on, also on
 * failure. Returns 0 or -errno. */
int tg_admin_adopt(int fd, const tg_admin_ops_t *ops, tg_admin_t **out);

/* The listening socket, to hand over to a new process (a keeps owning it). */
int tg_admin_listen_fd(const tg_admin_t *a);

/* The port actually bound (useful with port 0). */
int tg_admin_port(const tg_admin_t *a);

/* Stops the thread, closes the socket, frees a. Accepts NULL. */
void tg_admin_stop(tg_admin_t *a);

#endif

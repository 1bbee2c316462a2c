/*
 * health.h - active health checks of reals: HTTP GET (expects 200) or a TCP
 * connect, per real, with interval, timeout and healthy/unhealthy thresholds
 * (AWS NLB semantics).
 *
 * One thread runs every check with non-blocking sockets and one epoll set;
 * the timers are the epoll_wait timeout computed from the nearest deadline.
 * The control plane hands it the full list of targets (tg_health_set_targets)
 * whenever the configuration changes and collects state transitions after the
 * eventfd from tg_health_fd() becomes readable.
 */
#ifndef TG_L4_HEALTH_H
#define TG_L4_HEALTH_H

#include "l4/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One thing to check. The key is the caller's identity for it: a target with
 * the same key in a later tg_health_set_targets keeps its state (healthy,
 * consecutive counts) even when its parameters change. */
typedef struct tg_health_target {
	uint64_t key;		/* caller's identity (vip id << 32 | real id) */
	tg_l4_ip_t ip;		/* address to connect to */
	tg_l4_health_cfg_t cfg; /* protocol, port, path, interval, timeout, thresholds */
	bool initially_healthy; /* state before the first transition */
} tg_health_target_t;

/* Checker statistics, for metrics and tests. */
typedef struct tg_health_stats {
	uint64_t checks;   /* checks completed (pass or fail) */
	uint64_t passes;   /* of which passed */
	uint64_t timeouts; /* of which failed by timeout */
	uint64_t targets;  /* targets currently checked */
} tg_health_stats_t;

typedef struct tg_health tg_health_t;

/* Called by tg_health_collect for each target whose state changed since the
 * last collect (only the latest state is reported). */
typedef void (*tg_health_fn)(void *ctx, uint64_t key, bool healthy);

/* Starts the checker thread with no targets. Returns 0 or -errno. */
int tg_health_start(tg_health_t **out);

/* Replaces the set of targets (copied). Targets whose key is new start with
 * `initially_healthy` and are first checked within min(interval, 1s), spread
 * so that many reals are not all checked in the same millisecond; targets no
 * longer listed are dropped along with any check in flight. Returns 0 or
 * -ENOMEM. */
int tg_health_set_targets(tg_health_t *h, const tg_health_target_t *t, size_t n);

/* An eventfd that becomes readable when transitions are waiting. The caller
 * only polls it; tg_health_collect resets it. */
int tg_health_fd(const tg_health_t *h);

/* Reports pending transitions through fn (on the caller's thread) and returns
 * how many were reported. */
size_t tg_health_collect(tg_health_t *h, tg_health_fn fn, void *ctx);

/* Current statistics. */
void tg_health_get_stats(tg_health_t *h, tg_health_stats_t *out);

/* Stops the thread, closes every socket, frees h. Accepts NULL. */
void tg_health_stop(tg_health_t *h);

#endif

/*
 * ratelimit.h - ingress-nginx's limit-rps / limit-rpm / limit-connections:
 * nginx's limit_req (leaky bucket, burst, nodelay) and limit_conn, keyed by
 * the client address, with state shared by every worker thread.
 *
 * One process-wide table (tg_rl_global) holds an entry per (zone, client
 * address). A zone is one Ingress (namespace/name); its entry keeps the rps
 * bucket, the rpm bucket and the count of requests in progress together, so
 * that one lock covers a request's whole decision. The table is sharded (a
 * mutex per shard, the shard chosen by a seeded hash of the key) and capped:
 * at most max_entries entries in all (TG_RL_MAX_ENTRIES for the global
 * table), allocated per shard on first use. When a shard is full the least
 * recently used entry with no request in progress is reused (as nginx
 * forcibly expires the oldest node when its zone is full); when none can be
 * reused the request is rejected (nginx: "could not allocate node").
 *
 * Zones are never freed: a snapshot rebuild looks its Ingress's zone up again
 * by name and finds the same buckets. Each bucket remembers the rate and
 * burst it was filled with; a request under other values starts that bucket
 * afresh (a changed limit resets that Ingress's buckets, nothing else does).
 * The count of requests in progress is never reset.
 *
 * Bucket math (nginx ngx_http_limit_req_module, milli-requests): on each
 * request excess = max(0, prev - rate_milli * elapsed_ms / 1000) + 1000;
 * excess > burst * 1000 rejects (the entry is left as it was), else the
 * request passes and excess is stored. A new entry starts at 0, so burst + 1
 * requests pass at once. rate_milli is rps * 1000, or rpm * 1000 / 60
 * (integer, as nginx). With both rps and rpm, both must pass; a rejected
 * request changes neither bucket.
 */
#ifndef TG_PROXY_RATELIMIT_H
#define TG_PROXY_RATELIMIT_H

#include "core/sbuf.h"

#include <stdint.h>

#define TG_RL_MAX_ENTRIES 65536 /* entries of the global table (about 6 MB) */

typedef enum tg_rl_kind {
	TG_RL_RPS = 0,	/* limit-rps */
	TG_RL_RPM = 1,	/* limit-rpm */
	TG_RL_CONN = 2, /* limit-connections */
	TG_RL_KINDS = 3,
} tg_rl_kind_t;

typedef struct tg_rl_table tg_rl_table_t;
typedef struct tg_rl_zone tg_rl_zone_t;	 /* one Ingress; lives as long as the table */
typedef struct tg_rl_entry tg_rl_slot_t; /* a held limit-connections slot */

/* The limits of one Ingress, built into its route extra (snapshot.h). */
typedef struct tg_rl_policy {
	tg_rl_zone_t *zone; /* the Ingress's zone */
	uint32_t rps;	    /* limit-rps, 0: none */
	uint32_t rpm;	    /* limit-rpm, 0: none */
	uint32_t burst_rps; /* rps * limit-burst-multiplier */
	uint32_t burst_rpm; /* rpm * limit-burst-multiplier */
	uint32_t conns;	    /* limit-connections, 0: none */
} tg_rl_policy_t;

/* A table of at most max_entries entries (at least one per shard). NULL
 * when out of memory. */
tg_rl_table_t *tg_rl_table_new(uint32_t max_entries);

/* Frees t and its zones. No request may hold a slot of it any more. */
void tg_rl_table_free(tg_rl_table_t *t);

/* The process-wide table, created on first call (TG_RL_MAX_ENTRIES).
 * Thread-safe. NULL when out of memory. */
tg_rl_table_t *tg_rl_global(void);

/* The zone of Ingress ns/name (created on first use, the same one after).
 * Thread-safe; called by snapshot builders. NULL when out of memory. */
tg_rl_zone_t *tg_rl_zone_get(tg_rl_table_t *t, const char *ns, const char *name);

/* Decides one request from the client address (family AF_INET with 4
 * bytes, or AF_INET6 with 16) at time now_ms (monotonic). Returns -1 when it
 * may proceed, else the tg_rl_kind_t that rejects it (counted in the zone's
 * metrics). When it proceeds under a limit-connections, *slot is the held
 * slot, to give back with tg_rl_release exactly once; else NULL. */
int tg_rl_request(tg_rl_table_t *t, const tg_rl_policy_t *p, int family, const uint8_t *addr,
		  uint64_t now_ms, tg_rl_slot_t **slot);

/* Gives back a slot taken by tg_rl_request. Accepts NULL. */
void tg_rl_release(tg_rl_table_t *t, tg_rl_slot_t *slot);

/* Requests of ns/name in progress from the address (tests). */
uint32_t tg_rl_conns(tg_rl_table_t *t, const tg_rl_zone_t *z, int family, const uint8_t *addr);

/* Entries in use (gauge). */
uint64_t tg_rl_entries(tg_rl_table_t *t);

/* Rejections counted for zone z and kind k. */
uint64_t tg_rl_rejected(const tg_rl_zone_t *z, tg_rl_kind_t k);

/* Appends the Prometheus text of the global table (nothing when it was
 * never created): tidegate_limit_rejected_total{namespace,ingress,limit},
 * tidegate_limit_entries and tidegate_limit_connections_active. */
void tg_rl_render(tg_sbuf_t *out);

#endif

/*
 * metrics.h - per-worker data-path counters and their Prometheus rendering.
 *
 * Each worker owns one tg_wstats_t and is its only writer (relaxed atomic
 * stores); the admin thread sums all workers when /metrics is scraped.
 * Per-request label sets ({ingress,namespace,service,status}) live in a fixed
 * open-addressing table per worker; a slot's strings are copied once when it
 * is first used (cold path) and never change afterwards.
 */
#ifndef TG_PROXY_METRICS_H
#define TG_PROXY_METRICS_H

#include "core/sbuf.h"

#include <stdatomic.h>
#include <stdint.h>

#define TG_HIST_BUCKETS	 11   /* upper bounds below, +Inf extra */
#define TG_REQSTAT_SLOTS 1024 /* label sets per worker; more fold into the last slot */

typedef struct tg_reqstat {
	_Atomic uint32_t used; /* 1 once the labels below are published */
	uint32_t hash;	       /* of the labels */
	int status;	       /* HTTP status label */
	char *ns;	       /* Ingress namespace ("" when no Ingress matched) */
	char *ingress;	       /* Ingress name */
	char *service;	       /* Service name */
	uint64_t count;	       /* requests */
} tg_reqstat_t;

typedef struct tg_wstats {
	uint64_t client_conns;			      /* open client connections (gauge) */
	uint64_t accepted;			      /* client connections accepted */
	uint64_t up_active;			      /* upstream connections in use (gauge) */
	uint64_t up_idle;			      /* pooled idle upstream connections (gauge) */
	uint64_t up_opened;			      /* upstream connections opened */
	uint64_t up_reused;			      /* requests sent on a pooled connection */
	uint64_t connect_errors;		      /* failed or timed-out upstream connects */
	uint64_t retries;			      /* requests re-sent on another connection */
	uint64_t log_dropped;			      /* access log lines dropped (ring full) */
	uint64_t hist[TG_HIST_BUCKETS + 1];	      /* request durations, non-cumulative */
	uint64_t dur_sum_us;			      /* sum of durations in microseconds */
	uint64_t dur_count;			      /* observations */
	tg_reqstat_t *reqs;			      /* TG_REQSTAT_SLOTS entries */
	uint64_t cache_gen;			      /* last lookup: snapshot generation */
	const char *cache_ns, *cache_ing, *cache_svc; /* last lookup: label pointers */
	int cache_status;			      /* last lookup: status */
	tg_reqstat_t *cache;			      /* last lookup: result */
} tg_wstats_t;

/* Allocates the label table. Returns 0 or -ENOMEM. */
int tg_wstats_init(tg_wstats_t *st);

/* Frees the label table and its strings. */
void tg_wstats_destroy(tg_wstats_t *st);

/* Counts one request. ns/ing/svc may be NULL (no Ingress matched); `gen` is the
 * snapshot generation they point into (pointer-equality cache key). */
void tg_wstats_request(tg_wstats_t *st, uint64_t gen, const char *ns, const char *ing,
		       const char *svc, int status, uint64_t dur_ns);

/* Renders the sum of n workers' counters. */
void tg_wstats_render(tg_wstats_t *const *all, int n, tg_sbuf_t *out);

#endif

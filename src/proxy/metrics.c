#include "proxy/metrics.h"
#include "proxy/ratelimit.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define STAT_ADD(x, v) __atomic_store_n(&(x), (x) + (v), __ATOMIC_RELAXED)
#define STAT_GET(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* Upper bounds in microseconds; the same as Prometheus client defaults. */
static const uint64_t bucket_us[TG_HIST_BUCKETS] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
static const char *const bucket_text[TG_HIST_BUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"};

int tg_wstats_init(tg_wstats_t *st)
{
	memset(st, 0, sizeof(*st));
	st->reqs = calloc(TG_REQSTAT_SLOTS, sizeof(*st->reqs));
	return st->reqs ? 0 : -ENOMEM;
}

void tg_wstats_destroy(tg_wstats_t *st)
{
	if (!st->reqs)
		return;
	for (int i = 0; i < TG_REQSTAT_SLOTS; i++) {
		free(st->reqs[i].ns);
		free(st->reqs[i].ingress);
		free(st->reqs[i].service);
	}
	free(st->reqs);
	st->reqs = NULL;
}

static uint32_t hash_str(uint32_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return (h ^ 0xff) * 16777619u; /* separator, so ("ab","c") != ("a","bc") */
}

static tg_reqstat_t *lookup(tg_wstats_t *st, const char *ns, const char *ing, const char *svc,
			    int status)
{
	uint32_t h = hash_str(hash_str(hash_str(2166136261u, ns), ing), svc) ^ (uint32_t)status;
	uint32_t mask = TG_REQSTAT_SLOTS - 1;
	for (uint32_t i = 0; i < TG_REQSTAT_SLOTS - 1; i++) {
		tg_reqstat_t *r = &st->reqs[(h + i) & mask];
		if (r == &st->reqs[mask])
			continue; /* the last slot is the overflow bucket */
		if (!atomic_load_explicit(&r->used, memory_order_relaxed)) {
			r->ns = strdup(ns);
			r->ingress = strdup(ing);
			r->service = strdup(svc);
			if (!r->ns || !r->ingress || !r->service) {
				free(r->ns), free(r->ingress), free(r->service);
				r->ns = r->ingress = r->service = NULL;
				break;
			}
			r->hash = h;
			r->status = status;
			atomic_store_explicit(&r->used, 1, memory_order_release);
			return r;
		}
		if (r->hash == h && r->status == status && strcmp(r->ns, ns) == 0 &&
		    strcmp(r->ingress, ing) == 0 && strcmp(r->service, svc) == 0)
			return r;
	}
	/* Table full (or out of memory): count under an explicit overflow label set. */
	tg_reqstat_t *r = &st->reqs[mask];
	if (!atomic_load_explicit(&r->used, memory_order_relaxed)) {
		r->ns = strdup("_overflow");
		r->ingress = strdup("_overflow");
		r->service = strdup("_overflow");
		if (!r->ns || !r->ingress || !r->service)
			return NULL;
		r->status = 0;
		atomic_store_explicit(&r->used, 1, memory_order_release);
	}
	return r;
}

void tg_wstats_request(tg_wstats_t *st, uint64_t gen, const char *ns, const char *ing,
		       const char *svc, int status, uint64_t dur_ns)
{
	if (!ns)
		ns = "";
	if (!ing)
		ing = "";
	if (!svc)
		svc = "";
	tg_reqstat_t *r;
	if (st->cache && st->cache_gen == gen && st->cache_ns == ns && st->cache_ing == ing &&
	    st->cache_svc == svc && st->cache_status == status) {
		r = st->cache;
	} else {
		r = lookup(st, ns, ing, svc, status);
		st->cache = r;
		st->cache_gen = gen;
		st->cache_ns = ns;
		st->cache_ing = ing;
		st->cache_svc = svc;
		st->cache_status = status;
	}
	if (r)
		STAT_ADD(r->count, 1);
	uint64_t us = dur_ns / 1000;
	int b = 0;
	while (b < TG_HIST_BUCKETS && us > bucket_us[b])
		b++;
	STAT_ADD(st->hist[b], 1);
	STAT_ADD(st->dur_sum_us, us);
	STAT_ADD(st->dur_count, 1);
}

typedef struct merged {
	const tg_reqstat_t *key; /* first worker's slot with these labels */
	uint64_t count;		 /* summed */
} merged_t;

static bool same_labels(const tg_reqstat_t *a, const tg_reqstat_t *b)
{
	return a->hash == b->hash && a->status == b->status && strcmp(a->ns, b->ns) == 0 &&
	       strcmp(a->ingress, b->ingress) == 0 && strcmp(a->service, b->service) == 0;
}

static uint64_t sum(tg_wstats_t *const *all, int n, size_t off)
{
	uint64_t t = 0;
	for (int i = 0; i < n; i++)
		t += __atomic_load_n((const uint64_t *)((const char *)all[i] + off),
				     __ATOMIC_RELAXED);
	return t;
}

#define SUM(field) sum(all, n, offsetof(tg_wstats_t, field))

void tg_wstats_render(tg_wstats_t *const *all, int n, tg_sbuf_t *out)
{
	merged_t *m = calloc((size_t)n * TG_REQSTAT_SLOTS, sizeof(*m));
	size_t nm = 0;
	if (m) {
		for (int w = 0; w < n; w++) {
			for (int i = 0; i < TG_REQSTAT_SLOTS; i++) {
				const tg_reqstat_t *r = &all[w]->reqs[i];
				if (!atomic_load_explicit(&r->used, memory_order_acquire))
					continue;
				uint64_t c = STAT_GET(r->count);
				size_t j = 0;
				while (j < nm && !same_labels(m[j].key, r))
					j++;
				if (j == nm)
					m[nm++] = (merged_t){r, 0};
				m[j].count += c;
			}
		}
	}
	tg_sbuf_printf(out, "# HELP tidegate_http_requests_total HTTP requests answered, by "
			    "Ingress, Service and response status.\n"
			    "# TYPE tidegate_http_requests_total counter\n");
	for (size_t j = 0; j < nm; j++) {
		const tg_reqstat_t *r = m[j].key;
		tg_sbuf_printf(out, "tidegate_http_requests_total{ingress=\"");
		tg_sbuf_label_escape(out, r->ingress);
		tg_sbuf_printf(out, "\",namespace=\"");
		tg_sbuf_label_escape(out, r->ns);
		tg_sbuf_printf(out, "\",service=\"");
		tg_sbuf_label_escape(out, r->service);
		tg_sbuf_printf(out, "\",status=\"%d\"} %llu\n", r->status,
			       (unsigned long long)m[j].count);
	}
	free(m);

	tg_sbuf_printf(out, "# HELP tidegate_http_request_duration_seconds Time from a complete "
			    "request head to the end of its response.\n"
			    "# TYPE tidegate_http_request_duration_seconds histogram\n");
	uint64_t cum = 0;
	for (int b = 0; b <= TG_HIST_BUCKETS; b++) {
		cum += sum(all, n, offsetof(tg_wstats_t, hist) + (size_t)b * sizeof(uint64_t));
		tg_sbuf_printf(
		    out, "tidegate_http_request_duration_seconds_bucket{le=\"%s\"} %llu\n",
		    b < TG_HIST_BUCKETS ? bucket_text[b] : "+Inf", (unsigned long long)cum);
	}
	uint64_t sus = SUM(dur_sum_us);
	tg_sbuf_printf(out, "tidegate_http_request_duration_seconds_sum %llu.%06llu\n",
		       (unsigned long long)(sus / 1000000), (unsigned long long)(sus % 1000000));
	tg_sbuf_printf(out, "tidegate_http_request_duration_seconds_count %llu\n",
		       (unsigned long long)SUM(dur_count));

	struct {
		const char *name, *type, *help;
		uint64_t v;
	} simple[] = {
	    {"tidegate_client_connections", "gauge", "Open client connections.", SUM(client_conns)},
	    {"tidegate_client_connections_accepted_total", "counter",
	     "Client connections accepted.", SUM(accepted)},
	    {"tidegate_upstream_connect_errors_total", "counter",
	     "Upstream connection attempts that failed or timed out.", SUM(connect_errors)},
	    {"tidegate_upstream_retries_total", "counter",
	     "Requests sent again on another upstream connection.", SUM(retries)},
	    {"tidegate_upstream_connections_opened_total", "counter",
	     "Upstream connections opened.", SUM(up_opened)},
	    {"tidegate_upstream_requests_reused_total", "counter",
	     "Requests sent on a pooled keep-alive upstream connection.", SUM(up_reused)},
	    {"tidegate_access_log_dropped_total", "counter",
	     "Access log lines dropped because the log writer fell behind.", SUM(log_dropped)},
	};
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
		tg_sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", simple[i].name,
			       simple[i].help, simple[i].name, simple[i].type, simple[i].name,
			       (unsigned long long)simple[i].v);
	tg_sbuf_printf(out,
		       "# HELP tidegate_upstream_connections Upstream connections by state.\n"
		       "# TYPE tidegate_upstream_connections gauge\n"
		       "tidegate_upstream_connections{state=\"active\"} %llu\n"
		       "tidegate_upstream_connections{state=\"idle\"} %llu\n",
		       (unsigned long long)SUM(up_active), (unsigned long long)SUM(up_idle));
	tg_rl_render(out); /* rate / connection limits (process-wide, not per worker) */
}

/*
 * kube.c - list+watch client for the Kubernetes API (contract in kube.h).
 *
 * Everything below runs on the source thread except tg_kube_start (before
 * the thread exists, then waiting on a condition variable), tg_kube_stop,
 * tg_kube_resync (an atomic flag and curl_multi_wakeup) and tg_kube_metrics
 * (under mlock). libcurl callbacks run inside curl_multi_perform on the
 * source thread, so the store, translator and request state need no lock.
 *
 * Request lifecycle per kind (a "resource"): IDLE until retry_at, then a
 * LIST page or a WATCH in flight (res->req.easy != NULL). List pages collect
 * their body and are processed when complete; watch bodies are processed as
 * they arrive, event by event, inside the write callback. A watch that must
 * stop (ERROR event, malformed stream) makes the callback return 0, which
 * aborts the transfer with CURLE_WRITE_ERROR; the reason was recorded first.
 */
#include "ingress/kube.h"
#include "ingress/config_metrics.h"
#include "ingress/kube_status.h"
#include "ingress/kube_stream.h"
#include "ingress/object.h"
#include "ingress/once.h"
#include "ingress/snapshot.h"
#include "ingress/store.h"
#include "ingress/strmap.h"
#include "ingress/translate.h"
#include "core/clock.h"
#include "core/common.h"
#include "core/log.h"
#include "core/rand.h"

#include <curl/curl.h>
#include <errno.h>
#include <libfyaml.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "kube"

#define DEBOUNCE_MS	    50		 /* quiet time before a rebuild */
#define DEBOUNCE_MAX_MS	    1000	 /* longest a change waits under a steady event stream */
#define BACKOFF_BASE_MS	    250		 /* first retry delay (before jitter) */
#define BACKOFF_MAX_MS	    30000	 /* retry delay cap */
#define LIST_LIMIT	    500		 /* objects per list page */
#define WATCH_MIN_S	    300		 /* watch timeoutSeconds, randomized in [min, 2*min) */
#define TOKEN_RELOAD_MS	    60000	 /* projected tokens rotate; re-read this often */
#define STATUS_RETRY_MS	    10000	 /* retry a failed status write after this */
#define STATUS_MAX_INFLIGHT 8		 /* concurrent status writes */
#define SYNC_WAIT_MS	    5000	 /* tg_kube_start waits this long for a first snapshot */
#define MAX_LIST_BODY	    (256u << 20) /* one list page */
#define MAX_ERROR_BODY	    (64u << 10)	 /* an error response kept for its message */
#define CONNECT_TIMEOUT_MS  10000

#define container_of(p, T, m) ((T *)((char *)(p)-offsetof(T, m)))

/* ---- static description of the collections ------------------------------ */

typedef enum res_id {
	RES_INGRESSES,
	RES_INGRESSCLASSES,
	RES_SERVICES,
	RES_SECRETS,
	RES_CONFIGMAPS,
	RES_ENDPOINTSLICES,
	RES_COUNT,
} res_id_t;

typedef struct resdef {
	const char *name;	 /* resource name, metrics label */
	tg_kind_t kind;		 /* the object kind */
	const char *kind_name;	 /* "Ingress": set on list items, which come without it */
	const char *api_version; /* "networking.k8s.io/v1" */
	const char *prefix;	 /* "/apis/networking.k8s.io/v1" */
} resdef_t;

static const resdef_t resdefs[RES_COUNT] = {
    [RES_INGRESSES] = {"ingresses", TG_KIND_INGRESS, "Ingress", "networking.k8s.io/v1",
		       "/apis/networking.k8s.io/v1"},
    [RES_INGRESSCLASSES] = {"ingressclasses", TG_KIND_INGRESS_CLASS, "IngressClass",
			    "networking.k8s.io/v1", "/apis/networking.k8s.io/v1"},
    [RES_SERVICES] = {"services", TG_KIND_SERVICE, "Service", "v1", "/api/v1"},
    [RES_SECRETS] = {"secrets", TG_KIND_SECRET, "Secret", "v1", "/api/v1"},
    [RES_CONFIGMAPS] = {"configmaps", TG_KIND_CONFIGMAP, "ConfigMap", "v1", "/api/v1"},
    [RES_ENDPOINTSLICES] = {"endpointslices", TG_KIND_ENDPOINTSLICE, "EndpointSlice",
			    "discovery.k8s.io/v1", "/apis/discovery.k8s.io/v1"},
};

enum ev_type { EV_ADDED, EV_MODIFIED, EV_DELETED, EV_BOOKMARK, EV_ERROR, EV_COUNT };
static const char *const ev_names[EV_COUNT] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};

enum relist_reason { RL_GONE, RL_RESYNC, RL_COUNT };
static const char *const relist_names[RL_COUNT] = {"gone", "resync"};

/* ---- runtime state ------------------------------------------------------ */

typedef enum req_type { REQ_LIST, REQ_WATCH, REQ_STATUS } req_type_t;

/* What every request has; CURLOPT_PRIVATE points here. */
typedef struct req {
	req_type_t type;	      /* which container this is embedded in */
	CURL *easy;		      /* the transfer, NULL when none is in flight */
	struct curl_slist *headers;   /* request headers (hold the token) */
	long code;		      /* HTTP status, read at the first body byte */
	bool code_known;	      /* code was read */
	bool too_big;		      /* the body passed its limit: aborted */
	tg_sbuf_t body;		      /* list page, or an error/status response */
	char errbuf[CURL_ERROR_SIZE]; /* libcurl's reason for a failed transfer */
} req_t;

typedef struct resource {
	req_t req;		 /* the list page or watch in flight */
	const resdef_t *def;	 /* which collection */
	char path[512];		 /* collection path ("/api/v1/services") */
	char selector[320];	 /* "&fieldSelector=..." (escaped) or "" */
	char rv[256];		 /* resourceVersion to watch from */
	char *cont;		 /* continue token of the next list page, or NULL */
	bool need_list;		 /* the next request is a (re)list */
	bool paging;		 /* a relist is between its first and last page */
	bool synced;		 /* the first full list completed */
	bool gone;		 /* the watch reported 410: relist */
	bool failed_event;	 /* the watch delivered an ERROR (not 410) or bad JSON */
	bool got_events;	 /* this watch delivered at least one event */
	uint32_t failures;	 /* consecutive failures, for backoff */
	uint64_t retry_at;	 /* when idle: start the next request at this time (ms) */
	uint32_t list_items;	 /* objects in the relist so far */
	tg_kube_stream_t stream; /* watch body splitter */
	tg_strmap_t seen;	 /* store keys present in the running relist (key -> key) */
} resource_t;

/* What tidegate knows of one Ingress's status. */
typedef struct status_rec {
	char *current;	/* canonical status.loadBalancer.ingress the API last showed */
	bool inflight;	/* a write for it is under way */
	size_t key_len; /* bytes of key */
	char key[];	/* store key, the map key */
} status_rec_t;

/* One status write in flight. */
typedef struct status_req {
	req_t req;		 /* the PATCH */
	struct status_req *next; /* next write in flight */
	char *key;		 /* store key of the Ingress */
	char *what;		 /* "ns/name" for logs */
} status_req_t;

/* Counters for tg_kube_metrics (under mlock). */
typedef struct kmetrics {
	uint64_t lists[RES_COUNT];	       /* complete lists (every page) */
	uint64_t relists[RES_COUNT][RL_COUNT]; /* lists after the first, by reason */
	uint64_t watches[RES_COUNT];	       /* watch requests started */
	uint64_t failures[RES_COUNT];	       /* failed or dropped requests */
	uint64_t events[RES_COUNT][EV_COUNT];  /* watch events */
	double last_event[RES_COUNT];	       /* Unix time of the last event */
	bool synced[RES_COUNT];		       /* first list done */
	uint64_t status_ok;		       /* status writes accepted */
	uint64_t status_failed;		       /* status writes refused or failed */
	tg_config_metrics_t cm;		       /* the families every source reports */
} kmetrics_t;

static struct kube {
	_Atomic bool running;	       /* between start and stop (read by any thread) */
	tg_kube_auth_t auth;	       /* server and credentials */
	char *auth_header;	       /* "Authorization: Bearer ..." or NULL */
	char *base;		       /* URL prefix of requests: the server, or with
					* tls-server-name in place of its host */
	struct curl_slist *connect_to; /* tls-server-name: "name:port:host:port", else NULL */
	tg_kube_status_t status;       /* desired status, or empty without the flag */
	bool status_on;		       /* --publish-status-address given */
	tg_store_t *store;	       /* current objects */
	tg_translator_t *tr;	       /* store -> snapshot */
	CURLM *multi;		       /* drives every transfer */
	resource_t res[RES_COUNT];     /* one per collection */
	tg_strmap_t status_recs;       /* Ingress key -> status_rec_t */
	uint32_t status_inflight;      /* status writes under way */
	status_req_t *status_reqs;     /* the writes in flight, a list */
	bool status_due;	       /* a status pass is pending (retry or capacity) */
	uint64_t status_retry_at;      /* when status_due: not before this (ms) */
	bool dirty;		       /* the store changed since the last build */
	bool published;		       /* a snapshot was published */
	uint64_t dirty_first;	       /* when the pending change started (ms) */
	uint64_t dirty_last;	       /* when the latest change came (ms) */
	uint32_t rejected_since_build; /* objects rejected since the last build */
	uint64_t token_next;	       /* next token file re-read (ms) */
	tg_rand_t rnd;		       /* jitter */
	struct fy_parse_cfg json;      /* libfyaml settings for JSON bodies */
	pthread_t thread;	       /* the source thread */
	_Atomic bool stop;	       /* tg_kube_stop asked */
	_Atomic bool resync;	       /* tg_kube_resync asked */
	pthread_mutex_t mlock;	       /* guards m, and first_published with first_cond */
	pthread_cond_t first_cond;     /* signalled at the first publication */
	bool first_published;	       /* the first snapshot is out */
	kmetrics_t m;		       /* metrics */
} K = {.mlock = PTHREAD_MUTEX_INITIALIZER, .first_cond = PTHREAD_COND_INITIALIZER};

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- small helpers -------------------------------------------------------- */

static struct fy_node *mget(struct fy_node *m, const char *key)
{
	if (!m || fy_node_get_type(m) != FYNT_MAPPING)
		return NULL;
	return fy_node_mapping_lookup_by_string(m, key, strlen(key));
}

/* Scalar text at m[key] (not NUL-terminated), or NULL. */
static const char *sget(struct fy_node *m, const char *key, size_t *len)
{
	struct fy_node *v = mget(m, key);
	if (!v || fy_node_get_type(v) != FYNT_SCALAR)
		return NULL;
	return fy_node_get_scalar(v, len);
}

/* Copies m[key] into buf; false when absent or too long. */
static bool sget_buf(struct fy_node *m, const char *key, char *buf, size_t buflen)
{
	size_t n;
	const char *s = sget(m, key, &n);
	if (!s || n >= buflen)
		return false;
	memcpy(buf, s, n);
	buf[n] = 0;
	return true;
}

/* Parses a JSON text from the API server; NULL when it is not UTF-8 (see
 * tg_kube_utf8_valid) or not JSON. */
static struct fy_document *json_doc(const char *p, size_t len)
{
	if (!p || !tg_kube_utf8_valid(p, len, NULL))
		return NULL;
	return fy_document_build_from_string(&K.json, p, len);
}

/* The "message" of a Kubernetes Status body, for logs (bounded). */
static void status_message(const tg_sbuf_t *body, char *out, size_t outlen)
{
	out[0] = 0;
	if (!body->data || !body->len)
		return;
	struct fy_document *d = json_doc(body->data, body->len);
	size_t n;
	const char *s = d ? sget(fy_document_root(d), "message", &n) : NULL;
	if (s)
		snprintf(out, outlen, ": %.*s", (int)TG_MIN(n, 300), s);
	fy_document_destroy(d);
}

static uint64_t backoff_ms(uint32_t failures)
{
	uint32_t shift = failures ? failures - 1 : 0;
	uint64_t d = (uint64_t)BACKOFF_BASE_MS << TG_MIN(shift, 16u);
	if (d > BACKOFF_MAX_MS)
		d = BACKOFF_MAX_MS;
	/* Jitter over the upper half: many ingress replicas that lost the API
	 * server at the same moment do not come back in lockstep. */
	return d / 2 + tg_rand_next(&K.rnd) % (d / 2 + 1);
}

static void mark_dirty(void)
{
	uint64_t now = tg_clock_ms();
	if (!K.dirty)
		K.dirty_first = now;
	K.dirty = true;
	K.dirty_last = now;
}

/* ---- status records ------------------------------------------------------- */

static status_rec_t *rec_get(const char *key, size_t len, bool create)
{
	status_rec_t *r = tg_strmap_get(&K.status_recs, key, len);
	if (r || !create)
		return r;
	r = calloc(1, sizeof(*r) + len + 1);
	if (!r)
		return NULL;
	memcpy(r->key, key, len);
	r->key_len = len;
	if (tg_strmap_put(&K.status_recs, r->key, len, r, NULL)) {
		free(r);
		return NULL;
	}
	return r;
}

/* Records what the API says an Ingress's status is. */
static void rec_observe(const char *key, size_t len, struct fy_node *obj)
{
	if (!K.status_on)
		return;
	status_rec_t *r = rec_get(key, len, true);
	if (!r)
		return;
	tg_sbuf_t cur = {0};
	tg_sbuf_append(&cur, "", 0);
	tg_kube_status_current(obj, &cur);
	free(r->current);
	r->current = cur.oom ? NULL : cur.data;
	if (cur.oom)
		tg_sbuf_free(&cur);
}

static void rec_forget(const char *key, size_t len)
{
	status_rec_t *r = tg_strmap_get(&K.status_recs, key, len);
	if (!r || r->inflight) /* an in-flight write finds it gone or stale: harmless */
		return;
	tg_strmap_del(&K.status_recs, key, len);
	free(r->current);
	free(r);
}

/* ---- requests ----------------------------------------------------------------- */

static size_t on_data(char *p, size_t sz, size_t nm, void *ud);

/* Builds the shared part of a request. url is copied by libcurl. */
static CURL *easy_new(req_t *q, const char *url)
{
	CURL *e = curl_easy_init();
	if (!e)
		return NULL;
	q->code = 0;
	q->code_known = false;
	q->too_big = false;
	q->body.len = 0;
	if (q->body.data)
		q->body.data[0] = 0;
	q->body.oom = false;
	q->errbuf[0] = 0;
	q->headers = curl_slist_append(NULL, "Accept: application/json");
	if (q->headers && K.auth_header) {
		struct curl_slist *h = curl_slist_append(q->headers, K.auth_header);
		if (!h) {
			curl_slist_free_all(q->headers);
			q->headers = NULL;
		} else {
			q->headers = h;
		}
	}
	if (!q->headers) {
		curl_easy_cleanup(e);
		return NULL;
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, q);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "tidegate/ingress");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	/* A silent watch is normal; a dead peer is found by TCP keepalive. */
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
	if (K.auth.ca) {
		struct curl_blob ca = {K.auth.ca, K.auth.ca_len, CURL_BLOB_COPY};
		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &ca);
		/* Only the cluster's CA, as kubectl does: not the system store. */
		curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	}
	if (K.auth.cert) {
		struct curl_blob c = {K.auth.cert, K.auth.cert_len, CURL_BLOB_COPY};
		struct curl_blob k = {K.auth.key, K.auth.key_len, CURL_BLOB_COPY};
		curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
		curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &c);
		curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
		curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &k);
	}
	if (K.connect_to)
		curl_easy_setopt(e, CURLOPT_CONNECT_TO, K.connect_to);
	if (K.auth.insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	q->easy = e;
	return e;
}

static void req_end(req_t *q)
{
	if (q->easy) {
		curl_multi_remove_handle(K.multi, q->easy);
		curl_easy_cleanup(q->easy);
		q->easy = NULL;
	}
	curl_slist_free_all(q->headers);
	q->headers = NULL;
}

static bool req_add(req_t *q)
{
	if (curl_multi_add_handle(K.multi, q->easy) != CURLM_OK) {
		req_end(q);
		return false;
	}
	return true;
}

/* Appends "&name=<escaped value>" to buf. */
static bool query_add(CURL *e, tg_sbuf_t *url, const char *name, const char *value)
{
	char *v = curl_easy_escape(e, value, 0);
	if (!v)
		return false;
	tg_sbuf_printf(url, "&%s=%s", name, v);
	curl_free(v);
	return !url->oom;
}

/* ---- object handling ------------------------------------------------------------ */

/*
 * List items come without kind and apiVersion; watch objects carry them.
 * Both get them removed and re-appended in one order so the same object
 * hashes to the same digest whichever way it arrived (no rebuild after a
 * relist of unchanged objects).
 */
static void normalize(struct fy_document *d, struct fy_node *obj, const resdef_t *def)
{
	static const char *const keys[2] = {"kind", "apiVersion"};
	const char *vals[2] = {def->kind_name, def->api_version};
	for (int i = 0; i < 2; i++) {
		if (mget(obj, keys[i])) {
			/* remove_by_key frees the lookup key when it finds the
			 * pair, and leaves it to us when it does not. */
			struct fy_node *k = fy_node_create_scalar(d, keys[i], strlen(keys[i]));
			struct fy_node *v = k ? fy_node_mapping_remove_by_key(obj, k) : NULL;
			if (v)
				fy_node_free(v);
			else
				fy_node_free(k);
		}
	}
	for (int i = 0; i < 2; i++) {
		struct fy_node *k = fy_node_create_scalar(d, keys[i], strlen(keys[i]));
		struct fy_node *v = fy_node_create_scalar(d, vals[i], strlen(vals[i]));
		if (!k || !v || fy_node_mapping_append(obj, k, v)) {
			fy_node_free(k);
			fy_node_free(v);
		}
	}
}

static void seen_add(resource_t *r, const char *key, size_t len)
{
	if (tg_strmap_get(&r->seen, key, len))
		return;
	char *k = malloc(len + 1);
	if (!k)
		return;
	memcpy(k, key, len);
	k[len] = 0;
	if (tg_strmap_put(&r->seen, k, len, k, NULL))
		free(k);
}

static void seen_clear(resource_t *r)
{
	for (size_t i = 0; i < r->seen.cap; i++)
		if (r->seen.slots[i].key)
			free(r->seen.slots[i].value);
	tg_strmap_free(&r->seen);
}

static void note_rejected(void)
{
	K.rejected_since_build++;
	pthread_mutex_lock(&K.mlock);
	K.m.cm.errors_total++;
	pthread_mutex_unlock(&K.mlock);
}

/* ADDED, MODIFIED, or an item of a list. */
static void upsert(resource_t *r, struct fy_document *d, struct fy_node *node, bool listing)
{
	normalize(d, node, r->def);
	tg_object_t *obj;
	tg_object_error_t err;
	int rc = tg_object_parse(node, &obj, &err);
	if (rc == TG_OK) {
		if (listing)
			seen_add(r, obj->key, obj->key_len);
		if (obj->kind == TG_KIND_INGRESS)
			rec_observe(obj->key, obj->key_len, node);
		obj->owner = &K;
		int a = tg_store_apply(K.store, obj);
		if (a > 0)
			mark_dirty();
		else if (a < 0)
			tg_error(MOD, "%s: out of memory applying an object", r->def->name);
		return;
	}
	if (rc == TG_OBJECT_IGNORED) {
		if (tg_once_first("kube-kind", err.reason, strlen(err.reason)))
			tg_warn(MOD, "%s: unexpected kind %s ignored", r->def->name, err.reason);
		return;
	}
	note_rejected();
	if (!err.identified) {
		tg_warn(MOD, "%s: unusable object from the API: %s", r->def->name, err.reason);
		return;
	}
	char key[400];
	size_t kl = tg_object_key(err.kind, err.ns, err.name, key, sizeof(key));
	if (listing && kl)
		seen_add(r, key, kl);
	bool has_good = tg_store_get(K.store, err.kind, err.ns, err.name) != NULL;
	tg_warn(MOD, "%s %s%s%s rejected: %s; %s", tg_kind_name(err.kind), err.ns,
		*err.ns ? "/" : "", err.name, err.reason,
		has_good ? "its last good version stays in force" : "it is not used until fixed");
}

static void remove_obj(resource_t *r, struct fy_node *node)
{
	struct fy_node *meta = mget(node, "metadata");
	char ns[256] = "", name[256];
	if (!sget_buf(meta, "name", name, sizeof(name))) {
		tg_warn(MOD, "%s: DELETED event without metadata.name ignored", r->def->name);
		return;
	}
	if (r->def->kind != TG_KIND_INGRESS_CLASS && !sget_buf(meta, "namespace", ns, sizeof(ns)))
		snprintf(ns, sizeof(ns), "default");
	if (tg_store_delete(K.store, r->def->kind, ns, name))
		mark_dirty();
	if (r->def->kind == TG_KIND_INGRESS) {
		char key[600];
		size_t kl = tg_object_key(r->def->kind, ns, name, key, sizeof(key));
		if (kl)
			rec_forget(key, kl);
	}
}

/* End of a complete relist: objects of the kind that it did not return are
 * gone from the cluster. */
static void relist_done(resource_t *r)
{
	uint32_t n;
	tg_object_t *const *objs = tg_store_list(K.store, r->def->kind, &n);
	/* Collect first: the per-kind array changes with each delete. */
	typedef struct gone {
		char *ns;   /* namespace */
		char *name; /* name */
	} gone_t;
	gone_t *gone = n ? calloc(n, sizeof(*gone)) : NULL;
	size_t ng = 0;
	for (uint32_t i = 0; gone && i < n; i++) {
		if (tg_strmap_get(&r->seen, objs[i]->key, objs[i]->key_len))
			continue;
		gone[ng].ns = strdup(objs[i]->ns);
		gone[ng].name = strdup(objs[i]->name);
		ng++;
	}
	if (n && !gone)
		tg_error(MOD, "%s: out of memory removing objects no longer listed", r->def->name);
	for (size_t i = 0; i < ng; i++) {
		if (gone[i].ns && gone[i].name) {
			char key[600];
			size_t kl =
			    tg_object_key(r->def->kind, gone[i].ns, gone[i].name, key, sizeof(key));
			if (r->def->kind == TG_KIND_INGRESS && kl)
				rec_forget(key, kl);
			if (tg_store_delete(K.store, r->def->kind, gone[i].ns, gone[i].name))
				mark_dirty();
		}
		free(gone[i].ns);
		free(gone[i].name);
	}
	free(gone);
	if (ng)
		tg_info(MOD, "%s: %zu objects no longer listed were removed", r->def->name, ng);
	seen_clear(r);
}

/* ---- watch events ----------------------------------------------------------------- */

/* Handles one event; false stops the watch (r->gone or r->failed_event set). */
static bool handle_event(resource_t *r, const char *p, size_t len)
{
	struct fy_document *d = json_doc(p, len);
	struct fy_node *root = d ? fy_document_root(d) : NULL;
	size_t tl;
	const char *type = sget(root, "type", &tl);
	struct fy_node *obj = mget(root, "object");
	if (!type || !obj || fy_node_get_type(obj) != FYNT_MAPPING) {
		tg_warn(MOD, "%s: watch event is not {\"type\", \"object\"} JSON; reconnecting",
			r->def->name);
		fy_document_destroy(d);
		r->failed_event = true;
		return false;
	}
	int ev = -1;
	for (int i = 0; i < EV_COUNT; i++)
		if (tl == strlen(ev_names[i]) && memcmp(type, ev_names[i], tl) == 0)
			ev = i;
	bool go_on = true;
	char rv[sizeof(r->rv)];
	bool has_rv = sget_buf(mget(obj, "metadata"), "resourceVersion", rv, sizeof(rv));
	switch (ev) {
	case EV_ADDED:
	case EV_MODIFIED:
		upsert(r, d, obj, false);
		break;
	case EV_DELETED:
		remove_obj(r, obj);
		break;
	case EV_BOOKMARK:
		break;
	case EV_ERROR: {
		size_t cl = 0, ml = 0;
		const char *code = sget(obj, "code", &cl);
		const char *msg = sget(obj, "message", &ml);
		if (code && cl == 3 && memcmp(code, "410", 3) == 0) {
			tg_info(MOD, "%s: watch expired (410 Gone); relisting", r->def->name);
			r->gone = true;
		} else {
			tg_warn(MOD, "%s: watch ERROR event (code %.*s)%s%.*s; reconnecting",
				r->def->name, code ? (int)TG_MIN(cl, 8) : 1, code ? code : "?",
				msg ? ": " : "", msg ? (int)TG_MIN(ml, 300) : 0, msg ? msg : "");
			r->failed_event = true;
		}
		has_rv = false; /* a Status carries no usable resourceVersion */
		go_on = false;
		break;
	}
	default:
		if (tg_once_first("kube-event", type, tl))
			tg_warn(MOD, "%s: unknown watch event type %.*s ignored", r->def->name,
				(int)TG_MIN(tl, 40), type);
		ev = -1;
		break;
	}
	if (has_rv)
		memcpy(r->rv, rv, sizeof(rv));
	r->got_events = true;
	fy_document_destroy(d);
	if (ev >= 0) {
		pthread_mutex_lock(&K.mlock);
		K.m.events[r - K.res][ev]++;
		K.m.last_event[r - K.res] = wall_now();
		pthread_mutex_unlock(&K.mlock);
	}
	return go_on;
}

static bool watch_data(resource_t *r, const char *p, size_t n)
{
	if (tg_kube_stream_feed(&r->stream, p, n)) {
		tg_error(MOD, "%s: out of memory reading the watch", r->def->name);
		r->failed_event = true;
		return false;
	}
	for (;;) {
		const char *obj;
		long len = tg_kube_stream_next(&r->stream, &obj);
		if (len == TG_AGAIN)
			return true;
		if (len == TG_ERROR) {
			tg_warn(MOD, "%s: malformed watch stream: %s; reconnecting", r->def->name,
				r->stream.reason);
			r->failed_event = true;
			return false;
		}
		if (!handle_event(r, obj, (size_t)len))
			return false;
	}
}

static size_t on_data(char *p, size_t sz, size_t nm, void *ud)
{
	req_t *q = ud;
	size_t n = sz * nm;
	if (!q->code_known) {
		curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &q->code);
		q->code_known = true;
	}
	if (q->type == REQ_WATCH && q->code == 200)
		return watch_data(container_of(q, resource_t, req), p, n) ? n : 0;
	size_t limit = (q->type == REQ_LIST && q->code == 200) ? MAX_LIST_BODY : MAX_ERROR_BODY;
	if (q->body.len + n > limit) {
		q->too_big = true;
		return 0;
	}
	tg_sbuf_append(&q->body, p, n);
	return q->body.oom ? 0 : n;
}

/* ---- list and watch requests ------------------------------------------------------ */

static void res_start(resource_t *r)
{
	tg_sbuf_t url = {0};
	tg_sbuf_printf(&url, "%s%s", K.base, r->path);
	req_t *q = &r->req;
	if (r->need_list) {
		q->type = REQ_LIST;
		if (!r->cont) {
			seen_clear(r);
			r->list_items = 0;
			r->paging = true;
		}
	} else {
		q->type = REQ_WATCH;
		tg_kube_stream_reset(&r->stream);
		r->gone = r->failed_event = r->got_events = false;
	}
	CURL *e = easy_new(q, "");
	bool ok = e != NULL;
	if (ok && q->type == REQ_LIST) {
		tg_sbuf_printf(&url, "?limit=%d%s", LIST_LIMIT, r->selector);
		if (r->cont)
			ok = query_add(e, &url, "continue", r->cont);
		curl_easy_setopt(e, CURLOPT_TIMEOUT, 300L);
	} else if (ok) {
		long tmo = WATCH_MIN_S + (long)(tg_rand_next(&K.rnd) % WATCH_MIN_S);
		tg_sbuf_printf(&url, "?watch=1&allowWatchBookmarks=true&timeoutSeconds=%ld%s", tmo,
			       r->selector);
		if (r->rv[0])
			ok = query_add(e, &url, "resourceVersion", r->rv);
		/* The server ends the watch at timeoutSeconds; this only
		 * catches a server that does not. */
		curl_easy_setopt(e, CURLOPT_TIMEOUT, tmo + 60);
	}
	if (ok && !url.oom) {
		curl_easy_setopt(e, CURLOPT_URL, url.data);
		ok = req_add(q);
	}
	if (ok) {
		tg_debug(MOD, "GET %s", url.data + strlen(K.base));
		if (q->type == REQ_WATCH) {
			pthread_mutex_lock(&K.mlock);
			K.m.watches[r - K.res]++;
			pthread_mutex_unlock(&K.mlock);
		}
	} else {
		req_end(q);
		tg_error(MOD, "%s: cannot create a request (out of memory); retrying",
			 r->def->name);
		r->retry_at = tg_clock_ms() + BACKOFF_MAX_MS;
	}
	tg_sbuf_free(&url);
}

static void res_fail(resource_t *r, const char *what)
{
	r->failures++;
	uint64_t delay = backoff_ms(r->failures);
	r->retry_at = tg_clock_ms() + delay;
	pthread_mutex_lock(&K.mlock);
	K.m.failures[r - K.res]++;
	pthread_mutex_unlock(&K.mlock);
	/* The first failure of a run is worth a warning; repeats only at
	 * debug level until it recovers, so an outage does not flood. */
	tg_log(r->failures <= 1 || r->failures % 10 == 0 ? TG_LOG_WARN : TG_LOG_DEBUG, MOD,
	       "%s: %s; retrying in %llu ms (failure %u)", r->def->name, what,
	       (unsigned long long)delay, r->failures);
}

static void relist(resource_t *r, int reason)
{
	r->need_list = true;
	free(r->cont);
	r->cont = NULL;
	r->retry_at = 0;
	pthread_mutex_lock(&K.mlock);
	K.m.relists[r - K.res][reason]++;
	pthread_mutex_unlock(&K.mlock);
}

/* A complete list page with status 200. */
static void list_page(resource_t *r)
{
	req_t *q = &r->req;
	struct fy_document *d = json_doc(q->body.data, q->body.len);
	struct fy_node *root = d ? fy_document_root(d) : NULL;
	struct fy_node *items = mget(root, "items");
	struct fy_node *meta = mget(root, "metadata");
	if (!root || fy_node_get_type(root) != FYNT_MAPPING ||
	    (items && fy_node_get_type(items) != FYNT_SEQUENCE &&
	     fy_node_get_type(items) != FYNT_SCALAR)) {
		fy_document_destroy(d);
		free(r->cont);
		r->cont = NULL;
		r->paging = false;
		res_fail(r, "list response is not a JSON list object");
		return;
	}
	if (items && fy_node_get_type(items) == FYNT_SEQUENCE) {
		void *it = NULL;
		struct fy_node *n;
		while ((n = fy_node_sequence_iterate(items, &it))) {
			if (fy_node_get_type(n) != FYNT_MAPPING) {
				tg_warn(MOD, "%s: list item is not an object; skipped",
					r->def->name);
				continue;
			}
			upsert(r, d, n, true);
			r->list_items++;
		}
	}
	char cont[4096];
	bool more = sget_buf(meta, "continue", cont, sizeof(cont)) && cont[0];
	char rv[sizeof(r->rv)];
	bool has_rv = sget_buf(meta, "resourceVersion", rv, sizeof(rv));
	fy_document_destroy(d);
	free(r->cont);
	r->cont = NULL;
	r->failures = 0;
	if (more) {
		r->cont = strdup(cont);
		if (!r->cont) {
			r->paging = false;
			res_fail(r, "out of memory");
			return;
		}
		r->retry_at = 0;
		return;
	}
	if (has_rv)
		memcpy(r->rv, rv, sizeof(rv));
	else
		r->rv[0] = 0;
	relist_done(r);
	r->paging = false;
	r->need_list = false;
	r->retry_at = 0;
	bool first = !r->synced;
	r->synced = true;
	pthread_mutex_lock(&K.mlock);
	K.m.lists[r - K.res]++;
	K.m.synced[r - K.res] = true;
	pthread_mutex_unlock(&K.mlock);
	tg_info(MOD, "%s: %s %u objects at resourceVersion %s", r->def->name,
		first ? "listed" : "relisted", r->list_items, r->rv[0] ? r->rv : "(none)");
	if (!has_rv)
		tg_warn(MOD, "%s: the list had no resourceVersion; watching from now",
			r->def->name);
}

/* A list or watch transfer ended. */
static void res_done(resource_t *r, CURLcode cc)
{
	req_t *q = &r->req;
	long code = q->code;
	if (!q->code_known)
		curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &code);
	char why[512];
	bool is_list = q->type == REQ_LIST;
	if (is_list) {
		if (cc == CURLE_OK && code == 200) {
			req_end(q);
			list_page(r);
		} else if (cc == CURLE_OK && code == 410 && r->cont) {
			/* The continue token expired: start the list over. */
			req_end(q);
			tg_info(MOD, "%s: list continue token expired (410); listing again",
				r->def->name);
			free(r->cont);
			r->cont = NULL;
			r->retry_at = 0;
		} else {
			if (cc != CURLE_OK)
				snprintf(why, sizeof(why), "list failed: %s",
					 q->too_big	? "response too large"
					 : q->errbuf[0] ? q->errbuf
							: curl_easy_strerror(cc));
			else {
				char msg[320];
				status_message(&q->body, msg, sizeof(msg));
				snprintf(why, sizeof(why), "list failed: HTTP %ld%s", code, msg);
			}
			req_end(q);
			free(r->cont);
			r->cont = NULL;
			r->paging = false;
			if (code == 401)
				K.token_next = 0; /* maybe the token rotated: re-read it now */
			res_fail(r, why);
		}
		return;
	}
	/* Watch. */
	if (r->gone || (cc == CURLE_OK && code == 410)) {
		req_end(q);
		if (!r->gone)
			tg_info(MOD, "%s: watch answered 410 Gone; relisting", r->def->name);
		r->failures = 0;
		relist(r, RL_GONE);
		return;
	}
	if (cc == CURLE_OK && code == 200 && !r->failed_event && r->stream.depth == 0) {
		/* The server ended the watch at timeoutSeconds: resume. */
		req_end(q);
		r->failures = 0;
		r->retry_at = 0;
		tg_debug(MOD, "%s: watch ended; resuming at %s", r->def->name, r->rv);
		return;
	}
	if (r->failed_event)
		snprintf(why, sizeof(why), "watch stopped after a bad event");
	else if (cc == CURLE_OK && code == 200)
		snprintf(why, sizeof(why), "watch ended in the middle of an event");
	else if (cc != CURLE_OK)
		snprintf(why, sizeof(why), "watch connection failed or dropped: %s",
			 q->errbuf[0] ? q->errbuf : curl_easy_strerror(cc));
	else {
		char msg[320];
		status_message(&q->body, msg, sizeof(msg));
		snprintf(why, sizeof(why), "watch failed: HTTP %ld%s", code, msg);
	}
	if (code == 401)
		K.token_next = 0;
	req_end(q);
	/* A connection that worked for a while starts the backoff over. */
	if (r->got_events)
		r->failures = 0;
	res_fail(r, why);
}

/* ---- status writes ----------------------------------------------------------------- */

static void status_send(const tg_object_t *ing, status_rec_t *rec)
{
	status_req_t *s = calloc(1, sizeof(*s));
	tg_sbuf_t url = {0};
	if (!s)
		return;
	s->req.type = REQ_STATUS;
	s->key = strndup(ing->key, ing->key_len);
	size_t wl = strlen(ing->ns) + strlen(ing->name) + 2;
	s->what = malloc(wl);
	CURL *e = s->key && s->what ? easy_new(&s->req, "") : NULL;
	if (!e)
		goto fail;
	snprintf(s->what, wl, "%s/%s", ing->ns, ing->name);
	char *ns = curl_easy_escape(e, ing->ns, 0), *name = curl_easy_escape(e, ing->name, 0);
	if (ns && name)
		tg_sbuf_printf(&url,
			       "%s/apis/networking.k8s.io/v1/namespaces/%s/ingresses/%s/status",
			       K.base, ns, name);
	curl_free(ns);
	curl_free(name);
	struct curl_slist *h =
	    curl_slist_append(s->req.headers, "Content-Type: application/merge-patch+json");
	if (!h || url.oom || !url.data)
		goto fail;
	s->req.headers = h;
	curl_easy_setopt(e, CURLOPT_URL, url.data);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->req.headers);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PATCH");
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, K.status.patch);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(K.status.patch));
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
	if (!req_add(&s->req))
		goto fail_nocurl;
	tg_sbuf_free(&url);
	s->next = K.status_reqs;
	K.status_reqs = s;
	rec->inflight = true;
	K.status_inflight++;
	tg_debug(MOD, "PATCH status of Ingress %s", s->what);
	return;
fail:
	req_end(&s->req);
fail_nocurl:
	tg_sbuf_free(&url);
	tg_sbuf_free(&s->req.body);
	free(s->key);
	free(s->what);
	free(s);
	K.status_due = true;
	K.status_retry_at = tg_clock_ms() + STATUS_RETRY_MS;
}

/* Writes the status of every owned Ingress whose status differs. */
static void status_pass(void)
{
	if (!K.status_on)
		return;
	K.status_due = false;
	uint32_t n;
	tg_object_t *const *ings = tg_store_list(K.store, TG_KIND_INGRESS, &n);
	for (uint32_t i = 0; i < n; i++) {
		const tg_object_t *o = ings[i];
		status_rec_t *rec = rec_get(o->key, o->key_len, true);
		if (!rec || rec->inflight)
			continue;
		if (rec->current && strcmp(rec->current, K.status.canonical) == 0)
			continue;
		if (!tg_translator_owns(K.tr, K.store, o))
			continue;
		if (K.status_inflight >= STATUS_MAX_INFLIGHT) {
			K.status_due = true; /* the rest after the current writes */
			K.status_retry_at = 0;
			return;
		}
		status_send(o, rec);
	}
}

static void status_done(status_req_t *s, CURLcode cc)
{
	long code = s->req.code;
	if (!s->req.code_known)
		curl_easy_getinfo(s->req.easy, CURLINFO_RESPONSE_CODE, &code);
	K.status_inflight--;
	for (status_req_t **pp = &K.status_reqs; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	status_rec_t *rec = tg_strmap_get(&K.status_recs, s->key, strlen(s->key));
	if (rec)
		rec->inflight = false;
	if (cc == CURLE_OK && code >= 200 && code < 300) {
		if (rec) {
			char *c = strdup(K.status.canonical);
			if (c) {
				free(rec->current);
				rec->current = c;
			}
		}
		tg_info(MOD, "Ingress %s: status.loadBalancer.ingress set to [%s]", s->what,
			K.status.canonical);
		pthread_mutex_lock(&K.mlock);
		K.m.status_ok++;
		pthread_mutex_unlock(&K.mlock);
	} else if (cc == CURLE_OK && code == 404) {
		tg_debug(MOD, "Ingress %s: gone before its status was written", s->what);
	} else {
		char msg[320] = "";
		if (cc == CURLE_OK)
			status_message(&s->req.body, msg, sizeof(msg));
		tg_warn(MOD, "Ingress %s: status update failed: %s%s; retrying in %d s", s->what,
			cc != CURLE_OK ? (s->req.errbuf[0] ? s->req.errbuf : curl_easy_strerror(cc))
				       : "HTTP error",
			msg, STATUS_RETRY_MS / 1000);
		if (cc == CURLE_OK)
			tg_debug(MOD, "status update HTTP %ld", code);
		pthread_mutex_lock(&K.mlock);
		K.m.status_failed++;
		pthread_mutex_unlock(&K.mlock);
		K.status_due = true;
		K.status_retry_at = tg_clock_ms() + STATUS_RETRY_MS;
	}
	if (K.status_due && K.status_retry_at == 0)
		K.status_retry_at = tg_clock_ms();
	req_end(&s->req);
	tg_sbuf_free(&s->req.body);
	free(s->key);
	free(s->what);
	free(s);
}

/* ---- publication -------------------------------------------------------------------- */

static bool ready_to_build(void)
{
	for (int i = 0; i < RES_COUNT; i++)
		if (!K.res[i].synced || K.res[i].paging)
			return false;
	return true;
}

static void build(void)
{
	tg_build_stats_t bs = {0};
	tg_snapshot_t *s = tg_translator_build(K.tr, K.store, &bs);
	if (!s) {
		tg_error(MOD, "out of memory building a snapshot; retrying");
		K.dirty_first = K.dirty_last = tg_clock_ms() + BACKOFF_MAX_MS;
		K.dirty = true;
		return;
	}
	tg_snapshot_publish(s);
	bool first = !K.published;
	K.published = true;
	K.dirty = false;
	bool ok = K.rejected_since_build == 0;
	K.rejected_since_build = 0;
	pthread_mutex_lock(&K.mlock);
	if (ok)
		K.m.cm.reloads_ok++;
	else
		K.m.cm.reloads_failed++;
	K.m.cm.last_ok = ok;
	if (ok)
		K.m.cm.last_success = wall_now();
	for (int i = 0; i < TG_KIND_COUNT; i++)
		tg_store_list(K.store, (tg_kind_t)i, &K.m.cm.objects[i]);
	K.m.cm.routed = bs.ingresses_routed;
	K.m.cm.build_seconds = bs.build_ms / 1e3;
	if (first) {
		K.first_published = true;
		pthread_cond_broadcast(&K.first_cond);
	}
	pthread_mutex_unlock(&K.mlock);
	tg_info(MOD,
		"snapshot %llu: %u of %u Ingresses routed, %u hosts + %u wildcards, %u routes "
		"(%u shadowed, %u without backend), %u backends, %u endpoints; build %.1f ms",
		(unsigned long long)tg_snapshot_generation(), bs.ingresses_routed, bs.ingresses,
		bs.hosts, bs.wildcards, bs.routes, bs.shadowed, bs.unresolved, bs.backends,
		bs.endpoints, bs.build_ms);
	status_pass();
}

/* ---- the thread ----------------------------------------------------------------------- */

static void set_auth_header(void)
{
	if (K.auth_header) {
		explicit_bzero(K.auth_header, strlen(K.auth_header));
		free(K.auth_header);
		K.auth_header = NULL;
	}
	if (!K.auth.token)
		return;
	size_t n = strlen(K.auth.token) + 32;
	K.auth_header = malloc(n);
	if (K.auth_header)
		snprintf(K.auth_header, n, "Authorization: Bearer %s", K.auth.token);
}

static void token_tick(uint64_t now)
{
	if (!K.auth.token_file || now < K.token_next)
		return;
	K.token_next = now + TOKEN_RELOAD_MS;
	char err[300];
	int rc = tg_kube_auth_reload_token(&K.auth, err, sizeof(err));
	if (rc < 0)
		tg_warn(MOD, "%s; keeping the previous token", err);
	else if (rc > 0) {
		tg_info(MOD, "token file %s changed; new requests use the new token",
			K.auth.token_file);
		set_auth_header();
	}
}

static void do_resync(void)
{
	tg_info(MOD, "resync requested: relisting every kind");
	for (int i = 0; i < RES_COUNT; i++) {
		resource_t *r = &K.res[i];
		req_end(&r->req);
		r->paging = false;
		r->failures = 0;
		relist(r, RL_RESYNC);
	}
}

static void finished(CURLMsg *msg)
{
	req_t *q = NULL;
	curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
	if (!q)
		return;
	if (q->type == REQ_STATUS)
		status_done(container_of(q, status_req_t, req), msg->data.result);
	else
		res_done(container_of(q, resource_t, req), msg->data.result);
}

static void *kube_thread(void *arg)
{
	(void)arg;
	while (!atomic_load(&K.stop)) {
		uint64_t now = tg_clock_ms();
		if (atomic_exchange(&K.resync, false))
			do_resync();
		token_tick(now);
		uint64_t next = now + 1000;
		for (int i = 0; i < RES_COUNT; i++) {
			resource_t *r = &K.res[i];
			if (r->req.easy)
				continue;
			if (r->retry_at <= now)
				res_start(r);
			else
				next = TG_MIN(next, r->retry_at);
		}
		if ((K.dirty || !K.published) && ready_to_build()) {
			uint64_t due =
			    TG_MIN(K.dirty_last + DEBOUNCE_MS, K.dirty_first + DEBOUNCE_MAX_MS);
			if (!K.published || now >= due)
				build();
			else
				next = TG_MIN(next, due);
		}
		if (K.status_due && K.published) {
			if (now >= K.status_retry_at && K.status_inflight < STATUS_MAX_INFLIGHT)
				status_pass();
			else if (K.status_retry_at > now)
				next = TG_MIN(next, K.status_retry_at);
		}
		if (K.auth.token_file)
			next = TG_MIN(next, K.token_next);
		int running;
		curl_multi_perform(K.multi, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(K.multi, &left)))
			if (msg->msg == CURLMSG_DONE)
				finished(msg);
		now = tg_clock_ms();
		/* Something became due while handling completions: go round. */
		bool again = false;
		for (int i = 0; i < RES_COUNT; i++)
			if (!K.res[i].req.easy && K.res[i].retry_at <= now)
				again = true;
		if (again || (K.dirty && ready_to_build() && !K.published))
			continue;
		long ct = -1;
		curl_multi_timeout(K.multi, &ct);
		long wait = next > now ? (long)(next - now) : 0;
		if (K.dirty && ready_to_build()) {
			uint64_t due =
			    TG_MIN(K.dirty_last + DEBOUNCE_MS, K.dirty_first + DEBOUNCE_MAX_MS);
			wait = TG_MIN(wait, due > now ? (long)(due - now) : 0);
		}
		if (ct >= 0)
			wait = TG_MIN(wait, ct);
		if (wait > 0)
			curl_multi_poll(K.multi, NULL, 0, (int)wait, NULL);
	}
	return NULL;
}

/* ---- start / stop -------------------------------------------------------------------- */

static void free_state(void)
{
	for (int i = 0; i < RES_COUNT; i++) {
		resource_t *r = &K.res[i];
		req_end(&r->req);
		tg_sbuf_free(&r->req.body);
		free(r->cont);
		tg_kube_stream_free(&r->stream);
		seen_clear(r);
		memset(r, 0, sizeof(*r));
	}
	while (K.status_reqs) {
		status_req_t *sr = K.status_reqs;
		K.status_reqs = sr->next;
		req_end(&sr->req);
		tg_sbuf_free(&sr->req.body);
		free(sr->key);
		free(sr->what);
		free(sr);
	}
	if (K.multi) {
		curl_multi_cleanup(K.multi);
		K.multi = NULL;
	}
	for (size_t i = 0; i < K.status_recs.cap; i++)
		if (K.status_recs.slots[i].key) {
			status_rec_t *r = K.status_recs.slots[i].value;
			free(r->current);
			free(r);
		}
	tg_strmap_free(&K.status_recs);
	K.status_inflight = 0;
	tg_store_free(K.store);
	K.store = NULL;
	tg_translator_free(K.tr);
	K.tr = NULL;
	tg_kube_status_free(&K.status);
	K.status_on = false;
	tg_kube_auth_free(&K.auth);
	set_auth_header(); /* no token any more: wipes and frees the header */
	free(K.base);
	K.base = NULL;
	curl_slist_free_all(K.connect_to);
	K.connect_to = NULL;
	K.dirty = K.published = false;
}

int tg_kube_start(const tg_source_config_t *cfg)
{
	tg_kube_auth_t auth;
	char err[512];
	int rc = cfg->in_cluster && !cfg->kubeconfig
		     ? tg_kube_in_cluster(NULL, &auth, err, sizeof(err))
		     : tg_kubeconfig_load(cfg->kubeconfig ? cfg->kubeconfig : "", &auth, err,
					  sizeof(err));
	if (rc) {
		tg_error(MOD, "%s", err);
		return rc;
	}
	return tg_kube_start_auth(cfg, &auth);
}

/*
 * Request URLs, and the tls-server-name redirection: libcurl takes the name
 * to send in SNI and to verify the certificate against from the URL, so the
 * URL names tls-server-name and CURLOPT_CONNECT_TO sends the connection to
 * the server's real host. The API server does not look at the Host field.
 */
static int setup_base(void)
{
	const char *srv = K.auth.server, *sn = K.auth.tls_server_name;
	if (!sn || !*sn) {
		K.base = strdup(srv);
		return K.base ? 0 : -ENOMEM;
	}
	const char *hs = strstr(srv, "://");
	if (!hs)
		return -EINVAL;
	hs += 3;
	const char *he = *hs == '[' ? strchr(hs, ']') : hs + strcspn(hs, ":/");
	if (!he)
		return -EINVAL;
	if (*hs == '[')
		he++;
	const char *port = NULL, *rest = he;
	size_t port_len = 0;
	if (*he == ':') {
		port = he + 1;
		port_len = strcspn(port, "/");
		rest = port + port_len;
	}
	bool https = strncmp(srv, "https", 5) == 0;
	char dflt[6];
	snprintf(dflt, sizeof(dflt), "%s", https ? "443" : "80");
	if (!port) {
		port = dflt;
		port_len = strlen(dflt);
	}
	for (const char *p = sn; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return -EINVAL;
	tg_sbuf_t b = {0}, c = {0};
	tg_sbuf_printf(&b, "%.*s%s:%.*s%s", (int)(hs - srv), srv, sn, (int)port_len, port, rest);
	tg_sbuf_printf(&c, "%s:%.*s:%.*s:%.*s", sn, (int)port_len, port, (int)(he - hs), hs,
		       (int)port_len, port);
	K.connect_to = c.oom ? NULL : curl_slist_append(NULL, c.data);
	tg_sbuf_free(&c);
	if (b.oom || !K.connect_to) {
		tg_sbuf_free(&b);
		return -ENOMEM;
	}
	K.base = b.data;
	return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int tg_kube_start_auth(const tg_source_config_t *cfg, tg_kube_auth_t *auth)
{
	if (K.running) {
		tg_kube_auth_free(auth);
		return -EALREADY;
	}
	/* libcurl's global init is not safe against a concurrent one. */
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		tg_kube_auth_free(auth);
		tg_error(MOD, "libcurl initialisation failed");
		return -ENOMEM;
	}
	K.auth = *auth;
	memset(auth, 0, sizeof(*auth));
	char err[512];
	int rc = 0;
	if (cfg->publish_status_address && *cfg->publish_status_address) {
		rc = tg_kube_status_build(cfg->publish_status_address, &K.status, err, sizeof(err));
		if (rc) {
			tg_error(MOD, "%s", err);
			free_state();
			return rc;
		}
		K.status_on = true;
	}
	/* The configmap collection: only --configmap's namespace and name. */
	char cm_ns[254] = "", cm_name[254] = "";
	if (cfg->configmap && *cfg->configmap) {
		const char *slash = strchr(cfg->configmap, '/');
		if (!slash || slash == cfg->configmap || !slash[1] ||
		    (size_t)(slash - cfg->configmap) >= sizeof(cm_ns) ||
		    strlen(slash + 1) >= sizeof(cm_name)) {
			tg_error(MOD, "--configmap \"%s\" is not NAMESPACE/NAME", cfg->configmap);
			free_state();
			return -EINVAL;
		}
		memcpy(cm_ns, cfg->configmap, (size_t)(slash - cfg->configmap));
		snprintf(cm_name, sizeof(cm_name), "%s", slash + 1);
	}
	rc = setup_base();
	if (rc) {
		tg_error(MOD, "kubeconfig: tls-server-name \"%s\" cannot be used with server %s",
			 K.auth.tls_server_name ? K.auth.tls_server_name : "", K.auth.server);
		free_state();
		return rc;
	}
	K.store = tg_store_new();
	tg_translate_config_t tc = {
	    .ingress_class = cfg->ingress_class,
	    .controller_class = cfg->controller_class,
	    .watch_ingress_without_class = cfg->watch_ingress_without_class,
	    .configmap = cfg->configmap,
	};
	K.tr = tg_translator_new(&tc);
	K.multi = curl_multi_init();
	if (!K.store || !K.tr || !K.multi) {
		free_state();
		return -ENOMEM;
	}
	K.json = (struct fy_parse_cfg){.flags = FYPCF_QUIET | FYPCF_JSON_FORCE};
	tg_rand_seed(&K.rnd);
	set_auth_header();
	K.token_next = tg_clock_ms() + TOKEN_RELOAD_MS;
	for (int i = 0; i < RES_COUNT; i++) {
		resource_t *r = &K.res[i];
		memset(r, 0, sizeof(*r));
		r->def = &resdefs[i];
		r->need_list = true;
		if (i == RES_CONFIGMAPS && cm_ns[0]) {
			char *sel = curl_easy_escape(NULL, "metadata.name=", 0);
			char *nm = curl_easy_escape(NULL, cm_name, 0);
			snprintf(r->path, sizeof(r->path), "/api/v1/namespaces/%s/configmaps",
				 cm_ns);
			if (sel && nm)
				snprintf(r->selector, sizeof(r->selector), "&fieldSelector=%s%s",
					 sel, nm);
			curl_free(sel);
			curl_free(nm);
		} else {
			snprintf(r->path, sizeof(r->path), "%s/%s", r->def->prefix, r->def->name);
		}
	}
	memset(&K.m, 0, sizeof(K.m));
	K.first_published = false;
	atomic_store(&K.stop, false);
	atomic_store(&K.resync, false);
	tg_info(MOD, "API source: %s (context %s)%s%s%s", K.auth.server, K.auth.context,
		K.auth.token ? ", bearer token" : "", K.auth.cert ? ", client certificate" : "",
		K.auth.insecure ? ", TLS verification OFF (insecure-skip-tls-verify)" : "");
	if (K.connect_to)
		tg_info(MOD, "TLS server name %s (tls-server-name)", K.auth.tls_server_name);
	rc = pthread_create(&K.thread, NULL, kube_thread, NULL);
	if (rc) {
		free_state();
		return -rc;
	}
	K.running = true;
	/* Like the directory source, come up with a configuration when the API
	 * server answers; do not hang the process when it does not. */
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += SYNC_WAIT_MS / 1000;
	pthread_mutex_lock(&K.mlock);
	while (!K.first_published) {
		if (pthread_cond_timedwait(&K.first_cond, &K.mlock, &dl) == ETIMEDOUT)
			break;
	}
	bool synced = K.first_published;
	pthread_mutex_unlock(&K.mlock);
	if (!synced)
		tg_warn(MOD,
			"no complete list from %s after %d s; still trying (no configuration "
			"until then)",
			K.auth.server, SYNC_WAIT_MS / 1000);
	return 0;
}

void tg_kube_resync(void)
{
	atomic_store(&K.resync, true);
	if (K.running && K.multi)
		curl_multi_wakeup(K.multi);
}

void tg_kube_stop(void)
{
	if (!K.running)
		return;
	atomic_store(&K.stop, true);
	curl_multi_wakeup(K.multi);
	pthread_join(K.thread, NULL);
	K.running = false;
	free_state();
}

bool tg_kube_running(void)
{
	return K.running;
}

void tg_kube_metrics(tg_sbuf_t *out)
{
	pthread_mutex_lock(&K.mlock);
	const kmetrics_t *m = &K.m;
	tg_config_metrics_write(out, &m->cm);
	tg_sbuf_printf(out, "# HELP tidegate_kube_synced Whether the first list of a resource "
			    "completed.\n# TYPE tidegate_kube_synced gauge\n");
	for (int i = 0; i < RES_COUNT; i++)
		tg_sbuf_printf(out, "tidegate_kube_synced{resource=\"%s\"} %d\n", resdefs[i].name,
			       m->synced[i] ? 1 : 0);
	tg_sbuf_printf(out, "# HELP tidegate_kube_lists_total Complete lists (all pages), the "
			    "first one included.\n# TYPE tidegate_kube_lists_total counter\n");
	for (int i = 0; i < RES_COUNT; i++)
		tg_sbuf_printf(out, "tidegate_kube_lists_total{resource=\"%s\"} %llu\n",
			       resdefs[i].name, (unsigned long long)m->lists[i]);
	tg_sbuf_printf(out, "# HELP tidegate_kube_relists_total Relists started, by reason (gone: "
			    "410 from a watch; resync: SIGHUP).\n"
			    "# TYPE tidegate_kube_relists_total counter\n");
	for (int i = 0; i < RES_COUNT; i++)
		for (int j = 0; j < RL_COUNT; j++)
			tg_sbuf_printf(out,
				       "tidegate_kube_relists_total{resource=\"%s\",reason=\"%s\"} "
				       "%llu\n",
				       resdefs[i].name, relist_names[j],
				       (unsigned long long)m->relists[i][j]);
	tg_sbuf_printf(out, "# HELP tidegate_kube_watch_connects_total Watch requests started "
			    "(the first and every reconnection).\n"
			    "# TYPE tidegate_kube_watch_connects_total counter\n");
	for (int i = 0; i < RES_COUNT; i++)
		tg_sbuf_printf(out, "tidegate_kube_watch_connects_total{resource=\"%s\"} %llu\n",
			       resdefs[i].name, (unsigned long long)m->watches[i]);
	tg_sbuf_printf(out, "# HELP tidegate_kube_request_failures_total Lists and watches that "
			    "failed or were dropped (retried with backoff).\n"
			    "# TYPE tidegate_kube_request_failures_total counter\n");
	for (int i = 0; i < RES_COUNT; i++)
		tg_sbuf_printf(out, "tidegate_kube_request_failures_total{resource=\"%s\"} %llu\n",
			       resdefs[i].name, (unsigned long long)m->failures[i]);
	tg_sbuf_printf(out, "# HELP tidegate_kube_events_total Watch events received.\n"
			    "# TYPE tidegate_kube_events_total counter\n");
	for (int i = 0; i < RES_COUNT; i++)
		for (int j = 0; j < EV_COUNT; j++)
			tg_sbuf_printf(out,
				       "tidegate_kube_events_total{resource=\"%s\",type=\"%s\"} "
				       "%llu\n",
				       resdefs[i].name, ev_names[j],
				       (unsigned long long)m->events[i][j]);
	tg_sbuf_printf(out, "# HELP tidegate_kube_last_event_timestamp_seconds Time of the last "
			    "watch event (0: none yet).\n"
			    "# TYPE tidegate_kube_last_event_timestamp_seconds gauge\n");
	for (int i = 0; i < RES_COUNT; i++)
		tg_sbuf_printf(out,
			       "tidegate_kube_last_event_timestamp_seconds{resource=\"%s\"} "
			       "%.3f\n",
			       resdefs[i].name, m->last_event[i]);
	tg_sbuf_printf(out,
		       "# HELP tidegate_kube_status_updates_total Ingress status writes.\n"
		       "# TYPE tidegate_kube_status_updates_total counter\n"
		       "tidegate_kube_status_updates_total{result=\"success\"} %llu\n"
		       "tidegate_kube_status_updates_total{result=\"failure\"} %llu\n",
		       (unsigned long long)m->status_ok, (unsigned long long)m->status_failed);
	pthread_mutex_unlock(&K.mlock);
}

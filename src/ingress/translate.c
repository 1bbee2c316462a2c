#include "ingress/translate.h"
#include "ingress/arena.h"
#include "ingress/extra.h"
#include "ingress/router.h"
#include "ingress/settings.h"
#include "ingress/strmap.h"
#include "ingress/tls_build.h"
#include "core/addr.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct tg_translator {
	char *ingress_class;	 /* --ingress-class */
	char *controller_class;	 /* --controller-class */
	bool without_class;	 /* --watch-ingress-without-class */
	char *cm_ns;		 /* ConfigMap namespace, or NULL */
	char *cm_name;		 /* ConfigMap name, or NULL */
	char *cm_id;		 /* "ns/name" for logs */
	tg_settings_t settings;	 /* effective settings of the last build */
	uint64_t cm_seq;	 /* seq of the ConfigMap version applied (0: none) */
	bool built;		 /* a build happened (settings valid) */
	tg_strmap_t epcache;	 /* "ns\0svc\0port" -> epset_t (one reference) */
	uint64_t builds;	 /* build counter */
	uint64_t warned_seq;	 /* store seq of the last build: objects applied after
				  * it get their translation warnings logged */
	tg_tls_build_t *tls;	 /* certificates, client auth, ssl-* keys (tls_build.h) */
	tg_extra_build_t *extra; /* per-route annotation behaviour (extra.h) */
};

/* Which IngressClasses are ours (per build). */
typedef struct class_info {
	tg_strmap_t ours;  /* names of IngressClasses with our controller */
	bool default_ours; /* one of them is the default class */
} class_info_t;

/* A backend while building; final array built at the end. */
typedef struct bbackend {
	tg_backend_t b;		       /* ns/service/port/label/protocol filled */
	const tg_object_t *svc;	       /* the Service */
	const tg_service_port_t *port; /* resolved Service port */
} bbackend_t;

/* A route whose backend pointer is patched once the backend array exists. */
typedef struct patch {
	tg_route_t *route; /* route to patch */
	uint32_t backend;  /* index into the backends */
} patch_t;

/*
 * Endpoints resolved for one Service port: shared by every backend of that
 * port, and by successive snapshots while the Service and its EndpointSlices
 * do not change (so a rebuild after an unrelated change copies no endpoint).
 * Reference-counted: one reference for the translator's cache, one per
 * snapshot using it; the last release (possibly on a worker, when it drops
 * an old snapshot) frees it.
 */
typedef struct epset {
	_Atomic uint32_t refs;	 /* cache + snapshots */
	uint64_t svc_seq;	 /* seq of the Service version it was built from */
	uint64_t slices_version; /* the store's version of the Service's slices then */
	uint64_t used_build;	 /* last build that used it */
	tg_endpoint_t *eps;	 /* entries (inside this block) */
	uint32_t n;		 /* entries */
	size_t key_len;		 /* bytes of key */
	char key[];		 /* "ns\0service\0port name": cache key, then the endpoints */
} epset_t;

/* What tg_snapshot_t.priv points to. */
typedef struct snap_priv {
	tg_arena_t *arena;     /* the snapshot's memory (this struct included) */
	epset_t **shared;      /* endpoint sets referenced (one reference each) */
	uint32_t n_shared;     /* entries in shared */
	tg_extra_res_t *extra; /* regexes and upstream TLS profiles to release */
} snap_priv_t;

/* A backend resolved for the Ingress being translated. */
typedef struct memo {
	const tg_backend_ref_t *ref; /* as the Ingress wrote it */
	int64_t id;		     /* backend index, or -1 (missing) */
} memo_t;

typedef struct build {
	tg_translator_t *t;		    /* translator */
	const tg_store_t *st;		    /* source of objects */
	tg_arena_t *a;			    /* snapshot arena */
	tg_router_builder_t *rb;	    /* router under construction */
	tg_strmap_t bmap;		    /* backend key -> index + 1, or MISSING */
	epset_t **shared;		    /* epsets this snapshot references */
	uint32_t n_shared, cap_shared;	    /* used / allocated */
	tg_arena_t *keys;		    /* backend keys */
	bbackend_t *backends;		    /* backends so far */
	uint32_t n_backends, cap_backends;  /* used / allocated */
	patch_t *patches;		    /* routes to patch */
	uint32_t n_patches, cap_patches;    /* used / allocated */
	tg_build_stats_t *stats;	    /* counters */
	const tg_service_port_t *last_port; /* Service port resolved last */
	epset_t *last_set;		    /* its endpoint set */
	memo_t memo[4];			    /* backends of the current Ingress */
	int memo_n;			    /* entries in memo */
	tg_strmap_t regex_hosts;	    /* lower-cased hosts ("" = no host) where
					     * some Ingress sets use-regex or
					     * rewrite-target: their Prefix paths are
					     * regexes (ingress-nginx) */
} build_t;

#define MISSING ((void *)UINTPTR_MAX)

tg_translator_t *tg_translator_new(const tg_translate_config_t *cfg)
{
	tg_translator_t *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ingress_class = strdup(cfg->ingress_class ? cfg->ingress_class : "tidegate");
	t->controller_class = strdup(cfg->controller_class ? cfg->controller_class
							   : "tidegate.io/ingress-controller");
	t->without_class = cfg->watch_ingress_without_class;
	if (cfg->configmap && *cfg->configmap) {
		const char *slash = strchr(cfg->configmap, '/');
		if (slash) {
			t->cm_ns = strndup(cfg->configmap, (size_t)(slash - cfg->configmap));
			t->cm_name = strdup(slash + 1);
		} else {
			t->cm_ns = strdup("default");
			t->cm_name = strdup(cfg->configmap);
		}
		t->cm_id = strdup(cfg->configmap);
	}
	tg_settings_defaults(&t->settings);
	t->tls = tg_tls_build_new();
	t->extra = tg_extra_build_new();
	if (!t->ingress_class || !t->controller_class || !t->tls || !t->extra ||
	    (cfg->configmap && *cfg->configmap && (!t->cm_ns || !t->cm_name || !t->cm_id))) {
		tg_translator_free(t);
		return NULL;
	}
	return t;
}

static void epset_unref(epset_t *e)
{
	if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
		free(e);
}

void tg_translator_free(tg_translator_t *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->epcache.cap; i++)
		if (t->epcache.slots[i].key)
			epset_unref(t->epcache.slots[i].value);
	tg_strmap_free(&t->epcache);
	tg_tls_build_free(t->tls);
	tg_extra_build_free(t->extra);
	free(t->ingress_class);
	free(t->controller_class);
	free(t->cm_ns);
	free(t->cm_name);
	free(t->cm_id);
	free(t);
}

/* ---- ownership -------------------------------------------------------- */

static int class_info_init(const tg_translator_t *t, const tg_store_t *st, class_info_t *ci)
{
	memset(ci, 0, sizeof(*ci));
	uint32_t n;
	tg_object_t *const *cls = tg_store_list(st, TG_KIND_INGRESS_CLASS, &n);
	for (uint32_t i = 0; i < n; i++) {
		const tg_object_t *c = cls[i];
		if (strcmp(c->u.ingress_class.controller, t->controller_class) != 0)
			continue;
		if (tg_strmap_put(&ci->ours, c->name, strlen(c->name), (void *)c, NULL))
			return -ENOMEM;
		if (c->u.ingress_class.is_default)
			ci->default_ours = true;
	}
	return 0;
}

static bool owns(const tg_translator_t *t, const class_info_t *ci, const tg_object_t *o)
{
	const tg_ingress_spec_t *ing = &o->u.ingress;
	if (ing->class_name)
		return tg_strmap_get(&ci->ours, ing->class_name, strlen(ing->class_name)) != NULL;
	if (ing->legacy_class)
		return strcmp(ing->legacy_class, t->ingress_class) == 0;
	return t->without_class || ci->default_ours;
}

bool tg_translator_owns(const tg_translator_t *t, const tg_store_t *st, const tg_object_t *ing)
{
	class_info_t ci;
	bool r = class_info_init(t, st, &ci) == 0 && owns(t, &ci, ing);
	tg_strmap_free(&ci.ours);
	return r;
}

/* Sort key of an owned Ingress: the order of translate.h with the first 8
 * bytes of namespace and name inline (big-endian, so integer order is byte
 * order), which settles most comparisons without touching the object. */
typedef struct order_key {
	int64_t created;      /* creationTimestamp */
	uint64_t ns8;	      /* namespace prefix */
	uint64_t name8;	      /* name prefix */
	const tg_object_t *o; /* the Ingress */
} order_key_t;

static uint64_t prefix8(const char *s)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++) {
		v <<= 8;
		if (*s)
			v |= (unsigned char)*s++;
	}
	return v;
}

static int ingress_order(const void *pa, const void *pb)
{
	const order_key_t *a = pa, *b = pb;
	if (a->created != b->created)
		return a->created < b->created ? -1 : 1;
	if (a->ns8 != b->ns8)
		return a->ns8 < b->ns8 ? -1 : 1;
	int c = strcmp(a->o->ns, b->o->ns);
	if (c)
		return c;
	if (a->name8 != b->name8)
		return a->name8 < b->name8 ? -1 : 1;
	return strcmp(a->o->name, b->o->name);
}

/* ---- backends --------------------------------------------------------- */

static const tg_service_port_t *service_port(const tg_object_t *svc, const tg_backend_ref_t *ref)
{
	const tg_service_spec_t *s = &svc->u.service;
	for (uint32_t i = 0; i < s->n_ports; i++) {
		const tg_service_port_t *p = &s->ports[i];
		if (ref->port_name ? strcmp(p->name, ref->port_name) == 0
				   : p->port == ref->port_number)
			return p->tcp ? p : NULL;
	}
	return NULL;
}

/* Index of the backend for (ns, ref, proto), creating it; -1 when the
 * Service or its port does not exist; -2 on allocation failure. */
static int64_t backend_for(build_t *b, const char *ns, const tg_backend_ref_t *ref,
			   tg_backend_protocol_t proto, const tg_object_t *ing, bool warn)
{
	/* Key: ns \0 service \0 port-as-written \0 protocol. */
	char key[400];
	size_t l1 = strlen(ns), l2 = strlen(ref->service), l3 = strlen(ref->port_text);
	if (l1 + l2 + l3 + 4 > sizeof(key))
		return -1;
	memcpy(key, ns, l1 + 1);
	memcpy(key + l1 + 1, ref->service, l2 + 1);
	memcpy(key + l1 + l2 + 2, ref->port_text, l3 + 1);
	key[l1 + l2 + l3 + 3] = (char)('0' + proto);
	int kl = (int)(l1 + l2 + l3 + 4);
	bool created;
	tg_strmap_slot_t *slot = tg_strmap_upsert(&b->bmap, key, (size_t)kl, &created);
	if (!slot)
		return -2;
	void *v = slot->value;
	if (v == MISSING) {
		if (warn)
			tg_warn("ingress",
				"Ingress %s/%s: Service %s/%s port %s does not exist; "
				"its routes answer 503",
				ing->ns, ing->name, ns, ref->service, ref->port_text);
		return -1;
	}
	if (!created)
		return (int64_t)((uintptr_t)v - 1);
	/* New entry: its key must outlive this stack frame. */
	char *k = tg_arena_strndup(b->keys, key, (size_t)kl);
	if (!k) {
		tg_strmap_del(&b->bmap, key, (size_t)kl);
		return -2;
	}
	slot->key = k;
	slot->value = MISSING;
	const tg_object_t *svc = tg_store_get(b->st, TG_KIND_SERVICE, ns, ref->service);
	const tg_service_port_t *sp = svc ? service_port(svc, ref) : NULL;
	if (!sp) {
		if (warn)
			tg_warn("ingress",
				"Ingress %s/%s: Service %s/%s%s%s does not exist; "
				"its routes answer 503",
				ing->ns, ing->name, ns, ref->service, svc ? " port " : "",
				svc ? ref->port_text : "");
		return -1;
	}
	if (b->n_backends == b->cap_backends) {
		uint32_t ncap = b->cap_backends ? b->cap_backends * 2 : 64;
		bbackend_t *n = realloc(b->backends, ncap * sizeof(*n));
		if (!n)
			return -2;
		b->backends = n;
		b->cap_backends = ncap;
	}
	uint32_t id = b->n_backends;
	bbackend_t *bb = &b->backends[id];
	memset(bb, 0, sizeof(*bb));
	bb->port = sp;
	bb->svc = svc;
	bb->b.id = id;
	bb->b.ns = tg_arena_strdup(b->a, ns);
	bb->b.service = tg_arena_strdup(b->a, ref->service);
	bb->b.port = tg_arena_strdup(b->a, ref->port_text);
	bb->b.protocol = proto;
	/* label "ns-service-port" from the key "ns\0service\0port\0p". */
	char *label = tg_arena_strndup(b->a, key, l1 + l2 + l3 + 2);
	if (!bb->b.ns || !bb->b.service || !bb->b.port || !label)
		return -2;
	label[l1] = label[l1 + l2 + 1] = '-';
	bb->b.label = label;
	slot->value = (void *)(uintptr_t)(id + 1); /* no insertion since the upsert */
	b->n_backends++;
	return id;
}

static int endpoint_order(const void *pa, const void *pb)
{
	const tg_endpoint_t *a = pa, *b = pb;
	if (a->addr.ss_family != b->addr.ss_family)
		return a->addr.ss_family < b->addr.ss_family ? -1 : 1;
	if (a->addr.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)&b->addr;
		int c = memcmp(&x->sin_addr, &y->sin_addr, 4);
		return c ? c : (int)ntohs(x->sin_port) - (int)ntohs(y->sin_port);
	}
	const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)&b->addr;
	int c = memcmp(&x->sin6_addr, &y->sin6_addr, 16);
	return c ? c : (int)ntohs(x->sin6_port) - (int)ntohs(y->sin6_port);
}

/* The pods' port for one slice, or 0 when the slice has no usable port. */
static uint32_t slice_port(const tg_slice_spec_t *sl, const tg_service_port_t *sp)
{
	if (sl->n_ports == 0)
		return sp->target_name ? 0 : (sp->target_port ? sp->target_port : sp->port);
	for (uint32_t i = 0; i < sl->n_ports; i++)
		if (sl->ports[i].tcp && strcmp(sl->ports[i].name, sp->name) == 0)
			return sl->ports[i].port;
	return 0;
}

/* "a.b.c.d:port" without stdio: this runs for every endpoint of every build. */
static void format_v4(const uint8_t *a, uint32_t port, char *out)
{
	char *p = out;
	for (int i = 0; i < 4; i++) {
		unsigned v = a[i];
		if (v >= 100)
			*p++ = (char)('0' + v / 100);
		if (v >= 10)
			*p++ = (char)('0' + v / 10 % 10);
		*p++ = (char)('0' + v % 10);
		*p++ = i < 3 ? '.' : ':';
	}
	char d[6];
	int n = 0;
	do {
		d[n++] = (char)('0' + port % 10);
		port /= 10;
	} while (port);
	while (n)
		*p++ = d[--n];
	*p = '\0';
}

/* The arena hands out zeroed memory: only the used fields are written. */
static void fill_endpoint(tg_endpoint_t *e, const tg_slice_endpoint_t *se, uint32_t port,
			  bool terminating)
{
	if (se->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&e->addr;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		memcpy(&in->sin_addr, se->addr, 4);
		e->addrlen = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&e->addr;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		memcpy(&in6->sin6_addr, se->addr, 16);
		e->addrlen = sizeof(*in6);
	}
	e->terminating = terminating;
}

static int share(build_t *b, epset_t *e)
{
	if (e->used_build == b->t->builds)
		return 0; /* already referenced by this snapshot */
	if (b->n_shared == b->cap_shared) {
		uint32_t ncap = b->cap_shared ? b->cap_shared * 2 : 256;
		epset_t **n = realloc(b->shared, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->shared = n;
		b->cap_shared = ncap;
	}
	atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	b->shared[b->n_shared++] = e;
	e->used_build = b->t->builds;
	b->stats->endpoints += e->n; /* distinct: each set counted once */
	return 0;
}

/* Fills the endpoints of one backend from the Service's EndpointSlices,
 * reusing the cached set when neither the Service nor its slices changed. */
static int resolve_endpoints(build_t *b, bbackend_t *bb)
{
	const tg_service_port_t *sp = bb->port;
	/* Backends of one Service port (written as number and as name, or with
	 * another protocol) are usually created one after the other. */
	if (b->last_port == sp && b->last_set) {
		bb->b.endpoints = b->last_set->eps;
		bb->b.n_endpoints = b->last_set->n;
		return 0;
	}
	char key[400];
	size_t l1 = strlen(bb->b.ns), l2 = strlen(bb->b.service), l3 = strlen(sp->name);
	if (l1 + l2 + l3 + 2 > sizeof(key))
		return -EINVAL;
	memcpy(key, bb->b.ns, l1 + 1);
	memcpy(key + l1 + 1, bb->b.service, l2 + 1);
	memcpy(key + l1 + l2 + 2, sp->name, l3);
	size_t kl = l1 + l2 + l3 + 2;

	uint32_t n_slices;
	uint64_t version;
	tg_object_t *const *slices =
	    tg_store_slices_version(b->st, bb->b.ns, bb->b.service, &n_slices, &version);
	tg_strmap_t *cache = &b->t->epcache;
	epset_t *set = tg_strmap_get(cache, key, kl);
	if (set && set->svc_seq == bb->svc->seq && set->slices_version == version) {
		if (share(b, set))
			return -ENOMEM;
		bb->b.endpoints = set->eps;
		bb->b.n_endpoints = set->n;
		b->last_port = sp;
		b->last_set = set;
		return 0;
	}

	uint32_t n_ready = 0, n_fallback = 0;
	for (uint32_t i = 0; i < n_slices; i++) {
		const tg_slice_spec_t *sl = &slices[i]->u.slice;
		if (!slice_port(sl, sp))
			continue;
		for (uint32_t j = 0; j < sl->n_endpoints; j++) {
			const tg_slice_endpoint_t *e = &sl->endpoints[j];
			if (e->ready)
				n_ready++;
			else if (e->serving && e->terminating)
				n_fallback++;
		}
	}
	bool fallback = n_ready == 0;
	uint32_t n = fallback ? n_fallback : n_ready;
	/* One block: header, key, then the endpoints at an aligned offset. */
	size_t eoff = (sizeof(epset_t) + kl + 15) & ~(size_t)15;
	epset_t *ns = calloc(1, eoff + (size_t)n * sizeof(tg_endpoint_t));
	if (!ns)
		return -ENOMEM;
	atomic_init(&ns->refs, 1); /* the cache's */
	ns->svc_seq = bb->svc->seq;
	ns->slices_version = version;
	ns->key_len = kl;
	memcpy(ns->key, key, kl);
	tg_endpoint_t *eps = (tg_endpoint_t *)((char *)ns + eoff);
	uint32_t k = 0;
	for (uint32_t i = 0; i < n_slices && k < n; i++) {
		const tg_slice_spec_t *sl = &slices[i]->u.slice;
		uint32_t port = slice_port(sl, sp);
		if (!port)
			continue;
		for (uint32_t j = 0; j < sl->n_endpoints && k < n; j++) {
			const tg_slice_endpoint_t *e = &sl->endpoints[j];
			bool use =
			    fallback ? (!e->ready && e->serving && e->terminating) : e->ready;
			if (use)
				fill_endpoint(&eps[k++], e, port, fallback);
		}
	}
	if (k > 1) {
		qsort(eps, k, sizeof(*eps), endpoint_order);
		uint32_t u = 1;
		for (uint32_t i = 1; i < k; i++)
			if (endpoint_order(&eps[i], &eps[u - 1]) != 0)
				eps[u++] = eps[i];
		k = u;
	}
	for (uint32_t i = 0; i < k; i++) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&eps[i].addr;
		if (in->sin_family == AF_INET)
			format_v4((const uint8_t *)&in->sin_addr, ntohs(in->sin_port), eps[i].text);
		else
			tg_addr_format((const struct sockaddr *)&eps[i].addr, eps[i].text,
				       sizeof(eps[i].text));
	}
	ns->eps = eps;
	ns->n = k;
	void *old = NULL;
	if (tg_strmap_put(cache, ns->key, kl, ns, &old)) {
		free(ns);
		return -ENOMEM;
	}
	epset_unref(old); /* snapshots using the old set keep their reference */
	if (share(b, ns))
		return -ENOMEM;
	bb->b.endpoints = eps;
	bb->b.n_endpoints = k;
	b->last_port = sp;
	b->last_set = ns;
	return 0;
}

/* Drops cache entries no build used this time (Service or port gone). */
static void evict(tg_translator_t *t)
{
	tg_strmap_t *c = &t->epcache;
	epset_t **gone = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < c->cap; i++) {
		epset_t *e = c->slots[i].key ? c->slots[i].value : NULL;
		if (!e || e->used_build == t->builds)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			epset_t **g = realloc(gone, cap * sizeof(*g));
			if (!g)
				break; /* evicted next time */
			gone = g;
		}
		gone[n++] = e;
	}
	for (size_t i = 0; i < n; i++) {
		tg_strmap_del(c, gone[i]->key, gone[i]->key_len);
		epset_unref(gone[i]);
	}
	free(gone);
}

void tg_snapshot_destroy(tg_snapshot_t *s)
{
	snap_priv_t *p = s->priv;
	for (uint32_t i = 0; i < p->n_shared; i++)
		epset_unref(p->shared[i]);
	tg_tls_store_free(s->tls);
	tg_extra_res_free(p->extra);
	tg_arena_free(p->arena);
}

/* ---- routes ----------------------------------------------------------- */

static bool host_eq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

/* True when spec.tls lists host (exactly, or through a "*.x" entry covering
 * one label); an entry without hosts covers every host of the Ingress. */
static bool tls_covers(const tg_ingress_spec_t *ing, const char *host)
{
	for (uint32_t i = 0; i < ing->n_tls; i++) {
		const tg_ingress_tls_t *t = &ing->tls[i];
		if (t->n_hosts == 0)
			return true;
		if (!host[0])
			continue;
		for (uint32_t j = 0; j < t->n_hosts; j++) {
			const char *h = t->hosts[j];
			if (host_eq(h, host))
				return true;
			const char *dot = strchr(host, '.');
			if (h[0] == '*' && h[1] == '.' && host[0] != '*' && dot && dot > host &&
			    host_eq(h + 2, dot + 1))
				return true;
		}
	}
	return false;
}

static tg_route_opts_t route_opts(const tg_settings_t *s, const tg_ingress_spec_t *ing,
				  const char *host)
{
	const tg_ingress_annotations_t *an = &ing->ann;
	tg_route_opts_t o = {
	    .proxy_body_size = an->has_proxy_body_size ? an->proxy_body_size : s->proxy_body_size,
	    .proxy_connect_timeout_ms = an->has_connect_timeout ? an->proxy_connect_timeout_ms
								: s->proxy_connect_timeout_ms,
	    .proxy_read_timeout_ms =
		an->has_read_timeout ? an->proxy_read_timeout_ms : s->proxy_read_timeout_ms,
	    .proxy_send_timeout_ms =
		an->has_send_timeout ? an->proxy_send_timeout_ms : s->proxy_send_timeout_ms,
	    .ssl_redirect = an->has_ssl_redirect ? an->ssl_redirect : s->ssl_redirect,
	    .force_ssl_redirect = an->has_force_ssl_redirect && an->force_ssl_redirect,
	    .limit_rate = an->has_limit_rate ? an->limit_rate : s->limit_rate,
	    .limit_rate_after =
		an->has_limit_rate_after ? an->limit_rate_after : s->limit_rate_after,
	    .tls = tls_covers(ing, host),
	};
	return o;
}

static int add_patch(build_t *b, tg_route_t *r, uint32_t backend)
{
	if (b->n_patches == b->cap_patches) {
		uint32_t ncap = b->cap_patches ? b->cap_patches * 2 : 256;
		patch_t *n = realloc(b->patches, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->patches = n;
		b->cap_patches = ncap;
	}
	b->patches[b->n_patches++] = (patch_t){r, backend};
	return 0;
}

/* A route for (ingress, host, path) with its backend resolved (patched later). */
static tg_route_t *make_route(build_t *b, const tg_object_t *o, const char *ns, const char *name,
			      const char *host, const char *path, tg_path_type_t type,
			      const tg_backend_ref_t *ref, const tg_route_opts_t *opts, bool warn)
{
	const tg_ingress_spec_t *ing = &o->u.ingress;
	tg_route_t *r = tg_arena_alloc(b->a, sizeof(*r));
	if (!r)
		return NULL;
	r->ingress_ns = ns;
	r->ingress_name = name;
	r->host = host;
	r->path = path;
	r->path_type = type;
	r->opts = *opts;
	/* Paths of one Ingress mostly name the same few Service ports: a small
	 * memo saves a probe of the (large, cache-cold) backend map. */
	int64_t id = -3;
	for (int i = 0; i < b->memo_n && id == -3; i++)
		if (strcmp(b->memo[i].ref->service, ref->service) == 0 &&
		    strcmp(b->memo[i].ref->port_text, ref->port_text) == 0)
			id = b->memo[i].id;
	if (id == -3) {
		id = backend_for(b, o->ns, ref, ing->ann.protocol, o, warn);
		if (id >= -1 && b->memo_n < (int)TG_ARRAY_SIZE(b->memo))
			b->memo[b->memo_n++] = (memo_t){ref, id};
	}
	if (id == -2)
		return NULL;
	if (id < 0)
		b->stats->unresolved++;
	else if (add_patch(b, r, (uint32_t)id))
		return NULL;
	return r;
}

/* Lower-cases host into buf (NUL-terminated); returns its length. */
static size_t lower_host(const char *host, char *buf, size_t cap)
{
	size_t n = 0;
	while (host[n] && n + 1 < cap) {
		buf[n] = (char)(host[n] >= 'A' && host[n] <= 'Z' ? host[n] + 32 : host[n]);
		n++;
	}
	buf[n] = '\0';
	return n;
}

/* Marks the hosts of Ingresses asking for regex paths. */
static int mark_regex_hosts(build_t *b, const tg_object_t *o)
{
	const tg_ingress_spec_t *ing = &o->u.ingress;
	if (!ing->ann.use_regex && !ing->ann.rewrite_target)
		return 0;
	for (uint32_t i = 0; i < ing->n_rules; i++) {
		char low[256];
		size_t n = lower_host(ing->rules[i].host, low, sizeof(low));
		if (tg_strmap_get(&b->regex_hosts, low, n))
			continue;
		char *k = tg_arena_strndup(b->keys, low, n);
		if (!k || tg_strmap_put(&b->regex_hosts, k, n, k, NULL))
			return -ENOMEM;
	}
	return 0;
}

/* Adds a Prefix path of a regex host: compiled, with the route's own extra
 * when the Ingress rewrites. A path that is no valid ERE answers 503. */
static int add_regex_path(build_t *b, const tg_object_t *o, uint32_t table, tg_route_t *r,
			  bool warn)
{
	const void *re;
	const tg_route_extra_t *rx;
	char why[200];
	int e =
	    tg_extra_build_route(b->t->extra, r->opts.extra, r->path, &re, &rx, why, sizeof(why));
	if (e == -ENOMEM)
		return e;
	if (e < 0) {
		char msg[400];
		snprintf(msg, sizeof(msg),
			 "path %s is not a valid POSIX extended regular expression (%s), and "
			 "use-regex makes it one: it answers 503",
			 r->path, why);
		if (warn)
			tg_warn("ingress", "Ingress %s/%s: %s", o->ns, o->name, msg);
		tg_route_extra_t *d = tg_arena_alloc(b->a, sizeof(*d));
		if (!d || !(d->denied = tg_arena_strdup(b->a, msg)))
			return -ENOMEM;
		r->opts.extra = d;
		/* Still claims its exact text, so nothing else answers it. */
		return tg_router_add_path(b->rb, table, TG_PATH_PREFIX, r->path, r);
	}
	r->opts.extra = rx;
	return tg_router_add_regex(b->rb, table, r->path, re, r);
}

static int add_ingress(build_t *b, const tg_object_t *o)
{
	const tg_ingress_spec_t *ing = &o->u.ingress;
	bool warn = o->seq > b->t->warned_seq;
	b->memo_n = 0; /* the protocol annotation is per Ingress: memo too */
	const char *ns = tg_arena_strdup(b->a, o->ns);
	const char *name = tg_arena_strdup(b->a, o->name);
	if (!ns || !name)
		return -ENOMEM;
	int xerr;
	const tg_route_extra_t *extra = tg_extra_build_ingress(b->t->extra, o, warn, &xerr);
	if (xerr)
		return xerr;
	if (extra && extra->denied)
		b->stats->refused++;
	for (uint32_t i = 0; i < ing->n_rules; i++) {
		const tg_ingress_rule_t *rule = &ing->rules[i];
		if (!rule->n_paths && !rule->host[0])
			continue;
		const char *host = tg_arena_strdup(b->a, rule->host);
		uint32_t table;
		if (!host || tg_router_table(b->rb, host, &table))
			return -ENOMEM;
		bool regex_host = false;
		if (TG_UNLIKELY(b->regex_hosts.n)) {
			char low[256];
			size_t lowlen = lower_host(host, low, sizeof(low));
			regex_host = tg_strmap_get(&b->regex_hosts, low, lowlen) != NULL;
		}
		tg_route_opts_t opts = route_opts(&b->t->settings, ing, host);
		tg_tls_build_route_opts(b->t->tls, &opts);
		opts.extra = extra;
		/* The first Ingress declaring a host (even without paths) decides
		 * what its unmatched paths get: its defaultBackend, else 404. */
		if (host[0] && tg_router_claim(b->rb, table) && ing->has_default_backend) {
			tg_route_t *r = make_route(b, o, ns, name, host, "", TG_PATH_PREFIX,
						   &ing->default_backend, &opts, warn);
			if (!r)
				return -ENOMEM;
			tg_router_set_fallback(b->rb, table, r);
		}
		for (uint32_t j = 0; j < rule->n_paths; j++) {
			const tg_ingress_path_t *p = &rule->paths[j];
			if (p->backend.resource) {
				if (warn)
					tg_warn("ingress",
						"Ingress %s/%s: rule %u path %s: resource backends "
						"are not supported; path skipped",
						o->ns, o->name, i, p->path);
				continue;
			}
			const char *path = tg_arena_strdup(b->a, p->path);
			tg_route_t *r = path ? make_route(b, o, ns, name, host, path, p->type,
							  &p->backend, &opts, warn)
					     : NULL;
			if (!r)
				return -ENOMEM;
			int rc = regex_host && p->type == TG_PATH_PREFIX
				     ? add_regex_path(b, o, table, r, warn)
				     : tg_router_add_path(b->rb, table, p->type, path, r);
			if (rc < 0)
				return rc;
			if (rc == 0) {
				b->stats->shadowed++;
				if (warn)
					tg_info(
					    "ingress",
					    "Ingress %s/%s: host \"%s\" path %s (%s) is already "
					    "routed by an older Ingress or rule; ignored",
					    o->ns, o->name, host, path,
					    p->type == TG_PATH_EXACT ? "Exact" : "Prefix");
			}
		}
	}
	if (ing->has_default_backend) {
		tg_route_opts_t opts = route_opts(&b->t->settings, ing, "");
		tg_tls_build_route_opts(b->t->tls, &opts);
		opts.extra = extra;
		tg_route_t *r = make_route(b, o, ns, name, "", "", TG_PATH_PREFIX,
					   &ing->default_backend, &opts, warn);
		if (!r)
			return -ENOMEM;
		tg_router_set_default(b->rb, r);
	}
	return 0;
}

static double clock_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double now_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

static void update_settings(tg_translator_t *t, const tg_store_t *st, tg_build_stats_t *stats)
{
	const tg_object_t *cm =
	    t->cm_ns ? tg_store_get(st, TG_KIND_CONFIGMAP, t->cm_ns, t->cm_name) : NULL;
	uint64_t seq = cm ? cm->seq : 0;
	if (t->built && seq == t->cm_seq)
		return;
	tg_settings_t next;
	stats->settings_errors = (uint32_t)tg_settings_from_configmap(
	    cm ? cm->u.configmap.data : NULL, cm ? cm->u.configmap.n_data : 0, &t->settings,
	    t->cm_id ? t->cm_id : "-", &next);
	t->settings = next;
	t->cm_seq = seq;
}

tg_snapshot_t *tg_translator_build(tg_translator_t *t, const tg_store_t *st,
				   tg_build_stats_t *stats_out)
{
	double t0 = now_ms(), c0 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
	tg_build_stats_t stats = {0};
	build_t b = {.t = t, .st = st, .stats = &stats};
	class_info_t ci = {0};
	order_key_t *owned = NULL;
	tg_snapshot_t *s = NULL;
	uint32_t n_ing;
	tg_object_t *const *ings = tg_store_list(st, TG_KIND_INGRESS, &n_ing);
	stats.ingresses = n_ing;

	update_settings(t, st, &stats);
	b.a = tg_arena_new(64 * 1024);
	b.keys = tg_arena_new(16 * 1024);
	if (!b.a || !b.keys)
		goto fail;
	s = tg_arena_alloc(b.a, sizeof(*s));
	b.rb = tg_router_builder_new(b.a);
	if (!s || !b.rb || class_info_init(t, st, &ci))
		goto fail;
	snap_priv_t *priv = tg_arena_alloc(b.a, sizeof(*priv));
	if (!priv)
		goto fail;
	priv->arena = b.a;
	atomic_init(&s->refs, 1);
	s->settings = t->settings;
	s->priv = priv;
	t->builds++;

	owned = malloc((n_ing ? n_ing : 1) * sizeof(*owned));
	if (!owned)
		goto fail;
	uint32_t n_owned = 0;
	for (uint32_t i = 0; i < n_ing; i++) {
		const tg_object_t *o = ings[i];
		if (TG_UNLIKELY(o->u.ingress.ann.canary) && owns(t, &ci, o)) {
			/* Routed, it would take the primary's paths whole (or be
			 * shadowed by it) depending on age: the primary keeps them. */
			if (o->seq > t->warned_seq)
				tg_warn("ingress",
					"Ingress %s/%s: canary Ingresses are not supported (no "
					"traffic splitting); it is not routed, the primary Ingress "
					"serves all traffic",
					o->ns, o->name);
			continue;
		}
		if (owns(t, &ci, o))
			owned[n_owned++] =
			    (order_key_t){o->created, prefix8(o->ns), prefix8(o->name), o};
	}
	qsort(owned, n_owned, sizeof(*owned), ingress_order);
	size_t n_rules = 0, n_paths = 0;
	for (uint32_t i = 0; i < n_owned; i++) {
		const tg_ingress_spec_t *ing = &owned[i].o->u.ingress;
		if (mark_regex_hosts(&b, owned[i].o))
			goto fail;
		n_rules += ing->n_rules;
		for (uint32_t r = 0; r < ing->n_rules; r++)
			n_paths += ing->rules[r].n_paths;
	}
	if (tg_router_reserve(b.rb, n_rules, n_paths) || tg_strmap_reserve(&b.bmap, n_paths))
		goto fail;
	/* TLS store: Secrets and client-auth policies in routing order. */
	if (tg_tls_build_begin(t->tls, st, &t->settings) ||
	    tg_extra_build_begin(t->extra, st, b.a, &s->settings))
		goto fail;
	for (uint32_t i = 0; i < n_owned; i++)
		if (tg_tls_build_add_ingress(t->tls, st, owned[i].o,
					     owned[i].o->seq > t->warned_seq) ||
		    add_ingress(&b, owned[i].o))
			goto fail;
	/* NULL (logged): HTTPS connections are refused, HTTP keeps routing. */
	s->tls = tg_tls_build_finish(t->tls);
	stats.ingresses_routed = n_owned;
	s->n_ingresses = n_owned;

	s->backends = tg_arena_array(b.a, b.n_backends, sizeof(tg_backend_t));
	if (!s->backends)
		goto fail;
	for (uint32_t i = 0; i < b.n_backends; i++) {
		if (resolve_endpoints(&b, &b.backends[i]))
			goto fail;
		s->backends[i] = b.backends[i].b;
	}
	s->n_backends = b.n_backends;
	priv->shared = tg_arena_array(b.a, b.n_shared, sizeof(epset_t *));
	if (!priv->shared)
		goto fail;
	if (b.n_shared)
		memcpy(priv->shared, b.shared, b.n_shared * sizeof(epset_t *));
	priv->n_shared = b.n_shared;
	b.n_shared = 0; /* the snapshot holds those references now */
	int xerr;
	priv->extra = tg_extra_build_finish(t->extra, &xerr);
	if (xerr)
		goto fail;
	evict(t);
	for (uint32_t i = 0; i < b.n_patches; i++)
		b.patches[i].route->backend = &s->backends[b.patches[i].backend];
	s->router = tg_router_build(b.rb);
	b.rb = NULL;
	if (!s->router)
		goto fail;
	tg_router_stats_t rs;
	tg_router_stats(s->router, &rs);
	stats.hosts = rs.hosts;
	stats.wildcards = rs.wildcards;
	stats.routes = rs.routes;
	stats.backends = b.n_backends;
	stats.bytes = tg_arena_footprint(b.a);
	t->built = true;
	t->warned_seq = tg_store_seq(st);
	stats.build_ms = now_ms() - t0;
	stats.build_cpu_ms = clock_ms(CLOCK_THREAD_CPUTIME_ID) - c0;
	goto out;
fail:
	tg_error("ingress", "snapshot build failed: out of memory");
	tg_tls_build_abort(t->tls);
	tg_extra_build_abort(t->extra);
	for (uint32_t i = 0; i < b.n_shared; i++)
		epset_unref(b.shared[i]);
	tg_router_builder_free(b.rb);
	if (s && s->priv)
		tg_snapshot_destroy(s); /* frees the arena too */
	else
		tg_arena_free(b.a);
	s = NULL;
out:
	free(owned);
	free(b.backends);
	free(b.patches);
	tg_strmap_free(&b.bmap);
	tg_strmap_free(&b.regex_hosts);
	free(b.shared);
	tg_strmap_free(&ci.ours);
	tg_arena_free(b.keys);
	if (stats_out)
		*stats_out = stats;
	return s;
}

/*
 * translate.h - builds a routing snapshot from the object store.
 *
 * Ownership (which Ingresses tidegate routes; it never routes the others):
 *   1. spec.ingressClassName set: ours when an IngressClass of that name has
 *      spec.controller == --controller-class.
 *   2. else the kubernetes.io/ingress.class annotation set: ours when it
 *      equals --ingress-class.
 *   3. else (no class at all): ours when --watch-ingress-without-class is on,
 *      or when one of our IngressClasses carries
 *      ingressclass.kubernetes.io/is-default-class: "true".
 *
 * Conflicts (documented order, stable across reloads and independent of file
 * or event order): owned Ingresses are sorted by metadata.creationTimestamp,
 * oldest first (an absent timestamp counts as the oldest possible), then by
 * namespace, then by name. Rules are added in that order and, inside one
 * Ingress, in document order; when two rules claim the same host, path type
 * and path (Prefix paths compared without trailing slashes) the first one
 * keeps it and the later one is reported as shadowed.
 *
 * Matching (router.h). The request's host is matched first and selects one
 * rule set, as the API reference says ("Incoming requests are first evaluated
 * for a host match, then routed to the backend associated with the matching
 * IngressRuleValue") and as ingress-nginx's server blocks do:
 *   1. a precise host named by some rule (case-insensitive, port ignored);
 *   2. else the wildcard "*.suffix" covering it (exactly one label);
 *   3. else the rules without host.
 * Inside the selected set: Exact on the whole path, then the longest
 * segment-wise Prefix. A request whose host selected 1 or 2 but whose path
 * matches none of that host's paths does NOT fall through to a wildcard or
 * to the rules without host: it gets the spec.defaultBackend of the first
 * Ingress (in the order above) that declared that host, in any rule, with
 * or without paths; when that Ingress has no defaultBackend, 404. This is
 * what ingress-nginx does (each host is a server block whose "/" location is
 * the declaring Ingress's defaultBackend, else its 404 backend).
 * A request that selected 3 and matched no path there, or matched no host at
 * all, gets the global default route: spec.defaultBackend of the first
 * Ingress in the order above that has one (with or without rules, which is
 * what the spec says; ingress-nginx only honours rule-less Ingresses there,
 * a deviation its maintainers track as a bug, kubernetes/ingress-nginx#9030),
 * else 404.
 *
 * Annotations (annotations.h, extra.h): an owned Ingress that is refused
 * (unsupported protection or protocol, bad security value) is still added in
 * the order above, so its hosts and paths stay claimed, but every route of it
 * carries extra->denied and answers 503: it is never served unprotected and
 * its paths never fall through to another Ingress. A canary Ingress
 * (canary: "true") is not routed at all. On a host where any Ingress sets
 * use-regex or rewrite-target, every Prefix path of every Ingress on that
 * host is a case-insensitive regex "^path" (ingress-nginx's server-wide
 * switch), tried after Exact paths, longest path text first
 * (router.h: tg_router_add_regex).
 *
 * Backends: one tg_backend_t per (namespace, Service, port as written,
 * backend-protocol), ids dense from 0. A port number names the Service port
 * with that `port`, a port name the Service port with that `name`; the pods'
 * port is the one of the same name in each EndpointSlice labelled
 * kubernetes.io/service-name=<Service> (a slice without ports uses the
 * numeric targetPort, else the Service port). Endpoints: the first address of
 * each ready endpoint (absent ready counts as ready); when none is ready,
 * those serving and terminating. Duplicates across slices are merged; order
 * is sorted by address. A missing Service or port gives routes whose backend
 * is NULL (the proxy answers 503), never the cluster IP.
 */
#ifndef TG_INGRESS_TRANSLATE_H
#define TG_INGRESS_TRANSLATE_H

#include "ingress/snapshot.h"
#include "ingress/store.h"

#include <stddef.h>

typedef struct tg_translate_config {
	const char *ingress_class;	  /* --ingress-class (legacy annotation value) */
	const char *controller_class;	  /* --controller-class (IngressClass spec.controller) */
	bool watch_ingress_without_class; /* --watch-ingress-without-class */
	const char *configmap;		  /* --configmap "ns/name", or NULL */
} tg_translate_config_t;

/* What one build produced, for the reload log line and metrics. */
typedef struct tg_build_stats {
	uint32_t ingresses;	   /* Ingresses in the store */
	uint32_t ingresses_routed; /* owned (and valid) Ingresses in the snapshot */
	uint32_t hosts;		   /* precise hosts */
	uint32_t wildcards;	   /* wildcard hosts */
	uint32_t routes;	   /* distinct (host, type, path) routes */
	uint32_t shadowed;	   /* paths hidden by an earlier Ingress or rule */
	uint32_t backends;	   /* backends */
	uint32_t endpoints;	   /* distinct endpoints (per Service port) over all backends */
	uint32_t unresolved;	   /* routes whose Service or port does not exist */
	uint32_t settings_errors;  /* ConfigMap keys rejected in this build */
	uint32_t refused;	   /* owned Ingresses whose routes answer 503 (unsupported
				    * security annotation, bad source range, ...) */
	double build_ms;	   /* wall time of the build */
	double build_cpu_ms;	   /* CPU time of the build (thread), steadier on a busy box */
	size_t bytes;		   /* snapshot arena footprint */
} tg_build_stats_t;

typedef struct tg_translator tg_translator_t;

/* Creates a translator; the strings in cfg are copied. NULL on failure. */
tg_translator_t *tg_translator_new(const tg_translate_config_t *cfg);

/* Frees it. Accepts NULL. */
void tg_translator_free(tg_translator_t *t);

/*
 * Builds a complete snapshot (refs == 1, generation 0: tg_snapshot_publish
 * assigns it) from the store. The translator remembers the effective settings
 * (a bad ConfigMap value keeps the previous one) and which objects it has
 * already warned about. Returns NULL only on allocation failure. stats may be
 * NULL.
 */
tg_snapshot_t *tg_translator_build(tg_translator_t *t, const tg_store_t *st,
				   tg_build_stats_t *stats);

/* Frees what a snapshot built here owns (its arena and its references to
 * endpoint sets shared between snapshots). Called by tg_snapshot_release()
 * with the last reference; not for direct use. */
void tg_snapshot_destroy(tg_snapshot_t *s);

/* True when the translator's ownership rules claim this Ingress. */
bool tg_translator_owns(const tg_translator_t *t, const tg_store_t *st, const tg_object_t *ing);

#endif

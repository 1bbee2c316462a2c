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
 * keeps it and the later one is reported as shadowed. The route used when
 * nothing matches is spec.defaultBackend of the first Ingress in that order
 * that has one.
 *
 * Matching precedence (router.h): precise host, then the wildcard covering it,
 * then rules without host, then the default backend; inside each, Exact on
 * the whole path, then the longest segment-wise Prefix.
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

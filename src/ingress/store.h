/*
 * store.h - the current Kubernetes objects, keyed by kind/namespace/name.
 *
 * Every source feeds it the same way, one object at a time: the manifest
 * directory applies what each file contains, and a Kubernetes API watcher
 * would apply ADDED/MODIFIED events and delete on DELETED. The snapshot
 * builder (translate.h) reads it. Only invalid objects are kept out (they
 * never get past tg_object_parse), so the store always holds each object's
 * last good version.
 *
 * Not thread-safe: one source thread owns the store; builds run on that same
 * thread.
 */
#ifndef TG_INGRESS_STORE_H
#define TG_INGRESS_STORE_H

#include "ingress/object.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct tg_store tg_store_t;

/* Creates an empty store (NULL on allocation failure). */
tg_store_t *tg_store_new(void);

/* Frees the store and every object in it. Accepts NULL. */
void tg_store_free(tg_store_t *st);

/*
 * Adds obj, or replaces the object with the same kind/ns/name. Takes
 * ownership of obj in every case. When the stored version has the same
 * digest (unchanged content), obj is freed, only its owner tag is taken, and
 * the store's sequence does not move. Returns 1 when the store changed, 0
 * when unchanged, -ENOMEM (obj freed, store unchanged).
 */
int tg_store_apply(tg_store_t *st, tg_object_t *obj);

/* Removes and frees the object; returns true when there was one. */
bool tg_store_delete(tg_store_t *st, tg_kind_t kind, const char *ns, const char *name);

/* The stored object, or NULL. The pointer is valid until the object is
 * replaced or deleted. */
const tg_object_t *tg_store_get(const tg_store_t *st, tg_kind_t kind, const char *ns,
				const char *name);

/* All objects of a kind, in no particular order; *n receives the count. Valid
 * until the next apply or delete. */
tg_object_t *const *tg_store_list(const tg_store_t *st, tg_kind_t kind, uint32_t *n);

/* The EndpointSlices labelled kubernetes.io/service-name=<service> in ns;
 * *n receives the count. Valid until the next apply or delete. */
tg_object_t *const *tg_store_slices(const tg_store_t *st, const char *ns, const char *service,
				    uint32_t *n);

/* The same, with the group's version: the store seq of the last change to
 * this Service's set of slices (a slice added, replaced or removed); 0 when
 * there are none. Equal versions mean identical slices. */
tg_object_t *const *tg_store_slices_version(const tg_store_t *st, const char *ns,
					    const char *service, uint32_t *n, uint64_t *version);

/* Change counter: increases with every apply that changed something and every
 * delete. Objects record the value they were applied at in obj->seq. */
uint64_t tg_store_seq(const tg_store_t *st);

#endif

/*
 * manifest.h - one manifest file (YAML, multi-document YAML or JSON) turned
 * into Kubernetes objects. `kind: List` (and any `*List` with `items`) is
 * unpacked. Kinds tidegate does not read are skipped (logged once per kind).
 *
 * A file either parses as a whole or fails as a whole: a YAML syntax error, or
 * an object whose kind/namespace/name cannot even be read, fails the file
 * (its caller keeps the file's last good objects in force). An object that is
 * identified but invalid (bad annotation value, bad path type...) is reported
 * as a rejected item: the rest of the file still applies, and that object's
 * last good version stays.
 */
#ifndef TG_INGRESS_MANIFEST_H
#define TG_INGRESS_MANIFEST_H

#include "ingress/object.h"

#include <stddef.h>

/* One object found in a file. */
typedef struct tg_manifest_item {
	tg_object_t *obj;	 /* the parsed object (owned until taken), or NULL when rejected */
	tg_object_error_t error; /* when obj is NULL: why, with kind/ns/name identified */
} tg_manifest_item_t;

typedef struct tg_manifest {
	tg_manifest_item_t *items; /* objects in file order */
	size_t n_items;		   /* entries in items */
	size_t cap;		   /* entries allocated */
	bool failed;		   /* the file as a whole is unusable */
	int line;		   /* when failed: 1-based line (0 unknown) */
	char reason[420];	   /* when failed: why */
} tg_manifest_t;

/*
 * Parses len bytes of text. `name` is only used to pick JSON mode (".json")
 * and never opened. Returns 0 (look at m->failed) or -ENOMEM. The manifest
 * owns the objects still in its items; tg_manifest_free frees them.
 */
int tg_manifest_parse(const char *name, const char *text, size_t len, tg_manifest_t *m);

/* Frees the items and the objects not taken (set item->obj = NULL to take
 * one). The manifest is empty afterwards. */
void tg_manifest_free(tg_manifest_t *m);

#endif

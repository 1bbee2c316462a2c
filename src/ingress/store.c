#include "ingress/store.h"
#include "ingress/strmap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable array of object pointers; objects know their index in it. */
typedef struct objvec {
	tg_object_t **v; /* entries */
	uint32_t n;	 /* used */
	uint32_t cap;	 /* allocated */
} objvec_t;

/* The slices of one Service: key "ns/service". */
typedef struct slice_group {
	objvec_t slices;  /* EndpointSlices of the Service */
	uint64_t version; /* store seq of the last change to the group */
	size_t key_len;	  /* bytes of key */
	char key[];	  /* "ns/service", the map key */
} slice_group_t;

struct tg_store {
	tg_strmap_t objects;	       /* obj->key -> obj */
	objvec_t kinds[TG_KIND_COUNT]; /* per-kind lists for iteration */
	tg_strmap_t groups;	       /* "ns/service" -> slice_group_t */
	uint64_t seq;		       /* change counter */
};

static int vec_push(objvec_t *v, tg_object_t *o, uint32_t *index)
{
	if (v->n == v->cap) {
		uint32_t ncap = v->cap ? v->cap * 2 : 16;
		tg_object_t **nv = realloc(v->v, ncap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		v->v = nv;
		v->cap = ncap;
	}
	*index = v->n;
	v->v[v->n++] = o;
	return 0;
}

/* Removes entry i by moving the last entry into it; `group` selects which
 * index field of the moved object to update. */
static void vec_remove(objvec_t *v, uint32_t i, bool group)
{
	tg_object_t *last = v->v[--v->n];
	if (i < v->n) {
		v->v[i] = last;
		if (group)
			last->group_index = i;
		else
			last->kind_index = i;
	}
}

tg_store_t *tg_store_new(void)
{
	return calloc(1, sizeof(tg_store_t));
}

static size_t group_key(const char *ns, const char *svc, char *buf, size_t len)
{
	size_t a = strlen(ns), b = strlen(svc);
	if (a + b + 2 > len)
		return 0;
	memcpy(buf, ns, a);
	buf[a] = '/';
	memcpy(buf + a + 1, svc, b + 1);
	return a + b + 1;
}

static slice_group_t *group_of(const tg_store_t *st, const tg_object_t *o)
{
	char key[400];
	size_t kl = group_key(o->ns, o->u.slice.service, key, sizeof(key));
	return kl ? tg_strmap_get(&st->groups, key, kl) : NULL;
}

static int index_add(tg_store_t *st, tg_object_t *o)
{
	if (vec_push(&st->kinds[o->kind], o, &o->kind_index))
		return -ENOMEM;
	if (o->kind != TG_KIND_ENDPOINTSLICE || !o->u.slice.service)
		return 0;
	slice_group_t *g = group_of(st, o);
	if (!g) {
		char key[400];
		size_t kl = group_key(o->ns, o->u.slice.service, key, sizeof(key));
		g = kl ? calloc(1, sizeof(*g) + kl + 1) : NULL;
		if (!g)
			goto fail;
		memcpy(g->key, key, kl + 1);
		g->key_len = kl;
		if (tg_strmap_put(&st->groups, g->key, kl, g, NULL)) {
			free(g);
			goto fail;
		}
	}
	if (vec_push(&g->slices, o, &o->group_index) == 0) {
		g->version = st->seq + 1;
		return 0;
	}
fail:
	vec_remove(&st->kinds[o->kind], o->kind_index, false);
	return -ENOMEM;
}

static void index_remove(tg_store_t *st, tg_object_t *o)
{
	vec_remove(&st->kinds[o->kind], o->kind_index, false);
	if (o->kind != TG_KIND_ENDPOINTSLICE || !o->u.slice.service)
		return;
	slice_group_t *g = group_of(st, o);
	if (!g)
		return;
	vec_remove(&g->slices, o->group_index, true);
	g->version = st->seq + 1;
	if (g->slices.n == 0) {
		tg_strmap_del(&st->groups, g->key, g->key_len);
		free(g->slices.v);
		free(g);
	}
}

int tg_store_apply(tg_store_t *st, tg_object_t *obj)
{
	tg_object_t *old = tg_strmap_get(&st->objects, obj->key, obj->key_len);
	if (old && old->digest == obj->digest) {
		old->owner = obj->owner;
		tg_object_free(obj);
		return 0;
	}
	obj->seq = st->seq + 1;
	if (index_add(st, obj)) {
		tg_object_free(obj);
		return -ENOMEM;
	}
	if (tg_strmap_put(&st->objects, obj->key, obj->key_len, obj, NULL)) {
		index_remove(st, obj);
		tg_object_free(obj);
		return -ENOMEM;
	}
	if (old) {
		index_remove(st, old);
		tg_object_free(old);
	}
	st->seq++;
	return 1;
}

bool tg_store_delete(tg_store_t *st, tg_kind_t kind, const char *ns, const char *name)
{
	char key[400];
	size_t kl = tg_object_key(kind, ns, name, key, sizeof(key));
	tg_object_t *o = kl ? tg_strmap_del(&st->objects, key, kl) : NULL;
	if (!o)
		return false;
	index_remove(st, o);
	tg_object_free(o);
	st->seq++;
	return true;
}

const tg_object_t *tg_store_get(const tg_store_t *st, tg_kind_t kind, const char *ns,
				const char *name)
{
	char key[400];
	size_t kl = tg_object_key(kind, ns, name, key, sizeof(key));
	return kl ? tg_strmap_get(&st->objects, key, kl) : NULL;
}

tg_object_t *const *tg_store_list(const tg_store_t *st, tg_kind_t kind, uint32_t *n)
{
	*n = st->kinds[kind].n;
	return st->kinds[kind].v;
}

tg_object_t *const *tg_store_slices_version(const tg_store_t *st, const char *ns,
					    const char *service, uint32_t *n, uint64_t *version)
{
	char key[400];
	size_t kl = group_key(ns, service, key, sizeof(key));
	slice_group_t *g = kl ? tg_strmap_get(&st->groups, key, kl) : NULL;
	*n = g ? g->slices.n : 0;
	if (version)
		*version = g ? g->version : 0;
	return g ? g->slices.v : NULL;
}

tg_object_t *const *tg_store_slices(const tg_store_t *st, const char *ns, const char *service,
				    uint32_t *n)
{
	return tg_store_slices_version(st, ns, service, n, NULL);
}

uint64_t tg_store_seq(const tg_store_t *st)
{
	return st->seq;
}

void tg_store_free(tg_store_t *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->objects.cap; i++)
		if (st->objects.slots[i].key)
			tg_object_free(st->objects.slots[i].value);
	for (size_t i = 0; i < st->groups.cap; i++)
		if (st->groups.slots[i].key) {
			slice_group_t *g = st->groups.slots[i].value;
			free(g->slices.v);
			free(g);
		}
	for (int k = 0; k < TG_KIND_COUNT; k++)
		free(st->kinds[k].v);
	tg_strmap_free(&st->objects);
	tg_strmap_free(&st->groups);
	free(st);
}

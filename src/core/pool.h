/*
 * pool.h - free list of fixed-size objects (connection structs), one per
 * worker, so that the hot path does not call malloc. Single-threaded.
 */
#ifndef TG_CORE_POOL_H
#define TG_CORE_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct tg_pool {
	void *free;	   /* singly linked through each object's first word */
	size_t size;	   /* object size in bytes (>= sizeof(void *)) */
	uint32_t nfree;	   /* objects cached in free */
	uint32_t max_free; /* cache at most this many */
	uint64_t live;	   /* objects handed out and not returned */
} tg_pool_t;

/* Prepares an empty pool of objects of obj_size bytes. */
void tg_pool_init(tg_pool_t *p, size_t obj_size, uint32_t max_free);

/* Frees the cached objects. */
void tg_pool_destroy(tg_pool_t *p);

/* Returns an object with unspecified contents, or NULL when out of memory. */
void *tg_pool_get(tg_pool_t *p);

/* Returns an object obtained from tg_pool_get. Accepts NULL. */
void tg_pool_put(tg_pool_t *p, void *obj);

#endif

/*
 * pool.h - free list of fixed-size objects (connection structs, exchanges),
 * one per worker, so that the hot path does not call malloc. Single-threaded.
 *
 * Objects of TG_POOL_MAP_MIN bytes or more get pages of their own (mmap) and
 * are unmapped when returned beyond max_free: after a burst, what is not
 * cached goes back to the kernel at once instead of staying resident in the
 * malloc heap, pinned there by the small objects allocated around it.
 */
#ifndef TG_CORE_POOL_H
#define TG_CORE_POOL_H

#include <stddef.h>
#include <stdint.h>

#define TG_POOL_MAP_MIN 4096 /* objects this large are mapped, not malloc'd */

typedef struct tg_pool {
	void *free;	   /* singly linked through each object's first word */
	size_t size;	   /* object size in bytes (>= sizeof(void *)) */
	size_t map_len;	   /* bytes mapped per object (size rounded up to pages), 0:
			    * objects come from malloc */
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

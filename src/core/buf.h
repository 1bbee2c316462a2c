/*
 * buf.h - I/O buffers and per-worker free lists of them.
 *
 * Pool buffers are mapped pages of their own (header, then storage): one not
 * cached when returned is unmapped at once, and a cached one that held a small
 * message has only its first page resident. After a burst of connections the
 * memory goes back to the kernel instead of staying in the malloc heap.
 *
 * Invariant (nginx's): start <= pos <= last <= end. [start, end) is the storage,
 * [pos, last) the bytes not consumed yet, [last, end) free space to read into.
 * A pool is single-threaded: each worker owns its own.
 */
#ifndef TG_CORE_BUF_H
#define TG_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct tg_buf {
	char *start;	     /* first byte of storage */
	char *pos;	     /* first unconsumed byte */
	char *last;	     /* one past the last valid byte */
	char *end;	     /* one past the storage */
	struct tg_buf *next; /* free-list link while pooled */
	size_t map_len;	     /* bytes mapped for header + storage (pool buffers),
			      * 0: malloc'd (tg_buf_alloc) */
} tg_buf_t;

typedef struct tg_bufpool {
	tg_buf_t *free;	   /* cached buffers */
	size_t size;	   /* storage bytes of every buffer of this pool */
	uint32_t nfree;	   /* entries in free */
	uint32_t max_free; /* cache at most this many; extra ones are freed */
	uint64_t live;	   /* buffers handed out and not returned */
} tg_bufpool_t;

/* Prepares an empty pool of buffers of `size` bytes. */
void tg_bufpool_init(tg_bufpool_t *p, size_t size, uint32_t max_free);

/* Frees every cached buffer (buffers still handed out are the caller's). */
void tg_bufpool_destroy(tg_bufpool_t *p);

/* Returns an empty buffer (pos == last == start), or NULL when out of memory.
 * The caller owns it until tg_buf_put. */
tg_buf_t *tg_buf_get(tg_bufpool_t *p);

/* Allocates a buffer of `size` bytes outside any pool (rare large heads).
 * Release it with tg_buf_put too: a size that does not match the pool frees it. */
tg_buf_t *tg_buf_alloc(size_t size);

/* Returns b to the pool (or frees it). Accepts NULL. */
void tg_buf_put(tg_bufpool_t *p, tg_buf_t *b);

/* Moves [pos, last) to start so that the free space is contiguous. */
void tg_buf_compact(tg_buf_t *b);

static inline size_t tg_buf_size(const tg_buf_t *b)
{
	return (size_t)(b->end - b->start);
}

static inline size_t tg_buf_avail(const tg_buf_t *b)
{
	return (size_t)(b->last - b->pos);
}

static inline size_t tg_buf_space(const tg_buf_t *b)
{
	return (size_t)(b->end - b->last);
}

#endif

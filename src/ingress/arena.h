/*
 * arena.h - bump allocator for memory that dies all at once: a routing
 * snapshot (thousands of routes, backends and endpoints freed with one call
 * when its last reference goes) and one parsed Kubernetes object.
 *
 * Memory comes in chunks that double in size up to a cap; an allocation larger
 * than half a chunk gets a chunk of its own. Nothing is freed individually.
 * Not thread-safe: one builder owns an arena until it hands it over.
 */
#ifndef TG_INGRESS_ARENA_H
#define TG_INGRESS_ARENA_H

#include <stddef.h>

typedef struct tg_arena tg_arena_t;

/* Creates an arena whose first chunk holds about `first` bytes (0: a small
 * default). Returns NULL on allocation failure. */
tg_arena_t *tg_arena_new(size_t first);

/* Returns `size` bytes aligned for any type, zero-filled, or NULL on
 * allocation failure (also for size overflow). Owned by the arena. */
void *tg_arena_alloc(tg_arena_t *a, size_t size);

/* Array of n elements of `size` bytes, zero-filled; NULL on overflow or
 * allocation failure. n == 0 returns a valid non-NULL pointer. */
void *tg_arena_array(tg_arena_t *a, size_t n, size_t size);

/* Copies len bytes of p and appends a NUL. NULL on allocation failure. */
char *tg_arena_strndup(tg_arena_t *a, const char *p, size_t len);

/* Copies the NUL-terminated string s (NULL stays NULL). */
char *tg_arena_strdup(tg_arena_t *a, const char *s);

/* Bytes obtained from malloc for this arena (chunks included), for metrics and
 * the scale report. */
size_t tg_arena_footprint(const tg_arena_t *a);

/* Frees every chunk and the arena. Accepts NULL. */
void tg_arena_free(tg_arena_t *a);

#endif

/*
 * strmap.h - open-addressing hash map from a byte-string key to a pointer, for
 * the object store and the snapshot builder (cold paths; it allocates).
 *
 * Keys are not copied: the caller keeps each key's bytes alive and unchanged
 * while the entry exists (typically the key lives inside the value). Linear
 * probing with backward-shift deletion, so lookups never cross tombstones.
 */
#ifndef TG_INGRESS_STRMAP_H
#define TG_INGRESS_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tg_strmap_slot {
	const char *key; /* NULL: empty slot */
	size_t len;	 /* key bytes */
	uint64_t hash;	 /* tg_hash_bytes(key, len, seed) */
	void *value;	 /* caller's pointer */
} tg_strmap_slot_t;

typedef struct tg_strmap {
	tg_strmap_slot_t *slots; /* cap entries (power of two) or NULL when empty */
	size_t cap;		 /* slots allocated */
	size_t n;		 /* slots in use */
	uint64_t seed;		 /* random, chosen at first insertion */
} tg_strmap_t;

/* A zeroed tg_strmap_t is an empty map; this is the same. */
void tg_strmap_init(tg_strmap_t *m);

/* Returns the value stored under the key, or NULL. */
void *tg_strmap_get(const tg_strmap_t *m, const char *key, size_t len);

/* Stores value under key, replacing (and returning through *old, when old is
 * not NULL) any previous value. Returns 0 or -ENOMEM. */
int tg_strmap_put(tg_strmap_t *m, const char *key, size_t len, void *value, void **old);

/*
 * Finds key, inserting it with a NULL value when absent (*created tells
 * which); one probe instead of a get followed by a put. On insertion the slot
 * keeps the given key pointer: the caller may repoint slot->key at another
 * copy of the same bytes (e.g. a persistent one) and sets slot->value. The
 * slot pointer is valid until the next insertion. NULL on -ENOMEM.
 */
tg_strmap_slot_t *tg_strmap_upsert(tg_strmap_t *m, const char *key, size_t len, bool *created);

/* Makes room for n entries in total so that inserting them never rehashes.
 * Returns 0 or -ENOMEM. */
int tg_strmap_reserve(tg_strmap_t *m, size_t n);

/* Removes the key; returns its value or NULL when absent. */
void *tg_strmap_del(tg_strmap_t *m, const char *key, size_t len);

/* Frees the table (not the values); the map is empty afterwards. */
void tg_strmap_free(tg_strmap_t *m);

/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ...
 * Do not insert or delete while iterating. */

/* A random 64-bit seed (getrandom, falling back to the clock). */
uint64_t tg_strmap_random_seed(void);

#endif

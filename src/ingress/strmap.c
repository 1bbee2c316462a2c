#include "ingress/strmap.h"
#include "ingress/hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

uint64_t tg_strmap_random_seed(void)
{
	uint64_t s;
	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		s = tg_hash_mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
				(uint64_t)(uintptr_t)&ts);
	}
	return s;
}

void tg_strmap_init(tg_strmap_t *m)
{
	memset(m, 0, sizeof(*m));
}

static size_t find(const tg_strmap_t *m, const char *key, size_t len, uint64_t h)
{
	size_t mask = m->cap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		const tg_strmap_slot_t *s = &m->slots[i];
		if (!s->key)
			return i;
		if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
			return i;
	}
}

void *tg_strmap_get(const tg_strmap_t *m, const char *key, size_t len)
{
	if (!m->n)
		return NULL;
	size_t i = find(m, key, len, tg_hash_bytes(key, len, m->seed));
	return m->slots[i].key ? m->slots[i].value : NULL;
}

static int resize(tg_strmap_t *m, size_t ncap)
{
	tg_strmap_slot_t *ns = calloc(ncap, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	tg_strmap_slot_t *old = m->slots;
	size_t ocap = m->cap;
	m->slots = ns;
	m->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		if (!old[i].key)
			continue;
		size_t j = find(m, old[i].key, old[i].len, old[i].hash);
		m->slots[j] = old[i];
	}
	free(old);
	return 0;
}

static int grow(tg_strmap_t *m)
{
	return resize(m, m->cap ? m->cap * 2 : 16);
}

int tg_strmap_reserve(tg_strmap_t *m, size_t n)
{
	size_t cap = m->cap ? m->cap : 16;
	while (cap < n * 2)
		cap *= 2;
	if (!m->cap)
		m->seed = tg_strmap_random_seed();
	return cap > m->cap ? resize(m, cap) : 0;
}

int tg_strmap_put(tg_strmap_t *m, const char *key, size_t len, void *value, void **old)
{
	if (old)
		*old = NULL;
	if (!m->cap)
		m->seed = tg_strmap_random_seed();
	/* Keep the load under 1/2: probes stay short even with clustering. */
	if ((m->n + 1) * 2 > m->cap && grow(m))
		return -ENOMEM;
	uint64_t h = tg_hash_bytes(key, len, m->seed);
	size_t i = find(m, key, len, h);
	tg_strmap_slot_t *s = &m->slots[i];
	if (s->key) {
		if (old)
			*old = s->value;
		s->key = key; /* the new value owns the key bytes now */
		s->value = value;
		return 0;
	}
	s->key = key;
	s->len = len;
	s->hash = h;
	s->value = value;
	m->n++;
	return 0;
}

tg_strmap_slot_t *tg_strmap_upsert(tg_strmap_t *m, const char *key, size_t len, bool *created)
{
	if (!m->cap)
		m->seed = tg_strmap_random_seed();
	if ((m->n + 1) * 2 > m->cap && grow(m))
		return NULL;
	uint64_t h = tg_hash_bytes(key, len, m->seed);
	tg_strmap_slot_t *s = &m->slots[find(m, key, len, h)];
	*created = s->key == NULL;
	if (*created) {
		s->key = key;
		s->len = len;
		s->hash = h;
		s->value = NULL;
		m->n++;
	}
	return s;
}

void *tg_strmap_del(tg_strmap_t *m, const char *key, size_t len)
{
	if (!m->n)
		return NULL;
	size_t mask = m->cap - 1;
	size_t i = find(m, key, len, tg_hash_bytes(key, len, m->seed));
	if (!m->slots[i].key)
		return NULL;
	void *v = m->slots[i].value;
	/* Backward-shift: pull later members of the probe run into the hole so
	 * that no lookup stops early at it. */
	size_t hole = i;
	for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
		size_t home = m->slots[j].hash & mask;
		/* j may move to hole when its home is not in (hole, j]. */
		int movable = (hole <= j) ? (home <= hole || home > j) : (home <= hole && home > j);
		if (movable) {
			m->slots[hole] = m->slots[j];
			hole = j;
		}
	}
	memset(&m->slots[hole], 0, sizeof(m->slots[hole]));
	m->n--;
	return v;
}

void tg_strmap_free(tg_strmap_t *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

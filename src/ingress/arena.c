#include "ingress/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN	(alignof(max_align_t))
#define ARENA_MIN_CHUNK 512
#define ARENA_MAX_CHUNK (1u << 20)

struct chunk {
	struct chunk *next; /* previously filled chunk */
	size_t size;	    /* usable bytes after the header */
	size_t used;	    /* bytes handed out */
	alignas(max_align_t) unsigned char data[];
};

struct tg_arena {
	struct chunk *head; /* chunk being filled (a dedicated big chunk goes second) */
	size_t next_size;   /* size of the next regular chunk */
	size_t footprint;   /* total bytes malloc'ed */
};

static struct chunk *chunk_new(tg_arena_t *a, size_t size)
{
	if (size > SIZE_MAX - sizeof(struct chunk))
		return NULL;
	/* calloc: fresh pages from the kernel are already zero, so allocations
	 * need no memset of their own. */
	struct chunk *c = calloc(1, sizeof(*c) + size);
	if (!c)
		return NULL;
	c->next = NULL;
	c->size = size;
	c->used = 0;
	a->footprint += sizeof(*c) + size;
	return c;
}

tg_arena_t *tg_arena_new(size_t first)
{
	tg_arena_t *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->next_size = first < ARENA_MIN_CHUNK ? ARENA_MIN_CHUNK : first;
	a->footprint = sizeof(*a);
	return a;
}

void *tg_arena_alloc(tg_arena_t *a, size_t size)
{
	if (size > SIZE_MAX / 2)
		return NULL;
	size_t need = (size + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
	if (need == 0)
		need = ARENA_ALIGN;
	struct chunk *c = a->head;
	if (!c || c->size - c->used < need) {
		if (need > a->next_size / 2) {
			/* Big allocation: its own chunk, linked behind the current
			 * one so the current chunk keeps being filled. */
			struct chunk *big = chunk_new(a, need);
			if (!big)
				return NULL;
			if (c) {
				big->next = c->next;
				c->next = big;
			} else {
				a->head = big;
			}
			big->used = need;
			return big->data;
		}
		c = chunk_new(a, a->next_size);
		if (!c)
			return NULL;
		c->next = a->head;
		a->head = c;
		if (a->next_size < ARENA_MAX_CHUNK)
			a->next_size *= 2;
	}
	void *p = c->data + c->used;
	c->used += need;
	return p;
}

void *tg_arena_array(tg_arena_t *a, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / 4 / size)
		return NULL;
	return tg_arena_alloc(a, n * size);
}

char *tg_arena_strndup(tg_arena_t *a, const char *p, size_t len)
{
	if (len == SIZE_MAX)
		return NULL;
	char *s = tg_arena_alloc(a, len + 1);
	if (!s)
		return NULL;
	if (len)
		memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

char *tg_arena_strdup(tg_arena_t *a, const char *s)
{
	return s ? tg_arena_strndup(a, s, strlen(s)) : NULL;
}

size_t tg_arena_footprint(const tg_arena_t *a)
{
	return a ? a->footprint : 0;
}

void tg_arena_free(tg_arena_t *a)
{
	if (!a)
		return;
	struct chunk *c = a->head;
	while (c) {
		struct chunk *n = c->next;
		free(c);
		c = n;
	}
	free(a);
}

#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

void tg_bufpool_init(tg_bufpool_t *p, size_t size, uint32_t max_free)
{
	memset(p, 0, sizeof(*p));
	p->size = size;
	p->max_free = max_free;
}

void tg_bufpool_destroy(tg_bufpool_t *p)
{
	while (p->free) {
		tg_buf_t *b = p->free;
		p->free = b->next;
		free(b);
	}
	p->nfree = 0;
}

tg_buf_t *tg_buf_alloc(size_t size)
{
	/* Header and storage in one allocation: one malloc, one cache-friendly block. */
	tg_buf_t *b = malloc(sizeof(*b) + size);
	if (!b)
		return NULL;
	b->start = b->pos = b->last = (char *)(b + 1);
	b->end = b->start + size;
	b->next = NULL;
	return b;
}

tg_buf_t *tg_buf_get(tg_bufpool_t *p)
{
	tg_buf_t *b = p->free;
	if (b) {
		p->free = b->next;
		p->nfree--;
		b->pos = b->last = b->start;
		b->next = NULL;
	} else {
		b = tg_buf_alloc(p->size);
		if (!b)
			return NULL;
	}
	p->live++;
	return b;
}

void tg_buf_put(tg_bufpool_t *p, tg_buf_t *b)
{
	if (!b)
		return;
	if (tg_buf_size(b) != p->size) {
		free(b);
		return;
	}
	p->live--;
	if (p->nfree >= p->max_free) {
		free(b);
		return;
	}
	b->next = p->free;
	p->free = b;
	p->nfree++;
}

void tg_buf_compact(tg_buf_t *b)
{
	size_t n = tg_buf_avail(b);
	if (b->pos != b->start && n)
		memmove(b->start, b->pos, n);
	b->pos = b->start;
	b->last = b->start + n;
}

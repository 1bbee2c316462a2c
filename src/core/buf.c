#include "core/buf.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void tg_bufpool_init(tg_bufpool_t *p, size_t size, uint32_t max_free)
{
	memset(p, 0, sizeof(*p));
	p->size = size;
	p->max_free = max_free;
}

static void buf_free(tg_buf_t *b)
{
	if (b->map_len)
		munmap(b, b->map_len);
	else
		free(b);
}

void tg_bufpool_destroy(tg_bufpool_t *p)
{
	while (p->free) {
		tg_buf_t *b = p->free;
		p->free = b->next;
		buf_free(b);
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
	b->map_len = 0;
	return b;
}

/* A pool buffer: header and storage in pages of their own. */
static tg_buf_t *buf_map(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = (sizeof(tg_buf_t) + size + page - 1) / page * page;
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	tg_buf_t *b = m;
	b->start = b->pos = b->last = (char *)(b + 1);
	b->end = b->start + size;
	b->next = NULL;
	b->map_len = len;
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
		b = buf_map(p->size);
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
	if (!b->map_len || tg_buf_size(b) != p->size) {
		buf_free(b);
		return;
	}
	p->live--;
	if (p->nfree >= p->max_free) {
		buf_free(b);
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

#include "core/pool.h"

#include <stdlib.h>
#include <string.h>

void tg_pool_init(tg_pool_t *p, size_t obj_size, uint32_t max_free)
{
	memset(p, 0, sizeof(*p));
	p->size = obj_size < sizeof(void *) ? sizeof(void *) : obj_size;
	p->max_free = max_free;
}

void tg_pool_destroy(tg_pool_t *p)
{
	while (p->free) {
		void *o = p->free;
		memcpy(&p->free, o, sizeof(void *));
		free(o);
	}
	p->nfree = 0;
}

void *tg_pool_get(tg_pool_t *p)
{
	void *o = p->free;
	if (o) {
		memcpy(&p->free, o, sizeof(void *));
		p->nfree--;
	} else {
		o = malloc(p->size);
		if (!o)
			return NULL;
	}
	p->live++;
	return o;
}

void tg_pool_put(tg_pool_t *p, void *obj)
{
	if (!obj)
		return;
	p->live--;
	if (p->nfree >= p->max_free) {
		free(obj);
		return;
	}
	memcpy(obj, &p->free, sizeof(void *));
	p->free = obj;
	p->nfree++;
}

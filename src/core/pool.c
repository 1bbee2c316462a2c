#include "core/pool.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void tg_pool_init(tg_pool_t *p, size_t obj_size, uint32_t max_free)
{
	memset(p, 0, sizeof(*p));
	p->size = obj_size < sizeof(void *) ? sizeof(void *) : obj_size;
	p->max_free = max_free;
	if (p->size >= TG_POOL_MAP_MIN) {
		size_t page = (size_t)sysconf(_SC_PAGESIZE);
		p->map_len = (p->size + page - 1) / page * page;
	}
}

static void release(tg_pool_t *p, void *o)
{
	if (p->map_len)
		munmap(o, p->map_len);
	else
		free(o);
}

void tg_pool_destroy(tg_pool_t *p)
{
	while (p->free) {
		void *o = p->free;
		memcpy(&p->free, o, sizeof(void *));
		release(p, o);
	}
	p->nfree = 0;
}

void *tg_pool_get(tg_pool_t *p)
{
	void *o = p->free;
	if (o) {
		memcpy(&p->free, o, sizeof(void *));
		p->nfree--;
	} else if (p->map_len) {
		o = mmap(NULL, p->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			 0);
		if (o == MAP_FAILED)
			return NULL;
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
		release(p, obj);
		return;
	}
	memcpy(obj, &p->free, sizeof(void *));
	p->free = obj;
	p->nfree++;
}

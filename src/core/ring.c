#include "core/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SZ(a, b) ((a) < (b) ? (a) : (b))

int tg_ring_init(tg_ring_t *r, size_t size)
{
	size_t s = 4096;
	while (s < size)
		s <<= 1;
	r->data = malloc(s);
	if (!r->data)
		return -ENOMEM;
	r->mask = s - 1;
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	return 0;
}

void tg_ring_destroy(tg_ring_t *r)
{
	free(r->data);
	r->data = NULL;
}

bool tg_ring_put(tg_ring_t *r, const void *p, size_t len)
{
	size_t size = r->mask + 1;
	size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	if (len > size - (tail - head))
		return false;
	size_t off = tail & r->mask;
	size_t first = MIN_SZ(len, size - off);
	memcpy(r->data + off, p, first);
	memcpy(r->data, (const char *)p + first, len - first);
	/* Release: the consumer sees the bytes before the new tail. */
	atomic_store_explicit(&r->tail, tail + len, memory_order_release);
	return true;
}

size_t tg_ring_peek(tg_ring_t *r, struct iovec iov[2])
{
	size_t size = r->mask + 1;
	size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	size_t n = tail - head;
	size_t off = head & r->mask;
	size_t first = MIN_SZ(n, size - off);
	iov[0].iov_base = r->data + off;
	iov[0].iov_len = first;
	iov[1].iov_base = r->data;
	iov[1].iov_len = n - first;
	return n;
}

void tg_ring_consume(tg_ring_t *r, size_t n)
{
	size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	atomic_store_explicit(&r->head, head + n, memory_order_release);
}

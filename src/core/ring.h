/*
 * ring.h - single-producer single-consumer byte ring (a worker writes access
 * log lines, the logger thread drains them). Lock-free; a record is either
 * written whole or refused, so a full ring drops lines instead of blocking the
 * producer.
 */
#ifndef TG_CORE_RING_H
#define TG_CORE_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

typedef struct tg_ring {
	char *data;			  /* size bytes */
	size_t mask;			  /* size - 1 (size is a power of two) */
	_Alignas(64) _Atomic size_t head; /* consumer position (bytes read, ever) */
	_Alignas(64) _Atomic size_t tail; /* producer position (bytes written, ever) */
} tg_ring_t;

/* Allocates a ring of `size` bytes (rounded up to a power of two).
 * Returns 0 or -ENOMEM. */
int tg_ring_init(tg_ring_t *r, size_t size);

/* Frees the storage. */
void tg_ring_destroy(tg_ring_t *r);

/* Producer: appends len bytes, all or nothing. Returns false when full. */
bool tg_ring_put(tg_ring_t *r, const void *p, size_t len);

/* Consumer: describes the readable bytes as up to two iovecs; returns the
 * total. The bytes stay until tg_ring_consume. */
size_t tg_ring_peek(tg_ring_t *r, struct iovec iov[2]);

/* Consumer: releases n bytes previously peeked. */
void tg_ring_consume(tg_ring_t *r, size_t n);

#endif

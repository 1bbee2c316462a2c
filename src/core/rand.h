/*
 * rand.h - fast non-cryptographic random numbers for per-worker use (request
 * IDs, spreading). Seeded from getrandom(2); one state per thread.
 */
#ifndef TG_CORE_RAND_H
#define TG_CORE_RAND_H

#include <stdint.h>

typedef struct tg_rand {
	uint64_t s; /* wyrand state */
} tg_rand_t;

/* Seeds r from the kernel's entropy (falls back to time and address). */
void tg_rand_seed(tg_rand_t *r);

/* Next 64 random bits. */
static inline uint64_t tg_rand_next(tg_rand_t *r)
{
	r->s += 0xa0761d6478bd642full;
	__uint128_t t = (__uint128_t)r->s * (r->s ^ 0xe7037ed1a0b428dbull);
	return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

/* Writes 32 lower-case hex characters (128 random bits) into out (no NUL). */
void tg_rand_hex32(tg_rand_t *r, char out[32]);

#endif

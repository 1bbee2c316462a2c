#include "core/rand.h"

#include "core/clock.h"

#include <sys/random.h>

void tg_rand_seed(tg_rand_t *r)
{
	uint64_t s;
	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s))
		s = tg_clock_ns() ^ (uint64_t)(uintptr_t)r;
	r->s = s;
}

void tg_rand_hex32(tg_rand_t *r, char out[32])
{
	static const char hex[] = "0123456789abcdef";
	for (int half = 0; half < 2; half++) {
		uint64_t v = tg_rand_next(r);
		for (int i = 0; i < 16; i++) {
			out[half * 16 + i] = hex[v & 15];
			v >>= 4;
		}
	}
}

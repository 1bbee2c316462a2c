#include "core/rand.h"

#include "core/clock.h"

#include <sys/random.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

void tg_rand_seed(tg_rand_t *r)
{
	uint64_t s;
	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s))
		s = tg_clock_ns() ^ (uint64_t)(uintptr_t)r;
	r->s = s;
}

void tg_rand_hex32(tg_rand_t *r, char out[32])
{
	uint64_t v[2] = {tg_rand_next(r), tg_rand_next(r)};
#ifdef __SSE2__
	/* Every nibble becomes one character, 16 at a time: the low nibbles of
	 * the 16 bytes, then the high ones (any fixed order of random bits is as
	 * random). */
	__m128i x = _mm_loadu_si128((const __m128i *)(const void *)v);
	const __m128i mask = _mm_set1_epi8(0x0f);
	__m128i n[2] = {_mm_and_si128(x, mask), _mm_and_si128(_mm_srli_epi16(x, 4), mask)};
	for (int k = 0; k < 2; k++) {
		/* '0' + n, and 'a' - '0' - 10 more for n > 9 */
		__m128i above9 = _mm_cmpgt_epi8(n[k], _mm_set1_epi8(9));
		__m128i c = _mm_add_epi8(n[k], _mm_set1_epi8('0'));
		c = _mm_add_epi8(c, _mm_and_si128(above9, _mm_set1_epi8('a' - '0' - 10)));
		_mm_storeu_si128((__m128i *)(void *)(out + 16 * k), c);
	}
#else
	static const char hex[] = "0123456789abcdef";
	for (int half = 0; half < 2; half++) {
		uint64_t w = v[half];
		for (int i = 0; i < 16; i++) {
			out[half * 16 + i] = hex[w & 15];
			w >>= 4;
		}
	}
#endif
}

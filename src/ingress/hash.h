/*
 * hash.h - seeded 64-bit hashing of byte strings for the store's and the
 * router's tables. The router hashes request hosts (attacker-chosen), so every
 * table takes a random seed chosen when it is built; with the seed unknown a
 * client cannot aim many hosts at one bucket.
 *
 * tg_hash_lower() hashes the ASCII-lower-cased bytes without copying them, so
 * "Example.COM" and "example.com" hash alike; it equals tg_hash_bytes() of the
 * lower-cased string.
 */
#ifndef TG_INGRESS_HASH_H
#define TG_INGRESS_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TG_HASH_K1 0x9e3779b97f4a7c15ull
#define TG_HASH_K2 0xc2b2ae3d27d4eb4full

/* Lower-cases the ASCII letters of 8 bytes at once (SWAR): adds 0x20 to each
 * byte in 'A'..'Z' and leaves every other byte, including non-ASCII, alone. */
static inline uint64_t tg_hash_lower8(uint64_t v)
{
	const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
	uint64_t low7 = v & ~high;
	uint64_t ge_a = low7 + ones * (0x80 - 'A');	/* high bit: byte >= 'A' */
	uint64_t gt_z = low7 + ones * (0x80 - 'Z' - 1); /* high bit: byte > 'Z' */
	uint64_t upper = (ge_a ^ gt_z) & ~v & high;	/* ASCII and in 'A'..'Z' */
	return v | (upper >> 2);
}

static inline uint64_t tg_hash_mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static inline uint64_t tg_hash_impl(const void *p, size_t len, uint64_t seed, int lower)
{
	const unsigned char *s = p;
	uint64_t h = seed ^ (len * TG_HASH_K1);
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, s, 8);
		if (lower)
			v = tg_hash_lower8(v);
		h = (h ^ (v * TG_HASH_K2)) * TG_HASH_K1;
		h = (h << 31) | (h >> 33);
		s += 8;
		len -= 8;
	}
	if (len) {
		uint64_t v = 0;
		memcpy(&v, s, len);
		if (lower)
			v = tg_hash_lower8(v);
		h = (h ^ (v * TG_HASH_K2)) * TG_HASH_K1;
	}
	return tg_hash_mix(h);
}

/* Hash of len bytes at p under seed. */
static inline uint64_t tg_hash_bytes(const void *p, size_t len, uint64_t seed)
{
	return tg_hash_impl(p, len, seed, 0);
}

/* Hash of the ASCII-lower-cased bytes at p under seed. */
static inline uint64_t tg_hash_lower(const void *p, size_t len, uint64_t seed)
{
	return tg_hash_impl(p, len, seed, 1);
}

#endif

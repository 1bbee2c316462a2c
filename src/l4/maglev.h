/*
 * maglev.h - Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and
 * Reliable Software Network Load Balancer", NSDI 2016, section 3.4), with
 * weights.
 *
 * Every balancer node must build the same table from the same set of reals
 * without talking to the others, so the table depends only on each real's
 * identity (its address, as 16 bytes), its weight and the table size: never
 * on the order reals are listed in, on real ids, or on any per-process seed.
 */
#ifndef TG_L4_MAGLEV_H
#define TG_L4_MAGLEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Table slot value that no real owns (only seen when no real was given). */
#define TG_MAGLEV_NONE UINT32_MAX

/* Largest table accepted; keeps one build's scratch memory bounded. */
#define TG_MAGLEV_SIZE_MAX 4194301u

/* One real as Maglev sees it. */
typedef struct tg_maglev_real {
	uint8_t key[16]; /* identity: IPv6 address or IPv4-mapped IPv4 address */
	uint32_t weight; /* relative share of slots; 0 takes no slot */
	uint32_t value;	 /* what the real's slots hold (its real id) */
} tg_maglev_real_t;

/* True when n is prime (table sizes must be: the permutation steps then visit
 * every slot). */
bool tg_maglev_is_prime(uint64_t n);

/* Fills table[0..m-1] with the value of the real owning each slot. m must be
 * prime, 2 <= m <= TG_MAGLEV_SIZE_MAX, n <= m; keys must be distinct. Reals
 * with weight 0 get no slot; with n == 0 (or all weights 0) every slot is
 * TG_MAGLEV_NONE. Equal weights give each real floor(m/n) or ceil(m/n)
 * slots. Returns 0, -EINVAL (bad arguments, duplicate key) or -ENOMEM. */
int tg_maglev_build(const tg_maglev_real_t *reals, size_t n, uint32_t m, uint32_t *table);

/* The two independent hashes of a real's key that give its permutation:
 * offset = h1 mod m, skip = h2 mod (m - 1) + 1. Exposed for tests. */
uint64_t tg_maglev_hash(const uint8_t key[16], uint64_t seed);

#endif

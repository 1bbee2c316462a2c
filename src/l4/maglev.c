/*
 * maglev.c - Maglev lookup-table population with weights.
 *
 * Each real i has a permutation of the slots: slot_j = (offset_i + j * skip_i)
 * mod m, with offset and skip from two independent hashes of its address; m
 * prime makes every skip coprime with m so the permutation visits every slot.
 * Reals take turns claiming their next preferred slot that is still free until
 * the table is full (paper, Pseudocode 1). Weights change how often a real
 * gets a turn, not its permutation: every round each real earns `weight`
 * credits and claims one slot per `max weight` credits, so a real of the
 * heaviest weight claims one slot per round and the others proportionally
 * fewer. With equal weights that is exactly the paper's round robin, which
 * is what gives every real floor(m/n) or ceil(m/n) slots.
 *
 * The turn order is the reals sorted by key, so the table does not depend on
 * the order the configuration lists them in.
 */
#include "l4/maglev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Seeds of the two hashes; fixed forever, since every node must agree. */
#define SEED_OFFSET 0x7469646567617465ull /* "tidegate" */
#define SEED_SKIP   0x6d61676c65763231ull /* "maglev21" */

/* A real during one build. */
typedef struct slot_owner {
	uint8_t key[16]; /* identity (sort key) */
	uint32_t weight; /* credits earned per round */
	uint32_t value;	 /* written into claimed slots */
	uint32_t next;	 /* next slot of its permutation to try */
	uint32_t skip;	 /* permutation step, 1..m-1 */
	uint64_t credit; /* credits not yet spent on a slot */
} slot_owner_t;

bool tg_maglev_is_prime(uint64_t n)
{
	if (n < 2)
		return false;
	if (n % 2 == 0)
		return n == 2;
	for (uint64_t d = 3; d * d <= n; d += 2)
		if (n % d == 0)
			return false;
	return true;
}

/* MurmurHash3's 64-bit finalizer: a bijection with full avalanche. */
static uint64_t mix64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ull;
	k ^= k >> 33;
	return k;
}

/* Little-endian load regardless of the host, so all nodes agree. */
static uint64_t load_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

uint64_t tg_maglev_hash(const uint8_t key[16], uint64_t seed)
{
	uint64_t h = mix64(seed ^ 0x9e3779b97f4a7c15ull);
	h = mix64(h ^ load_le64(key));
	h = (h << 31 | h >> 33) * 0x87c37b91114253d5ull;
	return mix64(h ^ load_le64(key + 8));
}

static int owner_cmp(const void *a, const void *b)
{
	return memcmp(((const slot_owner_t *)a)->key, ((const slot_owner_t *)b)->key, 16);
}

int tg_maglev_build(const tg_maglev_real_t *reals, size_t n, uint32_t m, uint32_t *table)
{
	if (!table || m < 2 || m > TG_MAGLEV_SIZE_MAX || !tg_maglev_is_prime(m) || n > m ||
	    (n > 0 && !reals))
		return -EINVAL;
	for (uint32_t s = 0; s < m; s++)
		table[s] = TG_MAGLEV_NONE;

	slot_owner_t *o = calloc(n ? n : 1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	size_t k = 0;
	uint32_t wmax = 0;
	for (size_t i = 0; i < n; i++) {
		if (reals[i].value == TG_MAGLEV_NONE) {
			free(o);
			return -EINVAL;
		}
		if (reals[i].weight == 0)
			continue;
		memcpy(o[k].key, reals[i].key, 16);
		o[k].weight = reals[i].weight;
		o[k].value = reals[i].value;
		o[k].next = (uint32_t)(tg_maglev_hash(o[k].key, SEED_OFFSET) % m);
		o[k].skip = (uint32_t)(tg_maglev_hash(o[k].key, SEED_SKIP) % (m - 1)) + 1;
		if (o[k].weight > wmax)
			wmax = o[k].weight;
		k++;
	}
	qsort(o, k, sizeof(*o), owner_cmp);
	for (size_t i = 1; i < k; i++) {
		if (memcmp(o[i - 1].key, o[i].key, 16) == 0) {
			free(o);
			return -EINVAL;
		}
	}

	uint32_t filled = 0;
	while (k > 0 && filled < m) {
		for (size_t i = 0; i < k && filled < m; i++) {
			slot_owner_t *r = &o[i];
			r->credit += r->weight;
			while (r->credit >= wmax && filled < m) {
				r->credit -= wmax;
				uint32_t s = r->next;
				/* Terminates: the permutation visits every slot and
				 * at least one is free. */
				while (table[s] != TG_MAGLEV_NONE) {
					s += r->skip;
					if (s >= m)
						s -= m;
				}
				table[s] = r->value;
				filled++;
				s += r->skip;
				r->next = s >= m ? s - m : s;
			}
		}
	}
	free(o);
	return 0;
}

/*
 * ratelimit.c - shared limit_req / limit_conn state (contract in ratelimit.h).
 */
#include "proxy/ratelimit.h"
#include "ingress/hash.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#define NSHARDS	    64	       /* lock shards; a power of two */
#define NONE	    UINT32_MAX /* no entry (index links) */
#define EVICT_SCAN  32	       /* LRU entries looked at for a reusable one */
#define MAX_ZONES   65536      /* Ingresses with limits the table will name */
#define ZONE_BUCKET 256	       /* zone-name hash buckets */

typedef struct tg_rl_entry tg_rl_entry_t;

/* One leaky bucket (rps or rpm) of an entry. */
typedef struct bucket {
	int64_t excess;	 /* milli-requests above the rate */
	uint64_t last;	 /* ms of the last accounted request */
	uint64_t params; /* rate_milli << 32 | burst it was filled under (0: unused) */
} bucket_t;

struct tg_rl_entry {
	uint32_t zone;	  /* zone id */
	uint8_t family;	  /* AF_INET / AF_INET6 */
	uint8_t used;	  /* 1 while the slot holds a key */
	uint16_t shard;	  /* shard index (for release by pointer) */
	uint8_t addr[16]; /* client address (IPv4 in the first 4 bytes) */
	uint32_t hnext;	  /* next in the hash chain */
	uint32_t lprev;	  /* LRU: towards the most recent */
	uint32_t lnext;	  /* LRU: towards the least recent */
	uint32_t conns;	  /* requests in progress (limit-connections) */
	bucket_t b[2];	  /* TG_RL_RPS, TG_RL_RPM */
};

typedef struct shard {
	pthread_mutex_t mu; /* guards everything below */
	tg_rl_entry_t *e;   /* cap entries, allocated on first use */
	uint32_t *heads;    /* hash chains (cap of them) */
	uint32_t cap;	    /* entries this shard may hold */
	uint32_t n;	    /* entries handed out so far (slots [0, n) used) */
	uint32_t lru_head;  /* most recently used */
	uint32_t lru_tail;  /* least recently used */
	char pad[64];	    /* keeps neighbouring locks off one cache line */
} shard_t;

struct tg_rl_zone {
	uint32_t id;				/* key part of its entries */
	char *ns;				/* Ingress namespace */
	char *name;				/* Ingress name */
	tg_rl_zone_t *next;			/* zone-name hash chain */
	_Atomic uint64_t rejected[TG_RL_KINDS]; /* requests rejected, by kind */
};

struct tg_rl_table {
	shard_t shards[NSHARDS];	     /* the entries */
	uint64_t seed;			     /* hash seed (random) */
	_Atomic uint64_t entries;	     /* entries in use */
	_Atomic uint64_t active;	     /* limit-connections slots held */
	pthread_mutex_t zmu;		     /* guards the zones */
	tg_rl_zone_t *zbuckets[ZONE_BUCKET]; /* by name */
	tg_rl_zone_t **zones;		     /* by id */
	uint32_t nzones;		     /* zones made */
};

tg_rl_table_t *tg_rl_table_new(uint32_t max_entries)
{
	tg_rl_table_t *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	uint32_t per = max_entries / NSHARDS;
	for (int i = 0; i < NSHARDS; i++) {
		pthread_mutex_init(&t->shards[i].mu, NULL);
		t->shards[i].cap = per ? per : 1;
		t->shards[i].lru_head = t->shards[i].lru_tail = NONE;
	}
	pthread_mutex_init(&t->zmu, NULL);
	if (getrandom(&t->seed, sizeof(t->seed), GRND_NONBLOCK) != sizeof(t->seed))
		t->seed = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ull;
	return t;
}

void tg_rl_table_free(tg_rl_table_t *t)
{
	if (!t)
		return;
	for (int i = 0; i < NSHARDS; i++) {
		free(t->shards[i].e);
		free(t->shards[i].heads);
		pthread_mutex_destroy(&t->shards[i].mu);
	}
	for (uint32_t i = 0; i < t->nzones; i++) {
		free(t->zones[i]->ns);
		free(t->zones[i]->name);
		free(t->zones[i]);
	}
	free(t->zones);
	pthread_mutex_destroy(&t->zmu);
	free(t);
}

static tg_rl_table_t *global;			       /* the process-wide table */
static pthread_once_t global_once = PTHREAD_ONCE_INIT; /* makes it */
static _Atomic bool global_made;		       /* tg_rl_global was called */

static void global_init(void)
{
	global = tg_rl_table_new(TG_RL_MAX_ENTRIES);
	atomic_store_explicit(&global_made, true, memory_order_release);
}

tg_rl_table_t *tg_rl_global(void)
{
	pthread_once(&global_once, global_init);
	return global;
}

tg_rl_zone_t *tg_rl_zone_get(tg_rl_table_t *t, const char *ns, const char *name)
{
	uint64_t h = tg_hash_bytes(name, strlen(name), tg_hash_bytes(ns, strlen(ns), 0));
	tg_rl_zone_t **bucket = &t->zbuckets[h % ZONE_BUCKET];
	pthread_mutex_lock(&t->zmu);
	tg_rl_zone_t *z = *bucket;
	while (z && (strcmp(z->ns, ns) != 0 || strcmp(z->name, name) != 0))
		z = z->next;
	if (z || t->nzones >= MAX_ZONES)
		goto out;
	if ((t->nzones & (t->nzones - 1)) == 0) {
		/* Grows at powers of two: 1, 2, 4, ... */
		size_t cap = t->nzones ? (size_t)t->nzones * 2 : 1;
		tg_rl_zone_t **nz = realloc(t->zones, cap * sizeof(*nz));
		if (!nz)
			goto out;
		t->zones = nz;
	}
	z = calloc(1, sizeof(*z));
	if (!z || !(z->ns = strdup(ns)) || !(z->name = strdup(name))) {
		if (z)
			free(z->ns);
		free(z);
		z = NULL;
		goto out;
	}
	z->id = t->nzones;
	z->next = *bucket;
	*bucket = z;
	t->zones[t->nzones++] = z;
out:
	pthread_mutex_unlock(&t->zmu);
	return z;
}

static size_t addr_len(int family)
{
	return family == AF_INET6 ? 16 : 4;
}

static uint64_t key_hash(const tg_rl_table_t *t, uint32_t zone, int family, const uint8_t *addr)
{
	uint64_t h = t->seed ^ ((uint64_t)zone << 8) ^ (uint64_t)family;
	return tg_hash_bytes(addr, addr_len(family), tg_hash_mix(h));
}

static bool key_eq(const tg_rl_entry_t *e, uint32_t zone, int family, const uint8_t *addr)
{
	return e->used && e->zone == zone && e->family == family &&
	       memcmp(e->addr, addr, addr_len(family)) == 0;
}

static void lru_unlink(shard_t *s, uint32_t i)
{
	tg_rl_entry_t *e = &s->e[i];
	if (e->lprev != NONE)
		s->e[e->lprev].lnext = e->lnext;
	else
		s->lru_head = e->lnext;
	if (e->lnext != NONE)
		s->e[e->lnext].lprev = e->lprev;
	else
		s->lru_tail = e->lprev;
	e->lprev = e->lnext = NONE;
}

static void lru_push(shard_t *s, uint32_t i)
{
	tg_rl_entry_t *e = &s->e[i];
	e->lprev = NONE;
	e->lnext = s->lru_head;
	if (s->lru_head != NONE)
		s->e[s->lru_head].lprev = i;
	s->lru_head = i;
	if (s->lru_tail == NONE)
		s->lru_tail = i;
}

static void chain_unlink(shard_t *s, uint32_t i, uint32_t bucket)
{
	uint32_t *p = &s->heads[bucket];
	while (*p != NONE && *p != i)
		p = &s->e[*p].hnext;
	if (*p == i)
		*p = s->e[i].hnext;
}

/* The entry for the key, made (or reused) when absent. Shard locked.
 * NONE when the shard is full of entries with requests in progress. */
static uint32_t find_or_make(tg_rl_table_t *t, shard_t *s, uint64_t h, uint32_t zone, int family,
			     const uint8_t *addr)
{
	if (!s->e) {
		s->e = calloc(s->cap, sizeof(*s->e));
		s->heads = malloc(s->cap * sizeof(*s->heads));
		if (!s->e || !s->heads) {
			free(s->e);
			free(s->heads);
			s->e = NULL;
			s->heads = NULL;
			return NONE;
		}
		for (uint32_t i = 0; i < s->cap; i++)
			s->heads[i] = NONE;
	}
	uint32_t bucket = (uint32_t)((h >> 8) % s->cap);
	for (uint32_t i = s->heads[bucket]; i != NONE; i = s->e[i].hnext)
		if (key_eq(&s->e[i], zone, family, addr)) {
			lru_unlink(s, i);
			lru_push(s, i);
			return i;
		}
	uint32_t i = NONE;
	if (s->n < s->cap) {
		i = s->n++;
		atomic_fetch_add_explicit(&t->entries, 1, memory_order_relaxed);
	} else {
		uint32_t j = s->lru_tail;
		for (int k = 0; k < EVICT_SCAN && j != NONE; k++, j = s->e[j].lprev)
			if (s->e[j].conns == 0) {
				i = j;
				break;
			}
		if (i == NONE)
			return NONE;
		tg_rl_entry_t *old = &s->e[i];
		uint64_t oh = key_hash(t, old->zone, old->family, old->addr);
		chain_unlink(s, i, (uint32_t)((oh >> 8) % s->cap));
		lru_unlink(s, i);
	}
	tg_rl_entry_t *e = &s->e[i];
	memset(e, 0, sizeof(*e));
	e->used = 1;
	e->zone = zone;
	e->family = (uint8_t)family;
	e->shard = (uint16_t)(s - t->shards);
	memcpy(e->addr, addr, addr_len(family));
	e->hnext = s->heads[bucket];
	s->heads[bucket] = i;
	lru_push(s, i);
	return i;
}

/* nginx's ngx_http_limit_req_lookup for one bucket: the excess this request
 * would leave, or -1 when it must be rejected. */
static int64_t bucket_try(const bucket_t *b, uint32_t rate_per_unit, bool per_minute,
			  uint32_t burst, uint64_t now)
{
	uint64_t rate =
	    per_minute ? (uint64_t)rate_per_unit * 1000 / 60 : (uint64_t)rate_per_unit * 1000;
	uint64_t params = rate << 32 | burst;
	if (b->params != params)
		return 0; /* new, or filled under other values: starts afresh */
	int64_t ms = (int64_t)(now - b->last);
	if (ms < -60000)
		ms = 1;
	else if (ms < 0)
		ms = 0;
	int64_t excess = b->excess - (int64_t)(rate * (uint64_t)ms / 1000) + 1000;
	if (excess < 0)
		excess = 0;
	/* The +1000 above is this request; a fresh bucket starts at 0 instead. */
	if (excess > (int64_t)burst * 1000)
		return -1;
	return excess;
}

static void bucket_commit(bucket_t *b, uint32_t rate_per_unit, bool per_minute, uint32_t burst,
			  int64_t excess, uint64_t now)
{
	uint64_t rate =
	    per_minute ? (uint64_t)rate_per_unit * 1000 / 60 : (uint64_t)rate_per_unit * 1000;
	b->params = rate << 32 | burst;
	b->last = now; /* nginx moves it only when time passed: the same */
	b->excess = excess;
}

int tg_rl_request(tg_rl_table_t *t, const tg_rl_policy_t *p, int family, const uint8_t *addr,
		  uint64_t now_ms, tg_rl_slot_t **slot)
{
	*slot = NULL;
	if (!p->rps && !p->rpm && !p->conns)
		return -1;
	uint32_t zone = p->zone->id;
	uint64_t h = key_hash(t, zone, family, addr);
	shard_t *s = &t->shards[h % NSHARDS];
	int verdict = -1;
	pthread_mutex_lock(&s->mu);
	uint32_t i = find_or_make(t, s, h, zone, family, addr);
	if (i == NONE) {
		/* Full of requests in progress: nginx rejects too. */
		verdict = p->rps ? TG_RL_RPS : p->rpm ? TG_RL_RPM : TG_RL_CONN;
		goto out;
	}
	tg_rl_entry_t *e = &s->e[i];
	int64_t ex_rps = 0, ex_rpm = 0;
	if (p->rps &&
	    (ex_rps = bucket_try(&e->b[TG_RL_RPS], p->rps, false, p->burst_rps, now_ms)) < 0) {
		verdict = TG_RL_RPS;
		goto out;
	}
	if (p->rpm &&
	    (ex_rpm = bucket_try(&e->b[TG_RL_RPM], p->rpm, true, p->burst_rpm, now_ms)) < 0) {
		verdict = TG_RL_RPM;
		goto out;
	}
	if (p->rps)
		bucket_commit(&e->b[TG_RL_RPS], p->rps, false, p->burst_rps, ex_rps, now_ms);
	if (p->rpm)
		bucket_commit(&e->b[TG_RL_RPM], p->rpm, true, p->burst_rpm, ex_rpm, now_ms);
	if (p->conns) {
		if (e->conns >= p->conns) {
			verdict = TG_RL_CONN;
			goto out;
		}
		e->conns++;
		atomic_fetch_add_explicit(&t->active, 1, memory_order_relaxed);
		*slot = e;
	}
out:
	pthread_mutex_unlock(&s->mu);
	if (verdict >= 0)
		atomic_fetch_add_explicit(&p->zone->rejected[verdict], 1, memory_order_relaxed);
	return verdict;
}

void tg_rl_release(tg_rl_table_t *t, tg_rl_slot_t *slot)
{
	if (!slot)
		return;
	shard_t *s = &t->shards[slot->shard];
	pthread_mutex_lock(&s->mu);
	if (slot->conns) /* always: a held slot keeps its entry from reuse */
		slot->conns--;
	pthread_mutex_unlock(&s->mu);
	atomic_fetch_sub_explicit(&t->active, 1, memory_order_relaxed);
}

uint32_t tg_rl_conns(tg_rl_table_t *t, const tg_rl_zone_t *z, int family, const uint8_t *addr)
{
	uint64_t h = key_hash(t, z->id, family, addr);
	shard_t *s = &t->shards[h % NSHARDS];
	uint32_t n = 0;
	pthread_mutex_lock(&s->mu);
	if (s->e) {
		uint32_t bucket = (uint32_t)((h >> 8) % s->cap);
		for (uint32_t i = s->heads[bucket]; i != NONE; i = s->e[i].hnext)
			if (key_eq(&s->e[i], z->id, family, addr))
				n = s->e[i].conns;
	}
	pthread_mutex_unlock(&s->mu);
	return n;
}

uint64_t tg_rl_entries(tg_rl_table_t *t)
{
	return atomic_load_explicit(&t->entries, memory_order_relaxed);
}

uint64_t tg_rl_rejected(const tg_rl_zone_t *z, tg_rl_kind_t k)
{
	return atomic_load_explicit(&z->rejected[k], memory_order_relaxed);
}

void tg_rl_render(tg_sbuf_t *out)
{
	static const char *const kind[TG_RL_KINDS] = {"rps", "rpm", "connections"};
	/* Only when some Ingress made it: no table, no families. */
	if (!atomic_load_explicit(&global_made, memory_order_acquire))
		return;
	tg_rl_table_t *t = tg_rl_global();
	if (!t)
		return;
	tg_sbuf_printf(out, "# HELP tidegate_limit_rejected_total Requests rejected by "
			    "limit-rps, limit-rpm or limit-connections, by Ingress.\n"
			    "# TYPE tidegate_limit_rejected_total counter\n");
	pthread_mutex_lock(&t->zmu);
	for (uint32_t i = 0; i < t->nzones; i++) {
		const tg_rl_zone_t *z = t->zones[i];
		for (int k = 0; k < TG_RL_KINDS; k++) {
			tg_sbuf_printf(out, "tidegate_limit_rejected_total{namespace=\"");
			tg_sbuf_label_escape(out, z->ns);
			tg_sbuf_printf(out, "\",ingress=\"");
			tg_sbuf_label_escape(out, z->name);
			tg_sbuf_printf(out, "\",limit=\"%s\"} %llu\n", kind[k],
				       (unsigned long long)tg_rl_rejected(z, (tg_rl_kind_t)k));
		}
	}
	pthread_mutex_unlock(&t->zmu);
	tg_sbuf_printf(out,
		       "# HELP tidegate_limit_entries Client addresses tracked by the rate and "
		       "connection limits (at most %u).\n"
		       "# TYPE tidegate_limit_entries gauge\n"
		       "tidegate_limit_entries %llu\n"
		       "# HELP tidegate_limit_connections_active Requests in progress counted by "
		       "limit-connections.\n"
		       "# TYPE tidegate_limit_connections_active gauge\n"
		       "tidegate_limit_connections_active %llu\n",
		       (unsigned)TG_RL_MAX_ENTRIES, (unsigned long long)tg_rl_entries(t),
		       (unsigned long long)atomic_load_explicit(&t->active, memory_order_relaxed));
}

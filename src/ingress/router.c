#include "ingress/router.h"
#include "ingress/hash.h"
#include "ingress/strmap.h"

#include <errno.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#define NO_TABLE UINT32_MAX

/* One host -> path table entry. */
typedef struct host_slot {
	const char *host; /* lower-cased host or wildcard suffix; NULL: empty */
	uint32_t len;	  /* bytes of host */
	uint32_t table;	  /* index into tables */
	uint64_t hash;	  /* tg_hash_bytes(host, len, seed) */
} host_slot_t;

/* One (table, type, path) -> route entry. */
typedef struct path_slot {
	uint64_t hash;		 /* path_hash(table, type, path) */
	const char *path;	 /* Exact: as written; Prefix: without trailing '/'; NULL: empty */
	uint32_t len;		 /* bytes of path */
	uint32_t table;		 /* owning path table */
	uint32_t type;		 /* tg_path_type_t */
	const tg_route_t *route; /* the winner */
} path_slot_t;

/* A regex path (use-regex / rewrite-target hosts): nginx's "location ~*". */
typedef struct regex_entry {
	const char *path;	 /* as written (order and duplicates) */
	const regex_t *re;	 /* "^path", case-insensitive (owned by the snapshot) */
	const tg_route_t *route; /* where it goes */
} regex_entry_t;

/* Summary of one host's (or the any-host) paths, to skip useless probes. */
typedef struct path_table {
	uint32_t n_exact;	    /* Exact entries */
	uint32_t n_prefix;	    /* Prefix entries other than the root */
	uint32_t max_prefix;	    /* longest Prefix key, in bytes */
	bool claimed;		    /* a host's first Ingress has set fallback */
	const tg_route_t *root;	    /* Prefix "/" (matches every path), or NULL */
	const tg_route_t *fallback; /* host tables: the route when no path matches (the
				     * claiming Ingress's defaultBackend); NULL: 404 */
	regex_entry_t *re;	    /* regex paths in match order (see router.h), or NULL */
	uint32_t n_re;		    /* entries in re */
	uint32_t cap_re;	    /* builder: entries allocated (re is malloc'ed until
				     * tg_router_build copies it into the arena) */
} path_table_t;

struct tg_router {
	uint64_t seed;			 /* hash seed of every table */
	host_slot_t *hosts;		 /* precise hosts */
	uint32_t hosts_mask;		 /* slots - 1 */
	host_slot_t *wild;		 /* wildcard suffixes */
	uint32_t wild_mask;		 /* slots - 1 */
	path_slot_t *paths;		 /* every path entry */
	uint32_t paths_mask;		 /* slots - 1 */
	path_table_t *tables;		 /* per host (and any-host) summaries */
	uint32_t n_tables;		 /* entries in tables */
	uint32_t any_table;		 /* table of rules without host, or NO_TABLE */
	const tg_route_t *default_route; /* spec.defaultBackend winner, or NULL */
	tg_router_stats_t stats;	 /* counts for logs */
};

/* ---- builder ---------------------------------------------------------- */

/*
 * The builder fills the final open-addressing tables directly (in the output
 * arena), deduplicating as it inserts: one probe per path instead of a
 * separate dedupe map and a second layout pass. Tables double when half full;
 * the outgrown arrays stay in the arena as garbage (tg_router_reserve avoids
 * that when the sizes are known).
 */
struct tg_router_builder {
	tg_arena_t *out;	       /* final tables go here */
	tg_router_t *r;		       /* the router being filled */
	path_table_t *tables;	       /* per table summaries (malloc'ed, copied at build) */
	uint32_t n_tables, cap_tables; /* used / allocated */
	uint32_t n_paths;	       /* entries in r->paths */
};

static inline uint64_t path_hash(uint64_t seed, uint32_t table, uint32_t type, const char *p,
				 size_t len)
{
	return tg_hash_bytes(p, len, seed ^ (((uint64_t)table << 1 | type) * TG_HASH_K2));
}

static uint32_t slots_for(size_t n)
{
	uint32_t cap = 16;
	while (cap < n * 2)
		cap *= 2;
	return cap;
}

static int host_resize(tg_arena_t *a, host_slot_t **tab, uint32_t *mask, size_t n)
{
	uint32_t cap = slots_for(n);
	if (*tab && cap <= *mask + 1)
		return 0;
	host_slot_t *s = tg_arena_array(a, cap, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (uint32_t i = 0; *tab && i <= *mask; i++) {
		const host_slot_t *e = &(*tab)[i];
		if (!e->host)
			continue;
		uint32_t j = (uint32_t)e->hash & (cap - 1);
		while (s[j].host)
			j = (j + 1) & (cap - 1);
		s[j] = *e;
	}
	*tab = s;
	*mask = cap - 1;
	return 0;
}

static int path_resize(tg_router_builder_t *b, size_t n)
{
	tg_router_t *r = b->r;
	uint32_t cap = slots_for(n);
	if (r->paths && cap <= r->paths_mask + 1)
		return 0;
	path_slot_t *s = tg_arena_array(b->out, cap, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (uint32_t i = 0; r->paths && i <= r->paths_mask; i++) {
		const path_slot_t *e = &r->paths[i];
		if (!e->path)
			continue;
		uint32_t j = (uint32_t)e->hash & (cap - 1);
		while (s[j].path)
			j = (j + 1) & (cap - 1);
		s[j] = *e;
	}
	r->paths = s;
	r->paths_mask = cap - 1;
	return 0;
}

tg_router_builder_t *tg_router_builder_new(tg_arena_t *out)
{
	tg_router_builder_t *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->out = out;
	b->r = tg_arena_alloc(out, sizeof(*b->r));
	if (!b->r || host_resize(out, &b->r->hosts, &b->r->hosts_mask, 0) ||
	    host_resize(out, &b->r->wild, &b->r->wild_mask, 0) || path_resize(b, 0)) {
		free(b);
		return NULL;
	}
	b->r->seed = tg_strmap_random_seed();
	b->r->any_table = NO_TABLE;
	return b;
}

void tg_router_builder_free(tg_router_builder_t *b)
{
	if (!b)
		return;
	for (uint32_t i = 0; i < b->n_tables; i++)
		if (b->tables[i].cap_re)
			free(b->tables[i].re);
	free(b->tables);
	free(b);
}

int tg_router_reserve(tg_router_builder_t *b, size_t n, size_t m)
{
	if (host_resize(b->out, &b->r->hosts, &b->r->hosts_mask, n) || path_resize(b, m))
		return -ENOMEM;
	if (n > b->cap_tables) {
		path_table_t *t = realloc(b->tables, n * sizeof(*t));
		if (!t)
			return -ENOMEM;
		b->tables = t;
		b->cap_tables = (uint32_t)n;
	}
	return 0;
}

static int new_table(tg_router_builder_t *b, uint32_t *out)
{
	if (b->n_tables == b->cap_tables) {
		uint32_t ncap = b->cap_tables ? b->cap_tables * 2 : 64;
		path_table_t *n = realloc(b->tables, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->tables = n;
		b->cap_tables = ncap;
	}
	memset(&b->tables[b->n_tables], 0, sizeof(path_table_t));
	*out = b->n_tables++;
	return 0;
}

int tg_router_table(tg_router_builder_t *b, const char *host, uint32_t *out)
{
	tg_router_t *r = b->r;
	if (!host[0]) {
		if (r->any_table == NO_TABLE && new_table(b, &r->any_table))
			return -ENOMEM;
		*out = r->any_table;
		return 0;
	}
	host_slot_t **tab = &r->hosts;
	uint32_t *mask = &r->hosts_mask;
	uint32_t *count = &r->stats.hosts;
	if (host[0] == '*' && host[1] == '.') {
		tab = &r->wild;
		mask = &r->wild_mask;
		count = &r->stats.wildcards;
		host += 2;
	}
	/* Rule hosts are validated DNS names (<= 253 bytes); longer input is cut
	 * and can then only match a request host cut the same way: never. */
	char low[256];
	size_t len = 0;
	while (host[len] && len < sizeof(low)) {
		low[len] = tg_lower(host[len]);
		len++;
	}
	while (len && low[len - 1] == '.')
		len--;
	uint64_t h = tg_hash_bytes(low, len, r->seed);
	uint32_t j = (uint32_t)h & *mask;
	for (;; j = (j + 1) & *mask) {
		host_slot_t *e = &(*tab)[j];
		if (!e->host)
			break;
		if (e->hash == h && e->len == len && memcmp(e->host, low, len) == 0) {
			*out = e->table;
			return 0;
		}
	}
	if ((*count + 1) * 2 > *mask + 1) {
		if (host_resize(b->out, tab, mask, *count + 1))
			return -ENOMEM;
		j = (uint32_t)h & *mask;
		while ((*tab)[j].host)
			j = (j + 1) & *mask;
	}
	char *key = tg_arena_strndup(b->out, low, len);
	uint32_t t;
	if (!key || new_table(b, &t))
		return -ENOMEM;
	host_slot_t *e = &(*tab)[j];
	e->host = key;
	e->len = (uint32_t)len;
	e->hash = h;
	e->table = t;
	(*count)++;
	*out = t;
	return 0;
}

int tg_router_add(tg_router_builder_t *b, const char *host, tg_path_type_t type, const char *path,
		  const tg_route_t *route)
{
	uint32_t t;
	if (tg_router_table(b, host, &t))
		return -ENOMEM;
	return tg_router_add_path(b, t, type, path, route);
}

int tg_router_add_path(tg_router_builder_t *b, uint32_t t, tg_path_type_t type, const char *path,
		       const tg_route_t *route)
{
	tg_router_t *r = b->r;
	size_t len = strlen(path);
	if (type == TG_PATH_PREFIX)
		while (len && path[len - 1] == '/')
			len--;
	path_table_t *pt = &b->tables[t];
	if (type == TG_PATH_PREFIX && len == 0) {
		if (pt->root)
			return 0;
		pt->root = route;
		return 1;
	}
	uint64_t h = path_hash(r->seed, t, type, path, len);
	uint32_t j = (uint32_t)h & r->paths_mask;
	for (;; j = (j + 1) & r->paths_mask) {
		const path_slot_t *e = &r->paths[j];
		if (!e->path)
			break;
		if (e->hash == h && e->table == t && e->type == (uint32_t)type && e->len == len &&
		    memcmp(e->path, path, len) == 0)
			return 0; /* an earlier route keeps it */
	}
	if ((b->n_paths + 1) * 2 > r->paths_mask + 1) {
		if (path_resize(b, b->n_paths + 1))
			return -ENOMEM;
		j = (uint32_t)h & r->paths_mask;
		while (r->paths[j].path)
			j = (j + 1) & r->paths_mask;
	}
	path_slot_t *e = &r->paths[j];
	e->hash = h;
	e->path = path; /* in the output arena (see router.h), cut to len */
	e->len = (uint32_t)len;
	e->table = t;
	e->type = type;
	e->route = route;
	b->n_paths++;
	if (type == TG_PATH_EXACT) {
		pt->n_exact++;
	} else {
		pt->n_prefix++;
		if (len > pt->max_prefix)
			pt->max_prefix = (uint32_t)len;
	}
	return 1;
}

int tg_router_add_regex(tg_router_builder_t *b, uint32_t table, const char *path, const void *re,
			const tg_route_t *route)
{
	path_table_t *pt = &b->tables[table];
	for (uint32_t i = 0; i < pt->n_re; i++)
		if (strcmp(pt->re[i].path, path) == 0)
			return 0; /* an earlier route keeps it */
	if (pt->n_re == pt->cap_re) {
		uint32_t cap = pt->cap_re ? pt->cap_re * 2 : 8;
		regex_entry_t *n = realloc(pt->re, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		pt->re = n;
		pt->cap_re = cap;
	}
	pt->re[pt->n_re++] = (regex_entry_t){path, re, route};
	return 1;
}

/* ingress-nginx's location order: longer paths first, equal lengths in
 * descending byte order (its two stable sorts combined). */
static int regex_order(const void *pa, const void *pb)
{
	const regex_entry_t *a = pa, *b = pb;
	size_t la = strlen(a->path), lb = strlen(b->path);
	if (la != lb)
		return la > lb ? -1 : 1;
	return -strcmp(a->path, b->path);
}

bool tg_router_claim(tg_router_builder_t *b, uint32_t table)
{
	path_table_t *pt = &b->tables[table];
	if (pt->claimed)
		return false;
	pt->claimed = true;
	return true;
}

void tg_router_set_fallback(tg_router_builder_t *b, uint32_t table, const tg_route_t *route)
{
	b->tables[table].fallback = route;
}

void tg_router_set_default(tg_router_builder_t *b, const tg_route_t *route)
{
	if (!b->r->default_route)
		b->r->default_route = route;
}

tg_router_t *tg_router_build(tg_router_builder_t *b)
{
	tg_router_t *r = b->r;
	r->n_tables = b->n_tables;
	r->tables = tg_arena_array(b->out, b->n_tables, sizeof(path_table_t));
	if (!r->tables) {
		tg_router_builder_free(b);
		return NULL;
	}
	if (b->n_tables)
		memcpy(r->tables, b->tables, b->n_tables * sizeof(path_table_t));
	r->stats.routes = b->n_paths;
	for (uint32_t i = 0; i < b->n_tables; i++) {
		path_table_t *t = &r->tables[i];
		if (!t->n_re)
			continue;
		regex_entry_t *re = tg_arena_array(b->out, t->n_re, sizeof(*re));
		if (!re) {
			for (uint32_t k = i; k < b->n_tables; k++)
				r->tables[k].n_re = 0; /* the builder frees its arrays */
			tg_router_builder_free(b);
			return NULL;
		}
		memcpy(re, t->re, t->n_re * sizeof(*re));
		qsort(re, t->n_re, sizeof(*re), regex_order);
		t->re = re;
		t->cap_re = 0;
		b->tables[i].n_re = 0; /* now owned by the arena */
		free(b->tables[i].re);
		b->tables[i].re = NULL;
		b->tables[i].cap_re = 0;
		r->stats.routes += t->n_re;
	}
	for (uint32_t i = 0; i < b->n_tables; i++)
		r->stats.routes += r->tables[i].root != NULL;
	tg_router_builder_free(b);
	return r;
}

void tg_router_stats(const tg_router_t *r, tg_router_stats_t *st)
{
	*st = r->stats;
}

/* ---- lookup (hot path) ------------------------------------------------ */

/* Host table probe; `host` is compared ignoring ASCII case. */
static inline uint32_t find_host(const host_slot_t *s, uint32_t mask, uint64_t h, const char *host,
				 size_t len)
{
	for (uint32_t j = (uint32_t)h & mask;; j = (j + 1) & mask) {
		const host_slot_t *e = &s[j];
		if (!e->host)
			return NO_TABLE;
		if (e->hash != h || e->len != len)
			continue;
		size_t i = 0;
		while (i < len && e->host[i] == tg_lower(host[i]))
			i++;
		if (i == len)
			return e->table;
	}
}

static inline const tg_route_t *find_path(const tg_router_t *r, uint32_t table, uint32_t type,
					  const char *p, size_t len)
{
	uint64_t h = path_hash(r->seed, table, type, p, len);
	for (uint32_t j = (uint32_t)h & r->paths_mask;; j = (j + 1) & r->paths_mask) {
		const path_slot_t *e = &r->paths[j];
		if (!e->path)
			return NULL;
		if (e->hash == h && e->table == table && e->type == type && e->len == len &&
		    memcmp(e->path, p, len) == 0)
			return e->route;
	}
}

/* Regex paths: the first that matches, as nginx tries "location ~*". */
static const tg_route_t *match_regex(const path_table_t *pt, const char *p, size_t len)
{
	for (uint32_t i = 0; i < pt->n_re; i++) {
		regmatch_t m = {.rm_so = 0, .rm_eo = (regoff_t)len};
		if (regexec(pt->re[i].re, len ? p : "", 1, &m, REG_STARTEND) == 0)
			return pt->re[i].route;
	}
	return NULL;
}

static const tg_route_t *match_table(const tg_router_t *r, uint32_t t, const char *p, size_t len)
{
	const path_table_t *pt = &r->tables[t];
	if (pt->n_exact) {
		const tg_route_t *m = find_path(r, t, TG_PATH_EXACT, p, len);
		if (m)
			return m;
	}
	if (TG_UNLIKELY(pt->n_re)) {
		const tg_route_t *m = match_regex(pt, p, len);
		if (m)
			return m;
	}
	if (pt->n_prefix) {
		/* Candidates are the path cut at a '/' (or whole), longest first,
		 * never longer than the table's longest prefix. */
		size_t i = len;
		if (i > pt->max_prefix) {
			i = pt->max_prefix;
			while (i > 0 && p[i] != '/')
				i--;
		}
		while (i > 0) {
			const tg_route_t *m = find_path(r, t, TG_PATH_PREFIX, p, i);
			if (m)
				return m;
			i--;
			while (i > 0 && p[i] != '/')
				i--;
		}
	}
	return pt->root;
}

/* A host rule's table: its paths, else the host's fallback (NULL: 404). */
static inline const tg_route_t *match_host(const tg_router_t *r, uint32_t t, const char *p,
					   size_t len)
{
	const tg_route_t *m = match_table(r, t, p, len);
	return m ? m : r->tables[t].fallback;
}

const tg_route_t *tg_snapshot_route(const tg_snapshot_t *s, tg_str_t host, tg_str_t path)
{
	if (TG_UNLIKELY(!s || !s->router))
		return NULL;
	const tg_router_t *r = s->router;
	const char *p = path.ptr ? path.ptr : "";
	size_t plen = path.len;
	const char *h = host.ptr;
	size_t hlen = host.ptr ? host.len : 0;
	/* Host without port: "[v6]:port" keeps the brackets, "name:port" loses
	 * ":port". A trailing dot (absolute name) does not change the host. */
	if (hlen && h[0] == '[') {
		const char *end = memchr(h, ']', hlen);
		if (end)
			hlen = (size_t)(end - h) + 1;
	} else if (hlen) { /* memchr(NULL, ..., 0) is undefined: no Host field */
		const char *colon = memchr(h, ':', hlen);
		if (colon)
			hlen = (size_t)(colon - h);
	}
	if (hlen && h[hlen - 1] == '.')
		hlen--;
	/* The host picks one path table (precise, else the covering wildcard,
	 * else the rules without host); a host rule's table never falls through
	 * to another: its unmatched paths get the host's fallback (router.h). */
	if (hlen && r->hosts_mask && r->stats.hosts) {
		uint32_t t =
		    find_host(r->hosts, r->hosts_mask, tg_hash_lower(h, hlen, r->seed), h, hlen);
		if (t != NO_TABLE)
			return match_host(r, t, p, plen);
	}
	if (hlen && r->stats.wildcards) {
		/* "*.example.com" covers exactly one label before "example.com". */
		const char *dot = memchr(h, '.', hlen);
		if (dot && dot > h) {
			const char *suf = dot + 1;
			size_t slen = hlen - (size_t)(suf - h);
			uint32_t t = find_host(r->wild, r->wild_mask,
					       tg_hash_lower(suf, slen, r->seed), suf, slen);
			if (t != NO_TABLE)
				return match_host(r, t, p, plen);
		}
	}
	const tg_route_t *m;
	if (r->any_table != NO_TABLE && (m = match_table(r, r->any_table, p, plen)))
		return m;
	return r->default_route;
}

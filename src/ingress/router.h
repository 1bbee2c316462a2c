/*
 * router.h - the host/path lookup structure inside a snapshot, and its
 * builder. tg_snapshot_route() (snapshot.h) is the lookup; it lives in
 * router.c next to the tables it reads.
 *
 * Layout (all in the snapshot's arena, immutable once built):
 *   - two open-addressing host tables keyed by the lower-cased host: precise
 *     hosts ("foo.example.com") and wildcard suffixes ("*.example.com" stored
 *     as "example.com"); each maps to a path table;
 *   - one open-addressing table of (path table, type, path) -> route shared by
 *     every path table: Exact entries keyed by the path as written, Prefix
 *     entries by the path without trailing slashes ("/" becomes the table's
 *     root route);
 *   - the path table of the rules without host, and the default route.
 *
 * Lookup: the host (without port and trailing dot) selects ONE path table:
 * the precise host's, else the wildcard covering the host minus its first
 * label, else the table of the rules without host. A host rule's table never
 * falls through to another one: when none of its paths matches, the answer is
 * that host's fallback route (set by the first Ingress that declared the
 * host: its defaultBackend, or none -> 404), as in an nginx server block.
 * Only the rules-without-host table falls back to the default route.
 * Inside a path table: an Exact match on the whole path, else the
 * longest Prefix whose segments equal the path's leading segments (one hash
 * probe per '/' of the path, starting at the table's longest prefix).
 * Cost: one host hash plus O(path segments) probes, whatever the number of
 * hosts; no allocation, no lock. All tables use a random per-snapshot seed.
 */
#ifndef TG_INGRESS_ROUTER_H
#define TG_INGRESS_ROUTER_H

#include "ingress/arena.h"
#include "ingress/snapshot.h"

typedef struct tg_router_builder tg_router_builder_t;

/* Starts a builder whose result goes into arena `out` (the snapshot's). NULL
 * on allocation failure. */
tg_router_builder_t *tg_router_builder_new(tg_arena_t *out);

/*
 * Adds route for host ("" = any host, "*.x.y" = wildcard; any case) and path
 * of the given type. Callers add in priority order: when the same host, type
 * and path (Prefix paths compared without trailing slashes) was added before,
 * the earlier route stays. `path` is referenced, not copied: it must live in
 * the output arena (route->path does). Returns 1 added, 0 shadowed by an
 * earlier route, -ENOMEM.
 */
int tg_router_add(tg_router_builder_t *b, const char *host, tg_path_type_t type, const char *path,
		  const tg_route_t *route);

/* The same in two steps, for callers adding many paths to one host: the
 * path table of host (created on first use) into *table, then paths into it.
 * Both return like tg_router_add (tg_router_table: 0 or -ENOMEM). */
int tg_router_table(tg_router_builder_t *b, const char *host, uint32_t *table);
int tg_router_add_path(tg_router_builder_t *b, uint32_t table, tg_path_type_t type,
		       const char *path, const tg_route_t *route);

/* Adds a regex path to table (hosts where some Ingress sets use-regex or
 * rewrite-target: ingress-nginx then makes every Prefix path of that host a
 * case-insensitive regex "location ~* ^path"). re is the compiled "^path"
 * (regex_t, owned by the snapshot); path is referenced like route->path.
 * Lookup: Exact paths first, then the regex paths in ingress-nginx's order
 * (longer path text first, equal lengths in descending byte order), the first
 * that matches the request path wins; then the table's ordinary Prefix
 * paths, root and fallback as usual. Returns 1, 0 (the same path text was
 * added before: the earlier route stays) or -ENOMEM. */
int tg_router_add_regex(tg_router_builder_t *b, uint32_t table, const char *path, const void *re,
			const tg_route_t *route);

/* Pre-sizes the builder for about n hosts and m paths (an optimisation only).
 * Returns 0 or -ENOMEM. */
int tg_router_reserve(tg_router_builder_t *b, size_t n, size_t m);

/* Marks host table `table` as claimed by the Ingress being added; true only
 * for the first call per table (that Ingress then sets the fallback). */
bool tg_router_claim(tg_router_builder_t *b, uint32_t table);

/* Sets the route for requests to table's host that match none of its paths
 * (NULL, the initial value: 404). Meaningless on the rules-without-host
 * table, which falls back to the default route. */
void tg_router_set_fallback(tg_router_builder_t *b, uint32_t table, const tg_route_t *route);

/* Sets the route used when nothing else matches; the first call wins. */
void tg_router_set_default(tg_router_builder_t *b, const tg_route_t *route);

/* Lays out the final tables in the output arena and frees the builder.
 * Returns NULL on allocation failure (the builder is freed either way). */
tg_router_t *tg_router_build(tg_router_builder_t *b);

/* Frees a builder without building. Accepts NULL. */
void tg_router_builder_free(tg_router_builder_t *b);

/* Counts for logs and tests. */
typedef struct tg_router_stats {
	uint32_t hosts;	    /* precise hosts */
	uint32_t wildcards; /* wildcard hosts */
	uint32_t routes;    /* (table, type, path) entries including root routes */
} tg_router_stats_t;

/* Fills *st from a built router. */
void tg_router_stats(const tg_router_t *r, tg_router_stats_t *st);

#endif

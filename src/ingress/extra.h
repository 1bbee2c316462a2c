/*
 * extra.h - the per-route behaviour of annotations, built into a snapshot:
 * tg_route_extra_t (snapshot.h) for each Ingress that needs one (refusal,
 * source ranges, auth-tls-match-cn, redirects, app-root, rewrite-target,
 * upstream-vhost, x-forwarded-prefix, backend-protocol HTTPS, limit-rps,
 * limit-rpm, limit-connections with limit-allowlist: the Ingress's zone in
 * the process-wide table of proxy/ratelimit.h, found again by name at every
 * build so that its buckets survive rebuilds).
 *
 * One tg_extra_build_t lives in each translator. It keeps the upstream TLS
 * profiles (tls/upstream.h) of the last build, keyed by their annotations and
 * the proxy-ssl-secret version, so a rebuild for an unrelated change makes no
 * new SSL_CTX. What a snapshot owns beyond its arena (compiled regexes,
 * profile references) is collected in a tg_extra_res_t freed with it.
 *
 * Call order per build (translate.c), on the source thread:
 *   tg_extra_build_begin(eb, st, snapshot_arena, &snapshot->settings)
 *   for each owned Ingress, in routing order:
 *       ex = tg_extra_build_ingress(eb, ing, warn)     (NULL: plain routes)
 *       tg_extra_build_route(eb, ex, path, regex, &ex2) per route of a regex
 *                                                      Ingress (rewrite-target)
 *   res = tg_extra_build_finish(eb)                    (or tg_extra_build_abort)
 *
 * proxy-ssl-secret: "name" (the Ingress's namespace) or "ns/name" in the same
 * namespace (ingress-nginx refuses other namespaces by default); ca.crt
 * (needed with proxy-ssl-verify on), tls.crt + tls.key (client certificate,
 * optional). A missing or broken Secret makes the routes answer 503, as
 * ingress-nginx denies such a location.
 */
#ifndef TG_INGRESS_EXTRA_H
#define TG_INGRESS_EXTRA_H

#include "ingress/arena.h"
#include "ingress/object.h"
#include "ingress/snapshot.h"
#include "ingress/store.h"

#include <stdbool.h>

typedef struct tg_extra_build tg_extra_build_t;
typedef struct tg_extra_res tg_extra_res_t; /* what a snapshot must release */

/* Creates the state of one translator. NULL when out of memory. */
tg_extra_build_t *tg_extra_build_new(void);

/* Frees it. Accepts NULL. */
void tg_extra_build_free(tg_extra_build_t *eb);

/* Starts a build: extras go into arena a; s is the snapshot's own copy of
 * the settings (the global source ranges are referenced from it). Returns 0
 * or -ENOMEM. */
int tg_extra_build_begin(tg_extra_build_t *eb, const tg_store_t *st, tg_arena_t *a,
			 const tg_settings_t *s);

/* The extra for the routes of Ingress o, or NULL when they need none. A
 * refused Ingress (or one whose proxy-ssl-secret is missing) gets an extra
 * with `denied` set, logged (when warn) as "Ingress ns/name: reason". *err
 * is -ENOMEM on allocation failure (NULL returned). */
const tg_route_extra_t *tg_extra_build_ingress(tg_extra_build_t *eb, const tg_object_t *o,
					       bool warn, int *err);

/* For a route whose path is a regular expression (use-regex or
 * rewrite-target): compiles `path` (POSIX ERE, case-insensitive, anchored at
 * the start as ingress-nginx's "location ~* ^path"), returns it in *re
 * (owned by the snapshot) for the router, and in *out the route's extra (a
 * copy of ex carrying the regex when the Ingress has rewrite-target, else ex
 * itself). Returns 0, -EINVAL when path is not a valid ERE (reason in why),
 * or -ENOMEM. */
int tg_extra_build_route(tg_extra_build_t *eb, const tg_route_extra_t *ex, const char *path,
			 const void **re, const tg_route_extra_t **out, char *why, size_t whylen);

/* Ends the build: returns what the snapshot must release (NULL when
 * nothing; tg_extra_res_free accepts it) and drops cached profiles no
 * Ingress used. *err is -ENOMEM when the list could not be allocated. */
tg_extra_res_t *tg_extra_build_finish(tg_extra_build_t *eb, int *err);

/* Abandons a build (releases what it collected). Safe when none runs. */
void tg_extra_build_abort(tg_extra_build_t *eb);

/* Guards regcomp() against patterns from Ingress objects that would make it
 * (or matching) take unreasonable memory or time: at most 1024 bytes, and the
 * product of every {m,n} bound at most 10000. Returns NULL, or what is wrong. */
const char *tg_extra_regex_check(const char *pat, size_t len);

/* Releases a snapshot's resources (regfree, profile references). Accepts
 * NULL. Called when the snapshot is freed, possibly on a worker thread. */
void tg_extra_res_free(tg_extra_res_t *r);

#endif

/*
 * annot.h - per-request behaviour of ingress-nginx annotations, for routes
 * whose opts.extra is set (tg_route_extra_t, snapshot.h). Ordinary routes
 * never come here: client.c tests the one pointer.
 *
 * Decisions, in nginx's order (rewrite-phase answers before access checks):
 *   1. denied (the Ingress is refused)          503
 *   2. ssl-redirect, client certificates        tg_cio_route_check (308/400/421/503)
 *   3. auth-tls-match-cn: the certificate's subject DN (RFC 2253, as
 *      $ssl_client_s_dn) must match the ERE, unanchored   else 403
 *   4. permanent-redirect / temporal-redirect    its code, Location: the URL
 *      ($request_uri, $uri, $args, $is_args, $scheme, $host, $http_host
 *      expanded as nginx would; other $names stay as written)
 *   5. app-root: a request for exactly "/"       302 to $scheme://$http_host<app-root>
 *   6. limit-rps, limit-rpm, then limit-connections (nginx's preaccess
 *      phase), keyed by the client address below unless limit-allowlist /
 *      limit-whitelist lists it                  limit-req-status-code /
 *                                                limit-conn-status-code [503]
 *      A limit-connections slot is held until the exchange ends and given
 *      back by tg_annot_release (every end path calls it).
 *   7. denylist-source-range, then whitelist/allowlist-source-range, on the
 *      client address (after PROXY protocol / trusted X-Forwarded-For: the
 *      one X-Real-IP gets)                       403
 * Forwarding: rewrite-target replaces the request target (the route's path
 * ERE matched against the path as received, $1..$9 substituted; the query is
 * kept, after the target's own if it has one, as nginx's rewrite does),
 * upstream-vhost replaces Host, x-forwarded-prefix sets X-Forwarded-Prefix.
 */
#ifndef TG_PROXY_ANNOT_H
#define TG_PROXY_ANNOT_H

#include "proxy/headers.h"
#include "proxy/worker.h"

/* After routing to rt (rt->opts.extra != NULL), in place of
 * tg_cio_route_check: 0 to proxy, or the status to answer (with
 * c->local_location set for redirects, c->local_detail for some errors). */
int tg_annot_route_check(tg_cconn_t *c, const tg_route_t *rt);

/* Per upstream attempt of a route with an extra: fills fi->target, ->host
 * and ->prefix. Returns 0, or -1 when no buffer was available (answer 500). */
int tg_annot_forward(tg_cconn_t *c, tg_fwd_info_t *fi);

/* affinity: cookie. The endpoint index the request's session cookie names
 * (in c->x->backend), or -1 (no such cookie, a malformed one, or its
 * endpoint is gone). */
int tg_annot_affinity_pick(tg_cconn_t *c);

/* The Set-Cookie value naming the endpoint c->x->ep_idx (name=value; Path;
 * Expires; Max-Age; SameSite; Secure; HttpOnly), in the per-request buffer
 * after anything already there; len 0 when it cannot be built. */
tg_str_t tg_annot_affinity_cookie(tg_cconn_t *c);

/* Gives back the per-request buffer and the limit-connections slot (end of
 * the exchange, close); safe to call more than once. */
void tg_annot_release(tg_cconn_t *c);

#endif

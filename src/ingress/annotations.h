/*
 * annotations.h - the per-Ingress nginx.ingress.kubernetes.io/ annotations,
 * with ingress-nginx's names and value formats.
 *
 *   proxy-body-size          size ("8m", "512k", "0" = unlimited)
 *   proxy-connect-timeout    seconds ("5") or a duration ("5s", "1m30s"), > 0
 *   proxy-read-timeout       same
 *   proxy-send-timeout       same
 *   ssl-redirect             "true" / "false"
 *   force-ssl-redirect       "true" / "false"
 *   backend-protocol         HTTP, HTTPS, AUTO_HTTP (= HTTP); GRPC, GRPCS, AJP,
 *                            FCGI refuse the Ingress (below)
 *   auth-tls-*               kept raw for tls_build.c (auth-tls-match-cn: parsed)
 *   whitelist-source-range, allowlist-source-range (the newer name wins),
 *   denylist-source-range    comma-separated addresses / blocks, IPv4 and IPv6
 *   proxy-ssl-secret, -verify, -verify-depth, -name, -server-name
 *   permanent-redirect(-code), temporal-redirect(-code), app-root, use-regex,
 *   rewrite-target, x-forwarded-prefix, upstream-vhost
 *
 * Three outcomes for a problem:
 *   - a bad value of an ordinary annotation rejects the object: -EINVAL with
 *     the reason, and the caller keeps the last good version of the Ingress;
 *   - an annotation asking for a protection tidegate does not implement
 *     (auth-type, auth-url, auth-signin, auth-secret, auth-realm, satisfy, any
 *     *-snippet, enable-modsecurity / enable-owasp-core-rules "true"), a
 *     backend protocol it cannot speak, or a bad value of a security
 *     annotation (source ranges, auth-tls-match-cn, proxy-ssl-verify,
 *     proxy-ssl-secret, proxy-ssl-name) is NOT an error here: the object
 *     parses, out->refused says why, and the translation makes every route of
 *     the Ingress answer 503. So a new version asking for such a protection
 *     replaces the old one and is not served without it, and its paths never
 *     fall through to another Ingress;
 *   - any other name under the prefix is logged once per process and ignored.
 */
#ifndef TG_INGRESS_ANNOTATIONS_H
#define TG_INGRESS_ANNOTATIONS_H

#include "ingress/arena.h"
#include "ingress/object.h"

#define TG_ANNOTATION_PREFIX "nginx.ingress.kubernetes.io/"

/*
 * Fills *out from the n annotations of an Ingress (all of them: names outside
 * the prefix are skipped). Raw values are copied into arena a. Returns 0, or
 * -EINVAL with a reason naming the annotation and the value in why and the
 * index of the offending entry in *bad (when bad is not NULL).
 */
int tg_annotations_parse(const tg_kv_t *ann, uint32_t n, tg_arena_t *a,
			 tg_ingress_annotations_t *out, char *why, size_t whylen, uint32_t *bad);

#endif

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
 *   backend-protocol         HTTP, HTTPS, GRPC, GRPCS (case-insensitive)
 *   auth-tls-*, whitelist-source-range
 *                            recognised and kept raw for the TLS / access work
 *
 * Any other name under the prefix is logged once per process and ignored. A
 * bad value rejects the whole Ingress (the caller keeps its last good version).
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

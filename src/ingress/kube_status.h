/*
 * kube_status.h - the status.loadBalancer.ingress tidegate writes on the
 * Ingresses it owns (--publish-status-address), and the comparison that keeps
 * it from rewriting a status that is already right.
 *
 * Both sides are reduced to a canonical string: entries "ip:<address>" (the
 * address re-formatted, so 2001:DB8::1 equals 2001:db8::1) or
 * "hostname:<name>" (lower-cased), sorted and joined by spaces; an entry that
 * carries ports (which tidegate never writes) gets "+ports", so it differs
 * and is rewritten. Equal strings mean no write.
 */
#ifndef TG_INGRESS_KUBE_STATUS_H
#define TG_INGRESS_KUBE_STATUS_H

#include "core/sbuf.h"

#include <stddef.h>

struct fy_node;

typedef struct tg_kube_status {
	char *canonical; /* desired state, canonical form ("" for an empty list) */
	char *patch;	 /* JSON merge-patch body setting status.loadBalancer.ingress,
			  * entries in the order the flag gave them */
} tg_kube_status_t;

/*
 * Parses --publish-status-address: a comma-separated list of IP addresses
 * and DNS host names (spaces around entries ignored). Returns 0, or -EINVAL
 * naming the bad entry in err, or -ENOMEM. On success out owns two strings
 * (tg_kube_status_free).
 */
int tg_kube_status_build(const char *addresses, tg_kube_status_t *out, char *err, size_t errlen);

/* Frees the strings. Accepts NULL. */
void tg_kube_status_free(tg_kube_status_t *s);

/* Appends the canonical form of obj's status.loadBalancer.ingress (an
 * Ingress as the API returns it; missing parts count as an empty list). */
void tg_kube_status_current(struct fy_node *obj, tg_sbuf_t *out);

#endif

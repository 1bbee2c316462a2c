/*
 * tls_build.h - the TLS part of a snapshot build: certificate Secrets named by
 * the owned Ingresses' spec.tls, the --default-ssl-certificate Secret, the
 * client-certificate policies of the auth-tls-* annotations and the ssl-*
 * ConfigMap keys, turned into a tg_tls_store_t (tls/tls.h).
 *
 * One tg_tls_build_t lives in each translator and keeps what must survive
 * builds:
 *   - the store of the last build, handed to the TLS library so that the
 *     OpenSSL contexts of unchanged Secrets are reused;
 *   - per Secret, its last good PEM: a Secret that turns bad (broken PEM, key
 *     not matching) is logged once as "ns/name: reason" and its previous
 *     content stays in force; a Secret that was never good (or is missing)
 *     leaves its hosts to the default certificate;
 *   - the ticket key installed from ssl-session-ticket-key.
 *
 * Call order per build (translate.c), on the source thread:
 *   tg_tls_build_begin(tb, st, settings)
 *   for each owned Ingress, in routing order:
 *       tg_tls_build_add_ingress(tb, st, ing)
 *       tg_tls_build_route_opts(tb, &opts)   for each route of that Ingress
 *   store = tg_tls_build_finish(tb)          (or tg_tls_build_abort(tb))
 *
 * Client-certificate policy per Ingress (ingress-nginx semantics):
 * auth-tls-secret NS/NAME (or NAME in the Ingress's namespace) with ca.crt;
 * auth-tls-verify-client on [default] / off / optional / optional_no_ca;
 * auth-tls-verify-depth [1]; auth-tls-pass-certificate-to-upstream [false].
 * The certificate is requested for the Ingress's rule hosts. A policy whose
 * Secret is missing or whose ca.crt never was valid makes the Ingress's
 * routes answer 503, as ingress-nginx denies such a location.
 */
#ifndef TG_INGRESS_TLS_BUILD_H
#define TG_INGRESS_TLS_BUILD_H

#include "ingress/snapshot.h"
#include "ingress/store.h"

#include <stdbool.h>

typedef struct tg_tls_build tg_tls_build_t;

/* Sets the --default-ssl-certificate Secret ("ns/name", copied) for the
 * builds of every translator. Process start-up only, before the
 * configuration source starts (the value is then read-only). NULL: the
 * generated certificate. */
void tg_tls_build_set_default_certificate(const char *ns_name);

/* True while ssl-session-ticket-key is in force: the owner of the 12-hour
 * ticket-key rotation must then leave the configured key alone (every node
 * shares it). Thread-safe. */
bool tg_tls_build_ticket_key_pinned(void);

/* Creates the state of one translator (initialising the TLS library if no
 * one did). NULL when out of memory. */
tg_tls_build_t *tg_tls_build_new(void);

/* Frees it (and its reference to the last store). Accepts NULL. */
void tg_tls_build_free(tg_tls_build_t *tb);

/* Starts a store for a build with these global settings (ssl-* keys).
 * Returns 0 or -ENOMEM. A rejected option combination is logged and the
 * defaults are used instead. */
int tg_tls_build_begin(tg_tls_build_t *tb, const tg_store_t *st, const tg_settings_t *s);

/* Adds the certificate Secrets of ing's spec.tls (with their hosts) and its
 * client-certificate policy. `warn`: the Ingress changed since the last build,
 * so its own problems are logged again. Returns 0 or -ENOMEM. */
int tg_tls_build_add_ingress(tg_tls_build_t *tb, const tg_store_t *st, const tg_object_t *ing,
			     bool warn);

/* Fills opts->client_auth and opts->client_auth_verify for a route of the
 * Ingress last given to tg_tls_build_add_ingress. */
void tg_tls_build_route_opts(const tg_tls_build_t *tb, tg_route_opts_t *opts);

/* Builds the store (one reference for the snapshot) and remembers it for the
 * next build. NULL when out of memory (logged). */
tg_tls_store_t *tg_tls_build_finish(tg_tls_build_t *tb);

/* Abandons the build started by tg_tls_build_begin (policies handed out by
 * it become invalid). Safe when none is running. */
void tg_tls_build_abort(tg_tls_build_t *tb);

#endif

/*
 * ingress_fixture.h - helpers for the src/ingress unit tests: YAML text into a
 * store, a snapshot from a store, and routes printed as "ns/service:port" so
 * that assertions read like the behaviour a user sees.
 */
#ifndef TG_TESTS_INGRESS_FIXTURE_H
#define TG_TESTS_INGRESS_FIXTURE_H

#include "ingress/snapshot.h"
#include "ingress/store.h"
#include "ingress/translate.h"

#include <stdbool.h>

/* Parses yaml as one manifest file and applies its objects to st. Returns the
 * number of rejected objects, or -1 when the file as a whole failed. */
int ingfx_apply(tg_store_t *st, const char *yaml);

/* Applies, in namespace ns, one Service per space-separated name (port 80
 * named "http", targetPort 8080) with an EndpointSlice holding one ready
 * endpoint 10.0.0.<i>:8080. Returns 0 or -1. */
int ingfx_services(tg_store_t *st, const char *ns, const char *names);

/* Default translator configuration (class tidegate, controller
 * tidegate.io/ingress-controller, ConfigMap tidegate-system/tidegate). */
tg_translate_config_t ingfx_config(void);

/* Builds a snapshot with a fresh translator using cfg (NULL: ingfx_config). */
tg_snapshot_t *ingfx_build(tg_store_t *st, const tg_translate_config_t *cfg);

/* Routes host+path and describes the result: "404" (no route), "503 <ns>/<svc>"
 * (route without backend), or "<service>:<port as written>". The string is
 * valid until the next call. */
const char *ingfx_route(const tg_snapshot_t *s, const char *host, const char *path);

/* The route itself (NULL for 404). */
const tg_route_t *ingfx_find(const tg_snapshot_t *s, const char *host, const char *path);

/* Minimal manifest fragments. */
#define INGFX_CLASS                                                                                \
	"apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: tidegate\n"      \
	"spec:\n  controller: tidegate.io/ingress-controller\n---\n"

#endif

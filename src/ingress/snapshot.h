/*
 * snapshot.h - the read-only routing configuration the proxy workers use, and
 * how it is published.
 *
 * A snapshot is built completely off the workers (by the configuration source:
 * directory watcher or API watcher), validated, then published with one atomic
 * pointer swap (STYLE.md rule 7). Workers never see a half-built snapshot and
 * never lock on the request path:
 *
 *   - tg_snapshot_generation() is one relaxed atomic load; a worker calls it
 *     once per event-loop iteration and, when it changed, calls
 *     tg_snapshot_acquire() to take a reference to the new snapshot.
 *   - A worker keeps a reference for as long as any of its requests points into
 *     a snapshot (routes, backends, endpoints). Requests that started on an old
 *     snapshot finish on it; new requests use the new one.
 *   - The snapshot is freed when the last reference is released.
 *
 * Everything reachable from a snapshot is immutable after publication and
 * owned by it.
 */
#ifndef TG_INGRESS_SNAPSHOT_H
#define TG_INGRESS_SNAPSHOT_H

#include "core/cidr.h"
#include "core/common.h"
#include "tls/tls.h"

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

typedef enum tg_lb_algo {
	TG_LB_ROUND_ROBIN = 0, /* load-balance: round_robin (default) */
	TG_LB_EWMA = 1,	       /* load-balance: ewma (accepted, treated as round robin for now) */
} tg_lb_algo_t;

typedef enum tg_backend_protocol {
	TG_PROTO_HTTP = 0, /* backend-protocol: HTTP (default) */
	TG_PROTO_HTTPS = 1,
	TG_PROTO_GRPC = 2,
	TG_PROTO_GRPCS = 3,
} tg_backend_protocol_t;

#define TG_MAX_REAL_IP_CIDRS 16 /* entries proxy-real-ip-cidr may list */
#define TG_MAX_GLOBAL_RANGES                                                                       \
	64 /* entries the ConfigMap's whitelist-source-range and                                   \
	    * denylist-source-range may each list */

/*
 * Global settings: the ConfigMap (--configmap NS/NAME) keys, with
 * ingress-nginx's names and defaults. Durations in milliseconds.
 */
typedef struct tg_settings {
	uint32_t keep_alive_ms;	      /* keep-alive [75s]; 0 disables client keep-alive */
	uint32_t keep_alive_requests; /* keep-alive-requests [1000] */
	uint64_t keep_alive_time_ms;  /* keep-alive-time [1h]: max age of a client conn */
	uint32_t upstream_keepalive_connections; /* upstream-keepalive-connections [320], idle
						  * pooled connections per worker */
	uint32_t upstream_keepalive_timeout_ms;	 /* upstream-keepalive-timeout [60s] */
	uint32_t upstream_keepalive_requests;	 /* upstream-keepalive-requests [10000] */
	uint32_t proxy_connect_timeout_ms;	 /* proxy-connect-timeout [5s] */
	uint32_t proxy_read_timeout_ms;		 /* proxy-read-timeout [60s] */
	uint32_t proxy_send_timeout_ms;		 /* proxy-send-timeout [60s] */
	uint32_t client_header_timeout_ms;	 /* client-header-timeout [60s], whole head */
	uint32_t client_body_timeout_ms;	 /* client-body-timeout [60s], between reads */
	uint64_t proxy_body_size;		 /* proxy-body-size [1m]; 0 = unlimited */
	uint64_t limit_rate;			 /* limit-rate [0 = none]: bytes/s per response */
	uint64_t limit_rate_after;		 /* limit-rate-after [0]: bytes sent unlimited */
	uint32_t worker_shutdown_timeout_ms;	 /* worker-shutdown-timeout [240s] */
	uint32_t max_worker_connections;	 /* max-worker-connections [16384] client conns
						  * per worker */
	uint32_t client_header_buffer_size;	 /* client-header-buffer-size [1k] (first read) */
	uint32_t large_client_header_buffers;	 /* large-client-header-buffers ["4 8k"] as total
						  * head limit in bytes [32768] -> 431 */
	uint32_t max_headers;			 /* max-headers [100] header fields -> 431 */
	uint32_t tcp_keepalive_ms;		 /* tcp-keepalive [0 = off]: client TCP keepalive
						  * idle time */
	bool use_proxy_protocol;		 /* use-proxy-protocol [false] */
	bool use_forwarded_headers;		 /* use-forwarded-headers [false] */
	bool ssl_redirect;			 /* ssl-redirect [true] */
	bool disable_access_log;		 /* disable-access-log [false] */
	tg_lb_algo_t load_balance;		 /* load-balance [round_robin] */
	/* TLS (see README "TLS"). Strings are empty for the default. */
	char ssl_protocols[64];		    /* ssl-protocols ["TLSv1.2 TLSv1.3"] */
	char ssl_ciphers[1024];		    /* ssl-ciphers [Mozilla intermediate] */
	uint32_t ssl_session_timeout_ms;    /* ssl-session-timeout [10m] */
	bool enable_ocsp;		    /* enable-ocsp [false]: OCSP stapling */
	bool ssl_session_tickets;	    /* ssl-session-tickets [true]: our only
					     * resumption (no shared session cache) */
	bool has_ssl_session_ticket_key;    /* ssl-session-ticket-key given */
	uint8_t ssl_session_ticket_key[80]; /* its value, base64-decoded (nginx layout) */
	tg_cidr_t
	    proxy_real_ip_cidr[TG_MAX_REAL_IP_CIDRS]; /* proxy-real-ip-cidr [0.0.0.0/0]:
						       * peers whose X-Forwarded-* are trusted */
	uint8_t n_proxy_real_ip_cidr;		      /* entries in proxy_real_ip_cidr */
	/* Default source ranges of every route whose Ingress has no annotation of
	 * its own (ingress-nginx's ConfigMap keys of the same names). */
	tg_cidr_t allow_ranges[TG_MAX_GLOBAL_RANGES]; /* whitelist-source-range [none] */
	uint8_t n_allow_ranges;			      /* entries in allow_ranges */
	tg_cidr_t deny_ranges[TG_MAX_GLOBAL_RANGES];  /* denylist-source-range [none] */
	uint8_t n_deny_ranges;			      /* entries in deny_ranges */
	bool ranges_bad;			      /* one of those two keys has a bad value:
						       * routes they govern answer 503 (fail
						       * closed, as ingress-nginx denies them) */
	/* Answers of the rate / connection limits (400-599, ingress-nginx's keys). */
	uint32_t limit_req_status_code;	 /* limit-req-status-code [503]: limit-rps/-rpm */
	uint32_t limit_conn_status_code; /* limit-conn-status-code [503]: limit-connections */
} tg_settings_t;

/* Fills s with the defaults listed above. */
void tg_settings_defaults(tg_settings_t *s);

/* One backend address (a pod), as an EndpointSlice lists it. */
typedef struct tg_endpoint {
	struct sockaddr_storage addr; /* IP and target port */
	socklen_t addrlen;	      /* bytes of addr used */
	char text[56];		      /* "10.0.0.1:8080" or "[fd00::1]:8080" for logs/metrics */
	bool terminating;	      /* serving but terminating: only used because no
				       * endpoint of the backend is ready */
} tg_endpoint_t;

/*
 * A Service port resolved to its endpoints. Shared by every route that names
 * the same Service and port.
 */
typedef struct tg_backend {
	uint32_t id;			/* dense index into snapshot->backends, so workers can
					 * keep per-backend state (round-robin cursor) in an
					 * array */
	const char *ns;			/* Service namespace */
	const char *service;		/* Service name */
	const char *port;		/* Service port as the Ingress wrote it (number or name) */
	const char *label;		/* "ns-service-port", ingress-nginx's upstream name */
	tg_endpoint_t *endpoints;	/* the usable set: ready ones, or serving-and-terminating
					 * ones when none is ready; may be empty (-> 503) */
	uint32_t n_endpoints;		/* entries in endpoints */
	tg_backend_protocol_t protocol; /* backend-protocol annotation */
} tg_backend_t;

struct tg_tls_upstream; /* tls/upstream.h */
struct tg_rl_policy;	/* proxy/ratelimit.h */

/*
 * What a route does beyond plain proxying, from its Ingress's annotations
 * (and the global source ranges). Shared by the routes of one Ingress; NULL
 * in tg_route_opts_t for ordinary routes, so the proxy pays one pointer test
 * for all of this. Decided per request in src/proxy/annot.c, in this order
 * (nginx's phases: rewrite-phase returns before access checks):
 *   denied -> ssl-redirect / client certificates -> auth-tls-match-cn ->
 *   permanent/temporal redirect -> app-root -> rate / connection limits ->
 *   source ranges -> proxy
 * (with rewrite-target, upstream-vhost, x-forwarded-prefix, upstream TLS).
 */
typedef struct tg_route_extra {
	const char *denied;		 /* the Ingress is refused (unsupported security
					  * annotation, bad security value): why; every
					  * route of it answers 503 */
	const tg_cidr_t *allow;		 /* whitelist/allowlist-source-range: only these
					  * client addresses (n_allow 0: everyone) */
	uint32_t n_allow;		 /* entries in allow */
	const tg_cidr_t *deny;		 /* denylist-source-range: these get 403 */
	uint32_t n_deny;		 /* entries in deny */
	const void *match_cn;		 /* auth-tls-match-cn: regex_t the client
					  * certificate's subject DN must match, or NULL */
	const char *redirect_url;	 /* permanent-redirect / temporal-redirect, or NULL */
	uint16_t redirect_code;		 /* its status (301/302 or the -code annotation) */
	const char *app_root;		 /* app-root: "/" redirects (302) here, or NULL */
	const void *rewrite_re;		 /* regex_t of the route's path for rewrite-target,
					  * or NULL (extras of regex routes are per route) */
	const char *rewrite_target;	 /* rewrite-target, with $1..$9, or NULL */
	const char *x_forwarded_prefix;	 /* x-forwarded-prefix value to send, or NULL */
	const char *upstream_vhost;	 /* upstream-vhost: Host sent upstream, or NULL */
	const char *auth_tls_error_page; /* client-certificate errors redirect here
					  * (302) instead of answering 400, or NULL */
	/* affinity: cookie (session stickiness): the cookie names the endpoint
	 * (proxy/annot.c); cookie_name NULL: no affinity. */
	const char *cookie_name;	/* session-cookie-name [INGRESSCOOKIE] */
	const char *cookie_path;	/* session-cookie-path, or NULL: the route's path */
	uint32_t cookie_max_age;	/* Max-Age seconds, 0: none */
	uint32_t cookie_expires;	/* Expires = now + seconds, 0: none */
	const char *cookie_samesite;	/* SameSite value, or NULL */
	bool cookie_secure;		/* Secure attribute */
	struct tg_tls_upstream *up_tls; /* backend-protocol HTTPS: the TLS profile (one
					 * reference owned by the snapshot), or NULL */
	/* limit-rps / limit-rpm / limit-connections, or NULL; exempt addresses */
	const struct tg_rl_policy *limits;
	const tg_cidr_t *limit_allow; /* limit-allowlist (limit-whitelist) */
	uint32_t n_limit_allow;	      /* entries in limit_allow */
} tg_route_extra_t;

/* Effective per-route settings: an annotation when the Ingress has one, else
 * the global value. */
typedef struct tg_route_opts {
	uint64_t proxy_body_size;	   /* nginx.ingress.kubernetes.io/proxy-body-size */
	uint32_t proxy_connect_timeout_ms; /* .../proxy-connect-timeout */
	uint32_t proxy_read_timeout_ms;	   /* .../proxy-read-timeout */
	uint32_t proxy_send_timeout_ms;	   /* .../proxy-send-timeout */
	bool ssl_redirect;		   /* .../ssl-redirect */
	bool force_ssl_redirect;	   /* .../force-ssl-redirect */
	uint64_t limit_rate;		   /* .../limit-rate in bytes/s (0: none) */
	uint64_t limit_rate_after;	   /* .../limit-rate-after in bytes */
	bool tls;		    /* the route's host is listed in the Ingress's spec.tls */
	uint8_t client_auth_verify; /* auth-tls-verify-client (tg_tls_verify_t) when
				     * auth-tls-secret is set, else OFF */
	const tg_tls_client_auth_t
	    *client_auth;	       /* its policy (owned by the snapshot's TLS
					* store); NULL with client_auth_verify != OFF: the
					* Secret is missing or bad, the routes answer 503 */
	const tg_route_extra_t *extra; /* annotations acted on per request, or NULL
					* (the common case: plain proxying) */
} tg_route_opts_t;

typedef enum tg_path_type {
	TG_PATH_EXACT = 0,
	TG_PATH_PREFIX = 1, /* also ImplementationSpecific */
} tg_path_type_t;

/* The result of routing a request. */
typedef struct tg_route {
	const tg_backend_t *backend; /* NULL when the Ingress names a Service or port that
				      * does not exist: the proxy answers 503 */
	const char *ingress_ns;	     /* owning Ingress, for logs and metrics */
	const char *ingress_name;
	const char *host; /* rule host as written ("" for any host) */
	const char *path; /* rule path as written */
	tg_path_type_t path_type;
	tg_route_opts_t opts;
} tg_route_t;

typedef struct tg_router tg_router_t; /* opaque: host hash + per-host path tables */

typedef struct tg_snapshot {
	_Atomic uint32_t refs;	/* references; see tg_snapshot_acquire/release */
	uint64_t generation;	/* strictly increasing per publication */
	tg_settings_t settings; /* global settings */
	tg_backend_t *backends; /* all backends, index == id */
	uint32_t n_backends;
	tg_router_t *router;  /* lookup structure */
	uint32_t n_ingresses; /* Ingresses routed (owned and valid) */
	tg_tls_store_t *tls;  /* certificates by SNI (one reference, released with
			       * the snapshot); NULL: HTTPS connections are refused */
	void *priv;	      /* builder's private data (arena), freed with it */
} tg_snapshot_t;

/*
 * Finds the route for a request. host is the request's authority (any case,
 * port allowed: it is ignored), path the request path without the query.
 * Returns NULL when no rule and no defaultBackend matches (the proxy answers
 * 404). Lock-free, allocation-free, cost independent of the number of hosts.
 */
const tg_route_t *tg_snapshot_route(const tg_snapshot_t *s, tg_str_t host, tg_str_t path);

/* Publishes s as the current snapshot (takes ownership of the caller's
 * reference) and drops the publisher's reference to the previous one. */
void tg_snapshot_publish(tg_snapshot_t *s);

/* Returns a new reference to the current snapshot, or NULL before the first
 * publication. */
tg_snapshot_t *tg_snapshot_acquire(void);

/* Drops a reference; frees the snapshot with the last one. Accepts NULL. */
void tg_snapshot_release(tg_snapshot_t *s);

/* Generation of the current snapshot (0 before the first). One atomic load. */
uint64_t tg_snapshot_generation(void);

#endif

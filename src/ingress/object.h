/*
 * object.h - the Kubernetes objects tidegate reads, parsed from a YAML/JSON
 * node into typed, immutable structs.
 *
 * The same parser serves every source: the manifest directory hands it each
 * document of a file, a future API watcher hands it each object of a list or
 * watch event (JSON is YAML to libfyaml). Parsing validates the object the way
 * the API server and ingress-nginx would (path types, hosts, annotation
 * values) so that the translation step only sees objects it can use; an
 * object that fails is reported with a reason and never reaches the store, so
 * the last good version of it stays in force there.
 *
 * Every string and array of an object lives in the object's own arena and is
 * freed with tg_object_free(). Strings are NUL-terminated.
 */
#ifndef TG_INGRESS_OBJECT_H
#define TG_INGRESS_OBJECT_H

#include "ingress/arena.h"
#include "ingress/snapshot.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fy_node;

typedef enum tg_kind {
	TG_KIND_INGRESS = 0,	   /* networking.k8s.io/v1 Ingress */
	TG_KIND_INGRESS_CLASS = 1, /* networking.k8s.io/v1 IngressClass (cluster-scoped) */
	TG_KIND_SERVICE = 2,	   /* v1 Service */
	TG_KIND_SECRET = 3,	   /* v1 Secret */
	TG_KIND_CONFIGMAP = 4,	   /* v1 ConfigMap */
	TG_KIND_ENDPOINTSLICE = 5, /* discovery.k8s.io/v1 EndpointSlice */
	TG_KIND_COUNT = 6,
} tg_kind_t;

/* One key/value string pair (labels, annotations, ConfigMap data). */
typedef struct tg_kv {
	const char *key;   /* key as written */
	const char *value; /* value; NUL-terminated, may contain NULs in theory */
	size_t value_len;  /* bytes of value */
} tg_kv_t;

/* An Ingress backend: a Service port (the only kind tidegate routes to). */
typedef struct tg_backend_ref {
	const char *service;   /* service.name; NULL when the backend is a resource */
	const char *port_name; /* service.port.name, or NULL when a number was given */
	uint32_t port_number;  /* service.port.number (1..65535), 0 when named */
	const char *port_text; /* the port as written ("80" or "http"), for labels */
	bool resource;	       /* backend.resource: recognised, logged and skipped */
} tg_backend_ref_t;

/* spec.rules[].http.paths[] */
typedef struct tg_ingress_path {
	const char *path;	  /* as written (starts with '/') */
	tg_path_type_t type;	  /* Exact, or Prefix (ImplementationSpecific too) */
	tg_backend_ref_t backend; /* where it goes */
} tg_ingress_path_t;

/* spec.rules[] */
typedef struct tg_ingress_rule {
	const char *host;	  /* as written; "" when the rule has no host */
	tg_ingress_path_t *paths; /* http.paths (empty when http is absent) */
	uint32_t n_paths;	  /* entries in paths */
} tg_ingress_rule_t;

/* spec.tls[] */
typedef struct tg_ingress_tls {
	const char **hosts; /* hosts the certificate covers */
	uint32_t n_hosts;   /* entries in hosts */
	const char *secret; /* secretName, or NULL (the default certificate) */
} tg_ingress_tls_t;

/*
 * The nginx.ingress.kubernetes.io/ annotations tidegate understands, parsed
 * and validated. A has_ flag is false when the annotation is absent, in which
 * case the global setting applies.
 */
typedef struct tg_ingress_annotations {
	bool has_proxy_body_size;	   /* proxy-body-size given */
	uint64_t proxy_body_size;	   /* bytes, 0 = unlimited */
	bool has_connect_timeout;	   /* proxy-connect-timeout given */
	uint32_t proxy_connect_timeout_ms; /* milliseconds */
	bool has_read_timeout;		   /* proxy-read-timeout given */
	uint32_t proxy_read_timeout_ms;	   /* milliseconds */
	bool has_send_timeout;		   /* proxy-send-timeout given */
	uint32_t proxy_send_timeout_ms;	   /* milliseconds */
	bool has_ssl_redirect;		   /* ssl-redirect given */
	bool ssl_redirect;		   /* its value */
	bool has_force_ssl_redirect;	   /* force-ssl-redirect given */
	bool force_ssl_redirect;	   /* its value */
	bool has_limit_rate;		   /* limit-rate given */
	uint64_t limit_rate;		   /* bytes per second (written in KB/s), 0 = none */
	bool has_limit_rate_after;	   /* limit-rate-after given */
	uint64_t limit_rate_after;	   /* bytes (written in KB) sent before the limit */
	tg_backend_protocol_t protocol;	   /* backend-protocol [HTTP] */
	tg_kv_t *raw;			   /* auth-tls-* (read again by tls_build.c), full
					    * names, raw values */
	uint32_t n_raw;			   /* entries in raw */
	/* --- security: a problem here refuses the Ingress (annotations.h) --- */
	const char *refused;  /* why the Ingress is not served (its routes
			       * answer 503), or NULL */
	bool has_allow;	      /* whitelist- / allowlist-source-range given */
	tg_cidr_t *allow;     /* its blocks */
	uint32_t n_allow;     /* entries in allow */
	bool has_deny;	      /* denylist-source-range given */
	tg_cidr_t *deny;      /* its blocks */
	uint32_t n_deny;      /* entries in deny */
	const char *match_cn; /* auth-tls-match-cn (checked ERE), or NULL */
	/* --- rate limits (security too: a bad value refuses the Ingress) --- */
	uint32_t limit_rps;	   /* limit-rps, 0: none */
	uint32_t limit_rpm;	   /* limit-rpm, 0: none */
	uint32_t limit_conns;	   /* limit-connections, 0: none */
	uint32_t limit_burst_mult; /* limit-burst-multiplier, 0: not given (5) */
	tg_cidr_t *limit_allow;	   /* limit-allowlist / limit-whitelist blocks */
	uint32_t n_limit_allow;	   /* entries in limit_allow */
	bool has_limit_allow_new;  /* limit-allowlist given (wins over -whitelist) */
	/* --- backend-protocol HTTPS (proxy-ssl-*) --- */
	const char *proxy_ssl_secret;	 /* proxy-ssl-secret "ns/name" (ns filled in) */
	bool proxy_ssl_verify;		 /* proxy-ssl-verify on [off] */
	uint32_t proxy_ssl_verify_depth; /* proxy-ssl-verify-depth [1] */
	const char *proxy_ssl_name;	 /* proxy-ssl-name, or NULL */
	bool proxy_ssl_server_name;	 /* proxy-ssl-server-name on [off] */
	/* --- routing --- */
	const char *redirect_url;	 /* permanent-redirect, else temporal-redirect */
	uint16_t redirect_code;		 /* 301 / 302 or the matching -code annotation */
	const char *app_root;		 /* app-root ("/path"), or NULL */
	bool use_regex;			 /* use-regex "true" (or rewrite-target given) */
	const char *rewrite_target;	 /* rewrite-target, or NULL */
	const char *x_forwarded_prefix;	 /* x-forwarded-prefix, or NULL */
	const char *upstream_vhost;	 /* upstream-vhost, or NULL */
	const char *auth_tls_error_page; /* auth-tls-error-page (absolute URL), or NULL */
	bool affinity_cookie;		 /* affinity: cookie */
	const char *cookie_name;	 /* session-cookie-name, or NULL [INGRESSCOOKIE] */
	const char *cookie_path;	 /* session-cookie-path, or NULL [the route's path] */
	uint32_t cookie_max_age;	 /* session-cookie-max-age seconds, 0: none */
	uint32_t cookie_expires;	 /* session-cookie-expires seconds, 0: none */
	const char *cookie_samesite;	 /* session-cookie-samesite None/Lax/Strict, or NULL */
	bool cookie_secure;		 /* session-cookie-secure "true" */
	bool canary;			 /* canary "true": a weighted copy of another
					  * Ingress's paths, which tidegate cannot split
					  * traffic for: not routed at all (translate.c) */
} tg_ingress_annotations_t;

typedef struct tg_ingress_spec {
	const char *class_name;		  /* spec.ingressClassName, or NULL */
	const char *legacy_class;	  /* kubernetes.io/ingress.class annotation, or NULL */
	bool has_default_backend;	  /* spec.defaultBackend present (service form) */
	tg_backend_ref_t default_backend; /* spec.defaultBackend */
	tg_ingress_rule_t *rules;	  /* spec.rules */
	uint32_t n_rules;		  /* entries in rules */
	tg_ingress_tls_t *tls;		  /* spec.tls */
	uint32_t n_tls;			  /* entries in tls */
	tg_ingress_annotations_t ann;	  /* nginx.ingress.kubernetes.io/ annotations */
} tg_ingress_spec_t;

typedef struct tg_ingress_class_spec {
	const char *controller; /* spec.controller ("" when absent) */
	bool is_default;	/* ingressclass.kubernetes.io/is-default-class == "true" */
} tg_ingress_class_spec_t;

/* spec.ports[] of a Service. */
typedef struct tg_service_port {
	const char *name;	 /* "" when unnamed (single-port Service) */
	uint32_t port;		 /* the Service port an Ingress names by number */
	const char *target_name; /* targetPort when it is a name, else NULL */
	uint32_t target_port;	 /* targetPort when a number (0: defaults to port) */
	bool tcp;		 /* protocol TCP (or absent); other protocols are not routed */
} tg_service_port_t;

typedef struct tg_service_spec {
	tg_service_port_t *ports; /* spec.ports */
	uint32_t n_ports;	  /* entries in ports */
} tg_service_spec_t;

/* One endpoint of a slice: its first address (the API says consumers may use
 * only the first; they are fungible) and its conditions. */
typedef struct tg_slice_endpoint {
	uint8_t family;	  /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* address, network order (first 4 bytes for IPv4) */
	bool ready;	  /* conditions.ready (absent counts as ready) */
	bool serving;	  /* conditions.serving (absent: same as ready) */
	bool terminating; /* conditions.terminating (absent: false) */
} tg_slice_endpoint_t;

typedef struct tg_slice_port {
	const char *name; /* "" when unnamed; matches the Service port's name */
	uint32_t port;	  /* the pods' port */
	bool tcp;	  /* protocol TCP (or absent) */
} tg_slice_port_t;

typedef struct tg_slice_spec {
	const char *service;		/* label kubernetes.io/service-name, or NULL */
	tg_slice_endpoint_t *endpoints; /* endpoints with an IP address (FQDN skipped) */
	uint32_t n_endpoints;		/* entries in endpoints */
	tg_slice_port_t *ports;		/* ports */
	uint32_t n_ports;		/* entries in ports */
} tg_slice_spec_t;

/* Decoded key material; never logged. */
typedef struct tg_secret_spec {
	const char *type;	/* "kubernetes.io/tls", "Opaque", ... */
	const uint8_t *tls_crt; /* data["tls.crt"] base64-decoded (PEM), or NULL */
	size_t tls_crt_len;	/* its bytes */
	const uint8_t *tls_key; /* data["tls.key"] base64-decoded (PEM), or NULL */
	size_t tls_key_len;	/* its bytes */
	const uint8_t *ca_crt;	/* data["ca.crt"] decoded (auth-tls-secret CA), or NULL */
	size_t ca_crt_len;	/* its bytes */
} tg_secret_spec_t;

typedef struct tg_configmap_spec {
	tg_kv_t *data;	 /* data, in document order */
	uint32_t n_data; /* entries in data */
} tg_configmap_spec_t;

typedef struct tg_object {
	tg_kind_t kind;	  /* which of the union members is valid */
	const char *ns;	  /* metadata.namespace ("default" when absent; "" for
			   * cluster-scoped kinds) */
	const char *name; /* metadata.name */
	const char *key;  /* "<kind>/<ns>/<name>", the store key */
	size_t key_len;	  /* bytes of key */
	int64_t created;  /* metadata.creationTimestamp, Unix seconds (0 when absent) */
	uint64_t digest;  /* hash of the whole source node: equal digests mean an
			   * unchanged object, so re-reading a file does not churn */
	/* Store bookkeeping (owned by store.c; zero outside the store). */
	uint64_t seq;	      /* store change counter when this version was applied */
	const void *owner;    /* who applied it (the directory source's file entry) */
	uint32_t kind_index;  /* position in the store's per-kind array */
	uint32_t group_index; /* position in its EndpointSlice group */
	union {
		tg_ingress_spec_t ingress;	       /* TG_KIND_INGRESS */
		tg_ingress_class_spec_t ingress_class; /* TG_KIND_INGRESS_CLASS */
		tg_service_spec_t service;	       /* TG_KIND_SERVICE */
		tg_secret_spec_t secret;	       /* TG_KIND_SECRET */
		tg_configmap_spec_t configmap;	       /* TG_KIND_CONFIGMAP */
		tg_slice_spec_t slice;		       /* TG_KIND_ENDPOINTSLICE */
	} u;
	tg_arena_t *arena; /* owns the object and everything it points to */
} tg_object_t;

/* Why an object could not be used. When `identified` is true the kind,
 * namespace and name are known: the object is rejected on its own and its last
 * good version stays in force. Otherwise the whole document is unusable. */
typedef struct tg_object_error {
	char reason[400]; /* "spec.rules[0].http.paths[1].pathType: ..." */
	int line;	  /* 1-based line of the offending node, 0 when unknown */
	bool identified;  /* kind/ns/name below are valid */
	tg_kind_t kind;	  /* the object's kind */
	char ns[64];	  /* its namespace */
	char name[254];	  /* its name */
} tg_object_error_t;

/* tg_object_parse results besides TG_OK / TG_ERROR. */
#define TG_OBJECT_IGNORED 1 /* a kind tidegate does not use (*out NULL) */

/*
 * Parses one object (a mapping with apiVersion, kind, metadata). Returns TG_OK
 * with *out set (caller owns it: tg_object_free or tg_store_apply),
 * TG_OBJECT_IGNORED for kinds tidegate does not read (the kind name goes to
 * err->reason), or TG_ERROR with err filled. The only logging is the
 * once-per-process notice for an unknown nginx.ingress.kubernetes.io/
 * annotation (annotations.h).
 */
int tg_object_parse(struct fy_node *root, tg_object_t **out, tg_object_error_t *err);

/* Frees an object and everything it owns. Accepts NULL. */
void tg_object_free(tg_object_t *obj);

/* "Ingress", "Service", ... */
const char *tg_kind_name(tg_kind_t kind);

/* Writes the store key "<kind>/<ns>/<name>" into buf (NUL-terminated);
 * returns its length, or 0 when it does not fit. */
size_t tg_object_key(tg_kind_t kind, const char *ns, const char *name, char *buf, size_t len);

/* True when host is a valid Ingress rule host: DNS labels of [A-Za-z0-9-],
 * optionally preceded by one "*." label. */
bool tg_object_valid_host(const char *host, size_t len);

#endif

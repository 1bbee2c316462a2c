#include "ingress/object.h"
#include "ingress/annotations.h"
#include "ingress/hash.h"
#include "core/common.h"
#include "core/parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[TG_KIND_COUNT] = {
    [TG_KIND_INGRESS] = "Ingress",     [TG_KIND_INGRESS_CLASS] = "IngressClass",
    [TG_KIND_SERVICE] = "Service",     [TG_KIND_SECRET] = "Secret",
    [TG_KIND_CONFIGMAP] = "ConfigMap", [TG_KIND_ENDPOINTSLICE] = "EndpointSlice",
};

/* The apiVersion each kind must carry. */
static const char *const kind_versions[TG_KIND_COUNT] = {
    [TG_KIND_INGRESS] = "networking.k8s.io/v1",
    [TG_KIND_INGRESS_CLASS] = "networking.k8s.io/v1",
    [TG_KIND_SERVICE] = "v1",
    [TG_KIND_SECRET] = "v1",
    [TG_KIND_CONFIGMAP] = "v1",
    [TG_KIND_ENDPOINTSLICE] = "discovery.k8s.io/v1",
};

const char *tg_kind_name(tg_kind_t kind)
{
	return (unsigned)kind < TG_KIND_COUNT ? kind_names[kind] : "?";
}

size_t tg_object_key(tg_kind_t kind, const char *ns, const char *name, char *buf, size_t len)
{
	/* memcpy, not snprintf: builds look objects up by key thousands of times. */
	const char *k = tg_kind_name(kind);
	size_t a = strlen(k), b = strlen(ns), c = strlen(name);
	if (a + b + c + 3 > len)
		return 0;
	memcpy(buf, k, a);
	buf[a] = '/';
	memcpy(buf + a + 1, ns, b);
	buf[a + 1 + b] = '/';
	memcpy(buf + a + b + 2, name, c);
	buf[a + b + c + 2] = '\0';
	return a + b + c + 2;
}

/* ---- parse context and node helpers ---------------------------------- */

/* Field paths in error messages ("spec.rules[0].http.paths[1].backend"). */
#define PATHLEN 256

static void pathf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void pathf(char *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, PATHLEN, fmt, ap);
	va_end(ap);
}

typedef struct pctx {
	tg_arena_t *a;		/* the object's arena */
	tg_object_error_t *err; /* first error lands here */
	bool failed;		/* an error was recorded */
} pctx_t;

#define MAX_LINE_DEPTH 8

/* 1-based line of a node: its own token for scalars, else its first child's. */
static int node_line(struct fy_node *n, int depth)
{
	if (!n || depth > MAX_LINE_DEPTH)
		return 0;
	if (fy_node_get_type(n) == FYNT_SCALAR) {
		struct fy_token *t = fy_node_get_scalar_token(n);
		const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
		return m ? m->line + 1 : 0;
	}
	void *it = NULL;
	if (fy_node_get_type(n) == FYNT_MAPPING) {
		struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
		return p ? node_line(fy_node_pair_key(p), depth + 1) : 0;
	}
	return node_line(fy_node_sequence_iterate(n, &it), depth + 1);
}

static void fail(pctx_t *c, struct fy_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the error and leaves the (void) parsing function. */
#define FAIL_RET(...)                                                                              \
	do {                                                                                       \
		fail(__VA_ARGS__);                                                                 \
		return;                                                                            \
	} while (0)

static void fail(pctx_t *c, struct fy_node *at, const char *fmt, ...)
{
	if (c->failed)
		return;
	c->failed = true;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err->reason, sizeof(c->err->reason), fmt, ap);
	va_end(ap);
	int line = node_line(at, 0);
	if (line)
		c->err->line = line;
}

/* True for an absent node or a plain null scalar (null, ~, empty). */
static bool is_null(struct fy_node *n)
{
	if (!n)
		return true;
	if (fy_node_get_type(n) != FYNT_SCALAR || fy_node_is_alias(n) ||
	    fy_node_get_style(n) != FYNS_PLAIN)
		return false;
	size_t len;
	const char *s = fy_node_get_scalar(n, &len);
	tg_str_t v = {s, len};
	return !s || len == 0 || tg_str_eq(v, "null", 4) || tg_str_eq(v, "Null", 4) ||
	       tg_str_eq(v, "NULL", 4) || tg_str_eq(v, "~", 1);
}

/* The value under key in mapping m, or NULL when absent or null. Aliases are
 * refused: Kubernetes manifests do not need them, and expanding them is how a
 * small file becomes a huge one. */
static struct fy_node *get(pctx_t *c, struct fy_node *m, const char *key, const char *path)
{
	if (!m || fy_node_get_type(m) != FYNT_MAPPING)
		return NULL;
	struct fy_node *v = fy_node_mapping_lookup_by_string(m, key, strlen(key));
	if (v && fy_node_is_alias(v)) {
		fail(c, v, "%s: YAML aliases are not supported", path);
		return NULL;
	}
	return is_null(v) ? NULL : v;
}

static struct fy_node *get_typed(pctx_t *c, struct fy_node *m, const char *key, const char *path,
				 enum fy_node_type type, const char *what)
{
	struct fy_node *v = get(c, m, key, path);
	if (v && fy_node_get_type(v) != type) {
		fail(c, v, "%s: expected %s", path, what);
		return NULL;
	}
	return v;
}

static struct fy_node *get_map(pctx_t *c, struct fy_node *m, const char *key, const char *path)
{
	return get_typed(c, m, key, path, FYNT_MAPPING, "a mapping");
}

static struct fy_node *get_seq(pctx_t *c, struct fy_node *m, const char *key, const char *path)
{
	return get_typed(c, m, key, path, FYNT_SEQUENCE, "a list");
}

/* A scalar's text (not copied). False when absent or not a scalar (error). */
static bool scalar_of(pctx_t *c, struct fy_node *v, const char *path, tg_str_t *out)
{
	if (!v)
		return false;
	if (fy_node_is_alias(v)) {
		fail(c, v, "%s: YAML aliases are not supported", path);
		return false;
	}
	if (fy_node_get_type(v) != FYNT_SCALAR) {
		fail(c, v, "%s: expected a string", path);
		return false;
	}
	size_t len;
	const char *s = fy_node_get_scalar(v, &len);
	if (!s) {
		fail(c, v, "%s: unreadable scalar", path);
		return false;
	}
	out->ptr = s;
	out->len = len;
	return true;
}

static bool get_text(pctx_t *c, struct fy_node *m, const char *key, const char *path, tg_str_t *out)
{
	return scalar_of(c, get(c, m, key, path), path, out);
}

static const char *copy(pctx_t *c, tg_str_t s)
{
	char *p = tg_arena_strndup(c->a, s.ptr, s.len);
	if (!p)
		fail(c, NULL, "out of memory");
	return p;
}

/* A string field copied into the arena, or NULL when absent. */
static const char *get_str(pctx_t *c, struct fy_node *m, const char *key, const char *path)
{
	tg_str_t s;
	return get_text(c, m, key, path, &s) ? copy(c, s) : NULL;
}

/* An integer field in [lo, hi]. False when absent (or on error). */
static bool get_uint(pctx_t *c, struct fy_node *m, const char *key, const char *path, uint64_t lo,
		     uint64_t hi, uint64_t *out)
{
	tg_str_t s;
	if (!get_text(c, m, key, path, &s))
		return false;
	uint64_t v;
	if (tg_parse_u64(s.ptr, s.len, &v) || v < lo || v > hi) {
		fail(c, get(c, m, key, path), "%s: expected a number in %llu..%llu, got \"%.*s\"",
		     path, (unsigned long long)lo, (unsigned long long)hi, (int)TG_MIN(s.len, 40),
		     s.ptr);
		return false;
	}
	*out = v;
	return true;
}

/* A boolean field; `dflt` when absent. */
static bool get_bool(pctx_t *c, struct fy_node *m, const char *key, const char *path, bool dflt)
{
	tg_str_t s;
	if (!get_text(c, m, key, path, &s))
		return dflt;
	bool b;
	if (tg_parse_bool(s.ptr, s.len, &b)) {
		fail(c, get(c, m, key, path), "%s: expected true or false", path);
		return dflt;
	}
	return b;
}

/* A mapping of string -> string (labels, annotations, ConfigMap data). */
static tg_kv_t *get_kv(pctx_t *c, struct fy_node *m, const char *key, const char *path,
		       uint32_t *n_out)
{
	*n_out = 0;
	struct fy_node *map = get_map(c, m, key, path);
	if (!map)
		return NULL;
	int n = fy_node_mapping_item_count(map);
	if (n <= 0)
		return NULL;
	tg_kv_t *kv = tg_arena_array(c->a, (size_t)n, sizeof(*kv));
	if (!kv) {
		fail(c, map, "out of memory");
		return NULL;
	}
	void *it = NULL;
	struct fy_node_pair *p;
	uint32_t i = 0;
	char sub[PATHLEN];
	while ((p = fy_node_mapping_iterate(map, &it)) && i < (uint32_t)n) {
		tg_str_t k, v = {"", 0};
		if (!scalar_of(c, fy_node_pair_key(p), path, &k))
			return NULL;
		pathf(sub, "%s.%.*s", path, (int)TG_MIN(k.len, 60), k.ptr);
		struct fy_node *vn = fy_node_pair_value(p);
		if (!is_null(vn) && !scalar_of(c, vn, sub, &v))
			return NULL;
		kv[i].key = copy(c, k);
		kv[i].value = copy(c, v);
		kv[i].value_len = v.len;
		i++;
	}
	if (c->failed)
		return NULL; /* *n_out stays 0 with the NULL */
	*n_out = i;
	return kv;
}

static const char *kv_find(const tg_kv_t *kv, uint32_t n, const char *key, size_t *len)
{
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(kv[i].key, key) == 0) {
			if (len)
				*len = kv[i].value_len;
			return kv[i].value;
		}
	return NULL;
}

/* ---- scalars with formats --------------------------------------------- */

static bool valid_label(const char *s, size_t len)
{
	if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = tg_lower(s[i]);
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
			return false;
	}
	return true;
}

bool tg_object_valid_host(const char *host, size_t len)
{
	if (len >= 2 && host[0] == '*' && host[1] == '.') {
		host += 2;
		len -= 2;
	}
	if (len == 0 || len > 253)
		return false;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || host[i] == '.') {
			if (!valid_label(host + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

/* Object names: DNS subdomain characters (lenient on case). */
static bool valid_name(tg_str_t s, size_t max)
{
	if (s.len == 0 || s.len > max)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		char ch = tg_lower(s.ptr[i]);
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		      ch == '.' || ch == '_'))
			return false;
	}
	return true;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, size_t n, unsigned *out)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* RFC 3339 "2024-05-01T10:00:00Z" (fractions and +hh:mm offsets allowed). */
static bool parse_time(tg_str_t s, int64_t *out)
{
	const char *p = s.ptr;
	unsigned y, mo, d, h, mi, se;
	if (s.len < 20 || !digits(p, 4, &y) || p[4] != '-' || !digits(p + 5, 2, &mo) ||
	    p[7] != '-' || !digits(p + 8, 2, &d) || (p[10] != 'T' && p[10] != 't') ||
	    !digits(p + 11, 2, &h) || p[13] != ':' || !digits(p + 14, 2, &mi) || p[16] != ':' ||
	    !digits(p + 17, 2, &se))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
		return false;
	size_t i = 19;
	if (i < s.len && p[i] == '.') {
		i++;
		while (i < s.len && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	int64_t off = 0;
	if (i < s.len && (p[i] == 'Z' || p[i] == 'z')) {
		i++;
	} else if (i + 6 == s.len && (p[i] == '+' || p[i] == '-') && p[i + 3] == ':') {
		unsigned oh, om;
		if (!digits(p + i + 1, 2, &oh) || !digits(p + i + 4, 2, &om))
			return false;
		off = (int64_t)(oh * 3600 + om * 60) * (p[i] == '-' ? -1 : 1);
		i += 6;
	} else {
		return false;
	}
	if (i != s.len)
		return false;
	*out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
	return true;
}

static int b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Standard base64 with padding; whitespace skipped. Returns the decoded bytes
 * in the arena, or NULL when malformed. */
static uint8_t *b64_decode(tg_arena_t *a, tg_str_t in, size_t *outlen)
{
	uint8_t *out = tg_arena_alloc(a, in.len / 4 * 3 + 3);
	if (!out)
		return NULL;
	size_t o = 0, pad = 0;
	uint32_t acc = 0;
	unsigned nbits = 0, nchars = 0;
	for (size_t i = 0; i < in.len; i++) {
		unsigned char ch = (unsigned char)in.ptr[i];
		if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
			continue;
		if (ch == '=') {
			pad++;
			nchars++;
			continue;
		}
		int v = b64_value(ch);
		if (v < 0 || pad)
			return NULL;
		nchars++;
		acc = (acc << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			out[o++] = (uint8_t)(acc >> nbits);
		}
	}
	if (nchars % 4 != 0 || pad > 2)
		return NULL;
	*outlen = o;
	return out;
}

/* ---- kinds --------------------------------------------------------------- */

static void parse_backend(pctx_t *c, struct fy_node *b, const char *path, tg_backend_ref_t *out)
{
	char p[PATHLEN];
	memset(out, 0, sizeof(*out));
	pathf(p, "%s.resource", path);
	struct fy_node *res = get_map(c, b, "resource", p);
	pathf(p, "%s.service", path);
	struct fy_node *svc = get_map(c, b, "service", p);
	if (res && svc) {
		fail(c, b, "%s: service and resource are mutually exclusive", path);
		return;
	}
	if (res) {
		out->resource = true;
		return;
	}
	if (!svc) {
		fail(c, b, "%s: service is required", path);
		return;
	}
	tg_str_t name;
	pathf(p, "%s.service.name", path);
	if (!get_text(c, svc, "name", p, &name) || !valid_name(name, 63)) {
		fail(c, svc, "%s: a valid service name is required", p);
		return;
	}
	out->service = copy(c, name);
	pathf(p, "%s.service.port", path);
	struct fy_node *port = get_map(c, svc, "port", p);
	if (!port) {
		fail(c, svc, "%s: port.number or port.name is required", p);
		return;
	}
	char pn[PATHLEN];
	pathf(pn, "%s.number", p);
	uint64_t num = 0;
	bool has_num = get_uint(c, port, "number", pn, 1, 65535, &num);
	pathf(pn, "%s.name", p);
	tg_str_t pname;
	bool has_name = get_text(c, port, "name", pn, &pname);
	if (c->failed)
		return;
	if (has_num == has_name) {
		fail(c, port, "%s: exactly one of number and name is required", p);
		return;
	}
	if (has_num) {
		char txt[8];
		snprintf(txt, sizeof(txt), "%u", (unsigned)num);
		out->port_number = (uint32_t)num;
		out->port_text = tg_arena_strdup(c->a, txt);
	} else {
		if (!valid_name(pname, 63)) {
			fail(c, port, "%s: invalid port name", pn);
			return;
		}
		out->port_name = copy(c, pname);
		out->port_text = out->port_name;
	}
}

static void parse_path(pctx_t *c, struct fy_node *pn, const char *path, tg_ingress_path_t *out)
{
	char p[PATHLEN];
	if (fy_node_get_type(pn) != FYNT_MAPPING) {
		fail(c, pn, "%s: expected a mapping", path);
		return;
	}
	pathf(p, "%s.pathType", path);
	tg_str_t type;
	if (!get_text(c, pn, "pathType", p, &type)) {
		fail(c, pn, "%s: pathType is required (Exact, Prefix or ImplementationSpecific)",
		     path);
		return;
	}
	bool impl = false;
	if (tg_str_eq(type, "Exact", 5)) {
		out->type = TG_PATH_EXACT;
	} else if (tg_str_eq(type, "Prefix", 6)) {
		out->type = TG_PATH_PREFIX;
	} else if (tg_str_eq(type, "ImplementationSpecific", 22)) {
		out->type = TG_PATH_PREFIX; /* treated as Prefix */
		impl = true;
	} else {
		fail(c, get(c, pn, "pathType", p),
		     "%s: unknown value \"%.*s\" (want Exact, Prefix or ImplementationSpecific)", p,
		     (int)TG_MIN(type.len, 40), type.ptr);
		return;
	}
	pathf(p, "%s.path", path);
	tg_str_t s;
	if (!get_text(c, pn, "path", p, &s)) {
		if (c->failed)
			return;
		if (!impl) {
			fail(c, pn, "%s: path is required for pathType Exact and Prefix", path);
			return;
		}
		s = TG_STR("/");
	}
	if (s.len == 0 || s.ptr[0] != '/') {
		fail(c, get(c, pn, "path", p), "%s: must be an absolute path starting with /", p);
		return;
	}
	for (size_t i = 0; i < s.len; i++)
		if ((unsigned char)s.ptr[i] <= ' ' || s.ptr[i] == 0x7f) {
			fail(c, get(c, pn, "path", p), "%s: contains whitespace or control bytes",
			     p);
			return;
		}
	out->path = copy(c, s);
	pathf(p, "%s.backend", path);
	struct fy_node *b = get_map(c, pn, "backend", p);
	if (!b) {
		fail(c, pn, "%s: backend is required", path);
		return;
	}
	parse_backend(c, b, p, &out->backend);
}

static void parse_ingress(pctx_t *c, struct fy_node *root, struct fy_node *ann_node,
			  const tg_kv_t *ann, uint32_t n_ann, tg_ingress_spec_t *ing)
{
	struct fy_node *spec = get_map(c, root, "spec", "spec");
	ing->class_name = get_str(c, spec, "ingressClassName", "spec.ingressClassName");
	ing->legacy_class = kv_find(ann, n_ann, "kubernetes.io/ingress.class", NULL);
	struct fy_node *db = get_map(c, spec, "defaultBackend", "spec.defaultBackend");
	if (db) {
		parse_backend(c, db, "spec.defaultBackend", &ing->default_backend);
		ing->has_default_backend = !ing->default_backend.resource;
	}
	struct fy_node *rules = get_seq(c, spec, "rules", "spec.rules");
	if (!db && !rules && !c->failed) {
		fail(c, spec ? spec : root,
		     "spec: either defaultBackend or rules must be specified");
		return;
	}
	char p[PATHLEN];
	if (rules) {
		int n = fy_node_sequence_item_count(rules);
		ing->rules = tg_arena_array(c->a, (size_t)TG_MAX(n, 0), sizeof(*ing->rules));
		if (!ing->rules)
			FAIL_RET(c, rules, "out of memory");
		void *it = NULL;
		struct fy_node *r;
		while ((r = fy_node_sequence_iterate(rules, &it)) && !c->failed &&
		       ing->n_rules < (uint32_t)n) {
			uint32_t ri = ing->n_rules;
			tg_ingress_rule_t *rule = &ing->rules[ri];
			pathf(p, "spec.rules[%u]", ri);
			if (fy_node_get_type(r) != FYNT_MAPPING || fy_node_is_alias(r))
				FAIL_RET(c, r, "%s: expected a mapping", p);
			char hp[PATHLEN];
			pathf(hp, "%s.host", p);
			tg_str_t host = {"", 0};
			if (get_text(c, r, "host", hp, &host) &&
			    !tg_object_valid_host(host.ptr, host.len))
				FAIL_RET(c, get(c, r, "host", hp),
					 "%s: \"%.*s\" is not a valid host (DNS name, optionally "
					 "starting with *.)",
					 hp, (int)TG_MIN(host.len, 80), host.ptr);
			rule->host = copy(c, host);
			pathf(hp, "%s.http", p);
			struct fy_node *http = get_map(c, r, "http", hp);
			ing->n_rules++;
			if (!http)
				continue;
			pathf(hp, "%s.http.paths", p);
			struct fy_node *paths = get_seq(c, http, "paths", hp);
			if (!paths) {
				fail(c, http, "%s: http.paths is required", p);
				return;
			}
			int np = fy_node_sequence_item_count(paths);
			rule->paths =
			    tg_arena_array(c->a, (size_t)TG_MAX(np, 0), sizeof(*rule->paths));
			if (!rule->paths)
				FAIL_RET(c, paths, "out of memory");
			void *pit = NULL;
			struct fy_node *pn;
			while ((pn = fy_node_sequence_iterate(paths, &pit)) && !c->failed &&
			       rule->n_paths < (uint32_t)np) {
				char pp[PATHLEN];
				pathf(pp, "%s.http.paths[%u]", p, rule->n_paths);
				if (fy_node_is_alias(pn))
					FAIL_RET(c, pn, "%s: YAML aliases are not supported", pp);
				parse_path(c, pn, pp, &rule->paths[rule->n_paths]);
				rule->n_paths++;
			}
		}
	}
	struct fy_node *tls = get_seq(c, spec, "tls", "spec.tls");
	if (tls && !c->failed) {
		int n = fy_node_sequence_item_count(tls);
		ing->tls = tg_arena_array(c->a, (size_t)TG_MAX(n, 0), sizeof(*ing->tls));
		if (!ing->tls)
			FAIL_RET(c, tls, "out of memory");
		void *it = NULL;
		struct fy_node *t;
		while ((t = fy_node_sequence_iterate(tls, &it)) && !c->failed &&
		       ing->n_tls < (uint32_t)n) {
			tg_ingress_tls_t *e = &ing->tls[ing->n_tls];
			pathf(p, "spec.tls[%u]", ing->n_tls);
			if (fy_node_get_type(t) != FYNT_MAPPING || fy_node_is_alias(t))
				FAIL_RET(c, t, "%s: expected a mapping", p);
			char hp[PATHLEN];
			pathf(hp, "%s.secretName", p);
			e->secret = get_str(c, t, "secretName", hp);
			pathf(hp, "%s.hosts", p);
			struct fy_node *hosts = get_seq(c, t, "hosts", hp);
			if (hosts) {
				int nh = fy_node_sequence_item_count(hosts);
				e->hosts =
				    tg_arena_array(c->a, (size_t)TG_MAX(nh, 0), sizeof(char *));
				if (!e->hosts)
					FAIL_RET(c, hosts, "out of memory");
				void *hit = NULL;
				struct fy_node *h;
				while ((h = fy_node_sequence_iterate(hosts, &hit)) && !c->failed &&
				       e->n_hosts < (uint32_t)nh) {
					tg_str_t hs;
					if (scalar_of(c, h, hp, &hs))
						e->hosts[e->n_hosts++] = copy(c, hs);
				}
			}
			ing->n_tls++;
		}
	}
	if (c->failed)
		return;
	char why[300];
	uint32_t bad = 0;
	if (tg_annotations_parse(ann, n_ann, c->a, &ing->ann, why, sizeof(why), &bad)) {
		struct fy_node *at = ann_node;
		if (ann_node && bad < n_ann)
			at = fy_node_mapping_lookup_by_string(ann_node, ann[bad].key,
							      strlen(ann[bad].key));
		fail(c, at ? at : ann_node, "%s", why);
	}
}

static void parse_service(pctx_t *c, struct fy_node *root, tg_service_spec_t *svc)
{
	struct fy_node *spec = get_map(c, root, "spec", "spec");
	struct fy_node *ports = get_seq(c, spec, "ports", "spec.ports");
	if (!ports)
		return;
	int n = fy_node_sequence_item_count(ports);
	svc->ports = tg_arena_array(c->a, (size_t)TG_MAX(n, 0), sizeof(*svc->ports));
	if (!svc->ports)
		FAIL_RET(c, ports, "out of memory");
	void *it = NULL;
	struct fy_node *pn;
	char p[PATHLEN], f[PATHLEN];
	while ((pn = fy_node_sequence_iterate(ports, &it)) && !c->failed &&
	       svc->n_ports < (uint32_t)n) {
		tg_service_port_t *sp = &svc->ports[svc->n_ports];
		pathf(p, "spec.ports[%u]", svc->n_ports);
		if (fy_node_get_type(pn) != FYNT_MAPPING || fy_node_is_alias(pn))
			FAIL_RET(c, pn, "%s: expected a mapping", p);
		pathf(f, "%s.name", p);
		sp->name = get_str(c, pn, "name", f);
		if (!sp->name)
			sp->name = "";
		pathf(f, "%s.port", p);
		uint64_t v;
		if (!get_uint(c, pn, "port", f, 1, 65535, &v)) {
			fail(c, pn, "%s: port is required", p);
			return;
		}
		sp->port = (uint32_t)v;
		pathf(f, "%s.targetPort", p);
		tg_str_t t;
		if (get_text(c, pn, "targetPort", f, &t)) {
			uint64_t tp;
			if (tg_parse_u64(t.ptr, t.len, &tp) == 0) {
				if (tp < 1 || tp > 65535)
					FAIL_RET(c, get(c, pn, "targetPort", f), "%s: out of range",
						 f);
				sp->target_port = (uint32_t)tp;
			} else {
				sp->target_name = copy(c, t);
			}
		}
		pathf(f, "%s.protocol", p);
		tg_str_t proto;
		sp->tcp = !get_text(c, pn, "protocol", f, &proto) || tg_str_eq(proto, "TCP", 3);
		svc->n_ports++;
	}
}

static void parse_slice(pctx_t *c, struct fy_node *root, const tg_kv_t *labels, uint32_t n_labels,
			tg_slice_spec_t *sl)
{
	sl->service = kv_find(labels, n_labels, "kubernetes.io/service-name", NULL);
	tg_str_t at;
	int family = 0;
	if (get_text(c, root, "addressType", "addressType", &at)) {
		if (tg_str_eq(at, "IPv4", 4))
			family = AF_INET;
		else if (tg_str_eq(at, "IPv6", 4))
			family = AF_INET6;
		else if (!tg_str_eq(at, "FQDN", 4))
			FAIL_RET(c, get(c, root, "addressType", "addressType"),
				 "addressType: unknown value \"%.*s\" (want IPv4, IPv6 or FQDN)",
				 (int)TG_MIN(at.len, 40), at.ptr);
	} else if (!c->failed) {
		FAIL_RET(c, root, "addressType is required");
	}
	char p[PATHLEN], f[PATHLEN];
	struct fy_node *ports = get_seq(c, root, "ports", "ports");
	if (ports) {
		int n = fy_node_sequence_item_count(ports);
		sl->ports = tg_arena_array(c->a, (size_t)TG_MAX(n, 0), sizeof(*sl->ports));
		if (!sl->ports)
			FAIL_RET(c, ports, "out of memory");
		void *it = NULL;
		struct fy_node *pn;
		while ((pn = fy_node_sequence_iterate(ports, &it)) && !c->failed &&
		       sl->n_ports < (uint32_t)n) {
			tg_slice_port_t *sp = &sl->ports[sl->n_ports];
			pathf(p, "ports[%u]", sl->n_ports);
			if (fy_node_get_type(pn) != FYNT_MAPPING || fy_node_is_alias(pn))
				FAIL_RET(c, pn, "%s: expected a mapping", p);
			pathf(f, "%s.name", p);
			sp->name = get_str(c, pn, "name", f);
			if (!sp->name)
				sp->name = "";
			pathf(f, "%s.port", p);
			uint64_t v = 0;
			/* An absent port means "all ports" in the API; unusable for us. */
			get_uint(c, pn, "port", f, 1, 65535, &v);
			sp->port = (uint32_t)v;
			pathf(f, "%s.protocol", p);
			tg_str_t proto;
			sp->tcp =
			    !get_text(c, pn, "protocol", f, &proto) || tg_str_eq(proto, "TCP", 3);
			sl->n_ports++;
		}
	}
	struct fy_node *eps = get_seq(c, root, "endpoints", "endpoints");
	if (!eps || c->failed)
		return;
	int n = fy_node_sequence_item_count(eps);
	sl->endpoints = tg_arena_array(c->a, (size_t)TG_MAX(n, 0), sizeof(*sl->endpoints));
	if (!sl->endpoints)
		FAIL_RET(c, eps, "out of memory");
	void *it = NULL;
	struct fy_node *en;
	uint32_t idx = 0;
	while ((en = fy_node_sequence_iterate(eps, &it)) && !c->failed && idx < (uint32_t)n) {
		pathf(p, "endpoints[%u]", idx++);
		if (fy_node_get_type(en) != FYNT_MAPPING || fy_node_is_alias(en))
			FAIL_RET(c, en, "%s: expected a mapping", p);
		pathf(f, "%s.addresses", p);
		struct fy_node *addrs = get_seq(c, en, "addresses", f);
		if (!addrs) {
			if (!c->failed)
				fail(c, en, "%s: addresses is required", p);
			return;
		}
		void *ait = NULL;
		struct fy_node *an = fy_node_sequence_iterate(addrs, &ait);
		tg_str_t a;
		if (!scalar_of(c, an, f, &a)) {
			if (!c->failed)
				fail(c, addrs, "%s: at least one address is required", f);
			return;
		}
		pathf(f, "%s.conditions", p);
		struct fy_node *cond = get_map(c, en, "conditions", f);
		char cf[PATHLEN];
		pathf(cf, "%s.ready", f);
		bool ready = get_bool(c, cond, "ready", cf, true);
		pathf(cf, "%s.serving", f);
		bool serving = get_bool(c, cond, "serving", cf, ready);
		pathf(cf, "%s.terminating", f);
		bool terminating = get_bool(c, cond, "terminating", cf, false);
		if (family == 0)
			continue; /* FQDN: not an address we can connect to */
		char buf[64];
		if (a.len >= sizeof(buf))
			FAIL_RET(c, an, "%s: \"%.*s\" is not an %s address", f,
				 (int)TG_MIN(a.len, 60), a.ptr,
				 family == AF_INET ? "IPv4" : "IPv6");
		memcpy(buf, a.ptr, a.len);
		buf[a.len] = '\0';
		tg_slice_endpoint_t *e = &sl->endpoints[sl->n_endpoints];
		if (inet_pton(family, buf, e->addr) != 1) {
			pathf(f, "%s.addresses[0]", p);
			FAIL_RET(c, an, "%s: \"%s\" is not an %s address", f, buf,
				 family == AF_INET ? "IPv4" : "IPv6");
		}
		e->family = (uint8_t)family;
		e->ready = ready;
		e->serving = serving;
		e->terminating = terminating;
		sl->n_endpoints++;
	}
}

static void secret_field(pctx_t *c, struct fy_node *data, struct fy_node *sdata, const char *key,
			 const uint8_t **out, size_t *outlen)
{
	char p[PATHLEN];
	tg_str_t s;
	pathf(p, "stringData.%s", key);
	if (get_text(c, sdata, key, p, &s)) {
		*out = (const uint8_t *)copy(c, s);
		*outlen = s.len;
		return;
	}
	pathf(p, "data.%s", key);
	if (!get_text(c, data, key, p, &s))
		return;
	uint8_t *d = b64_decode(c->a, s, outlen);
	/* The value is key material: the reason never quotes it. */
	if (!d)
		FAIL_RET(c, get(c, data, key, p), "%s: not valid base64", p);
	*out = d;
}

static void parse_secret(pctx_t *c, struct fy_node *root, tg_secret_spec_t *sec)
{
	sec->type = get_str(c, root, "type", "type");
	if (!sec->type)
		sec->type = "Opaque";
	struct fy_node *data = get_map(c, root, "data", "data");
	struct fy_node *sdata = get_map(c, root, "stringData", "stringData");
	secret_field(c, data, sdata, "tls.crt", &sec->tls_crt, &sec->tls_crt_len);
	secret_field(c, data, sdata, "tls.key", &sec->tls_key, &sec->tls_key_len);
	secret_field(c, data, sdata, "ca.crt", &sec->ca_crt, &sec->ca_crt_len);
	if (!c->failed && strcmp(sec->type, "kubernetes.io/tls") == 0 &&
	    (!sec->tls_crt || !sec->tls_key))
		fail(c, root, "type kubernetes.io/tls needs data tls.crt and tls.key");
}

/* Structural hash of a node tree: equal for equal content, whatever the
 * formatting. Depth-bounded (libfyaml bounds nesting as well). */
static uint64_t node_digest(struct fy_node *n, uint64_t h, int depth)
{
	if (!n || depth > 64)
		return tg_hash_mix(h ^ 0x5555);
	void *it = NULL;
	switch (fy_node_get_type(n)) {
	case FYNT_SCALAR: {
		size_t len = 0;
		const char *s = fy_node_get_scalar(n, &len);
		return tg_hash_bytes(s ? s : "", s ? len : 0, h ^ (fy_node_is_alias(n) ? 7 : 1));
	}
	case FYNT_SEQUENCE: {
		h = tg_hash_mix(h ^ 2);
		struct fy_node *v;
		while ((v = fy_node_sequence_iterate(n, &it)))
			h = node_digest(v, h, depth + 1);
		return tg_hash_mix(h ^ 3);
	}
	case FYNT_MAPPING: {
		h = tg_hash_mix(h ^ 4);
		struct fy_node_pair *p;
		while ((p = fy_node_mapping_iterate(n, &it))) {
			h = node_digest(fy_node_pair_key(p), h, depth + 1);
			h = node_digest(fy_node_pair_value(p), h, depth + 1);
		}
		return tg_hash_mix(h ^ 5);
	}
	}
	return h;
}

int tg_object_parse(struct fy_node *root, tg_object_t **out, tg_object_error_t *err)
{
	memset(err, 0, sizeof(*err));
	*out = NULL;
	pctx_t c = {.err = err};
	if (!root || fy_node_get_type(root) != FYNT_MAPPING || fy_node_is_alias(root)) {
		snprintf(err->reason, sizeof(err->reason),
			 "expected a mapping (a Kubernetes object)");
		err->line = node_line(root, 0);
		return TG_ERROR;
	}
	tg_str_t kind = {NULL, 0}, api = {NULL, 0};
	if (!get_text(&c, root, "kind", "kind", &kind)) {
		fail(&c, root, "kind is required");
		return TG_ERROR;
	}
	int k = -1;
	for (int i = 0; i < TG_KIND_COUNT; i++)
		if (tg_str_eq(kind, kind_names[i], strlen(kind_names[i])))
			k = i;
	if (k < 0) {
		snprintf(err->reason, sizeof(err->reason), "%.*s", (int)TG_MIN(kind.len, 80),
			 kind.ptr);
		return TG_OBJECT_IGNORED;
	}
	struct fy_node *meta = get_map(&c, root, "metadata", "metadata");
	tg_str_t name, ns = TG_STR("default");
	if (!get_text(&c, meta, "name", "metadata.name", &name) || !valid_name(name, 253)) {
		fail(&c, meta ? meta : root, "%s: metadata.name is missing or invalid",
		     kind_names[k]);
		return TG_ERROR;
	}
	if (k == TG_KIND_INGRESS_CLASS)
		ns = TG_STR("");
	else if (get_text(&c, meta, "namespace", "metadata.namespace", &ns) &&
		 !valid_name(ns, 63)) {
		fail(&c, get(&c, meta, "namespace", "metadata.namespace"),
		     "metadata.namespace: invalid");
		return TG_ERROR;
	}
	if (c.failed)
		return TG_ERROR;
	err->identified = true;
	err->kind = (tg_kind_t)k;
	memcpy(err->ns, ns.ptr, ns.len);
	err->ns[ns.len] = '\0';
	memcpy(err->name, name.ptr, name.len);
	err->name[name.len] = '\0';

	if (!get_text(&c, root, "apiVersion", "apiVersion", &api) ||
	    !tg_str_eq(api, kind_versions[k], strlen(kind_versions[k]))) {
		if (!c.failed)
			fail(&c, root, "apiVersion \"%.*s\" is not supported for %s (want %s)",
			     (int)TG_MIN(api.len, 60), api.ptr ? api.ptr : "", kind_names[k],
			     kind_versions[k]);
		return TG_ERROR;
	}

	c.a = tg_arena_new(1024);
	tg_object_t *o = c.a ? tg_arena_alloc(c.a, sizeof(*o)) : NULL;
	if (!o) {
		tg_arena_free(c.a);
		snprintf(err->reason, sizeof(err->reason), "out of memory");
		return TG_ERROR;
	}
	o->arena = c.a;
	o->kind = (tg_kind_t)k;
	o->ns = copy(&c, ns);
	o->name = copy(&c, name);
	char key[400];
	o->key_len = tg_object_key(o->kind, err->ns, err->name, key, sizeof(key));
	o->key = tg_arena_strndup(c.a, key, o->key_len);
	tg_str_t ts;
	if (get_text(&c, meta, "creationTimestamp", "metadata.creationTimestamp", &ts) &&
	    !parse_time(ts, &o->created))
		fail(&c, get(&c, meta, "creationTimestamp", "x"),
		     "metadata.creationTimestamp: \"%.*s\" is not an RFC 3339 time",
		     (int)TG_MIN(ts.len, 40), ts.ptr);
	uint32_t n_ann = 0, n_labels = 0;
	const tg_kv_t *ann = NULL, *labels = NULL;
	if (k == TG_KIND_INGRESS || k == TG_KIND_INGRESS_CLASS)
		ann = get_kv(&c, meta, "annotations", "metadata.annotations", &n_ann);
	if (k == TG_KIND_ENDPOINTSLICE)
		labels = get_kv(&c, meta, "labels", "metadata.labels", &n_labels);
	if (c.failed) {
		tg_arena_free(c.a);
		return TG_ERROR;
	}

	switch (o->kind) {
	case TG_KIND_INGRESS:
		parse_ingress(&c, root, get(&c, meta, "annotations", "metadata.annotations"), ann,
			      n_ann, &o->u.ingress);
		break;
	case TG_KIND_INGRESS_CLASS: {
		struct fy_node *spec = get_map(&c, root, "spec", "spec");
		o->u.ingress_class.controller = get_str(&c, spec, "controller", "spec.controller");
		if (!o->u.ingress_class.controller)
			o->u.ingress_class.controller = "";
		size_t dl;
		const char *d =
		    kv_find(ann, n_ann, "ingressclass.kubernetes.io/is-default-class", &dl);
		bool b = false;
		o->u.ingress_class.is_default = d && tg_parse_bool(d, dl, &b) == 0 && b;
		break;
	}
	case TG_KIND_SERVICE:
		parse_service(&c, root, &o->u.service);
		break;
	case TG_KIND_SECRET:
		parse_secret(&c, root, &o->u.secret);
		break;
	case TG_KIND_CONFIGMAP:
		o->u.configmap.data = get_kv(&c, root, "data", "data", &o->u.configmap.n_data);
		break;
	case TG_KIND_ENDPOINTSLICE:
		parse_slice(&c, root, labels, n_labels, &o->u.slice);
		break;
	default:
		break;
	}
	if (c.failed || !o->ns || !o->name || !o->key) {
		if (!c.failed)
			snprintf(err->reason, sizeof(err->reason), "out of memory");
		tg_arena_free(c.a);
		return TG_ERROR;
	}
	o->digest = node_digest(root, 0x74696465ull, 0);
	*out = o;
	return TG_OK;
}

void tg_object_free(tg_object_t *obj)
{
	if (obj)
		tg_arena_free(obj->arena);
}

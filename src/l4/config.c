/*
 * config.c - balancer YAML -> tg_l4_config_t.
 *
 * The YAML is built into a libfyaml document and walked once. Every value goes
 * through one setter that knows its field path, so errors read
 * `vips[0].health-check.interval: "3x" is not a duration (e.g. 500ms, 30s, 5m)`.
 * The first error stops the walk: one precise reason beats a cascade.
 * Aliases are refused (nobody needs them in this file and they let a small
 * document expand without bound).
 */
#include "l4/config.h"
#include "l4/maglev.h"
#include "core/addr.h"
#include "core/common.h"
#include "core/parse.h"

#include "abi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (16u << 20) /* refuse absurd files before reading them */

/* Walk state: the field path of the node being read and the first error. */
typedef struct pctx {
	char *err;	/* caller's error buffer */
	size_t errlen;	/* its size */
	char path[192]; /* current field path, e.g. "vips[0].reals[2]" */
	size_t plen;	/* bytes used in path */
	bool failed;	/* an error has been written */
} pctx_t;

static void fail(pctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(pctx_t *c, const char *fmt, ...)
{
	if (c->failed)
		return;
	c->failed = true;
	if (!c->err || c->errlen == 0)
		return;
	int n = 0;
	if (c->plen > 0)
		n = snprintf(c->err, c->errlen, "%s: ", c->path);
	if (n < 0 || (size_t)n >= c->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Appends ".key" (or "key" at the root) to the path; returns the old length
 * for pop(). */
static size_t push_key(pctx_t *c, const char *key, size_t klen)
{
	size_t old = c->plen;
	int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "%s%.*s", c->plen ? "." : "",
			 (int)TG_MIN(klen, 64), key);
	if (n > 0)
		c->plen = TG_MIN(c->plen + (size_t)n, sizeof(c->path) - 1);
	return old;
}

static size_t push_index(pctx_t *c, size_t i)
{
	size_t old = c->plen;
	int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "[%zu]", i);
	if (n > 0)
		c->plen = TG_MIN(c->plen + (size_t)n, sizeof(c->path) - 1);
	return old;
}

static void pop(pctx_t *c, size_t old)
{
	c->plen = old;
	c->path[old] = '\0';
}

/* Quotes a scalar for an error message: printable ASCII kept, the rest as
 * \xNN, long values cut with "...". */
static const char *quote(const char *s, size_t len, char *buf, size_t buflen)
{
	size_t o = 0;
	buf[o++] = '"';
	for (size_t i = 0; i < len && o + 8 < buflen; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
			buf[o++] = (char)ch;
		} else {
			int n = snprintf(buf + o, buflen - o, "\\x%02x", ch);
			o += (size_t)n;
		}
		if (i + 1 < len && o + 8 >= buflen) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* The node's scalar text, or NULL with an error when it is not a scalar. */
static const char *scalar(pctx_t *c, struct fy_node *n, size_t *len)
{
	if (!n) {
		fail(c, "missing value");
		return NULL;
	}
	if (fy_node_is_alias(n)) {
		fail(c, "YAML aliases are not supported");
		return NULL;
	}
	if (fy_node_get_type(n) != FYNT_SCALAR) {
		fail(c, "expected a single value, not a %s",
		     fy_node_get_type(n) == FYNT_MAPPING ? "mapping" : "list");
		return NULL;
	}
	const char *s = fy_node_get_scalar(n, len);
	if (!s || *len == 0) {
		fail(c, "missing value");
		return NULL;
	}
	return s;
}

static bool expect_type(pctx_t *c, struct fy_node *n, enum fy_node_type t)
{
	static const char *const names[] = {"a single value", "a list", "a mapping"};
	if (!n || fy_node_is_alias(n)) {
		fail(c, n ? "YAML aliases are not supported" : "missing value");
		return false;
	}
	if (fy_node_get_type(n) != t) {
		fail(c, "expected %s", names[t]);
		return false;
	}
	return true;
}

static bool key_is(const char *k, size_t klen, const char *want)
{
	return tg_str_eq((tg_str_t){k, klen}, want, strlen(want));
}

/* Reads an unsigned integer in [lo, hi]. */
static bool get_uint(pctx_t *c, struct fy_node *n, uint64_t lo, uint64_t hi, uint64_t *out)
{
	size_t len;
	char q[96];
	const char *s = scalar(c, n, &len);
	if (!s)
		return false;
	uint64_t v;
	if (tg_parse_u64(s, len, &v) != 0) {
		fail(c, "%s is not a whole number", quote(s, len, q, sizeof(q)));
		return false;
	}
	if (v < lo || v > hi) {
		fail(c, "%s is out of range (%llu..%llu)", quote(s, len, q, sizeof(q)),
		     (unsigned long long)lo, (unsigned long long)hi);
		return false;
	}
	*out = v;
	return true;
}

/* Reads a duration ("500ms", "30s", "5m") in [lo_ms, hi_ms]. */
static bool get_duration(pctx_t *c, struct fy_node *n, uint64_t lo_ms, uint64_t hi_ms,
			 uint32_t *out)
{
	size_t len;
	char q[96];
	const char *s = scalar(c, n, &len);
	if (!s)
		return false;
	uint64_t v;
	if (tg_parse_duration_ms(s, len, 0, &v) != 0) {
		fail(c, "%s is not a duration (e.g. 500ms, 30s, 5m)", quote(s, len, q, sizeof(q)));
		return false;
	}
	if (v < lo_ms || v > hi_ms) {
		fail(c, "%s is out of range (%llums..%llus)", quote(s, len, q, sizeof(q)),
		     (unsigned long long)lo_ms, (unsigned long long)(hi_ms / 1000));
		return false;
	}
	*out = (uint32_t)v;
	return true;
}

static bool get_bool(pctx_t *c, struct fy_node *n, bool *out)
{
	size_t len;
	char q[96];
	const char *s = scalar(c, n, &len);
	if (!s)
		return false;
	if (tg_parse_bool(s, len, out) != 0) {
		fail(c, "%s is not true or false", quote(s, len, q, sizeof(q)));
		return false;
	}
	return true;
}

/* Matches the scalar against `names` (n entries); returns the index or -1. */
static int get_enum(pctx_t *c, struct fy_node *n, const char *const *names, int count)
{
	size_t len;
	char q[96], list[128];
	const char *s = scalar(c, n, &len);
	if (!s)
		return -1;
	size_t o = 0;
	list[0] = '\0';
	for (int i = 0; i < count; i++) {
		if (key_is(s, len, names[i]))
			return i;
		int w = snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", names[i]);
		if (w > 0)
			o = TG_MIN(o + (size_t)w, sizeof(list) - 1);
	}
	fail(c, "%s is not one of: %s", quote(s, len, q, sizeof(q)), list);
	return -1;
}

int tg_l4_ip_parse(const char *s, size_t len, tg_l4_ip_t *out)
{
	char buf[INET6_ADDRSTRLEN + 1];
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	struct in_addr a4;
	tg_l4_ip_t ip;
	memset(&ip, 0, sizeof(ip));
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		ip.family = AF_INET;
		ip.addr.s6_addr[10] = 0xff;
		ip.addr.s6_addr[11] = 0xff;
		memcpy(&ip.addr.s6_addr[12], &a4, 4);
	} else if (inet_pton(AF_INET6, buf, &ip.addr) == 1) {
		ip.family = AF_INET6;
		/* An IPv4-mapped IPv6 address would alias an IPv4 real. */
		if (IN6_IS_ADDR_V4MAPPED(&ip.addr))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	*out = ip;
	return 0;
}

const char *tg_l4_ip_format(const tg_l4_ip_t *ip, char *buf, size_t buflen)
{
	if (ip->family == AF_INET)
		inet_ntop(AF_INET, &ip->addr.s6_addr[12], buf, (socklen_t)buflen);
	else
		inet_ntop(AF_INET6, &ip->addr, buf, (socklen_t)buflen);
	return buf;
}

bool tg_l4_ip_eq(const tg_l4_ip_t *a, const tg_l4_ip_t *b)
{
	return a->family == b->family && memcmp(&a->addr, &b->addr, 16) == 0;
}

static bool get_ip(pctx_t *c, struct fy_node *n, tg_l4_ip_t *out)
{
	size_t len;
	char q[96];
	const char *s = scalar(c, n, &len);
	if (!s)
		return false;
	if (tg_l4_ip_parse(s, len, out) != 0) {
		fail(c, "%s is not an IPv4 or IPv6 address", quote(s, len, q, sizeof(q)));
		return false;
	}
	return true;
}

/* Zone names: short and printable so they are safe as metric labels. */
static bool get_zone(pctx_t *c, struct fy_node *n, char out[TG_L4_ZONE_MAX])
{
	size_t len;
	char q[96];
	const char *s = scalar(c, n, &len);
	if (!s)
		return false;
	bool ok = len < TG_L4_ZONE_MAX;
	for (size_t i = 0; ok && i < len; i++) {
		char ch = s[i];
		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		     (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
	}
	if (!ok) {
		fail(c, "%s is not a zone name (up to %d letters, digits, '-', '_', '.')",
		     quote(s, len, q, sizeof(q)), TG_L4_ZONE_MAX - 1);
		return false;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	return true;
}

/* Iterates a mapping: calls fn for each key, with the path extended by the
 * key. Refuses non-scalar keys. */
typedef bool (*field_fn)(pctx_t *c, const char *k, size_t klen, struct fy_node *v, void *obj);

static bool each_field(pctx_t *c, struct fy_node *map, field_fn fn, void *obj)
{
	if (!expect_type(c, map, FYNT_MAPPING))
		return false;
	void *it = NULL;
	struct fy_node_pair *p;
	while ((p = fy_node_mapping_iterate(map, &it)) != NULL) {
		struct fy_node *kn = fy_node_pair_key(p);
		size_t klen = 0;
		const char *k = NULL;
		if (kn && !fy_node_is_alias(kn) && fy_node_get_type(kn) == FYNT_SCALAR)
			k = fy_node_get_scalar(kn, &klen);
		if (!k || klen == 0) {
			fail(c, "keys must be plain names");
			return false;
		}
		size_t old = push_key(c, k, klen);
		bool ok = fn(c, k, klen, fy_node_pair_value(p), obj);
		if (ok)
			pop(c, old);
		if (!ok) {
			if (!c->failed)
				fail(c, "invalid value");
			return false;
		}
	}
	return true;
}

/* Called for a key nobody knows. */
static bool unknown(pctx_t *c)
{
	fail(c, "unknown key");
	return false;
}

/* health-check fields */
typedef struct hc_obj {
	tg_l4_health_cfg_t *h; /* being filled */
	bool port_set;	       /* port given explicitly */
	bool path_set;	       /* path given explicitly */
} hc_obj_t;

static bool hc_field(pctx_t *c, const char *k, size_t klen, struct fy_node *v, void *obj)
{
	hc_obj_t *o = obj;
	tg_l4_health_cfg_t *h = o->h;
	uint64_t u;
	if (key_is(k, klen, "protocol")) {
		static const char *const names[] = {"tcp", "http"};
		int i = get_enum(c, v, names, 2);
		if (i < 0)
			return false;
		h->proto = (tg_l4_hc_proto_t)i;
		return true;
	}
	if (key_is(k, klen, "port")) {
		if (!get_uint(c, v, 1, 65535, &u))
			return false;
		h->port = (uint16_t)u;
		o->port_set = true;
		return true;
	}
	if (key_is(k, klen, "path")) {
		size_t len;
		char q[96];
		const char *s = scalar(c, v, &len);
		if (!s)
			return false;
		bool ok = len < TG_L4_PATH_MAX && s[0] == '/';
		for (size_t i = 0; ok && i < len; i++)
			ok = (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f;
		if (!ok) {
			fail(c,
			     "%s is not a request path (starts with '/', no spaces or control "
			     "characters, under %d bytes)",
			     quote(s, len, q, sizeof(q)), TG_L4_PATH_MAX);
			return false;
		}
		memcpy(h->path, s, len);
		h->path[len] = '\0';
		o->path_set = true;
		return true;
	}
	if (key_is(k, klen, "interval"))
		return get_duration(c, v, 50, 3600000, &h->interval_ms);
	if (key_is(k, klen, "timeout"))
		return get_duration(c, v, 10, 3600000, &h->timeout_ms);
	if (key_is(k, klen, "healthy-threshold")) {
		if (!get_uint(c, v, 1, 100, &u))
			return false;
		h->healthy_threshold = (uint32_t)u;
		return true;
	}
	if (key_is(k, klen, "unhealthy-threshold")) {
		if (!get_uint(c, v, 1, 100, &u))
			return false;
		h->unhealthy_threshold = (uint32_t)u;
		return true;
	}
	return unknown(c);
}

static bool real_field(pctx_t *c, const char *k, size_t klen, struct fy_node *v, void *obj)
{
	tg_l4_real_cfg_t *r = obj;
	uint64_t u;
	if (key_is(k, klen, "address"))
		return get_ip(c, v, &r->ip);
	if (key_is(k, klen, "weight")) {
		if (!get_uint(c, v, 1, TG_L4_WEIGHT_MAX, &u))
			return false;
		r->weight = (uint32_t)u;
		return true;
	}
	if (key_is(k, klen, "zone"))
		return get_zone(c, v, r->zone);
	return unknown(c);
}

/* vips[] fields; tracks which optional ones were given for the defaults
 * that depend on others. */
typedef struct vip_obj {
	tg_l4_vip_cfg_t *v;    /* being filled */
	bool have_address;     /* address given */
	bool have_port;	       /* port given */
	bool have_idle;	       /* idle-timeout given */
	bool have_reals;       /* reals given */
	hc_obj_t hc;	       /* health-check state */
	struct fy_node *reals; /* reals list, read after the other fields */
} vip_obj_t;

static bool vip_field(pctx_t *c, const char *k, size_t klen, struct fy_node *n, void *obj)
{
	vip_obj_t *o = obj;
	tg_l4_vip_cfg_t *v = o->v;
	uint64_t u;
	int i;
	if (key_is(k, klen, "address")) {
		o->have_address = true;
		return get_ip(c, n, &v->ip);
	}
	if (key_is(k, klen, "port")) {
		if (!get_uint(c, n, 1, 65535, &u))
			return false;
		v->port = (uint16_t)u;
		o->have_port = true;
		return true;
	}
	if (key_is(k, klen, "protocol")) {
		static const char *const names[] = {"tcp", "udp"};
		if ((i = get_enum(c, n, names, 2)) < 0)
			return false;
		v->proto = i == 0 ? TG_L4_TCP : TG_L4_UDP;
		return true;
	}
	if (key_is(k, klen, "forwarding")) {
		static const char *const names[] = {"ipip", "l2"};
		if ((i = get_enum(c, n, names, 2)) < 0)
			return false;
		v->forwarding = (tg_l4_fwd_t)i;
		return true;
	}
	if (key_is(k, klen, "hash")) {
		static const char *const names[] = {"5-tuple", "source-ip"};
		if ((i = get_enum(c, n, names, 2)) < 0)
			return false;
		v->hash = (tg_l4_hash_t)i;
		return true;
	}
	if (key_is(k, klen, "ring-size")) {
		if (!get_uint(c, n, 2, TG_MAGLEV_SIZE_MAX, &u))
			return false;
		if (!tg_maglev_is_prime(u)) {
			fail(c,
			     "%llu is not a prime number (Maglev needs a prime table size, e.g. "
			     "65537)",
			     (unsigned long long)u);
			return false;
		}
		v->ring_size = (uint32_t)u;
		return true;
	}
	if (key_is(k, klen, "idle-timeout")) {
		o->have_idle = true;
		return get_duration(c, n, 1000, 7 * 86400000ull, &v->idle_timeout_ms);
	}
	if (key_is(k, klen, "deregistration-delay"))
		return get_duration(c, n, 0, 7 * 86400000ull, &v->dereg_delay_ms);
	if (key_is(k, klen, "cross-zone"))
		return get_bool(c, n, &v->cross_zone);
	if (key_is(k, klen, "health-check")) {
		o->hc.h = &v->health;
		return each_field(c, n, hc_field, &o->hc);
	}
	if (key_is(k, klen, "reals")) {
		o->have_reals = true;
		o->reals = n;
		return true;
	}
	return unknown(c);
}

static bool parse_reals(pctx_t *c, struct fy_node *list, tg_l4_vip_cfg_t *v)
{
	if (!expect_type(c, list, FYNT_SEQUENCE))
		return false;
	int count = fy_node_sequence_item_count(list);
	if (count < 0 || count > TG_L4_MAX_REALS) {
		fail(c, "more than %d reals", TG_L4_MAX_REALS);
		return false;
	}
	v->reals = calloc(count ? (size_t)count : 1, sizeof(*v->reals));
	if (!v->reals) {
		fail(c, "out of memory");
		return false;
	}
	void *it = NULL;
	struct fy_node *item;
	size_t idx = 0;
	while ((item = fy_node_sequence_iterate(list, &it)) != NULL && idx < (size_t)count) {
		tg_l4_real_cfg_t *r = &v->reals[idx];
		r->weight = 1;
		size_t old = push_index(c, idx);
		v->n_reals = ++idx;
		if (!each_field(c, item, real_field, r))
			return false;
		if (r->ip.family == 0) {
			fail(c, "address is required");
			return false;
		}
		pop(c, old);
	}
	return true;
}

static const char *fam_name(int family)
{
	return family == AF_INET ? "IPv4" : "IPv6";
}

/* Checks that need the whole VIP: defaults that depend on other fields,
 * duplicates, address families. The path is "vips[i]". */
static bool finish_vip(pctx_t *c, vip_obj_t *o)
{
	tg_l4_vip_cfg_t *v = o->v;
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	if (!o->have_address) {
		fail(c, "address is required");
		return false;
	}
	if (!o->have_port) {
		fail(c, "port is required");
		return false;
	}
	if (!o->have_idle)
		v->idle_timeout_ms = v->proto == TG_L4_TCP ? 350000 : 120000;
	if (!o->hc.port_set)
		v->health.port = v->port;
	if (v->health.timeout_ms > v->health.interval_ms) {
		size_t old = push_key(c, "health-check.timeout", 20);
		fail(c, "%ums is longer than the interval (%ums)", v->health.timeout_ms,
		     v->health.interval_ms);
		pop(c, old);
		return false;
	}
	if (o->have_reals) {
		size_t old = push_key(c, "reals", 5);
		if (!parse_reals(c, o->reals, v))
			return false;
		pop(c, old);
	}
	if (v->n_reals >= v->ring_size) {
		fail(c, "ring-size %u must be larger than the number of reals (%zu)", v->ring_size,
		     v->n_reals);
		return false;
	}
	for (size_t i = 0; i < v->n_reals; i++) {
		const tg_l4_real_cfg_t *r = &v->reals[i];
		char field[48];
		int fl = snprintf(field, sizeof(field), "reals[%zu].address", i);
		if (r->ip.family != v->ip.family) {
			size_t old = push_key(c, field, (size_t)fl);
			fail(c, "%s is %s but the VIP %s is %s; %s",
			     tg_l4_ip_format(&r->ip, a, sizeof(a)), fam_name(r->ip.family),
			     tg_l4_ip_format(&v->ip, b, sizeof(b)), fam_name(v->ip.family),
			     v->forwarding == TG_L4_FWD_IPIP
				 ? "ipip forwarding needs the same family (IPIP or IP6IP6)"
				 : "l2 forwarding needs the real on the VIP's network");
			pop(c, old);
			return false;
		}
		for (size_t j = 0; j < i; j++) {
			if (tg_l4_ip_eq(&v->reals[j].ip, &r->ip)) {
				size_t old = push_key(c, field, (size_t)fl);
				fail(c, "%s is already listed as reals[%zu]",
				     tg_l4_ip_format(&r->ip, a, sizeof(a)), j);
				pop(c, old);
				return false;
			}
		}
	}
	return true;
}

static bool parse_vips(pctx_t *c, struct fy_node *list, tg_l4_config_t *cfg)
{
	if (!expect_type(c, list, FYNT_SEQUENCE))
		return false;
	int count = fy_node_sequence_item_count(list);
	if (count <= 0) {
		fail(c, "at least one VIP is required");
		return false;
	}
	if (count > TG_L4_MAX_VIPS) {
		fail(c, "more than %d VIPs", TG_L4_MAX_VIPS);
		return false;
	}
	cfg->vips = calloc((size_t)count, sizeof(*cfg->vips));
	if (!cfg->vips) {
		fail(c, "out of memory");
		return false;
	}
	void *it = NULL;
	struct fy_node *item;
	size_t idx = 0;
	while ((item = fy_node_sequence_iterate(list, &it)) != NULL && idx < (size_t)count) {
		tg_l4_vip_cfg_t *v = &cfg->vips[idx];
		v->proto = TG_L4_TCP;
		v->forwarding = TG_L4_FWD_IPIP;
		v->hash = TG_L4_HASH_5TUPLE;
		v->ring_size = TG_L4_RING_DEFAULT;
		v->dereg_delay_ms = 300000;
		v->cross_zone = false;
		v->health.proto = TG_L4_HC_TCP;
		memcpy(v->health.path, "/", 2);
		v->health.interval_ms = 30000;
		v->health.timeout_ms = 6000;
		v->health.healthy_threshold = 5;
		v->health.unhealthy_threshold = 2;
		vip_obj_t o = {.v = v};
		size_t old = push_index(c, idx);
		cfg->n_vips = ++idx;
		if (!each_field(c, item, vip_field, &o) || !finish_vip(c, &o))
			return false;
		for (size_t j = 0; j + 1 < idx; j++) {
			const tg_l4_vip_cfg_t *w = &cfg->vips[j];
			if (tg_l4_ip_eq(&w->ip, &v->ip) && w->port == v->port &&
			    w->proto == v->proto) {
				char a[INET6_ADDRSTRLEN];
				fail(c, "duplicate VIP %s port %u/%s (same as vips[%zu])",
				     tg_l4_ip_format(&v->ip, a, sizeof(a)), v->port,
				     v->proto == TG_L4_TCP ? "tcp" : "udp", j);
				return false;
			}
		}
		pop(c, old);
	}
	return true;
}

/* bgp.neighbors[] fields */
typedef struct nb_obj {
	tg_l4_bgp_neighbor_cfg_t *n; /* being filled */
	bool have_as;		     /* remote-as given */
} nb_obj_t;

#define AS_TRANS 23456u /* RFC 6793: stands for a 4-octet AS; never an AS itself */

/* Reads an AS number (1..4294967295, not AS_TRANS). */
static bool get_as(pctx_t *c, struct fy_node *n, uint32_t *out)
{
	uint64_t u;
	if (!get_uint(c, n, 1, UINT32_MAX, &u))
		return false;
	if (u == AS_TRANS) {
		fail(c, "23456 is AS_TRANS (RFC 6793), not a usable AS number");
		return false;
	}
	*out = (uint32_t)u;
	return true;
}

static bool nb_field(pctx_t *c, const char *k, size_t klen, struct fy_node *v, void *obj)
{
	nb_obj_t *o = obj;
	uint64_t u;
	if (key_is(k, klen, "address"))
		return get_ip(c, v, &o->n->ip);
	if (key_is(k, klen, "remote-as")) {
		o->have_as = true;
		return get_as(c, v, &o->n->remote_as);
	}
	if (key_is(k, klen, "port")) {
		if (!get_uint(c, v, 1, 65535, &u))
			return false;
		o->n->port = (uint16_t)u;
		return true;
	}
	return unknown(c);
}

static bool parse_neighbors(pctx_t *c, struct fy_node *list, tg_l4_bgp_cfg_t *b)
{
	if (!expect_type(c, list, FYNT_SEQUENCE))
		return false;
	int count = fy_node_sequence_item_count(list);
	if (count <= 0) {
		fail(c, "at least one neighbor is required");
		return false;
	}
	if (count > TG_L4_MAX_NEIGHBORS) {
		fail(c, "more than %d neighbors", TG_L4_MAX_NEIGHBORS);
		return false;
	}
	void *it = NULL;
	struct fy_node *item;
	size_t idx = 0;
	while ((item = fy_node_sequence_iterate(list, &it)) != NULL && idx < (size_t)count) {
		tg_l4_bgp_neighbor_cfg_t *n = &b->neighbors[idx];
		n->port = 179;
		nb_obj_t o = {.n = n};
		size_t old = push_index(c, idx);
		b->n_neighbors = ++idx;
		if (!each_field(c, item, nb_field, &o))
			return false;
		if (n->ip.family == 0) {
			fail(c, "address is required");
			return false;
		}
		if (!o.have_as) {
			fail(c, "remote-as is required");
			return false;
		}
		for (size_t j = 0; j + 1 < idx; j++) {
			if (tg_l4_ip_eq(&b->neighbors[j].ip, &n->ip)) {
				char a[INET6_ADDRSTRLEN];
				fail(c, "address %s is already listed as neighbors[%zu]",
				     tg_l4_ip_format(&n->ip, a, sizeof(a)), j);
				return false;
			}
		}
		pop(c, old);
	}
	return true;
}

/* bgp fields */
typedef struct bgp_obj {
	tg_l4_bgp_cfg_t *b;	   /* being filled */
	bool have_as;		   /* local-as given */
	struct fy_node *neighbors; /* neighbors list */
} bgp_obj_t;

/* Reads an address of one family into a 4- or 16-byte field. */
static bool get_family_ip(pctx_t *c, struct fy_node *n, int family, void *out)
{
	tg_l4_ip_t ip;
	if (!get_ip(c, n, &ip))
		return false;
	if (ip.family != family) {
		fail(c, "expected an %s address", fam_name(family));
		return false;
	}
	if (family == AF_INET)
		memcpy(out, &ip.addr.s6_addr[12], 4);
	else
		memcpy(out, &ip.addr, 16);
	return true;
}

static bool bgp_field(pctx_t *c, const char *k, size_t klen, struct fy_node *v, void *obj)
{
	bgp_obj_t *o = obj;
	tg_l4_bgp_cfg_t *b = o->b;
	uint64_t u;
	uint32_t ms;
	if (key_is(k, klen, "local-as")) {
		o->have_as = true;
		return get_as(c, v, &b->local_as);
	}
	if (key_is(k, klen, "router-id")) {
		if (!get_family_ip(c, v, AF_INET, &b->router_id))
			return false;
		if (b->router_id.s_addr == 0) {
			fail(c, "0.0.0.0 is not a valid BGP identifier");
			return false;
		}
		b->has_router_id = true;
		return true;
	}
	if (key_is(k, klen, "hold-time")) {
		if (!get_duration(c, v, 0, 65535000, &ms))
			return false;
		if (ms % 1000 != 0 || (ms > 0 && ms < 3000)) {
			fail(c, "%ums: the hold time is 0 (no keepalives) or whole seconds from 3s",
			     ms);
			return false;
		}
		b->hold_time_s = (uint16_t)(ms / 1000);
		return true;
	}
	if (key_is(k, klen, "withdraw-delay"))
		return get_duration(c, v, 0, 600000, &b->withdraw_delay_ms);
	if (key_is(k, klen, "listen-port")) {
		if (!get_uint(c, v, 0, 65535, &u))
			return false;
		b->listen_port = (uint16_t)u;
		return true;
	}
	if (key_is(k, klen, "next-hop-v4")) {
		b->has_next_hop4 = true;
		return get_family_ip(c, v, AF_INET, &b->next_hop4);
	}
	if (key_is(k, klen, "next-hop-v6")) {
		b->has_next_hop6 = true;
		return get_family_ip(c, v, AF_INET6, &b->next_hop6);
	}
	if (key_is(k, klen, "neighbors")) {
		o->neighbors = v;
		return true;
	}
	return unknown(c);
}

/* The bgp: section; the path is "bgp". */
static bool parse_bgp(pctx_t *c, struct fy_node *n, tg_l4_bgp_cfg_t *b)
{
	memset(b, 0, sizeof(*b));
	b->enabled = true;
	b->hold_time_s = 90;
	b->withdraw_delay_ms = 5000;
	b->listen_port = 179;
	bgp_obj_t o = {.b = b};
	if (!each_field(c, n, bgp_field, &o))
		return false;
	if (!o.have_as) {
		fail(c, "local-as is required");
		return false;
	}
	if (!o.neighbors) {
		fail(c, "neighbors: at least one neighbor is required");
		return false;
	}
	size_t old = push_key(c, "neighbors", 9);
	if (!parse_neighbors(c, o.neighbors, b))
		return false;
	pop(c, old);
	return true;
}

bool tg_l4_bgp_cfg_eq(const tg_l4_bgp_cfg_t *a, const tg_l4_bgp_cfg_t *b)
{
	if (a->enabled != b->enabled || a->local_as != b->local_as ||
	    a->has_router_id != b->has_router_id ||
	    (a->has_router_id && a->router_id.s_addr != b->router_id.s_addr) ||
	    a->hold_time_s != b->hold_time_s || a->withdraw_delay_ms != b->withdraw_delay_ms ||
	    a->listen_port != b->listen_port || a->has_next_hop4 != b->has_next_hop4 ||
	    (a->has_next_hop4 && a->next_hop4.s_addr != b->next_hop4.s_addr) ||
	    a->has_next_hop6 != b->has_next_hop6 ||
	    (a->has_next_hop6 && memcmp(&a->next_hop6, &b->next_hop6, 16) != 0) ||
	    a->n_neighbors != b->n_neighbors)
		return false;
	for (size_t i = 0; i < a->n_neighbors; i++) {
		const tg_l4_bgp_neighbor_cfg_t *x = &a->neighbors[i], *y = &b->neighbors[i];
		if (!tg_l4_ip_eq(&x->ip, &y->ip) || x->remote_as != y->remote_as ||
		    x->port != y->port)
			return false;
	}
	return true;
}

/* Top-level fields. */
typedef struct top_obj {
	tg_l4_config_t *cfg;  /* being filled */
	struct fy_node *vips; /* vips list, read last */
	bool have_interface;  /* interface given */
} top_obj_t;

static bool top_field(pctx_t *c, const char *k, size_t klen, struct fy_node *n, void *obj)
{
	top_obj_t *o = obj;
	tg_l4_config_t *cfg = o->cfg;
	size_t len;
	const char *s;
	char q[96];
	if (key_is(k, klen, "interface")) {
		if (!(s = scalar(c, n, &len)))
			return false;
		bool ok = len < TG_L4_IFNAME_MAX;
		for (size_t i = 0; ok && i < len; i++)
			ok = (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f &&
			     s[i] != '/' && s[i] != ':';
		if (!ok) {
			fail(c, "%s is not an interface name", quote(s, len, q, sizeof(q)));
			return false;
		}
		memcpy(cfg->interface, s, len);
		cfg->interface[len] = '\0';
		o->have_interface = true;
		return true;
	}
	if (key_is(k, klen, "xdp-mode")) {
		static const char *const names[] = {"native", "generic"};
		int i = get_enum(c, n, names, 2);
		if (i < 0)
			return false;
		cfg->xdp_mode = (tg_l4_xdp_mode_t)i;
		return true;
	}
	if (key_is(k, klen, "admin-listen")) {
		struct sockaddr_storage ss;
		socklen_t sl;
		if (!(s = scalar(c, n, &len)))
			return false;
		char buf[TG_L4_LISTEN_MAX];
		if (len >= sizeof(buf))
			goto bad_listen;
		memcpy(buf, s, len);
		buf[len] = '\0';
		if (tg_addr_parse(buf, -1, &ss, &sl) != 0)
			goto bad_listen;
		memcpy(cfg->admin_listen, buf, len + 1);
		return true;
	bad_listen:
		fail(c, "%s is not an address:port (e.g. 0.0.0.0:10255, [::]:10255)",
		     quote(s, len, q, sizeof(q)));
		return false;
	}
	if (key_is(k, klen, "zone"))
		return get_zone(c, n, cfg->zone);
	if (key_is(k, klen, "encap-source-v4") || key_is(k, klen, "encap-source-v6")) {
		tg_l4_ip_t ip;
		bool want4 = key_is(k, klen, "encap-source-v4");
		if (!get_ip(c, n, &ip))
			return false;
		if ((ip.family == AF_INET) != want4) {
			fail(c, "expected an %s address", want4 ? "IPv4" : "IPv6");
			return false;
		}
		if (want4) {
			memcpy(&cfg->encap_src4, &ip.addr.s6_addr[12], 4);
			cfg->has_encap_src4 = true;
		} else {
			cfg->encap_src6 = ip.addr;
			cfg->has_encap_src6 = true;
		}
		return true;
	}
	if (key_is(k, klen, "max-new-flows-per-second"))
		return get_uint(c, n, 0, 100000000, &cfg->max_new_flows_per_sec);
	if (key_is(k, klen, "vips")) {
		o->vips = n;
		return true;
	}
	if (key_is(k, klen, "bgp"))
		return parse_bgp(c, n, &cfg->bgp);
	return unknown(c);
}

static int ip_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(tg_l4_ip_t));
}

/* Real ids are per address across VIPs: count the addresses. */
static size_t count_distinct_reals(const tg_l4_config_t *cfg)
{
	size_t n = 0, k = 0;
	for (size_t v = 0; v < cfg->n_vips; v++)
		n += cfg->vips[v].n_reals;
	tg_l4_ip_t *all = calloc(n ? n : 1, sizeof(*all));
	if (!all)
		return n; /* over-estimate: refuses only absurd configurations */
	for (size_t v = 0; v < cfg->n_vips; v++)
		for (size_t r = 0; r < cfg->vips[v].n_reals; r++)
			all[k++] = cfg->vips[v].reals[r].ip;
	qsort(all, k, sizeof(*all), ip_cmp);
	size_t d = 0;
	for (size_t i = 0; i < k; i++)
		d += i == 0 || ip_cmp(&all[i - 1], &all[i]) != 0;
	free(all);
	return d;
}

void tg_l4_config_free(tg_l4_config_t *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_vips; i++)
		free(c->vips[i].reals);
	free(c->vips);
	free(c);
}

/* Reports a YAML syntax error collected by libfyaml. */
static void yaml_error(pctx_t *c, struct fy_diag *diag)
{
	void *it = NULL;
	struct fy_diag_error *e = diag ? fy_diag_errors_iterate(diag, &it) : NULL;
	if (e)
		fail(c, "YAML syntax error at line %d, column %d: %s", e->line, e->column,
		     e->msg ? e->msg : "invalid");
	else
		fail(c, "the configuration is empty or not valid YAML");
}

/* Returns the 1-based line of the first byte that is not valid UTF-8 (or is
 * NUL), or 0 when the whole text is clean. libfyaml 0.7.12 loops forever on
 * some invalid UTF-8 (found by fuzz_l4config: a "%" directive line holding
 * 0xff bytes), so nothing else reaches it. */
static size_t bad_utf8_line(const unsigned char *p, size_t len)
{
	size_t line = 1;
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t n;
		uint32_t cp;
		if (c == '\n')
			line++;
		if (c == 0)
			return line;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return line;
		}
		for (size_t k = 1; k <= n; k++) {
			if (i + k >= len || (p[i + k] & 0xc0) != 0x80)
				return line;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		/* Overlong forms, surrogates, beyond U+10FFFF. */
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return line;
		i += n + 1;
	}
	return 0;
}

int tg_l4_config_parse(const char *text, size_t len, tg_l4_config_t **out, char *err, size_t errlen)
{
	pctx_t c = {.err = err, .errlen = errlen};
	if (err && errlen)
		err[0] = '\0';
	*out = NULL;
	tg_l4_config_t *cfg = calloc(1, sizeof(*cfg));
	struct fy_diag_cfg dc;
	fy_diag_cfg_default(&dc);
	dc.fp = NULL; /* collect, never print */
	struct fy_diag *diag = fy_diag_create(&dc);
	struct fy_document *doc = NULL;
	int rc = -EINVAL;
	if (!cfg || !diag) {
		fail(&c, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	size_t bad = bad_utf8_line((const unsigned char *)text, len);
	if (bad) {
		fail(&c, "line %zu: not valid UTF-8 text", bad);
		goto out;
	}
	fy_diag_set_collect_errors(diag, true);
	struct fy_parse_cfg pc = {.flags = FYPCF_QUIET | FYPCF_COLLECT_DIAG, .diag = diag};
	doc = len ? fy_document_build_from_string(&pc, text, len) : NULL;
	if (!doc) {
		yaml_error(&c, diag);
		goto out;
	}
	struct fy_node *root = fy_document_root(doc);
	if (!root) {
		fail(&c, "the configuration is empty");
		goto out;
	}
	memcpy(cfg->admin_listen, "0.0.0.0:10255", sizeof("0.0.0.0:10255"));
	cfg->xdp_mode = TG_L4_XDP_NATIVE;
	top_obj_t o = {.cfg = cfg};
	if (!expect_type(&c, root, FYNT_MAPPING)) {
		c.failed = false;
		fail(&c, "the configuration must be a mapping (interface:, vips:, ...)");
		goto out;
	}
	if (!each_field(&c, root, top_field, &o))
		goto out;
	if (!o.have_interface) {
		fail(&c, "interface: required (the link XDP attaches to)");
		goto out;
	}
	if (!o.vips) {
		fail(&c, "vips: at least one VIP is required");
		goto out;
	}
	size_t old = push_key(&c, "vips", 4);
	if (!parse_vips(&c, o.vips, cfg))
		goto out;
	size_t distinct = count_distinct_reals(cfg);
	if (distinct > TG_MAX_REALS) {
		fail(&c, "%zu distinct real addresses; the datapath holds at most %u", distinct,
		     TG_MAX_REALS);
		goto out;
	}
	pop(&c, old);
	*out = cfg;
	cfg = NULL;
	rc = 0;
out:
	if (rc != 0 && c.failed == false)
		fail(&c, "invalid configuration");
	fy_document_destroy(doc);
	if (diag)
		fy_diag_destroy(diag);
	tg_l4_config_free(cfg);
	return rc;
}

int tg_l4_config_load(const char *path, tg_l4_config_t **out, char *err, size_t errlen)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CONFIG_FILE_MAX) {
		snprintf(err, errlen, "%s: not a regular file of at most %u bytes", path,
			 CONFIG_FILE_MAX);
		close(fd);
		return -EINVAL;
	}
	size_t size = (size_t)st.st_size;
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		close(fd);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t r = read(fd, buf + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	char inner[TG_L4_ERR_MAX];
	int rc = tg_l4_config_parse(buf, got, out, inner, sizeof(inner));
	free(buf);
	if (rc != 0)
		snprintf(err, errlen, "%s: %s", path, inner);
	return rc;
}

#include "ingress/annotations.h"
#include "ingress/once.h"
#include "core/common.h"
#include "core/log.h"
#include "core/parse.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Annotations accepted and stored raw: their behaviour comes with later work. */
static const char *const raw_names[] = {
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-error-page",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-match-cn",
    "whitelist-source-range",
};

static int timeout_ms(const char *v, size_t len, uint32_t *out)
{
	uint64_t ms;
	/* ingress-nginx writes these as bare seconds; durations are accepted too. */
	if (tg_parse_duration_ms(v, len, 1000, &ms) || ms == 0 || ms > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)ms;
	return 0;
}

static bool name_is(tg_str_t n, const char *lit)
{
	return tg_str_eq(n, lit, strlen(lit));
}

/* Checks the values of the auth-tls-* annotations kept raw (the TLS store
 * builder reads them again); returns NULL or what a good value looks like. */
static const char *check_auth_tls(tg_str_t name, const char *v, size_t vl)
{
	if (name_is(name, "auth-tls-secret")) {
		const char *slash = memchr(v, '/', vl);
		bool ok = vl > 0 && (!slash || (slash > v && slash < v + vl - 1 &&
						!memchr(slash + 1, '/', (size_t)(v + vl - slash - 1))));
		return ok ? NULL : " (want NAMESPACE/SECRET or SECRET)";
	}
	if (name_is(name, "auth-tls-verify-client")) {
		tg_tls_verify_t m;
		return tg_tls_verify_parse(v, vl, &m) == 0
			   ? NULL
			   : " (want on, off, optional or optional_no_ca)";
	}
	if (name_is(name, "auth-tls-verify-depth")) {
		uint64_t d;
		return tg_parse_u64(v, vl, &d) == 0 && d >= 1 && d <= 100 ? NULL
									  : " (want 1 to 100)";
	}
	if (name_is(name, "auth-tls-pass-certificate-to-upstream")) {
		bool b;
		return tg_parse_bool(v, vl, &b) == 0 ? NULL : " (want true or false)";
	}
	return NULL;
}

int tg_annotations_parse(const tg_kv_t *ann, uint32_t n, tg_arena_t *a,
			 tg_ingress_annotations_t *out, char *why, size_t whylen,
			 uint32_t *bad_index)
{
	const size_t plen = sizeof(TG_ANNOTATION_PREFIX) - 1;
	memset(out, 0, sizeof(*out));
	out->protocol = TG_PROTO_HTTP;
	uint32_t n_raw = 0;
	for (uint32_t i = 0; i < n; i++)
		if (strncmp(ann[i].key, TG_ANNOTATION_PREFIX, plen) == 0)
			n_raw++;
	out->raw = tg_arena_array(a, n_raw, sizeof(tg_kv_t));
	if (!out->raw) {
		snprintf(why, whylen, "out of memory");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n; i++) {
		const char *key = ann[i].key;
		if (strncmp(key, TG_ANNOTATION_PREFIX, plen) != 0)
			continue;
		tg_str_t name = {key + plen, strlen(key) - plen};
		const char *v = ann[i].value;
		size_t vl = ann[i].value_len;
		int bad = 0;
		if (name_is(name, "proxy-body-size")) {
			bad = tg_parse_size(v, vl, &out->proxy_body_size);
			out->has_proxy_body_size = !bad;
		} else if (name_is(name, "proxy-connect-timeout")) {
			bad = timeout_ms(v, vl, &out->proxy_connect_timeout_ms);
			out->has_connect_timeout = !bad;
		} else if (name_is(name, "proxy-read-timeout")) {
			bad = timeout_ms(v, vl, &out->proxy_read_timeout_ms);
			out->has_read_timeout = !bad;
		} else if (name_is(name, "proxy-send-timeout")) {
			bad = timeout_ms(v, vl, &out->proxy_send_timeout_ms);
			out->has_send_timeout = !bad;
		} else if (name_is(name, "ssl-redirect")) {
			bad = tg_parse_bool(v, vl, &out->ssl_redirect);
			out->has_ssl_redirect = !bad;
		} else if (name_is(name, "force-ssl-redirect")) {
			bad = tg_parse_bool(v, vl, &out->force_ssl_redirect);
			out->has_force_ssl_redirect = !bad;
		} else if (name_is(name, "backend-protocol")) {
			tg_str_t s = {v, vl};
			if (tg_str_caseeq(s, "HTTP", 4))
				out->protocol = TG_PROTO_HTTP;
			else if (tg_str_caseeq(s, "HTTPS", 5))
				out->protocol = TG_PROTO_HTTPS;
			else if (tg_str_caseeq(s, "GRPC", 4))
				out->protocol = TG_PROTO_GRPC;
			else if (tg_str_caseeq(s, "GRPCS", 5))
				out->protocol = TG_PROTO_GRPCS;
			else
				bad = -EINVAL;
		} else {
			bool known = false;
			for (size_t k = 0; k < TG_ARRAY_SIZE(raw_names); k++)
				if (name_is(name, raw_names[k]))
					known = true;
			const char *want = known ? check_auth_tls(name, v, vl) : NULL;
			if (want) {
				snprintf(why, whylen, "annotation %s: bad value \"%.*s\"%s", key,
					 (int)TG_MIN(vl, 64), v, want);
				if (bad_index)
					*bad_index = i;
				return -EINVAL;
			}
			if (known) {
				tg_kv_t *r = &out->raw[out->n_raw++];
				r->key = tg_arena_strdup(a, key);
				r->value = tg_arena_strndup(a, v, vl);
				r->value_len = vl;
				if (!r->key || !r->value) {
					snprintf(why, whylen, "out of memory");
					return -EINVAL;
				}
			} else if (tg_once_first("annotation", key, strlen(key))) {
				tg_warn("ingress", "unknown annotation %s ignored (logged once)",
					key);
			}
		}
		if (bad) {
			const char *want = "";
			if (name_is(name, "proxy-body-size"))
				want = " (want a size such as 1m, 512k or 0)";
			else if (name_is(name, "backend-protocol"))
				want = " (want HTTP, HTTPS, GRPC or GRPCS)";
			else if (name_is(name, "ssl-redirect") ||
				 name_is(name, "force-ssl-redirect"))
				want = " (want true or false)";
			else
				want = " (want seconds such as 60, or a duration such as 90s)";
			snprintf(why, whylen, "annotation %s: bad value \"%.*s\"%s", key,
				 (int)TG_MIN(vl, 64), v, want);
			if (bad_index)
				*bad_index = i;
			return -EINVAL;
		}
	}
	return 0;
}

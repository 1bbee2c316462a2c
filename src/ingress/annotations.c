#include "ingress/annotations.h"
#include "ingress/extra.h"
#include "ingress/once.h"
#include "core/common.h"
#include "core/log.h"
#include "core/parse.h"
#include "tls/tls.h"

#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Annotations stored raw for tls_build.c, which reads them again. */
static const char *const raw_names[] = {
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-pass-certificate-to-upstream",
};

/* Protections tidegate does not implement: an Ingress asking for one is not
 * served rather than served without it. (Names ending in -snippet too.) */
static const char *const refused_names[] = {
    "auth-type", "auth-url", "auth-signin", "auth-secret", "auth-realm", "satisfy",
};

/* Protections refused when switched on ("true"). */
static const char *const refused_when_true[] = {
    "enable-modsecurity",
    "enable-owasp-core-rules",
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
		bool ok =
		    vl > 0 && (!slash || (slash > v && slash < v + vl - 1 &&
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

/* Records the first reason the Ingress cannot be served (later ones are
 * usually consequences of the same intent). Returns 0, or -ENOMEM. */
static int refuse(tg_ingress_annotations_t *out, tg_arena_t *a, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(tg_ingress_annotations_t *out, tg_arena_t *a, const char *fmt, ...)
{
	if (out->refused)
		return 0;
	char buf[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	out->refused = tg_arena_strdup(a, buf);
	return out->refused ? 0 : -ENOMEM;
}

/* True when v is non-empty and has no blank or control byte (it is written
 * into a header line or a Location). */
static bool header_safe(const char *v, size_t vl)
{
	if (vl == 0)
		return false;
	for (size_t i = 0; i < vl; i++)
		if ((unsigned char)v[i] <= 0x20 || v[i] == 0x7f)
			return false;
	return true;
}

/* A comma-separated CIDR list into an arena array. Returns the count or -1. */
static int parse_ranges(const char *v, size_t vl, tg_arena_t *a, tg_cidr_t **out)
{
	size_t max = 1;
	for (size_t i = 0; i < vl; i++)
		max += v[i] == ',';
	if (max > 65536)
		return -1;
	tg_cidr_t *list = tg_arena_array(a, max, sizeof(*list));
	if (!list)
		return -1;
	int n = tg_cidr_parse_list(v, vl, list, (int)max, NULL);
	if (n < 0)
		return -1;
	*out = list;
	return n;
}

/* http:// or https:// URL safe for a Location line (ingress-nginx accepts
 * only those schemes for the redirect annotations). */
static bool redirect_url_ok(const char *v, size_t vl)
{
	bool scheme = (vl > 7 && tg_str_caseeq((tg_str_t){v, 7}, "http://", 7)) ||
		      (vl > 8 && tg_str_caseeq((tg_str_t){v, 8}, "https://", 8));
	return scheme && header_safe(v, vl);
}

/* Returns true when the annotation `name` is one of the security annotations
 * or routing annotations handled here; fills out (or refuses the Ingress).
 * *want gets a hint for a bad value that rejects the object (its last good
 * version stays); -ENOMEM in *err. */
static bool parse_extra(tg_str_t name, const char *key, const char *v, size_t vl, tg_arena_t *a,
			tg_ingress_annotations_t *out, const char **want, int *err)
{
	*want = NULL;
	*err = 0;
	/* Unsupported protections. */
	for (size_t k = 0; k < TG_ARRAY_SIZE(refused_names); k++)
		if (name_is(name, refused_names[k])) {
			*err = refuse(out, a,
				      "annotation %s is not supported: refusing to serve this "
				      "Ingress without the protection it asks for",
				      key);
			return true;
		}
	if (name.len > 8 && memcmp(name.ptr + name.len - 8, "-snippet", 8) == 0) {
		*err = refuse(out, a,
			      "annotation %s is not supported (tidegate cannot run nginx "
			      "configuration): refusing to serve this Ingress without it",
			      key);
		return true;
	}
	for (size_t k = 0; k < TG_ARRAY_SIZE(refused_when_true); k++)
		if (name_is(name, refused_when_true[k])) {
			bool on = false;
			if (tg_parse_bool(v, vl, &on) == 0 && !on)
				return true; /* explicitly off: nothing asked for */
			*err = refuse(out, a,
				      "annotation %s is not supported: refusing to serve this "
				      "Ingress without the protection it asks for",
				      key);
			return true;
		}
	/* Source ranges (allowlist- is the newer name and wins over whitelist-,
	 * as in ingress-nginx). */
	bool allow_new = name_is(name, "allowlist-source-range");
	if (allow_new || name_is(name, "whitelist-source-range") ||
	    name_is(name, "denylist-source-range")) {
		bool deny = name.ptr[0] == 'd';
		if (!deny && out->has_allow && !allow_new)
			return true; /* allowlist- given too */
		tg_cidr_t *list = NULL;
		int cnt = parse_ranges(v, vl, a, &list);
		if (cnt < 0) {
			*err = refuse(out, a,
				      "annotation %s: bad value \"%.*s\" (want comma-separated "
				      "addresses or blocks such as 10.0.0.0/8, fd00::/8): refusing "
				      "to serve this Ingress without the protection it asks for",
				      key, (int)TG_MIN(vl, 64), v);
			return true;
		}
		if (deny) {
			out->has_deny = true;
			out->deny = list;
			out->n_deny = (uint32_t)cnt;
		} else {
			out->has_allow = true;
			out->allow = list;
			out->n_allow = (uint32_t)cnt;
		}
		return true;
	}
	if (name_is(name, "auth-tls-match-cn")) {
		regex_t re;
		bool ok = vl > 3 && memcmp(v, "CN=", 3) == 0 && !memchr(v, '\0', vl);
		char *pat = ok ? tg_arena_strndup(a, v, vl) : NULL;
		if (ok && !pat) {
			*err = -ENOMEM;
			return true;
		}
		if (ok && !tg_extra_regex_check(pat, vl) &&
		    regcomp(&re, pat, REG_EXTENDED | REG_NOSUB) == 0)
			regfree(&re);
		else
			ok = false;
		if (!ok) {
			*err = refuse(out, a,
				      "annotation %s: bad value \"%.*s\" (want CN= followed by a "
				      "POSIX extended regular expression): refusing to serve this "
				      "Ingress without the protection it asks for",
				      key, (int)TG_MIN(vl, 64), v);
			return true;
		}
		out->match_cn = pat;
		return true;
	}
	/* Rate and connection limits: a limit that cannot be read is refused
	 * rather than dropped (the Ingress would be served without it). */
	bool l_rps = name_is(name, "limit-rps"), l_rpm = name_is(name, "limit-rpm");
	bool l_conn = name_is(name, "limit-connections");
	bool l_mult = name_is(name, "limit-burst-multiplier");
	if (l_rps || l_rpm || l_conn || l_mult) {
		uint64_t x;
		uint64_t min = l_mult ? 1 : 0, max = l_mult ? 1000 : 1000000;
		if (tg_parse_u64(v, vl, &x) || x < min || x > max) {
			*err = refuse(out, a,
				      "annotation %s: bad value \"%.*s\" (want %s): refusing to "
				      "serve this Ingress without the limit it asks for",
				      key, (int)TG_MIN(vl, 64), v,
				      l_mult ? "an integer from 1 to 1000"
					     : "an integer from 0 (no limit) to 1000000");
			return true;
		}
		if (l_rps)
			out->limit_rps = (uint32_t)x;
		else if (l_rpm)
			out->limit_rpm = (uint32_t)x;
		else if (l_conn)
			out->limit_conns = (uint32_t)x;
		else
			out->limit_burst_mult = (uint32_t)x;
		return true;
	}
	/* Response bandwidth, in KB as ingress-nginx writes them (nginx's
	 * limit_rate Nk / limit_rate_after Nk). */
	bool l_rate = name_is(name, "limit-rate");
	if (l_rate || name_is(name, "limit-rate-after")) {
		uint64_t kb;
		if (tg_parse_u64(v, vl, &kb) || kb > (UINT64_C(1) << 32)) {
			*err = refuse(out, a,
				      "annotation %s: bad value \"%.*s\" (want a whole number of "
				      "kilobytes%s, 0 for none): refusing to serve this Ingress "
				      "without the limit it asks for",
				      key, (int)TG_MIN(vl, 64), v, l_rate ? " per second" : "");
			return true;
		}
		if (l_rate) {
			out->has_limit_rate = true;
			out->limit_rate = kb * 1024;
		} else {
			out->has_limit_rate_after = true;
			out->limit_rate_after = kb * 1024;
		}
		return true;
	}
	bool l_allow_new = name_is(name, "limit-allowlist");
	if (l_allow_new || name_is(name, "limit-whitelist")) {
		if (!l_allow_new && out->has_limit_allow_new)
			return true; /* limit-allowlist given too: it wins */
		tg_cidr_t *list = NULL;
		int cnt = vl ? parse_ranges(v, vl, a, &list) : 0;
		if (cnt < 0) {
			*err = refuse(out, a,
				      "annotation %s: bad value \"%.*s\" (want comma-separated "
				      "addresses or blocks such as 10.0.0.0/8, fd00::/8): refusing "
				      "to serve this Ingress without the limit it asks for",
				      key, (int)TG_MIN(vl, 64), v);
			return true;
		}
		out->limit_allow = list;
		out->n_limit_allow = (uint32_t)cnt;
		out->has_limit_allow_new = out->has_limit_allow_new || l_allow_new;
		return true;
	}
	/* Upstream TLS. */
	if (name_is(name, "proxy-ssl-verify") || name_is(name, "proxy-ssl-server-name")) {
		tg_str_t s = {v, vl};
		bool on = tg_str_caseeq(s, "on", 2);
		if (!on && !tg_str_caseeq(s, "off", 3)) {
			if (name.ptr[10] == 'v') /* a verification asked for but unreadable */
				*err = refuse(out, a,
					      "annotation %s: bad value \"%.*s\" (want on or off): "
					      "refusing to serve this Ingress without the "
					      "protection it asks for",
					      key, (int)TG_MIN(vl, 64), v);
			else
				*want = " (want on or off)";
			return true;
		}
		if (name.ptr[10] == 'v')
			out->proxy_ssl_verify = on;
		else
			out->proxy_ssl_server_name = on;
		return true;
	}
	if (name_is(name, "proxy-ssl-verify-depth")) {
		uint64_t d;
		if (tg_parse_u64(v, vl, &d) || d < 1 || d > 100)
			*want = " (want 1 to 100)";
		else
			out->proxy_ssl_verify_depth = (uint32_t)d;
		return true;
	}
	if (name_is(name, "proxy-ssl-secret") || name_is(name, "proxy-ssl-name")) {
		bool secret = name.ptr[10] == 's';
		const char *slash = memchr(v, '/', vl);
		bool ok =
		    header_safe(v, vl) && (!secret || !slash ||
					   (slash > v && slash < v + vl - 1 &&
					    !memchr(slash + 1, '/', (size_t)(v + vl - slash - 1))));
		if (!ok) {
			*err = refuse(out, a,
				      "annotation %s: bad value \"%.*s\" (want %s): refusing to "
				      "serve this Ingress without the protection it asks for",
				      key, (int)TG_MIN(vl, 64), v,
				      secret ? "NAMESPACE/SECRET or SECRET" : "a host name");
			return true;
		}
		char *d = tg_arena_strndup(a, v, vl);
		if (!d)
			*err = -ENOMEM;
		else if (secret)
			out->proxy_ssl_secret = d;
		else
			out->proxy_ssl_name = d;
		return true;
	}
	/* Routing. */
	bool perm = name_is(name, "permanent-redirect");
	if (perm || name_is(name, "temporal-redirect")) {
		if (!redirect_url_ok(v, vl)) {
			*want = " (want an http:// or https:// URL)";
			return true;
		}
		char *d = tg_arena_strndup(a, v, vl);
		if (!d) {
			*err = -ENOMEM;
			return true;
		}
		/* permanent-redirect wins when both are given (ingress-nginx); the
		 * -code annotations are applied after the loop. */
		if (perm || out->redirect_code != 301) {
			out->redirect_url = d;
			out->redirect_code = perm ? 301 : 302;
		}
		return true;
	}
	if (name_is(name, "permanent-redirect-code") || name_is(name, "temporal-redirect-code")) {
		uint64_t code;
		if (tg_parse_u64(v, vl, &code) || code < 300 || code > 308)
			*want = " (want a redirect status 300 to 308)";
		return true; /* applied after the loop (tg_annotations_parse) */
	}
	if (name_is(name, "app-root")) {
		if (vl < 2 || v[0] != '/' || !header_safe(v, vl)) {
			*want = " (want a path such as /app)";
			return true;
		}
		if (!(out->app_root = tg_arena_strndup(a, v, vl)))
			*err = -ENOMEM;
		return true;
	}
	if (name_is(name, "canary")) {
		if (tg_parse_bool(v, vl, &out->canary))
			*want = " (want true or false)";
		return true;
	}
	if (name_is(name, "use-regex")) {
		bool on;
		if (tg_parse_bool(v, vl, &on))
			*want = " (want true or false)";
		else
			out->use_regex = out->use_regex || on;
		return true;
	}
	/* Session affinity (ingress-nginx's sticky cookie). */
	if (name_is(name, "affinity")) {
		tg_str_t s = {v, vl};
		if (!tg_str_eq(s, "cookie", 6))
			*want = " (want cookie)";
		else
			out->affinity_cookie = true;
		return true;
	}
	if (name_is(name, "affinity-mode") || name_is(name, "session-cookie-change-on-failure")) {
		/* balanced and persistent both keep a session on its endpoint while
		 * it exists (tidegate does not rebalance sessions on scale-out);
		 * an endpoint that went away is always replaced. */
		tg_str_t s = {v, vl};
		bool b;
		if (name.ptr[0] == 'a' && !tg_str_eq(s, "balanced", 8) &&
		    !tg_str_eq(s, "persistent", 10))
			*want = " (want balanced or persistent)";
		else if (name.ptr[0] == 's' && tg_parse_bool(v, vl, &b))
			*want = " (want true or false)";
		return true;
	}
	if (name_is(name, "session-cookie-name") || name_is(name, "session-cookie-path") ||
	    name_is(name, "session-cookie-samesite")) {
		bool cname = name.ptr[15] == 'n', csame = name.ptr[15] == 's';
		bool ok = header_safe(v, vl) && !memchr(v, ';', vl) && !memchr(v, ',', vl);
		for (size_t i = 0; ok && cname && i < vl; i++)
			ok = v[i] != '=';
		tg_str_t s = {v, vl};
		if (csame)
			ok = tg_str_caseeq(s, "None", 4) || tg_str_caseeq(s, "Lax", 3) ||
			     tg_str_caseeq(s, "Strict", 6);
		if (!ok) {
			*want = csame	? " (want None, Lax or Strict)"
				: cname ? " (want a cookie name: no blanks, '=', ';' or ',')"
					: " (want a path without blanks, ';' or ',')";
			return true;
		}
		char *d = tg_arena_strndup(a, v, vl);
		if (!d)
			*err = -ENOMEM;
		else if (cname)
			out->cookie_name = d;
		else if (csame)
			out->cookie_samesite = d;
		else
			out->cookie_path = d;
		return true;
	}
	if (name_is(name, "session-cookie-max-age") || name_is(name, "session-cookie-expires")) {
		uint64_t sec;
		if (tg_parse_u64(v, vl, &sec) || sec > UINT32_MAX)
			*want = " (want seconds)";
		else if (name.ptr[15] == 'm')
			out->cookie_max_age = (uint32_t)sec;
		else
			out->cookie_expires = (uint32_t)sec;
		return true;
	}
	if (name_is(name, "session-cookie-secure")) {
		if (tg_parse_bool(v, vl, &out->cookie_secure))
			*want = " (want true or false)";
		return true;
	}
	/* nginx's error_page 495 496 = URL: a certificate error redirects (302)
	 * there. Only an absolute URL can be honoured: a local path would be an
	 * internal redirect into a location nginx serves without the check, and
	 * the client's request for it here would meet the same check again. The
	 * refusal (400) stands either way, so a value we cannot use is logged,
	 * not fatal. */
	if (name_is(name, "auth-tls-error-page")) {
		bool abs = (vl > 7 && strncmp(v, "http://", 7) == 0) ||
			   (vl > 8 && strncmp(v, "https://", 8) == 0);
		if (!abs || !header_safe(v, vl)) {
			if (tg_once_first("auth-tls-error-page", v, vl))
				tg_warn("ingress",
					"annotation %s: \"%.*s\" is not an absolute http(s) URL: "
					"certificate errors keep answering 400 (logged once)",
					key, (int)TG_MIN(vl, 64), v);
			return true;
		}
		if (!(out->auth_tls_error_page = tg_arena_strndup(a, v, vl)))
			*err = -ENOMEM;
		return true;
	}
	if (name_is(name, "rewrite-target") || name_is(name, "x-forwarded-prefix") ||
	    name_is(name, "upstream-vhost")) {
		if (!header_safe(v, vl)) {
			*want = " (want a value without blanks or control characters)";
			return true;
		}
		char *d = tg_arena_strndup(a, v, vl);
		if (!d)
			*err = -ENOMEM;
		else if (name.ptr[0] == 'r')
			out->rewrite_target = d;
		else if (name.ptr[0] == 'x')
			out->x_forwarded_prefix = d;
		else
			out->upstream_vhost = d;
		return true;
	}
	return false;
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
			else if (tg_str_caseeq(s, "AUTO_HTTP", 9))
				out->protocol = TG_PROTO_HTTP; /* HTTP/1.1 either way */
			else if (tg_str_caseeq(s, "GRPC", 4) || tg_str_caseeq(s, "GRPCS", 5)) {
				out->protocol = vl == 4 ? TG_PROTO_GRPC : TG_PROTO_GRPCS;
				/* Proxied as HTTP/1.1 it would only reach the backend as
				 * garbage: say so instead. */
				if (refuse(out, a,
					   "annotation %s: %.*s needs HTTP/2 to the backend, not "
					   "supported yet: this Ingress is not served",
					   key, (int)vl, v)) {
					snprintf(why, whylen, "out of memory");
					return -EINVAL;
				}
			} else if (tg_str_caseeq(s, "AJP", 3) || tg_str_caseeq(s, "FCGI", 4)) {
				if (refuse(out, a,
					   "annotation %s: %.*s is not supported: this Ingress is "
					   "not served",
					   key, (int)vl, v)) {
					snprintf(why, whylen, "out of memory");
					return -EINVAL;
				}
			} else
				bad = -EINVAL;
		} else {
			const char *ewant = NULL;
			int eerr = 0;
			if (parse_extra(name, key, v, vl, a, out, &ewant, &eerr)) {
				if (eerr) {
					snprintf(why, whylen, "out of memory");
					return -EINVAL;
				}
				if (ewant) {
					snprintf(why, whylen, "annotation %s: bad value \"%.*s\"%s",
						 key, (int)TG_MIN(vl, 64), v, ewant);
					if (bad_index)
						*bad_index = i;
					return -EINVAL;
				}
				continue;
			}
			bool known = false;
			for (size_t k = 0; k < TG_ARRAY_SIZE(raw_names); k++)
				if (name_is(name, raw_names[k]))
					known = true;
			const char *want = known ? check_auth_tls(name, v, vl) : NULL;
			if (want) {
				/* Keeping the last good version here could keep serving
				 * without the client-certificate check the new version asks
				 * for: refuse instead, like the other security annotations. */
				if (refuse(out, a,
					   "annotation %s: bad value \"%.*s\"%s: refusing to serve "
					   "this Ingress without the protection it asks for",
					   key, (int)TG_MIN(vl, 64), v, want)) {
					snprintf(why, whylen, "out of memory");
					return -EINVAL;
				}
				continue;
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
				want = " (want HTTP, HTTPS, AUTO_HTTP, GRPC, GRPCS, AJP or FCGI)";
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
	/* What one annotation means depends on another. */
	int e = 0;
	for (uint32_t i = 0; i < n && out->redirect_url; i++) {
		const char *key = ann[i].key;
		uint64_t code;
		if (strncmp(key, TG_ANNOTATION_PREFIX, plen) != 0 ||
		    tg_parse_u64(ann[i].value, ann[i].value_len, &code))
			continue;
		tg_str_t name = {key + plen, strlen(key) - plen};
		if ((out->redirect_code == 301 && name_is(name, "permanent-redirect-code")) ||
		    (out->redirect_code == 302 && name_is(name, "temporal-redirect-code"))) {
			out->redirect_code = (uint16_t)code;
			break;
		}
	}
	bool has_auth_secret = false;
	for (uint32_t i = 0; i < out->n_raw; i++)
		if (strcmp(out->raw[i].key + plen, "auth-tls-secret") == 0)
			has_auth_secret = true;
	if (out->match_cn && !has_auth_secret)
		e = refuse(out, a,
			   "annotation " TG_ANNOTATION_PREFIX
			   "auth-tls-match-cn needs " TG_ANNOTATION_PREFIX
			   "auth-tls-secret (no client certificate is "
			   "requested without it): refusing to serve this Ingress without the "
			   "protection it asks for");
	if (!e && out->proxy_ssl_verify && !out->proxy_ssl_secret)
		e = refuse(out, a,
			   "annotation " TG_ANNOTATION_PREFIX
			   "proxy-ssl-verify on needs " TG_ANNOTATION_PREFIX
			   "proxy-ssl-secret with the backend's CA under "
			   "ca.crt: refusing to serve this Ingress without the protection it asks "
			   "for");
	if (e) {
		snprintf(why, whylen, "out of memory");
		return -EINVAL;
	}
	return 0;
}

/*
 * extra.c - annotations into tg_route_extra_t (contract in extra.h).
 */
#include "ingress/extra.h"

#include "core/log.h"
#include "ingress/strmap.h"
#include "proxy/ratelimit.h"
#include "tls/upstream.h"

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A cached upstream TLS profile (or the verdict that its Secret is bad). */
typedef struct profile {
	char *key;		/* cache key (owned): annotations + Secret version */
	size_t key_len;		/* bytes of key */
	tg_tls_upstream_t *tls; /* one reference, or NULL when the Secret is bad */
	char *error;		/* why it could not be built (owned), or NULL */
	uint64_t used_build;	/* last build that used it */
} profile_t;

struct tg_extra_res {
	regex_t **re;		 /* compiled regexes (memory in the snapshot arena) */
	uint32_t n_re, cap_re;	 /* used / allocated */
	tg_tls_upstream_t **tls; /* profile references */
	uint32_t n_tls, cap_tls; /* used / allocated */
};

struct tg_extra_build {
	tg_strmap_t profiles;	/* key -> profile_t */
	uint64_t builds;	/* build counter */
	const tg_store_t *st;	/* store of the running build */
	tg_arena_t *a;		/* snapshot arena of the running build */
	const tg_settings_t *s; /* snapshot settings of the running build */
	tg_extra_res_t *res;	/* what the running build's snapshot will own */
	bool running;		/* between begin and finish/abort */
};

tg_extra_build_t *tg_extra_build_new(void)
{
	return calloc(1, sizeof(tg_extra_build_t));
}

static void profile_free(profile_t *p)
{
	if (!p)
		return;
	tg_tls_upstream_free(p->tls);
	free(p->error);
	free(p->key);
	free(p);
}

void tg_extra_build_free(tg_extra_build_t *eb)
{
	if (!eb)
		return;
	tg_extra_build_abort(eb);
	for (size_t i = 0; i < eb->profiles.cap; i++)
		if (eb->profiles.slots[i].key)
			profile_free(eb->profiles.slots[i].value);
	tg_strmap_free(&eb->profiles);
	free(eb);
}

void tg_extra_res_free(tg_extra_res_t *r)
{
	if (!r)
		return;
	for (uint32_t i = 0; i < r->n_re; i++)
		regfree(r->re[i]);
	for (uint32_t i = 0; i < r->n_tls; i++)
		tg_tls_upstream_free(r->tls[i]);
	free(r->re);
	free(r->tls);
	free(r);
}

void tg_extra_build_abort(tg_extra_build_t *eb)
{
	tg_extra_res_free(eb->res);
	eb->res = NULL;
	eb->running = false;
}

int tg_extra_build_begin(tg_extra_build_t *eb, const tg_store_t *st, tg_arena_t *a,
			 const tg_settings_t *s)
{
	tg_extra_build_abort(eb);
	eb->res = calloc(1, sizeof(*eb->res));
	if (!eb->res)
		return -ENOMEM;
	eb->builds++;
	eb->st = st;
	eb->a = a;
	eb->s = s;
	eb->running = true;
	return 0;
}

static int keep_re(tg_extra_build_t *eb, regex_t *re)
{
	tg_extra_res_t *r = eb->res;
	if (r->n_re == r->cap_re) {
		uint32_t cap = r->cap_re ? r->cap_re * 2 : 8;
		regex_t **n = realloc(r->re, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		r->re = n;
		r->cap_re = cap;
	}
	r->re[r->n_re++] = re;
	return 0;
}

static int keep_tls(tg_extra_build_t *eb, tg_tls_upstream_t *p)
{
	tg_extra_res_t *r = eb->res;
	if (r->n_tls == r->cap_tls) {
		uint32_t cap = r->cap_tls ? r->cap_tls * 2 : 8;
		tg_tls_upstream_t **n = realloc(r->tls, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		r->tls = n;
		r->cap_tls = cap;
	}
	r->tls[r->n_tls++] = tg_tls_upstream_ref(p);
	return 0;
}

const char *tg_extra_regex_check(const char *pat, size_t len)
{
	if (len > 1024)
		return "longer than 1024 bytes";
	uint64_t product = 1;
	for (size_t i = 0; i < len; i++) {
		if (pat[i] == '\\') {
			i++;
			continue;
		}
		if (pat[i] != '{')
			continue;
		/* {m}, {m,} or {m,n}: the larger number bounds the copies. */
		uint64_t m = 0, v = 0;
		size_t j = i + 1;
		for (; j < len && pat[j] != '}'; j++) {
			if (pat[j] >= '0' && pat[j] <= '9')
				v = v * 10 + (uint64_t)(pat[j] - '0');
			else if (pat[j] == ',')
				v = 0;
			else
				break;
			if (v > m)
				m = v;
			if (m > 10000)
				return "repetition bounds too large";
		}
		if (j < len && pat[j] == '}' && m > 1) {
			product *= m;
			if (product > 10000)
				return "repetition bounds too large";
		}
	}
	return NULL;
}

/* Compiles pat into the snapshot arena; the result is freed with it.
 * Returns NULL with a reason in why (bad pattern), or NULL and *oom. */
static regex_t *compile(tg_extra_build_t *eb, const char *pat, int flags, char *why, size_t len,
			bool *oom)
{
	*oom = false;
	const char *bad = tg_extra_regex_check(pat, strlen(pat));
	if (bad) {
		snprintf(why, len, "%s", bad);
		return NULL;
	}
	regex_t *re = tg_arena_alloc(eb->a, sizeof(*re));
	if (!re) {
		*oom = true;
		return NULL;
	}
	int rc = regcomp(re, pat, flags);
	if (rc) {
		regerror(rc, re, why, len);
		return NULL;
	}
	if (keep_re(eb, re)) {
		regfree(re);
		*oom = true;
		return NULL;
	}
	return re;
}

/* The upstream TLS profile of an Ingress with backend-protocol HTTPS. Sets
 * *denied (arena string) when its Secret is missing or unusable. */
static int https_profile(tg_extra_build_t *eb, const tg_object_t *o, bool warn,
			 tg_tls_upstream_t **out, const char **denied)
{
	const tg_ingress_annotations_t *an = &o->u.ingress.ann;
	*out = NULL;
	char ref[320] = "";
	const tg_object_t *sec = NULL;
	char msg[400];
	if (an->proxy_ssl_secret) {
		const char *sl = strchr(an->proxy_ssl_secret, '/');
		if (sl && ((size_t)(sl - an->proxy_ssl_secret) != strlen(o->ns) ||
			   strncmp(an->proxy_ssl_secret, o->ns, strlen(o->ns)) != 0)) {
			snprintf(msg, sizeof(msg),
				 "proxy-ssl-secret %s is in another namespace (not allowed, as in "
				 "ingress-nginx): its routes answer 503",
				 an->proxy_ssl_secret);
			*denied = tg_arena_strdup(eb->a, msg);
			return *denied ? 0 : -ENOMEM;
		}
		snprintf(ref, sizeof(ref), "%s/%s", o->ns, sl ? sl + 1 : an->proxy_ssl_secret);
		sec =
		    tg_store_get(eb->st, TG_KIND_SECRET, o->ns, sl ? sl + 1 : an->proxy_ssl_secret);
		if (!sec) {
			snprintf(msg, sizeof(msg),
				 "proxy-ssl-secret %s not found: its routes answer 503", ref);
			*denied = tg_arena_strdup(eb->a, msg);
			return *denied ? 0 : -ENOMEM;
		}
	}
	char key[800];
	int kl = snprintf(key, sizeof(key), "%s|%llu|%d|%u|%s|%d", ref,
			  (unsigned long long)(sec ? sec->seq : 0), an->proxy_ssl_verify,
			  an->proxy_ssl_verify_depth, an->proxy_ssl_name ? an->proxy_ssl_name : "",
			  an->proxy_ssl_server_name);
	if (kl < 0 || (size_t)kl >= sizeof(key))
		return -EINVAL;
	profile_t *p = tg_strmap_get(&eb->profiles, key, (size_t)kl);
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p || !(p->key = strndup(key, (size_t)kl))) {
			free(p);
			return -ENOMEM;
		}
		p->key_len = (size_t)kl;
		const tg_secret_spec_t *ss = sec ? &sec->u.secret : NULL;
		tg_tls_upstream_config_t cfg = {
		    .ca_pem = ss ? (const char *)ss->ca_crt : NULL,
		    .ca_len = ss ? ss->ca_crt_len : 0,
		    .cert_pem = ss ? (const char *)ss->tls_crt : NULL,
		    .cert_len = ss ? ss->tls_crt_len : 0,
		    .key_pem = ss ? (const char *)ss->tls_key : NULL,
		    .key_len = ss ? ss->tls_key_len : 0,
		    .verify = an->proxy_ssl_verify,
		    .verify_depth = an->proxy_ssl_verify_depth ? an->proxy_ssl_verify_depth : 1,
		    .name = an->proxy_ssl_name,
		    .server_name = an->proxy_ssl_server_name,
		};
		char err[256];
		p->tls = tg_tls_upstream_new(&cfg, err, sizeof(err));
		if (!p->tls) {
			int n =
			    snprintf(msg, sizeof(msg),
				     "proxy-ssl-secret %s: %s: its routes answer 503", ref, err);
			(void)n;
			p->error = strdup(msg);
			if (!p->error) {
				profile_free(p);
				return -ENOMEM;
			}
			tg_warn("ingress", "Ingress %s/%s: %s", o->ns, o->name, msg);
			warn = false; /* said once per Secret version */
		}
		if (tg_strmap_put(&eb->profiles, p->key, p->key_len, p, NULL)) {
			profile_free(p);
			return -ENOMEM;
		}
	}
	p->used_build = eb->builds;
	if (!p->tls) {
		if (warn)
			tg_warn("ingress", "Ingress %s/%s: %s", o->ns, o->name, p->error);
		*denied = tg_arena_strdup(eb->a, p->error);
		return *denied ? 0 : -ENOMEM;
	}
	if (keep_tls(eb, p->tls))
		return -ENOMEM;
	*out = p->tls;
	return 0;
}

const tg_route_extra_t *tg_extra_build_ingress(tg_extra_build_t *eb, const tg_object_t *o,
					       bool warn, int *err)
{
	const tg_ingress_annotations_t *an = &o->u.ingress.ann;
	const tg_settings_t *s = eb->s;
	*err = 0;
	bool global_allow = !an->has_allow && s->n_allow_ranges;
	bool global_deny = !an->has_deny && s->n_deny_ranges;
	bool global_bad = s->ranges_bad && (!an->has_allow || !an->has_deny);
	if (!an->refused && !an->has_allow && !an->has_deny && !global_allow && !global_deny &&
	    !global_bad && !an->match_cn && !an->redirect_url && !an->app_root &&
	    !an->rewrite_target && !an->x_forwarded_prefix && !an->upstream_vhost &&
	    !an->auth_tls_error_page && !an->affinity_cookie && an->protocol != TG_PROTO_HTTPS &&
	    !an->limit_rps && !an->limit_rpm && !an->limit_conns)
		return NULL;
	tg_route_extra_t *ex = tg_arena_alloc(eb->a, sizeof(*ex));
	if (!ex)
		goto oom;
	if (an->refused) {
		/* The reason lives in the object's arena: copy it into the snapshot. */
		if (warn)
			tg_error("ingress", "Ingress %s/%s: %s; its routes answer 503", o->ns,
				 o->name, an->refused);
		if (!(ex->denied = tg_arena_strdup(eb->a, an->refused)))
			goto oom;
		return ex; /* nothing else about it matters */
	}
	if (global_bad) {
		if (warn)
			tg_error("ingress",
				 "Ingress %s/%s: the ConfigMap's source ranges are bad; its routes "
				 "answer 503",
				 o->ns, o->name);
		ex->denied = "ConfigMap whitelist-source-range / denylist-source-range is bad";
		return ex;
	}
	if (an->has_allow || global_allow) {
		size_t n = an->has_allow ? an->n_allow : s->n_allow_ranges;
		tg_cidr_t *l = tg_arena_array(eb->a, n, sizeof(*l));
		if (!l)
			goto oom;
		memcpy(l, an->has_allow ? an->allow : s->allow_ranges, n * sizeof(*l));
		ex->allow = l;
		ex->n_allow = (uint32_t)n; /* >= 1: an empty value refuses the Ingress */
	}
	if (an->has_deny || global_deny) {
		size_t n = an->has_deny ? an->n_deny : s->n_deny_ranges;
		tg_cidr_t *l = tg_arena_array(eb->a, n, sizeof(*l));
		if (!l)
			goto oom;
		memcpy(l, an->has_deny ? an->deny : s->deny_ranges, n * sizeof(*l));
		ex->deny = l;
		ex->n_deny = (uint32_t)n;
	}
	if (an->match_cn) {
		char why[200];
		bool oom;
		/* nginx's `$ssl_client_s_dn !~ regex`: case-sensitive, unanchored. */
		ex->match_cn =
		    compile(eb, an->match_cn, REG_EXTENDED | REG_NOSUB, why, sizeof(why), &oom);
		if (oom)
			goto oom;
		if (!ex->match_cn) /* checked when parsed: not expected */
			ex->denied = "auth-tls-match-cn: bad regular expression";
	}
	if (an->redirect_url) {
		if (!(ex->redirect_url = tg_arena_strdup(eb->a, an->redirect_url)))
			goto oom;
		ex->redirect_code = an->redirect_code;
	}
	if ((an->app_root && !(ex->app_root = tg_arena_strdup(eb->a, an->app_root))) ||
	    (an->rewrite_target &&
	     !(ex->rewrite_target = tg_arena_strdup(eb->a, an->rewrite_target))) ||
	    (an->x_forwarded_prefix &&
	     !(ex->x_forwarded_prefix = tg_arena_strdup(eb->a, an->x_forwarded_prefix))) ||
	    (an->upstream_vhost &&
	     !(ex->upstream_vhost = tg_arena_strdup(eb->a, an->upstream_vhost))) ||
	    (an->auth_tls_error_page &&
	     !(ex->auth_tls_error_page = tg_arena_strdup(eb->a, an->auth_tls_error_page))))
		goto oom;
	if (an->affinity_cookie) {
		if (!(ex->cookie_name = tg_arena_strdup(
			  eb->a, an->cookie_name ? an->cookie_name : "INGRESSCOOKIE")) ||
		    (an->cookie_path &&
		     !(ex->cookie_path = tg_arena_strdup(eb->a, an->cookie_path))) ||
		    (an->cookie_samesite &&
		     !(ex->cookie_samesite = tg_arena_strdup(eb->a, an->cookie_samesite))))
			goto oom;
		ex->cookie_max_age = an->cookie_max_age;
		ex->cookie_expires = an->cookie_expires;
		ex->cookie_secure = an->cookie_secure;
	}
	if (an->limit_rps || an->limit_rpm || an->limit_conns) {
		/* The zone is found again by name at every build: buckets survive
		 * rebuilds (ratelimit.h). */
		tg_rl_table_t *t = tg_rl_global();
		tg_rl_zone_t *z = t ? tg_rl_zone_get(t, o->ns, o->name) : NULL;
		tg_rl_policy_t *p = tg_arena_alloc(eb->a, sizeof(*p));
		if (!p)
			goto oom;
		if (!z) /* out of memory, or the table's zone cap: fail closed */
			ex->denied = "rate limits: no zone could be made for this Ingress";
		uint32_t mult = an->limit_burst_mult ? an->limit_burst_mult : 5;
		*p = (tg_rl_policy_t){
		    .zone = z,
		    .rps = an->limit_rps,
		    .rpm = an->limit_rpm,
		    .burst_rps = an->limit_rps * mult,
		    .burst_rpm = an->limit_rpm * mult,
		    .conns = an->limit_conns,
		};
		ex->limits = p;
		if (an->n_limit_allow) {
			tg_cidr_t *l = tg_arena_array(eb->a, an->n_limit_allow, sizeof(*l));
			if (!l)
				goto oom;
			memcpy(l, an->limit_allow, an->n_limit_allow * sizeof(*l));
			ex->limit_allow = l;
			ex->n_limit_allow = an->n_limit_allow;
		}
	}
	if (an->protocol == TG_PROTO_HTTPS) {
		tg_tls_upstream_t *p = NULL;
		const char *denied = NULL;
		int e = https_profile(eb, o, warn, &p, &denied);
		if (e == -ENOMEM)
			goto oom;
		if (e < 0)
			denied = "proxy-ssl-* annotations too long";
		ex->up_tls = p;
		if (denied)
			ex->denied = denied;
	}
	return ex;
oom:
	*err = -ENOMEM;
	return NULL;
}

int tg_extra_build_route(tg_extra_build_t *eb, const tg_route_extra_t *ex, const char *path,
			 const void **re, const tg_route_extra_t **out, char *why, size_t whylen)
{
	*re = NULL;
	*out = ex;
	/* "location ~* ^path": anchored at the start, case-insensitive. */
	size_t pl = strlen(path);
	char *pat = tg_arena_alloc(eb->a, pl + 2);
	if (!pat)
		return -ENOMEM;
	pat[0] = '^';
	memcpy(pat + 1, path, pl + 1);
	bool oom;
	regex_t *r = compile(eb, pat, REG_EXTENDED | REG_ICASE, why, whylen, &oom);
	if (oom)
		return -ENOMEM;
	if (!r)
		return -EINVAL;
	*re = r;
	if (ex && ex->rewrite_target && !ex->denied) {
		/* nginx's `rewrite "(?i)path" target break;`: the path as written,
		 * unanchored, case-insensitive, with capture groups. */
		regex_t *rw = compile(eb, path, REG_EXTENDED | REG_ICASE, why, whylen, &oom);
		if (oom)
			return -ENOMEM;
		if (!rw)
			return -EINVAL;
		tg_route_extra_t *copy = tg_arena_alloc(eb->a, sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		*copy = *ex;
		copy->rewrite_re = rw;
		*out = copy;
	}
	return 0;
}

tg_extra_res_t *tg_extra_build_finish(tg_extra_build_t *eb, int *err)
{
	*err = 0;
	tg_extra_res_t *r = eb->res;
	eb->res = NULL;
	eb->running = false;
	/* Forget profiles no Ingress used this time (Secret changed, Ingress gone). */
	profile_t *gone[64];
	size_t n;
	do {
		n = 0;
		for (size_t i = 0; i < eb->profiles.cap && n < TG_ARRAY_SIZE(gone); i++) {
			profile_t *p =
			    eb->profiles.slots[i].key ? eb->profiles.slots[i].value : NULL;
			if (p && p->used_build != eb->builds)
				gone[n++] = p;
		}
		for (size_t i = 0; i < n; i++) {
			tg_strmap_del(&eb->profiles, gone[i]->key, gone[i]->key_len);
			profile_free(gone[i]);
		}
	} while (n == TG_ARRAY_SIZE(gone));
	if (r && r->n_re == 0 && r->n_tls == 0) {
		tg_extra_res_free(r);
		r = NULL;
	}
	return r;
}

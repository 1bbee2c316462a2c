/*
 * annot.c - per-request annotation decisions (contract in annot.h).
 *
 * Cold by construction: only routes with a tg_route_extra_t get here. Text
 * built per request (a Location, a rewritten target) goes into one buffer
 * from the worker's pool, kept until the exchange ends because the response
 * or request iovecs point into it.
 */
#include "proxy/annot.h"

#include "core/cidr.h"
#include "proxy/ratelimit.h"
#include "proxy/tls_io.h"

#include <sys/socket.h>

#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ingress/hash.h"

/* Appends to the per-request buffer; false when it is full or missing. */
static bool put(tg_buf_t *b, const char *p, size_t n)
{
	if ((size_t)(b->end - b->last) < n)
		return false;
	memcpy(b->last, p, n);
	b->last += n;
	return true;
}

static tg_buf_t *xbuf(tg_cconn_t *c)
{
	if (!c->x->xbuf)
		c->x->xbuf = tg_buf_get(&c->w->bufs);
	if (c->x->xbuf)
		c->x->xbuf->pos = c->x->xbuf->last = c->x->xbuf->start;
	return c->x->xbuf;
}

void tg_annot_release(tg_cconn_t *c)
{
	if (c->x && c->x->xbuf) {
		tg_buf_put(&c->w->bufs, c->x->xbuf);
		c->x->xbuf = NULL;
	}
	/* Every end of an exchange comes here (exch_release, tg_client_close,
	 * exchange_done); the pointer is cleared so it happens once. */
	if (c->x && c->x->lconn) {
		tg_rl_release(tg_rl_global(), c->x->lconn);
		c->x->lconn = NULL;
	}
}

/* The Host field without its port (nginx's $host, before lowercasing). */
static tg_str_t host_only(tg_str_t h)
{
	const char *colon = NULL;
	if (h.len && h.ptr[0] == '[') {
		const char *rb = memchr(h.ptr, ']', h.len);
		if (rb && rb + 1 < h.ptr + h.len && rb[1] == ':')
			colon = rb + 1;
	} else if (h.len) {
		colon = memchr(h.ptr, ':', h.len);
	}
	return colon ? (tg_str_t){h.ptr, (size_t)(colon - h.ptr)} : h;
}

/* The request target in origin form (path?query). */
static void request_uri(const tg_cconn_t *c, tg_buf_t *b, bool *ok)
{
	const tg_http_request_t *r = &c->x->req;
	*ok = *ok && put(b, r->path.len ? r->path.ptr : "/", r->path.len ? r->path.len : 1);
	if (r->query.len)
		*ok = *ok && put(b, "?", 1) && put(b, r->query.ptr, r->query.len);
}

/* Writes `text` with nginx variables expanded. Returns false when it does
 * not fit. */
static bool expand(tg_cconn_t *c, tg_buf_t *b, const char *text)
{
	const tg_http_request_t *r = &c->x->req;
	bool ok = true;
	const char *p = text;
	while (*p && ok) {
		const char *d = strchr(p, '$');
		if (!d) {
			ok = put(b, p, strlen(p));
			break;
		}
		ok = put(b, p, (size_t)(d - p));
		size_t n = 1;
		while ((d[n] >= 'a' && d[n] <= 'z') || d[n] == '_')
			n++;
		tg_str_t var = {d + 1, n - 1};
		if (tg_str_eq(var, "request_uri", 11))
			request_uri(c, b, &ok);
		else if (tg_str_eq(var, "uri", 3))
			ok = ok && put(b, r->path.ptr, r->path.len);
		else if (tg_str_eq(var, "args", 4) || tg_str_eq(var, "query_string", 12))
			ok = ok && put(b, r->query.ptr, r->query.len);
		else if (tg_str_eq(var, "is_args", 7))
			ok = ok && (!r->query.len || put(b, "?", 1));
		else if (tg_str_eq(var, "scheme", 6))
			ok = ok && (c->tls ? put(b, "https", 5) : put(b, "http", 4));
		else if (tg_str_eq(var, "host", 4)) {
			tg_str_t h = host_only(r->host);
			ok = ok && put(b, h.ptr, h.len);
		} else if (tg_str_eq(var, "http_host", 9))
			ok = ok && put(b, r->host.ptr, r->host.len);
		else
			ok = ok && put(b, d, n); /* not ours: as written */
		p = d + n;
	}
	return ok;
}

/* The client address of this request as bytes: the one X-Real-IP gets. */
static bool client_addr(const tg_cconn_t *c, int *family, uint8_t addr[16])
{
	if (c->x->xiplen)
		return tg_cidr_parse_ip(c->x->xip, c->x->xiplen, family, addr) == 0;
	*family = c->peer_family;
	memcpy(addr, c->peer_addr, 16);
	return c->peer_family != 0;
}

/* limit_req / limit_conn (nginx's preaccess phase): 0, or the status. */
static int limits_check(tg_cconn_t *c, const tg_route_extra_t *x)
{
	int fam;
	uint8_t a[16];
	if (!client_addr(c, &fam, a) || (fam != AF_INET && fam != AF_INET6))
		return 0; /* no address to key on (nginx skips an empty key too) */
	if (x->n_limit_allow && tg_cidr_match(x->limit_allow, x->n_limit_allow, fam, a))
		return 0;
	if (c->x->lconn)
		return 0; /* already decided for this exchange */
	tg_rl_table_t *t = tg_rl_global();
	if (!t)
		return 0; /* a zone exists, so the table does */
	int k = tg_rl_request(t, x->limits, fam, a, c->w->loop.now_ms, &c->x->lconn);
	if (k < 0)
		return 0;
	return k == TG_RL_CONN ? (int)c->x->set->limit_conn_status_code
			       : (int)c->x->set->limit_req_status_code;
}

/* ingress-nginx: `if ($ssl_client_s_dn !~ regex) { return 403; }`. The DN
 * is the one the client-certificate check put in c->tlsh. */
static bool cn_ok(const tg_cconn_t *c, const regex_t *re)
{
	static const char tag[] = "ssl-client-subject-dn: ";
	const char *dn = NULL;
	size_t len = 0;
	if (c->tlsh.data) {
		const char *p = strstr(c->tlsh.data, tag);
		if (p) {
			dn = p + sizeof(tag) - 1;
			const char *e = strstr(dn, "\r\n");
			len = e ? (size_t)(e - dn) : strlen(dn);
		}
	}
	if (!dn)
		return false; /* no certificate: nothing can match */
	regmatch_t m = {.rm_so = 0, .rm_eo = (regoff_t)len};
	return regexec(re, dn, 1, &m, REG_STARTEND) == 0;
}

int tg_annot_route_check(tg_cconn_t *c, const tg_route_t *rt)
{
	const tg_route_extra_t *x = rt->opts.extra;
	if (x->denied)
		return 503; /* ingress-nginx: "location denied" */
	int st = tg_cio_route_check(c, rt);
	if (st == 400 && x->auth_tls_error_page) {
		/* A client-certificate error (nginx's 495/496, the only 400 the
		 * check gives): auth-tls-error-page, as ingress-nginx's
		 * error_page 495 496 = URL, a 302 to it. */
		c->x->local_detail = NULL;
		c->x->local_location =
		    (tg_str_t){x->auth_tls_error_page, strlen(x->auth_tls_error_page)};
		return 302;
	}
	if (st)
		return st;
	/* c->tlsh describes this request only when a policy asked for a
	 * certificate (tg_cio_route_check refills it then); with verify off it
	 * may hold an earlier request's: no certificate, no match. */
	if (x->match_cn && (rt->opts.client_auth_verify == TG_TLS_VERIFY_OFF ||
			    !rt->opts.client_auth || !cn_ok(c, x->match_cn)))
		return 403;
	if (x->redirect_url ||
	    (x->app_root && c->x->req.path.len == 1 && c->x->req.path.ptr[0] == '/')) {
		tg_buf_t *b = xbuf(c);
		bool ok = b != NULL;
		if (ok && x->redirect_url) {
			ok = expand(c, b, x->redirect_url);
			st = x->redirect_code;
		} else if (ok) {
			ok = expand(c, b, "$scheme://$http_host") &&
			     put(b, x->app_root, strlen(x->app_root));
			st = 302;
		}
		if (!ok) {
			c->x->keep = 0;
			return 500;
		}
		c->x->local_location = (tg_str_t){b->start, (size_t)(b->last - b->start)};
		return st;
	}
	if (x->limits && (st = limits_check(c, x)) != 0)
		return st;
	if (x->n_deny || x->n_allow) {
		int fam;
		uint8_t a[16];
		if (!client_addr(c, &fam, a))
			return 403; /* unknown address: not provably allowed */
		if (x->n_deny && tg_cidr_match(x->deny, x->n_deny, fam, a))
			return 403;
		if (x->n_allow && !tg_cidr_match(x->allow, x->n_allow, fam, a))
			return 403;
	}
	return 0;
}

/* nginx's rewrite: the whole target becomes `target` with $1..$9 replaced
 * by the groups of the route's path ERE matched against the path; the query
 * follows ("?q", or "&q" when the target has its own). */
static int rewrite(tg_cconn_t *c, const regex_t *re, const char *target, tg_str_t *out)
{
	const tg_http_request_t *r = &c->x->req;
	regmatch_t m[10];
	m[0].rm_so = 0;
	m[0].rm_eo = (regoff_t)r->path.len;
	if (!r->path.len || regexec(re, r->path.ptr, 10, m, REG_STARTEND) != 0)
		return 0; /* no match: nginx leaves the URI alone */
	tg_buf_t *b = xbuf(c);
	if (!b)
		return -1;
	bool ok = true;
	for (const char *p = target; *p && ok; p++) {
		if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
			int g = p[1] - '0';
			if (m[g].rm_so >= 0)
				ok = put(b, r->path.ptr + m[g].rm_so,
					 (size_t)(m[g].rm_eo - m[g].rm_so));
			p++;
			continue;
		}
		ok = put(b, p, 1);
	}
	if (ok && r->query.len) {
		bool has_q = memchr(b->start, '?', (size_t)(b->last - b->start)) != NULL;
		ok = put(b, has_q ? "&" : "?", 1) && put(b, r->query.ptr, r->query.len);
	}
	if (ok && b->last == b->start)
		ok = put(b, "/", 1); /* an empty target is not a request line */
	if (!ok)
		return -1;
	*out = (tg_str_t){b->start, (size_t)(b->last - b->start)};
	return 0;
}

int tg_annot_forward(tg_cconn_t *c, tg_fwd_info_t *fi)
{
	const tg_route_extra_t *x = c->x->route->opts.extra;
	if (x->upstream_vhost)
		fi->host = (tg_str_t){x->upstream_vhost, strlen(x->upstream_vhost)};
	if (x->x_forwarded_prefix)
		fi->prefix = (tg_str_t){x->x_forwarded_prefix, strlen(x->x_forwarded_prefix)};
	if (x->rewrite_re && x->rewrite_target)
		return rewrite(c, x->rewrite_re, x->rewrite_target, &fi->target);
	return 0;
}

/* ------------------------------------------------------------------ */
/* affinity: cookie                                                    */

/* The cookie value naming an endpoint: 16 hex digits of a hash of its
 * "address:port" text, the same in every worker, process and node. */
static uint64_t aff_hash(const tg_endpoint_t *ep)
{
	return tg_hash_bytes(ep->text, strlen(ep->text), 0x7469646567617465ull);
}

static bool hex16(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	if (n != 16)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		int d = ch >= '0' && ch <= '9'	 ? ch - '0'
			: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
						 : -1;
		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return true;
}

/* The value of cookie `name` in the request's Cookie fields, or len 0. */
static tg_str_t cookie_value(const tg_cconn_t *c, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < c->x->req.num_headers; i++) {
		const tg_http_header_t *h = &c->x->reqh[i];
		if (!tg_str_caseeq(h->name, "cookie", 6))
			continue;
		const char *p = h->value.ptr, *end = p + h->value.len;
		while (p < end) {
			while (p < end && (*p == ' ' || *p == ';'))
				p++;
			const char *eq = memchr(p, '=', (size_t)(end - p));
			const char *semi = memchr(p, ';', (size_t)(end - p));
			if (!semi)
				semi = end;
			if (eq && eq < semi && (size_t)(eq - p) == nl && memcmp(p, name, nl) == 0)
				return (tg_str_t){eq + 1, (size_t)(semi - eq - 1)};
			p = semi;
		}
	}
	return (tg_str_t){NULL, 0};
}

int tg_annot_affinity_pick(tg_cconn_t *c)
{
	const tg_route_extra_t *x = c->x->route->opts.extra;
	const tg_backend_t *b = c->x->backend;
	uint64_t want;
	if (!x || !x->cookie_name || !b)
		return -1;
	tg_str_t v = cookie_value(c, x->cookie_name);
	if (!v.len || !hex16(v.ptr, v.len, &want))
		return -1;
	for (uint32_t i = 0; i < b->n_endpoints; i++)
		if (aff_hash(&b->endpoints[i]) == want)
			return (int)i;
	return -1; /* its endpoint is gone: picked anew, and a new cookie set */
}

/* A path usable as the cookie's Path: the route's own unless it is a
 * regular expression (ingress-nginx then wants session-cookie-path). */
static const char *cookie_path(const tg_route_t *rt)
{
	const char *p = rt->opts.extra->cookie_path;
	if (p)
		return p;
	p = rt->path;
	if (!p || p[0] != '/' || strpbrk(p, "^$*+?()[]{}|\\ \t;,"))
		return "/";
	return p;
}

tg_str_t tg_annot_affinity_cookie(tg_cconn_t *c)
{
	const tg_route_extra_t *x = c->x->route->opts.extra;
	tg_buf_t *b = c->x->xbuf ? c->x->xbuf : xbuf(c); /* append: the target may be there */
	char line[512];
	if (!b)
		return (tg_str_t){NULL, 0};
	const tg_endpoint_t *ep = &c->x->backend->endpoints[c->x->ep_idx];
	int n = snprintf(line, sizeof(line), "%s=%016llx; Path=%s", x->cookie_name,
			 (unsigned long long)aff_hash(ep), cookie_path(c->x->route));
	if (n > 0 && x->cookie_expires && (size_t)n < sizeof(line)) {
		time_t t = time(NULL) + (time_t)x->cookie_expires;
		struct tm tm;
		gmtime_r(&t, &tm);
		n += (int)strftime(line + n, sizeof(line) - (size_t)n,
				   "; Expires=%a, %d %b %Y %H:%M:%S GMT", &tm);
	}
	if (n > 0 && x->cookie_max_age && (size_t)n < sizeof(line))
		n +=
		    snprintf(line + n, sizeof(line) - (size_t)n, "; Max-Age=%u", x->cookie_max_age);
	if (n > 0 && x->cookie_samesite && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, "; SameSite=%s",
			      x->cookie_samesite);
	if (n > 0 && x->cookie_secure && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, "; Secure");
	if (n > 0 && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, "; HttpOnly");
	if (n <= 0 || (size_t)n >= sizeof(line))
		return (tg_str_t){NULL, 0};
	char *at = b->last;
	if (!put(b, line, (size_t)n))
		return (tg_str_t){NULL, 0};
	return (tg_str_t){at, (size_t)n};
}

/*
 * tls_io.c - HTTPS listeners, PROXY protocol, TLS handshake and I/O, and the
 * per-request TLS and forwarded-header decisions (contract in tls_io.h).
 */
#include "proxy/tls_io.h"

#include "core/addr.h"
#include "core/log.h"
#include "proxy/proxy_protocol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define LINGER_MS 2000 /* as client.c: discard input this long before closing */

static const tg_settings_t *wsettings(const tg_worker_t *w)
{
	return w->cur ? &w->cur->snap->settings : &w->defaults;
}

static void deadline(tg_cconn_t *c, uint64_t when)
{
	/* Cannot fail: the timer is armed since the accept. */
	(void)tg_timer_set(&c->w->loop.timers, &c->timer, when);
}

/* ------------------------------------------------------------ listeners */

int tg_cio_listen(tg_worker_t *workers, int n, const char *addr, int *port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (tg_addr_parse(addr, 443, &ss, &sl) < 0) {
		tg_error("proxy", "bad --https-listen address '%s' (want IP:PORT)", addr);
		return -EINVAL;
	}
	for (int i = 0; i < n; i++) {
		int fd = tg_addr_listen(&ss, sl);
		if (fd < 0) {
			tg_error("proxy", "cannot listen on %s: %s", addr, strerror(-fd));
			return fd;
		}
		if (i == 0) /* with port 0 the kernel picked one: the others join it */
			*port = tg_addr_adopt_port(fd, &ss);
		tg_worker_t *w = &workers[i];
		/* An extra listener of the worker: the drain closes it with the
		 * others (accepting its queue first). */
		int e = tg_drain_add_listener(w, fd);
		if (e < 0) {
			close(fd);
			tg_error("proxy", "worker %d: %s", i, strerror(-e));
			return e;
		}
		w->xlis->tls = true;
		int len = snprintf(w->sport_text, sizeof(w->sport_text), "%d", *port);
		w->sport_len = (uint8_t)(len > 0 ? len : 0);
	}
	return 0;
}

static bool tls_listener(const tg_worker_t *w, int lfd)
{
	for (const tg_lsock_t *l = w->xlis; l; l = l->next)
		if (l->io.fd == lfd)
			return l->tls;
	return false;
}

/* ------------------------------------------------------------ accept */

static void set_peer(tg_cconn_t *c, const struct sockaddr_storage *ss)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	memset(c->peer_addr, 0, sizeof(c->peer_addr));
	if (ss->ss_family == AF_INET) {
		c->peer_family = AF_INET;
		memcpy(c->peer_addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		return;
	}
	const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
	if (memcmp(a, mapped, 12) == 0) {
		c->peer_family = AF_INET;
		memcpy(c->peer_addr, a + 12, 4);
	} else {
		c->peer_family = AF_INET6;
		memcpy(c->peer_addr, a, 16);
	}
}

int tg_cio_accepted(tg_cconn_t *c, int lfd, const struct sockaddr_storage *ss)
{
	tg_worker_t *w = c->w;
	set_peer(c, ss);
	if (tls_listener(w, lfd)) {
		tg_tls_store_t *st = w->cur ? w->cur->snap->tls : NULL;
		if (!st)
			return -1; /* no configuration yet: no certificate to answer with */
		c->tls = tg_tls_conn_new(st, c->io.fd);
		if (!c->tls)
			return -1;
		c->phase = CP_HANDSHAKE;
	}
	if (wsettings(w)->use_proxy_protocol)
		c->phase = CP_PREFACE;
	return 0;
}

/* ------------------------------------------------------------ PROXY header */

/* Logs a rejected PROXY header, at most once per 10 s per worker: a scanner
 * or a misconfigured balancer can send them at line rate. */
static void warn_header(tg_worker_t *w, const char *ip, const char *why)
{
	static _Thread_local uint64_t last;
	if (last && w->loop.now_ms - last < 10000)
		return;
	last = w->loop.now_ms;
	tg_warn("proxy", "PROXY protocol header from %s rejected: %s (connection closed)", ip, why);
}

static void apply_proxy_header(tg_cconn_t *c, const tg_proxy_hdr_t *h)
{
	if (h->local)
		return; /* health check of the balancer itself: the socket's addresses */
	set_peer(c, &h->src);
	const void *a = h->src.ss_family == AF_INET6
			    ? (const void *)&((const struct sockaddr_in6 *)&h->src)->sin6_addr
			    : (const void *)&((const struct sockaddr_in *)&h->src)->sin_addr;
	if (!inet_ntop(h->src.ss_family, a, c->ip, sizeof(c->ip)))
		c->ip[0] = '\0';
	if (strncmp(c->ip, "::ffff:", 7) == 0 && strchr(c->ip, '.'))
		memmove(c->ip, c->ip + 7, strlen(c->ip + 7) + 1);
	c->iplen = (uint8_t)strlen(c->ip);
}

static int step_proxy_header(tg_cconn_t *c)
{
	tg_worker_t *w = c->w;
	if (!c->in) {
		if (!c->rd)
			return 0;
		c->in = tg_buf_get(&w->bufs);
		if (!c->in) {
			tg_client_close(c);
			return 0;
		}
	}
	tg_buf_t *b = c->in;
	for (;;) {
		if (b->last > b->start) {
			tg_proxy_hdr_t h;
			const char *why = NULL;
			int r = tg_proxy_protocol_parse(b->start, (size_t)(b->last - b->start), &h,
							&why);
			if (r == TG_ERROR || (r == TG_AGAIN && tg_buf_space(b) == 0)) {
				warn_header(w, c->ip, r == TG_ERROR ? why : "longer than 16 KiB");
				tg_client_close(c);
				return 0;
			}
			if (r > 0) {
				apply_proxy_header(c, &h);
				size_t left = (size_t)(b->last - b->start) - (size_t)r;
				if (c->tls) {
					if (tg_tls_conn_set_prefix(c->tls, b->start + r, left) <
					    0) {
						tg_client_close(c);
						return 0;
					}
					tg_buf_put(&w->bufs, b);
					c->in = NULL;
					c->phase = CP_HANDSHAKE;
				} else {
					memmove(b->start, b->start + r, left);
					b->pos = b->start;
					b->last = b->start + left;
					if (!left) {
						tg_buf_put(&w->bufs, b);
						c->in = NULL;
					}
					c->phase = CP_IDLE;
				}
				return 1;
			}
		}
		if (!c->rd)
			return 0;
		size_t space = tg_buf_space(b);
		ssize_t n = read(c->io.fd, b->last, space);
		if (n > 0) {
			b->last += n;
			if ((size_t)n < space && !c->rdhup)
				c->rd = 0;
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			c->rd = 0;
			return 0;
		}
		if (n < 0 && errno == EINTR)
			continue;
		tg_client_close(c); /* EOF or reset before a complete header */
		return 0;
	}
}

/* ------------------------------------------------------------ handshake */

/* nginx's answer to plain HTTP on its HTTPS port, in clear text, then a
 * graceful close (the request bytes still unread would otherwise turn the
 * close into a reset that destroys the answer). */
static int plain_http(tg_cconn_t *c)
{
	static const char body[] =
	    "<html>\r\n"
	    "<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n"
	    "<body>\r\n"
	    "<center><h1>400 Bad Request</h1></center>\r\n"
	    "<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
	    "<hr><center>tidegate</center>\r\n"
	    "</body>\r\n"
	    "</html>\r\n";
	char resp[512];
	int len = snprintf(resp, sizeof(resp),
			   "HTTP/1.1 400 Bad Request\r\nServer: tidegate\r\n"
			   "Content-Type: text/html\r\nContent-Length: %zu\r\n"
			   "Connection: close\r\n\r\n%s",
			   sizeof(body) - 1, body);
	tg_tls_conn_free(c->tls);
	c->tls = NULL;
	ssize_t n = send(c->io.fd, resp, (size_t)len, MSG_NOSIGNAL);
	(void)n; /* a fresh socket takes these few bytes; if not, the client is gone */
	shutdown(c->io.fd, SHUT_WR);
	c->phase = CP_LINGER;
	c->rd = 1;
	deadline(c, c->w->loop.now_ms + LINGER_MS);
	return 1;
}

static int step_handshake(tg_cconn_t *c)
{
	int r = tg_tls_conn_handshake(c->tls);
	if (r == TG_AGAIN)
		return 0; /* the accept-time deadline (client-header-timeout) runs */
	if (r == TG_ERROR) {
		tg_tls_error_kind_t k = tg_tls_conn_error_kind(c->tls);
		if (k == TG_TLS_ERR_PLAIN_HTTP)
			return plain_http(c);
		if (k != TG_TLS_ERR_PEER_CLOSED)
			tg_debug("tls", "handshake with %s failed: %s", c->ip,
				 tg_tls_conn_error(c->tls));
		tg_client_close(c);
		return 0;
	}
	/* Established. The first request often came with the last handshake
	 * flight and is buffered inside the connection already: read at once. */
	c->phase = CP_IDLE;
	c->idle_since_ms = c->w->loop.now_ms;
	c->rd = 1;
	deadline(c, c->w->loop.now_ms + wsettings(c->w)->client_header_timeout_ms);
	return 1;
}

int tg_cio_step(tg_cconn_t *c)
{
	return c->phase == CP_PREFACE ? step_proxy_header(c) : step_handshake(c);
}

/* ------------------------------------------------------------ I/O */

ssize_t tg_cio_tls_read(tg_tls_conn_t *t, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = tg_tls_conn_read(t, (char *)buf + got, len - got);
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		/* EAGAIN, end or error: hand over what was read; the same
		 * condition comes back on the next call. */
		if (got)
			return (ssize_t)got;
		if (r == 0)
			return 0;
		errno = (int)-r;
		return -1;
	}
	return (ssize_t)got;
}

ssize_t tg_cio_tls_writev(tg_tls_conn_t *t, const struct iovec *iov, int n)
{
	ssize_t r = tg_tls_conn_writev(t, iov, n);
	if (r >= 0)
		return r;
	errno = (int)-r;
	return -1;
}

bool tg_cio_tls_shut(tg_tls_conn_t *t)
{
	return tg_tls_conn_shutdown(t) != TG_AGAIN;
}

void tg_cio_event(tg_cconn_t *c, uint32_t ev)
{
	if (c->tls && (ev & (EPOLLOUT | EPOLLERR)) && tg_tls_conn_has_pending_output(c->tls))
		tg_tls_conn_flush(c->tls); /* a socket error shows again at the next I/O */
}

bool tg_cio_output_pending(const tg_cconn_t *c)
{
	return c->tls && tg_tls_conn_has_pending_output(c->tls);
}

bool tg_cio_shutdown_wr(tg_cconn_t *c)
{
	if (c->tls && !tg_cio_tls_shut(c->tls)) {
		c->tls_shut = 1;
		c->wr = 0;
		return false;
	}
	c->tls_shut = 0;
	shutdown(c->io.fd, SHUT_WR);
	return true;
}

void tg_cio_close(tg_cconn_t *c)
{
	if (c->tls) {
		if (c->phase != CP_HANDSHAKE && c->phase != CP_PREFACE)
			tg_tls_conn_shutdown(c->tls);
		tg_tls_conn_free(c->tls);
		c->tls = NULL;
	}
	tg_sbuf_free(&c->tlsh);
}

/* ------------------------------------------------------------ requests */

static tg_str_t trim(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	return (tg_str_t){p, (size_t)(e - p)};
}

/* nginx's real_ip_recursive over X-Forwarded-For: right to left, skipping
 * trusted addresses. Sets c->x->xip to the client found. */
static void real_ip(tg_cconn_t *c, const tg_settings_t *s)
{
	tg_str_t found = {NULL, 0};
	for (size_t i = c->x->req.num_headers; i-- > 0;) {
		const tg_http_header_t *h = &c->x->reqh[i];
		if (!(h->flags & TG_HDR_XFWD) || !tg_str_caseeq(h->name, "x-forwarded-for", 15))
			continue;
		const char *lo = h->value.ptr, *e = lo + h->value.len;
		while (e > lo) {
			const char *p = e;
			while (p > lo && p[-1] != ',')
				p--;
			tg_str_t ent = trim(p, e);
			e = p > lo ? p - 1 : lo;
			if (!ent.len)
				continue;
			int fam;
			uint8_t a[16];
			if (tg_cidr_parse_ip(ent.ptr, ent.len, &fam, a) < 0)
				goto done; /* garbage: stop at the last good address */
			found = ent;
			if (!tg_cidr_match(s->proxy_real_ip_cidr, s->n_proxy_real_ip_cidr, fam, a))
				goto done;
		}
	}
done:
	if (found.len && found.len < sizeof(c->x->xip)) {
		memcpy(c->x->xip, found.ptr, found.len);
		c->x->xiplen = (uint8_t)found.len;
	}
}

void tg_cio_forwarded(tg_cconn_t *c)
{
	const tg_settings_t *s = c->x->set;
	c->x->trusted = 0;
	c->x->xiplen = 0;
	if (!s->use_forwarded_headers ||
	    !tg_cidr_match(s->proxy_real_ip_cidr, s->n_proxy_real_ip_cidr, c->peer_family,
			   c->peer_addr))
		return;
	c->x->trusted = 1;
	/* With PROXY protocol, its header names the client (ingress-nginx:
	 * real_ip_header proxy_protocol). */
	if (!s->use_proxy_protocol)
		real_ip(c, s);
}

/* The scheme the client used: TLS here, or a trusted X-Forwarded-Proto. */
static bool https_request(const tg_cconn_t *c)
{
	if (c->tls)
		return true;
	if (!c->x->trusted)
		return false;
	for (size_t i = 0; i < c->x->req.num_headers; i++) {
		const tg_http_header_t *h = &c->x->reqh[i];
		if ((h->flags & TG_HDR_XFWD) && tg_str_caseeq(h->name, "x-forwarded-proto", 17))
			return tg_str_caseeq(h->value, "https", 5);
	}
	return false;
}

int tg_cio_route_check(tg_cconn_t *c, const tg_route_t *rt)
{
	const tg_route_opts_t *o = &rt->opts;
	if ((o->force_ssl_redirect || (o->ssl_redirect && o->tls)) && !https_request(c))
		return 308;
	if (o->client_auth_verify == TG_TLS_VERIFY_OFF)
		return 0;
	c->tlsh.len = 0; /* what attempt() adds upstream for this request */
	if (c->tlsh.data)
		c->tlsh.data[0] = '\0';
	if (!o->client_auth)
		return 503; /* auth-tls-secret missing or bad: never serve unchecked */
	if (!c->tls) {
		/* Plain HTTP cannot carry a certificate. nginx would serve it (its
		 * check only runs on TLS connections); a required one is refused. */
		if (o->client_auth_verify != TG_TLS_VERIFY_ON)
			return 0;
		c->x->local_detail = "No required SSL certificate was sent";
		return 400;
	}
	const char *reason = NULL;
	int st = tg_tls_conn_check_client_auth(c->tls, o->client_auth, &reason, &c->tlsh);
	if (st) {
		if (st == 400)
			c->x->local_detail = reason;
		return st;
	}
	if (c->tlsh.oom)
		return 500;
	return 0;
}

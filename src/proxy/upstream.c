/*
 * upstream.c - connections to backends and the per-worker keep-alive pool.
 *
 * The pool is keyed by endpoint address (IP and port), never by backend or
 * snapshot, so a configuration change that keeps an endpoint keeps its warm
 * connections. Idle connections sit in their endpoint's list (most recently
 * used first: warm, and the cold ones expire) and in one worker-wide LRU used
 * to enforce upstream-keepalive-connections. An idle connection stays
 * registered with epoll: any event on it (the backend closing it, stray bytes)
 * closes it at once, so a dead connection is rarely handed out.
 */
#include "core/addr.h"
#include "core/log.h"
#include "proxy/worker.h"

#include <errno.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked (glibc's lacks it) */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint32_t addr_hash(const struct sockaddr_storage *a, socklen_t len)
{
	/* Family, port and address; sin_zero / scope bytes are zero in both.
	 * Eight bytes a step (once per request: a pool lookup). */
	const uint8_t *p = (const uint8_t *)a;
	uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
	socklen_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	for (; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ (h >> 29));
}

static bool addr_eq(const tg_upool_t *p, const struct sockaddr_storage *a, socklen_t len)
{
	return p->addrlen == len && memcmp(&p->addr, a, len) == 0;
}

/* The pool of (address, TLS profile key). The bucket depends on the address
 * only, so that every pool of one endpoint is found in one chain. */
static tg_upool_t *pool_find(tg_worker_t *w, const struct sockaddr_storage *a, socklen_t len,
			     uint32_t h, uint64_t tls_key, bool create)
{
	tg_upool_t **head = &w->upools[h % TG_PROXY_UPOOL_HASH];
	for (tg_upool_t *p = *head; p; p = p->next)
		if (p->hash == h && p->tls_key == tls_key && addr_eq(p, a, len))
			return p;
	if (!create)
		return NULL;
	tg_upool_t *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	memcpy(&p->addr, a, len);
	p->addrlen = len;
	p->hash = h;
	p->live_gen = w->pool_gen;
	p->tls_key = tls_key;
	p->next = *head;
	*head = p;
	return p;
}

static void idle_unlink(tg_worker_t *w, tg_uconn_t *u)
{
	tg_upool_t *p = u->pool;
	if (u->pprev)
		u->pprev->pnext = u->pnext;
	else
		p->idle = u->pnext;
	if (u->pnext)
		u->pnext->pprev = u->pprev;
	u->pnext = u->pprev = NULL;
	/* LRU: lnext is newer, lprev older. */
	if (u->lnext)
		u->lnext->lprev = u->lprev;
	else
		w->lru_new = u->lprev;
	if (u->lprev)
		u->lprev->lnext = u->lnext;
	else
		w->lru_old = u->lnext;
	u->lnext = u->lprev = NULL;
	w->nidle--;
	STAT_SUB(w->stats.up_idle, 1);
	tg_timer_cancel(&w->loop.timers, &u->timer);
}

/* Remembers u's TLS session in its pool for the next connection
 * (proxy_ssl_session_reuse). */
static void keep_session(tg_uconn_t *u)
{
	tg_tls_session_t *s = tg_tls_upstream_session(u->tls);
	if (!s)
		return;
	tg_tls_session_free(u->pool->session);
	u->pool->session = s;
}

void tg_upstream_close(tg_worker_t *w, tg_uconn_t *u)
{
	if (u->io.fd < 0)
		return;
	if (u->state == UC_IDLE)
		idle_unlink(w, u);
	else
		STAT_SUB(w->stats.up_active, 1);
	tg_timer_cancel(&w->loop.timers, &u->timer);
	if (TG_UNLIKELY(u->tls)) {
		/* close_notify (best effort) keeps the session resumable. */
		if (u->state != UC_HANDSHAKE && u->state != UC_CONNECTING &&
		    tg_tls_conn_shutdown(u->tls) != TG_ERROR && u->pool)
			keep_session(u);
		tg_tls_conn_free(u->tls);
		u->tls = NULL;
	}
	close(u->io.fd);
	u->io.fd = -1;
	tg_buf_put(&w->bufs, u->buf);
	u->buf = NULL;
	u->owner = NULL;
	if (u->pool)
		u->pool->nconns--;
	w->nupstream--;
	/* Freed after the current event batch: a later event of the same batch
	 * may still point at it. */
	u->gnext = w->ugrave;
	w->ugrave = u;
}

static void idle_expired(tg_timer_t *t)
{
	tg_uconn_t *u = container_of(t, tg_uconn_t, timer);
	tg_upstream_close(u->w, u);
}

static void upstream_event(tg_io_t *io, uint32_t ev)
{
	tg_uconn_t *u = container_of(io, tg_uconn_t, io);
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->rd = 1;
	if (ev & (EPOLLRDHUP | EPOLLHUP))
		u->rdhup = 1;
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		u->wr = 1;
	if (TG_UNLIKELY(u->tls) && (ev & (EPOLLOUT | EPOLLERR)) &&
	    tg_tls_conn_has_pending_output(u->tls))
		tg_tls_conn_flush(u->tls); /* the end of a request waiting for room */
	if (u->state == UC_IDLE) {
		if (!(ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
			return; /* only a write-space edge */
		char c;
		ssize_t n = recv(io->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN) {
			u->rd = 0;
			return;
		}
		/* Closed by the backend, reset, or bytes nobody asked for. */
		tg_upstream_close(u->w, u);
		return;
	}
	if (u->owner)
		tg_client_upstream_ready(u->owner);
}

tg_uconn_t *tg_upstream_take(tg_worker_t *w, const struct sockaddr_storage *addr, socklen_t len,
			     const tg_tls_upstream_t *tls)
{
	uint32_t h = addr_hash(addr, len);
	tg_upool_t *p = pool_find(w, addr, len, h, tls ? tg_tls_upstream_key(tls) : 0, false);
	if (!p || !p->idle)
		return NULL;
	tg_uconn_t *u = p->idle;
	idle_unlink(w, u);
	u->state = UC_ACTIVE;
	u->reused = 1;
	STAT_ADD(w->stats.up_active, 1);
	STAT_ADD(w->stats.up_reused, 1);
	return u;
}

int tg_upstream_connect(tg_worker_t *w, const tg_endpoint_t *ep, const tg_tls_upstream_t *tls,
			tg_uconn_t **out)
{
	uint32_t h = addr_hash(&ep->addr, ep->addrlen);
	tg_upool_t *p =
	    pool_find(w, &ep->addr, ep->addrlen, h, tls ? tg_tls_upstream_key(tls) : 0, true);
	if (!p)
		return -ENOMEM;
	int fd = socket(ep->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int r = connect(fd, (const struct sockaddr *)&ep->addr, ep->addrlen);
	if (r < 0 && errno != EINPROGRESS) {
		int e = -errno;
		close(fd);
		return e;
	}
	tg_uconn_t *u = tg_pool_get(&w->upool_objs);
	if (!u) {
		close(fd);
		return -ENOMEM;
	}
	memset(u, 0, sizeof(*u));
	u->io.fd = fd;
	u->io.fn = upstream_event;
	u->w = w;
	u->pool = p;
	tg_timer_init(&u->timer, idle_expired);
	u->state = r == 0 ? UC_ACTIVE : UC_CONNECTING;
	u->wr = r == 0;
	if (tls) {
		u->tls = tg_tls_upstream_conn(tls, fd, p->session);
		if (!u->tls) {
			close(fd);
			tg_pool_put(&w->upool_objs, u);
			return -ENOMEM;
		}
		if (r == 0)
			u->state = UC_HANDSHAKE;
	}
	int e = tg_loop_add(&w->loop, &u->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
	if (e < 0) {
		tg_tls_conn_free(u->tls);
		u->tls = NULL;
		close(fd);
		tg_pool_put(&w->upool_objs, u);
		return e;
	}
	p->nconns++;
	w->nupstream++;
	STAT_ADD(w->stats.up_active, 1);
	STAT_ADD(w->stats.up_opened, 1);
	*out = u;
	return 0;
}

void tg_upstream_release(tg_worker_t *w, tg_uconn_t *u, bool reusable, const tg_settings_t *s)
{
	u->owner = NULL;
	if (!reusable || s->upstream_keepalive_connections == 0 || w->draining ||
	    u->requests >= s->upstream_keepalive_requests || u->rdhup ||
	    u->pool->live_gen != w->pool_gen /* endpoint gone from the snapshot */) {
		tg_upstream_close(w, u);
		return;
	}
	if (TG_UNLIKELY(u->tls))
		keep_session(u);
	/* The response buffer goes back now: idle connections hold no memory
	 * beyond their struct. */
	tg_buf_put(&w->bufs, u->buf);
	u->buf = NULL;
	u->state = UC_IDLE;
	u->reused = 0;
	STAT_SUB(w->stats.up_active, 1);
	STAT_ADD(w->stats.up_idle, 1);
	tg_upool_t *p = u->pool;
	u->pprev = NULL;
	u->pnext = p->idle;
	if (p->idle)
		p->idle->pprev = u;
	p->idle = u;
	u->lprev = w->lru_new;
	u->lnext = NULL;
	if (w->lru_new)
		w->lru_new->lnext = u;
	else
		w->lru_old = u;
	w->lru_new = u;
	w->nidle++;
	/* Close a little before upstream-keepalive-timeout so that tidegate, not
	 * the backend, ends the connection: a backend closing first races with a
	 * request being written. */
	uint64_t t = s->upstream_keepalive_timeout_ms;
	uint64_t margin = t / 10 < 1000 ? t / 10 : 1000;
	if (tg_timer_set(&w->loop.timers, &u->timer, w->loop.now_ms + t - margin) < 0) {
		tg_upstream_close(w, u);
		return;
	}
	while (w->nidle > s->upstream_keepalive_connections && w->lru_old)
		tg_upstream_close(w, w->lru_old);
}

uint64_t tg_upstream_acked(const tg_uconn_t *u)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (u->io.fd < 0 || getsockopt(u->io.fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
		return UINT64_MAX; /* unknown: assume everything arrived */
	return ti.tcpi_bytes_acked;
}

void tg_upstream_sweep(tg_worker_t *w, bool all)
{
	if (all)
		while (w->lru_old)
			tg_upstream_close(w, w->lru_old);
	for (int i = 0; i < TG_PROXY_UPOOL_HASH; i++) {
		tg_upool_t **pp = &w->upools[i];
		while (*pp) {
			tg_upool_t *p = *pp;
			if (p->nconns == 0) {
				*pp = p->next;
				tg_tls_session_free(p->session);
				free(p);
			} else {
				pp = &p->next;
			}
		}
	}
}

uint32_t tg_upstream_forget_gone(tg_worker_t *w, const tg_snapshot_t *s)
{
	/* Mark the pools whose endpoint the new snapshot still lists: O(endpoints)
	 * hash lookups, no allocation, once per snapshot switch. */
	uint64_t g = ++w->pool_gen;
	for (uint32_t b = 0; b < s->n_backends; b++) {
		const tg_backend_t *be = &s->backends[b];
		for (uint32_t i = 0; i < be->n_endpoints; i++) {
			const tg_endpoint_t *ep = &be->endpoints[i];
			uint32_t h = addr_hash(&ep->addr, ep->addrlen);
			/* Every pool of the address (plain and each TLS profile). */
			for (tg_upool_t *p = w->upools[h % TG_PROXY_UPOOL_HASH]; p; p = p->next)
				if (p->hash == h && addr_eq(p, &ep->addr, ep->addrlen))
					p->live_gen = g;
		}
	}
	uint32_t closed = 0;
	for (int i = 0; i < TG_PROXY_UPOOL_HASH; i++)
		for (tg_upool_t *p = w->upools[i]; p; p = p->next)
			while (p->live_gen != g && p->idle) {
				tg_upstream_close(w, p->idle);
				closed++;
			}
	return closed;
}

int tg_upstream_handshake(tg_uconn_t *u)
{
	int r = tg_tls_conn_handshake(u->tls);
	if (r == TG_OK) {
		u->state = UC_ACTIVE;
		u->wr = 1; /* the handshake flushed everything: room to write */
		u->rd = 1; /* the backend may have written already (TLS 1.3 tickets) */
		return TG_OK;
	}
	if (r == TG_AGAIN)
		return TG_AGAIN;
	/* A backend that fails the handshake (bad certificate, no common
	 * protocol) fails every request: say why, at most every 10 s. */
	static _Thread_local uint64_t last;
	tg_worker_t *w = u->w;
	if (!last || w->loop.now_ms - last >= 10000) {
		last = w->loop.now_ms;
		char addr[64];
		tg_addr_format((const struct sockaddr *)&u->pool->addr, addr, sizeof(addr));
		tg_warn("proxy",
			"TLS handshake with backend %s failed: %s (backend-protocol HTTPS)", addr,
			tg_tls_conn_error(u->tls));
	}
	return TG_ERROR;
}

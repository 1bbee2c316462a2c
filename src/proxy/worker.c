/*
 * worker.c - worker threads, their listeners, snapshot tracking and drain;
 * the tg_proxy_* API.
 *
 * Each worker owns an SO_REUSEPORT listener on the same address, so the kernel
 * spreads new connections over the workers and a connection stays on the
 * worker that accepted it. Other threads talk to a worker only through its
 * `cmd` bits and eventfd.
 */
#include "proxy/proxy.h"

#include "core/addr.h"
#include "core/clock.h"
#include "core/fdlimit.h"
#include "core/log.h"
#include "proxy/accesslog.h"
#include "proxy/limits.h"
#include "proxy/tls_io.h"
#include "proxy/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ACCESS_LOG_RING (1u << 20) /* bytes per worker: ~5000 lines of backlog */

struct tg_proxy {
	int nworkers;	      /* entries in workers */
	tg_worker_t *workers; /* the workers */
	tg_accesslog_t *log;  /* access-log thread */
	int port;	      /* HTTP port bound */
	bool started;	      /* threads were created */
	_Atomic int phase;    /* 0 serving, 1 draining, 2 listeners closed */
	int https_port;	      /* HTTPS port bound (0: no HTTPS listener) */
};

void tg_worker_snap_unuse(tg_worker_t *w, tg_snapref_t *r)
{
	if (--r->users)
		return;
	for (tg_snapref_t **pp = &w->snaps; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	tg_snapshot_release(r->snap);
	free(r);
}

/* Once per loop iteration: one atomic load; on a new generation take a
 * reference to the new snapshot. Requests in flight keep theirs. */
static void check_snapshot(void *arg)
{
	tg_worker_t *w = arg;
	uint64_t g = tg_snapshot_generation();
	if (g == w->gen)
		return;
	tg_snapshot_t *s = tg_snapshot_acquire();
	if (!s)
		return;
	if (w->cur && w->cur->snap == s) {
		tg_snapshot_release(s);
		w->gen = g;
		return;
	}
	tg_snapref_t *r = malloc(sizeof(*r));
	uint32_t *rr = s->n_backends ? calloc(s->n_backends, sizeof(*rr)) : NULL;
	if (!r || (s->n_backends && !rr)) {
		free(r);
		free(rr);
		tg_snapshot_release(s); /* try again next iteration */
		return;
	}
	/* Start each worker's cursors at different places so that workers do not
	 * all send their first requests to the same endpoint. */
	for (uint32_t i = 0; i < s->n_backends; i++)
		rr[i] = (uint32_t)tg_rand_next(&w->rng);
	r->snap = s;
	r->users = 1;
	r->next = w->snaps;
	w->snaps = r;
	tg_snapref_t *old = w->cur;
	w->cur = r;
	w->gen = g;
	free(w->rr);
	w->rr = rr;
	w->nrr = s->n_backends;
	if (old)
		tg_worker_snap_unuse(w, old);
	tg_limits_resume(w); /* max-worker-connections may have been raised */
	uint32_t gone = tg_upstream_forget_gone(w, s);
	if (gone)
		tg_debug("proxy", "worker %d: closed %u idle connections to endpoints gone", w->id,
			 gone);
}

static void free_graves(tg_worker_t *w)
{
	while (w->cgrave) {
		tg_cconn_t *c = w->cgrave;
		w->cgrave = c->gnext;
		tg_pool_put(&w->xpool, c->x); /* kept through the batch: tg_client_close */
		tg_pool_put(&w->cpool, c);
	}
	while (w->ugrave) {
		tg_uconn_t *u = w->ugrave;
		w->ugrave = u->gnext;
		tg_pool_put(&w->upool_objs, u);
	}
}

static void wake_event(tg_io_t *io, uint32_t ev)
{
	uint64_t v;
	ssize_t n = read(io->fd, &v, sizeof(v));
	(void)n;
	(void)ev;
}

static void close_listeners(tg_worker_t *w)
{
	if (w->lio.fd >= 0) {
		tg_loop_del(&w->loop, &w->lio);
		close(w->lio.fd);
		w->lio.fd = -1;
	}
	while (w->xlis) {
		tg_lsock_t *l = w->xlis;
		w->xlis = l->next;
		tg_loop_del(&w->loop, &l->io);
		close(l->io.fd);
		free(l);
	}
}

static void *worker_main(void *arg)
{
	tg_worker_t *w = arg;
	check_snapshot(w);
	while (!w->stop) {
		int n = tg_loop_poll(&w->loop, w->draining ? 100 : 1000);
		if (n < 0) {
			tg_error("proxy", "worker %d: epoll_wait: %s", w->id, strerror(-n));
			break;
		}
		free_graves(w);
		int cmd = atomic_exchange(&w->cmd, 0);
		if (cmd & CMD_ABORT)
			break;
		if ((cmd & CMD_DRAIN) && !w->draining)
			tg_drain_start(w);
		if ((cmd & (CMD_UNLISTN | CMD_HANDOFF)) && !w->unlistened)
			tg_drain_unlisten(w, !(cmd & CMD_HANDOFF));
		if (w->unlistened && tg_drain_done(w))
			break;
		if (w->loop.now_ms - w->last_gc >= 10000) {
			tg_upstream_sweep(w, false);
			w->last_gc = w->loop.now_ms;
		}
	}
	while (w->clients)
		tg_client_close(w->clients);
	tg_upstream_sweep(w, true);
	free_graves(w);
	tg_upstream_sweep(w, true); /* pool entries emptied by the closes above */
	close_listeners(w);
	if (w->cur) {
		tg_snapref_t *c = w->cur;
		w->cur = NULL;
		tg_worker_snap_unuse(w, c);
	}
	atomic_store(&w->exited, true);
	return NULL;
}

/* True when fd is a listening TCP socket on the address --http-listen asks
 * for (any port when it asks for port 0); else logs why it is not used. */
static bool adoptable(int fd, const struct sockaddr_storage *want, const char *want_text)
{
	struct sockaddr_storage got;
	socklen_t gl = sizeof(got);
	int listening = 0, type = 0;
	socklen_t ol = sizeof(int);
	if (getsockname(fd, (struct sockaddr *)&got, &gl) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol) < 0 || !listening ||
	    (ol = sizeof(int), getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ol) < 0) ||
	    type != SOCK_STREAM || (got.ss_family != AF_INET && got.ss_family != AF_INET6)) {
		tg_warn("proxy", "inherited fd %d is not a listening TCP socket: not used", fd);
		return false;
	}
	bool same;
	if (got.ss_family != want->ss_family) {
		same = false;
	} else if (got.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)&got, *b = (const void *)want;
		same = a->sin_addr.s_addr == b->sin_addr.s_addr &&
		       (b->sin_port == 0 || a->sin_port == b->sin_port);
	} else {
		const struct sockaddr_in6 *a = (const void *)&got, *b = (const void *)want;
		same = memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0 &&
		       (b->sin6_port == 0 || a->sin6_port == b->sin6_port);
	}
	if (!same) {
		char text[TG_ADDR_TEXT_MAX];
		tg_addr_format((struct sockaddr *)&got, text, sizeof(text));
		tg_warn("proxy",
			"inherited listening socket %s does not match --http-listen %s: not used",
			text, want_text);
		return false;
	}
	/* Non-blocking is a property of the shared open file (set by whoever
	 * created it); close-on-exec is this process's. */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	return true;
}

/* Adopts the HTTPS listening sockets handed over (those that fit
 * --https-listen) as TLS listeners, round-robin over the workers. Takes every
 * descriptor of cfg->inherit_tls_fds. Returns how many were adopted or -errno. */
static int adopt_tls(tg_proxy_t *p, const tg_proxy_config_t *cfg)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int k = 0, e = 0;
	bool ok = tg_addr_parse(cfg->https_listen, 443, &ss, &sl) == 0;
	for (int i = 0; i < cfg->n_inherit_tls; i++) {
		int fd = cfg->inherit_tls_fds[i];
		if (e < 0 || !ok || !adoptable(fd, &ss, cfg->https_listen)) {
			close(fd);
			continue;
		}
		tg_worker_t *w = &p->workers[k % p->nworkers];
		if ((e = tg_drain_add_listener(w, fd)) < 0) {
			close(fd);
			continue;
		}
		w->xlis->tls = true;
		if (k++ == 0) {
			struct sockaddr_storage b;
			socklen_t bl = sizeof(b);
			getsockname(fd, (struct sockaddr *)&b, &bl);
			p->https_port =
			    ntohs(b.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&b)->sin6_port
							  : ((struct sockaddr_in *)&b)->sin_port);
		}
	}
	if (e < 0)
		return e;
	for (int i = 0; k && i < p->nworkers; i++) {
		tg_worker_t *w = &p->workers[i];
		int len = snprintf(w->sport_text, sizeof(w->sport_text), "%d", p->https_port);
		w->sport_len = (uint8_t)(len > 0 ? len : 0);
	}
	if (k)
		tg_info("proxy", "adopted %d HTTPS listening socket%s on port %d", k,
			k == 1 ? "" : "s", p->https_port);
	return k;
}

static void worker_destroy(tg_worker_t *w)
{
	if (w->wio.fd >= 0)
		close(w->wio.fd);
	if (w->lio.fd >= 0)
		close(w->lio.fd);
	while (w->xlis) { /* the epoll set goes away just below */
		tg_lsock_t *l = w->xlis;
		w->xlis = l->next;
		close(l->io.fd);
		free(l);
	}
	tg_loop_destroy(&w->loop);
	tg_pool_destroy(&w->cpool);
	tg_pool_destroy(&w->upool_objs);
	tg_pool_destroy(&w->xpool);
	tg_bufpool_destroy(&w->bufs);
	tg_wstats_destroy(&w->stats);
	free(w->rr);
	w->rr = NULL;
}

static int worker_init(tg_proxy_t *p, tg_worker_t *w, int id, int lfd)
{
	w->id = id;
	w->proxy = p;
	w->lio.fd = lfd;
	w->lio.fn = tg_client_accept;
	w->wio.fd = -1;
	tg_pool_init(&w->cpool, sizeof(tg_cconn_t), 1024);
	tg_pool_init(&w->upool_objs, sizeof(tg_uconn_t), 1024);
	/* Exchanges and I/O buffers exist only for requests in progress. The
	 * caches cover the swings of the number in progress; beyond them the
	 * memory is unmapped when returned, so a burst (thousands of connections
	 * that made one request each and went idle) leaves no megabytes behind. */
	tg_pool_init(&w->xpool, sizeof(tg_exch_t), 64);
	tg_bufpool_init(&w->bufs, TG_PROXY_BUF_SIZE, 256);
	tg_rand_seed(&w->rng);
	tg_settings_defaults(&w->defaults);
	w->logring = p->log ? tg_accesslog_ring(p->log, id) : NULL;
	w->tl_sec = -1;
	int e = tg_wstats_init(&w->stats);
	if (e < 0)
		return e;
	e = tg_loop_init(&w->loop, 512);
	if (e < 0)
		return e;
	w->loop.on_wake = check_snapshot;
	w->loop.wake_arg = w;
	w->last_gc = w->loop.now_ms;
	w->wio.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wio.fd < 0)
		return -errno;
	w->wio.fn = wake_event;
	if ((e = tg_loop_add(&w->loop, &w->wio, EPOLLIN)) < 0)
		return e;
	/* Level-triggered: accept() is capped per wake-up for fairness. */
	if ((e = tg_loop_add(&w->loop, &w->lio, EPOLLIN)) < 0)
		return e;
	return 0;
}

int tg_proxy_start(const tg_proxy_config_t *cfg, tg_proxy_t **out)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (tg_addr_parse(cfg->http_listen, 80, &ss, &sl) < 0) {
		tg_error("proxy", "bad --http-listen address '%s' (want IP:PORT)",
			 cfg->http_listen);
		return -EINVAL;
	}
	int n = cfg->workers > 0 ? cfg->workers : 1;
	/* One descriptor per client and per upstream connection: take everything
	 * the hard limit allows (the soft limit is often 1024). */
	int64_t nofile = tg_fdlimit_raise();
	if (nofile >= 0 && nofile < 4096)
		tg_warn("proxy", "open-file limit is %lld: few connections fit (raise ulimit -Hn)",
			(long long)nofile);
	tg_proxy_t *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->workers = calloc((size_t)n, sizeof(*p->workers));
	if (!p->workers) {
		free(p);
		return -ENOMEM;
	}
	int e = 0;
	if (cfg->access_log_fd >= 0 &&
	    (e = tg_accesslog_start(cfg->access_log_fd, n, ACCESS_LOG_RING, &p->log)) < 0) {
		free(p->workers);
		free(p);
		return e;
	}
	for (int i = 0; i < n; i++) {
		p->workers[i].lio.fd = -1;
		p->workers[i].wio.fd = -1;
		p->workers[i].loop.epfd = -1;
	}
	p->nworkers = n;
	/* Sockets handed over by the previous process: the ones that fit
	 * --http-listen are used as they are (their queues hold connections
	 * already); worker i takes socket i, extra sockets go round-robin to the
	 * workers, and workers without one open a new socket in the same
	 * SO_REUSEPORT group. */
	int ninh = 0;
	bool tls_taken = false; /* inherit_tls_fds were given to adopt_tls */
	int *inh = cfg->n_inherit > 0 ? calloc((size_t)cfg->n_inherit, sizeof(int)) : NULL;
	for (int i = 0; i < cfg->n_inherit; i++) {
		int fd = cfg->inherit_fds[i];
		if (!inh || !adoptable(fd, &ss, cfg->http_listen)) {
			close(fd);
			continue;
		}
		inh[ninh++] = fd;
	}
	for (int i = 0; i < n; i++) {
		int lfd = i < ninh ? inh[i] : tg_addr_listen(&ss, sl);
		if (lfd < 0) {
			e = lfd;
			tg_error("proxy", "cannot listen on %s: %s", cfg->http_listen,
				 strerror(-e));
			goto fail;
		}
		if (i == 0) /* with port 0 the kernel picked one: the others join it */
			p->port = tg_addr_adopt_port(lfd, &ss);
		tg_worker_t *w = &p->workers[i];
		if (i < ninh)
			inh[i] = -1; /* the worker owns it now */
		e = worker_init(p, w, i, lfd);
		if (e < 0) {
			tg_error("proxy", "worker %d: %s", i, strerror(-e));
			goto fail;
		}
		w->port = (uint16_t)p->port;
		int len = 0;
		char tmp[8];
		int v = p->port;
		do {
			tmp[len++] = (char)('0' + v % 10);
			v /= 10;
		} while (v);
		for (int k = 0; k < len; k++)
			w->port_text[k] = tmp[len - 1 - k];
		w->port_len = (uint8_t)len;
	}
	/* HTTPS: handed-over sockets when there are (adopt_tls), else bound;
	 * without --https-listen, handed-over ones are not wanted. */
	tls_taken = true;
	if (!(cfg->https_listen && *cfg->https_listen)) {
		for (int i = 0; i < cfg->n_inherit_tls; i++)
			close(cfg->inherit_tls_fds[i]);
	} else if ((e = adopt_tls(p, cfg)) < 0 ||
		   (e == 0 &&
		    (e = tg_cio_listen(p->workers, n, cfg->https_listen, &p->https_port)) < 0)) {
		goto fail;
	}
	for (int j = n; j < ninh; j++) {
		e = tg_drain_add_listener(&p->workers[j % n], inh[j]);
		if (e < 0) {
			tg_error("proxy", "worker %d: %s", j % n, strerror(-e));
			goto fail;
		}
		inh[j] = -1;
	}
	if (ninh)
		tg_info("proxy",
			"adopted %d listening socket%s on port %d from the previous process", ninh,
			ninh == 1 ? "" : "s", p->port);
	for (int i = 0; i < ninh; i++)
		if (inh[i] >= 0)
			close(inh[i]);
	free(inh);
	inh = NULL;
	for (int i = 0; i < n; i++) {
		e = -pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
		if (e) {
			tg_error("proxy", "cannot start worker %d: %s", i, strerror(-e));
			for (int j = 0; j < i; j++) {
				atomic_fetch_or(&p->workers[j].cmd, CMD_ABORT);
				uint64_t one = 1;
				ssize_t wr = write(p->workers[j].wio.fd, &one, sizeof(one));
				(void)wr;
				pthread_join(p->workers[j].thread, NULL);
			}
			goto fail;
		}
	}
	p->started = true;
	*out = p;
	return 0;
fail:
	for (int i = 0; i < ninh; i++)
		if (inh && inh[i] >= 0)
			close(inh[i]);
	free(inh);
	for (int i = 0; !tls_taken && i < cfg->n_inherit_tls; i++)
		close(cfg->inherit_tls_fds[i]);
	for (int i = 0; i < n; i++)
		worker_destroy(&p->workers[i]);
	tg_accesslog_stop(p->log);
	free(p->workers);
	free(p);
	return e;
}

int tg_proxy_https_port(const tg_proxy_t *p)
{
	return p->https_port;
}

int tg_proxy_http_port(const tg_proxy_t *p)
{
	return p->port;
}

static void post(tg_proxy_t *p, int cmd)
{
	for (int i = 0; i < p->nworkers; i++) {
		atomic_fetch_or(&p->workers[i].cmd, cmd);
		uint64_t one = 1;
		ssize_t n = write(p->workers[i].wio.fd, &one, sizeof(one));
		(void)n;
	}
}

void tg_proxy_drain(tg_proxy_t *p)
{
	int z = 0;
	atomic_compare_exchange_strong(&p->phase, &z, 1);
	post(p, CMD_DRAIN);
}

void tg_proxy_unlisten(tg_proxy_t *p, bool handed_over)
{
	atomic_store(&p->phase, 2);
	post(p, CMD_DRAIN | (handed_over ? CMD_HANDOFF : CMD_UNLISTN));
}

uint64_t tg_proxy_connections(tg_proxy_t *p)
{
	uint64_t n = 0;
	for (int i = 0; i < p->nworkers; i++)
		n += STAT_GET(p->workers[i].stats.client_conns);
	return n;
}

uint64_t tg_proxy_forced(tg_proxy_t *p)
{
	uint64_t n = 0;
	for (int i = 0; i < p->nworkers; i++)
		n += atomic_load(&p->workers[i].drain_forced);
	return n;
}

int tg_proxy_listen_fds(const tg_proxy_t *p, int *fds, bool *tls, int max)
{
	int k = 0;
	for (int i = 0; i < p->nworkers && k < max; i++) {
		const tg_worker_t *w = &p->workers[i];
		if (w->lio.fd >= 0) {
			tls[k] = false;
			fds[k++] = w->lio.fd;
		}
		for (const tg_lsock_t *l = w->xlis; l && k < max; l = l->next) {
			tls[k] = l->tls;
			fds[k++] = l->io.fd;
		}
	}
	return k;
}

void tg_proxy_abort(tg_proxy_t *p)
{
	post(p, CMD_ABORT);
}

bool tg_proxy_wait(tg_proxy_t *p, int timeout_ms)
{
	uint64_t end = timeout_ms < 0 ? UINT64_MAX : tg_clock_ms() + (uint64_t)timeout_ms;
	for (;;) {
		bool all = true;
		for (int i = 0; i < p->nworkers; i++)
			all &= atomic_load(&p->workers[i].exited);
		if (all)
			return true;
		if (tg_clock_ms() >= end)
			return false;
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

void tg_proxy_free(tg_proxy_t *p)
{
	if (!p)
		return;
	if (p->started) {
		tg_proxy_abort(p);
		for (int i = 0; i < p->nworkers; i++)
			pthread_join(p->workers[i].thread, NULL);
	}
	tg_accesslog_stop(p->log);
	for (int i = 0; i < p->nworkers; i++)
		worker_destroy(&p->workers[i]);
	free(p->workers);
	free(p);
}

void tg_proxy_metrics(tg_proxy_t *p, tg_sbuf_t *out)
{
	tg_wstats_t *all[256];
	int n = p->nworkers < 256 ? p->nworkers : 256;
	for (int i = 0; i < n; i++)
		all[i] = &p->workers[i].stats;
	tg_wstats_render(all, n, out);
	tg_sbuf_printf(out,
		       "# HELP tidegate_draining 1 from the first SIGTERM (or a completed SIGUSR2 "
		       "upgrade) until exit.\n"
		       "# TYPE tidegate_draining gauge\n"
		       "tidegate_draining %d\n"
		       "# HELP tidegate_listeners_open 1 while the HTTP listeners accept.\n"
		       "# TYPE tidegate_listeners_open gauge\n"
		       "tidegate_listeners_open %d\n",
		       atomic_load(&p->phase) > 0, atomic_load(&p->phase) < 2);
}

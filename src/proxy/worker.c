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
#include "core/log.h"
#include "proxy/accesslog.h"
#include "proxy/worker.h"

#include <errno.h>
#include <netinet/in.h>
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
}

static void free_graves(tg_worker_t *w)
{
	while (w->cgrave) {
		tg_cconn_t *c = w->cgrave;
		w->cgrave = c->gnext;
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

static void start_drain(tg_worker_t *w)
{
	w->draining = true;
	if (w->lio.fd >= 0) {
		tg_loop_del(&w->loop, &w->lio);
		close(w->lio.fd);
		w->lio.fd = -1;
	}
	for (tg_cconn_t *c = w->clients, *next; c; c = next) {
		next = c->next;
		tg_client_drain(c);
	}
	tg_upstream_sweep(w, true);
	const tg_settings_t *s = w->cur ? &w->cur->snap->settings : &w->defaults;
	w->drain_deadline = w->loop.now_ms + s->worker_shutdown_timeout_ms;
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
			start_drain(w);
		if (w->draining && (w->nclients == 0 || w->loop.now_ms >= w->drain_deadline))
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
	if (w->lio.fd >= 0) {
		close(w->lio.fd);
		w->lio.fd = -1;
	}
	if (w->cur) {
		tg_snapref_t *c = w->cur;
		w->cur = NULL;
		tg_worker_snap_unuse(w, c);
	}
	atomic_store(&w->exited, true);
	return NULL;
}

static int open_listener(const struct sockaddr_storage *ss, socklen_t sl)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, sl) < 0 || listen(fd, 4096) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static void worker_destroy(tg_worker_t *w)
{
	if (w->wio.fd >= 0)
		close(w->wio.fd);
	if (w->lio.fd >= 0)
		close(w->lio.fd);
	tg_loop_destroy(&w->loop);
	tg_pool_destroy(&w->cpool);
	tg_pool_destroy(&w->upool_objs);
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
	tg_bufpool_init(&w->bufs, TG_PROXY_BUF_SIZE, 1024);
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
	}
	p->nworkers = n;
	for (int i = 0; i < n; i++) {
		int lfd = open_listener(&ss, sl);
		if (lfd < 0) {
			e = lfd;
			tg_error("proxy", "cannot listen on %s: %s", cfg->http_listen,
				 strerror(-e));
			goto fail;
		}
		if (i == 0) {
			/* With port 0 the kernel picked one: the other workers join it. */
			struct sockaddr_storage b;
			socklen_t bl = sizeof(b);
			getsockname(lfd, (struct sockaddr *)&b, &bl);
			uint16_t port = b.ss_family == AF_INET6
					    ? ((struct sockaddr_in6 *)&b)->sin6_port
					    : ((struct sockaddr_in *)&b)->sin_port;
			if (ss.ss_family == AF_INET6)
				((struct sockaddr_in6 *)&ss)->sin6_port = port;
			else
				((struct sockaddr_in *)&ss)->sin_port = port;
			p->port = ntohs(port);
		}
		tg_worker_t *w = &p->workers[i];
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
	for (int i = 0; i < n; i++)
		worker_destroy(&p->workers[i]);
	tg_accesslog_stop(p->log);
	free(p->workers);
	free(p);
	return e;
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
	post(p, CMD_DRAIN);
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
}

/*
 * drain.c - a worker's side of graceful shutdown and of the SIGUSR2 handover.
 *
 * Three steps, each started by a command bit from the main thread:
 *
 *   CMD_DRAIN    (first SIGTERM, or the upgraded process is ready): every
 *                response from now on carries Connection: close and its
 *                connection ends after it; idle keep-alive connections are
 *                closed once idle for TG_DRAIN_IDLE_MS. Listeners still accept
 *                (the balancer in front has not noticed /healthz yet): those
 *                connections get one request each.
 *   CMD_UNLISTN  (grace period over): the accept queue is emptied, then the
 *                listeners are closed; worker-shutdown-timeout starts.
 *   CMD_HANDOFF  (upgrade): the listeners are closed without accepting, the
 *                new process holds the same sockets and takes the queue.
 *
 * The worker leaves its loop once its listeners are closed and it has no
 * connection left, or at the deadline, closing what is left with a log line.
 */
#include "core/log.h"
#include "proxy/worker.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const tg_settings_t *wsettings(const tg_worker_t *w)
{
	return w->cur ? &w->cur->snap->settings : &w->defaults;
}

void tg_drain_start(tg_worker_t *w)
{
	w->draining = true;
	for (tg_cconn_t *c = w->clients, *next; c; c = next) {
		next = c->next;
		tg_client_drain(c);
	}
	/* Connections in use go back to no pool from now on (tg_upstream_release
	 * checks draining); the idle ones are not needed any more. */
	tg_upstream_sweep(w, true);
}

static void close_listener(tg_worker_t *w, tg_io_t *io, bool accept_queue)
{
	if (io->fd < 0)
		return;
	/* Connections already queued on a socket that is closed are reset (unless
	 * net.ipv4.tcp_migrate_req moves them to another socket of the group), so
	 * take them all first. A handshake completing between the last accept
	 * and the close is the one left to tcp_migrate_req. */
	if (accept_queue)
		tg_client_accept_from(w, io->fd, INT_MAX);
	tg_loop_del(&w->loop, io); /* before close: the socket may live on in
				    * another process, and epoll would keep it */
	close(io->fd);
	io->fd = -1;
}

void tg_drain_unlisten(tg_worker_t *w, bool accept_queue)
{
	if (!w->draining)
		tg_drain_start(w);
	uint32_t before = w->nclients;
	close_listener(w, &w->lio, accept_queue);
	while (w->xlis) {
		tg_lsock_t *l = w->xlis;
		close_listener(w, &l->io, accept_queue);
		w->xlis = l->next;
		free(l);
	}
	w->unlistened = true;
	/* Connections taken from the queue just now are drained like the others
	 * (tg_client_accept_from calls tg_client_drain while draining). */
	w->drain_deadline = w->loop.now_ms + wsettings(w)->worker_shutdown_timeout_ms;
	if (w->nclients > before)
		tg_debug("proxy", "worker %d: %u queued connections accepted before closing", w->id,
			 w->nclients - before);
}

bool tg_drain_done(tg_worker_t *w)
{
	if (w->nclients == 0)
		return true;
	if (w->loop.now_ms < w->drain_deadline)
		return false;
	tg_debug("proxy", "worker %d: worker-shutdown-timeout reached, closing %u connections",
		 w->id, w->nclients);
	atomic_store(&w->drain_forced, w->nclients); /* tg_proxy_forced reports it */
	return true;
}

static void extra_accept(tg_io_t *io, uint32_t events)
{
	(void)events;
	tg_lsock_t *l = container_of(io, tg_lsock_t, io);
	tg_client_accept_from(l->w, io->fd, 64);
}

int tg_drain_add_listener(tg_worker_t *w, int fd)
{
	tg_lsock_t *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->io.fd = fd;
	l->io.fn = extra_accept;
	l->w = w;
	int e = tg_loop_add(&w->loop, &l->io, EPOLLIN);
	if (e < 0) {
		free(l);
		return e;
	}
	l->next = w->xlis;
	w->xlis = l;
	return 0;
}

/*
 * limits.c - max-worker-connections: pausing and resuming the listeners
 * (see limits.h for the behaviour a client sees).
 */
#include "proxy/limits.h"

#include "core/log.h"

static const tg_settings_t *settings(const tg_worker_t *w)
{
	return w->cur ? &w->cur->snap->settings : &w->defaults;
}

/* Adds or removes every open listening socket of w in the epoll set. The
 * listeners are level-triggered, so connections queued while paused raise an
 * event as soon as they are back. */
static void set_listening(tg_worker_t *w, bool on)
{
	if (w->lio.fd >= 0) {
		if (on)
			(void)tg_loop_add(&w->loop, &w->lio, EPOLLIN);
		else
			(void)tg_loop_del(&w->loop, &w->lio);
	}
	for (tg_lsock_t *l = w->xlis; l; l = l->next) {
		if (l->io.fd < 0)
			continue;
		if (on)
			(void)tg_loop_add(&w->loop, &l->io, EPOLLIN);
		else
			(void)tg_loop_del(&w->loop, &l->io);
	}
}

bool tg_limits_accept_full(tg_worker_t *w)
{
	uint32_t max = settings(w)->max_worker_connections;
	if (!max || w->nclients < max)
		return false;
	if (!w->accept_paused) {
		w->accept_paused = true;
		set_listening(w, false);
		if (w->loop.now_ms - w->limit_warned_ms >= 10000 || !w->limit_warned_ms) {
			w->limit_warned_ms = w->loop.now_ms;
			tg_warn("proxy",
				"worker %d: %u client connections (max-worker-connections): "
				"new connections wait in the listen queue",
				w->id, max);
		}
	}
	return true;
}

void tg_limits_resume(tg_worker_t *w)
{
	if (!w->accept_paused)
		return;
	uint32_t max = settings(w)->max_worker_connections;
	if (max && w->nclients >= max)
		return;
	w->accept_paused = false;
	set_listening(w, true);
}

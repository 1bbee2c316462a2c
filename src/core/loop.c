#include "core/loop.h"

#include "core/clock.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int tg_loop_init(tg_loop_t *l, int max_events)
{
	tg_timers_init(&l->timers);
	l->events = calloc((size_t)max_events, sizeof(*l->events));
	if (!l->events)
		return -ENOMEM;
	l->max_events = max_events;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		int e = -errno;
		free(l->events);
		l->events = NULL;
		return e;
	}
	l->now_ns = tg_clock_ns();
	l->now_ms = l->now_ns / 1000000;
	l->on_wake = NULL;
	l->wake_arg = NULL;
	return 0;
}

void tg_loop_destroy(tg_loop_t *l)
{
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
	free(l->events);
	l->events = NULL;
	tg_timers_destroy(&l->timers);
}

int tg_loop_add(tg_loop_t *l, tg_io_t *io, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};
	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0 ? -errno : 0;
}

int tg_loop_del(tg_loop_t *l, tg_io_t *io)
{
	return epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL) < 0 ? -errno : 0;
}

int tg_loop_poll(tg_loop_t *l, int max_wait_ms)
{
	uint64_t next = tg_timers_next(&l->timers);
	int timeout = max_wait_ms;
	if (next != UINT64_MAX) {
		uint64_t now = tg_clock_ms();
		uint64_t wait = next > now ? next - now : 0;
		if (timeout < 0 || wait < (uint64_t)timeout)
			timeout = (int)wait;
	}
	int n = epoll_wait(l->epfd, l->events, l->max_events, timeout);
	int err = n < 0 ? errno : 0;
	l->now_ns = tg_clock_ns();
	l->now_ms = l->now_ns / 1000000;
	if (l->on_wake)
		l->on_wake(l->wake_arg);
	for (int i = 0; i < n; i++) {
		tg_io_t *io = l->events[i].data.ptr;
		if (io->fd >= 0)
			io->fn(io, l->events[i].events);
	}
	tg_timers_run(&l->timers, l->now_ms);
	if (n < 0)
		return err == EINTR ? 0 : -err;
	return n;
}

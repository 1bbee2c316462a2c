/*
 * loop.h - one event loop per worker thread: an edge-triggered epoll set plus
 * the worker's timers and a cached clock.
 *
 * A file descriptor is registered once (tg_loop_add) for all the events it will
 * ever need; readiness is tracked by the owner (set on an event, cleared when a
 * read or write returns EAGAIN), so no epoll_ctl happens per request.
 */
#ifndef TG_CORE_LOOP_H
#define TG_CORE_LOOP_H

#include "core/timer.h"

#include <stdint.h>
#include <sys/epoll.h>

typedef struct tg_io tg_io_t;

/* Called with the epoll event bits. An fd < 0 means the owner closed it during
 * the current batch; the loop then skips the remaining events for it. */
typedef void (*tg_io_fn)(tg_io_t *io, uint32_t events);

struct tg_io {
	int fd;	     /* the descriptor, -1 once closed */
	tg_io_fn fn; /* event handler */
};

typedef struct tg_loop {
	int epfd;		    /* the epoll instance */
	tg_timers_t timers;	    /* this loop's timers */
	uint64_t now_ns;	    /* monotonic ns, refreshed after every wait: the
				     * time of the whole batch (request timings, as
				     * nginx's cached time) */
	uint64_t now_ms;	    /* now_ns in ms */
	struct epoll_event *events; /* wait buffer */
	int max_events;		    /* its capacity */
	void (*on_wake)(void *arg); /* called after each wait, before dispatch (may be NULL) */
	void *wake_arg;		    /* its argument */
} tg_loop_t;

/* Creates the epoll instance. Returns 0 or -errno. */
int tg_loop_init(tg_loop_t *l, int max_events);

/* Closes the epoll instance and frees the buffers. */
void tg_loop_destroy(tg_loop_t *l);

/* Registers io->fd for `events` (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET...).
 * Returns 0 or -errno. */
int tg_loop_add(tg_loop_t *l, tg_io_t *io, uint32_t events);

/* Unregisters io->fd (close() does it implicitly too). Returns 0 or -errno. */
int tg_loop_del(tg_loop_t *l, tg_io_t *io);

/* Waits for events at most max_wait_ms (or until the next timer), dispatches
 * them, refreshes now_ms and runs due timers. Returns the number of events or
 * -errno (EINTR is not an error: 0). */
int tg_loop_poll(tg_loop_t *l, int max_wait_ms);

#endif

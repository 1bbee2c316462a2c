/*
 * limits.h - proxy internals: max-worker-connections as back-pressure.
 *
 * A worker at its limit does not accept and close (that turns every extra
 * client into an error); it stops accepting: its listening sockets leave the
 * epoll set, so new connections wait in the kernel's accept queue (listen
 * backlog 4096, capped by net.core.somaxconn; SYNs beyond it are dropped and
 * the client retransmits). When a connection closes and the worker is below
 * the limit again, the listeners come back and the queue is served in order.
 * With SO_REUSEPORT the kernel picks the worker per connection, so a
 * connection queued on a full worker waits for that worker even when another
 * has room.
 */
#ifndef TG_PROXY_LIMITS_H
#define TG_PROXY_LIMITS_H

#include "proxy/worker.h"

/* Called before each accept: returns true (and pauses every listener of w)
 * when w holds max-worker-connections client connections; the caller then
 * stops accepting. */
bool tg_limits_accept_full(tg_worker_t *w);

/* Called after a client connection closed or the settings changed: resumes
 * the listeners of a paused worker that is below the limit again. */
void tg_limits_resume(tg_worker_t *w);

#endif

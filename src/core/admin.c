/*
 * admin.c - GET /healthz and GET /metrics on a thread of their own.
 *
 * One poll(2) loop over the listener, a wake-up pipe and at most ADMIN_CONNS
 * clients. Each client gets ADMIN_TIMEOUT_MS to send its request head (4 KiB at
 * most); the answer is written with a send timeout and the connection closed.
 * Anything that is not a well-formed GET/HEAD for a known path gets 400, 404 or
 * 405, so a port scanner or a broken scraper cannot disturb the process.
 */
#include "core/admin.h"

#include "core/addr.h"
#include "core/clock.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define ADMIN_CONNS	 16
#define ADMIN_REQ_MAX	 4096
#define ADMIN_TIMEOUT_MS 5000

typedef struct admin_client {
	int fd;			 /* -1 when the slot is free */
	uint64_t deadline;	 /* monotonic ms by which the head must be complete */
	size_t len;		 /* bytes in req */
	char req[ADMIN_REQ_MAX]; /* request head received so far */
} admin_client_t;

struct tg_admin {
	int lfd;			     /* listening socket */
	int wake[2];			     /* pipe: a byte on wake[1] stops the thread */
	int port;			     /* bound port */
	tg_admin_ops_t ops;		     /* callbacks */
	pthread_t thread;		     /* the serving thread */
	admin_client_t clients[ADMIN_CONNS]; /* connections being read */
};

static void send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* timeout or peer gone: nothing more to do */
		p += n;
		len -= (size_t)n;
	}
}

static void respond(int fd, int status, const char *reason, const char *ctype, const char *body,
		    size_t blen, bool head_only)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nServer: tidegate\r\nContent-Type: %s\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, reason, ctype, blen);
	send_all(fd, head, (size_t)n);
	if (!head_only && blen)
		send_all(fd, body, blen);
}

/* Returns the end of the request head (after the blank line) or NULL. Bare LF
 * line endings are accepted here: this is a diagnostics port, not the proxy. */
static const char *head_end(const char *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (p[i] == '\n' && p[i + 1] == '\n')
			return p + i + 2;
		if (i + 3 < len && p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' &&
		    p[i + 3] == '\n')
			return p + i + 4;
	}
	return NULL;
}

static void serve(tg_admin_t *a, admin_client_t *c)
{
	/* Request line: METHOD SP TARGET SP HTTP/1.x */
	const char *p = c->req, *end = c->req + c->len;
	const char *sp1 = memchr(p, ' ', (size_t)(end - p));
	const char *eol = memchr(p, '\n', (size_t)(end - p));
	if (!sp1 || !eol || sp1 > eol) {
		static const char b[] = "bad request\n";
		respond(c->fd, 400, "Bad Request", "text/plain", b, sizeof(b) - 1, false);
		return;
	}
	const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || (size_t)(eol - sp2) < 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0) {
		static const char b[] = "bad request\n";
		respond(c->fd, 400, "Bad Request", "text/plain", b, sizeof(b) - 1, false);
		return;
	}
	size_t mlen = (size_t)(sp1 - p);
	bool is_get = mlen == 3 && memcmp(p, "GET", 3) == 0;
	bool is_head = mlen == 4 && memcmp(p, "HEAD", 4) == 0;
	const char *t = sp1 + 1;
	size_t tlen = (size_t)(sp2 - t);
	const char *q = memchr(t, '?', tlen);
	if (q)
		tlen = (size_t)(q - t);
	bool healthz = tlen == 8 && memcmp(t, "/healthz", 8) == 0;
	bool metrics = tlen == 8 && memcmp(t, "/metrics", 8) == 0;
	if (!healthz && !metrics) {
		static const char b[] = "not found\n";
		respond(c->fd, 404, "Not Found", "text/plain", b, sizeof(b) - 1, is_head);
		return;
	}
	if (!is_get && !is_head) {
		static const char b[] = "method not allowed\n";
		respond(c->fd, 405, "Method Not Allowed", "text/plain", b, sizeof(b) - 1, false);
		return;
	}
	tg_sbuf_t out = {0};
	if (healthz) {
		bool ok = a->ops.healthy ? a->ops.healthy(a->ops.ctx, &out) : true;
		if (ok) {
			respond(c->fd, 200, "OK", "text/plain", "ok\n", 3, is_head);
		} else {
			if (out.len == 0)
				tg_sbuf_printf(&out, "unavailable");
			tg_sbuf_append(&out, "\n", 1);
			respond(c->fd, 503, "Service Unavailable", "text/plain",
				out.oom ? "" : out.data, out.oom ? 0 : out.len, is_head);
		}
	} else {
		if (a->ops.metrics)
			a->ops.metrics(a->ops.ctx, &out);
		if (out.oom) {
			respond(c->fd, 500, "Internal Server Error", "text/plain", "", 0, is_head);
		} else {
			respond(c->fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
				out.data ? out.data : "", out.len, is_head);
		}
	}
	tg_sbuf_free(&out);
}

static void client_close(admin_client_t *c)
{
	close(c->fd);
	c->fd = -1;
	c->len = 0;
}

static void client_read(tg_admin_t *a, admin_client_t *c)
{
	ssize_t n = recv(c->fd, c->req + c->len, sizeof(c->req) - c->len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(c);
		return;
	}
	c->len += (size_t)n;
	if (head_end(c->req, c->len)) {
		/* Blocking writes bounded by SO_SNDTIMEO keep the code short; a
		 * scraper that stops reading costs this thread 2 s at most. */
		int fl = fcntl(c->fd, F_GETFL);
		fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
		serve(a, c);
		client_close(c);
	} else if (c->len == sizeof(c->req)) {
		static const char b[] = "request head too large\n";
		respond(c->fd, 431, "Request Header Fields Too Large", "text/plain", b,
			sizeof(b) - 1, false);
		client_close(c);
	}
}

static void accept_clients(tg_admin_t *a)
{
	for (;;) {
		int fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		admin_client_t *slot = NULL;
		for (int i = 0; i < ADMIN_CONNS; i++)
			if (a->clients[i].fd < 0) {
				slot = &a->clients[i];
				break;
			}
		if (!slot) {
			close(fd); /* too many concurrent scrapers: shed the newest */
			continue;
		}
		struct timeval tv = {.tv_sec = 2};
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		slot->fd = fd;
		slot->len = 0;
		slot->deadline = tg_clock_ms() + ADMIN_TIMEOUT_MS;
	}
}

static void *admin_main(void *arg)
{
	tg_admin_t *a = arg;
	struct pollfd pfd[2 + ADMIN_CONNS];
	int map[2 + ADMIN_CONNS];
	for (;;) {
		int n = 0;
		pfd[n++] = (struct pollfd){.fd = a->wake[0], .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = a->lfd, .events = POLLIN};
		uint64_t now = tg_clock_ms();
		int timeout = -1;
		for (int i = 0; i < ADMIN_CONNS; i++) {
			admin_client_t *c = &a->clients[i];
			if (c->fd < 0)
				continue;
			if (c->deadline <= now) {
				client_close(c);
				continue;
			}
			int left = (int)(c->deadline - now);
			if (timeout < 0 || left < timeout)
				timeout = left;
			map[n] = i;
			pfd[n++] = (struct pollfd){.fd = c->fd, .events = POLLIN};
		}
		int r = poll(pfd, (nfds_t)n, timeout);
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents)
			accept_clients(a);
		for (int k = 2; k < n; k++)
			if (pfd[k].revents)
				client_read(a, &a->clients[map[k]]);
	}
	return NULL;
}

/* Creates the wake-up pipe, reads the bound port and starts the thread on
 * a->lfd. Returns 0 or -1 with errno set. */
static int launch(tg_admin_t *a)
{
	if (pipe2(a->wake, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	struct sockaddr_storage bound;
	socklen_t bl = sizeof(bound);
	getsockname(a->lfd, (struct sockaddr *)&bound, &bl);
	a->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						    : ((struct sockaddr_in *)&bound)->sin_port);
	int perr = pthread_create(&a->thread, NULL, admin_main, a);
	if (perr) {
		errno = perr;
		return -1;
	}
	return 0;
}

int tg_admin_adopt(int fd, const tg_admin_ops_t *ops, tg_admin_t **out)
{
	tg_admin_t *a = calloc(1, sizeof(*a));
	if (!a) {
		close(fd);
		return -ENOMEM;
	}
	a->ops = *ops;
	a->wake[0] = a->wake[1] = -1;
	for (int i = 0; i < ADMIN_CONNS; i++)
		a->clients[i].fd = -1;
	a->lfd = fd;
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	if (launch(a) < 0) {
		int err = -errno;
		tg_error("admin", "cannot serve the inherited admin socket: %s", strerror(errno));
		close(fd);
		if (a->wake[0] >= 0) {
			close(a->wake[0]);
			close(a->wake[1]);
		}
		free(a);
		return err;
	}
	*out = a;
	return 0;
}

int tg_admin_listen_fd(const tg_admin_t *a)
{
	return a->lfd;
}

int tg_admin_start(const char *listen_addr, const tg_admin_ops_t *ops, tg_admin_t **out)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int err = tg_addr_parse(listen_addr, -1, &ss, &sl);
	if (err) {
		tg_error("admin", "bad --admin-listen address '%s' (want IP:PORT)", listen_addr);
		return err;
	}
	tg_admin_t *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->ops = *ops;
	a->wake[0] = a->wake[1] = -1;
	for (int i = 0; i < ADMIN_CONNS; i++)
		a->clients[i].fd = -1;
	a->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (a->lfd < 0)
		goto fail;
	int one = 1;
	setsockopt(a->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(a->lfd, (struct sockaddr *)&ss, sl) < 0 || listen(a->lfd, 64) < 0)
		goto fail;
	if (launch(a) < 0)
		goto fail;
	*out = a;
	return 0;
fail:
	err = -errno;
	tg_error("admin", "cannot listen on %s: %s", listen_addr, strerror(errno));
	if (a->lfd >= 0)
		close(a->lfd);
	if (a->wake[0] >= 0) {
		close(a->wake[0]);
		close(a->wake[1]);
	}
	free(a);
	return err;
}

int tg_admin_port(const tg_admin_t *a)
{
	return a->port;
}

void tg_admin_stop(tg_admin_t *a)
{
	if (!a)
		return;
	ssize_t w = write(a->wake[1], "x", 1);
	(void)w;
	pthread_join(a->thread, NULL);
	for (int i = 0; i < ADMIN_CONNS; i++)
		if (a->clients[i].fd >= 0)
			close(a->clients[i].fd);
	close(a->lfd);
	close(a->wake[0]);
	close(a->wake[1]);
	free(a);
}

/*
 * health.c - the health-check thread.
 *
 * Every target is a small state machine driven by one epoll set:
 *   IDLE --(next_ms reached)--> CONNECTING --(TCP: connected = pass)
 *                                   |
 *                          (HTTP) SENDING --> READING --(status line)--> pass/fail
 * and any phase fails when deadline_ms passes. The epoll_wait timeout is the
 * nearest next_ms/deadline_ms; finding it is a scan over the targets, which is
 * cheap at the scale of one balancer (thousands of reals, a few wakeups per
 * second) and keeps the code free of a timer heap.
 *
 * Threading: the targets array belongs to the thread. The control plane talks
 * to it through `pending` (new target list) and `changes` (transitions), both
 * under `lock`, plus two eventfds to wake the other side.
 */
#include "l4/health.h"
#include "core/clock.h"
#include "core/common.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQ_MAX	 (TG_L4_PATH_MAX + 160) /* GET line + Host + fixed headers */
#define RESP_MAX 64			/* enough for "HTTP/1.1 200 OK\r\n" */

typedef enum phase { PH_IDLE, PH_CONNECTING, PH_SENDING, PH_READING } phase_t;

/* One target inside the thread. */
typedef struct target {
	tg_health_target_t t; /* what to check (copy of the caller's) */
	int fd;		      /* socket of the check in flight, -1 when idle */
	phase_t phase;	      /* where the check in flight is */
	uint64_t next_ms;     /* IDLE: when the next check starts */
	uint64_t deadline_ms; /* in flight: when it fails by timeout */
	uint64_t started_ms;  /* in flight: when it started (period anchor) */
	size_t sent;	      /* SENDING: request bytes written */
	size_t req_len;	      /* request length */
	char req[REQ_MAX];    /* HTTP request */
	size_t got;	      /* READING: response bytes read */
	char resp[RESP_MAX];  /* start of the response */
	uint32_t ok_run;      /* consecutive passes */
	uint32_t fail_run;    /* consecutive failures */
	bool healthy;	      /* current state */
	bool kept;	      /* reconcile: still listed */
} target_t;

/* A transition waiting for tg_health_collect. */
typedef struct change {
	uint64_t key; /* target key */
	bool healthy; /* new state */
} change_t;

struct tg_health {
	pthread_t thread;	     /* the checker */
	bool thread_started;	     /* thread needs joining */
	int ep;			     /* epoll set (thread) */
	int ctl_fd;		     /* eventfd: wakes the thread (pending, stop) */
	int notify_fd;		     /* eventfd: wakes the control plane (changes) */
	pthread_mutex_t lock;	     /* guards the fields below */
	bool stop;		     /* thread must exit */
	tg_health_target_t *pending; /* new target list, NULL when none */
	size_t n_pending;	     /* its length */
	bool has_pending;	     /* pending is to be applied (may be empty) */
	change_t *changes;	     /* transitions not yet collected */
	size_t n_changes;	     /* used */
	size_t cap_changes;	     /* allocated */
	tg_health_stats_t stats;     /* counters */
	/* thread-only */
	target_t **targets; /* sorted by key */
	size_t n_targets;   /* entries */
};

static void wake(int fd)
{
	uint64_t one = 1;
	ssize_t r = write(fd, &one, sizeof(one));
	(void)r; /* an eventfd at its maximum is still readable */
}

static void drain_fd(int fd)
{
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
}

static void push_change(tg_health_t *h, uint64_t key, bool healthy)
{
	pthread_mutex_lock(&h->lock);
	if (h->n_changes == h->cap_changes) {
		size_t cap = h->cap_changes ? h->cap_changes * 2 : 64;
		change_t *c = realloc(h->changes, cap * sizeof(*c));
		if (!c) {
			/* The transition is lost for now; the target reports
			 * again on its next transition. Rare enough to log. */
			pthread_mutex_unlock(&h->lock);
			tg_error("health", "out of memory recording a health transition");
			return;
		}
		h->changes = c;
		h->cap_changes = cap;
	}
	h->changes[h->n_changes++] = (change_t){key, healthy};
	pthread_mutex_unlock(&h->lock);
	wake(h->notify_fd);
}

static void close_check(tg_health_t *h, target_t *t)
{
	if (t->fd >= 0) {
		epoll_ctl(h->ep, EPOLL_CTL_DEL, t->fd, NULL);
		close(t->fd);
		t->fd = -1;
	}
	t->phase = PH_IDLE;
}

/* Ends the check in flight, applies the thresholds, schedules the next one. */
static void finish(tg_health_t *h, target_t *t, bool ok, bool timeout, uint64_t now)
{
	if (ok && t->fd >= 0 && t->t.cfg.proto == TG_L4_HC_TCP) {
		/* A bare connect check: reset instead of FIN so the balancer
		 * does not collect TIME_WAIT sockets, one per check. */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close_check(h, t);
	pthread_mutex_lock(&h->lock);
	h->stats.checks++;
	h->stats.passes += ok;
	h->stats.timeouts += timeout;
	pthread_mutex_unlock(&h->lock);
	if (ok) {
		t->ok_run++;
		t->fail_run = 0;
		if (!t->healthy && t->ok_run >= t->t.cfg.healthy_threshold) {
			t->healthy = true;
			push_change(h, t->t.key, true);
		}
	} else {
		t->fail_run++;
		t->ok_run = 0;
		if (t->healthy && t->fail_run >= t->t.cfg.unhealthy_threshold) {
			t->healthy = false;
			push_change(h, t->t.key, false);
		}
	}
	/* The interval is the period between check starts. */
	uint64_t next = t->started_ms + t->t.cfg.interval_ms;
	t->next_ms = next > now ? next : now;
}

static void build_request(target_t *t)
{
	char host[INET6_ADDRSTRLEN];
	tg_l4_ip_format(&t->t.ip, host, sizeof(host));
	bool v6 = t->t.ip.family == AF_INET6;
	int n = snprintf(t->req, sizeof(t->req),
			 "GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: tidegate-health/1\r\n"
			 "Connection: close\r\n\r\n",
			 t->t.cfg.path, v6 ? "[" : "", host, v6 ? "]" : "", t->t.cfg.port);
	t->req_len = n > 0 ? TG_MIN((size_t)n, sizeof(t->req) - 1) : 0;
}

/* Looks at what was read so far: 1 pass, 0 fail, -1 need more. */
static int judge_response(const target_t *t, bool eof)
{
	const char *p = t->resp;
	size_t n = t->got;
	/* "HTTP/1.x 200" followed by a space or the end of the line. */
	if (n >= 13 || (eof && n >= 12)) {
		if (memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
			return 0;
		if (memcmp(p + 9, "200", 3) != 0)
			return 0;
		if (n >= 13 && p[12] != ' ' && p[12] != '\r' && p[12] != '\n')
			return 0;
		return 1;
	}
	return eof ? 0 : -1;
}

static void do_send(tg_health_t *h, target_t *t, uint64_t now)
{
	while (t->sent < t->req_len) {
		ssize_t w = send(t->fd, t->req + t->sent, t->req_len - t->sent, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return; /* EPOLLOUT is still armed */
		if (w <= 0) {
			finish(h, t, false, false, now);
			return;
		}
		t->sent += (size_t)w;
	}
	t->phase = PH_READING;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = t};
	if (epoll_ctl(h->ep, EPOLL_CTL_MOD, t->fd, &ev) != 0)
		finish(h, t, false, false, now);
}

static void do_read(tg_health_t *h, target_t *t, uint64_t now)
{
	for (;;) {
		if (t->got == sizeof(t->resp)) {
			int v = judge_response(t, true);
			finish(h, t, v == 1, false, now);
			return;
		}
		ssize_t r = recv(t->fd, t->resp + t->got, sizeof(t->resp) - t->got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			finish(h, t, judge_response(t, true) == 1, false, now);
			return;
		}
		t->got += (size_t)r;
		int v = judge_response(t, false);
		if (v >= 0) {
			finish(h, t, v == 1, false, now);
			return;
		}
	}
}

/* The socket of the check is writable (connected or failed). */
static void on_connected(tg_health_t *h, target_t *t, uint64_t now)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
		finish(h, t, false, false, now);
		return;
	}
	if (t->t.cfg.proto == TG_L4_HC_TCP) {
		finish(h, t, true, false, now);
		return;
	}
	t->phase = PH_SENDING;
	do_send(h, t, now);
}

static void start_check(tg_health_t *h, target_t *t, uint64_t now)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	if (t->t.ip.family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(t->t.cfg.port);
		memcpy(&s4->sin_addr, &t->t.ip.addr.s6_addr[12], 4);
		sl = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(t->t.cfg.port);
		s6->sin6_addr = t->t.ip.addr;
		sl = sizeof(*s6);
	}
	t->started_ms = now;
	t->deadline_ms = now + t->t.cfg.timeout_ms;
	t->sent = 0;
	t->got = 0;
	if (t->t.cfg.proto == TG_L4_HC_HTTP)
		build_request(t);
	t->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (t->fd < 0) {
		finish(h, t, false, false, now);
		return;
	}
	int one = 1;
	setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	t->phase = PH_CONNECTING;
	struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = t};
	if (epoll_ctl(h->ep, EPOLL_CTL_ADD, t->fd, &ev) != 0) {
		finish(h, t, false, false, now);
		return;
	}
	if (connect(t->fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS)
		finish(h, t, false, false, now);
	/* On success or EINPROGRESS, EPOLLOUT reports the outcome. */
}

static target_t *find(tg_health_t *h, uint64_t key)
{
	size_t lo = 0, hi = h->n_targets;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t k = h->targets[mid]->t.key;
		if (k == key)
			return h->targets[mid];
		if (k < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int spec_cmp(const void *a, const void *b)
{
	uint64_t x = ((const tg_health_target_t *)a)->key, y = ((const tg_health_target_t *)b)->key;
	return x < y ? -1 : x > y;
}

/* Spreads first checks over up to a second, deterministically per key. */
static uint64_t first_delay(const target_t *t)
{
	uint64_t span = TG_MIN(t->t.cfg.interval_ms, 1000u);
	uint64_t x = t->t.key * 0x9e3779b97f4a7c15ull;
	return span ? (x >> 40) % span : 0;
}

/* Applies a new target list (sorted here, owned by the thread): same keys
 * keep their state; a later duplicate of a key is ignored. */
static void reconcile(tg_health_t *h, tg_health_target_t *spec, size_t n, uint64_t now)
{
	target_t **nt = calloc(n ? n : 1, sizeof(*nt));
	if (!nt) {
		tg_error("health", "out of memory applying %zu health-check targets", n);
		return;
	}
	qsort(spec, n, sizeof(*spec), spec_cmp);
	for (size_t i = 0; i < h->n_targets; i++)
		h->targets[i]->kept = false;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && spec[i].key == spec[i - 1].key)
			continue;
		target_t *t = find(h, spec[i].key);
		if (t) {
			bool moved = memcmp(&t->t.ip, &spec[i].ip, sizeof(t->t.ip)) != 0 ||
				     t->t.cfg.proto != spec[i].cfg.proto ||
				     t->t.cfg.port != spec[i].cfg.port ||
				     strcmp(t->t.cfg.path, spec[i].cfg.path) != 0;
			if (moved)
				close_check(h, t); /* restart with the new parameters */
			t->t = spec[i];
			if (t->phase == PH_IDLE && t->next_ms > now + t->t.cfg.interval_ms)
				t->next_ms = now + first_delay(t); /* interval shortened */
			t->kept = true;
			nt[k++] = t;
			continue;
		}
		t = calloc(1, sizeof(*t));
		if (!t) {
			tg_error("health", "out of memory adding a health-check target");
			continue;
		}
		t->t = spec[i];
		t->fd = -1;
		t->phase = PH_IDLE;
		t->healthy = spec[i].initially_healthy;
		t->next_ms = now + first_delay(t);
		nt[k++] = t;
	}
	for (size_t i = 0; i < h->n_targets; i++) {
		if (!h->targets[i]->kept) {
			close_check(h, h->targets[i]);
			free(h->targets[i]);
		}
	}
	free(h->targets);
	h->targets = nt;
	h->n_targets = k;
	pthread_mutex_lock(&h->lock);
	h->stats.targets = k;
	pthread_mutex_unlock(&h->lock);
}

static void *run(void *arg)
{
	tg_health_t *h = arg;
	struct epoll_event evs[64];
	for (;;) {
		pthread_mutex_lock(&h->lock);
		bool stop = h->stop;
		tg_health_target_t *spec = NULL;
		size_t n = 0;
		bool apply = h->has_pending;
		if (apply) {
			spec = h->pending;
			n = h->n_pending;
			h->pending = NULL;
			h->n_pending = 0;
			h->has_pending = false;
		}
		pthread_mutex_unlock(&h->lock);
		if (stop)
			break;
		uint64_t now = tg_clock_ms();
		if (apply) {
			reconcile(h, spec, n, now);
			free(spec);
		}

		uint64_t wake_at = now + 1000;
		for (size_t i = 0; i < h->n_targets; i++) {
			target_t *t = h->targets[i];
			if (t->phase == PH_IDLE && now >= t->next_ms)
				start_check(h, t, now);
			else if (t->phase != PH_IDLE && now >= t->deadline_ms)
				finish(h, t, false, true, now);
			uint64_t at = t->phase == PH_IDLE ? t->next_ms : t->deadline_ms;
			if (at < wake_at)
				wake_at = at;
		}
		int timeout = wake_at > now ? (int)(wake_at - now) : 0;
		int ne = epoll_wait(h->ep, evs, (int)TG_ARRAY_SIZE(evs), timeout);
		now = tg_clock_ms();
		for (int i = 0; i < ne; i++) {
			if (evs[i].data.ptr == NULL) {
				drain_fd(h->ctl_fd);
				continue;
			}
			target_t *t = evs[i].data.ptr;
			if (t->fd < 0)
				continue; /* finished earlier in this batch */
			if (t->phase == PH_CONNECTING)
				on_connected(h, t, now);
			else if (t->phase == PH_SENDING)
				do_send(h, t, now);
			else if (t->phase == PH_READING)
				do_read(h, t, now);
		}
	}
	for (size_t i = 0; i < h->n_targets; i++) {
		close_check(h, h->targets[i]);
		free(h->targets[i]);
	}
	free(h->targets);
	h->targets = NULL;
	h->n_targets = 0;
	return NULL;
}

int tg_health_start(tg_health_t **out)
{
	*out = NULL;
	tg_health_t *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->ep = -1;
	h->ctl_fd = -1;
	h->notify_fd = -1;
	pthread_mutex_init(&h->lock, NULL);
	int rc;
	h->ep = epoll_create1(EPOLL_CLOEXEC);
	h->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	h->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (h->ep < 0 || h->ctl_fd < 0 || h->notify_fd < 0) {
		rc = -errno;
		goto fail;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(h->ep, EPOLL_CTL_ADD, h->ctl_fd, &ev) != 0) {
		rc = -errno;
		goto fail;
	}
	rc = -pthread_create(&h->thread, NULL, run, h);
	if (rc != 0)
		goto fail;
	h->thread_started = true;
	*out = h;
	return 0;
fail:
	tg_health_stop(h);
	return rc;
}

int tg_health_set_targets(tg_health_t *h, const tg_health_target_t *t, size_t n)
{
	tg_health_target_t *copy = malloc((n ? n : 1) * sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	if (n)
		memcpy(copy, t, n * sizeof(*copy));
	pthread_mutex_lock(&h->lock);
	free(h->pending);
	h->pending = copy;
	h->n_pending = n;
	h->has_pending = true;
	pthread_mutex_unlock(&h->lock);
	wake(h->ctl_fd);
	return 0;
}

int tg_health_fd(const tg_health_t *h)
{
	return h->notify_fd;
}

size_t tg_health_collect(tg_health_t *h, tg_health_fn fn, void *ctx)
{
	drain_fd(h->notify_fd);
	pthread_mutex_lock(&h->lock);
	change_t *c = h->changes;
	size_t n = h->n_changes;
	h->changes = NULL;
	h->n_changes = 0;
	h->cap_changes = 0;
	pthread_mutex_unlock(&h->lock);
	for (size_t i = 0; i < n; i++)
		fn(ctx, c[i].key, c[i].healthy);
	free(c);
	return n;
}

void tg_health_get_stats(tg_health_t *h, tg_health_stats_t *out)
{
	pthread_mutex_lock(&h->lock);
	*out = h->stats;
	pthread_mutex_unlock(&h->lock);
}

void tg_health_stop(tg_health_t *h)
{
	if (!h)
		return;
	if (h->thread_started) {
		pthread_mutex_lock(&h->lock);
		h->stop = true;
		pthread_mutex_unlock(&h->lock);
		wake(h->ctl_fd);
		pthread_join(h->thread, NULL);
	}
	if (h->ep >= 0)
		close(h->ep);
	if (h->ctl_fd >= 0)
		close(h->ctl_fd);
	if (h->notify_fd >= 0)
		close(h->notify_fd);
	free(h->pending);
	free(h->changes);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

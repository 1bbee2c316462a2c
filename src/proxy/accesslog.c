#include "proxy/accesslog.h"

#include "core/clock.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct tg_accesslog {
	int fd;		   /* destination */
	int nrings;	   /* entries in rings */
	tg_ring_t *rings;  /* one per worker */
	pthread_t thread;  /* drainer */
	_Atomic bool stop; /* set by tg_accesslog_stop */
};

/* Appender with a hard bound; the last byte is kept for the newline. */
typedef struct out {
	char *p;   /* next byte */
	char *end; /* one before the buffer's end (room for '\n') */
} out_t;

static inline void put(out_t *o, const char *s, size_t n)
{
	size_t room = (size_t)(o->end - o->p);
	if (n > room)
		n = room;
	memcpy(o->p, s, n);
	o->p += n;
}

/* A literal: its length is known at compile time, so the copy is inlined. */
#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

static void put_c(out_t *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_u(out_t *o, uint64_t v)
{
	char tmp[24];
	int i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(o, tmp + i, sizeof(tmp) - (size_t)i);
}

/* Seconds with three decimals, like nginx's $request_time. */
static void put_secs(out_t *o, uint64_t us)
{
	uint64_t ms = (us + 500) / 1000;
	put_u(o, ms / 1000);
	char frac[4] = {'.', (char)('0' + ms / 100 % 10), (char)('0' + ms / 10 % 10),
			(char)('0' + ms % 10)};
	put(o, frac, 4);
}

/* Bytes written as they are inside a quoted field: printable ASCII except
 * '"' and '\\'. */
static const uint8_t plain[256] = {
    [0x20 ... 0x21] = 1,
    [0x23 ... 0x5b] = 1,
    [0x5d ... 0x7e] = 1,
};

static void put_esc(out_t *o, tg_str_t s)
{
	static const char hex[] = "0123456789ABCDEF";
	if (s.len == 0) {
		PUT_LIT(o, "-");
		return;
	}
	const char *p = s.ptr, *end = s.ptr + s.len;
	while (p < end) {
		/* Runs of plain bytes are copied whole: most fields are one run. */
		const char *run = p;
		while (p < end && plain[(uint8_t)*p])
			p++;
		put(o, run, (size_t)(p - run));
		if (p == end)
			break;
		unsigned char c = (unsigned char)*p++;
		char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
		put(o, e, 4);
	}
}

static void put_opt(out_t *o, const char *s)
{
	if (s && *s)
		put_c(o, s);
	else
		PUT_LIT(o, "-");
}

size_t tg_accesslog_format(const tg_logrec_t *r, char *out, size_t cap)
{
	out_t o = {out, out + cap - 1};
	put(&o, r->client_ip.ptr, r->client_ip.len);
	PUT_LIT(&o, " - - [");
	put_c(&o, r->time_local);
	PUT_LIT(&o, "] \"");
	/* The request line is the one field that can be long: keep it bounded so
	 * the fields after it survive. */
	tg_str_t rl = r->request_line;
	if (rl.len > 2048)
		rl.len = 2048;
	put_esc(&o, rl);
	PUT_LIT(&o, "\" ");
	put_u(&o, (uint64_t)r->status);
	PUT_LIT(&o, " ");
	put_u(&o, r->body_bytes);
	PUT_LIT(&o, " \"");
	tg_str_t ref = r->referer, ua = r->user_agent;
	if (ref.len > 512)
		ref.len = 512;
	if (ua.len > 512)
		ua.len = 512;
	put_esc(&o, ref);
	PUT_LIT(&o, "\" \"");
	put_esc(&o, ua);
	PUT_LIT(&o, "\" ");
	put_u(&o, r->request_length);
	PUT_LIT(&o, " ");
	put_secs(&o, r->request_time_us);
	PUT_LIT(&o, " [");
	if (r->upstream_name)
		put_c(&o, r->upstream_name);
	PUT_LIT(&o, "] [] ");
	if (r->upstream_addr) {
		put_c(&o, r->upstream_addr);
		PUT_LIT(&o, " ");
		put_u(&o, r->upstream_length);
		PUT_LIT(&o, " ");
		put_secs(&o, r->upstream_time_us);
		PUT_LIT(&o, " ");
		if (r->upstream_status)
			put_u(&o, (uint64_t)r->upstream_status);
		else
			PUT_LIT(&o, "-");
	} else {
		PUT_LIT(&o, "- - - -");
	}
	PUT_LIT(&o, " ");
	tg_str_t id = r->request_id;
	if (id.len > 128)
		id.len = 128;
	put_esc(&o, id);
	PUT_LIT(&o, " ");
	if (r->ingress) {
		put_opt(&o, r->ns);
		PUT_LIT(&o, "/");
		put_opt(&o, r->ingress);
	} else {
		PUT_LIT(&o, "-");
	}
	PUT_LIT(&o, " ");
	put_opt(&o, r->service);
	*o.p++ = '\n';
	return (size_t)(o.p - out);
}

/* Writes the readable part of one ring; returns bytes written (0: nothing or
 * the fd is not writable within wait_ms). */
static size_t drain_ring(tg_accesslog_t *l, tg_ring_t *r, int wait_ms)
{
	struct iovec iov[2];
	size_t n = tg_ring_peek(r, iov);
	if (n == 0)
		return 0;
	struct pollfd pfd = {.fd = l->fd, .events = POLLOUT};
	if (poll(&pfd, 1, wait_ms) <= 0)
		return 0;
	ssize_t w = writev(l->fd, iov, iov[1].iov_len ? 2 : 1);
	if (w < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		w = (ssize_t)n; /* stdout is gone (EPIPE, EBADF): drop what we have */
	}
	tg_ring_consume(r, (size_t)w);
	return (size_t)w;
}

static void *logger_main(void *arg)
{
	tg_accesslog_t *l = arg;
	int idle = 0;
	for (;;) {
		bool stopping = atomic_load(&l->stop);
		size_t wrote = 0;
		for (int i = 0; i < l->nrings; i++)
			wrote += drain_ring(l, &l->rings[i], stopping ? 200 : 100);
		if (stopping && wrote == 0)
			break;
		if (wrote == 0) {
			/* Polling keeps the workers free of any wake-up syscall per
			 * line: every 10 ms while lines flow, backing off to 100 ms
			 * when the log is quiet (or disabled). */
			idle = idle < 10 ? idle + 1 : 10;
			struct timespec ts = {0, (long)idle * 10 * 1000 * 1000};
			nanosleep(&ts, NULL);
		} else {
			idle = 0;
		}
	}
	return NULL;
}

int tg_accesslog_start(int fd, int nrings, size_t ring_size, tg_accesslog_t **out)
{
	tg_accesslog_t *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = fd;
	l->rings = calloc((size_t)nrings, sizeof(*l->rings));
	if (!l->rings) {
		free(l);
		return -ENOMEM;
	}
	for (int i = 0; i < nrings; i++) {
		if (tg_ring_init(&l->rings[i], ring_size) < 0) {
			for (int j = 0; j < i; j++)
				tg_ring_destroy(&l->rings[j]);
			free(l->rings);
			free(l);
			return -ENOMEM;
		}
	}
	l->nrings = nrings;
	int e = pthread_create(&l->thread, NULL, logger_main, l);
	if (e) {
		for (int j = 0; j < nrings; j++)
			tg_ring_destroy(&l->rings[j]);
		free(l->rings);
		free(l);
		return -e;
	}
	*out = l;
	return 0;
}

tg_ring_t *tg_accesslog_ring(tg_accesslog_t *l, int i)
{
	return &l->rings[i];
}

void tg_accesslog_stop(tg_accesslog_t *l)
{
	if (!l)
		return;
	atomic_store(&l->stop, true);
	pthread_join(l->thread, NULL);
	for (int i = 0; i < l->nrings; i++)
		tg_ring_destroy(&l->rings[i]);
	free(l->rings);
	free(l);
}

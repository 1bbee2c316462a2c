/*
 * client.c - client connections and the request/response exchange.
 *
 * One state machine per client connection, driven by readiness flags: an
 * epoll edge sets rd/wr, a read or write that returns EAGAIN (or a short read)
 * clears them, and client_run() makes all the progress it can until every
 * side it needs is blocked. Upstream events re-enter through
 * tg_client_upstream_ready(). Nothing here blocks or allocates per request:
 * buffers and structs come from per-worker free lists.
 *
 * Buffers. The client buffer `in` holds the request head at in->start for the
 * whole exchange (the upstream head is written with iovecs pointing into it,
 * retries re-send it, the access log reads it). Body bytes follow at `base`:
 * [in->pos, scan) are framed body bytes not queued upstream yet, [scan, last)
 * bytes after the body (a pipelined request). When every buffered body byte
 * has been forwarded and space runs low, the body area is recycled and the
 * request stops being replayable. The upstream connection's buffer holds the
 * response the same way: [buf->pos, rscan) framed and not yet queued to the
 * client.
 *
 * Expect: 100-continue is answered by tidegate itself (once the route, the
 * body-size limit and the backend are known, so a 413 or 404 can still be
 * sent instead) and the Expect field is not forwarded: backends never see it.
 */
#include "core/clock.h"
#include "core/log.h"
#include "proxy/accesslog.h"
#include "proxy/annot.h"
#include "proxy/headers.h"
#include "proxy/tls_io.h"
#include "proxy/limits.h"
#include "proxy/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Results of a phase step (client_run keeps stepping while AGAIN). */
#define STEP_BLOCKED 0
#define STEP_AGAIN   1

/* Results of a pump inside CP_PROXY. PUMP_SWITCH equals STEP_AGAIN on
 * purpose: local_response() (which returns STEP_AGAIN) ends a pump too. */
#define PUMP_BLOCKED  0
#define PUMP_SWITCH   1 /* phase or attempt changed, or c closed: restart the step */
#define PUMP_PROGRESS 2

/* Which deadline of an exchange is the nearest. */
enum { W_NONE, W_CONNECT, W_USEND, W_CBODY, W_CWRITE, W_UREAD, W_RATE };

/* Upstream failure kinds. */
enum { F_WRITE, F_EOF, F_RESET, F_PROTO, F_TIMEOUT };

#define BODY_ROOM_MIN 4096 /* least space for body bytes after the head */
#define LINGER_MS     2000 /* how long to discard input after a final close */

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void client_run(tg_cconn_t *c);
static int local_response(tg_cconn_t *c, int status);
static int attempt(tg_cconn_t *c, bool fresh);

static inline uint64_t now_ms(const tg_cconn_t *c)
{
	return c->w->loop.now_ms;
}

/* Request timings use the loop's time of the current batch (one clock read
 * per wake-up, not several per request): precise to the batch, like nginx's
 * $request_time. */
static inline uint64_t now_ns(const tg_cconn_t *c)
{
	return c->w->loop.now_ns;
}

static const tg_settings_t *wsettings(const tg_worker_t *w)
{
	return w->cur ? &w->cur->snap->settings : &w->defaults;
}

static void set_deadline(tg_cconn_t *c, uint64_t when)
{
	/* Cannot fail: the timer was armed at accept (the heap has its slot). */
	(void)tg_timer_set(&c->w->loop.timers, &c->timer, when);
}

static void iov_advance(struct iovec *iov, int *idx, int n, size_t bytes)
{
	int i = *idx;
	while (i < n && bytes >= iov[i].iov_len) {
		bytes -= iov[i].iov_len;
		i++;
	}
	if (i < n && bytes) {
		iov[i].iov_base = (char *)iov[i].iov_base + bytes;
		iov[i].iov_len -= bytes;
	}
	*idx = i;
}

static int iov_count(int i, int n)
{
	int k = n - i;
	return k > IOV_MAX ? IOV_MAX : k;
}

/* ------------------------------------------------------------------ */
/* Snapshot references                                                 */

static void snap_unuse(tg_cconn_t *c)
{
	if (c->x && c->x->sref) {
		tg_worker_snap_unuse(c->w, c->x->sref);
		c->x->sref = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* Exchanges                                                           */

/* Gives c an exchange from the worker's free list, its scalar part zeroed
 * (nothing routed, logged or sent yet) and its parser ready for a new head.
 * Returns false when out of memory (the caller closes c). */
static bool exch_take(tg_cconn_t *c)
{
	tg_exch_t *x = tg_pool_get(&c->w->xpool);
	if (!x)
		return false;
	memset(x, 0, offsetof(tg_exch_t, req));
	memset(&x->req.priv, 0, sizeof(x->req.priv));
	c->x = x;
	return true;
}

/* Gives c's exchange back (the connection goes idle or closes). Whatever it
 * referenced (upstream connection, snapshot, annotation buffer) must have
 * been released already, except the annotation buffer, released here. */
static void exch_release(tg_cconn_t *c)
{
	if (!c->x)
		return;
	tg_annot_release(c);
	tg_pool_put(&c->w->xpool, c->x);
	c->x = NULL;
}

/* ------------------------------------------------------------------ */
/* Access log and metrics                                              */

static tg_str_t request_line(const tg_cconn_t *c)
{
	const tg_buf_t *b = c->in;
	if (!b)
		return (tg_str_t){NULL, 0};
	if (c->x && c->x->head_len) {
		/* From the method: empty lines before it are not part of the line. */
		const char *start = c->x->req.method.ptr;
		const char *end = c->x->req.num_headers ? c->x->reqh[0].name.ptr - 2
							: b->start + c->x->head_len - 4;
		return (tg_str_t){start, (size_t)(end - start)};
	}
	/* Malformed or partial head: up to the first line break after any empty
	 * lines. */
	const char *p = b->start;
	while (p < b->last && (*p == '\r' || *p == '\n'))
		p++;
	size_t n = (size_t)(b->last - p);
	if (n > 2048)
		n = 2048;
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\r' || p[i] == '\n')
			return (tg_str_t){p, i};
	return (tg_str_t){p, n};
}

static tg_str_t find_header(const tg_cconn_t *c, const char *name, size_t len)
{
	if (!c->x || !c->x->head_len)
		return (tg_str_t){NULL, 0};
	for (size_t i = 0; i < c->x->req.num_headers; i++)
		if (c->x->reqh[i].name.len == len && tg_str_caseeq(c->x->reqh[i].name, name, len))
			return c->x->reqh[i].value;
	return (tg_str_t){NULL, 0};
}

static const char *time_local(tg_worker_t *w)
{
	int64_t s = tg_clock_wall_s();
	if (s != w->tl_sec) {
		static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
						  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
		time_t t = (time_t)s;
		struct tm tm;
		gmtime_r(&t, &tm);
		snprintf(w->time_local, sizeof(w->time_local), "%02d/%s/%04d:%02d:%02d:%02d +0000",
			 tm.tm_mday, mon[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
			 tm.tm_sec);
		w->tl_sec = s;
	}
	return w->time_local;
}

/* Logs and counts the current exchange once. */
static void log_exchange(tg_cconn_t *c)
{
	if (!c->x || !c->x->active)
		return;
	c->x->active = 0;
	tg_worker_t *w = c->w;
	uint64_t end = now_ns(c);
	uint64_t dur = end - c->x->t_start_ns;
	const tg_route_t *rt = c->x->route;
	const tg_backend_t *be = c->x->backend;
	uint64_t gen = c->x->sref ? c->x->sref->snap->generation : 0;
	tg_wstats_request(&w->stats, gen, rt ? rt->ingress_ns : NULL, rt ? rt->ingress_name : NULL,
			  be ? be->service : NULL, c->x->status, dur);
	const tg_settings_t *s = c->x->set ? c->x->set : wsettings(w);
	if (s->disable_access_log || !w->logring)
		return;
	tg_logrec_t r = {0};
	r.client_ip = tg_cio_client_ip(c);
	r.time_local = time_local(w);
	r.request_line = request_line(c);
	r.status = c->x->status;
	r.body_bytes =
	    c->x->sent_bytes > c->x->resp_head_bytes ? c->x->sent_bytes - c->x->resp_head_bytes : 0;
	r.referer = find_header(c, "referer", 7);
	r.user_agent = find_header(c, "user-agent", 10);
	r.request_length = c->x->head_len + c->x->body_raw;
	r.request_time_us = dur / 1000;
	r.upstream_name = be ? be->label : NULL;
	r.upstream_addr = c->x->up_addr;
	r.upstream_length = c->x->up_bytes;
	uint64_t ue = c->x->t_up_end_ns ? c->x->t_up_end_ns : end;
	r.upstream_time_us =
	    c->x->t_up_start_ns && ue > c->x->t_up_start_ns ? (ue - c->x->t_up_start_ns) / 1000 : 0;
	r.upstream_status = c->x->up_status;
	r.request_id = c->x->reqid_client.len
			   ? c->x->reqid_client
			   : (c->x->route ? (tg_str_t){c->x->reqid, 32} : (tg_str_t){NULL, 0});
	r.ns = rt ? rt->ingress_ns : NULL;
	r.ingress = rt ? rt->ingress_name : NULL;
	r.service = be ? be->service : NULL;
	char line[4096];
	size_t n = tg_accesslog_format(&r, line, sizeof(line));
	if (!tg_ring_put(w->logring, line, n))
		STAT_ADD(w->stats.log_dropped, 1);
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */

void tg_client_close(tg_cconn_t *c)
{
	if (c->closing)
		return;
	tg_worker_t *w = c->w;
	tg_exch_t *x = c->x;
	if (x && x->active) {
		if (!x->status)
			x->status = 499; /* nginx's "client closed request" */
		log_exchange(c);
	}
	c->closing = 1;
	if (x && x->up) {
		tg_upstream_close(w, x->up);
		x->up = NULL;
	}
	snap_unuse(c);
	tg_timer_cancel(&w->loop.timers, &c->timer);
	tg_cio_close(c);
	close(c->io.fd);
	c->io.fd = -1;
	tg_buf_put(&w->bufs, c->in);
	c->in = NULL;
	/* The exchange itself goes back with c after the event batch
	 * (free_graves): the callers up the stack may still read it. */
	tg_annot_release(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nclients--;
	STAT_SUB(w->stats.client_conns, 1);
	tg_limits_resume(w);
	c->gnext = w->cgrave;
	w->cgrave = c;
}

/* Ends the connection after a final response: discard what the client may
 * still be sending for a while, so that our close does not turn into a reset
 * that destroys the response before the client has read it. */
static int close_after_response(tg_cconn_t *c)
{
	bool unread = !c->x->body_done || (c->in && c->in->last > c->x->scan) || !c->x->head_len;
	if (!unread && !c->rd && !tg_cio_output_pending(c)) {
		tg_client_close(c);
		return STEP_BLOCKED;
	}
	tg_cio_shutdown_wr(c); /* TLS: after close_notify, possibly from step_linger */
	tg_buf_put(&c->w->bufs, c->in);
	c->in = NULL;
	exch_release(c); /* lingering needs none of it */
	c->phase = CP_LINGER;
	set_deadline(c, now_ms(c) + LINGER_MS);
	return STEP_AGAIN;
}

/* Closes an idle connection with a FIN, never a reset: shuts our side, then
 * discards whatever the client may still send until its own FIN (or
 * LINGER_MS), so that no unread byte is in the socket when it is closed. */
static void close_idle_gracefully(tg_cconn_t *c)
{
	tg_cio_shutdown_wr(c);
	tg_buf_put(&c->w->bufs, c->in);
	c->in = NULL;
	c->phase = CP_LINGER;
	set_deadline(c, now_ms(c) + LINGER_MS);
	c->rd = 1; /* the peer's FIN may already be queued: look now */
	client_run(c);
}

static int step_linger(tg_cconn_t *c)
{
	char sink[4096];
	if (c->tls_shut && c->wr)
		tg_cio_shutdown_wr(c); /* the close_notify could not be flushed before */
	while (c->rd) {
		ssize_t n = read(c->io.fd, sink, sizeof(sink));
		if (n > 0)
			continue;
		if (n < 0 && errno == EAGAIN) {
			c->rd = 0;
			break;
		}
		if (n < 0 && errno == EINTR)
			continue;
		tg_client_close(c); /* EOF or error: the client is done */
		return STEP_BLOCKED;
	}
	return STEP_BLOCKED;
}

/* The exchange is over (response fully written). */
static int exchange_done(tg_cconn_t *c)
{
	tg_worker_t *w = c->w;
	log_exchange(c);
	if (c->x->up) {
		tg_upstream_release(w, c->x->up, c->x->up_reusable && c->x->req_sent, c->x->set);
		c->x->up = NULL;
	}
	const tg_settings_t *s = c->x->set ? c->x->set : wsettings(w);
	uint32_t keep_ms = s->keep_alive_ms;
	snap_unuse(c);
	c->x->route = NULL;
	c->x->backend = NULL;
	c->x->set = NULL;
	if (TG_UNLIKELY(c->x->xbuf))
		tg_annot_release(c);
	if (!c->x->keep || w->draining)
		return close_after_response(c);
	/* Keep-alive: what follows the request (pipelined bytes) moves to the
	 * front and is parsed at once; an empty buffer goes back to the pool. */
	tg_buf_t *b = c->in;
	size_t left = (size_t)(b->last - c->x->scan);
	if (left) {
		memmove(b->start, c->x->scan, left);
		b->pos = b->start;
		b->last = b->start + left;
	} else {
		tg_buf_put(&w->bufs, b);
		c->in = NULL;
	}
	exch_release(c); /* idle: the connection keeps only its tg_cconn_t */
	c->phase = CP_IDLE;
	c->idle_since_ms = now_ms(c);
	set_deadline(c, now_ms(c) + keep_ms);
	return STEP_AGAIN;
}

/* ------------------------------------------------------------------ */
/* Local responses                                                     */

static bool keepable_status(int status)
{
	switch (status) {
	case 400:
	case 405: /* CONNECT: tunnel bytes may follow the head */
	case 408:
	case 413:
	case 414:
	case 431:
	case 500:
	case 501:
	case 505:
		return false;
	default:
		return true;
	}
}

static void ciov_push(tg_cconn_t *c, const void *p, size_t len)
{
	if (c->x->ciov_i == c->x->ciov_n) {
		c->x->ciov_i = c->x->ciov_n = 0;
		c->x->last_cwrite = now_ms(c);
	}
	if (c->x->ciov_n < TG_PROXY_IOV && len) {
		c->x->ciov[c->x->ciov_n].iov_base = (void *)p;
		c->x->ciov[c->x->ciov_n].iov_len = len;
		c->x->ciov_n++;
	}
}

static int local_response(tg_cconn_t *c, int status)
{
	tg_worker_t *w = c->w;
	if (c->x->up) {
		tg_upstream_close(w, c->x->up);
		c->x->up = NULL;
	}
	const tg_settings_t *s = c->x->set ? c->x->set : wsettings(w);
	c->x->status = status;
	c->x->resp_started = 1;
	c->x->keep = c->x->keep && c->x->body_done && keepable_status(status) && !w->draining &&
		     s->keep_alive_ms > 0 && c->nreq < s->keep_alive_requests &&
		     (s->keep_alive_time_ms == 0 || now_ms(c) - c->born_ms < s->keep_alive_time_ms);
	const char *reason = tg_http_reason(status);
	/* A detail (client certificates) is shown the way nginx shows its own:
	 * in the title and under the status line. */
	const char *detail = c->x->local_detail;
	c->x->local_detail = NULL;
	char body[320];
	int blen =
	    detail ? snprintf(body, sizeof(body),
			      "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n"
			      "<center><h1>%d %s</h1></center>\r\n<center>%s</center>\r\n"
			      "<hr><center>tidegate</center>\r\n</body>\r\n</html>\r\n",
			      status, detail, status, reason, detail)
		   : snprintf(body, sizeof(body),
			      "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n"
			      "<center><h1>%d %s</h1></center>\r\n<hr><center>tidegate</center>\r\n"
			      "</body>\r\n</html>\r\n",
			      status, reason, status, reason);
	char date[29];
	tg_http_date(date);
	bool head_only = c->x->head_len && c->x->req.method_id == TG_METHOD_HEAD;
	const char *conn = !c->x->keep ? "Connection: close\r\n"
			   : (c->x->head_len && c->x->req.version_minor == 0)
			       ? "Connection: keep-alive\r\n"
			       : "";
	size_t cap = sizeof(c->x->cadd);
	int n = snprintf(c->x->cadd, cap,
			 "HTTP/1.1 %d %s\r\nDate: %.29s\r\nServer: tidegate\r\n"
			 "Content-Type: text/html\r\nContent-Length: %d\r\n%s",
			 status, reason, date, blen, conn);
	if (n < 0 || (size_t)n >= cap)
		n = 0;
	size_t used = (size_t)n;
	ciov_push(c, c->x->cadd, used);
	if (c->x->local_location.len) {
		/* A redirect annotation: the Location was built for this request. */
		static const char loc[] = "Location: ";
		ciov_push(c, loc, sizeof(loc) - 1);
		ciov_push(c, c->x->local_location.ptr, c->x->local_location.len);
		ciov_push(c, "\r\n", 2);
		c->x->local_location.len = 0;
	} else if (status == 308 && c->x->head_len) {
		/* https://HOST/PATH?QUERY, HOST without the port. */
		static const char loc[] = "Location: https://";
		ciov_push(c, loc, sizeof(loc) - 1);
		tg_str_t h = c->x->req.host;
		const char *colon = NULL;
		if (h.len && h.ptr[0] == '[') {
			const char *rb = memchr(h.ptr, ']', h.len);
			if (rb && rb + 1 < h.ptr + h.len && rb[1] == ':')
				colon = rb + 1;
		} else if (h.len) {
			colon = memchr(h.ptr, ':', h.len);
		}
		ciov_push(c, h.ptr, colon ? (size_t)(colon - h.ptr) : h.len);
		if (c->x->req.path.len && c->x->req.path.ptr[0] == '/')
			ciov_push(c, c->x->req.path.ptr, c->x->req.path.len);
		else
			ciov_push(c, "/", 1);
		if (c->x->req.query.len)
			ciov_push(c, c->x->req.query.ptr - 1, c->x->req.query.len + 1);
		ciov_push(c, "\r\n", 2);
	}
	int m = snprintf(c->x->cadd + used, cap - used, "\r\n%s", head_only ? "" : body);
	if (m > 0 && (size_t)m < cap - used)
		ciov_push(c, c->x->cadd + used, (size_t)m);
	c->x->resp_head_bytes = tg_iov_len(c->x->ciov + c->x->ciov_i, c->x->ciov_n - c->x->ciov_i) -
				(head_only ? 0 : (size_t)blen);
	c->phase = CP_LOCAL;
	set_deadline(c, now_ms(c) + s->proxy_send_timeout_ms);
	return STEP_AGAIN;
}

/*
 * limit-rate / limit-rate-after (nginx's limit_rate, per request): by t
 * seconds after the request head, at most rate x (t + 1) + after bytes
 * (head included) have been written to the client; the "+ 1" is nginx's
 * first second. Returns how many bytes may be written now: SIZE_MAX when
 * the route has no limit, 0 when the caller must wait, in which case
 * x->rate_until_ms says until when. Waits until a worthwhile chunk is due
 * (1/16 s of the rate, at least 1 KB, at most what is pending) rather than
 * writing a few bytes on every tick.
 */
static size_t rate_allowance(tg_cconn_t *c, size_t pending)
{
	const tg_route_t *rt = c->x->route;
	if (!rt || !rt->opts.limit_rate || c->phase != CP_PROXY)
		return SIZE_MAX;
	uint64_t rate = rt->opts.limit_rate, after = rt->opts.limit_rate_after;
	uint64_t start_ms = c->x->t_start_ns / 1000000u;
	uint64_t now = now_ms(c), elapsed = now > start_ms ? now - start_ms : 0;
	uint64_t budget = after + rate + rate * elapsed / 1000u;
	uint64_t sent = c->x->sent_bytes;
	uint64_t want = TG_MIN((uint64_t)pending, TG_MAX(rate / 16u, UINT64_C(1024)));
	if (budget >= sent + want) {
		c->x->rate_until_ms = 0;
		uint64_t allow = budget - sent;
		return allow > SIZE_MAX ? SIZE_MAX : (size_t)allow;
	}
	/* When the budget reaches sent + want: after + rate x (t + 1) >= sent + want. */
	uint64_t need = sent + want - after; /* > rate: the budget is below it */
	uint64_t t_ms = (need - rate) * 1000u / rate + 1;
	c->x->rate_until_ms = start_ms + t_ms;
	return 0;
}

/* Writes pending ciov entries. Returns 1 when all written, 0 when blocked
 * (socket full, or limit-rate: x->rate_until_ms set), -1 on a write error
 * (the caller aborts). */
static int flush_client(tg_cconn_t *c)
{
	while (c->x->ciov_i < c->x->ciov_n) {
		if (!c->wr)
			return 0;
		struct iovec *iov = &c->x->ciov[c->x->ciov_i];
		int cnt = iov_count(c->x->ciov_i, c->x->ciov_n);
		struct iovec capped[TG_PROXY_IOV];
		bool cut = false; /* fewer bytes asked for than are pending */
		if (TG_UNLIKELY(c->x->route && c->x->route->opts.limit_rate)) {
			size_t pending = tg_iov_len(iov, cnt);
			size_t allow = rate_allowance(c, pending);
			if (allow == 0)
				return 0;
			if (allow < pending) {
				/* The first iovecs up to `allow` bytes, the last one cut. */
				int k = 0;
				for (size_t left = allow; left && k < cnt; k++) {
					capped[k] = iov[k];
					if (capped[k].iov_len > left)
						capped[k].iov_len = left;
					left -= capped[k].iov_len;
				}
				iov = capped;
				cnt = k;
				cut = true;
			}
		}
		ssize_t n = tg_cio_writev(c->tls, c->io.fd, iov, cnt);
		if (n < 0) {
			if (errno == EAGAIN) {
				c->wr = 0;
				return 0;
			}
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->x->sent_bytes += (uint64_t)n;
		c->x->last_cwrite = now_ms(c);
		iov_advance(c->x->ciov, &c->x->ciov_i, c->x->ciov_n, (size_t)n);
		/* Short write: the socket buffer is full (edge-triggered: wait for
		 * EPOLLOUT). A write cut by limit-rate that went whole is not one. */
		if (cut ? (size_t)n < tg_iov_len(iov, cnt) : c->x->ciov_i < c->x->ciov_n)
			c->wr = 0;
	}
	c->x->ciov_i = c->x->ciov_n = 0;
	return 1;
}

static int step_local(tg_cconn_t *c)
{
	int r = flush_client(c);
	if (r < 0) {
		tg_client_close(c);
		return STEP_BLOCKED;
	}
	if (r == 0)
		return STEP_BLOCKED;
	return exchange_done(c);
}

/* ------------------------------------------------------------------ */
/* Request head                                                        */

static void rebase_str(tg_str_t *s, const char *lo, const char *hi, ptrdiff_t d)
{
	if (s->ptr && s->ptr >= lo && s->ptr <= hi)
		s->ptr += d;
}

/* Moves the client's bytes into a buffer of `size` bytes, fixing every slice
 * that points into it. Rare: heads over 16 KiB or with little room left. */
static int grow_in(tg_cconn_t *c, size_t size)
{
	tg_buf_t *old = c->in;
	tg_buf_t *nb = tg_buf_alloc(size);
	if (!nb)
		return -1;
	size_t used = (size_t)(old->last - old->start);
	memcpy(nb->start, old->start, used);
	ptrdiff_t d = nb->start - old->start;
	nb->pos = old->pos + d;
	nb->last = nb->start + used;
	const char *lo = old->start, *hi = old->end;
	if (c->x->head_len) {
		tg_http_request_t *r = &c->x->req;
		rebase_str(&r->method, lo, hi, d);
		rebase_str(&r->target, lo, hi, d);
		rebase_str(&r->path, lo, hi, d);
		rebase_str(&r->query, lo, hi, d);
		rebase_str(&r->host, lo, hi, d);
		rebase_str(&r->upgrade_protocol, lo, hi, d);
		rebase_str(&c->x->reqid_client, lo, hi, d);
		for (size_t i = 0; i < r->num_headers; i++) {
			rebase_str(&c->x->reqh[i].name, lo, hi, d);
			rebase_str(&c->x->reqh[i].value, lo, hi, d);
		}
		c->x->base += d;
		c->x->scan += d;
	}
	tg_buf_put(&c->w->bufs, old);
	c->in = nb;
	return 0;
}

/* Frames newly received body bytes: advances scan over [scan, last).
 * Returns 0 or -1 for a malformed chunked body. */
static int frame_body(tg_cconn_t *c)
{
	if (c->x->body_done)
		return 0;
	size_t avail = (size_t)(c->in->last - c->x->scan);
	if (!avail)
		return 0;
	if (c->x->req.body == TG_BODY_LENGTH) {
		size_t n = avail < c->x->cl_left ? avail : (size_t)c->x->cl_left;
		c->x->scan += n;
		c->x->cl_left -= n;
		c->x->body_raw += n;
		c->x->body_done = c->x->cl_left == 0;
		return 0;
	}
	bool done = false;
	ssize_t n = tg_http_chunked_scan(&c->x->chunk, c->x->scan, avail, &done);
	if (n < 0)
		return -1;
	c->x->scan += n;
	c->x->body_raw += (uint64_t)n;
	c->x->body_done = done;
	return 0;
}

static uint32_t pick_endpoint(tg_cconn_t *c)
{
	tg_worker_t *w = c->w;
	const tg_backend_t *b = c->x->backend;
	uint32_t *cur = (c->x->sref == w->cur && b->id < w->nrr) ? &w->rr[b->id] : &w->rr_spare;
	uint32_t i = *cur % b->n_endpoints;
	*cur = i + 1;
	return i;
}

static int start_exchange(tg_cconn_t *c, size_t head_len)
{
	tg_worker_t *w = c->w;
	tg_buf_t *b = c->in;
	c->x->active = 1;
	c->x->t_start_ns = now_ns(c);
	c->nreq++;
	c->x->head_len = head_len;
	c->x->base = b->start + head_len;
	b->pos = c->x->base;
	c->x->scan = c->x->base;
	/* Everything else of the exchange is zero (exch_take). */
	c->x->replayable = 1;
	c->x->resp_state = RS_HEAD;
	c->x->keep = c->x->req.keep_alive;
	c->x->last_cread = c->x->last_cwrite = now_ms(c);

	switch (c->x->req.body) {
	case TG_BODY_LENGTH:
		c->x->cl_left = c->x->req.content_length;
		c->x->body_done = c->x->cl_left == 0;
		break;
	case TG_BODY_CHUNKED:
		memset(&c->x->chunk, 0, sizeof(c->x->chunk));
		c->x->body_done = 0;
		break;
	default:
		c->x->body_done = 1;
		break;
	}
	if (frame_body(c) < 0)
		return local_response(c, 400);
	if (!c->x->body_done && (size_t)(b->end - c->x->base) < BODY_ROOM_MIN &&
	    grow_in(c, (size_t)(c->x->base - b->start) + TG_PROXY_BUF_SIZE) < 0) {
		c->x->keep = 0;
		return local_response(c, 500);
	}
	if (c->x->req.method_id == TG_METHOD_CONNECT)
		return local_response(c, 405);
	if (!w->cur)
		return local_response(c, 503);
	c->x->sref = w->cur;
	c->x->sref->users++;
	c->x->set = &c->x->sref->snap->settings;
	tg_cio_forwarded(c);
	const tg_route_t *rt = tg_snapshot_route(c->x->sref->snap, c->x->req.host, c->x->req.path);
	if (!rt)
		return local_response(c, 404);
	c->x->route = rt;
	c->x->backend = rt->backend;
	/* ssl-redirect, client certificates; annotations when the route has any. */
	int tst =
	    TG_UNLIKELY(rt->opts.extra) ? tg_annot_route_check(c, rt) : tg_cio_route_check(c, rt);
	if (tst)
		return local_response(c, tst);
	uint64_t limit = rt->opts.proxy_body_size;
	if (limit && ((c->x->req.body == TG_BODY_LENGTH && c->x->req.content_length > limit) ||
		      (c->x->req.body == TG_BODY_CHUNKED && c->x->chunk.body_bytes > limit)))
		return local_response(c, 413);
	if (!c->x->backend || c->x->backend->n_endpoints == 0)
		return local_response(c, 503);

	for (size_t i = 0; i < c->x->req.num_headers; i++)
		if ((c->x->reqh[i].flags & TG_HDR_REQUEST_ID) && c->x->reqh[i].value.len) {
			c->x->reqid_client = c->x->reqh[i].value;
			break;
		}
	if (!c->x->reqid_client.len)
		tg_rand_hex32(&w->rng, c->x->reqid);
	if (c->x->req.expect_continue && c->x->req.version_minor == 1 && !c->x->body_done &&
	    c->x->scan == c->x->base)
		ciov_push(c, continue_100, sizeof(continue_100) - 1);

	c->x->ep_idx = pick_endpoint(c);
	if (TG_UNLIKELY(c->x->route->opts.extra && c->x->route->opts.extra->cookie_name)) {
		/* affinity: cookie: the session's endpoint while it exists. */
		int a = tg_annot_affinity_pick(c);
		if (a >= 0)
			c->x->ep_idx = (uint32_t)a;
		c->x->aff_ep = a >= 0 ? (uint32_t)a + 1 : 0;
	}
	c->phase = CP_PROXY;
	attempt(c, false);
	return STEP_AGAIN;
}

/* The head in progress cannot become a request (malformed, too large, too
 * slow): answers status, then the connection closes. Nothing of the exchange
 * was set beyond the parser's output (exch_take zeroed the rest). */
static int head_failed(tg_cconn_t *c, int status)
{
	c->x->active = 1;
	c->x->t_start_ns = now_ns(c);
	c->x->keep = 0;
	return local_response(c, status);
}

static int step_head(tg_cconn_t *c)
{
	tg_worker_t *w = c->w;
	const tg_settings_t *s = wsettings(w);
	if (!c->in) {
		if (!c->rd)
			return STEP_BLOCKED;
		c->in = tg_buf_get(&w->bufs);
		if (!c->in) {
			tg_client_close(c);
			return STEP_BLOCKED;
		}
	}
	for (;;) {
		tg_buf_t *b = c->in;
		if (b->last > b->start) {
			if (c->phase == CP_IDLE) {
				/* A request starts: it gets its exchange now. */
				if (!c->x && !exch_take(c)) {
					tg_client_close(c);
					return STEP_BLOCKED;
				}
				c->phase = CP_HEAD;
				c->head_start_ms = now_ms(c);
				set_deadline(c, c->head_start_ms + s->client_header_timeout_ms);
			}
			c->x->req.headers = c->x->reqh;
			c->x->req.max_headers =
			    s->max_headers && s->max_headers < TG_PROXY_MAX_HEADERS
				? s->max_headers
				: TG_PROXY_MAX_HEADERS;
			tg_http_limits_t lim = {s->large_client_header_buffers, 0};
			int r = tg_http_parse_request_resume(b->start, (size_t)(b->last - b->start),
							     &c->x->req, &lim);
			if (r > 0)
				return start_exchange(c, (size_t)r);
			if (r == TG_ERROR)
				return head_failed(c, c->x->req.status ? c->x->req.status : 400);
			if (tg_buf_space(b) == 0) {
				size_t limit = lim.max_head_bytes ? lim.max_head_bytes : 32768;
				if (tg_buf_size(b) > limit || grow_in(c, limit + 1) < 0)
					return head_failed(c, 431);
				continue;
			}
		}
		if (!c->rd) {
			if (b->last == b->start) {
				tg_buf_put(&w->bufs, b);
				c->in = NULL;
			}
			return STEP_BLOCKED;
		}
		size_t space = tg_buf_space(b);
		ssize_t n = tg_cio_read(c->tls, c->io.fd, b->last, space);
		if (n > 0) {
			b->last += n;
			if ((size_t)n < space && !c->rdhup)
				c->rd = 0;
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			c->rd = 0;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		tg_client_close(c); /* EOF or reset between requests */
		return STEP_BLOCKED;
	}
}

/* ------------------------------------------------------------------ */
/* Upstream attempts                                                   */

static int connect_failed(tg_cconn_t *c, bool timeout)
{
	tg_worker_t *w = c->w;
	STAT_ADD(w->stats.connect_errors, 1);
	if (c->x->up) {
		tg_upstream_close(w, c->x->up);
		c->x->up = NULL;
	}
	if (c->x->tries < 3 && c->x->replayable) {
		STAT_ADD(w->stats.retries, 1);
		c->x->ep_idx = (c->x->ep_idx + 1) % c->x->backend->n_endpoints;
		return attempt(c, false);
	}
	return local_response(c, timeout ? 504 : 502);
}

/* Starts (or restarts) sending the request on a pooled or new connection to
 * endpoint ep_idx. Always returns PUMP_SWITCH. */
static int attempt(tg_cconn_t *c, bool fresh)
{
	tg_worker_t *w = c->w;
	const tg_endpoint_t *ep = &c->x->backend->endpoints[c->x->ep_idx];
	c->x->up_addr = ep->text;
	c->x->t_up_start_ns = now_ns(c);
	const tg_route_extra_t *ext = c->x->route->opts.extra;
	const tg_tls_upstream_t *ut = TG_UNLIKELY(ext) ? ext->up_tls : NULL;
	tg_uconn_t *u = fresh ? NULL : tg_upstream_take(w, &ep->addr, ep->addrlen, ut);
	if (!u) {
		c->x->tries++;
		int e = tg_upstream_connect(w, ep, ut, &u);
		if (e < 0) {
			if (e == -ENOMEM || e == -EMFILE || e == -ENFILE) {
				c->x->keep = c->x->keep && c->x->body_done;
				return local_response(c, 502);
			}
			connect_failed(c, false);
			return PUMP_SWITCH;
		}
		c->x->connect_deadline = now_ms(c) + c->x->route->opts.proxy_connect_timeout_ms;
	}
	u->owner = c;
	c->x->up = u;
	if (!u->buf) {
		u->buf = tg_buf_get(&w->bufs);
		if (!u->buf) {
			c->x->keep = 0;
			return local_response(c, 502);
		}
	}
	u->buf->pos = u->buf->last = u->buf->start;
	memset(&c->x->resp.priv, 0, sizeof(c->x->resp.priv));
	u->requests++;
	c->x->attempt_bytes = 0;
	c->x->attempt_base = u->sent;
	c->x->resp_state = RS_HEAD;
	c->x->up_bytes = 0;
	c->x->up_status = 0;
	c->x->req_sent = 0;
	c->x->last_uwrite = c->x->last_uread = now_ms(c);

	tg_fwd_info_t fi = {
	    .client_ip = tg_cio_client_ip(c),
	    .peer_ip = {c->ip, c->x->xiplen ? c->iplen : 0},
	    .server_port = c->tls ? (tg_str_t){w->sport_text, w->sport_len}
				  : (tg_str_t){w->port_text, w->port_len},
	    .proto = c->tls ? TG_STR("https") : TG_STR("http"),
	    .request_id =
		c->x->reqid_client.len ? (tg_str_t){NULL, 0} : (tg_str_t){c->x->reqid, 32},
	    .trust_forwarded = c->x->trusted,
	    .extra = c->x->route->opts.client_auth ? (tg_str_t){c->tlsh.data, c->tlsh.len}
						   : (tg_str_t){NULL, 0},
	    .drop_expect = c->x->req.expect_continue,
	};
	if (TG_UNLIKELY(ext) && tg_annot_forward(c, &fi) < 0) {
		c->x->keep = 0;
		return local_response(c, 500);
	}
	int n = tg_proxy_request_head(&c->x->req, c->in->start, c->x->head_len, &fi, c->x->uiov,
				      TG_PROXY_IOV - 1, c->x->uadd, sizeof(c->x->uadd));
	if (n < 0) {
		c->x->keep = 0;
		return local_response(c, 500);
	}
	c->in->pos = c->x->base; /* a retry re-sends the body bytes from the start */
	if (c->x->scan > c->x->base) {
		c->x->uiov[n].iov_base = c->x->base;
		c->x->uiov[n].iov_len = (size_t)(c->x->scan - c->x->base);
		n++;
		c->in->pos = c->x->scan;
	}
	c->x->uiov_i = 0;
	c->x->uiov_n = n;
	return PUMP_SWITCH;
}

static int upstream_failed(tg_cconn_t *c, int kind)
{
	tg_worker_t *w = c->w;
	tg_uconn_t *u = c->x->up;
	bool reused = u && u->reused;
	bool stale = (kind == F_WRITE || kind == F_EOF || kind == F_RESET) && reused &&
		     c->x->up_bytes == 0 && !c->x->stale_retried && c->x->replayable &&
		     !c->x->resp_started;
	/* A pooled connection the backend had closed: an idempotent request may
	 * be sent again whatever happened; any other only when nothing of it can
	 * have been processed:
	 *  - the first write failed;
	 *  - the backend's TCP never acknowledged a byte of it: its socket was
	 *    closed before the request arrived (an idle-timeout close racing us);
	 *  - the backend reset the connection before any response byte: a
	 *    socket closed with unread data (our request) sends RST, so its
	 *    application never read the whole request. */
	bool retry = stale && (tg_http_method_idempotent(c->x->req.method_id) || kind == F_RESET ||
			       (kind == F_WRITE && c->x->attempt_bytes == 0) ||
			       tg_upstream_acked(u) <= c->x->attempt_base + 1 /* the SYN */);
	if (u) {
		tg_upstream_close(w, u);
		c->x->up = NULL;
	}
	if (c->x->resp_started) {
		tg_client_close(c);
		return PUMP_SWITCH;
	}
	if (retry) {
		c->x->stale_retried = 1;
		STAT_ADD(w->stats.retries, 1);
		return attempt(c, true);
	}
	return local_response(c, kind == F_TIMEOUT ? 504 : 502);
}

/* ------------------------------------------------------------------ */
/* Request direction                                                   */

static int pump_request(tg_cconn_t *c)
{
	if (c->x->req_sent)
		return PUMP_BLOCKED;
	tg_uconn_t *u = c->x->up;
	int progress = PUMP_BLOCKED;
	for (;;) {
		if (c->x->uiov_i < c->x->uiov_n) {
			if (!u->wr)
				return progress;
			ssize_t n = tg_cio_writev(u->tls, u->io.fd, &c->x->uiov[c->x->uiov_i],
						  iov_count(c->x->uiov_i, c->x->uiov_n));
			if (n < 0) {
				if (errno == EAGAIN) {
					u->wr = 0;
					return progress;
				}
				if (errno == EINTR)
					continue;
				return upstream_failed(c, F_WRITE);
			}
			c->x->attempt_bytes += (uint64_t)n;
			u->sent += (uint64_t)n;
			c->x->last_uwrite = now_ms(c);
			progress = PUMP_PROGRESS;
			iov_advance(c->x->uiov, &c->x->uiov_i, c->x->uiov_n, (size_t)n);
			if (c->x->uiov_i < c->x->uiov_n) {
				u->wr = 0;
				return progress;
			}
			continue;
		}
		tg_buf_t *b = c->in;
		if (b->pos < c->x->scan) {
			c->x->uiov[0].iov_base = b->pos;
			c->x->uiov[0].iov_len = (size_t)(c->x->scan - b->pos);
			c->x->uiov_i = 0;
			c->x->uiov_n = 1;
			b->pos = c->x->scan;
			continue;
		}
		c->x->uiov_i = c->x->uiov_n = 0;
		if (c->x->body_done) {
			c->x->req_sent = 1;
			c->x->last_uread = now_ms(c);
			return PUMP_PROGRESS;
		}
		/* Everything buffered went upstream; more body from the client. */
		if (!c->rd)
			return progress;
		if (tg_buf_space(b) < BODY_ROOM_MIN) {
			b->pos = b->last = c->x->scan = c->x->base;
			c->x->replayable = 0;
		}
		size_t space = tg_buf_space(b);
		ssize_t n = tg_cio_read(c->tls, c->io.fd, b->last, space);
		if (n > 0) {
			b->last += n;
			if ((size_t)n < space && !c->rdhup)
				c->rd = 0;
			c->x->last_cread = now_ms(c);
			progress = PUMP_PROGRESS;
			if (frame_body(c) < 0) {
				c->x->keep = 0;
				if (c->x->resp_started) {
					tg_client_close(c);
					return PUMP_SWITCH;
				}
				return local_response(c, 400);
			}
			if (c->x->route->opts.proxy_body_size &&
			    c->x->req.body == TG_BODY_CHUNKED &&
			    c->x->chunk.body_bytes > c->x->route->opts.proxy_body_size) {
				c->x->keep = 0;
				if (c->x->resp_started) {
					tg_client_close(c);
					return PUMP_SWITCH;
				}
				return local_response(c, 413);
			}
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			c->rd = 0;
			return progress;
		}
		if (n < 0 && errno == EINTR)
			continue;
		/* The client went away in the middle of its body. */
		tg_client_close(c);
		return PUMP_SWITCH;
	}
}

/* ------------------------------------------------------------------ */
/* Response direction                                                  */

static int frame_resp(tg_cconn_t *c)
{
	tg_buf_t *b = c->x->up->buf;
	size_t avail = (size_t)(b->last - c->x->rscan);
	if (c->x->rbody_done || !avail)
		return 0;
	switch (c->x->resp.body) {
	case TG_BODY_LENGTH: {
		size_t n = avail < c->x->rcl_left ? avail : (size_t)c->x->rcl_left;
		c->x->rscan += n;
		c->x->rcl_left -= n;
		c->x->rbody_done = c->x->rcl_left == 0;
		return 0;
	}
	case TG_BODY_CHUNKED: {
		bool done = false;
		ssize_t n = tg_http_chunked_scan(&c->x->rchunk, c->x->rscan, avail, &done);
		if (n < 0)
			return -1;
		c->x->rscan += n;
		c->x->rbody_done = done;
		return 0;
	}
	case TG_BODY_UNTIL_CLOSE:
		c->x->rscan = b->last;
		return 0;
	default:
		c->x->rbody_done = 1;
		return 0;
	}
}

static int start_tunnel(tg_cconn_t *c);

static int response_head(tg_cconn_t *c, size_t r)
{
	tg_worker_t *w = c->w;
	tg_buf_t *b = c->x->up->buf;
	int st = c->x->resp.status;
	c->x->up_status = st;
	if (st < 200 && st != 101) {
		/* Interim response: HTTP/1.1 clients get it as it came. */
		if (c->x->req.version_minor == 1)
			ciov_push(c, b->pos, r);
		b->pos += r;
		return PUMP_PROGRESS;
	}
	if (st == 101 && !c->x->req.upgrade)
		return upstream_failed(c, F_PROTO);
	c->x->upgrade = st == 101;
	c->x->resp_started = 1;
	c->x->status = st;
	const tg_settings_t *s = c->x->set;
	bool keep = c->x->keep && !c->x->upgrade && c->x->body_done && !w->draining &&
		    c->x->resp.body != TG_BODY_UNTIL_CLOSE &&
		    !(c->x->req.version_minor == 0 && c->x->resp.body == TG_BODY_CHUNKED) &&
		    s->keep_alive_ms > 0 && c->nreq < s->keep_alive_requests &&
		    (s->keep_alive_time_ms == 0 || now_ms(c) - c->born_ms < s->keep_alive_time_ms);
	c->x->keep = keep;
	char date[29];
	tg_http_date(date);
	tg_resp_info_t ri = {keep, c->x->req.version_minor == 0, c->x->upgrade, date, {NULL, 0}};
	/* affinity: cookie: a session that has no endpoint yet, or whose
	 * endpoint failed and another answered, is told which one it has. */
	if (TG_UNLIKELY(c->x->route->opts.extra && c->x->route->opts.extra->cookie_name) &&
	    c->x->aff_ep != c->x->ep_idx + 1)
		ri.set_cookie = tg_annot_affinity_cookie(c);
	if (c->x->ciov_i == c->x->ciov_n) {
		c->x->ciov_i = c->x->ciov_n = 0;
		c->x->last_cwrite = now_ms(c);
	}
	int n =
	    tg_proxy_response_head(&c->x->resp, b->pos, r, &ri, &c->x->ciov[c->x->ciov_n],
				   TG_PROXY_IOV - c->x->ciov_n - 1, c->x->cadd, sizeof(c->x->cadd));
	if (n < 0) {
		c->x->resp_started = 0;
		return upstream_failed(c, F_PROTO);
	}
	c->x->resp_head_bytes = tg_iov_len(&c->x->ciov[c->x->ciov_n], n);
	c->x->ciov_n += n;
	b->pos += r;
	c->x->rscan = b->pos;
	c->x->up_reusable =
	    c->x->resp.keep_alive && c->x->resp.body != TG_BODY_UNTIL_CLOSE && !c->x->req.upgrade;
	switch (c->x->resp.body) {
	case TG_BODY_LENGTH:
		c->x->rcl_left = c->x->resp.content_length;
		c->x->rbody_done = c->x->rcl_left == 0;
		break;
	case TG_BODY_CHUNKED:
		memset(&c->x->rchunk, 0, sizeof(c->x->rchunk));
		c->x->rbody_done = 0;
		c->x->dechunk = c->x->req.version_minor == 0 && !c->x->upgrade;
		if (c->x->dechunk)
			memset(&c->x->rdec, 0, sizeof(c->x->rdec));
		break;
	case TG_BODY_UNTIL_CLOSE:
		c->x->rbody_done = 0;
		break;
	default:
		c->x->rbody_done = 1;
		break;
	}
	if (c->x->upgrade)
		return start_tunnel(c);
	c->x->resp_state = RS_BODY;
	if (frame_resp(c) < 0) {
		/* The body framing is broken before anything of this response was
		 * written: drop its head and answer 502 rather than a truncated
		 * response. */
		c->x->ciov_n -= n;
		c->x->resp_started = 0;
		c->x->resp_head_bytes = 0;
		return upstream_failed(c, F_PROTO);
	}
	return PUMP_PROGRESS;
}

/* dechunk: queues the data runs of the framed bytes [b->pos, rscan) and
 * skips their framing (rchunk has validated these bytes already, so rdec,
 * which sees the same bytes, cannot fail on them). Stops when the iovecs are
 * full; the rest waits for the next round. */
static void push_dechunked(tg_cconn_t *c, tg_buf_t *b)
{
	while (b->pos < c->x->rscan && c->x->ciov_n < TG_PROXY_IOV) {
		size_t off, len;
		bool done;
		ssize_t r = tg_http_chunked_next_data(
		    &c->x->rdec, b->pos, (size_t)(c->x->rscan - b->pos), &done, &off, &len);
		if (r <= 0)
			break; /* done (r == 0); an error cannot happen (see above) */
		if (len)
			ciov_push(c, b->pos + off, len);
		b->pos += r;
	}
}

static int pump_response(tg_cconn_t *c)
{
	tg_uconn_t *u = c->x->up;
	tg_buf_t *b = u->buf;
	int progress = PUMP_BLOCKED;
	for (;;) {
		if (c->x->resp_state == RS_BODY) {
			if (TG_UNLIKELY(c->x->dechunk))
				push_dechunked(c, b);
			else if (c->x->rscan > b->pos && c->x->ciov_n < TG_PROXY_IOV) {
				ciov_push(c, b->pos, (size_t)(c->x->rscan - b->pos));
				b->pos = c->x->rscan;
			}
			if (c->x->rbody_done && b->pos == c->x->rscan) {
				c->x->resp_state = RS_DONE;
				c->x->t_up_end_ns = now_ns(c);
				if (b->last > c->x->rscan)
					c->x->up_reusable = 0; /* bytes after the response */
			}
		}
		uint64_t before = c->x->sent_bytes;
		int f = flush_client(c);
		if (f < 0) {
			tg_client_close(c);
			return PUMP_SWITCH;
		}
		if (c->x->sent_bytes != before)
			progress = PUMP_PROGRESS;
		if (f == 0)
			return progress;
		if (c->x->resp_state == RS_DONE)
			return progress;
		if (TG_UNLIKELY(c->x->dechunk) && c->x->resp_state == RS_BODY &&
		    b->pos < c->x->rscan)
			continue; /* more runs than iovecs: queue the next ones */
		if (c->x->resp_state == RS_BODY && b->pos == b->last)
			b->pos = b->last = c->x->rscan =
			    b->start; /* all written: reuse the buffer */
		if (c->x->resp_state == RS_HEAD && b->last > b->pos) {
			c->x->resp.headers = c->x->resph;
			c->x->resp.max_headers = TG_PROXY_MAX_HEADERS;
			tg_http_limits_t lim = {TG_PROXY_BUF_SIZE, 0};
			int r =
			    tg_http_parse_response_resume(b->pos, (size_t)(b->last - b->pos),
							  &c->x->resp, c->x->req.method_id, &lim);
			if (r == TG_ERROR)
				return upstream_failed(c, F_PROTO);
			if (r > 0) {
				int h = response_head(c, (size_t)r);
				if (h == PUMP_SWITCH)
					return h;
				progress = PUMP_PROGRESS;
				continue;
			}
			if (tg_buf_space(b) == 0) {
				if (b->pos == b->start)
					return upstream_failed(c, F_PROTO); /* head too large */
				tg_buf_compact(b);
			}
		}
		if (!u->rd)
			return progress;
		size_t space = tg_buf_space(b);
		if (!space)
			return progress;
		ssize_t n = tg_cio_read(u->tls, u->io.fd, b->last, space);
		if (n > 0) {
			b->last += n;
			c->x->up_bytes += (uint64_t)n;
			c->x->last_uread = now_ms(c);
			if ((size_t)n < space && !u->rdhup)
				u->rd = 0;
			progress = PUMP_PROGRESS;
			if (c->x->resp_state == RS_BODY && frame_resp(c) < 0) {
				tg_client_close(c);
				return PUMP_SWITCH;
			}
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			u->rd = 0;
			return progress;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 && c->x->resp_state == RS_BODY &&
		    c->x->resp.body == TG_BODY_UNTIL_CLOSE) {
			c->x->rbody_done = 1;
			c->x->up_reusable = 0;
			continue;
		}
		if (c->x->resp_state == RS_BODY) {
			/* Truncated body: the client cannot be told; end the connection. */
			tg_client_close(c);
			return PUMP_SWITCH;
		}
		if (c->x->up_bytes)
			return upstream_failed(c, F_PROTO);
		return upstream_failed(c, n < 0 && errno == ECONNRESET ? F_RESET : F_EOF);
	}
}

/* ------------------------------------------------------------------ */
/* CP_PROXY                                                            */

static uint64_t proxy_deadline(const tg_cconn_t *c, int *which)
{
	const tg_route_opts_t *o = &c->x->route->opts;
	uint64_t d = UINT64_MAX;
	int wh = W_NONE;
#define CAND(t, k)                                                                                 \
	do {                                                                                       \
		uint64_t t_ = (t);                                                                 \
		if (t_ < d) {                                                                      \
			d = t_;                                                                    \
			wh = (k);                                                                  \
		}                                                                                  \
	} while (0)
	if (c->x->up && (c->x->up->state == UC_CONNECTING || c->x->up->state == UC_HANDSHAKE)) {
		CAND(c->x->connect_deadline, W_CONNECT);
	} else {
		if (!c->x->req_sent) {
			if (c->x->uiov_i < c->x->uiov_n || c->in->pos < c->x->scan)
				CAND(c->x->last_uwrite + o->proxy_send_timeout_ms, W_USEND);
			else
				CAND(c->x->last_cread + c->x->set->client_body_timeout_ms, W_CBODY);
		}
		if (c->x->ciov_i < c->x->ciov_n)
			CAND(c->x->last_cwrite + o->proxy_send_timeout_ms, W_CWRITE);
		if (c->x->rate_until_ms && c->x->ciov_i < c->x->ciov_n)
			CAND(c->x->rate_until_ms, W_RATE);
		else if (c->x->resp_state != RS_DONE &&
			 (c->x->req_sent || c->x->resp_state != RS_HEAD))
			CAND(c->x->last_uread + o->proxy_read_timeout_ms, W_UREAD);
	}
#undef CAND
	if (which)
		*which = wh;
	return d;
}

static int step_proxy(tg_cconn_t *c)
{
	for (;;) {
		tg_uconn_t *u = c->x->up;
		if (u->state == UC_CONNECTING) {
			if (!u->wr)
				break;
			int err = 0;
			socklen_t l = sizeof(err);
			if (getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
				err = errno;
			if (err) {
				connect_failed(c, false);
				return STEP_AGAIN;
			}
			u->state = u->tls ? UC_HANDSHAKE : UC_ACTIVE;
		}
		if (TG_UNLIKELY(u->state == UC_HANDSHAKE)) {
			/* backend-protocol HTTPS: within proxy-connect-timeout, as
			 * nginx counts its upstream handshake. */
			int h = tg_upstream_handshake(u);
			if (h == TG_AGAIN)
				break;
			if (h == TG_ERROR) {
				connect_failed(c, false);
				return STEP_AGAIN;
			}
		}
		int r1 = pump_request(c);
		if (r1 == PUMP_SWITCH)
			return STEP_AGAIN;
		int r2 = pump_response(c);
		if (r2 == PUMP_SWITCH)
			return STEP_AGAIN;
		if (c->x->resp_state == RS_DONE && c->x->ciov_i == c->x->ciov_n) {
			if (!c->x->req_sent) {
				/* Answered before the request was complete: the rest of
				 * the body will never be read, so both sides close. */
				c->x->keep = 0;
				c->x->up_reusable = 0;
			}
			return exchange_done(c);
		}
		if (r1 == PUMP_BLOCKED && r2 == PUMP_BLOCKED)
			break;
	}
	set_deadline(c, proxy_deadline(c, NULL));
	return STEP_BLOCKED;
}

static void proxy_timeout(tg_cconn_t *c)
{
	int which;
	uint64_t d = proxy_deadline(c, &which);
	if (d > now_ms(c)) {
		set_deadline(c, d);
		return;
	}
	switch (which) {
	case W_CONNECT:
		connect_failed(c, true);
		break;
	case W_USEND:
	case W_UREAD:
		upstream_failed(c, F_TIMEOUT);
		break;
	case W_RATE:
		/* limit-rate: the next chunk is due (flush_client recomputes). */
		c->x->rate_until_ms = 0;
		break;
	case W_CBODY:
		if (c->x->resp_started) {
			tg_client_close(c);
			return;
		}
		c->x->keep = 0;
		local_response(c, 408);
		break;
	default:
		tg_client_close(c);
		return;
	}
	if (!c->closing)
		client_run(c);
}

/* ------------------------------------------------------------------ */
/* CP_TUNNEL                                                           */

static int start_tunnel(tg_cconn_t *c)
{
	tg_worker_t *w = c->w;
	if (!c->x->req_sent) {
		tg_client_close(c);
		return PUMP_SWITCH;
	}
	/* Logged now: the head is about to be overwritten by tunnel bytes. */
	c->x->t_up_end_ns = now_ns(c);
	log_exchange(c);
	tg_buf_t *in = c->in;
	size_t left = (size_t)(in->last - c->x->scan);
	memmove(in->start, c->x->scan, left);
	in->pos = in->start;
	in->last = in->start + left;
	c->x->head_len = 0;
	c->phase = CP_TUNNEL;
	/* Idle limit of the tunnel: the larger of the route's read and send
	 * timeouts (ingress-nginx's websocket behaviour). Read before the
	 * snapshot reference goes: the route lives in it. */
	uint32_t rt = c->x->route->opts.proxy_read_timeout_ms;
	uint32_t st = c->x->route->opts.proxy_send_timeout_ms;
	c->x->tunnel_idle_ms = rt > st ? rt : st;
	c->x->route = NULL;
	c->x->backend = NULL;
	c->x->set = NULL;
	snap_unuse(c);
	c->x->last_cread = w->loop.now_ms;
	return PUMP_SWITCH;
}

/* Moves bytes src -> buf -> dst. Returns 1 on progress, 0 when blocked, -1 on
 * an error. Sets *eof when src ended and everything was written (dst then
 * gets a FIN). */
static int relay(tg_tls_conn_t *stls, int sfd, uint8_t *srd, uint8_t srdhup, tg_buf_t *b,
		 tg_tls_conn_t *dtls, int dfd, uint8_t *dwr, uint8_t *eof)
{
	int progress = 0;
	for (;;) {
		if (b->pos < b->last) {
			if (!*dwr)
				return progress;
			ssize_t n = tg_cio_send(dtls, dfd, b->pos, (size_t)(b->last - b->pos));
			if (n < 0) {
				if (errno == EAGAIN) {
					*dwr = 0;
					return progress;
				}
				if (errno == EINTR)
					continue;
				return -1;
			}
			b->pos += n;
			progress = 1;
			if (b->pos < b->last) {
				*dwr = 0;
				return progress;
			}
		}
		b->pos = b->last = b->start;
		if (*eof || !*srd)
			return progress;
		size_t space = tg_buf_space(b);
		ssize_t n = tg_cio_read(stls, sfd, b->last, space);
		if (n > 0) {
			b->last += n;
			if ((size_t)n < space && !srdhup)
				*srd = 0;
			progress = 1;
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			*srd = 0;
			return progress;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		*eof = 1;
		tg_cio_shut(dtls, dfd);
		return 1;
	}
}

static int step_tunnel(tg_cconn_t *c)
{
	tg_uconn_t *u = c->x->up;
	for (;;) {
		int f = flush_client(c); /* the 101 head first */
		if (f < 0) {
			tg_client_close(c);
			return STEP_BLOCKED;
		}
		int p1 = 0;
		if (f > 0) {
			p1 = relay(u->tls, u->io.fd, &u->rd, u->rdhup, u->buf, c->tls, c->io.fd,
				   &c->wr, &c->x->u_eof);
			if (p1 < 0) {
				tg_client_close(c);
				return STEP_BLOCKED;
			}
		}
		int p2 = relay(c->tls, c->io.fd, &c->rd, c->rdhup, c->in, u->tls, u->io.fd, &u->wr,
			       &c->x->c_eof);
		if (p2 < 0) {
			tg_client_close(c);
			return STEP_BLOCKED;
		}
		if (c->x->u_eof && c->x->c_eof) {
			tg_client_close(c);
			return STEP_BLOCKED;
		}
		if (!p1 && !p2)
			break;
		c->x->last_cread = now_ms(c);
	}
	set_deadline(c, c->x->last_cread + c->x->tunnel_idle_ms);
	return STEP_BLOCKED;
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */

static void client_run(tg_cconn_t *c)
{
	while (!c->closing) {
		int r;
		switch (c->phase) {
		case CP_IDLE:
		case CP_HEAD:
			r = step_head(c);
			break;
		case CP_PROXY:
			r = step_proxy(c);
			break;
		case CP_LOCAL:
			r = step_local(c);
			break;
		case CP_TUNNEL:
			r = step_tunnel(c);
			break;
		case CP_PREFACE:
		case CP_HANDSHAKE:
			r = tg_cio_step(c);
			break;
		default:
			r = step_linger(c);
			break;
		}
		if (r == STEP_BLOCKED)
			break;
	}
}

void tg_client_upstream_ready(tg_cconn_t *c)
{
	client_run(c);
}

static void client_event(tg_io_t *io, uint32_t ev)
{
	tg_cconn_t *c = container_of(io, tg_cconn_t, io);
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->rd = 1;
	if (ev & (EPOLLRDHUP | EPOLLHUP))
		c->rdhup = 1;
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->wr = 1;
	if (c->tls)
		tg_cio_event(c, ev);
	client_run(c);
}

static void client_timer(tg_timer_t *t)
{
	tg_cconn_t *c = container_of(t, tg_cconn_t, timer);
	switch (c->phase) {
	case CP_HEAD:
		/* client-header-timeout covers the whole head (slowloris). */
		head_failed(c, 408);
		client_run(c);
		return;
	case CP_PROXY:
		proxy_timeout(c);
		return;
	case CP_TUNNEL:
		if (c->x->last_cread + c->x->tunnel_idle_ms > now_ms(c)) {
			set_deadline(c, c->x->last_cread + c->x->tunnel_idle_ms);
			return;
		}
		tg_client_close(c);
		return;
	case CP_IDLE:
		if (c->w->draining && (!c->in || c->in->last == c->in->start)) {
			/* Idle long enough (or keep-alive timeout): FIN, not reset. */
			close_idle_gracefully(c);
			return;
		}
		tg_client_close(c);
		return;
	default: /* local response or linger: give up */
		tg_client_close(c);
		return;
	}
}

void tg_client_drain(tg_cconn_t *c)
{
	/* Idle: between requests with no byte of the next one received (a
	 * connection holding part of a request head is not idle). Any other phase
	 * ends after its response: w->draining clears keep. */
	if (c->closing || c->phase != CP_IDLE || (c->in && c->in->last > c->in->start))
		return;
	uint64_t when = c->idle_since_ms + TG_DRAIN_IDLE_MS;
	if (when <= now_ms(c)) {
		close_idle_gracefully(c);
		return;
	}
	if (when < c->timer.deadline)
		set_deadline(c, when); /* client_timer closes it then */
}

void tg_client_accept(tg_io_t *io, uint32_t events)
{
	(void)events;
	tg_client_accept_from(container_of(io, tg_worker_t, lio), io->fd, 64);
}

int tg_client_accept_from(tg_worker_t *w, int lfd, int max)
{
	const tg_settings_t *s = wsettings(w);
	int accepted = 0;
	for (int k = 0; k < max; k++) {
		/* At max-worker-connections: leave the rest in the listen queue. */
		if (tg_limits_accept_full(w))
			return accepted;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				static _Thread_local uint64_t last_warn;
				if (w->loop.now_ms - last_warn > 10000) {
					last_warn = w->loop.now_ms;
					tg_warn("proxy", "accept: %s (raise the fd limit)",
						strerror(errno));
				}
			}
			return accepted;
		}
		accepted++;
		tg_cconn_t *c = tg_pool_get(&w->cpool);
		if (!c) {
			close(fd);
			continue;
		}
		memset(c, 0, sizeof(*c)); /* no exchange until a request starts */
		c->io.fd = fd;
		c->io.fn = client_event;
		c->w = w;
		c->born_ms = w->loop.now_ms;
		c->idle_since_ms = c->born_ms;
		tg_timer_init(&c->timer, client_timer);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (s->tcp_keepalive_ms) {
			/* tcp-keepalive: the first probe after this much silence (keep it
			 * under the idle timeout of any balancer or NAT in front, so
			 * their flow entry stays), then 3 probes a third of that apart
			 * (at most 75 s, Linux's default) before the peer is declared
			 * dead. */
			int idle = (int)(s->tcp_keepalive_ms / 1000);
			if (idle < 1)
				idle = 1;
			int intvl = idle / 3 < 1 ? 1 : idle / 3 > 75 ? 75 : idle / 3;
			int cnt = 3;
			setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
			setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
			setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
			setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
		}
		const void *a = ss.ss_family == AF_INET6
				    ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
				    : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
		if (!inet_ntop(ss.ss_family, a, c->ip, sizeof(c->ip)))
			c->ip[0] = '\0';
		/* v4-mapped v6 ([::ffff:1.2.3.4]) is logged as plain IPv4. */
		if (strncmp(c->ip, "::ffff:", 7) == 0 && strchr(c->ip, '.'))
			memmove(c->ip, c->ip + 7, strlen(c->ip + 7) + 1);
		c->iplen = (uint8_t)strlen(c->ip);
		if (tg_timer_set(&w->loop.timers, &c->timer,
				 w->loop.now_ms + s->client_header_timeout_ms) < 0 ||
		    tg_loop_add(&w->loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
			tg_timer_cancel(&w->loop.timers, &c->timer);
			close(fd);
			tg_pool_put(&w->cpool, c);
			continue;
		}
		c->next = w->clients;
		if (w->clients)
			w->clients->prev = c;
		w->clients = c;
		w->nclients++;
		STAT_ADD(w->stats.client_conns, 1);
		STAT_ADD(w->stats.accepted, 1);
		c->phase = CP_IDLE;
		if (tg_cio_accepted(c, lfd, &ss) < 0) { /* PROXY header, TLS */
			tg_client_close(c);
			continue;
		}
		/* The request is often already there: read it without waiting for
		 * the edge (one EAGAIN read when it is not). */
		c->rd = 1;
		c->wr = 1;
		client_run(c);
		if (w->draining)
			tg_client_drain(c); /* no request yet: closed if none comes */
	}
	return accepted;
}

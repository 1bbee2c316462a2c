/*
 * worker.h - proxy internals shared by worker.c, client.c, upstream.c:
 * the per-worker state and the client/upstream connection structs.
 * Everything here belongs to one worker thread, except the counters in
 * tg_wstats_t, which the admin thread reads with relaxed atomic loads.
 */
#ifndef TG_PROXY_WORKER_H
#define TG_PROXY_WORKER_H

#include "core/buf.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/rand.h"
#include "core/ring.h"
#include "http/http.h"
#include "ingress/snapshot.h"
#include "proxy/metrics.h"
#include "tls/upstream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

#define TG_PROXY_BUF_SIZE    16384 /* I/O buffer (client request, upstream response) */
#define TG_PROXY_MAX_HEADERS 100   /* header fields per message we can hold */
#define TG_PROXY_IOV	     (TG_PROXY_MAX_HEADERS + 24)
#define TG_PROXY_UPOOL_HASH  256 /* buckets of the upstream pool table */

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* Relaxed single-writer counters: the owning worker writes, the admin thread
 * reads; on x86 these are plain moves. */
#define STAT_ADD(x, v) __atomic_store_n(&(x), (x) + (v), __ATOMIC_RELAXED)
#define STAT_SUB(x, v) __atomic_store_n(&(x), (x) - (v), __ATOMIC_RELAXED)
#define STAT_GET(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)

typedef struct tg_worker tg_worker_t;
typedef struct tg_cconn tg_cconn_t;
typedef struct tg_uconn tg_uconn_t;
typedef struct tg_proxy tg_proxy_t;

/* A listening socket beyond the worker's own `lio`: one adopted from a
 * previous process (SIGUSR2 upgrade) when it had more workers than this one.
 * Every socket of the SO_REUSEPORT group must keep being accepted from, or the
 * connections the kernel queues on it would wait forever. */
typedef struct tg_lsock {
	tg_io_t io;	       /* listening fd + handler (first: container_of) */
	tg_worker_t *w;	       /* the worker accepting on it */
	struct tg_lsock *next; /* the worker's list */
	bool tls;	       /* an HTTPS listener (tls_io.c): connections start with a
				* TLS handshake */
} tg_lsock_t;

/* A snapshot this worker holds: the current one and older ones that requests
 * in flight still use. `users` counts those requests (+1 while current); the
 * shared reference is released when it drops to 0. */
typedef struct tg_snapref {
	tg_snapshot_t *snap;	 /* one shared reference */
	uint32_t users;		 /* worker-local users */
	struct tg_snapref *next; /* worker's list */
} tg_snapref_t;

/* Idle keep-alive connections to one endpoint address. Keyed by address, not
 * by backend, so pooled connections survive configuration changes. */
typedef struct tg_upool {
	struct sockaddr_storage addr; /* endpoint address (key) */
	socklen_t addrlen;	      /* bytes of addr */
	uint32_t hash;		      /* hash of the key */
	struct tg_upool *next;	      /* hash chain */
	tg_uconn_t *idle;	      /* idle connections, most recent first */
	uint32_t nconns;	      /* connections (idle or active) that point here */
	uint64_t live_gen;	      /* w->pool_gen of the last snapshot listing this
				       * endpoint: a connection released when it is not
				       * the current one is closed, not pooled */
	uint64_t tls_key;	      /* part of the key: 0 plain TCP, else the upstream
				       * TLS profile's tg_tls_upstream_key */
	tg_tls_session_t *session;    /* last resumable TLS session with this endpoint
				       * (one reference), or NULL */
} tg_upool_t;

/* Upstream connection states. */
enum { UC_CONNECTING, UC_ACTIVE, UC_IDLE, UC_HANDSHAKE /* TLS to the backend */ };

struct tg_uconn {
	tg_io_t io;		   /* fd + handler; first so a dangling event is safe */
	tg_worker_t *w;		   /* owning worker */
	tg_upool_t *pool;	   /* endpoint key this connection belongs to */
	tg_cconn_t *owner;	   /* client exchange using it (NULL when idle) */
	tg_buf_t *buf;		   /* response buffer while active */
	tg_timer_t timer;	   /* idle expiry */
	tg_uconn_t *pnext, *pprev; /* in pool->idle */
	tg_uconn_t *lnext, *lprev; /* in the worker's idle LRU (lprev = older) */
	tg_uconn_t *gnext;	   /* graveyard link after close */
	uint32_t requests;	   /* requests sent on this connection */
	uint64_t sent;		   /* bytes written on this connection */
	uint8_t state;		   /* UC_* */
	uint8_t rd;		   /* readable as far as we know (edge seen, no EAGAIN) */
	uint8_t wr;		   /* writable as far as we know */
	uint8_t rdhup;		   /* peer's FIN is queued (EPOLLRDHUP) */
	uint8_t reused;		   /* taken from the pool for the current request */
	tg_tls_conn_t *tls;	   /* backend-protocol HTTPS: TLS state, else NULL */
};

/* Client connection phases. */
enum {
	CP_IDLE,      /* keep-alive: waiting for the first byte of a request */
	CP_HEAD,      /* reading a request head */
	CP_PROXY,     /* exchanging with an upstream */
	CP_LOCAL,     /* writing a response tidegate made (error, redirect) */
	CP_TUNNEL,    /* after 101: bytes both ways */
	CP_LINGER,    /* final response sent, discarding input before close */
	CP_PREFACE,   /* reading the PROXY protocol header (use-proxy-protocol) */
	CP_HANDSHAKE, /* TLS handshake (HTTPS listener) */
};

/* Response progress within CP_PROXY. */
enum { RS_HEAD, RS_BODY, RS_DONE };

/*
 * One request/response exchange: everything that exists only while a request
 * is in progress (parsed heads, header arrays, iovecs, scratch, body scanners,
 * timings). Taken from the worker's free list (tg_exch_get) when the first
 * byte of a request head is there, given back (tg_exch_put) when the
 * connection goes idle or closes, so an idle keep-alive connection holds only
 * its tg_cconn_t. Fields up to `req` are zeroed when taken (exch_scalars).
 */
typedef struct tg_exch {
	tg_snapref_t *sref;	     /* snapshot the request routes on (a user of it) */
	const tg_route_t *route;     /* matched route (NULL: none yet / 404) */
	const tg_backend_t *backend; /* route's backend */
	const tg_settings_t *set;    /* settings used for this request */
	tg_uconn_t *up;		     /* upstream connection in use */
	uint32_t ep_idx;	     /* endpoint index in backend */
	uint8_t keep;		     /* keep the connection after this exchange */
	uint8_t tries;		     /* connect attempts made */
	uint8_t stale_retried;	     /* the one retry after a dead pooled connection is used */
	uint8_t replayable;	     /* every request byte sent so far is still in `in` */
	uint8_t body_done;	     /* the whole request body has been framed */
	uint8_t req_sent;	     /* the whole request has been written upstream */
	uint8_t resp_state;	     /* RS_* */
	uint8_t resp_started;	     /* something of a response went to the client */
	uint8_t up_reusable;	     /* the upstream connection can go back to the pool */
	uint8_t upgrade;	     /* 101 received: tunnel */
	uint8_t c_eof, u_eof;	     /* tunnel: direction finished */
	uint8_t active;		     /* a request is in progress and not logged yet */
	uint8_t rbody_done;	     /* the whole response body has been framed */
	uint8_t dechunk;	     /* HTTP/1.0 client, chunked response: send the data
				      * only (rdec), delimited by the connection's close */
	uint8_t trusted;	     /* this request's X-Forwarded-* are honoured */
	uint8_t xiplen;		     /* bytes of xip (0: the client address is ip) */
	uint32_t tunnel_idle_ms;     /* tunnel: close after this long without traffic */
	char xip[46];		     /* client address taken from X-Forwarded-For */
	const char *local_detail;    /* next local response: nginx-style detail line */
	tg_str_t local_location;     /* next local response: its Location value (redirect
				      * annotations; len 0: none, or ssl-redirect's) */
	tg_buf_t *xbuf;		     /* annotations' per-request text (rewritten target,
				      * redirect Location), from the buffer pool; NULL
				      * when unused */
	size_t head_len;	     /* bytes of the head at in->start (0: none parsed) */
	char *base;		     /* in->start + head_len: where body bytes start */
	char *scan;		     /* end of the body bytes framed so far */
	uint64_t cl_left;	     /* Content-Length body bytes not framed yet */
	uint64_t body_raw;	     /* request body bytes received (as sent, framing included) */
	uint64_t attempt_bytes;	     /* bytes written upstream in the current attempt */
	uint64_t attempt_base;	     /* up->sent when the current attempt started */
	uint64_t connect_deadline;   /* ms */
	uint64_t last_cread, last_cwrite, last_uread, last_uwrite; /* progress times (ms) */
	int uiov_i, uiov_n;					   /* uiov: next, end */
	int ciov_i, ciov_n;					   /* ciov: next, end */
	char *rscan;		  /* end of response bytes framed so far */
	uint64_t rcl_left;	  /* Content-Length response bytes not framed yet */
	uint64_t resp_head_bytes; /* response head bytes sent to the client */
	uint64_t sent_bytes;	  /* bytes written to the client this exchange */
	uint64_t up_bytes;	  /* response bytes received from upstream */
	int status;		  /* status sent to the client */
	int up_status;		  /* status received from upstream (0: none) */
	const char *up_addr;	  /* endpoint text of the last attempt (snapshot) */
	uint64_t t_start_ns;	  /* request head complete */
	uint64_t t_up_start_ns;	  /* last attempt started */
	uint64_t t_up_end_ns;	  /* response complete from upstream */
	uint64_t rate_until_ms;	  /* limit-rate: writing waits until then (0: not waiting) */
	uint32_t aff_ep;	  /* affinity: 1 + the endpoint the request's cookie named
				   * (0: none) */
	tg_str_t reqid_client;	  /* the client's X-Request-ID (len 0: none) */
	/* limit-connections (ratelimit.h): the slot held, given back by
	 * tg_annot_release at the end of the exchange; NULL: none. */
	struct tg_rl_entry *lconn;
	/* --- not zeroed when taken: set before use --- */
	tg_http_request_t req; /* parsed head (slices into in); priv zeroed when taken */
	/* Right after req: a connection holding a partial head (slowloris) has
	 * touched only the exchange's first page (objects are mmap'd, pages
	 * resident when touched), not a page of req and one of reqh. */
	tg_http_header_t reqh[TG_PROXY_MAX_HEADERS]; /* request fields */
	tg_http_chunked_t chunk;		     /* chunked request body scanner */
	tg_http_response_t resp;	 /* parsed response head (slices into up->buf) */
	tg_http_chunked_t rchunk;	 /* chunked response scanner */
	tg_http_chunked_t rdec;		 /* dechunk: decoder trailing rchunk at up->buf->pos */
	char reqid[32];			 /* generated X-Request-ID */
	char uadd[640];			 /* scratch for the upstream head additions */
	char cadd[512];			 /* scratch for response head additions / local responses */
	struct iovec uiov[TG_PROXY_IOV]; /* pending upstream writes */
	struct iovec ciov[TG_PROXY_IOV]; /* pending client writes */
	tg_http_header_t resph[TG_PROXY_MAX_HEADERS]; /* response fields */
} tg_exch_t;

/* A client connection. Small on purpose (issue 7): thousands of idle
 * keep-alive connections each hold only this (the input buffer and the
 * exchange are given back when the connection goes idle). */
struct tg_cconn {
	tg_io_t io;		 /* fd + handler */
	tg_worker_t *w;		 /* owning worker */
	tg_timer_t timer;	 /* the one deadline of this connection (phase-dependent) */
	tg_cconn_t *next, *prev; /* worker's list of client connections */
	tg_cconn_t *gnext;	 /* graveyard link after close */
	tg_buf_t *in;		 /* request bytes (NULL while idle with nothing buffered) */
	tg_exch_t *x;		 /* the current exchange (NULL while idle / lingering) */
	uint8_t phase;		 /* CP_* */
	uint8_t rd, wr, rdhup;	 /* readiness, as for tg_uconn */
	uint8_t closing;	 /* closed or being closed */
	uint8_t iplen;		 /* bytes of ip */
	uint8_t tls_shut;	 /* close_notify queued, SHUT_WR waits for its flush */
	uint8_t peer_family;	 /* client address (after PROXY): AF_INET/AF_INET6 */
	uint32_t nreq;		 /* requests started on this connection */
	char ip[46];		 /* client address text (X-Real-IP, logs) */
	uint8_t peer_addr[16];	 /* client address bytes (after PROXY), network order */
	uint64_t born_ms;	 /* accept time (keep-alive-time) */
	uint64_t idle_since_ms;	 /* entered CP_IDLE (accept or last response): drain */
	uint64_t head_start_ms;	 /* first byte of the current head (header timeout) */
	tg_tls_conn_t *tls;	 /* TLS state on the HTTPS listener, else NULL */
	tg_sbuf_t tlsh;		 /* ssl-client-* header lines of the last request that
				  * asked for a certificate (kept: see annot.c) */
};

struct tg_worker {
	int id;					 /* 0..n-1 */
	tg_proxy_t *proxy;			 /* owner */
	pthread_t thread;			 /* this worker's thread */
	tg_loop_t loop;				 /* epoll + timers */
	tg_io_t lio;				 /* listener (fd -1 once closed) */
	tg_io_t wio;				 /* eventfd: commands from other threads */
	tg_pool_t cpool;			 /* free tg_cconn_t */
	tg_pool_t upool_objs;			 /* free tg_uconn_t */
	tg_pool_t xpool;			 /* free tg_exch_t */
	tg_bufpool_t bufs;			 /* free I/O buffers */
	tg_snapref_t *cur;			 /* current snapshot (NULL before the first) */
	tg_snapref_t *snaps;			 /* every snapshot held, cur included */
	uint64_t gen;				 /* generation of cur */
	uint32_t *rr;				 /* round-robin cursor per backend id of cur */
	uint32_t nrr;				 /* entries in rr */
	uint32_t rr_spare;			 /* cursor for backends of older snapshots */
	tg_settings_t defaults;			 /* settings before the first snapshot */
	tg_cconn_t *clients;			 /* every open client connection */
	uint32_t nclients;			 /* entries in clients */
	bool accept_paused;			 /* listeners out of epoll: at
						  * max-worker-connections (limits.c) */
	uint64_t limit_warned_ms;		 /* last "at max-worker-connections" log */
	tg_upool_t *upools[TG_PROXY_UPOOL_HASH]; /* endpoint -> idle connections */
	tg_uconn_t *lru_new, *lru_old;		 /* idle LRU ends */
	uint32_t nidle;				 /* idle upstream connections */
	uint32_t nupstream;			 /* upstream connections open */
	uint64_t pool_gen;			 /* snapshots scanned by
						  * tg_upstream_forget_gone (upool live_gen) */
	tg_cconn_t *cgrave;			 /* closed client conns to free after the batch */
	tg_uconn_t *ugrave;			 /* closed upstream conns to free after the batch */
	_Atomic int cmd;			 /* CMD_* bits posted by other threads */
	bool draining;				 /* Connection: close on every response; idle
						  * keep-alive connections closed (drain.c) */
	bool unlistened;			 /* listeners closed: exit once no connection
						  * is left or at drain_deadline */
	bool stop;				 /* leave the loop */
	tg_lsock_t *xlis;			 /* extra listening sockets (adopted) */
	_Atomic uint32_t drain_forced;		 /* connections closed at the drain deadline */
	uint64_t drain_deadline;		 /* ms: force-close at worker-shutdown-timeout */
	uint64_t last_gc;			 /* ms of the last upstream pool sweep */
	uint16_t port;				 /* listener port (X-Forwarded-Port) */
	char port_text[8];			 /* its text */
	uint8_t port_len;			 /* bytes of port_text */
	char sport_text[8];			 /* HTTPS listener port text (X-Forwarded-Port) */
	uint8_t sport_len;			 /* bytes of sport_text */
	tg_rand_t rng;				 /* request IDs */
	tg_ring_t *logring;  /* access log ring (drained by the logger thread) */
	int64_t tl_sec;	     /* second cached in time_local */
	char time_local[32]; /* "[26/Nov/2026:09:30:00 +0000]" */
	tg_wstats_t stats;   /* counters (read by the admin thread) */
	_Atomic bool exited; /* the thread has left its loop */
};

#define CMD_DRAIN   1 /* first SIGTERM: close connections after their response */
#define CMD_ABORT   2 /* leave now, closing everything */
#define CMD_UNLISTN 4 /* accept what is queued, then close the listeners */
#define CMD_HANDOFF                                                                                \
	8 /* close the listeners without accepting: another process                                \
	   * holds the same sockets and accepts their queue */

/* client.c */
/* Accepts every pending connection on the worker's listener. */
void tg_client_accept(tg_io_t *io, uint32_t events);
/* Accepts up to max pending connections from listening socket lfd for w.
 * Returns how many were accepted; stops early when the queue is empty. */
int tg_client_accept_from(tg_worker_t *w, int lfd, int max);
/* Called by upstream.c when an event arrives for an upstream conn owned by c. */
void tg_client_upstream_ready(tg_cconn_t *c);
/* Closes c at once (drain timeout, worker exit). */
void tg_client_close(tg_cconn_t *c);
/* Drain started (or c accepted while draining): an idle keep-alive
 * connection is closed gracefully (FIN, then input discarded until the peer's
 * FIN) once it has been idle for TG_DRAIN_IDLE_MS; any other closes after its
 * current response (w->draining makes that response carry Connection: close). */
void tg_client_drain(tg_cconn_t *c);

/* worker.c */
/* Drops one use of a snapshot reference taken from w->cur. */
void tg_worker_snap_unuse(tg_worker_t *w, tg_snapref_t *r);

/* drain.c */
/* An idle keep-alive connection is closed by a drain only once it has been idle
 * this long: a client that just got a response (sent before the drain began,
 * so without Connection: close) is likely writing its next request right now,
 * and closing under it would lose that request. That request's response
 * carries Connection: close instead. */
#define TG_DRAIN_IDLE_MS 1000
/* Starts the drain of w (CMD_DRAIN): connections close after their response. */
void tg_drain_start(tg_worker_t *w);
/* Stops accepting (CMD_UNLISTN / CMD_HANDOFF): with accept_queue, first
 * accepts every connection already queued so that closing the socket resets
 * none; starts the worker-shutdown-timeout countdown. */
void tg_drain_unlisten(tg_worker_t *w, bool accept_queue);
/* True when the worker should leave its loop: listeners closed and no
 * connection left, or the deadline passed (what is left is closed, and logged). */
bool tg_drain_done(tg_worker_t *w);
/* Adds an extra listening socket (adopted) to w. Returns 0 or -errno. */
int tg_drain_add_listener(tg_worker_t *w, int fd);

/* upstream.c */
/* Takes an idle connection to addr from the pool, or NULL. tls: the route's
 * upstream TLS profile (NULL: plain TCP); only a connection made with an
 * equal profile is taken. */
tg_uconn_t *tg_upstream_take(tg_worker_t *w, const struct sockaddr_storage *addr, socklen_t len,
			     const tg_tls_upstream_t *tls);
/* Opens a connection to ep (TLS with profile tls when not NULL, resuming the
 * endpoint's last session). On success *out is set (state UC_CONNECTING,
 * UC_HANDSHAKE when the TCP connect completed at once with TLS, or UC_ACTIVE);
 * returns 0 or -errno. */
int tg_upstream_connect(tg_worker_t *w, const tg_endpoint_t *ep, const tg_tls_upstream_t *tls,
			tg_uconn_t **out);
/* Runs the TLS handshake of u (UC_HANDSHAKE) as far as the socket allows:
 * TG_OK (now UC_ACTIVE), TG_AGAIN (wait for an event) or TG_ERROR (logged at
 * most every 10 s per worker; the caller treats it as a failed connect). */
int tg_upstream_handshake(tg_uconn_t *u);
/* Gives u back: pooled when reusable and the limits allow, else closed. */
void tg_upstream_release(tg_worker_t *w, tg_uconn_t *u, bool reusable, const tg_settings_t *s);
/* Closes u (any state). */
void tg_upstream_close(tg_worker_t *w, tg_uconn_t *u);
/* Bytes of ours the peer has acknowledged (TCP_INFO), UINT64_MAX when unknown.
 * A request none of whose bytes were acknowledged never reached the backend
 * application, so it can be sent again whatever its method. */
uint64_t tg_upstream_acked(const tg_uconn_t *u);
/* Closes every idle connection; frees pool entries with no connection when
 * all is true or when they are empty. */
void tg_upstream_sweep(tg_worker_t *w, bool all);
/* After a snapshot switch: closes the idle pooled connections to endpoints
 * that are in no backend of s (removed, or terminating and not used), so that a
 * pod going away is not sent requests on old connections. Returns how many
 * were closed. In-flight exchanges keep their connections. */
uint32_t tg_upstream_forget_gone(tg_worker_t *w, const tg_snapshot_t *s);

#endif

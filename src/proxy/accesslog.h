/*
 * accesslog.h - the access log: one line per request, ingress-nginx's default
 * format plus the Ingress and Service, written to stdout by a thread of its own.
 *
 * Workers format a line and put it into their own ring (core/ring.h); they
 * never block: when the ring is full the line is dropped and counted
 * (tidegate_access_log_dropped_total). The logger thread drains every ring.
 *
 * Line format (fields separated by one space; "-" when empty):
 *   CLIENT_IP - - [TIME_LOCAL] "REQUEST_LINE" STATUS BODY_BYTES_SENT "REFERER"
 *   "USER_AGENT" REQUEST_LENGTH REQUEST_TIME [UPSTREAM_NAME] [] UPSTREAM_ADDR
 *   UPSTREAM_RESPONSE_LENGTH UPSTREAM_RESPONSE_TIME UPSTREAM_STATUS REQUEST_ID
 *   NAMESPACE/INGRESS SERVICE
 * Times are seconds with millisecond resolution. Quotes, backslashes and bytes
 * outside printable ASCII inside quoted fields are written as \xHH.
 */
#ifndef TG_PROXY_ACCESSLOG_H
#define TG_PROXY_ACCESSLOG_H

#include "core/common.h"
#include "core/ring.h"

#include <stdint.h>

typedef struct tg_logrec {
	tg_str_t client_ip;	   /* remote address */
	const char *time_local;	   /* "26/Nov/2026:09:30:00 +0000" */
	tg_str_t request_line;	   /* "GET / HTTP/1.1" (may be malformed input) */
	int status;		   /* status sent to the client */
	uint64_t body_bytes;	   /* response body bytes sent */
	tg_str_t referer;	   /* Referer field (len 0: none) */
	tg_str_t user_agent;	   /* User-Agent field (len 0: none) */
	uint64_t request_length;   /* request head + body bytes */
	uint64_t request_time_us;  /* head complete to response end */
	const char *upstream_name; /* backend label "ns-svc-port" (NULL: none) */
	const char *upstream_addr; /* endpoint "ip:port" (NULL: none) */
	uint64_t upstream_length;  /* response bytes received from upstream */
	uint64_t upstream_time_us; /* upstream attempt start to response end */
	int upstream_status;	   /* 0: none */
	tg_str_t request_id;	   /* X-Request-ID */
	const char *ns;		   /* Ingress namespace (NULL: none) */
	const char *ingress;	   /* Ingress name */
	const char *service;	   /* Service name */
} tg_logrec_t;

typedef struct tg_accesslog tg_accesslog_t;

/* Formats r as one line ending in '\n' into out (cap bytes). Long fields are
 * truncated so that the line always fits. Returns the length. */
size_t tg_accesslog_format(const tg_logrec_t *r, char *out, size_t cap);

/* Starts the logger thread writing to fd, with nrings rings of ring_size bytes.
 * Returns 0 or -errno. */
int tg_accesslog_start(int fd, int nrings, size_t ring_size, tg_accesslog_t **out);

/* Ring i, for worker i to produce into. */
tg_ring_t *tg_accesslog_ring(tg_accesslog_t *l, int i);

/* Writes out what is left (waiting at most ~1 s for a blocked fd), stops the
 * thread, frees l. Accepts NULL. */
void tg_accesslog_stop(tg_accesslog_t *l);

#endif

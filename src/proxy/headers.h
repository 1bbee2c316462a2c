/*
 * headers.h - the heads tidegate writes: the upstream request head and the
 * response head back to the client, as iovecs.
 *
 * Nothing the client or the backend sent is copied: the iovecs point at the
 * parsed lines in the receive buffer (runs of kept header lines become one
 * iovec each) and only the fields tidegate adds are written into a small
 * scratch area. The receive buffer must stay unchanged until the iovecs are
 * written.
 */
#ifndef TG_PROXY_HEADERS_H
#define TG_PROXY_HEADERS_H

#include "http/http.h"

#include <stdbool.h>
#include <sys/uio.h>

/* What the proxy adds to an upstream request. */
typedef struct tg_fwd_info {
	tg_str_t client_ip;   /* X-Real-IP; appended to X-Forwarded-For unless peer_ip */
	tg_str_t peer_ip;     /* appended to X-Forwarded-For instead (trusted forwarded
			       * headers: the proxy that connected); len 0: client_ip */
	tg_str_t server_port; /* X-Forwarded-Port: the listener's port */
	tg_str_t proto;	      /* X-Forwarded-Proto: "http" or "https" */
	tg_str_t request_id;  /* added as X-Request-ID; len 0 when the client's is kept */
	bool trust_forwarded; /* use-forwarded-headers: keep the client's
			       * X-Forwarded-Proto/-Host/-Port */
	bool drop_expect;     /* the proxy answers 100-continue itself: drop Expect */
	tg_str_t extra;	      /* header lines to add ("name: value\r\n"...), e.g. the
			       * ssl-client-* fields of a client certificate */
	/* Annotations (len 0: unchanged); referenced like the head, so they must
	 * stay unchanged until the iovecs are written. */
	tg_str_t target; /* rewrite-target: request target sent instead */
	tg_str_t host;	 /* upstream-vhost: Host sent instead of the client's */
	tg_str_t prefix; /* x-forwarded-prefix: X-Forwarded-Prefix sent (the
			  * client's is dropped) */
} tg_fwd_info_t;

/* What the proxy adds to a response. */
typedef struct tg_resp_info {
	bool keep_alive;     /* the client connection stays open after this response */
	bool client_http10;  /* the client spoke HTTP/1.0 */
	bool upgrade;	     /* 101 to an Upgrade request: tunnel follows */
	const char *date;    /* 29 bytes IMF-fixdate, used when the backend sent no Date */
	tg_str_t set_cookie; /* a Set-Cookie value to add (affinity), or len 0; must stay
			      * valid until the head is written */
} tg_resp_info_t;

/*
 * Builds the upstream request head for req, parsed from head[0..head_len).
 * Drops hop-by-hop fields (TG_HDR_HOP), client-sent ssl-client-* fields (only
 * tidegate may vouch for a client certificate), the client's X-Real-IP/Forwarded and
 * (unless trusted) X-Forwarded-Proto/-Host/-Port, Expect when drop_expect; adds
 * Host (absolute-form targets), X-Request-ID, X-Real-IP, X-Forwarded-For (the
 * client's list plus client_ip), -Host, -Port, -Proto, Transfer-Encoding:
 * chunked for chunked bodies, Connection: upgrade + Upgrade for upgrades and
 * Connection: keep-alive for HTTP/1.0. An absolute-form target is sent in
 * origin form. fi->target, ->host and ->prefix replace the target, the Host
 * field and X-Forwarded-Prefix (X-Forwarded-Host stays the client's host). Returns the number of
 * iovecs written to iov, or -1 when iov (max_iov entries) or scratch (scratch_len bytes) is too
 * small.
 */
int tg_proxy_request_head(const tg_http_request_t *req, const char *head, size_t head_len,
			  const tg_fwd_info_t *fi, struct iovec *iov, int max_iov, char *scratch,
			  size_t scratch_len);

/*
 * Builds the response head for the client from resp, parsed from
 * head[0..head_len). The status line is sent as HTTP/1.1; hop-by-hop fields are
 * dropped; Date and Server: tidegate are added when absent; Transfer-Encoding:
 * chunked is re-added for chunked bodies; Connection is written for the
 * client's persistence (close, keep-alive for HTTP/1.0, upgrade + the
 * backend's Upgrade value for 101). Returns the number of iovecs or -1 as
 * above.
 */
int tg_proxy_response_head(const tg_http_response_t *resp, const char *head, size_t head_len,
			   const tg_resp_info_t *ri, struct iovec *iov, int max_iov, char *scratch,
			   size_t scratch_len);

/* Total bytes described by iov[0..n). */
size_t tg_iov_len(const struct iovec *iov, int n);

#endif

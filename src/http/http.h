/*
 * http.h - HTTP/1.1 codec (RFC 9110, RFC 9112): incremental, zero-copy parsers
 * for request and response heads, a pass-through chunked-body scanner, and the
 * small helpers a proxy needs to write messages.
 *
 * Conventions (STYLE.md rule 3):
 *  - Parsers take the whole buffered input from the start of the message each
 *    time (like picohttpparser) and return the number of bytes of the head
 *    (request/status line + header fields + the empty line), TG_AGAIN when the
 *    head is not complete yet, or TG_ERROR when it is malformed. On TG_ERROR,
 *    `error` holds a static reason and `status` the response code a server
 *    should answer (400, 414, 431, 501, 505). Output fields are meaningful only
 *    when the result is a length.
 *  - Results are prefix-consistent: once a parser returns a length or TG_ERROR
 *    for some bytes, it returns the same for those bytes followed by anything.
 *  - The *_resume variants continue from the first line the previous call on
 *    the same struct had not finished, instead of re-reading the whole head
 *    after every TG_AGAIN; their results are identical to the plain calls.
 *  - Parsers never allocate and never write to the input. Every tg_str_t they
 *    return points into the caller's buffer, which must stay unchanged while the
 *    result is used.
 *  - The caller supplies the header array (headers, max_headers); more fields
 *    than that is an error (431).
 *
 * Strictness: anything that two implementations could read differently is an
 * error, because that ambiguity is what request smuggling exploits: obs-fold,
 * CR/LF/NUL inside a value, whitespace before the colon, non-token characters
 * in names or methods, bare LF line endings, duplicate or conflicting or
 * non-decimal Content-Length, Transfer-Encoding together with Content-Length,
 * Transfer-Encoding in HTTP/1.0, a final transfer coding other than chunked in
 * a request, chunked listed twice, several Host fields, a missing Host in
 * HTTP/1.1, versions other than HTTP/1.0 and HTTP/1.1.
 *
 * Decisions where the RFCs leave room (requests; responses get TG_ERROR for
 * the same framing cases, and the proxy answers 502):
 *  - Transfer-Encoding: names case-insensitive, OWS around elements fine.
 *    "chunked" alone -> chunked body. Chunked not last ("gzip", "xchunked",
 *    "identity", "chunked, gzip"), chunked twice (one line or several),
 *    parameters on chunked ("chunked;q=1"), empty elements ("chunked,"), any
 *    other syntax ("chunked x", ""chunked"") -> 400. Chunked last under
 *    other codings ("gzip, chunked", "identity, chunked") -> 501: a proxy
 *    that writes its own framing cannot pass them on.
 *  - Content-Length: 1*DIGIT below 2^63, OWS around it trimmed; a second
 *    field, "5, 5", signs, hex, inner spaces, empty -> 400. Responses accept
 *    identical repeats (RFC 9110 8.6), not differing ones.
 *  - Request line: exactly one SP between parts; methods are tokens
 *    (case-sensitive, "get" is TG_METHOD_OTHER); the target holds visible
 *    ASCII or bytes >= 0x80 (raw UTF-8 paths, as nginx accepts). Well-formed
 *    versions other than 1.0/1.1 -> 505, malformed ones -> 400. CRLFs before
 *    the request line are skipped (RFC 9112 2.2) and counted in the head.
 *  - Targets: absolute-form only for http/https, no userinfo, non-empty host;
 *    CONNECT needs host:port; "*" only for OPTIONS. Host fields must be a
 *    valid authority (or empty) -> else 400.
 *  - Sizes: a request line over max_line_bytes -> 414, a field line -> 431,
 *    the head over max_head_bytes -> 431, more fields than max_headers -> 431.
 *  - Connection options mark the fields they name hop-by-hop, except Host and
 *    Content-Length (a client must not make the proxy drop routing or
 *    framing); more than 32 such options -> 400.
 *  - Upgrade and Expect: 100-continue are ignored in HTTP/1.0 requests.
 */
#ifndef TG_HTTP_HTTP_H
#define TG_HTTP_HTTP_H

#include "core/common.h"

#include <stdint.h>
#include <sys/types.h>

/* Header field flags, set by the parsers. */
#define TG_HDR_HOP                                                                                 \
	0x01			   /* hop-by-hop: Connection, Keep-Alive, Proxy-Connection,        \
				    * TE, Trailer, Transfer-Encoding, Upgrade, and every           \
				    * field named in a Connection header. A proxy drops these      \
				    * (it writes its own framing and Connection). */
#define TG_HDR_HOST	      0x02 /* the Host field */
#define TG_HDR_CONTENT_LENGTH 0x04 /* the Content-Length field */
#define TG_HDR_XFWD                                                                                \
	0x08		       /* X-Forwarded-For/-Proto/-Host/-Port, X-Real-IP,                   \
				* Forwarded: replaced by the proxy unless trusted */
#define TG_HDR_REQUEST_ID 0x10 /* X-Request-ID */
#define TG_HDR_DATE	  0x20 /* Date (responses) */
#define TG_HDR_SERVER	  0x40 /* Server (responses) */

typedef struct tg_http_header {
	tg_str_t name;	/* field name as received (case preserved) */
	tg_str_t value; /* field value, leading and trailing OWS removed */
	uint32_t flags; /* TG_HDR_* */
} tg_http_header_t;

/* How the message body is delimited (RFC 9112 section 6.3). */
typedef enum tg_http_body {
	TG_BODY_NONE = 0,	 /* no body (also "Content-Length: 0") */
	TG_BODY_LENGTH = 1,	 /* content_length bytes, content_length > 0 */
	TG_BODY_CHUNKED = 2,	 /* chunked transfer coding; use tg_http_chunked_scan */
	TG_BODY_UNTIL_CLOSE = 3, /* responses only: until the server closes */
} tg_http_body_t;

typedef enum tg_http_target_form {
	TG_TARGET_ORIGIN = 0,	 /* /path?query */
	TG_TARGET_ABSOLUTE = 1,	 /* http://host/path?query */
	TG_TARGET_AUTHORITY = 2, /* host:port (CONNECT only) */
	TG_TARGET_ASTERISK = 3,	 /* * (OPTIONS only) */
} tg_http_target_form_t;

typedef enum tg_http_method {
	TG_METHOD_OTHER = 0, /* a valid token not listed here */
	TG_METHOD_GET,
	TG_METHOD_HEAD,
	TG_METHOD_POST,
	TG_METHOD_PUT,
	TG_METHOD_DELETE,
	TG_METHOD_CONNECT,
	TG_METHOD_OPTIONS,
	TG_METHOD_TRACE,
	TG_METHOD_PATCH,
} tg_http_method_t;

/* Limits a parser enforces; a zero field means the default in brackets. */
typedef struct tg_http_limits {
	uint32_t max_head_bytes; /* request/status line + fields [32768] -> 431 */
	uint32_t max_line_bytes; /* request line or one field line [8192] -> 431/414 */
} tg_http_limits_t;

/* Where a parse stopped, so that a *_resume call can continue there. Internal:
 * zero it (or the whole request/response) before the first call for a message;
 * the parsers zero it again when they return a length or TG_ERROR. */
typedef struct tg_http_parse_state {
	const char *base;   /* buffer of the call that returned TG_AGAIN, else NULL */
	size_t pos;	    /* offset of the first line not parsed yet */
	uint32_t seen;	    /* fields and options seen so far (parser.c SEEN_*) */
	uint16_t conn_opts; /* Connection options that name other fields */
	uint8_t stage;	    /* 0 before the start line, 1 in the header fields */
} tg_http_parse_state_t;

typedef struct tg_http_request {
	/* in */
	tg_http_header_t *headers; /* caller's array */
	size_t max_headers;	   /* its capacity */
	/* out */
	size_t num_headers;	    /* fields filled in headers[] */
	tg_str_t method;	    /* as received */
	tg_http_method_t method_id; /* parsed method */
	tg_str_t target;	    /* request-target as received */
	tg_http_target_form_t form; /* which form target has */
	tg_str_t path;		    /* target's path (absolute-form: after the authority,
				     * a static "/" when that is empty, "*" for OPTIONS;
				     * "*" for asterisk-form; empty for CONNECT), no query */
	tg_str_t query;		    /* after '?', without it (len 0 when absent) */
	tg_str_t host;		    /* authority to route on: absolute-form authority when
				     * present, else the Host field; port kept as sent */
	int version_minor;	    /* 0 or 1 (HTTP/1.x) */
	tg_http_body_t body;	    /* NONE, LENGTH or CHUNKED */
	uint64_t content_length;    /* with TG_BODY_LENGTH */
	bool keep_alive;	    /* persistence after this exchange (RFC 9112 9.3) */
	bool expect_continue;	    /* Expect: 100-continue */
	bool upgrade;		    /* Upgrade field present and Connection lists upgrade */
	tg_str_t upgrade_protocol;  /* the Upgrade field's value when upgrade */
	const char *error;	    /* reason when TG_ERROR */
	int status;		    /* status to answer when TG_ERROR */
	tg_http_parse_state_t priv; /* resumption state (tg_http_parse_request_resume) */
} tg_http_request_t;

typedef struct tg_http_response {
	/* in */
	tg_http_header_t *headers; /* caller's array */
	size_t max_headers;	   /* its capacity */
	/* out */
	size_t num_headers;	    /* fields filled in headers[] */
	int version_minor;	    /* 0 or 1 */
	int status;		    /* 100..599 */
	tg_str_t reason;	    /* reason phrase, may be empty */
	tg_http_body_t body;	    /* how the body is delimited */
	uint64_t content_length;    /* with TG_BODY_LENGTH */
	bool keep_alive;	    /* server allows the connection to be reused */
	bool upgrade;		    /* 101 Switching Protocols */
	bool tunnel;		    /* 101, or 2xx to CONNECT: after the head the connection
				     * carries opaque bytes both ways (body NONE) */
	const char *error;	    /* reason when TG_ERROR */
	tg_http_parse_state_t priv; /* resumption state (tg_http_parse_response_resume) */
} tg_http_response_t;

/*
 * Parses a request head from buf[0..len). Returns the head's length in bytes
 * (the body, if any, starts there), TG_AGAIN, or TG_ERROR with req->error and
 * req->status set. limits may be NULL (defaults).
 */
int tg_http_parse_request(const char *buf, size_t len, tg_http_request_t *req,
			  const tg_http_limits_t *limits);

/*
 * Same result as tg_http_parse_request, but when the previous call on req
 * returned TG_AGAIN for this same buf (same pointer, the earlier bytes
 * unchanged, len not smaller), parsing resumes at the first line that call had
 * not finished. req->priv must be zero before the first call for a message
 * (a zeroed req, or one whose last call returned a length or TG_ERROR). When
 * the buffer moved, the parse restarts from the beginning.
 */
int tg_http_parse_request_resume(const char *buf, size_t len, tg_http_request_t *req,
				 const tg_http_limits_t *limits);

/*
 * Parses a response head. `method` is the request's method: a response to HEAD
 * has no body whatever its fields say; a 2xx to CONNECT opens a tunnel.
 * 1xx responses other than 101 are returned like any other (body NONE); the
 * caller forwards them and parses again after them.
 */
int tg_http_parse_response(const char *buf, size_t len, tg_http_response_t *resp,
			   tg_http_method_t method, const tg_http_limits_t *limits);

/* tg_http_parse_response with resumption, under the rules of
 * tg_http_parse_request_resume. */
int tg_http_parse_response_resume(const char *buf, size_t len, tg_http_response_t *resp,
				  tg_http_method_t method, const tg_http_limits_t *limits);

/* State of a chunked body being passed through. Zero it to start. */
typedef struct tg_http_chunked {
	uint32_t state;		/* internal */
	uint64_t chunk_left;	/* data bytes left in the current chunk */
	uint64_t body_bytes;	/* decoded data bytes seen so far (for body limits) */
	uint32_t line_bytes;	/* bytes of the current size/extension/trailer line */
	uint32_t trailer_bytes; /* bytes of trailer section so far */
	const char *error;	/* reason when TG_ERROR */
} tg_http_chunked_t;

/*
 * Scans len bytes of a chunked body (RFC 9112 section 7.1) without changing
 * them, so a proxy can forward the original bytes. Returns how many bytes of
 * buf belong to the body (<= len); sets *done when the last chunk and the
 * trailer section have ended (bytes after that belong to the next message).
 * Returns TG_ERROR with c->error on a malformed size line, a size that
 * overflows 2^63, a bad extension, bare LF, a missing CRLF after data, or an
 * oversize line/trailer section.
 */
ssize_t tg_http_chunked_scan(tg_http_chunked_t *c, const char *buf, size_t len, bool *done);

/*
 * The same scan, stopping right after the first run of chunk data it passes:
 * returns the bytes consumed (framing up to and including that run), with
 * the run at buf + *data_off, *data_len bytes (*data_len 0: the consumed
 * bytes held no data). Calling it until it has consumed everything sees
 * exactly what tg_http_chunked_scan sees; the runs concatenated are the
 * decoded body. For a proxy that must strip the chunk framing (an HTTP/1.0
 * client cannot receive Transfer-Encoding). Errors as tg_http_chunked_scan.
 */
ssize_t tg_http_chunked_next_data(tg_http_chunked_t *c, const char *buf, size_t len, bool *done,
				  size_t *data_off, size_t *data_len);

/* Limits tg_http_chunked_scan enforces: one size or trailer line including its
 * CRLF, and the whole trailer section. */
#define TG_HTTP_CHUNK_LINE_MAX	  8192
#define TG_HTTP_CHUNK_TRAILER_MAX 32768

/* Reason phrase for a status code ("OK", "Not Found"; "" for unknown). */
const char *tg_http_reason(int status);

/* Writes the current time as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT")
 * into out[29] (no NUL). Caches the text for the current second per thread. */
void tg_http_date(char out[29]);

/* True when the method is idempotent (RFC 9110 9.2.2): GET, HEAD, PUT,
 * DELETE, OPTIONS, TRACE. */
bool tg_http_method_idempotent(tg_http_method_t m);

#endif

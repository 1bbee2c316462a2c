/*
 * parser.c - request and response head parsers (RFC 9112 sections 2-6,
 * RFC 9110 for field semantics).
 *
 * How it reads: the head is taken line by line. For the line starting at s the
 * parser computes a window [s, min(len, limit)), where limit is the first byte
 * that would make the line (s + max_line + CRLF) or the head (max_head) too
 * long. Every byte is examined only inside the window, left to right, and
 * running off the window's end means "need more" when more bytes can still fit
 * (len < limit) or the size error when they cannot. A result therefore depends
 * only on bytes already seen, which gives the two properties the callers and
 * the fuzz targets rely on:
 *  - a result other than TG_AGAIN for some bytes is the result for those bytes
 *    followed by anything (prefix consistency);
 *  - a parse resumed at the first unfinished line, with what the finished
 *    lines produced kept in the struct, ends exactly like a parse from byte 0.
 *
 * Semantics of each field are applied as soon as its line is complete, so the
 * first offending line decides the error; checks that need the whole head
 * (missing Host, final transfer coding, persistence, Connection-nominated
 * fields) run on the empty line.
 *
 * The value and target scans use SSE2 (baseline on x86-64) 16 bytes at a time
 * and never load past the window, so guard-page tests and ASan stay quiet.
 */
#include "http/http.h"

#include <limits.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define DEFAULT_MAX_HEAD 32768u
#define DEFAULT_MAX_LINE 8192u
/* More Connection options than this naming other fields is refused: marking is
 * O(options x fields) and real clients send one or two. */
#define MAX_CONN_OPTIONS 32

enum { STAGE_START = 0, STAGE_FIELDS = 1 };

/* tg_http_parse_state_t.seen bits */
#define SEEN_HOST	     (1u << 0) /* a Host field */
#define SEEN_CL		     (1u << 1) /* a Content-Length field */
#define SEEN_TE		     (1u << 2) /* a Transfer-Encoding field */
#define SEEN_TE_CHUNKED	     (1u << 3) /* chunked listed (always last: more is an error) */
#define SEEN_TE_OTHER	     (1u << 4) /* a coding other than chunked listed */
#define SEEN_CONN_CLOSE	     (1u << 5) /* Connection: close */
#define SEEN_CONN_KEEP_ALIVE (1u << 6) /* Connection: keep-alive */
#define SEEN_CONN_UPGRADE    (1u << 7) /* Connection: upgrade */
#define SEEN_UPGRADE	     (1u << 8) /* an Upgrade field */
#define SEEN_EXPECT_CONTINUE (1u << 9) /* Expect: 100-continue */

/* What a field name means to the parser beyond its TG_HDR_* flags. */
enum field_kind {
	F_OTHER = 0,
	F_HOST,
	F_CONTENT_LENGTH,
	F_TRANSFER_ENCODING,
	F_CONNECTION,
	F_UPGRADE,
	F_EXPECT,
};

/* tchar (RFC 9110 5.6.2): field names, methods, coding names, options. */
static const uint8_t tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1,		['&'] = 1,	   ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,		['^'] = 1,	   ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

/* field-vchar, SP and HTAB (RFC 9110 5.5): what a field value may hold. */
static const uint8_t value_ok[256] = {
    ['\t'] = 1,
    [0x20 ... 0x7e] = 1,
    [0x80 ... 0xff] = 1,
};

/* Bytes a request-target may hold: visible ASCII, plus bytes >= 0x80 because
 * real clients send raw UTF-8 paths (nginx accepts them); they pass through
 * unchanged. Controls, SP and DEL end or break the target. */
static const uint8_t target_ok[256] = {
    [0x21 ... 0x7e] = 1,
    [0x80 ... 0xff] = 1,
};

/* reg-name characters (RFC 3986 unreserved and sub-delims); '%' is checked
 * separately because it must start a pct-encoding. */
static const uint8_t regname_ok[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['-'] = 1, ['.'] = 1,  ['_'] = 1,
    ['~'] = 1,	       ['!'] = 1,	  ['$'] = 1,	     ['&'] = 1, ['\''] = 1, ['('] = 1,
    [')'] = 1,	       ['*'] = 1,	  ['+'] = 1,	     [','] = 1, [';'] = 1,  ['='] = 1,
};

/* Parse context of one call. */
struct ctx {
	const char *buf;   /* message start */
	size_t len;	   /* bytes available */
	size_t max_head;   /* the head may not extend past this offset */
	size_t max_line;   /* one line's bytes without CRLF */
	const char *error; /* reason when TG_ERROR */
	int status;	   /* status to answer when TG_ERROR */
};

static int fail(struct ctx *c, int status, const char *why)
{
	c->error = why;
	c->status = status;
	return TG_ERROR;
}

/* First offset the line starting at s may not reach: the line limit or the
 * head limit, whichever comes first. */
static inline size_t line_limit(const struct ctx *c, size_t s)
{
	size_t l = s + c->max_line + 2;

	return l < c->max_head ? l : c->max_head;
}

/*
 * The line starting at s needs a byte past the window. When more input could
 * still fit, that is TG_AGAIN; otherwise the line or the head is too long,
 * whichever limit comes first (the head on a tie), so that the answer never
 * depends on how much was buffered.
 */
static int out_of_window(struct ctx *c, size_t s, int line_status, const char *line_why)
{
	size_t l = s + c->max_line + 2;

	if (l < c->max_head) {
		if (c->len < l)
			return TG_AGAIN;
		return fail(c, line_status, line_why);
	}
	if (c->len < c->max_head)
		return TG_AGAIN;
	return fail(c, 431, "header section too large");
}

/* First byte in [p, end) that may not appear in a field value (a control other
 * than HTAB, or DEL), or end. */
static inline const char *scan_value(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i ctl_max = _mm_set1_epi8(0x1f);
	const __m128i tab = _mm_set1_epi8('\t');
	const __m128i del = _mm_set1_epi8(0x7f);

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		__m128i bad = _mm_cmpeq_epi8(_mm_min_epu8(v, ctl_max), v);

		bad = _mm_andnot_si128(_mm_cmpeq_epi8(v, tab), bad);
		bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, del));
		unsigned m = (unsigned)_mm_movemask_epi8(bad);
		if (m)
			return p + __builtin_ctz(m);
		p += 16;
	}
#endif
	while (p < end && value_ok[(uint8_t)*p])
		p++;
	return p;
}

/* First byte in [p, end) that ends or breaks a request-target (control, SP,
 * DEL), or end. */
static inline const char *scan_target(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i sp = _mm_set1_epi8(0x20);
	const __m128i del = _mm_set1_epi8(0x7f);

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		__m128i bad = _mm_cmpeq_epi8(_mm_min_epu8(v, sp), v);

		bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, del));
		unsigned m = (unsigned)_mm_movemask_epi8(bad);
		if (m)
			return p + __builtin_ctz(m);
		p += 16;
	}
#endif
	while (p < end && target_ok[(uint8_t)*p])
		p++;
	return p;
}

/* Compares a field name (token characters only) with a lower-case literal of
 * the same length made of letters and '-'. OR-ing 0x20 lower-cases letters and
 * maps no other token character onto a letter or '-'. */
static inline bool name_is(const char *n, const char *lit, size_t len)
{
	if (len >= 8) {
		/* Eight bytes a step, the last step overlapping the one before; no
		 * byte outside n[0..len) is read. */
		const uint64_t lower = 0x2020202020202020ull;
		uint64_t a, b;
		size_t i = 0;
		for (; i + 8 <= len; i += 8) {
			memcpy(&a, n + i, 8);
			memcpy(&b, lit + i, 8);
			if ((a | lower) != b)
				return false;
		}
		if (i < len) {
			memcpy(&a, n + len - 8, 8);
			memcpy(&b, lit + len - 8, 8);
			if ((a | lower) != b)
				return false;
		}
		return true;
	}
	for (size_t i = 0; i < len; i++)
		if ((n[i] | 0x20) != lit[i])
			return false;
	return true;
}

/* Sets the TG_HDR_* flags of a field from its name and says what else it means. */
static enum field_kind classify(tg_http_header_t *h)
{
	const char *n = h->name.ptr;
	size_t len = h->name.len;

#define IS(lit) name_is(n, lit, sizeof(lit) - 1)
	switch (len) {
	case 2:
		if (IS("te"))
			h->flags = TG_HDR_HOP;
		break;
	case 4:
		if (IS("host")) {
			h->flags = TG_HDR_HOST;
			return F_HOST;
		}
		if (IS("date"))
			h->flags = TG_HDR_DATE;
		break;
	case 6:
		if (IS("expect"))
			return F_EXPECT;
		if (IS("server"))
			h->flags = TG_HDR_SERVER;
		break;
	case 7:
		if (IS("upgrade")) {
			h->flags = TG_HDR_HOP;
			return F_UPGRADE;
		}
		if (IS("trailer"))
			h->flags = TG_HDR_HOP;
		break;
	case 9:
		if (IS("forwarded") || IS("x-real-ip"))
			h->flags = TG_HDR_XFWD;
		break;
	case 10:
		if (IS("connection")) {
			h->flags = TG_HDR_HOP;
			return F_CONNECTION;
		}
		if (IS("keep-alive"))
			h->flags = TG_HDR_HOP;
		break;
	case 12:
		if (IS("x-request-id"))
			h->flags = TG_HDR_REQUEST_ID;
		break;
	case 14:
		if (IS("content-length")) {
			h->flags = TG_HDR_CONTENT_LENGTH;
			return F_CONTENT_LENGTH;
		}
		break;
	case 15:
		if (IS("x-forwarded-for"))
			h->flags = TG_HDR_XFWD;
		break;
	case 16:
		if (IS("x-forwarded-host") || IS("x-forwarded-port"))
			h->flags = TG_HDR_XFWD;
		else if (IS("proxy-connection"))
			h->flags = TG_HDR_HOP;
		break;
	case 17:
		if (IS("transfer-encoding")) {
			h->flags = TG_HDR_HOP;
			return F_TRANSFER_ENCODING;
		}
		if (IS("x-forwarded-proto"))
			h->flags = TG_HDR_XFWD;
		break;
	}
#undef IS
	return F_OTHER;
}

static inline bool is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

static inline bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static inline bool is_hex(char ch)
{
	return is_digit(ch) || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f');
}

static inline bool is_alpha(char ch)
{
	return (ch | 0x20) >= 'a' && (ch | 0x20) <= 'z';
}

/*
 * List parsing (RFC 9110 5.6.1) for Connection and Transfer-Encoding. Calls
 * back nothing: next_element() returns the next element's token and whether
 * it carried parameters, so the callers stay straight-line code.
 */
struct list_iter {
	const char *p;	  /* next unread byte */
	const char *end;  /* end of the field value */
	bool after_comma; /* the last byte consumed was a comma */
};

enum { LIST_END = 0, LIST_ITEM = 1, LIST_EMPTY = 2, LIST_BAD = -1 };

/* Skips a quoted-string starting at p (which is '"'); returns the byte after
 * the closing quote, or NULL when it is not closed. The value's bytes were
 * already checked for controls. */
static const char *skip_quoted(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '"')
			return p + 1;
		if (*p == '\\' && ++p == end)
			return NULL;
	}
	return NULL;
}

/* Reads the next list element: a token, optional ";name=value" parameters
 * (only when params_ok), OWS, then ',' or the end. LIST_EMPTY for an empty
 * element (",,", a leading or a trailing comma). */
static int next_element(struct list_iter *it, tg_str_t *tok, bool *has_params, bool params_ok)
{
	const char *p = it->p, *end = it->end;

	*has_params = false;
	while (p < end && is_ows(*p))
		p++;
	if (p == end) {
		it->p = p;
		if (it->after_comma) {
			it->after_comma = false;
			return LIST_EMPTY;
		}
		return LIST_END;
	}
	if (*p == ',') {
		it->p = p + 1;
		it->after_comma = true;
		return LIST_EMPTY;
	}
	const char *t = p;
	while (p < end && tchar[(uint8_t)*p])
		p++;
	if (p == t)
		return LIST_BAD;
	*tok = (tg_str_t){t, (size_t)(p - t)};
	for (;;) {
		while (p < end && is_ows(*p))
			p++;
		if (p == end || *p == ',')
			break;
		if (*p != ';' || !params_ok)
			return LIST_BAD;
		/* transfer-parameter = token BWS "=" BWS ( token / quoted-string ) */
		*has_params = true;
		p++;
		while (p < end && is_ows(*p))
			p++;
		const char *n = p;
		while (p < end && tchar[(uint8_t)*p])
			p++;
		if (p == n)
			return LIST_BAD;
		while (p < end && is_ows(*p))
			p++;
		if (p == end || *p != '=')
			return LIST_BAD;
		p++;
		while (p < end && is_ows(*p))
			p++;
		if (p < end && *p == '"') {
			p = skip_quoted(p, end);
			if (!p)
				return LIST_BAD;
		} else {
			const char *v = p;
			while (p < end && tchar[(uint8_t)*p])
				p++;
			if (p == v)
				return LIST_BAD;
		}
	}
	it->after_comma = p < end;
	it->p = p < end ? p + 1 : p;
	return LIST_ITEM;
}

/* Connection options: close, keep-alive, upgrade, or a field name. */
static int connection_field(struct ctx *c, tg_http_parse_state_t *st, tg_str_t v)
{
	struct list_iter it = {v.ptr, v.ptr + v.len, false};
	tg_str_t tok;
	bool params;
	int r;

	while ((r = next_element(&it, &tok, &params, false)) != LIST_END) {
		if (r == LIST_BAD)
			return fail(c, 400, "invalid Connection header field");
		if (r == LIST_EMPTY)
			continue; /* RFC 9110 5.6.1: empty elements are ignored */
		if (tok.len == 5 && name_is(tok.ptr, "close", 5))
			st->seen |= SEEN_CONN_CLOSE;
		else if (tok.len == 10 && name_is(tok.ptr, "keep-alive", 10))
			st->seen |= SEEN_CONN_KEEP_ALIVE;
		else if (tok.len == 7 && name_is(tok.ptr, "upgrade", 7))
			st->seen |= SEEN_CONN_UPGRADE;
		else if (++st->conn_opts > MAX_CONN_OPTIONS)
			return fail(c, 400, "too many Connection options");
	}
	return TG_OK;
}

/*
 * Transfer-Encoding, for requests and responses alike. Decisions (RFC 9112
 * 6.1, 6.3, 7): coding names are case-insensitive; an element after chunked
 * (chunked twice, or chunked not final) and parameters on chunked are 400
 * because recipients disagree on what they mean; empty list elements and any
 * other list syntax error are 400 for the same reason. Codings other than
 * chunked are remembered: the final checks turn them into 400 (chunked not
 * final) or 501 (chunked final but another coding under it, which a proxy
 * that writes its own framing cannot forward).
 */
static int transfer_encoding_field(struct ctx *c, tg_http_parse_state_t *st, tg_str_t v)
{
	struct list_iter it = {v.ptr, v.ptr + v.len, false};
	tg_str_t tok;
	bool params;
	int r, n = 0;

	while ((r = next_element(&it, &tok, &params, true)) != LIST_END) {
		if (r == LIST_BAD)
			return fail(c, 400, "invalid Transfer-Encoding");
		if (r == LIST_EMPTY)
			return fail(c, 400, "empty element in Transfer-Encoding");
		n++;
		if (st->seen & SEEN_TE_CHUNKED)
			return fail(c, 400,
				    tok.len == 7 && name_is(tok.ptr, "chunked", 7)
					? "chunked listed twice in Transfer-Encoding"
					: "transfer coding after chunked");
		if (tok.len == 7 && name_is(tok.ptr, "chunked", 7)) {
			if (params)
				return fail(c, 400, "parameters on chunked");
			st->seen |= SEEN_TE_CHUNKED;
		} else {
			st->seen |= SEEN_TE_OTHER;
		}
	}
	if (n == 0)
		return fail(c, 400, "empty Transfer-Encoding");
	st->seen |= SEEN_TE;
	return TG_OK;
}

/* 1*DIGIT below 2^63. */
static bool parse_decimal(const char *p, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 19)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit(p[i]))
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (v > (uint64_t)INT64_MAX)
		return false;
	*out = v;
	return true;
}

/* pct-encoded or reg-name characters in [p, end). */
static bool valid_reg_name(const char *p, const char *end)
{
	while (p < end) {
		if (*p == '%') {
			if (end - p < 3 || !is_hex(p[1]) || !is_hex(p[2]))
				return false;
			p += 3;
		} else if (regname_ok[(uint8_t)*p]) {
			p++;
		} else {
			return false;
		}
	}
	return true;
}

/*
 * authority = host [ ":" port ] with host a reg-name (non-empty) or an
 * IP-literal in brackets; no userinfo (RFC 9110 4.2.4 says to treat it as an
 * error). The port, when the colon is there, is 1 to 5 digits; need_port for
 * CONNECT's authority-form.
 */
static bool valid_authority(const char *p, size_t len, bool need_port)
{
	const char *end = p + len, *host_end;

	if (len == 0)
		return false;
	if (*p == '[') {
		const char *q = p + 1;
		while (q < end && (is_hex(*q) || *q == ':' || *q == '.'))
			q++;
		if (q == end || *q != ']' || q == p + 1)
			return false;
		host_end = q + 1;
	} else {
		host_end = memchr(p, ':', len);
		if (!host_end)
			host_end = end;
		if (host_end == p || !valid_reg_name(p, host_end))
			return false;
	}
	if (host_end == end)
		return !need_port;
	if (*host_end != ':')
		return false;
	size_t plen = (size_t)(end - host_end - 1);
	if (plen == 0 || plen > 5)
		return false;
	for (const char *q = host_end + 1; q < end; q++)
		if (!is_digit(*q))
			return false;
	return true;
}

/* Splits a path-and-query at the first '?'. */
static void split_query(const char *p, size_t len, tg_str_t *path, tg_str_t *query)
{
	const char *q = memchr(p, '?', len);

	if (q) {
		*path = (tg_str_t){p, (size_t)(q - p)};
		*query = (tg_str_t){q + 1, len - (size_t)(q - p) - 1};
	} else {
		*path = (tg_str_t){p, len};
		*query = (tg_str_t){p + len, 0};
	}
}

/* Decides the target's form and fills path, query and (absolute and authority
 * forms) host. RFC 9112 3.2. */
static int request_target(struct ctx *c, tg_http_request_t *req)
{
	const char *t = req->target.ptr;
	size_t len = req->target.len;

	if (req->method_id == TG_METHOD_CONNECT) {
		if (!valid_authority(t, len, true))
			return fail(c, 400, "CONNECT needs an authority-form target (host:port)");
		req->form = TG_TARGET_AUTHORITY;
		req->host = req->target;
		req->path = (tg_str_t){t, 0};
		req->query = (tg_str_t){t + len, 0};
		return TG_OK;
	}
	if (t[0] == '/') {
		req->form = TG_TARGET_ORIGIN;
		split_query(t, len, &req->path, &req->query);
		return TG_OK;
	}
	if (len == 1 && t[0] == '*') {
		if (req->method_id != TG_METHOD_OPTIONS)
			return fail(c, 400, "asterisk-form target is only for OPTIONS");
		req->form = TG_TARGET_ASTERISK;
		req->path = req->target;
		req->query = (tg_str_t){t + 1, 0};
		return TG_OK;
	}
	/* absolute-form: only http and https make sense for an HTTP proxy. name_is
	 * is safe here: no target byte ORs with 0x20 into ':' or '/' except
	 * controls, which the target scan refused. */
	size_t skip;
	if (len >= 7 && name_is(t, "http://", 7))
		skip = 7;
	else if (len >= 8 && name_is(t, "https://", 8))
		skip = 8;
	else if (is_alpha(t[0]))
		return fail(c, 400,
			    "unsupported request-target (absolute-form needs http or https)");
	else
		return fail(c, 400, "invalid request-target");
	const char *a = t + skip, *end = t + len, *ae = a;
	while (ae < end && *ae != '/' && *ae != '?')
		ae++;
	if (!valid_authority(a, (size_t)(ae - a), false))
		return fail(c, 400, "invalid authority in absolute-form target");
	req->form = TG_TARGET_ABSOLUTE;
	req->host = (tg_str_t){a, (size_t)(ae - a)};
	split_query(ae, (size_t)(end - ae), &req->path, &req->query);
	if (req->path.len == 0) /* RFC 9112 3.2.1 and 3.2.4: an empty path is sent as / or * */
		req->path = req->method_id == TG_METHOD_OPTIONS ? TG_STR("*") : TG_STR("/");
	return TG_OK;
}

static tg_http_method_t method_id(const char *m, size_t len)
{
	switch (len) {
	case 3:
		if (memcmp(m, "GET", 3) == 0)
			return TG_METHOD_GET;
		if (memcmp(m, "PUT", 3) == 0)
			return TG_METHOD_PUT;
		break;
	case 4:
		if (memcmp(m, "POST", 4) == 0)
			return TG_METHOD_POST;
		if (memcmp(m, "HEAD", 4) == 0)
			return TG_METHOD_HEAD;
		break;
	case 5:
		if (memcmp(m, "PATCH", 5) == 0)
			return TG_METHOD_PATCH;
		if (memcmp(m, "TRACE", 5) == 0)
			return TG_METHOD_TRACE;
		break;
	case 6:
		if (memcmp(m, "DELETE", 6) == 0)
			return TG_METHOD_DELETE;
		break;
	case 7:
		if (memcmp(m, "OPTIONS", 7) == 0)
			return TG_METHOD_OPTIONS;
		if (memcmp(m, "CONNECT", 7) == 0)
			return TG_METHOD_CONNECT;
		break;
	}
	return TG_METHOD_OTHER;
}

/*
 * "HTTP/" DIGIT "." DIGIT CRLF at p, the window ending at end. Returns the
 * minor version, TG_AGAIN-like -3 when the window is too short, or TG_ERROR.
 * A well-formed version other than 1.0/1.1 is 505; anything else 400.
 */
#define NEED_MORE (-3)
static int http_version(struct ctx *c, const char *p, const char *end, bool crlf, int bad_version)
{
	size_t need = crlf ? 10 : 8;

	if ((size_t)(end - p) < need)
		return NEED_MORE;
	if (memcmp(p, "HTTP/", 5) != 0 || !is_digit(p[5]) || p[6] != '.' || !is_digit(p[7]))
		return fail(c, 400, "invalid HTTP version");
	if (crlf) {
		if (p[8] == '\n')
			return fail(c, 400, "bare LF after the request line");
		if (p[8] != '\r')
			return fail(c, 400, "invalid HTTP version");
		if (p[9] != '\n')
			return fail(c, 400, "bare CR after the request line");
	}
	if (p[5] != '1' || p[7] > '1')
		return fail(c, bad_version, "unsupported HTTP version");
	return p[7] - '0';
}

/* Skips CRLFs before the start line (RFC 9112 2.2 allows ignoring them). */
static int skip_empty_lines(struct ctx *c, size_t *s, int line_status, const char *line_why)
{
	for (;;) {
		size_t lim = line_limit(c, *s), wend = TG_MIN(c->len, lim);
		const char *p = c->buf + *s;

		if (*s >= wend)
			return out_of_window(c, *s, line_status, line_why);
		if (*p == '\n')
			return fail(c, 400, "bare LF before the start line");
		if (*p != '\r')
			return TG_OK;
		if (*s + 1 >= wend)
			return out_of_window(c, *s, line_status, line_why);
		if (p[1] != '\n')
			return fail(c, 400, "bare CR before the start line");
		*s += 2;
	}
}

/* request-line = method SP request-target SP HTTP-version CRLF */
static int request_line(struct ctx *c, size_t s, size_t *next, tg_http_request_t *req)
{
	static const char too_long[] = "request line too long";
	const char *buf = c->buf;
	const char *end = buf + TG_MIN(c->len, line_limit(c, s));
	const char *p = buf + s, *m = p;

	while (p < end && tchar[(uint8_t)*p])
		p++;
	if (p == end)
		return out_of_window(c, s, 414, too_long);
	if (*p != ' ') {
		if (p == m)
			return fail(c, 400, "invalid method");
		if (*p == '\r' || *p == '\n')
			return fail(c, 400, "request line without a target");
		return fail(c, 400, "invalid character in method");
	}
	if (p == m)
		return fail(c, 400, "invalid method");
	req->method = (tg_str_t){m, (size_t)(p - m)};
	req->method_id = method_id(m, (size_t)(p - m));

	const char *t = ++p;
	p = scan_target(p, end);
	if (p == end)
		return out_of_window(c, s, 414, too_long);
	if (*p != ' ') {
		if (p == t)
			return fail(c, 400, "empty request-target or extra whitespace");
		if (*p == '\r' || *p == '\n')
			return fail(c, 400, "request line without HTTP version (HTTP/0.9)");
		return fail(c, 400, "invalid character in request-target");
	}
	if (p == t)
		return fail(c, 400, "empty request-target or extra whitespace");
	req->target = (tg_str_t){t, (size_t)(p - t)};

	int v = http_version(c, p + 1, end, true, 505);
	if (v == NEED_MORE)
		return out_of_window(c, s, 414, too_long);
	if (v < 0)
		return v;
	req->version_minor = v;
	*next = (size_t)(p + 11 - buf);
	return request_target(c, req);
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF, where a
 * missing SP before an empty reason is tolerated ("HTTP/1.0 200"). */
static int status_line(struct ctx *c, size_t s, size_t *next, tg_http_response_t *resp)
{
	static const char too_long[] = "status line too long";
	const char *buf = c->buf;
	const char *end = buf + TG_MIN(c->len, line_limit(c, s));
	const char *p = buf + s;

	int v = http_version(c, p, end, false, 502);
	if (v == NEED_MORE)
		return out_of_window(c, s, 502, too_long);
	if (v < 0)
		return v;
	if (end - p < 13)
		return out_of_window(c, s, 502, too_long);
	if (p[8] != ' ' || !is_digit(p[9]) || !is_digit(p[10]) || !is_digit(p[11]))
		return fail(c, 502, "invalid status line");
	int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	if (status < 100 || status > 599)
		return fail(c, 502, "status code out of range");
	const char *r = p + 12, *re;
	if (*r == ' ') {
		r++;
		re = scan_value(r, end);
	} else {
		re = r;
	}
	if (re == end)
		return out_of_window(c, s, 502, too_long);
	if (*re != '\r') {
		if (*re == '\n')
			return fail(c, 502, "bare LF after the status line");
		return fail(c, 502,
			    re == r && r == p + 12 ? "invalid status line"
						   : "invalid character in reason phrase");
	}
	if (re + 1 == end)
		return out_of_window(c, s, 502, too_long);
	if (re[1] != '\n')
		return fail(c, 502, "bare CR in the status line");
	resp->version_minor = v;
	resp->status = status;
	resp->reason = (tg_str_t){r, (size_t)(re - r)};
	*next = (size_t)(re + 2 - buf);
	return TG_OK;
}

#define LINE_FIELD 1 /* a field line was parsed */
#define LINE_END   0 /* the empty line ending the head */

/*
 * One field line (or the empty line) at s: field-name ":" OWS field-value OWS
 * CRLF. Fills headers[num] (name, trimmed value, flags cleared) only when the
 * line is complete. err_status is 400 for requests and 502 for responses.
 */
static int field_line(struct ctx *c, size_t s, size_t *next, tg_http_header_t *headers, size_t num,
		      size_t max, int err_status)
{
	static const char too_long[] = "header field line too long";
	const char *buf = c->buf;
	const char *end = buf + TG_MIN(c->len, line_limit(c, s));
	const char *p = buf + s, *n = p;

	if (p == end)
		return out_of_window(c, s, 431, too_long);
	switch (*p) {
	case '\r':
		if (p + 1 == end)
			return out_of_window(c, s, 431, too_long);
		if (p[1] != '\n')
			return fail(c, err_status, "bare CR in the header section");
		*next = s + 2;
		return LINE_END;
	case '\n':
		return fail(c, err_status, "bare LF in the header section");
	case ' ':
	case '\t':
		return fail(c, err_status,
			    num == 0 ? "whitespace before the first header field"
				     : "obsolete line folding (obs-fold)");
	}
	if (num >= max)
		return fail(c, 431, "too many header fields");
	while (p < end && tchar[(uint8_t)*p])
		p++;
	if (p == end)
		return out_of_window(c, s, 431, too_long);
	if (*p != ':') {
		if (is_ows(*p))
			return fail(c, err_status, "whitespace between field name and colon");
		if (*p == '\r' || *p == '\n')
			return fail(c, err_status, "header field line without a colon");
		return fail(c, err_status, "invalid character in field name");
	}
	if (p == n)
		return fail(c, err_status, "empty field name");
	const char *ne = p++;
	while (p < end && is_ows(*p))
		p++;
	const char *v = p;
	p = scan_value(p, end);
	if (p == end)
		return out_of_window(c, s, 431, too_long);
	if (*p != '\r') {
		if (*p == '\n')
			return fail(c, err_status, "bare LF in the header section");
		if (*p == '\0')
			return fail(c, err_status, "NUL in field value");
		return fail(c, err_status, "control character in field value");
	}
	if (p + 1 == end)
		return out_of_window(c, s, 431, too_long);
	if (p[1] != '\n')
		return fail(c, err_status, "bare CR in field value");
	const char *ve = p;
	while (ve > v && is_ows(ve[-1]))
		ve--;
	headers[num].name = (tg_str_t){n, (size_t)(ne - n)};
	headers[num].value = (tg_str_t){v, (size_t)(ve - v)};
	headers[num].flags = 0;
	*next = (size_t)(p + 2 - buf);
	return LINE_FIELD;
}

/* Meaning of one complete request field. */
static int request_field(struct ctx *c, tg_http_request_t *req, tg_http_header_t *h)
{
	tg_http_parse_state_t *st = &req->priv;

	switch (classify(h)) {
	case F_OTHER:
		return TG_OK;
	case F_HOST:
		if (st->seen & SEEN_HOST)
			return fail(c, 400, "multiple Host header fields");
		st->seen |= SEEN_HOST;
		/* RFC 9112 3.2: an empty Host is valid when the target has no authority */
		if (h->value.len && !valid_authority(h->value.ptr, h->value.len, false))
			return fail(c, 400, "invalid Host header field");
		if (req->form == TG_TARGET_ORIGIN || req->form == TG_TARGET_ASTERISK)
			req->host = h->value;
		return TG_OK;
	case F_CONTENT_LENGTH:
		if (st->seen & SEEN_CL)
			return fail(c, 400, "duplicate Content-Length");
		if (st->seen & SEEN_TE)
			return fail(c, 400, "both Transfer-Encoding and Content-Length");
		if (!parse_decimal(h->value.ptr, h->value.len, &req->content_length))
			return fail(c, 400, "invalid Content-Length");
		st->seen |= SEEN_CL;
		return TG_OK;
	case F_TRANSFER_ENCODING:
		if (req->version_minor == 0)
			return fail(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
		if (st->seen & SEEN_CL)
			return fail(c, 400, "both Transfer-Encoding and Content-Length");
		return transfer_encoding_field(c, st, h->value);
	case F_CONNECTION:
		return connection_field(c, st, h->value);
	case F_UPGRADE:
		/* the first non-empty Upgrade names the protocol asked for */
		if (!(st->seen & SEEN_UPGRADE) && h->value.len) {
			req->upgrade_protocol = h->value;
			st->seen |= SEEN_UPGRADE;
		}
		return TG_OK;
	case F_EXPECT:
		if (tg_str_caseeq(h->value, "100-continue", 12))
			st->seen |= SEEN_EXPECT_CONTINUE;
		return TG_OK;
	}
	return TG_OK;
}

/* Content-Length in a response: identical repeats (separate lines or "5, 5")
 * are tolerated as RFC 9110 8.6 allows, anything else is an error. */
static int response_content_length(struct ctx *c, tg_http_response_t *resp, tg_str_t v)
{
	tg_http_parse_state_t *st = &resp->priv;
	const char *p = v.ptr, *end = v.ptr + v.len;

	for (;;) {
		const char *e = memchr(p, ',', (size_t)(end - p));
		const char *ie = e ? e : end;
		uint64_t n;
		while (p < ie && is_ows(*p))
			p++;
		while (ie > p && is_ows(ie[-1]))
			ie--;
		if (!parse_decimal(p, (size_t)(ie - p), &n))
			return fail(c, 502, "invalid Content-Length");
		if ((st->seen & SEEN_CL) && n != resp->content_length)
			return fail(c, 502, "conflicting Content-Length values");
		resp->content_length = n;
		st->seen |= SEEN_CL;
		if (!e)
			return TG_OK;
		p = e + 1; /* a trailing comma leaves an empty element: invalid */
	}
}

/* Meaning of one complete response field. */
static int response_field(struct ctx *c, tg_http_response_t *resp, tg_http_header_t *h)
{
	tg_http_parse_state_t *st = &resp->priv;

	switch (classify(h)) {
	case F_CONTENT_LENGTH:
		if (st->seen & SEEN_TE)
			return fail(c, 502, "both Transfer-Encoding and Content-Length");
		return response_content_length(c, resp, h->value);
	case F_TRANSFER_ENCODING:
		if (resp->version_minor == 0)
			return fail(c, 502, "Transfer-Encoding in an HTTP/1.0 response");
		if (st->seen & SEEN_CL)
			return fail(c, 502, "both Transfer-Encoding and Content-Length");
		return transfer_encoding_field(c, st, h->value);
	case F_CONNECTION:
		return connection_field(c, st, h->value);
	default:
		return TG_OK;
	}
}

/*
 * Marks every field named by a Connection option as hop-by-hop (RFC 9110
 * 7.6.1). Host and Content-Length are never marked: a client could otherwise
 * make a proxy drop the fields that route and frame the message.
 */
static void mark_connection_options(tg_http_header_t *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (h[i].name.len != 10 || !(h[i].flags & TG_HDR_HOP) ||
		    !name_is(h[i].name.ptr, "connection", 10))
			continue;
		struct list_iter it = {h[i].value.ptr, h[i].value.ptr + h[i].value.len, false};
		tg_str_t tok;
		bool params;
		int r;
		while ((r = next_element(&it, &tok, &params, false)) != LIST_END) {
			if (r != LIST_ITEM)
				continue;
			for (size_t j = 0; j < n; j++) {
				if (h[j].flags & (TG_HDR_HOP | TG_HDR_HOST | TG_HDR_CONTENT_LENGTH))
					continue;
				if (tg_str_caseeq(h[j].name, tok.ptr, tok.len))
					h[j].flags |= TG_HDR_HOP;
			}
		}
	}
}

/* Checks that need the whole request head, and the derived fields. */
static int request_finish(struct ctx *c, tg_http_request_t *req)
{
	uint32_t seen = req->priv.seen;
	bool v11 = req->version_minor == 1;

	if (v11 && !(seen & SEEN_HOST))
		return fail(c, 400, "missing Host header field");
	if (seen & SEEN_TE) {
		/* RFC 9112 6.3 rule 4 */
		if (!(seen & SEEN_TE_CHUNKED))
			return fail(c, 400, "chunked is not the final transfer coding");
		/* RFC 9112 6.1: a coding we do not implement */
		if (seen & SEEN_TE_OTHER)
			return fail(c, 501, "unsupported transfer coding");
		req->body = TG_BODY_CHUNKED;
	} else if ((seen & SEEN_CL) && req->content_length > 0) {
		req->body = TG_BODY_LENGTH;
	}
	/* RFC 9112 9.3 */
	req->keep_alive = !(seen & SEEN_CONN_CLOSE) && (v11 || (seen & SEEN_CONN_KEEP_ALIVE));
	/* RFC 9110 7.8 and 10.1.1: both are ignored in HTTP/1.0 requests */
	req->upgrade = v11 && (seen & SEEN_UPGRADE) && (seen & SEEN_CONN_UPGRADE);
	if (!req->upgrade)
		req->upgrade_protocol = (tg_str_t){NULL, 0};
	req->expect_continue = v11 && (seen & SEEN_EXPECT_CONTINUE);
	if (req->priv.conn_opts)
		mark_connection_options(req->headers, req->num_headers);
	return TG_OK;
}

/* Body framing of a response, RFC 9112 6.3. */
static int response_finish(struct ctx *c, tg_http_response_t *resp, tg_http_method_t method)
{
	uint32_t seen = resp->priv.seen;
	int status = resp->status;

	if (seen & SEEN_TE) {
		/* A proxy that re-frames cannot pass other codings on; real servers
		 * send plain chunked. */
		if (!(seen & SEEN_TE_CHUNKED))
			return fail(c, 502, "chunked is not the final transfer coding");
		if (seen & SEEN_TE_OTHER)
			return fail(c, 502, "unsupported transfer coding");
	}
	resp->keep_alive = !(seen & SEEN_CONN_CLOSE) &&
			   (resp->version_minor == 1 || (seen & SEEN_CONN_KEEP_ALIVE));
	if (method == TG_METHOD_HEAD || status < 200 || status == 204 || status == 304) {
		resp->body = TG_BODY_NONE;
	} else if (method == TG_METHOD_CONNECT && status < 300) {
		resp->body = TG_BODY_NONE;
		resp->tunnel = true;
	} else if (seen & SEEN_TE) {
		resp->body = TG_BODY_CHUNKED;
	} else if (seen & SEEN_CL) {
		resp->body = resp->content_length ? TG_BODY_LENGTH : TG_BODY_NONE;
	} else {
		resp->body = TG_BODY_UNTIL_CLOSE;
		resp->keep_alive = false;
	}
	if (status == 101) {
		resp->upgrade = true;
		resp->tunnel = true;
	}
	if (resp->tunnel)
		resp->keep_alive = false;
	if (resp->priv.conn_opts)
		mark_connection_options(resp->headers, resp->num_headers);
	return TG_OK;
}

static void ctx_init(struct ctx *c, const char *buf, size_t len, const tg_http_limits_t *limits)
{
	size_t max_head =
	    limits && limits->max_head_bytes ? limits->max_head_bytes : DEFAULT_MAX_HEAD;
	size_t max_line =
	    limits && limits->max_line_bytes ? limits->max_line_bytes : DEFAULT_MAX_LINE;

	c->buf = buf;
	c->len = len;
	/* the head length is returned as an int */
	c->max_head = TG_MIN(max_head, (size_t)INT_MAX);
	/* no line can be longer than the head; also keeps s + max_line + 2 from
	 * wrapping where size_t is 32 bits */
	c->max_line = TG_MIN(max_line, c->max_head);
	c->error = NULL;
	c->status = 0;
}

static void request_reset(tg_http_request_t *req)
{
	req->num_headers = 0;
	req->method = (tg_str_t){NULL, 0};
	req->method_id = TG_METHOD_OTHER;
	req->target = req->path = req->query = req->host = (tg_str_t){NULL, 0};
	req->form = TG_TARGET_ORIGIN;
	req->version_minor = 0;
	req->body = TG_BODY_NONE;
	req->content_length = 0;
	req->keep_alive = req->expect_continue = req->upgrade = false;
	req->upgrade_protocol = (tg_str_t){NULL, 0};
	req->error = NULL;
	req->status = 0;
	memset(&req->priv, 0, sizeof(req->priv));
}

static void response_reset(tg_http_response_t *resp)
{
	resp->num_headers = 0;
	resp->version_minor = 0;
	resp->status = 0;
	resp->reason = (tg_str_t){NULL, 0};
	resp->body = TG_BODY_NONE;
	resp->content_length = 0;
	resp->keep_alive = resp->upgrade = resp->tunnel = false;
	resp->error = NULL;
	memset(&resp->priv, 0, sizeof(resp->priv));
}

/* Records where to resume after TG_AGAIN, or forgets it after a final result. */
static int request_result(struct ctx *c, tg_http_request_t *req, size_t pos, int r)
{
	if (r == TG_AGAIN) {
		req->priv.base = c->buf;
		req->priv.pos = pos;
		return r;
	}
	memset(&req->priv, 0, sizeof(req->priv));
	if (r == TG_ERROR) {
		req->error = c->error;
		req->status = c->status;
	}
	return r;
}

static int request_run(struct ctx *c, tg_http_request_t *req)
{
	tg_http_parse_state_t *st = &req->priv;
	size_t s = st->pos;
	int r;

	if (st->stage == STAGE_START) {
		r = skip_empty_lines(c, &s, 414, "request line too long");
		if (r != TG_OK)
			return request_result(c, req, s, r);
		st->pos = s;
		r = request_line(c, s, &s, req);
		if (r != TG_OK)
			return request_result(c, req, st->pos, r);
		st->stage = STAGE_FIELDS;
	}
	for (;;) {
		size_t line = s;
		r = field_line(c, s, &s, req->headers, req->num_headers, req->max_headers, 400);
		if (r == LINE_END)
			break;
		if (r < 0)
			return request_result(c, req, line, r);
		r = request_field(c, req, &req->headers[req->num_headers]);
		if (r < 0)
			return request_result(c, req, line, r);
		req->num_headers++;
	}
	r = request_finish(c, req);
	return request_result(c, req, 0, r < 0 ? r : (int)s);
}

int tg_http_parse_request(const char *buf, size_t len, tg_http_request_t *req,
			  const tg_http_limits_t *limits)
{
	struct ctx c;

	ctx_init(&c, buf, len, limits);
	request_reset(req);
	return request_run(&c, req);
}

int tg_http_parse_request_resume(const char *buf, size_t len, tg_http_request_t *req,
				 const tg_http_limits_t *limits)
{
	struct ctx c;

	ctx_init(&c, buf, len, limits);
	if (req->priv.base != buf || req->priv.pos > len)
		request_reset(req);
	return request_run(&c, req);
}

static int response_result(struct ctx *c, tg_http_response_t *resp, size_t pos, int r)
{
	if (r == TG_AGAIN) {
		resp->priv.base = c->buf;
		resp->priv.pos = pos;
		return r;
	}
	memset(&resp->priv, 0, sizeof(resp->priv));
	if (r == TG_ERROR)
		resp->error = c->error;
	return r;
}

static int response_run(struct ctx *c, tg_http_response_t *resp, tg_http_method_t method)
{
	tg_http_parse_state_t *st = &resp->priv;
	size_t s = st->pos;
	int r;

	if (st->stage == STAGE_START) {
		r = skip_empty_lines(c, &s, 502, "status line too long");
		if (r != TG_OK)
			return response_result(c, resp, s, r);
		st->pos = s;
		r = status_line(c, s, &s, resp);
		if (r != TG_OK)
			return response_result(c, resp, st->pos, r);
		st->stage = STAGE_FIELDS;
	}
	for (;;) {
		size_t line = s;
		r = field_line(c, s, &s, resp->headers, resp->num_headers, resp->max_headers, 502);
		if (r == LINE_END)
			break;
		if (r < 0)
			return response_result(c, resp, line, r);
		r = response_field(c, resp, &resp->headers[resp->num_headers]);
		if (r < 0)
			return response_result(c, resp, line, r);
		resp->num_headers++;
	}
	r = response_finish(c, resp, method);
	return response_result(c, resp, 0, r < 0 ? r : (int)s);
}

int tg_http_parse_response(const char *buf, size_t len, tg_http_response_t *resp,
			   tg_http_method_t method, const tg_http_limits_t *limits)
{
	struct ctx c;

	ctx_init(&c, buf, len, limits);
	response_reset(resp);
	return response_run(&c, resp, method);
}

int tg_http_parse_response_resume(const char *buf, size_t len, tg_http_response_t *resp,
				  tg_http_method_t method, const tg_http_limits_t *limits)
{
	struct ctx c;

	ctx_init(&c, buf, len, limits);
	if (resp->priv.base != buf || resp->priv.pos > len)
		response_reset(resp);
	return response_run(&c, resp, method);
}

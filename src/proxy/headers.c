#include "proxy/headers.h"

#include <string.h>

/* Appends iovecs; literals go into scratch and merge with a preceding scratch
 * iovec, slices of the received head are referenced in place. */
typedef struct builder {
	struct iovec *iov; /* output array */
	int n;		   /* entries used */
	int max;	   /* capacity */
	char *scratch;	   /* area for added text */
	size_t used;	   /* bytes of scratch used */
	size_t cap;	   /* scratch capacity */
	bool full;	   /* something did not fit */
} builder_t;

/* Inlined (as add_text): called a dozen times per head, mostly with
 * literals whose length is a constant. */
static inline __attribute__((always_inline)) void add_ref(builder_t *b, const char *p, size_t len)
{
	if (len == 0)
		return;
	if (b->n > 0) {
		struct iovec *last = &b->iov[b->n - 1];
		if ((const char *)last->iov_base + last->iov_len == p) {
			last->iov_len += len;
			return;
		}
	}
	if (b->n == b->max) {
		b->full = true;
		return;
	}
	b->iov[b->n].iov_base = (void *)p;
	b->iov[b->n].iov_len = len;
	b->n++;
}

static inline __attribute__((always_inline)) void add_text(builder_t *b, const char *p, size_t len)
{
	if (b->used + len > b->cap) {
		b->full = true;
		return;
	}
	char *dst = b->scratch + b->used;
	memcpy(dst, p, len);
	b->used += len;
	add_ref(b, dst, len);
}

#define ADD_LIT(b, lit) add_text((b), (lit), sizeof(lit) - 1)

static void add_str(builder_t *b, tg_str_t s)
{
	add_text(b, s.ptr, s.len);
}

/* Where header i's line ends (its CRLF included): the next line's start. */
static const char *line_end(const tg_http_header_t *h, size_t n, size_t i, const char *head,
			    size_t head_len)
{
	return i + 1 < n ? h[i + 1].name.ptr : head + head_len - 2;
}

static bool name_is(tg_str_t name, const char *lit, size_t len)
{
	return tg_str_caseeq(name, lit, len);
}

#define NAME_IS(s, lit) name_is((s), (lit), sizeof(lit) - 1)

int tg_proxy_request_head(const tg_http_request_t *req, const char *head, size_t head_len,
			  const tg_fwd_info_t *fi, struct iovec *iov, int max_iov, char *scratch,
			  size_t scratch_len)
{
	builder_t b = {iov, 0, max_iov, scratch, 0, scratch_len, false};
	const tg_http_header_t *h = req->headers;
	size_t nh = req->num_headers;
	const char *first_line_end = nh ? h[0].name.ptr : head + head_len - 2;

	/* Request line. It starts at the method: empty lines the client sent
	 * before it (RFC 9112 2.2) are not passed on, a backend might not skip them. */
	const char *start = req->method.ptr ? req->method.ptr : head;
	if (fi->target.len) {
		add_ref(&b, start, (size_t)(req->target.ptr - start)); /* "METHOD " */
		add_ref(&b, fi->target.ptr, fi->target.len);	       /* stays valid: see header */
		const char *after = req->target.ptr + req->target.len;
		add_ref(&b, after, (size_t)(first_line_end - after)); /* " HTTP/1.x\r\n" */
	} else if (req->form == TG_TARGET_ABSOLUTE) {
		add_ref(&b, start, (size_t)(req->target.ptr - start)); /* "METHOD " */
		if (req->path.len)
			add_ref(&b, req->path.ptr, req->path.len);
		else
			ADD_LIT(&b, "/");
		if (req->query.len) {
			ADD_LIT(&b, "?");
			add_ref(&b, req->query.ptr, req->query.len);
		}
		const char *after = req->target.ptr + req->target.len;
		add_ref(&b, after, (size_t)(first_line_end - after)); /* " HTTP/1.x\r\n" */
	} else {
		add_ref(&b, start, (size_t)(first_line_end - start));
	}

	/* Kept fields, in runs. X-Forwarded-For values are remembered to extend. */
	const tg_http_header_t *xff[8];
	size_t nxff = 0;
	bool keep_proto = false, keep_host = false, keep_port = false;
	for (size_t i = 0; i < nh; i++) {
		uint32_t f = h[i].flags;
		bool keep = !(f & TG_HDR_HOP);
		if (f & TG_HDR_XFWD) {
			keep = false;
			if (NAME_IS(h[i].name, "x-forwarded-for")) {
				if (nxff < TG_ARRAY_SIZE(xff))
					xff[nxff++] = &h[i];
			} else if (fi->trust_forwarded) {
				if (NAME_IS(h[i].name, "x-forwarded-proto"))
					keep = keep_proto = true;
				else if (NAME_IS(h[i].name, "x-forwarded-host"))
					keep = keep_host = true;
				else if (NAME_IS(h[i].name, "x-forwarded-port"))
					keep = keep_port = true;
			}
		} else if ((f & TG_HDR_HOST) && (req->form == TG_TARGET_ABSOLUTE || fi->host.len)) {
			keep = false; /* replaced by the absolute-form authority below */
		} else if ((f & TG_HDR_REQUEST_ID) && fi->request_id.len) {
			keep = false; /* an empty client value was replaced by ours */
		} else if (fi->drop_expect && h[i].name.len == 6 && NAME_IS(h[i].name, "expect")) {
			keep = false;
		} else if (fi->prefix.len && h[i].name.len == 18 &&
			   NAME_IS(h[i].name, "x-forwarded-prefix")) {
			keep = false; /* x-forwarded-prefix: ours replaces it */
		} else if (h[i].name.len > 11 && (h[i].name.ptr[0] | 0x20) == 's' &&
			   tg_str_caseeq((tg_str_t){h[i].name.ptr, 11}, "ssl-client-", 11)) {
			keep = false; /* ours only (client certificates) */
		}
		if (keep)
			add_ref(&b, h[i].name.ptr,
				(size_t)(line_end(h, nh, i, head, head_len) - h[i].name.ptr));
	}

	/* Additions. */
	if (fi->host.len) {
		ADD_LIT(&b, "Host: ");
		add_ref(&b, fi->host.ptr, fi->host.len);
		ADD_LIT(&b, "\r\n");
	} else if (req->form == TG_TARGET_ABSOLUTE && req->host.len) {
		ADD_LIT(&b, "Host: ");
		add_ref(&b, req->host.ptr, req->host.len);
		ADD_LIT(&b, "\r\n");
	}
	if (fi->request_id.len) {
		ADD_LIT(&b, "X-Request-ID: ");
		add_str(&b, fi->request_id);
		ADD_LIT(&b, "\r\n");
	}
	ADD_LIT(&b, "X-Real-IP: ");
	add_str(&b, fi->client_ip);
	ADD_LIT(&b, "\r\nX-Forwarded-For: ");
	for (size_t i = 0; i < nxff; i++) {
		if (xff[i]->value.len == 0)
			continue;
		add_ref(&b, xff[i]->value.ptr, xff[i]->value.len);
		ADD_LIT(&b, ", ");
	}
	add_str(&b, fi->peer_ip.len ? fi->peer_ip : fi->client_ip);
	ADD_LIT(&b, "\r\n");
	if (!keep_host && req->host.len) {
		ADD_LIT(&b, "X-Forwarded-Host: ");
		add_ref(&b, req->host.ptr, req->host.len);
		ADD_LIT(&b, "\r\n");
	}
	if (!keep_port) {
		ADD_LIT(&b, "X-Forwarded-Port: ");
		add_str(&b, fi->server_port);
		ADD_LIT(&b, "\r\n");
	}
	if (!keep_proto) {
		ADD_LIT(&b, "X-Forwarded-Proto: ");
		add_str(&b, fi->proto);
		ADD_LIT(&b, "\r\n");
	}
	if (req->body == TG_BODY_CHUNKED)
		ADD_LIT(&b, "Transfer-Encoding: chunked\r\n");
	if (req->upgrade) {
		ADD_LIT(&b, "Connection: upgrade\r\nUpgrade: ");
		add_ref(&b, req->upgrade_protocol.ptr, req->upgrade_protocol.len);
		ADD_LIT(&b, "\r\n");
	} else if (req->version_minor == 0) {
		ADD_LIT(&b, "Connection: keep-alive\r\n");
	}
	if (fi->prefix.len) {
		ADD_LIT(&b, "X-Forwarded-Prefix: ");
		add_ref(&b, fi->prefix.ptr, fi->prefix.len);
		ADD_LIT(&b, "\r\n");
	}
	if (fi->extra.len)
		add_ref(&b, fi->extra.ptr, fi->extra.len);
	ADD_LIT(&b, "\r\n");
	return b.full ? -1 : b.n;
}

int tg_proxy_response_head(const tg_http_response_t *resp, const char *head, size_t head_len,
			   const tg_resp_info_t *ri, struct iovec *iov, int max_iov, char *scratch,
			   size_t scratch_len)
{
	builder_t b = {iov, 0, max_iov, scratch, 0, scratch_len, false};
	const tg_http_header_t *h = resp->headers;
	size_t nh = resp->num_headers;
	const char *first_line_end = nh ? h[0].name.ptr : head + head_len - 2;

	/* "HTTP/1.x" is always 8 bytes; answer as HTTP/1.1 whatever the backend spoke. */
	ADD_LIT(&b, "HTTP/1.1");
	add_ref(&b, head + 8, (size_t)(first_line_end - head - 8));

	bool has_date = false, has_server = false;
	tg_str_t upgrade = {0};
	for (size_t i = 0; i < nh; i++) {
		uint32_t f = h[i].flags;
		if (f & TG_HDR_HOP) {
			if (ri->upgrade && h[i].name.len == 7 && NAME_IS(h[i].name, "upgrade"))
				upgrade = h[i].value;
			continue;
		}
		has_date |= (f & TG_HDR_DATE) != 0;
		has_server |= (f & TG_HDR_SERVER) != 0;
		add_ref(&b, h[i].name.ptr,
			(size_t)(line_end(h, nh, i, head, head_len) - h[i].name.ptr));
	}
	if (!has_date) {
		ADD_LIT(&b, "Date: ");
		add_text(&b, ri->date, 29);
		ADD_LIT(&b, "\r\n");
	}
	if (!has_server)
		ADD_LIT(&b, "Server: tidegate\r\n");
	if (ri->upgrade) {
		ADD_LIT(&b, "Connection: upgrade\r\n");
		if (upgrade.len) {
			ADD_LIT(&b, "Upgrade: ");
			add_ref(&b, upgrade.ptr, upgrade.len);
			ADD_LIT(&b, "\r\n");
		}
	} else {
		/* An HTTP/1.0 client gets the data without the chunk framing,
		 * ended by the close (RFC 9112 section 6.1: no Transfer-Encoding
		 * to a 1.0 request; client.c strips the framing). */
		if (resp->body == TG_BODY_CHUNKED && !ri->client_http10)
			ADD_LIT(&b, "Transfer-Encoding: chunked\r\n");
		if (ri->set_cookie.len) {
			ADD_LIT(&b, "Set-Cookie: ");
			add_ref(&b, ri->set_cookie.ptr, ri->set_cookie.len);
			ADD_LIT(&b, "\r\n");
		}
		if (!ri->keep_alive)
			ADD_LIT(&b, "Connection: close\r\n");
		else if (ri->client_http10)
			ADD_LIT(&b, "Connection: keep-alive\r\n");
	}
	ADD_LIT(&b, "\r\n");
	return b.full ? -1 : b.n;
}

size_t tg_iov_len(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

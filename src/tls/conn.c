/*
 * conn.c - one TLS connection over a non-blocking socket.
 *
 * OpenSSL talks to the socket through a BIO of ours. Reads go straight to
 * recv(2). Writes go straight to send(2); whatever the socket does not take is
 * kept in the connection's `out` buffer and the write is reported complete to
 * OpenSSL. So OpenSSL never sees a blocked write, and never imposes its rule
 * that a blocked SSL_write be retried with the same buffer: writev can behave
 * exactly like writev(2). The price is at most one record (plus a handshake
 * flight) buffered per connection while its socket is full; the buffer is
 * freed once flushed, so idle connections hold none.
 */
#include "tls/internal.h"

#include "core/log.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Small iovecs are gathered into one record in this per-thread buffer;
 * larger ones are encrypted from the caller's memory. 16 KiB is the largest
 * TLS record, so a full stage is one record. */
#define STAGE_SIZE 16384
#define DIRECT_MIN 4096

static _Thread_local unsigned char stage[STAGE_SIZE];
static BIO_METHOD *bio_meth;

/* ---------------------------------------------------------------- BIO */

/* Keeps bytes the socket refused, after any already kept. */
static int out_keep(tg_tls_conn_t *c, const char *p, size_t n)
{
	if (c->out_pos == c->out_len)
		c->out_pos = c->out_len = 0;
	if (n > UINT32_MAX - c->out_len)
		return -ENOMEM;
	if (c->out_len + n > c->out_cap) {
		if (c->out_pos) {
			memmove(c->out, c->out + c->out_pos, c->out_len - c->out_pos);
			c->out_len -= c->out_pos;
			c->out_pos = 0;
		}
		if (c->out_len + n > c->out_cap) {
			size_t cap = c->out_cap ? (size_t)c->out_cap * 2 : 4096;
			while (cap < c->out_len + n)
				cap *= 2;
			if (cap > UINT32_MAX)
				return -ENOMEM;
			char *nb = realloc(c->out, cap);
			if (!nb)
				return -ENOMEM;
			c->out = nb;
			c->out_cap = (uint32_t)cap;
		}
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += (uint32_t)n;
	return 0;
}

static bool out_pending(const tg_tls_conn_t *c)
{
	return c->out_pos < c->out_len;
}

/* Sends kept bytes. TG_OK when none is left (buffer freed), TG_AGAIN, or
 * TG_ERROR with c->io_errno set. */
static int out_flush(tg_tls_conn_t *c)
{
	while (c->out_pos < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_pos, c->out_len - c->out_pos, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_pos += (uint32_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return TG_AGAIN;
		c->io_errno = n < 0 ? errno : EPIPE;
		return TG_ERROR;
	}
	free(c->out);
	c->out = NULL;
	c->out_pos = c->out_len = c->out_cap = 0;
	return TG_OK;
}

static int bio_write(BIO *b, const char *buf, int len)
{
	tg_tls_conn_t *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (c->io_errno)
		return -1;
	size_t done = 0;
	if (!out_pending(c)) {
		while (done < (size_t)len) {
			ssize_t n = send(c->fd, buf + done, (size_t)len - done, MSG_NOSIGNAL);
			if (n > 0) {
				done += (size_t)n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			c->io_errno = n < 0 ? errno : EPIPE;
			return -1;
		}
	}
	if (done < (size_t)len && out_keep(c, buf + done, (size_t)len - done) < 0) {
		c->io_errno = ENOMEM;
		return -1;
	}
	return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
	tg_tls_conn_t *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (c->prefix) {
		size_t n = TG_MIN((size_t)len, (size_t)(c->prefix_len - c->prefix_pos));
		memcpy(buf, c->prefix + c->prefix_pos, n);
		c->prefix_pos += (uint32_t)n;
		if (c->prefix_pos == c->prefix_len) {
			free(c->prefix);
			c->prefix = NULL;
		}
		return (int)n;
	}
	for (;;) {
		ssize_t n = recv(c->fd, buf, (size_t)len, 0);
		if (n > 0)
			return (int)n;
		if (n == 0) {
			c->rd_eof = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			BIO_set_retry_read(b);
			return -1;
		}
		c->io_errno = errno;
		return -1;
	}
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)num;
	(void)ptr;
	tg_tls_conn_t *c = BIO_get_data(b);
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* writes never wait in the BIO itself */
	case BIO_CTRL_EOF:
		/* OpenSSL asks this to tell a TCP FIN from an error. */
		return c && c->rd_eof;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

int tg_tls_bio_init(void)
{
	if (bio_meth)
		return 0;
	int type = BIO_get_new_index();
	if (type < 0)
		return -ENOMEM;
	bio_meth = BIO_meth_new(type | BIO_TYPE_SOURCE_SINK, "tidegate socket");
	if (!bio_meth || !BIO_meth_set_write(bio_meth, bio_write) ||
	    !BIO_meth_set_read(bio_meth, bio_read) || !BIO_meth_set_ctrl(bio_meth, bio_ctrl) ||
	    !BIO_meth_set_create(bio_meth, bio_create)) {
		BIO_meth_free(bio_meth);
		bio_meth = NULL;
		return -ENOMEM;
	}
	return 0;
}

void tg_tls_bio_cleanup(void)
{
	BIO_meth_free(bio_meth);
	bio_meth = NULL;
}

/* ------------------------------------------------------- connection */

tg_tls_conn_t *tg_tls_conn_new(tg_tls_store_t *store, int fd)
{
	if (!store || !bio_meth)
		return NULL;
	tg_tls_conn_t *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->ssl = SSL_new(store->certs[0].ctx);
	BIO *bio = BIO_new(bio_meth);
	if (!c->ssl || !bio) {
		BIO_free(bio);
		SSL_free(c->ssl);
		free(c);
		ERR_clear_error();
		return NULL;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_app_data(c->ssl, c);
	SSL_set_accept_state(c->ssl);
	c->store = tg_tls_store_ref(store);
	return c;
}

int tg_tls_conn_set_prefix(tg_tls_conn_t *c, const void *data, size_t len)
{
	if (len == 0)
		return 0;
	if (c->prefix || c->hello_seen || len > UINT32_MAX)
		return -EINVAL;
	c->prefix = malloc(len);
	if (!c->prefix)
		return -ENOMEM;
	memcpy(c->prefix, data, len);
	c->prefix_pos = 0;
	c->prefix_len = (uint32_t)len;
	return 0;
}

tg_tls_conn_t *tg_tls_conn_new_client(SSL_CTX *ctx, int fd)
{
	if (!ctx || !bio_meth)
		return NULL;
	tg_tls_conn_t *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->client = true;
	c->ssl = SSL_new(ctx);
	BIO *bio = BIO_new(bio_meth);
	if (!c->ssl || !bio) {
		BIO_free(bio);
		SSL_free(c->ssl);
		free(c);
		ERR_clear_error();
		return NULL;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_app_data(c->ssl, c);
	SSL_set_connect_state(c->ssl);
	return c;
}

static void release_store(tg_tls_conn_t *c)
{
	tg_tls_store_free(c->store);
	c->store = NULL;
}

static const char *errno_text(int e)
{
	switch (e) {
	case ECONNRESET:
		return "connection reset by peer";
	case EPIPE:
		return "broken pipe";
	case ETIMEDOUT:
		return "connection timed out";
	case ENOMEM:
		return "out of memory";
	case EHOSTUNREACH:
		return "host unreachable";
	default:
		return "socket error";
	}
}

/* Records a fatal error; during the handshake, counts it. Returns TG_ERROR. */
static int fail(tg_tls_conn_t *c, tg_tls_error_kind_t kind, const char *why)
{
	if (!c->failed && !c->established && !c->client) {
		static const enum tls_counter ctr[] = {
		    [TG_TLS_ERR_PEER_CLOSED] = CTR_ERR_PEER_CLOSED,
		    [TG_TLS_ERR_IO] = CTR_ERR_IO,
		    [TG_TLS_ERR_PROTOCOL] = CTR_ERR_PROTOCOL,
		    [TG_TLS_ERR_PLAIN_HTTP] = CTR_ERR_PLAIN_HTTP,
		    [TG_TLS_ERR_INTERNAL] = CTR_ERR_INTERNAL,
		};
		if (kind > TG_TLS_ERR_NONE && kind <= TG_TLS_ERR_INTERNAL)
			tg_tls_count(ctr[kind]);
	}
	c->failed = true;
	c->err_kind = (uint8_t)kind;
	c->err = why;
	c->want = 0;
	release_store(c);
	return TG_ERROR;
}

/* Classifies a failed OpenSSL call (r <= 0). Returns TG_AGAIN with c->want
 * set, or TG_ERROR with the error recorded; *eof is set for a clean EOF. */
static int ssl_failure(tg_tls_conn_t *c, int r, bool *eof)
{
	int e = SSL_get_error(c->ssl, r);
	*eof = false;
	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE: {
		int f = out_flush(c);
		if (f == TG_ERROR) {
			ERR_clear_error();
			return fail(c,
				    c->io_errno == ECONNRESET || c->io_errno == EPIPE
					? TG_TLS_ERR_PEER_CLOSED
					: TG_TLS_ERR_IO,
				    errno_text(c->io_errno));
		}
		c->want = (e == SSL_ERROR_WANT_READ ? TG_TLS_WANT_READ : 0) |
			  (f == TG_AGAIN || e == SSL_ERROR_WANT_WRITE ? TG_TLS_WANT_WRITE : 0);
		return TG_AGAIN;
	}
	case SSL_ERROR_ZERO_RETURN:
		*eof = true;
		ERR_clear_error();
		return TG_ERROR;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (c->io_errno == ENOMEM)
			return fail(c, TG_TLS_ERR_INTERNAL, "out of memory");
		if (c->io_errno)
			return fail(c,
				    c->io_errno == ECONNRESET || c->io_errno == EPIPE
					? TG_TLS_ERR_PEER_CLOSED
					: TG_TLS_ERR_IO,
				    errno_text(c->io_errno));
		*eof = true;
		return TG_ERROR;
	case SSL_ERROR_SSL: {
		unsigned long ee = ERR_peek_error();
		int reason = ERR_GET_REASON(ee);
		const char *why = tg_tls_ossl_reason("TLS protocol error");
		if (ERR_GET_LIB(ee) == ERR_LIB_SSL && reason == SSL_R_HTTP_REQUEST)
			return fail(c, TG_TLS_ERR_PLAIN_HTTP,
				    "plain HTTP request sent to the HTTPS port");
		if (ERR_GET_LIB(ee) == ERR_LIB_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			return fail(c, TG_TLS_ERR_PEER_CLOSED, why);
		if (ERR_GET_LIB(ee) == ERR_LIB_SSL && reason == ERR_R_MALLOC_FAILURE)
			return fail(c, TG_TLS_ERR_INTERNAL, why);
		return fail(c, TG_TLS_ERR_PROTOCOL, why);
	}
	default:
		ERR_clear_error();
		return fail(c, TG_TLS_ERR_INTERNAL, "unexpected OpenSSL state");
	}
}

static void count_established(tg_tls_conn_t *c)
{
	bool v13 = SSL_version(c->ssl) == TLS1_3_VERSION;
	tg_tls_count(v13 ? CTR_HS_TLS13 : CTR_HS_TLS12);
	if (SSL_session_reused(c->ssl))
		tg_tls_count(v13 ? CTR_RESUMED_TLS13 : CTR_RESUMED_TLS12);
}

int tg_tls_conn_handshake(tg_tls_conn_t *c)
{
	if (c->failed)
		return TG_ERROR;
	if (!c->established) {
		ERR_clear_error();
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			bool eof;
			int rc = ssl_failure(c, r, &eof);
			if (eof)
				return fail(c, TG_TLS_ERR_PEER_CLOSED,
					    "peer closed the connection during the handshake");
			return rc;
		}
		c->established = true;
		if (!c->client)
			count_established(c);
		/* The store was only needed to pick the certificate. */
		release_store(c);
	}
	/* The last flight (TLS 1.2 Finished, TLS 1.3 tickets) must reach the
	 * client: it waits for it before sending its request. */
	int f = out_flush(c);
	if (f == TG_AGAIN) {
		c->want = TG_TLS_WANT_WRITE;
		return TG_AGAIN;
	}
	if (f == TG_ERROR)
		return fail(c, TG_TLS_ERR_IO, errno_text(c->io_errno));
	c->want = 0;
	return TG_OK;
}

unsigned tg_tls_conn_want(const tg_tls_conn_t *c)
{
	return c->want;
}

static ssize_t io_error(const tg_tls_conn_t *c)
{
	if (c->err_kind == TG_TLS_ERR_PROTOCOL || c->err_kind == TG_TLS_ERR_PLAIN_HTTP)
		return -EPROTO;
	if (c->err_kind == TG_TLS_ERR_INTERNAL)
		return -ENOMEM;
	return c->io_errno ? -c->io_errno : -EPIPE;
}

ssize_t tg_tls_conn_read(tg_tls_conn_t *c, void *buf, size_t len)
{
	if (c->failed)
		return io_error(c);
	if (!c->established)
		return -ENOTCONN;
	if (len == 0)
		return 0;
	if (out_pending(c) && out_flush(c) == TG_ERROR) {
		fail(c, TG_TLS_ERR_IO, errno_text(c->io_errno));
		return io_error(c);
	}
	ERR_clear_error();
	int r = SSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
	if (r > 0)
		return r;
	bool eof;
	int rc = ssl_failure(c, r, &eof);
	if (eof)
		return 0;
	if (rc == TG_AGAIN)
		return -EAGAIN;
	return io_error(c);
}

/* Encrypts n (<= STAGE_SIZE) bytes. Our BIO never blocks, so SSL_write
 * either takes everything or fails. Returns 0 or -errno. */
static int write_record(tg_tls_conn_t *c, const void *p, size_t n)
{
	ERR_clear_error();
	int r = SSL_write(c->ssl, p, (int)n);
	if (r > 0)
		return 0;
	bool eof;
	if (ssl_failure(c, r, &eof) == TG_AGAIN) {
		/* Cannot happen with our BIO; never leave OpenSSL mid-write. */
		fail(c, TG_TLS_ERR_INTERNAL, "unexpected blocked write");
	} else if (eof) {
		fail(c, TG_TLS_ERR_PEER_CLOSED, "peer closed the connection");
	}
	return (int)io_error(c);
}

ssize_t tg_tls_conn_writev(tg_tls_conn_t *c, const struct iovec *iov, int iovcnt)
{
	if (c->failed)
		return io_error(c);
	if (!c->established)
		return -ENOTCONN;
	if (c->shut_sent)
		return -EPIPE;
	if (out_pending(c)) {
		int f = out_flush(c);
		if (f == TG_AGAIN) {
			c->want = TG_TLS_WANT_WRITE;
			return -EAGAIN;
		}
		if (f == TG_ERROR) {
			fail(c, TG_TLS_ERR_IO, errno_text(c->io_errno));
			return io_error(c);
		}
	}
	size_t total = 0, staged = 0;
	int rc = 0;
	for (int i = 0; i < iovcnt; i++) {
		const unsigned char *p = iov[i].iov_base;
		size_t n = iov[i].iov_len;
		while (n > 0) {
			if (n >= DIRECT_MIN && staged > 0) {
				/* Keep byte order: the gathered bytes go first. */
				if ((rc = write_record(c, stage, staged)) < 0)
					goto out;
				total += staged;
				staged = 0;
				if (out_pending(c))
					goto out;
			}
			if (n >= DIRECT_MIN) {
				size_t chunk = TG_MIN(n, (size_t)STAGE_SIZE);
				if ((rc = write_record(c, p, chunk)) < 0)
					goto out;
				total += chunk;
				p += chunk;
				n -= chunk;
				if (out_pending(c))
					goto out;
				continue;
			}
			size_t k = TG_MIN(n, (size_t)STAGE_SIZE - staged);
			memcpy(stage + staged, p, k);
			staged += k;
			p += k;
			n -= k;
			if (staged == STAGE_SIZE) {
				if ((rc = write_record(c, stage, staged)) < 0)
					goto out;
				total += staged;
				staged = 0;
				if (out_pending(c))
					goto out;
			}
		}
	}
	if (staged > 0 && (rc = write_record(c, stage, staged)) == 0)
		total += staged;
out:
	if (out_pending(c))
		c->want = TG_TLS_WANT_WRITE;
	if (total > 0)
		return (ssize_t)total;
	return rc;
}

int tg_tls_conn_flush(tg_tls_conn_t *c)
{
	if (c->failed)
		return TG_ERROR;
	int f = out_flush(c);
	if (f == TG_AGAIN)
		c->want = TG_TLS_WANT_WRITE;
	else if (f == TG_ERROR)
		fail(c, TG_TLS_ERR_IO, errno_text(c->io_errno));
	return f;
}

bool tg_tls_conn_has_pending_input(const tg_tls_conn_t *c)
{
	return !c->failed && c->established && SSL_has_pending(c->ssl);
}

bool tg_tls_conn_has_pending_output(const tg_tls_conn_t *c)
{
	return out_pending(c);
}

int tg_tls_conn_shutdown(tg_tls_conn_t *c)
{
	if (c->failed || !c->established)
		return TG_OK;
	if (!c->shut_sent) {
		c->shut_sent = true;
		ERR_clear_error();
		if (SSL_shutdown(c->ssl) < 0) {
			int e = SSL_get_error(c->ssl, -1);
			ERR_clear_error();
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				return c->io_errno ? TG_ERROR : TG_OK;
		}
	}
	return tg_tls_conn_flush(c);
}

void tg_tls_conn_free(tg_tls_conn_t *c)
{
	if (!c)
		return;
	if (!c->established && !c->failed && !c->client)
		tg_tls_count(CTR_ERR_ABANDONED);
	SSL_free(c->ssl);
	release_store(c);
	free(c->out);
	free(c->prefix);
	free(c->sni);
	free(c);
}

/* ---------------------------------------------------------- accessors */

const char *tg_tls_conn_error(const tg_tls_conn_t *c)
{
	return c->err ? c->err : "";
}

tg_tls_error_kind_t tg_tls_conn_error_kind(const tg_tls_conn_t *c)
{
	return (tg_tls_error_kind_t)c->err_kind;
}

const char *tg_tls_conn_sni(const tg_tls_conn_t *c)
{
	return c->sni;
}

const char *tg_tls_conn_protocol(const tg_tls_conn_t *c)
{
	return c->established ? SSL_get_version(c->ssl) : "";
}

const char *tg_tls_conn_cipher(const tg_tls_conn_t *c)
{
	return c->established ? SSL_get_cipher_name(c->ssl) : "";
}

tg_str_t tg_tls_conn_alpn(const tg_tls_conn_t *c)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;
	if (c->established)
		SSL_get0_alpn_selected(c->ssl, &p, &n);
	return (tg_str_t){(const char *)p, n};
}

bool tg_tls_conn_resumed(const tg_tls_conn_t *c)
{
	return c->established && SSL_session_reused(c->ssl);
}

bool tg_tls_conn_has_client_cert(const tg_tls_conn_t *c)
{
	return c->established && SSL_get0_peer_certificate(c->ssl) != NULL;
}

long tg_tls_conn_client_verify_result(const tg_tls_conn_t *c)
{
	return SSL_get_verify_result(c->ssl);
}

/* RFC 3986 unreserved characters stay; everything else is %XX, like nginx's
 * $ssl_client_escaped_cert. */
static void url_escape(tg_sbuf_t *out, const char *p, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			tg_sbuf_append(out, (const char *)&p[i], 1);
		} else {
			char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
			tg_sbuf_append(out, e, 3);
		}
	}
}

int tg_tls_conn_client_cert_pem(const tg_tls_conn_t *c, bool escaped, tg_sbuf_t *out)
{
	X509 *x = c->established ? SSL_get0_peer_certificate(c->ssl) : NULL;
	if (!x)
		return -ENOENT;
	BIO *m = BIO_new(BIO_s_mem());
	if (!m || PEM_write_bio_X509(m, x) != 1) {
		BIO_free(m);
		ERR_clear_error();
		return -ENOMEM;
	}
	char *p;
	long n = BIO_get_mem_data(m, &p);
	if (escaped)
		url_escape(out, p, (size_t)n);
	else
		tg_sbuf_append(out, p, (size_t)n);
	BIO_free(m);
	return out->oom ? -ENOMEM : 0;
}

/* Appends an RFC 2253 distinguished name (nginx's $ssl_client_s_dn form),
 * with any control byte replaced so the header line stays one line. */
static void append_dn(tg_sbuf_t *out, const X509_NAME *nm)
{
	BIO *m = BIO_new(BIO_s_mem());
	if (!m)
		return;
	if (X509_NAME_print_ex(m, nm, 0, XN_FLAG_RFC2253) >= 0) {
		char *p;
		long n = BIO_get_mem_data(m, &p);
		for (long i = 0; i < n; i++)
			if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
				p[i] = '?';
		tg_sbuf_append(out, p, (size_t)n);
	}
	BIO_free(m);
	ERR_clear_error();
}

/* nginx's ngx_ssl_verify_error_optional: the errors optional_no_ca forgives. */
static bool verify_error_optional(long e)
{
	return e == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
	       e == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
	       e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
	       e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
	       e == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE || e == X509_V_ERR_CERT_UNTRUSTED;
}

int tg_tls_conn_check_client_auth(const tg_tls_conn_t *c, const tg_tls_client_auth_t *auth,
				  const char **reason, tg_sbuf_t *headers)
{
	const char *dummy;
	if (!reason)
		reason = &dummy;
	*reason = NULL;
	if (!c || !auth || auth->verify == TG_TLS_VERIFY_OFF)
		return 0;
	if (!c->established || c->auth_verify == TG_TLS_VERIFY_OFF ||
	    memcmp(c->auth_fp, auth->fp, FP_LEN) != 0) {
		tg_tls_count(CTR_CERT_MISDIRECTED);
		*reason = "Misdirected Request";
		return 421;
	}
	long vr = SSL_get_verify_result(c->ssl);
	X509 *peer = SSL_get0_peer_certificate(c->ssl);
	if (vr != X509_V_OK &&
	    (auth->verify != TG_TLS_VERIFY_OPTIONAL_NO_CA || !verify_error_optional(vr))) {
		tg_tls_count(CTR_CERT_INVALID);
		*reason = "The SSL certificate error";
		return 400;
	}
	if (auth->verify == TG_TLS_VERIFY_ON && !peer) {
		tg_tls_count(CTR_CERT_MISSING);
		*reason = "No required SSL certificate was sent";
		return 400;
	}
	if (!headers)
		return 0;
	if (!peer) {
		tg_sbuf_append(headers, "ssl-client-verify: NONE\r\n", 25);
		return 0;
	}
	if (vr == X509_V_OK)
		tg_sbuf_append(headers, "ssl-client-verify: SUCCESS\r\n", 28);
	else
		tg_sbuf_printf(headers, "ssl-client-verify: FAILED:%s\r\n",
			       X509_verify_cert_error_string(vr));
	tg_sbuf_append(headers, "ssl-client-subject-dn: ", 23);
	append_dn(headers, X509_get_subject_name(peer));
	tg_sbuf_append(headers, "\r\nssl-client-issuer-dn: ", 24);
	append_dn(headers, X509_get_issuer_name(peer));
	tg_sbuf_append(headers, "\r\n", 2);
	if (auth->pass_cert) {
		tg_sbuf_append(headers, "ssl-client-cert: ", 17);
		tg_tls_conn_client_cert_pem(c, true, headers);
		tg_sbuf_append(headers, "\r\n", 2);
	}
	return 0;
}

/*
 * test_conn.c - the per-connection API driven like the proxy's event loop
 * would: TLS 1.2 and 1.3, ssl-protocols restriction, ALPN, bulk transfer
 * through a small socket buffer (writev gathering, pending output), EOF and
 * close_notify, plain HTTP on the TLS port, bytes read before the connection
 * existed, metrics.
 */
#include "tls_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

static tcert_t srv_cert;

static int setup(void **state)
{
	(void)state;
	if (tg_tls_init() < 0)
		return -1;
	srv_cert = tcert_make(&(tcert_opts_t){.cn = "a", .sans = "DNS:a.example.com"});
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tcert_free(&srv_cert);
	tg_tls_cleanup();
	return 0;
}

/* One client/server pair over a socketpair. */
typedef struct duo {
	int sv[2];	       /* [0] server fd, [1] client fd */
	SSL_CTX *cctx;	       /* client context */
	SSL *cli;	       /* client */
	tg_tls_store_t *store; /* server store */
	tg_tls_conn_t *srv;    /* server connection */
} duo_t;

static void duo_open(duo_t *d, const tg_tls_options_t *opts, int cmin, int cmax, const char *alpn,
		     size_t alpn_len, const char *sni)
{
	memset(d, 0, sizeof(*d));
	tpair(d->sv);
	d->cctx = tclient_ctx(cmin, cmax, alpn, alpn_len, NULL);
	d->cli = tclient_new(d->cctx, d->sv[1], sni, NULL);
	d->store = tstore(opts, NULL, &srv_cert, 1);
	assert_non_null(d->store);
	d->srv = tg_tls_conn_new(d->store, d->sv[0]);
	assert_non_null(d->srv);
}

static void duo_close(duo_t *d)
{
	tg_tls_conn_free(d->srv);
	tg_tls_store_free(d->store);
	SSL_free(d->cli);
	SSL_CTX_free(d->cctx);
	close(d->sv[0]);
	close(d->sv[1]);
}

#define ALPN_BOTH "\x02h2\x08http/1.1"

static void test_tls13_alpn(void **state)
{
	(void)state;
	duo_t d;
	uint64_t before = tmetric("tidegate_tls_handshakes_total{protocol=\"TLSv1.3\"} ");
	duo_open(&d, NULL, 0, 0, ALPN_BOTH, sizeof(ALPN_BOTH) - 1, "A.Example.com");
	assert_int_equal(thandshake(d.cli, d.srv), 0);
	assert_string_equal(tg_tls_conn_protocol(d.srv), "TLSv1.3");
	assert_string_equal(SSL_get_version(d.cli), "TLSv1.3");
	tg_str_t alpn = tg_tls_conn_alpn(d.srv);
	assert_true(tg_str_eq(alpn, "http/1.1", 8));
	assert_string_equal(tg_tls_conn_sni(d.srv), "a.example.com");
	assert_true(strlen(tg_tls_conn_cipher(d.srv)) > 0);
	assert_false(tg_tls_conn_resumed(d.srv));
	assert_false(tg_tls_conn_has_client_cert(d.srv));
	assert_int_equal(texchange(d.cli, d.srv), 0);
	assert_int_equal(tmetric("tidegate_tls_handshakes_total{protocol=\"TLSv1.3\"} "),
			 before + 1);
	duo_close(&d);
}

static void test_tls12(void **state)
{
	(void)state;
	duo_t d;
	duo_open(&d, NULL, 0, TLS1_2_VERSION, "\x08http/1.1", 9, "a.example.com");
	assert_int_equal(thandshake(d.cli, d.srv), 0);
	assert_string_equal(tg_tls_conn_protocol(d.srv), "TLSv1.2");
	const char *cipher = tg_tls_conn_cipher(d.srv);
	assert_non_null(strstr(cipher, "ECDHE-ECDSA-"));
	assert_true(tg_str_eq(tg_tls_conn_alpn(d.srv), "http/1.1", 8));
	assert_int_equal(texchange(d.cli, d.srv), 0);
	duo_close(&d);
}

/* ssl-protocols "TLSv1.3": a TLS 1.2-only client is refused. */
static void test_protocols_restricted(void **state)
{
	(void)state;
	duo_t d;
	tg_tls_options_t only13 = {.protocols = "TLSv1.3"};
	uint64_t before = tmetric("tidegate_tls_handshake_errors_total{reason=\"protocol\"} ");
	duo_open(&d, &only13, 0, TLS1_2_VERSION, NULL, 0, "a.example.com");
	assert_int_equal(thandshake(d.cli, d.srv), -2);
	assert_int_equal(tg_tls_conn_error_kind(d.srv), TG_TLS_ERR_PROTOCOL);
	assert_true(strlen(tg_tls_conn_error(d.srv)) > 0);
	assert_int_equal(tg_tls_conn_handshake(d.srv), TG_ERROR);
	assert_int_equal(tmetric("tidegate_tls_handshake_errors_total{reason=\"protocol\"} "),
			 before + 1);
	duo_close(&d);

	/* The same client is fine with the default. */
	duo_open(&d, NULL, 0, TLS1_2_VERSION, NULL, 0, "a.example.com");
	assert_int_equal(thandshake(d.cli, d.srv), 0);
	duo_close(&d);

	/* "TLSv1.2" only: a modern client gets 1.2. */
	tg_tls_options_t only12 = {.protocols = "TLSv1.2"};
	duo_open(&d, &only12, 0, 0, NULL, 0, "a.example.com");
	assert_int_equal(thandshake(d.cli, d.srv), 0);
	assert_string_equal(tg_tls_conn_protocol(d.srv), "TLSv1.2");
	duo_close(&d);
}

/* ssl-ciphers is applied to TLS 1.2. */
static void test_ciphers_applied(void **state)
{
	(void)state;
	duo_t d;
	tg_tls_options_t o = {.ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305"};
	duo_open(&d, &o, 0, TLS1_2_VERSION, NULL, 0, "a.example.com");
	assert_int_equal(thandshake(d.cli, d.srv), 0);
	assert_string_equal(tg_tls_conn_cipher(d.srv), "ECDHE-ECDSA-CHACHA20-POLY1305");
	duo_close(&d);
}

static void test_alpn(void **state)
{
	(void)state;
	duo_t d;
	/* Only h2 offered: refused (as nginx does), not downgraded. */
	duo_open(&d, NULL, 0, 0, "\x02h2", 3, "a.example.com");
	assert_int_equal(thandshake(d.cli, d.srv), -2);
	assert_int_equal(tg_tls_conn_error_kind(d.srv), TG_TLS_ERR_PROTOCOL);
	duo_close(&d);
	/* No ALPN at all: fine, nothing selected. */
	duo_open(&d, NULL, 0, 0, NULL, 0, "a.example.com");
	assert_int_equal(thandshake(d.cli, d.srv), 0);
	assert_int_equal(tg_tls_conn_alpn(d.srv).len, 0);
	duo_close(&d);
}

static unsigned char pattern(size_t i)
{
	return (unsigned char)((i * 131 + (i >> 9)) & 0xff);
}

/* Drains what the client can read into got[*have...]. */
static void client_drain(SSL *cli, unsigned char *got, size_t *have, size_t want)
{
	for (;;) {
		if (*have >= want)
			return;
		int n = SSL_read(cli, got + *have, (int)TG_MIN(want - *have, (size_t)65536));
		if (n <= 0) {
			assert_int_equal(SSL_get_error(cli, n), SSL_ERROR_WANT_READ);
			return;
		}
		*have += (size_t)n;
	}
}

/*
 * 1 MiB through a 4 KiB socket buffer, written as a mix of small and large
 * iovecs: every byte arrives in order, writev never accepts what it cannot
 * keep, and the pending-output path is exercised.
 */
static void test_bulk_writev(void **state)
{
	(void)state;
	duo_t d;
	duo_open(&d, NULL, 0, 0, NULL, 0, "a.example.com");
	int small = 4096;
	setsockopt(d.sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(d.sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	assert_int_equal(thandshake(d.cli, d.srv), 0);

	const size_t total = 1 << 20;
	unsigned char *src = malloc(total), *got = malloc(total);
	for (size_t i = 0; i < total; i++)
		src[i] = pattern(i);
	static const size_t sizes[] = {100, 5000, 17, 20000, 3, 4096, 16384, 1, 70000, 900};
	size_t off = 0, have = 0, k = 0;
	int again = 0, pending = 0;
	for (int rounds = 0; off < total && rounds < 1000000; rounds++) {
		struct iovec iov[6];
		int cnt = 0;
		size_t o = off;
		for (; cnt < 6 && o < total; cnt++) {
			size_t n =
			    TG_MIN(sizes[(k + (size_t)cnt) % TG_ARRAY_SIZE(sizes)], total - o);
			iov[cnt] = (struct iovec){src + o, n};
			o += n;
		}
		ssize_t w = tg_tls_conn_writev(d.srv, iov, cnt);
		if (w == -EAGAIN) {
			again++;
			assert_true(tg_tls_conn_want(d.srv) & TG_TLS_WANT_WRITE);
		} else {
			assert_true(w > 0);
			off += (size_t)w;
			k++;
		}
		if (tg_tls_conn_has_pending_output(d.srv))
			pending++;
		client_drain(d.cli, got, &have, total);
	}
	while (tg_tls_conn_flush(d.srv) == TG_AGAIN)
		client_drain(d.cli, got, &have, total);
	for (int i = 0; i < 1000 && have < total; i++)
		client_drain(d.cli, got, &have, total);
	assert_int_equal(off, total);
	assert_int_equal(have, total);
	assert_memory_equal(src, got, total);
	assert_true(again > 0);
	assert_true(pending > 0);

	/* And the other way: the client sends 256 KiB, read in odd sizes. */
	const size_t up = 256 * 1024;
	size_t sent = 0, recvd = 0;
	for (int rounds = 0; recvd < up && rounds < 1000000; rounds++) {
		if (sent < up) {
			int n = SSL_write(d.cli, src + sent, (int)TG_MIN(up - sent, (size_t)30000));
			if (n > 0)
				sent += (size_t)n;
			else
				assert_int_equal(SSL_get_error(d.cli, n), SSL_ERROR_WANT_WRITE);
		}
		while (recvd < up) {
			ssize_t n =
			    tg_tls_conn_read(d.srv, got + recvd, TG_MIN(up - recvd, (size_t)7777));
			if (n == -EAGAIN)
				break;
			assert_true(n > 0);
			recvd += (size_t)n;
		}
	}
	assert_int_equal(recvd, up);
	assert_memory_equal(src, got, up);
	free(src);
	free(got);
	duo_close(&d);
}

/* close_notify both ways, and a bare TCP FIN, read as end of stream. */
static void test_close(void **state)
{
	(void)state;
	duo_t d;
	char buf[16];
	duo_open(&d, NULL, 0, 0, NULL, 0, "a.example.com");
	assert_int_equal(thandshake(d.cli, d.srv), 0);
	assert_int_equal(tg_tls_conn_read(d.srv, buf, sizeof(buf)), -EAGAIN);
	assert_true(tg_tls_conn_want(d.srv) & TG_TLS_WANT_READ);
	SSL_shutdown(d.cli);
	assert_int_equal(tg_tls_conn_read(d.srv, buf, sizeof(buf)), 0);
	assert_int_equal(tg_tls_conn_shutdown(d.srv), TG_OK);
	int n = SSL_read(d.cli, buf, sizeof(buf));
	assert_true(n <= 0);
	assert_int_equal(SSL_get_error(d.cli, n), SSL_ERROR_ZERO_RETURN);
	struct iovec iov = {buf, 1};
	assert_int_equal(tg_tls_conn_writev(d.srv, &iov, 1), -EPIPE);
	duo_close(&d);

	duo_open(&d, NULL, 0, 0, NULL, 0, "a.example.com");
	assert_int_equal(thandshake(d.cli, d.srv), 0);
	shutdown(d.sv[1], SHUT_WR);
	assert_int_equal(tg_tls_conn_read(d.srv, buf, sizeof(buf)), 0);
	duo_close(&d);
}

static void test_not_established(void **state)
{
	(void)state;
	duo_t d;
	char buf[4];
	struct iovec iov = {buf, sizeof(buf)};
	duo_open(&d, NULL, 0, 0, NULL, 0, "a.example.com");
	assert_int_equal(tg_tls_conn_read(d.srv, buf, sizeof(buf)), -ENOTCONN);
	assert_int_equal(tg_tls_conn_writev(d.srv, &iov, 1), -ENOTCONN);
	assert_int_equal(tg_tls_conn_shutdown(d.srv), TG_OK);
	/* Nothing from the client yet: waiting to read. */
	assert_int_equal(tg_tls_conn_handshake(d.srv), TG_AGAIN);
	assert_int_equal(tg_tls_conn_want(d.srv), TG_TLS_WANT_READ);
	uint64_t before = tmetric("tidegate_tls_handshake_errors_total{reason=\"abandoned\"} ");
	duo_close(&d);
	assert_int_equal(tmetric("tidegate_tls_handshake_errors_total{reason=\"abandoned\"} "),
			 before + 1);
}

static void test_plain_http(void **state)
{
	(void)state;
	duo_t d;
	duo_open(&d, NULL, 0, 0, NULL, 0, NULL);
	static const char req[] = "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n";
	assert_int_equal(write(d.sv[1], req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	assert_int_equal(tg_tls_conn_handshake(d.srv), TG_ERROR);
	assert_int_equal(tg_tls_conn_error_kind(d.srv), TG_TLS_ERR_PLAIN_HTTP);
	duo_close(&d);
}

static void test_peer_closed(void **state)
{
	(void)state;
	duo_t d;
	duo_open(&d, NULL, 0, 0, NULL, 0, NULL);
	uint64_t before = tmetric("tidegate_tls_handshake_errors_total{reason=\"peer_closed\"} ");
	shutdown(d.sv[1], SHUT_RDWR);
	assert_int_equal(tg_tls_conn_handshake(d.srv), TG_ERROR);
	assert_int_equal(tg_tls_conn_error_kind(d.srv), TG_TLS_ERR_PEER_CLOSED);
	assert_int_equal(tmetric("tidegate_tls_handshake_errors_total{reason=\"peer_closed\"} "),
			 before + 1);
	duo_close(&d);
}

/* The proxy read the first bytes itself (PROXY protocol): they are handed
 * over and the handshake continues from the socket. */
static void test_prefix(void **state)
{
	(void)state;
	duo_t d;
	duo_open(&d, NULL, 0, 0, NULL, 0, "a.example.com");
	assert_int_equal(SSL_do_handshake(d.cli), -1); /* sends the ClientHello */
	char head[40];
	assert_int_equal(read(d.sv[0], head, sizeof(head)), (ssize_t)sizeof(head));
	assert_int_equal(tg_tls_conn_set_prefix(d.srv, head, sizeof(head)), 0);
	assert_int_equal(thandshake(d.cli, d.srv), 0);
	assert_string_equal(tg_tls_conn_sni(d.srv), "a.example.com");
	assert_int_equal(texchange(d.cli, d.srv), 0);
	duo_close(&d);
}

/* Two records arrive together and the caller reads only the first: the
 * second is reported as pending input (nothing left in the socket). */
static void test_pending_input(void **state)
{
	(void)state;
	duo_t d;
	duo_open(&d, NULL, 0, 0, NULL, 0, "a.example.com");
	assert_int_equal(thandshake(d.cli, d.srv), 0);
	assert_int_equal(SSL_write(d.cli, "abc", 3), 3);
	assert_int_equal(SSL_write(d.cli, "def", 3), 3);
	char buf[8];
	assert_int_equal(tg_tls_conn_read(d.srv, buf, 3), 3);
	assert_memory_equal(buf, "abc", 3);
	assert_true(tg_tls_conn_has_pending_input(d.srv));
	assert_int_equal(tg_tls_conn_read(d.srv, buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "def", 3);
	assert_false(tg_tls_conn_has_pending_input(d.srv));
	assert_int_equal(tg_tls_conn_read(d.srv, buf, sizeof(buf)), -EAGAIN);
	duo_close(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tls13_alpn),
	    cmocka_unit_test(test_tls12),
	    cmocka_unit_test(test_protocols_restricted),
	    cmocka_unit_test(test_ciphers_applied),
	    cmocka_unit_test(test_alpn),
	    cmocka_unit_test(test_bulk_writev),
	    cmocka_unit_test(test_close),
	    cmocka_unit_test(test_not_established),
	    cmocka_unit_test(test_plain_http),
	    cmocka_unit_test(test_peer_closed),
	    cmocka_unit_test(test_prefix),
	    cmocka_unit_test(test_pending_input),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

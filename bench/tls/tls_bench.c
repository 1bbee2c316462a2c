/*
 * tls_bench.c - in-process micro-benchmark of src/tls (not a test: it asserts
 * nothing). Client (plain OpenSSL) and server (tg_tls_conn_t) run in one
 * thread over socketpairs, so a "pair" rate includes the client's work; the
 * server-only rate divides by the time spent inside tg_tls_conn_handshake,
 * which is what one proxy worker core would spend per handshake.
 *
 * Prints, for ECDSA P-256 and RSA 2048 certificates: full and resumed
 * handshakes per second (TLS 1.3 and TLS 1.2), bulk writev throughput, and the
 * heap held per idle established server connection.
 *
 * Build and run (no make needed; bench/tls/run does exactly this):
 *   cc -O2 -D_GNU_SOURCE -Isrc -Itests/unit -pthread -o /tmp/tls_bench \
 *      bench/tls/tls_bench.c src/tls/global.c src/tls/store.c src/tls/conn.c \
 *      src/core/log.c src/core/sbuf.c -lssl -lcrypto
 *   /tmp/tls_bench [seconds-per-measure, default 2]
 */
#include "core/log.h"
#include "tls/tls_fixture.h"

#include <malloc.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One handshake; adds the time spent in the server to *srv_time. Returns 1
 * when resumed, 0 full, -1 failed. *out gets the session when not NULL. */
static int one(tg_tls_store_t *st, SSL_CTX *cctx, SSL_SESSION *sess, SSL_SESSION **out,
	       double *srv_time)
{
	int sv[2];
	tpair(sv);
	SSL *cli = tclient_new(cctx, sv[1], "bench.example.com", sess);
	tg_tls_conn_t *c = tg_tls_conn_new(st, sv[0]);
	bool cdone = false, sdone = false;
	int rc = -1;
	for (int i = 0; i < 50 && !(cdone && sdone); i++) {
		if (!cdone) {
			int r = SSL_do_handshake(cli);
			if (r == 1)
				cdone = true;
			else if (SSL_get_error(cli, r) != SSL_ERROR_WANT_READ)
				break;
		}
		if (!sdone) {
			double t0 = now();
			int r = tg_tls_conn_handshake(c);
			*srv_time += now() - t0;
			if (r == TG_OK)
				sdone = true;
			else if (r == TG_ERROR)
				break;
		}
	}
	if (cdone && sdone) {
		rc = SSL_session_reused(cli) ? 1 : 0;
		if (out) {
			char b[1];
			SSL_read(cli, b, 1); /* process TLS 1.3 tickets */
			*out = SSL_get1_session(cli);
		}
	}
	SSL_shutdown(cli);
	SSL_free(cli);
	tg_tls_conn_free(c);
	close(sv[0]);
	close(sv[1]);
	return rc;
}

static void handshakes(const char *label, tg_tls_store_t *st, int maxv, double secs)
{
	SSL_CTX *cctx = tclient_ctx(0, maxv, NULL, 0, NULL);
	for (int resumed = 0; resumed < 2; resumed++) {
		SSL_SESSION *sess = NULL;
		double dummy = 0;
		if (resumed && one(st, cctx, NULL, &sess, &dummy) != 0) {
			printf("  %s: setup failed\n", label);
			break;
		}
		long n = 0, bad = 0;
		double srv = 0, t0 = now(), t;
		do {
			for (int i = 0; i < 20; i++) {
				int r = one(st, cctx, sess, NULL, &srv);
				n++;
				if (r != resumed)
					bad++;
			}
			t = now() - t0;
		} while (t < secs);
		printf("  %-22s %-8s %8.0f pairs/s   %8.0f server-only/s%s\n", label,
		       resumed ? "resumed" : "full", (double)n / t, (double)n / srv,
		       bad ? "   (some did not resume/complete!)" : "");
		SSL_SESSION_free(sess);
	}
	SSL_CTX_free(cctx);
}

static void bulk(tg_tls_store_t *st, double secs)
{
	int sv[2];
	tpair(sv);
	SSL_CTX *cctx = tclient_ctx(0, 0, NULL, 0, NULL);
	SSL *cli = tclient_new(cctx, sv[1], "bench.example.com", NULL);
	tg_tls_conn_t *c = tg_tls_conn_new(st, sv[0]);
	if (thandshake(cli, c) != 0) {
		printf("  bulk: handshake failed\n");
		return;
	}
	static unsigned char body[65536], rbuf[65536];
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n";
	struct iovec iov[2] = {{(void *)head, sizeof(head) - 1}, {body, sizeof(body)}};
	size_t total = 0;
	double t0 = now(), t;
	do {
		size_t want = iov[0].iov_len + iov[1].iov_len, off = 0;
		while (off < want) {
			struct iovec v[2];
			int cnt = 0;
			size_t o = off;
			for (int i = 0; i < 2; i++) {
				if (o >= iov[i].iov_len) {
					o -= iov[i].iov_len;
					continue;
				}
				v[cnt++] =
				    (struct iovec){(char *)iov[i].iov_base + o, iov[i].iov_len - o};
				o = 0;
			}
			ssize_t w = tg_tls_conn_writev(c, v, cnt);
			if (w > 0)
				off += (size_t)w;
			while (SSL_read(cli, rbuf, sizeof(rbuf)) > 0)
				;
		}
		total += want;
		t = now() - t0;
	} while (t < secs);
	while (tg_tls_conn_flush(c) == TG_AGAIN)
		while (SSL_read(cli, rbuf, sizeof(rbuf)) > 0)
			;
	printf("  %-22s %8.0f MB/s (writev of a 64 KiB response, TLS 1.3, %s; both ends "
	       "in one thread)\n",
	       "bulk", (double)total / t / 1e6, tg_tls_conn_cipher(c));
	tg_tls_conn_free(c);
	SSL_free(cli);
	SSL_CTX_free(cctx);
	close(sv[0]);
	close(sv[1]);
}

/* Heap held by N idle established server connections (client side freed). */
static void idle_memory(tg_tls_store_t *st)
{
	enum { N = 500 };
	static int fds[N][2];
	static tg_tls_conn_t *conns[N];
	SSL_CTX *cctx = tclient_ctx(0, 0, NULL, 0, NULL);
	malloc_trim(0);
	size_t base = mallinfo2().uordblks;
	for (int i = 0; i < N; i++) {
		tpair(fds[i]);
		SSL *cli = tclient_new(cctx, fds[i][1], "bench.example.com", NULL);
		conns[i] = tg_tls_conn_new(st, fds[i][0]);
		if (thandshake(cli, conns[i]) != 0 || texchange(cli, conns[i]) != 0) {
			printf("  idle memory: handshake failed\n");
			return;
		}
		SSL_free(cli); /* keep only the server side */
	}
	size_t used = mallinfo2().uordblks - base;
	printf("  %-22s %8zu bytes per idle established connection (server side, %d "
	       "connections)\n",
	       "idle memory", used / N, N);
	for (int i = 0; i < N; i++) {
		tg_tls_conn_free(conns[i]);
		close(fds[i][0]);
		close(fds[i][1]);
	}
	SSL_CTX_free(cctx);
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 2.0;
	if (secs <= 0)
		secs = 2.0;
	tg_log_set_level(TG_LOG_ERROR);
	if (tg_tls_init() < 0)
		return 1;
	printf("tls_bench: OpenSSL %s, %.1f s per measure, one thread\n",
	       OpenSSL_version(OPENSSL_VERSION), secs);
	for (int rsa = 0; rsa < 2; rsa++) {
		tcert_t cert = tcert_make(
		    &(tcert_opts_t){.cn = "bench", .sans = "DNS:bench.example.com", .rsa = rsa});
		tg_tls_store_t *st = tstore(NULL, NULL, &cert, 1);
		const char *k = rsa ? "RSA-2048" : "ECDSA-P256";
		char label[64];
		printf("%s certificate:\n", k);
		snprintf(label, sizeof(label), "TLSv1.3 %s", k);
		handshakes(label, st, 0, secs);
		snprintf(label, sizeof(label), "TLSv1.2 %s", k);
		handshakes(label, st, TLS1_2_VERSION, secs);
		if (!rsa) {
			bulk(st, secs);
			idle_memory(st);
		}
		tg_tls_store_free(st);
		tcert_free(&cert);
	}
	tg_tls_cleanup();
	return 0;
}

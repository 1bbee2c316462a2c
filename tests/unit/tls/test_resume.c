/*
 * test_resume.c - session resumption through the process-wide ticket keys:
 * across two connection objects ("workers"), across a store rebuild, after
 * one key rotation but not after the key was dropped, not onto another
 * certificate, not with tickets off; TLS 1.2 tickets and TLS 1.3 PSK.
 * Resumption is checked on the client (SSL_session_reused) and the server.
 */
#include "tls_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

static tcert_t a_cert, b_cert;

static int setup(void **state)
{
	(void)state;
	if (tg_tls_init() < 0)
		return -1;
	a_cert = tcert_make(&(tcert_opts_t){.cn = "a", .sans = "DNS:a.example.com"});
	b_cert = tcert_make(&(tcert_opts_t){.cn = "b", .sans = "DNS:b.example.com"});
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tcert_free(&a_cert);
	tcert_free(&b_cert);
	tg_tls_cleanup();
	return 0;
}

/*
 * One connection to store s with SNI sni, offering session sess (may be NULL).
 * Returns 1 when resumed, 0 when a full handshake happened, -1 on failure.
 * *out (when not NULL) receives the session to offer next time.
 */
static int connect_once(tg_tls_store_t *s, int max_version, const char *sni, SSL_SESSION *sess,
			SSL_SESSION **out)
{
	int sv[2];
	tpair(sv);
	SSL_CTX *cctx = tclient_ctx(0, max_version, NULL, 0, NULL);
	SSL *cli = tclient_new(cctx, sv[1], sni, sess);
	tg_tls_conn_t *c = tg_tls_conn_new(s, sv[0]);
	int rc = -1;
	if (c && thandshake(cli, c) == 0 && texchange(cli, c) == 0) {
		bool cr = SSL_session_reused(cli), sr = tg_tls_conn_resumed(c);
		rc = cr && sr ? 1 : (!cr && !sr ? 0 : -1);
		if (out) {
			*out = SSL_get1_session(cli);
			if (!*out || !SSL_SESSION_is_resumable(*out))
				rc = -1;
		}
	}
	tg_tls_conn_free(c);
	/* Without a shutdown OpenSSL marks the client's session not resumable. */
	SSL_shutdown(cli);
	SSL_free(cli);
	SSL_CTX_free(cctx);
	close(sv[0]);
	close(sv[1]);
	return rc;
}

static void resume_across_workers(int max_version)
{
	tcert_t certs[] = {a_cert, b_cert};
	tg_tls_store_t *s = tstore(NULL, NULL, certs, 2);
	assert_non_null(s);
	SSL_SESSION *sess = NULL;
	const char *proto = max_version == TLS1_2_VERSION ? "TLSv1.2" : "TLSv1.3";
	char line[96];
	snprintf(line, sizeof(line), "tidegate_tls_resumed_handshakes_total{protocol=\"%s\"} ",
		 proto);
	uint64_t before = tmetric(line);

	assert_int_equal(connect_once(s, max_version, "a.example.com", NULL, &sess), 0);
	/* A second connection object (another worker would create its own). */
	assert_int_equal(connect_once(s, max_version, "a.example.com", sess, NULL), 1);
	assert_int_equal(tmetric(line), before + 1);

	/* Another certificate's host does not accept this session. */
	assert_int_equal(connect_once(s, max_version, "b.example.com", sess, NULL), 0);

	/* A new store built from the same Secrets (a snapshot swap), with and
	 * without the previous store as template. */
	tg_tls_store_t *s2 = tstore(NULL, s, certs, 2);
	tg_tls_store_t *s3 = tstore(NULL, NULL, certs, 2);
	tg_tls_store_free(s);
	assert_int_equal(connect_once(s2, max_version, "a.example.com", sess, NULL), 1);
	assert_int_equal(connect_once(s3, max_version, "a.example.com", sess, NULL), 1);
	tg_tls_store_free(s2);
	tg_tls_store_free(s3);
	SSL_SESSION_free(sess);
}

static void test_resume_tls13(void **state)
{
	(void)state;
	resume_across_workers(0);
}

static void test_resume_tls12(void **state)
{
	(void)state;
	resume_across_workers(TLS1_2_VERSION);
}

static void rotation(int max_version)
{
	tg_tls_store_t *s = tstore(NULL, NULL, &a_cert, 1);
	assert_non_null(s);
	SSL_SESSION *old = NULL, *renewed = NULL;
	assert_int_equal(connect_once(s, max_version, "a.example.com", NULL, &old), 0);

	uint64_t rot = tmetric("tidegate_tls_ticket_key_rotations_total ");
	assert_int_equal(tg_tls_ticket_keys_rotate(), 0);
	assert_int_equal(tmetric("tidegate_tls_ticket_key_rotations_total "), rot + 1);
	/* Sealed with the previous key: still resumes, and is re-issued. */
	assert_int_equal(connect_once(s, max_version, "a.example.com", old, &renewed), 1);

	assert_int_equal(tg_tls_ticket_keys_rotate(), 0);
	/* The first key is gone: full handshake. */
	assert_int_equal(connect_once(s, max_version, "a.example.com", old, NULL), 0);
	/* The ticket re-issued after the first rotation still works. */
	assert_int_equal(connect_once(s, max_version, "a.example.com", renewed, NULL), 1);
	SSL_SESSION_free(old);
	SSL_SESSION_free(renewed);
	tg_tls_store_free(s);
}

static void test_rotation_tls13(void **state)
{
	(void)state;
	rotation(0);
}

static void test_rotation_tls12(void **state)
{
	(void)state;
	rotation(TLS1_2_VERSION);
}

/* A fixed key (ssl-session-ticket-key) shared by two "nodes": a ticket from
 * one resumes on the other even after the local ring moved on. */
static void test_fixed_key(void **state)
{
	(void)state;
	char err[TG_TLS_ERR_MAX];
	unsigned char key[80] = {0};
	assert_int_equal(tg_tls_ticket_keys_set(key, 48, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "80"));
	RAND_bytes(key, sizeof(key));
	assert_int_equal(tg_tls_ticket_keys_set(key, sizeof(key), err, sizeof(err)), 0);
	tg_tls_store_t *s = tstore(NULL, NULL, &a_cert, 1);
	SSL_SESSION *sess = NULL;
	assert_int_equal(connect_once(s, 0, "a.example.com", NULL, &sess), 0);
	/* The other node starts with random keys, then loads the file. */
	assert_int_equal(tg_tls_ticket_keys_rotate(), 0);
	assert_int_equal(tg_tls_ticket_keys_rotate(), 0);
	assert_int_equal(connect_once(s, 0, "a.example.com", sess, NULL), 0);
	assert_int_equal(tg_tls_ticket_keys_set(key, sizeof(key), err, sizeof(err)), 0);
	assert_int_equal(connect_once(s, 0, "a.example.com", sess, NULL), 1);
	SSL_SESSION_free(sess);
	tg_tls_store_free(s);
}

/* ssl-session-tickets false: no resumption. */
static void test_tickets_off(void **state)
{
	(void)state;
	tg_tls_options_t o = {.no_session_tickets = true};
	tg_tls_store_t *s = tstore(&o, NULL, &a_cert, 1);
	assert_non_null(s);
	for (int v = 0; v < 2; v++) {
		int maxv = v ? TLS1_2_VERSION : 0;
		SSL_SESSION *sess = NULL;
		int sv[2];
		tpair(sv);
		SSL_CTX *cctx = tclient_ctx(0, maxv, NULL, 0, NULL);
		SSL *cli = tclient_new(cctx, sv[1], "a.example.com", NULL);
		tg_tls_conn_t *c = tg_tls_conn_new(s, sv[0]);
		assert_int_equal(thandshake(cli, c), 0);
		assert_int_equal(texchange(cli, c), 0);
		sess = SSL_get1_session(cli);
		tg_tls_conn_free(c);
		SSL_shutdown(cli);
		SSL_free(cli);
		SSL_CTX_free(cctx);
		close(sv[0]);
		close(sv[1]);
		if (sess && SSL_SESSION_is_resumable(sess))
			assert_int_equal(connect_once(s, maxv, "a.example.com", sess, NULL), 0);
		SSL_SESSION_free(sess);
	}
	tg_tls_store_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_resume_tls13),   cmocka_unit_test(test_resume_tls12),
	    cmocka_unit_test(test_rotation_tls13), cmocka_unit_test(test_rotation_tls12),
	    cmocka_unit_test(test_fixed_key),	   cmocka_unit_test(test_tickets_off),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

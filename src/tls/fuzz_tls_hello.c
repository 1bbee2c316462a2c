/*
 * fuzz_tls_hello.c - libFuzzer target: arbitrary bytes sent by a "client" to
 * a server-side tg_tls_conn_t over a real socketpair. Exercises the record
 * layer, ClientHello parsing, our SNI/ClientHello callback (certificate and
 * client-certificate policy selection), ALPN selection, ticket decryption of
 * forged tickets, and the error classification. The seed corpus holds real
 * ClientHellos (TLS 1.2, 1.3, with and without SNI, ALPN, tickets).
 */
#include "core/log.h"
#include "tls/tls.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tg_tls_store_t *store;
static const tg_tls_client_auth_t *auth;

static char *to_pem(X509 *x, EVP_PKEY *k, size_t *len)
{
	BIO *m = BIO_new(BIO_s_mem());
	if (x)
		PEM_write_bio_X509(m, x);
	else
		PEM_write_bio_PrivateKey(m, k, NULL, NULL, 0, NULL, NULL);
	char *p;
	*len = (size_t)BIO_get_mem_data(m, &p);
	char *s = malloc(*len);
	memcpy(s, p, *len);
	BIO_free(m);
	return s;
}

/* A self-signed certificate for a.example.com and *.w.example.com, also used
 * as the client-certificate CA. */
static void init_once(void)
{
	char err[TG_TLS_ERR_MAX];
	tg_log_set_level(TG_LOG_ERROR);
	if (tg_tls_init() < 0)
		abort();
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"fuzz", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
						"DNS:a.example.com,DNS:*.w.example.com");
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	X509_sign(x, k, EVP_sha256());
	size_t cl, kl;
	char *crt = to_pem(x, NULL, &cl), *key = to_pem(NULL, k, &kl);

	tg_tls_store_builder_t *b = tg_tls_store_builder_new(NULL, NULL, err, sizeof(err));
	const char *hosts[] = {"b.example.com"};
	if (!b ||
	    tg_tls_store_add_cert(b, "fuzz/a", crt, cl, key, kl, hosts, 1, err, sizeof(err)) < 0)
		abort();
	tg_tls_client_auth_config_t cfg = {
	    .ca_pem = crt, .ca_len = cl, .verify = TG_TLS_VERIFY_OPTIONAL_NO_CA, .pass_cert = true};
	const char *auth_hosts[] = {"a.example.com"};
	auth = tg_tls_store_add_client_auth(b, "fuzz/ca", auth_hosts, 1, &cfg, err, sizeof(err));
	store = tg_tls_store_build(b, err, sizeof(err));
	if (!auth || !store)
		abort();
	free(crt);
	free(key);
	X509_free(x);
	EVP_PKEY_free(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!store)
		init_once();
	if (size > 65536)
		return 0;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 0;
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	int big = 1 << 20;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (size && write(sv[1], data, size) != (ssize_t)size) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	shutdown(sv[1], SHUT_WR);

	tg_tls_conn_t *c = tg_tls_conn_new(store, sv[0]);
	if (!c)
		abort();
	int rc = TG_AGAIN;
	for (int i = 0; i < 4 && rc == TG_AGAIN; i++)
		rc = tg_tls_conn_handshake(c);
	if (rc == TG_ERROR &&
	    (tg_tls_conn_error_kind(c) == TG_TLS_ERR_NONE || !*tg_tls_conn_error(c)))
		abort(); /* every failure has a kind and a reason */
	if (rc == TG_OK) {
		char buf[4096];
		while (tg_tls_conn_read(c, buf, sizeof(buf)) > 0)
			;
		const char *why;
		tg_sbuf_t h = {0};
		tg_tls_conn_check_client_auth(c, auth, &why, &h);
		tg_sbuf_free(&h);
	}
	(void)tg_tls_conn_sni(c);
	tg_tls_conn_free(c);
	close(sv[0]);
	close(sv[1]);
	return 0;
}

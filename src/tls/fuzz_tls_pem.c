/*
 * fuzz_tls_pem.c - libFuzzer target for what a Secret or a ConfigMap can put
 * in front of the TLS module: tls.crt/tls.key validation, ca.crt/ca.crl
 * validation, ssl-protocols/ssl-ciphers and auth-tls-verify-client parsing.
 * Input: two fields separated by the first NUL byte (cert and key, or CA and
 * CRL); the first field also serves as the option strings.
 */
#include "core/log.h"
#include "tls/tls.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool inited;
	if (!inited) {
		tg_log_set_level(TG_LOG_ERROR);
		if (tg_tls_init() < 0)
			abort();
		inited = true;
	}
	const char *a = (const char *)data;
	const char *nul = memchr(data, 0, size);
	size_t alen = nul ? (size_t)(nul - a) : size;
	const char *b = nul ? nul + 1 : "";
	size_t blen = nul ? size - alen - 1 : 0;
	char err[TG_TLS_ERR_MAX];

	err[0] = '\0';
	if (tg_tls_cert_validate(a, alen, b, blen, err, sizeof(err)) < 0 && !err[0])
		abort(); /* a rejection always says why */
	tg_tls_client_auth_config_t cfg = {
	    .ca_pem = a, .ca_len = alen, .crl_pem = b, .crl_len = blen, .verify = TG_TLS_VERIFY_ON};
	err[0] = '\0';
	if (tg_tls_client_auth_validate(&cfg, err, sizeof(err)) < 0 && !err[0])
		abort();
	tg_tls_verify_t v;
	(void)tg_tls_verify_parse(a, alen, &v);
	if (alen < 512) {
		char s[512];
		memcpy(s, a, alen);
		s[alen] = '\0';
		tg_tls_options_t o = {.protocols = s};
		err[0] = '\0';
		if (tg_tls_options_check(&o, err, sizeof(err)) < 0 && !err[0])
			abort();
		o = (tg_tls_options_t){.ciphers = s};
		err[0] = '\0';
		if (tg_tls_options_check(&o, err, sizeof(err)) < 0 && !err[0])
			abort();
	}
	return 0;
}

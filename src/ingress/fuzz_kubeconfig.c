/*
 * fuzz_kubeconfig.c - libFuzzer target: arbitrary bytes as a kubeconfig ->
 * tg_kubeconfig_parse (YAML, context/cluster/user resolution, base64 *-data
 * fields, path joining). Files are never read here: the parser only records
 * paths. The first byte picks a context override and a base directory so
 * both code paths run. Seeds: corpus/kubeconfig/; dictionary: kubeconfig.dict.
 */
#include "ingress/kubeconfig.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	tg_kube_auth_t a;
	char err[512];
	int rc = tg_kubeconfig_parse((const char *)data + 1, size - 1, (mode & 1) ? "/base" : NULL,
				     (mode & 2) ? "x" : NULL, &a, err, sizeof(err));
	if (rc == 0) {
		/* What a successful parse promises. */
		if (!a.server || !a.context || strncmp(a.server, "http", 4) != 0)
			__builtin_trap();
		if ((a.cert || a.cert_file) != (a.key || a.key_file))
			__builtin_trap();
		if (a.token && strpbrk(a.token, "\r\n"))
			__builtin_trap();
	} else if (a.server || a.token || err[0] == 0) {
		__builtin_trap(); /* failure leaves nothing behind and says why */
	}
	tg_kube_auth_free(&a);
	return 0;
}

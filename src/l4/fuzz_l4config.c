/*
 * fuzz_l4config.c - libFuzzer target for the balancer YAML parser: any bytes
 * must give either a configuration or an error message, never a crash, a
 * leak or an unterminated message.
 *
 *   make fuzz-build && build-fuzz/fuzz/fuzz_l4config -dict=src/l4/l4config.dict
 * src/l4/corpus/l4config
 */
#include "l4/config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tg_l4_config_t *c = NULL;
	char err[TG_L4_ERR_MAX];
	memset(err, 'x', sizeof(err));
	int rc = tg_l4_config_parse((const char *)data, size, &c, err, sizeof(err));
	if (rc == 0) {
		/* Invariants a caller relies on. */
		if (!c || c->n_vips == 0 || c->interface[0] == '\0')
			__builtin_trap();
		for (size_t i = 0; i < c->n_vips; i++) {
			const tg_l4_vip_cfg_t *v = &c->vips[i];
			if (v->n_reals >= v->ring_size ||
			    v->health.timeout_ms > v->health.interval_ms)
				__builtin_trap();
			for (size_t r = 0; r < v->n_reals; r++)
				if (v->reals[r].ip.family != v->ip.family ||
				    v->reals[r].weight == 0)
					__builtin_trap();
		}
		tg_l4_config_free(c);
	} else {
		if (c != NULL || memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			__builtin_trap();
	}
	return 0;
}

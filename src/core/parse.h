/*
 * parse.h - parsing of configuration scalars shared by the ConfigMap keys,
 * annotations and the balancer YAML. All take a slice (not NUL-terminated),
 * return 0 on success or -EINVAL with *out untouched.
 */
#ifndef TG_CORE_PARSE_H
#define TG_CORE_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Duration: "500ms", "30s", "5m", "1h", "2d", combinations ("1m30s"), or a bare
 * number taken in `bare_unit_ms` units (1000 for ingress-nginx keys that are
 * plain seconds; 0 to refuse a bare number). Result in milliseconds. */
int tg_parse_duration_ms(const char *s, size_t len, uint64_t bare_unit_ms, uint64_t *out);

/* Size as nginx writes it: "1024", "8k", "1m", "1g" (case-insensitive, powers
 * of 1024). "0" means 0. Result in bytes. */
int tg_parse_size(const char *s, size_t len, uint64_t *out);

/* Unsigned decimal integer without sign, whitespace or leading '+'. */
int tg_parse_u64(const char *s, size_t len, uint64_t *out);

/* "true"/"false" (also "on"/"off", "yes"/"no", "1"/"0"), case-insensitive. */
int tg_parse_bool(const char *s, size_t len, bool *out);

#endif

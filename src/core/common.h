/*
 * common.h - definitions every module shares: return codes, slices, helpers.
 *
 * Return-value convention (STYLE.md rule 3):
 *   parsers        bytes consumed (>= 0), TG_AGAIN (need more), TG_ERROR (malformed)
 *   syscall/libbpf 0 or -errno
 *   predicates     bool
 */
#ifndef TG_CORE_COMMON_H
#define TG_CORE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TG_OK	 0
#define TG_ERROR (-1) /* malformed input; the callee sets a reason string */
#define TG_AGAIN (-2) /* incomplete input: call again with more bytes */

#define TG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define TG_MIN(a, b)	 ((a) < (b) ? (a) : (b))
#define TG_MAX(a, b)	 ((a) > (b) ? (a) : (b))
#define TG_LIKELY(x)	 __builtin_expect(!!(x), 1)
#define TG_UNLIKELY(x)	 __builtin_expect(!!(x), 0)
#define TG_UNUSED	 __attribute__((unused))

/* A byte slice: never NUL-terminated by contract. Does not own its bytes. */
typedef struct tg_str {
	const char *ptr; /* first byte (may be NULL when len == 0) */
	size_t len;	 /* number of bytes */
} tg_str_t;

#define TG_STR(lit) ((tg_str_t){(lit), sizeof(lit) - 1})

/* True when slice s equals the len bytes at p exactly. */
static inline bool tg_str_eq(tg_str_t s, const char *p, size_t len)
{
	return s.len == len && (len == 0 || memcmp(s.ptr, p, len) == 0);
}

/* ASCII lower-casing, locale independent. */
static inline char tg_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* True when slice s equals the len bytes at p ignoring ASCII case. */
static inline bool tg_str_caseeq(tg_str_t s, const char *p, size_t len)
{
	if (s.len != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (tg_lower(s.ptr[i]) != tg_lower(p[i]))
			return false;
	return true;
}

#endif

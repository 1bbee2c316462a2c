/*
 * guard.h - unit-test helper for parsers: places a copy of a byte string next
 * to a PROT_NONE page, so reading one byte outside it crashes the test
 * (SIGSEGV) instead of passing by luck. The copy is mapped read-only, so a
 * parser that writes to its input crashes too.
 *
 * Usage:
 *	const char *p = tg_guard_dup(input, len);   // p[len] is unmapped
 *	... parse(p, len) ...
 *	tg_guard_free(p, len);
 *
 * Allocation failure aborts the test with a message (tests only).
 */
#ifndef TG_TESTS_GUARD_H
#define TG_TESTS_GUARD_H

#include <stddef.h>

/* Copies len bytes so that they end right before a PROT_NONE page (overreads
 * crash). len may be 0: the pointer then points at the guard page itself. */
const char *tg_guard_dup(const void *data, size_t len);

/* Copies len bytes so that they start right after a PROT_NONE page (reads
 * before the first byte crash). */
const char *tg_guard_dup_front(const void *data, size_t len);

/* Copies a NUL-terminated string without its NUL, before a guard page;
 * *len receives its length. */
const char *tg_guard_str(const char *s, size_t *len);

/* Releases a copy made by any function above (p and len as returned/passed).
 * Accepts NULL. */
void tg_guard_free(const char *p, size_t len);

#endif

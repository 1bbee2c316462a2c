/*
 * sbuf.h - growable text buffer for cold paths (metrics pages, error messages,
 * generated configuration). Not for the request hot path: it allocates.
 *
 * Invariant: data is NULL or points to cap bytes, len < cap, data[len] == '\0'.
 * After an allocation failure `oom` is set and further appends are ignored.
 */
#ifndef TG_CORE_SBUF_H
#define TG_CORE_SBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tg_sbuf {
	char *data; /* owned; NUL-terminated when non-NULL */
	size_t len; /* bytes used, excluding the NUL */
	size_t cap; /* bytes allocated */
	bool oom;   /* an append failed for lack of memory */
} tg_sbuf_t;

/* Appends formatted text. */
void tg_sbuf_printf(tg_sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends len raw bytes. */
void tg_sbuf_append(tg_sbuf_t *b, const char *p, size_t len);

/* Appends s with the escaping Prometheus requires inside a label value
 * (backslash, double quote and newline). */
void tg_sbuf_label_escape(tg_sbuf_t *b, const char *s);

/* Releases the storage; the buffer can be reused afterwards. Accepts NULL. */
void tg_sbuf_free(tg_sbuf_t *b);

#endif

/*
 * kube_stream.h - splits a Kubernetes watch response body into its events.
 *
 * A watch answers with one JSON object per event, {"type": ..., "object":
 * {...}}, sent over chunked transfer-encoding (libcurl removes the chunk
 * framing). The API server writes a newline after each object, but nothing
 * ties chunk boundaries to event boundaries: an event may arrive in many
 * pieces and one read may hold several events. This splitter does not trust
 * newlines either: it tracks JSON nesting (braces and brackets outside
 * strings, with backslash escapes, brackets matched by type) and hands out
 * each complete top-level object. Whitespace between objects is skipped; anything else there is an
 * error. Bytes are scanned once however they are split.
 *
 * Invariant: consumed <= start <= scan <= len <= cap; bytes [consumed, len)
 * are kept; [start, scan) is the object being scanned.
 */
#ifndef TG_INGRESS_KUBE_STREAM_H
#define TG_INGRESS_KUBE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest single event accepted by default (a Secret holds at most 1 MiB of
 * data; base64 and metadata make it larger). */
#define TG_KUBE_STREAM_MAX (16u << 20)

typedef struct tg_kube_stream {
	char *buf;	    /* received bytes (owned) */
	size_t len;	    /* bytes held */
	size_t cap;	    /* bytes allocated */
	size_t consumed;    /* bytes already handed out (dropped at the next feed) */
	size_t start;	    /* first byte of the object being scanned */
	size_t scan;	    /* next byte to look at */
	uint32_t depth;	    /* nesting depth at scan; 0 between objects */
	uint64_t arrays[8]; /* bit d set: the container at depth d+1 is an array
			     * (so a closing bracket must match it) */
	bool in_string;	    /* scan is inside a JSON string */
	bool escape;	    /* the previous string byte was a backslash */
	size_t max;	    /* largest object accepted (0: TG_KUBE_STREAM_MAX) */
	char reason[96];    /* why the stream was declared malformed */
} tg_kube_stream_t;

/* A zeroed struct is a valid empty stream; this is the same. */
void tg_kube_stream_init(tg_kube_stream_t *s);

/* Appends n bytes. Returns 0, or -ENOMEM (the stream is unchanged). */
int tg_kube_stream_feed(tg_kube_stream_t *s, const char *p, size_t n);

/*
 * Finds the next complete top-level JSON object. Returns its length with
 * *obj pointing at its first byte ('{'), valid until the next feed or reset;
 * TG_AGAIN when more bytes are needed; TG_ERROR when the stream cannot be a
 * sequence of objects (a stray byte between objects, a closing bracket
 * that does not match its opening one, nesting beyond 512, an object larger than the limit), with
 * s->reason set. After TG_ERROR the stream must be reset.
 */
long tg_kube_stream_next(tg_kube_stream_t *s, const char **obj);

/* Drops every byte and the scanning state (a new connection). Keeps the
 * buffer allocation. */
void tg_kube_stream_reset(tg_kube_stream_t *s);

/* Frees the buffer; the stream is empty afterwards. Accepts NULL. */
void tg_kube_stream_free(tg_kube_stream_t *s);

/*
 * True when the len bytes at p are well-formed UTF-8 (no overlong forms,
 * surrogates or code points past U+10FFFF). JSON and YAML are UTF-8, and
 * libfyaml 0.7 can loop forever on some malformed sequences, so every text
 * from outside (API responses, kubeconfig) is checked before it is parsed.
 * On false, *bad (when not NULL) receives the offset of the first bad byte.
 */
bool tg_kube_utf8_valid(const char *p, size_t len, size_t *bad);

#endif

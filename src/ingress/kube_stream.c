#include "ingress/kube_stream.h"
#include "core/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deeper than any Kubernetes object; bounds what a hostile server can make
 * the JSON parser do later. */
#define MAX_DEPTH 512

void tg_kube_stream_init(tg_kube_stream_t *s)
{
	memset(s, 0, sizeof(*s));
}

static size_t limit(const tg_kube_stream_t *s)
{
	return s->max ? s->max : TG_KUBE_STREAM_MAX;
}

int tg_kube_stream_feed(tg_kube_stream_t *s, const char *p, size_t n)
{
	if (s->consumed) {
		/* Drop what was handed out; the offsets move with the bytes. */
		memmove(s->buf, s->buf + s->consumed, s->len - s->consumed);
		s->len -= s->consumed;
		s->start -= s->consumed;
		s->scan -= s->consumed;
		s->consumed = 0;
	}
	if (n > s->cap - s->len) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap - s->len < n) {
			if (cap > SIZE_MAX / 2)
				return -ENOMEM;
			cap *= 2;
		}
		char *nb = realloc(s->buf, cap);
		if (!nb)
			return -ENOMEM;
		s->buf = nb;
		s->cap = cap;
	}
	if (n)
		memcpy(s->buf + s->len, p, n);
	s->len += n;
	return 0;
}

static long malformed(tg_kube_stream_t *s, const char *what, size_t at)
{
	snprintf(s->reason, sizeof(s->reason), "%s (offset %zu)", what, at);
	return TG_ERROR;
}

long tg_kube_stream_next(tg_kube_stream_t *s, const char **obj)
{
	if (s->reason[0])
		return TG_ERROR;
	/* Between objects: skip whitespace; the next byte must open one. */
	if (s->depth == 0) {
		while (s->scan < s->len) {
			char c = s->buf[s->scan];
			if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
				s->scan++;
				continue;
			}
			if (c != '{')
				return malformed(s, "unexpected byte between events", s->scan);
			break;
		}
		/* Whitespace alone is consumed so the buffer does not grow. */
		s->consumed = s->start = s->scan;
		if (s->scan == s->len)
			return TG_AGAIN;
	}
	while (s->scan < s->len) {
		char c = s->buf[s->scan++];
		if (s->in_string) {
			if (s->escape)
				s->escape = false;
			else if (c == '\\')
				s->escape = true;
			else if (c == '"')
				s->in_string = false;
			continue;
		}
		switch (c) {
		case '"':
			s->in_string = true;
			break;
		case '{':
		case '[': {
			if (s->depth == MAX_DEPTH)
				return malformed(s, "nesting deeper than 512", s->scan);
			uint32_t d = s->depth++;
			uint64_t bit = 1ull << (d % 64);
			if (c == '[')
				s->arrays[d / 64] |= bit;
			else
				s->arrays[d / 64] &= ~bit;
			break;
		}
		case '}':
		case ']': {
			if (s->depth == 0)
				return malformed(s, "unbalanced closing bracket", s->scan);
			uint32_t d = s->depth - 1;
			bool array = (s->arrays[d / 64] >> (d % 64)) & 1;
			if (array != (c == ']'))
				return malformed(s, "mismatched closing bracket", s->scan);
			if (--s->depth == 0) {
				size_t n = s->scan - s->start;
				*obj = s->buf + s->start;
				s->consumed = s->start = s->scan;
				return (long)n;
			}
			break;
		}
		default:
			break;
		}
	}
	if (s->scan - s->start > limit(s))
		return malformed(s, "event larger than the limit", s->scan);
	return TG_AGAIN;
}

void tg_kube_stream_reset(tg_kube_stream_t *s)
{
	char *buf = s->buf;
	size_t cap = s->cap, max = s->max;
	memset(s, 0, sizeof(*s));
	s->buf = buf;
	s->cap = cap;
	s->max = max;
}

void tg_kube_stream_free(tg_kube_stream_t *s)
{
	if (!s)
		return;
	free(s->buf);
	memset(s, 0, sizeof(*s));
}

bool tg_kube_utf8_valid(const char *p, size_t len, size_t *bad)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0;
	while (i < len) {
		unsigned char c = u[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		uint32_t cp;
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			goto fail; /* continuation byte, overlong lead (c0, c1), or > f4 */
		}
		if (n > len - i - 1)
			goto fail;
		for (size_t k = 1; k <= n; k++) {
			if ((u[i + k] & 0xc0) != 0x80)
				goto fail;
			cp = (cp << 6) | (u[i + k] & 0x3f);
		}
		/* Overlong 3- and 4-byte forms, surrogates, beyond Unicode. */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			goto fail;
		i += n + 1;
	}
	return true;
fail:
	if (bad)
		*bad = i;
	return false;
}

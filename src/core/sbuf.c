#include "core/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(tg_sbuf_t *b, size_t extra)
{
	if (b->oom)
		return false;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void tg_sbuf_append(tg_sbuf_t *b, const char *p, size_t len)
{
	if (!reserve(b, len))
		return;
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void tg_sbuf_printf(tg_sbuf_t *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void tg_sbuf_label_escape(tg_sbuf_t *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			tg_sbuf_append(b, "\\\\", 2);
		else if (*s == '"')
			tg_sbuf_append(b, "\\\"", 2);
		else if (*s == '\n')
			tg_sbuf_append(b, "\\n", 2);
		else
			tg_sbuf_append(b, s, 1);
	}
}

void tg_sbuf_free(tg_sbuf_t *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

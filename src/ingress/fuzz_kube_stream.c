/*
 * fuzz_kube_stream.c - libFuzzer target for the watch-body splitter: the
 * input is cut into chunks whose sizes come from its first bytes, fed in
 * order, and every object handed out is checked to start with '{', end with
 * '}' and lie inside the buffer. The same input fed whole must yield the
 * same objects (chunking never changes the result). Seeds:
 * corpus/kube_stream/.
 */
#include "ingress/kube_stream.h"
#include "core/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds data in chunks; returns a hash of the objects and the final state. */
static uint64_t run(const uint8_t *data, size_t size, const uint8_t *cuts, size_t ncuts,
		    bool *limited)
{
	tg_kube_stream_t s;
	tg_kube_stream_init(&s);
	s.max = 4096;
	uint64_t h = 1469598103934665603ull;
	size_t off = 0, c = 0;
	bool dead = false;
	while (off < size && !dead) {
		size_t n = ncuts ? (size_t)cuts[c++ % ncuts] % 64 + 1 : size;
		if (n > size - off)
			n = size - off;
		if (tg_kube_stream_feed(&s, (const char *)data + off, n))
			break;
		off += n;
		for (;;) {
			const char *obj;
			long len = tg_kube_stream_next(&s, &obj);
			if (len == TG_AGAIN)
				break;
			if (len == TG_ERROR) {
				h ^= 0xdead;
				*limited = strstr(s.reason, "limit") != NULL;
				dead = true;
				break;
			}
			if (len < 2 || obj[0] != '{' || obj[len - 1] != '}' || obj < s.buf ||
			    obj + len > s.buf + s.len)
				__builtin_trap();
			for (long i = 0; i < len; i++)
				h = (h ^ (uint8_t)obj[i]) * 1099511628211ull;
			h = (h ^ 0x100) * 1099511628211ull;
		}
	}
	tg_kube_stream_free(&s);
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	size_t ncuts = data[0] % 8;
	if (ncuts + 1 > size)
		return 0;
	const uint8_t *cuts = data + 1, *body = data + 1 + ncuts;
	size_t blen = size - 1 - ncuts;
	/* The size limit is checked while an object is incomplete, so it
	 * depends on chunking; every other outcome must not. */
	bool la = false, lb = false;
	uint64_t a = run(body, blen, cuts, ncuts, &la), b = run(body, blen, NULL, 0, &lb);
	if (!la && !lb && a != b)
		__builtin_trap();
	return 0;
}

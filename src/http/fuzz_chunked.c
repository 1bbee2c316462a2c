/*
 * fuzz_chunked.c - libFuzzer target for tg_http_chunked_scan.
 *
 * Input: byte 0 seeds the split points, the rest is a chunked body (and
 * whatever follows it). The body is scanned in one piece and again in random
 * pieces, each piece in its own exactly sized heap block so ASan catches any
 * read past it; both must agree on bytes consumed, completion, error reason,
 * decoded byte count and final state. A finished body must end with CRLF.
 * A third pass decodes it with tg_http_chunked_next_data (one data run per
 * call): it must agree with the scan too, its runs must lie inside what each
 * call consumed, and their total must be the decoded byte count.
 */
#include "http/http.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what)
{
	fprintf(stderr, "fuzz_chunked: property violated: %s\n", what);
	abort();
}

static uint32_t next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* What a scan ended with. */
struct outcome {
	ssize_t used;	     /* bytes consumed, or TG_ERROR */
	bool done;	     /* the body ended */
	tg_http_chunked_t c; /* final state */
};

static ssize_t scan_copy(tg_http_chunked_t *c, const uint8_t *p, size_t n, bool *done)
{
	char *b = malloc(n ? n : 1);

	if (!b)
		abort();
	if (n)
		memcpy(b, p, n);
	*done = true; /* the scanner must set it */
	ssize_t r = tg_http_chunked_scan(c, b, n, done);
	free(b);
	if (r != TG_ERROR && (r < 0 || (size_t)r > n))
		die("consumed more than given");
	if (r != TG_ERROR && !*done && (size_t)r != n)
		die("stopped early without done");
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint32_t rnd = 0xc2b2ae35u ^ data[0] ^ (uint32_t)size << 8;
	const uint8_t *body = data + 1;
	size_t n = size - 1;
	struct outcome one = {0}, many = {0};

	one.used = scan_copy(&one.c, body, n, &one.done);
	if (one.used == TG_ERROR && !one.c.error)
		die("error without reason");
	if (one.done && (one.used < 5 || memcmp(body + one.used - 2, "\r\n", 2) != 0))
		die("finished body does not end with CRLF");

	size_t off = 0;
	for (;;) {
		uint32_t x = next_rand(&rnd);
		size_t piece = (x & 1) ? (x >> 8) % 4 : (x >> 8) % (n + 1);
		piece = TG_MIN(piece, n - off);
		bool done;
		ssize_t r = scan_copy(&many.c, body + off, piece, &done);
		if (r == TG_ERROR) {
			many.used = TG_ERROR;
			break;
		}
		off += (size_t)r;
		many.used = (ssize_t)off;
		if (done) {
			many.done = true;
			break;
		}
		if (off == n)
			break;
	}
	if (one.used != many.used || one.done != many.done)
		die("split scan consumed differently");
	if (one.used == TG_ERROR && strcmp(one.c.error, many.c.error) != 0)
		die("split scan failed differently");
	if (one.c.body_bytes != many.c.body_bytes || one.c.chunk_left != many.c.chunk_left ||
	    one.c.state != many.c.state)
		die("split scan ended in another state");

	/* Decoding pass over one exactly sized copy. */
	char *b = malloc(n ? n : 1);
	if (!b)
		abort();
	if (n)
		memcpy(b, body, n);
	tg_http_chunked_t dc = {0};
	size_t pos = 0;
	uint64_t decoded = 0;
	ssize_t dused = 0;
	bool ddone = false;
	for (;;) {
		size_t doff, dlen;
		ssize_t r = tg_http_chunked_next_data(&dc, b + pos, n - pos, &ddone, &doff, &dlen);
		if (r == TG_ERROR) {
			dused = TG_ERROR;
			break;
		}
		if ((size_t)r > n - pos || (dlen && (doff >= (size_t)r || doff + dlen > (size_t)r)))
			die("data run outside the consumed bytes");
		decoded += dlen;
		pos += (size_t)r;
		dused = (ssize_t)pos;
		if (ddone || pos == n)
			break;
		if (r == 0)
			die("no progress without done");
	}
	free(b);
	if (dused != one.used || ddone != one.done)
		die("decoding consumed differently");
	if (dused == TG_ERROR && strcmp(dc.error, one.c.error) != 0)
		die("decoding failed differently");
	if (dused != TG_ERROR && decoded != one.c.body_bytes)
		die("decoded bytes differ from the scan's count");
	return 0;
}

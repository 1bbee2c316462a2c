/*
 * fuzz_bgp.c - libFuzzer target for the BGP message parser (l4/bgp.h), which
 * reads whatever a router, or anything that reaches port 179, sends.
 *
 * Any bytes must give a message, "need more" or an error naming a
 * NOTIFICATION, never a crash or a read past the input. The input is parsed
 * as a stream (message after message, as the session does) with both AS
 * number sizes, and every error is checked to be sendable: a valid code, data
 * inside the input or the error's own bytes, a reason to log.
 *
 *   make fuzz-build && build-fuzz/fuzz/fuzz_bgp -dict=src/l4/bgp.dict src/l4/corpus/bgp
 */
#include "l4/bgp.h"
#include "core/common.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *p, size_t len, bool as4)
{
	size_t off = 0;
	while (off < len) {
		tg_bgp_msg_t m;
		tg_bgp_error_t e;
		int rc = tg_bgp_parse(p + off, len - off, as4, &m, &e);
		if (rc == TG_AGAIN)
			return;
		if (rc == TG_ERROR) {
			if (e.code < 1 || e.code > 6 || !e.reason)
				__builtin_trap();
			bool own = e.data == e.own && e.data_len <= sizeof(e.own);
			bool inside = e.data >= p + off && e.data + e.data_len <= p + len;
			if (e.data && !own && !inside)
				__builtin_trap();
			/* The answer must encode. */
			uint8_t out[TG_BGP_MAX_LEN];
			if (tg_bgp_encode_notification(out, sizeof(out), e.code, e.subcode, e.data,
						       e.data_len) < 21)
				__builtin_trap();
			return;
		}
		if (rc < TG_BGP_HDR_LEN || (size_t)rc > len - off || (size_t)rc != m.len ||
		    m.type < TG_BGP_OPEN || m.type > TG_BGP_KEEPALIVE)
			__builtin_trap();
		if (m.type == TG_BGP_OPEN && (m.u.open.version != 4 || m.u.open.bgp_id == 0 ||
					      m.u.open.hold_time == 1 || m.u.open.hold_time == 2))
			__builtin_trap();
		off += (size_t)rc;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes, so ASan sees any overread. */
	uint8_t *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	memcpy(p, data, size);
	check(p, size, false);
	check(p, size, true);
	free(p);
	return 0;
}

/*
 * fuzz_proxy_protocol.c - libFuzzer target for the PROXY protocol parser.
 * Besides "no crash, no overread" (the input buffer ends in an ASan redzone),
 * it checks the contract of proxy_protocol.h: results are within bounds, an
 * error has a reason, and results are prefix-consistent.
 */
#include "proxy/proxy_protocol.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	tg_proxy_hdr_t h;
	const char *why = NULL;
	int rc = tg_proxy_protocol_parse(buf, size, &h, &why);
	if (rc == TG_ERROR) {
		if (!why)
			abort();
		/* Anything that follows a malformed start stays malformed. */
		return 0;
	}
	if (rc == TG_AGAIN) {
		if (size >= TG_PROXY_V2_MAX)
			abort();
		return 0;
	}
	if (rc <= 0 || (size_t)rc > size)
		abort();
	/* The header alone gives the same result; one byte less is TG_AGAIN. */
	tg_proxy_hdr_t h2;
	if (tg_proxy_protocol_parse(buf, (size_t)rc, &h2, &why) != rc)
		abort();
	if (tg_proxy_protocol_parse(buf, (size_t)rc - 1, &h2, &why) != TG_AGAIN)
		abort();
	if (h.version == 1 && rc > TG_PROXY_V1_MAX)
		abort();
	if (!h.local && h.addrlen == 0)
		abort();
	if (h.tlvs.len) {
		if (h.tlvs.ptr < buf || h.tlvs.ptr + h.tlvs.len > buf + rc)
			abort();
		tg_str_t v;
		if (tg_proxy_protocol_tlv(&h, (uint8_t)h.tlvs.ptr[0], &v) &&
		    (v.ptr < h.tlvs.ptr || v.ptr + v.len > h.tlvs.ptr + h.tlvs.len))
			abort();
	}
	return 0;
}

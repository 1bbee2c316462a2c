/*
 * proxy_protocol.c - PROXY protocol v1/v2 parser. See proxy_protocol.h for
 * the contract; the spec is haproxy's doc/proxy-protocol.txt.
 */
#include "proxy/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[6] = "PROXY ";

static int fail(const char **reason, const char *why)
{
	if (reason)
		*reason = why;
	return TG_ERROR;
}

/* ---------------------------------------------------------------- v1 */

/* Decimal 0..max without sign or leading zero. */
static bool dec(const char *p, size_t n, uint32_t max, uint32_t *out)
{
	if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
		return false;
	uint32_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (uint32_t)(p[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* Dotted quad, exactly 4 decimal octets without leading zeroes. */
static bool ipv4(const char *p, size_t n, struct in_addr *out)
{
	uint8_t b[4];
	size_t i = 0;
	for (int k = 0; k < 4; k++) {
		size_t s = i;
		while (i < n && p[i] != '.')
			i++;
		uint32_t v;
		if (i - s > 3 || !dec(p + s, i - s, 255, &v))
			return false;
		b[k] = (uint8_t)v;
		if (k < 3) {
			if (i == n)
				return false;
			i++; /* the dot */
		}
	}
	if (i != n)
		return false;
	memcpy(&out->s_addr, b, 4);
	return true;
}

/* IPv6 text as inet_pton reads it (hex groups, one "::", optional embedded
 * IPv4), copied out because the input is not NUL-terminated. */
static bool ipv6(const char *p, size_t n, struct in6_addr *out)
{
	char tmp[INET6_ADDRSTRLEN];
	if (n == 0 || n >= sizeof(tmp))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
		      c == ':' || c == '.'))
			return false;
	}
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	return inet_pton(AF_INET6, tmp, out) == 1;
}

/* Parses the line (without CRLF) of n bytes. */
static int parse_v1_line(const char *p, size_t n, tg_proxy_hdr_t *out, const char **reason)
{
	size_t i = sizeof(v1_sig);
	if (n - i >= 7 && memcmp(p + i, "UNKNOWN", 7) == 0 && (n - i == 7 || p[i + 7] == ' ')) {
		/* The rest of the line, whatever it is, must be ignored. */
		out->local = true;
		return 0;
	}
	if (n - i < 5 || memcmp(p + i, "TCP", 3) != 0 || (p[i + 3] != '4' && p[i + 3] != '6') ||
	    p[i + 4] != ' ')
		return fail(reason, "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");
	bool v6 = p[i + 3] == '6';
	i += 5;

	/* Exactly four fields separated by single spaces. */
	const char *f[4];
	size_t fl[4];
	for (int k = 0; k < 4; k++) {
		size_t s = i;
		while (i < n && p[i] != ' ')
			i++;
		if (i == s)
			return fail(reason,
				    "PROXY v1: empty field (double space or missing field)");
		f[k] = p + s;
		fl[k] = i - s;
		if (k < 3) {
			if (i == n)
				return fail(reason, "PROXY v1: missing field");
			i++;
		}
	}
	if (i != n)
		return fail(reason, "PROXY v1: extra field");

	uint32_t sport, dport;
	if (!dec(f[2], fl[2], 65535, &sport))
		return fail(reason, "PROXY v1: bad source port");
	if (!dec(f[3], fl[3], 65535, &dport))
		return fail(reason, "PROXY v1: bad destination port");
	if (v6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
		if (!ipv6(f[0], fl[0], &s->sin6_addr))
			return fail(reason, "PROXY v1: bad TCP6 source address");
		if (!ipv6(f[1], fl[1], &d->sin6_addr))
			return fail(reason, "PROXY v1: bad TCP6 destination address");
		s->sin6_family = d->sin6_family = AF_INET6;
		s->sin6_port = htons((uint16_t)sport);
		d->sin6_port = htons((uint16_t)dport);
		out->addrlen = sizeof(struct sockaddr_in6);
	} else {
		struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;
		if (!ipv4(f[0], fl[0], &s->sin_addr))
			return fail(reason, "PROXY v1: bad TCP4 source address");
		if (!ipv4(f[1], fl[1], &d->sin_addr))
			return fail(reason, "PROXY v1: bad TCP4 destination address");
		s->sin_family = d->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)sport);
		d->sin_port = htons((uint16_t)dport);
		out->addrlen = sizeof(struct sockaddr_in);
	}
	return 0;
}

/* True when the first n bytes of buf could start "<sig><proto>". */
static bool v1_prefix(const char *buf, size_t n, const char *lit)
{
	return memcmp(buf, lit, TG_MIN(n, strlen(lit))) == 0;
}

static int parse_v1(const char *buf, size_t len, tg_proxy_hdr_t *out, const char **reason)
{
	/* Reject a wrong protocol word without waiting for the CRLF. */
	if (!v1_prefix(buf, len, "PROXY TCP4 ") && !v1_prefix(buf, len, "PROXY TCP6 ") &&
	    !v1_prefix(buf, len, "PROXY UNKNOWN"))
		return fail(reason, "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");
	size_t lim = TG_MIN(len, (size_t)TG_PROXY_V1_MAX);
	for (size_t i = sizeof(v1_sig); i < lim; i++) {
		if (buf[i] == '\n')
			return fail(reason, "PROXY v1: line ends with LF without CR");
		if (buf[i] != '\r')
			continue;
		if (i + 1 == len)
			return TG_AGAIN;
		if (buf[i + 1] != '\n')
			return fail(reason, "PROXY v1: CR not followed by LF");
		if (i + 2 > TG_PROXY_V1_MAX)
			break;
		out->version = 1;
		int rc = parse_v1_line(buf, i, out, reason);
		return rc < 0 ? rc : (int)(i + 2);
	}
	if (len >= TG_PROXY_V1_MAX)
		return fail(reason, "PROXY v1: no CRLF within 107 bytes");
	return TG_AGAIN;
}

/* ---------------------------------------------------------------- v2 */

/* CRC32C (Castagnoli, reflected 0x82F63B78), bitwise: headers are small. */
static uint32_t crc32c(uint32_t crc, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return crc;
}

static uint16_t be16(const unsigned char *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

/* Walks TLVs in (p, n): checks framing, and the CRC32C TLV against the whole
 * header h of total bytes (the checksum field counted as zeroes). */
static int check_tlvs(const unsigned char *h, size_t total, size_t off, const char **reason)
{
	while (off < total) {
		if (total - off < 3)
			return fail(reason, "PROXY v2: truncated TLV header");
		size_t vlen = be16(h + off + 1);
		if (vlen > total - off - 3)
			return fail(reason, "PROXY v2: TLV overruns the header");
		if (h[off] == TG_PP2_TYPE_CRC32C) {
			if (vlen != 4)
				return fail(reason, "PROXY v2: CRC32C TLV is not 4 bytes");
			static const unsigned char zero[4];
			size_t at = off + 3;
			uint32_t c = crc32c(0xFFFFFFFFu, h, at);
			c = crc32c(c, zero, 4);
			c = crc32c(c, h + at + 4, total - at - 4) ^ 0xFFFFFFFFu;
			uint32_t want = ((uint32_t)h[at] << 24) | ((uint32_t)h[at + 1] << 16) |
					((uint32_t)h[at + 2] << 8) | h[at + 3];
			if (c != want)
				return fail(reason, "PROXY v2: CRC32C mismatch");
		}
		off += 3 + vlen;
	}
	return 0;
}

static int parse_v2(const char *buf, size_t len, tg_proxy_hdr_t *out, const char **reason)
{
	const unsigned char *h = (const unsigned char *)buf;
	if (len > 12 && (h[12] >> 4) != 2)
		return fail(reason, "PROXY v2: version is not 2");
	if (len > 12 && (h[12] & 0x0F) > 1)
		return fail(reason, "PROXY v2: command is neither LOCAL nor PROXY");
	if (len > 13) {
		switch (h[13]) {
		case 0x00:
		case 0x11:
		case 0x12:
		case 0x21:
		case 0x22:
		case 0x31:
		case 0x32:
			break;
		default:
			return fail(reason, "PROXY v2: unknown address family or protocol");
		}
	}
	if (len < 16)
		return TG_AGAIN;
	size_t total = 16 + (size_t)be16(h + 14);
	if (len < total)
		return TG_AGAIN;

	out->version = 2;
	bool proxy = (h[12] & 0x0F) == 1;
	unsigned fam = h[13] >> 4, proto = h[13] & 0x0F;
	size_t need = fam == 1 ? 12 : fam == 2 ? 36 : fam == 3 ? 216 : 0;
	if (!proxy || fam == 0) {
		/* LOCAL: the whole block, family included, is ignored. */
		out->local = true;
		return (int)total;
	}
	if (total - 16 < need)
		return fail(reason, "PROXY v2: address block too short for its family");
	int rc = check_tlvs(h, total, 16 + need, reason);
	if (rc < 0)
		return rc;
	out->tlvs = (tg_str_t){buf + 16 + need, total - 16 - need};
	if (proto != 1 || fam == 3) {
		/* UDP or UNIX: valid, but not ours; the spec lets us fall back
		 * to the socket's addresses. */
		out->local = true;
		return (int)total;
	}
	const unsigned char *a = h + 16;
	if (fam == 1) {
		struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, a, 4);
		memcpy(&d->sin_addr, a + 4, 4);
		memcpy(&s->sin_port, a + 8, 2);
		memcpy(&d->sin_port, a + 10, 2);
		out->addrlen = sizeof(struct sockaddr_in);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, a, 16);
		memcpy(&d->sin6_addr, a + 16, 16);
		memcpy(&s->sin6_port, a + 32, 2);
		memcpy(&d->sin6_port, a + 34, 2);
		out->addrlen = sizeof(struct sockaddr_in6);
	}
	return (int)total;
}

/* ------------------------------------------------------------- entry */

int tg_proxy_protocol_parse(const char *buf, size_t len, tg_proxy_hdr_t *out, const char **reason)
{
	memset(out, 0, sizeof(*out));
	if (reason)
		*reason = NULL;
	if (len == 0)
		return TG_AGAIN;
	size_t n;
	if (buf[0] == v2_sig[0]) {
		n = TG_MIN(len, sizeof(v2_sig));
		if (memcmp(buf, v2_sig, n) != 0)
			return fail(reason, "no PROXY protocol header (bad v2 signature)");
		if (len < sizeof(v2_sig))
			return TG_AGAIN;
		return parse_v2(buf, len, out, reason);
	}
	n = TG_MIN(len, sizeof(v1_sig));
	if (memcmp(buf, v1_sig, n) != 0)
		return fail(reason, "no PROXY protocol header");
	if (len < sizeof(v1_sig))
		return TG_AGAIN;
	return parse_v1(buf, len, out, reason);
}

bool tg_proxy_protocol_tlv(const tg_proxy_hdr_t *h, uint8_t type, tg_str_t *value)
{
	const unsigned char *p = (const unsigned char *)h->tlvs.ptr;
	size_t n = h->tlvs.len, off = 0;
	while (p && n - off >= 3) {
		size_t vlen = be16(p + off + 1);
		if (vlen > n - off - 3)
			return false;
		if (p[off] == type) {
			*value = (tg_str_t){(const char *)p + off + 3, vlen};
			return true;
		}
		off += 3 + vlen;
	}
	return false;
}

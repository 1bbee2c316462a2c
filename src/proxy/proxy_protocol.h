/*
 * proxy_protocol.h - PROXY protocol v1 (text) and v2 (binary) header parser,
 * following haproxy's doc/proxy-protocol.txt. Used on listeners with the
 * ConfigMap key use-proxy-protocol: true, where every connection must start
 * with a header (the spec forbids guessing whether one is present).
 *
 * Conventions (STYLE.md rule 3): the parser takes the bytes received so far
 * from the start of the connection and returns the header length (the caller
 * skips that many bytes; what follows is the client's first bytes, TLS or
 * HTTP), TG_AGAIN when the header is incomplete, or TG_ERROR with a static
 * reason (the caller closes the connection). It never allocates, never
 * writes to the input, and reads nothing past buf[len - 1]. Results are
 * prefix-consistent: TG_AGAIN is only returned while the bytes seen could
 * still start a valid header, so a caller may reject early.
 *
 * Strictness: v1 lines are at most 107 bytes including CRLF, with exactly one
 * space between fields, "TCP4"/"TCP6"/"UNKNOWN", dotted-quad IPv4 without
 * leading zeroes, IPv6 as inet_pton reads it, ports 0-65535 without leading
 * zeroes, CRLF (never a lone CR or LF). v2 needs the 12-byte signature,
 * version 2, command LOCAL or PROXY, a family/protocol byte among those the
 * spec lists, an address length large enough for the family, TLVs that fit
 * the header, and a matching CRC32C when a CRC32C TLV is present.
 *
 * Addresses are given for v1 TCP4/TCP6 and v2 PROXY over TCP/IPv4 and
 * TCP/IPv6. v1 UNKNOWN, v2 LOCAL, and v2 PROXY with AF_UNSPEC, AF_UNIX or a
 * datagram protocol (which the spec lets a receiver treat as UNSPEC) set
 * `local`: the connection is accepted and the socket's own addresses apply.
 */
#ifndef TG_PROXY_PROXY_PROTOCOL_H
#define TG_PROXY_PROXY_PROTOCOL_H

#include "core/common.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest v1 header (CRLF included). */
#define TG_PROXY_V1_MAX 107
/* Longest v2 header (16-byte fixed part + 16-bit length). A caller whose
 * buffer is smaller may reject longer headers itself. */
#define TG_PROXY_V2_MAX (16 + 65535)
/* Bytes that always suffice to tell v1 from v2 from garbage. */
#define TG_PROXY_DETECT_LEN 16

/* Registered v2 TLV types the proxy may want (tg_proxy_protocol_tlv). */
#define TG_PP2_TYPE_ALPN      0x01
#define TG_PP2_TYPE_AUTHORITY 0x02
#define TG_PP2_TYPE_CRC32C    0x03
#define TG_PP2_TYPE_NOOP      0x04
#define TG_PP2_TYPE_UNIQUE_ID 0x05
#define TG_PP2_TYPE_SSL	      0x20
#define TG_PP2_TYPE_NETNS     0x30

typedef struct tg_proxy_hdr {
	uint8_t version;	     /* 1 or 2 */
	bool local;		     /* no addresses given: use the socket's own */
	struct sockaddr_storage src; /* client address and port (when !local) */
	struct sockaddr_storage dst; /* address and port the client connected to */
	socklen_t addrlen;	     /* bytes of src and dst used (0 when local) */
	tg_str_t tlvs;		     /* v2 TLV block, points into the input (may be empty) */
} tg_proxy_hdr_t;

/*
 * Parses a PROXY protocol header at the start of buf. Returns its length in
 * bytes (out filled), TG_AGAIN (need more bytes; at most TG_PROXY_V1_MAX for
 * v1, 16 + the announced length for v2), or TG_ERROR with *reason set to a
 * static string naming what was wrong. out's fields are meaningful only when
 * a length is returned; out->tlvs points into buf.
 */
int tg_proxy_protocol_parse(const char *buf, size_t len, tg_proxy_hdr_t *out, const char **reason);

/* Finds the first TLV of `type` in a parsed v2 header. Returns true and sets
 * *value (pointing into the parsed input) when found. */
bool tg_proxy_protocol_tlv(const tg_proxy_hdr_t *h, uint8_t type, tg_str_t *value);

#endif

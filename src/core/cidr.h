/*
 * cidr.h - address blocks ("10.0.0.0/8", "fd00::/8") and membership tests,
 * for proxy-real-ip-cidr. Parsing is for configuration (cold); the test is on
 * the request path and allocation-free.
 */
#ifndef TG_CORE_CIDR_H
#define TG_CORE_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One block; a bare address is a /32 or /128. */
typedef struct tg_cidr {
	uint8_t family;	  /* AF_INET or AF_INET6 */
	uint8_t bits;	  /* prefix length */
	uint8_t addr[16]; /* network order, host bits cleared; first 4 bytes for IPv4 */
} tg_cidr_t;

/* Parses "a.b.c.d/n", "v6/n" or a bare address (slice, no blanks). Returns 0
 * or -EINVAL (nothing written). */
int tg_cidr_parse(const char *s, size_t len, tg_cidr_t *out);

/* Parses a comma-separated list (blanks around entries allowed) into at most
 * max entries. Returns the count (>= 1) or -EINVAL (empty list, bad entry,
 * too many: *bad then points at the offending entry's first byte). */
int tg_cidr_parse_list(const char *s, size_t len, tg_cidr_t *out, int max, const char **bad);

/* True when the address (family AF_INET with 4 bytes, or AF_INET6 with 16;
 * an IPv4-mapped IPv6 address is tested as IPv4) is inside one of the n
 * blocks. */
bool tg_cidr_match(const tg_cidr_t *list, size_t n, int family, const uint8_t *addr);

/* Parses a bare address written as text (slice) into family/addr (16 bytes).
 * Returns 0 or -EINVAL. */
int tg_cidr_parse_ip(const char *s, size_t len, int *family, uint8_t addr[16]);

#endif

/*
 * addr.h - socket address parsing and formatting.
 */
#ifndef TG_CORE_ADDR_H
#define TG_CORE_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Longest text tg_addr_format writes, NUL included: "[v6]:port". */
#define TG_ADDR_TEXT_MAX 56

/* Parses "1.2.3.4:80", "[fd00::1]:80", ":80" (all IPv4 addresses) or, when
 * default_port >= 0, a bare address ("1.2.3.4", "fd00::1") with that port.
 * Returns 0, or -EINVAL with nothing written. */
int tg_addr_parse(const char *text, int default_port, struct sockaddr_storage *out,
		  socklen_t *outlen);

/* Parses a bare IPv4 or IPv6 address (no port) into out (port 0).
 * Returns 0 or -EINVAL. */
int tg_addr_parse_ip(const char *text, struct sockaddr_storage *out, socklen_t *outlen);

/* Writes "ip:port" or "[ip]:port" into buf (at least TG_ADDR_TEXT_MAX bytes).
 * Returns the length written. */
size_t tg_addr_format(const struct sockaddr *sa, char *buf, size_t buflen);

/* Writes the address without the port. Returns the length written. */
size_t tg_addr_format_ip(const struct sockaddr *sa, char *buf, size_t buflen);

/* A non-blocking TCP listener on ss in an SO_REUSEPORT group (every worker
 * opens one on the same address). Returns the fd or -errno. */
int tg_addr_listen(const struct sockaddr_storage *ss, socklen_t sl);

/* After a listen on port 0: copies the port the kernel gave fd into ss, so
 * the next listeners join the same group. Returns that port (host order). */
int tg_addr_adopt_port(int fd, struct sockaddr_storage *ss);

#endif

#include "core/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_port(const char *s, int *port)
{
	if (!*s)
		return -EINVAL;
	long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (*p - '0');
		if (v > 65535)
			return -EINVAL;
	}
	*port = (int)v;
	return 0;
}

static int fill(const char *host, int port, struct sockaddr_storage *out, socklen_t *outlen)
{
	memset(out, 0, sizeof(*out));
	struct sockaddr_in *in4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
	if (*host == '\0') {
		in4->sin_family = AF_INET;
		in4->sin_addr.s_addr = htonl(INADDR_ANY);
		in4->sin_port = htons((uint16_t)port);
		*outlen = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*outlen = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*outlen = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

int tg_addr_parse(const char *text, int default_port, struct sockaddr_storage *out,
		  socklen_t *outlen)
{
	char host[INET6_ADDRSTRLEN + 2];
	int port = default_port;
	const char *colon;
	if (!text)
		return -EINVAL;
	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		if (!end || (size_t)(end - text - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, text + 1, (size_t)(end - text - 1));
		host[end - text - 1] = '\0';
		if (end[1] == ':') {
			if (parse_port(end + 2, &port))
				return -EINVAL;
		} else if (end[1] != '\0' || default_port < 0) {
			return -EINVAL;
		}
		if (!strchr(host, ':'))
			return -EINVAL;
		return fill(host, port, out, outlen);
	}
	colon = strrchr(text, ':');
	if (colon && strchr(text, ':') == colon) {
		/* exactly one colon: host:port */
		size_t hl = (size_t)(colon - text);
		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, text, hl);
		host[hl] = '\0';
		if (parse_port(colon + 1, &port))
			return -EINVAL;
		if (strchr(host, '.') == NULL && *host)
			return -EINVAL;
		return fill(host, port, out, outlen);
	}
	/* no colon (bare IPv4) or several (bare IPv6) */
	if (default_port < 0 || !*text || strlen(text) >= sizeof(host))
		return -EINVAL;
	return fill(text, port, out, outlen) == 0 && (colon || strchr(text, '.')) ? 0 : -EINVAL;
}

int tg_addr_parse_ip(const char *text, struct sockaddr_storage *out, socklen_t *outlen)
{
	if (!text || !*text)
		return -EINVAL;
	return fill(text, 0, out, outlen);
}

size_t tg_addr_format_ip(const struct sockaddr *sa, char *buf, size_t buflen)
{
	if (buflen == 0)
		return 0;
	buf[0] = '\0';
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
			  (socklen_t)buflen);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
			  (socklen_t)buflen);
	return strlen(buf);
}

size_t tg_addr_format(const struct sockaddr *sa, char *buf, size_t buflen)
{
	char ip[INET6_ADDRSTRLEN];
	int n;
	tg_addr_format_ip(sa, ip, sizeof(ip));
	if (sa->sa_family == AF_INET6)
		n = snprintf(buf, buflen, "[%s]:%u", ip,
			     ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
	else
		n = snprintf(buf, buflen, "%s:%u", ip,
			     ntohs(((const struct sockaddr_in *)sa)->sin_port));
	if (n < 0)
		return 0;
	return (size_t)n < buflen ? (size_t)n : buflen - 1;
}

int tg_addr_listen(const struct sockaddr_storage *ss, socklen_t sl)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, sl) < 0 || listen(fd, 4096) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int tg_addr_adopt_port(int fd, struct sockaddr_storage *ss)
{
	struct sockaddr_storage b;
	socklen_t bl = sizeof(b);
	memset(&b, 0, sizeof(b));
	getsockname(fd, (struct sockaddr *)&b, &bl);
	in_port_t p = b.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&b)->sin6_port
					      : ((struct sockaddr_in *)&b)->sin_port;
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = p;
	else
		((struct sockaddr_in *)ss)->sin_port = p;
	return ntohs(p);
}

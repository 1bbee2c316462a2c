#include "core/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

int tg_cidr_parse_ip(const char *s, size_t len, int *family, uint8_t addr[16])
{
	char tmp[INET6_ADDRSTRLEN + 1];
	if (len == 0 || len >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, tmp, addr) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, tmp, addr) == 1) {
		*family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

int tg_cidr_parse(const char *s, size_t len, tg_cidr_t *out)
{
	const char *slash = memchr(s, '/', len);
	size_t alen = slash ? (size_t)(slash - s) : len;
	int fam;
	uint8_t a[16];
	if (tg_cidr_parse_ip(s, alen, &fam, a) < 0)
		return -EINVAL;
	unsigned max = fam == AF_INET ? 32 : 128, bits = max;
	if (slash) {
		const char *p = slash + 1, *end = s + len;
		if (p == end || end - p > 3)
			return -EINVAL;
		bits = 0;
		for (; p < end; p++) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			bits = bits * 10 + (unsigned)(*p - '0');
		}
		if (bits > max)
			return -EINVAL;
	}
	/* Host bits cleared, so matching is a masked compare of whole bytes. */
	for (unsigned i = 0; i < 16; i++) {
		unsigned lo = i * 8;
		if (lo >= bits)
			a[i] = 0;
		else if (bits - lo < 8)
			a[i] &= (uint8_t)(0xff << (8 - (bits - lo)));
	}
	out->family = (uint8_t)fam;
	out->bits = (uint8_t)bits;
	memcpy(out->addr, a, 16);
	return 0;
}

int tg_cidr_parse_list(const char *s, size_t len, tg_cidr_t *out, int max, const char **bad)
{
	int n = 0;
	size_t i = 0;
	while (i <= len) {
		size_t j = i;
		while (j < len && s[j] != ',')
			j++;
		size_t a = i, b = j;
		while (a < b && (s[a] == ' ' || s[a] == '\t'))
			a++;
		while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
			b--;
		if (a == b || n == max || tg_cidr_parse(s + a, b - a, &out[n]) < 0) {
			if (bad)
				*bad = s + a;
			return -EINVAL;
		}
		n++;
		i = j + 1;
	}
	return n;
}

static bool in_block(const tg_cidr_t *c, const uint8_t *addr)
{
	unsigned full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(c->addr, addr, full) != 0)
		return false;
	if (!rest)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (addr[full] & mask) == c->addr[full];
}

bool tg_cidr_match(const tg_cidr_t *list, size_t n, int family, const uint8_t *addr)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (family == AF_INET6 && memcmp(addr, mapped, 12) == 0) {
		family = AF_INET;
		addr += 12;
	}
	for (size_t i = 0; i < n; i++)
		if (list[i].family == family && in_block(&list[i], addr))
			return true;
	return false;
}

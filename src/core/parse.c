#include "core/parse.h"
#include "core/common.h"

#include <errno.h>

int tg_parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int tg_parse_duration_ms(const char *s, size_t len, uint64_t bare_unit_ms, uint64_t *out)
{
	uint64_t total = 0;
	size_t i = 0;
	if (len == 0)
		return -EINVAL;
	/* A bare number: the unit the caller chose. */
	size_t j = 0;
	while (j < len && s[j] >= '0' && s[j] <= '9')
		j++;
	if (j == len) {
		uint64_t v;
		if (bare_unit_ms == 0 || tg_parse_u64(s, len, &v))
			return -EINVAL;
		if (v > UINT64_MAX / bare_unit_ms)
			return -EINVAL;
		*out = v * bare_unit_ms;
		return 0;
	}
	while (i < len) {
		size_t start = i;
		uint64_t v;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start || tg_parse_u64(s + start, i - start, &v))
			return -EINVAL;
		uint64_t mult;
		if (i + 1 < len && s[i] == 'm' && s[i + 1] == 's') {
			mult = 1;
			i += 2;
		} else if (i < len && s[i] == 's') {
			mult = 1000;
			i++;
		} else if (i < len && s[i] == 'm') {
			mult = 60000;
			i++;
		} else if (i < len && s[i] == 'h') {
			mult = 3600000;
			i++;
		} else if (i < len && s[i] == 'd') {
			mult = 86400000;
			i++;
		} else {
			return -EINVAL;
		}
		if (v > (UINT64_MAX - total) / mult)
			return -EINVAL;
		total += v * mult;
	}
	*out = total;
	return 0;
}

int tg_parse_size(const char *s, size_t len, uint64_t *out)
{
	uint64_t mult = 1, v;
	if (len == 0)
		return -EINVAL;
	switch (tg_lower(s[len - 1])) {
	case 'k':
		mult = 1024;
		len--;
		break;
	case 'm':
		mult = 1024 * 1024;
		len--;
		break;
	case 'g':
		mult = 1024 * 1024 * 1024;
		len--;
		break;
	default:
		break;
	}
	if (tg_parse_u64(s, len, &v) || v > UINT64_MAX / mult)
		return -EINVAL;
	*out = v * mult;
	return 0;
}

int tg_parse_bool(const char *s, size_t len, bool *out)
{
	tg_str_t v = {s, len};
	if (tg_str_caseeq(v, "true", 4) || tg_str_caseeq(v, "on", 2) ||
	    tg_str_caseeq(v, "yes", 3) || tg_str_caseeq(v, "1", 1)) {
		*out = true;
		return 0;
	}
	if (tg_str_caseeq(v, "false", 5) || tg_str_caseeq(v, "off", 3) ||
	    tg_str_caseeq(v, "no", 2) || tg_str_caseeq(v, "0", 1)) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

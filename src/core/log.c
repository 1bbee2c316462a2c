#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Written once at start-up before threads exist, read-only afterwards. */
static tg_log_level_t min_level = TG_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void tg_log_set_level(tg_log_level_t level)
{
	min_level = level;
}

void tg_log_init(void)
{
	const char *e = getenv("TG_LOG_LEVEL");
	if (!e)
		return;
	for (int i = 0; i < 4; i++)
		if (strcasecmp(e, level_names[i]) == 0)
			min_level = (tg_log_level_t)i;
}

void tg_log(tg_log_level_t level, const char *module, const char *fmt, ...)
{
	if (level < min_level)
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000, level_names[level & 3], module);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	/* Keep one line per event: a newline inside a message would let a client's
	 * bytes forge log lines. */
	for (size_t i = (size_t)n; i < len; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

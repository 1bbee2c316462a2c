/*
 * log.h - diagnostic log to stderr (the access log is separate: proxy/accesslog.h).
 *
 * Lines look like `2026-11-26T09:30:00.123Z warn ingress: message`. Writing is a
 * single write(2) per line so concurrent threads do not interleave; callers on a
 * worker thread must only log on rare events (errors, config changes), never per
 * request.
 */
#ifndef TG_CORE_LOG_H
#define TG_CORE_LOG_H

#include <stdarg.h>

typedef enum tg_log_level {
	TG_LOG_DEBUG = 0,
	TG_LOG_INFO = 1,
	TG_LOG_WARN = 2,
	TG_LOG_ERROR = 3,
} tg_log_level_t;

/* Sets the lowest level that is printed (default TG_LOG_INFO; TG_LOG_LEVEL env
 * var "debug"/"info"/"warn"/"error" is read by tg_log_init). */
void tg_log_set_level(tg_log_level_t level);

/* Reads TG_LOG_LEVEL from the environment. Call once at start. */
void tg_log_init(void);

/* Formats and writes one line; `module` is a short subsystem name. */
void tg_log(tg_log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define tg_debug(mod, ...) tg_log(TG_LOG_DEBUG, mod, __VA_ARGS__)
#define tg_info(mod, ...)  tg_log(TG_LOG_INFO, mod, __VA_ARGS__)
#define tg_warn(mod, ...)  tg_log(TG_LOG_WARN, mod, __VA_ARGS__)
#define tg_error(mod, ...) tg_log(TG_LOG_ERROR, mod, __VA_ARGS__)

#endif

/*
 * once.h - "log this once per process" for configuration noise that would
 * otherwise repeat on every reload: an unknown kind, an unknown annotation or
 * ConfigMap key. Thread-safe. The set is bounded (1024 names); past that,
 * tg_once_first() answers false so a flood of distinct junk names cannot grow
 * memory or the log without limit.
 */
#ifndef TG_INGRESS_ONCE_H
#define TG_INGRESS_ONCE_H

#include <stdbool.h>
#include <stddef.h>

/* True the first time (category, name) is seen; false afterwards. */
bool tg_once_first(const char *category, const char *name, size_t name_len);

#endif

/*
 * clock.h - monotonic and wall clocks. Both are vDSO calls (no syscall); the
 * event loop caches a millisecond value per iteration for timers, and code that
 * needs finer resolution (request durations) reads tg_clock_ns() itself.
 */
#ifndef TG_CORE_CLOCK_H
#define TG_CORE_CLOCK_H

#include <stdint.h>

/* Monotonic time in nanoseconds (CLOCK_MONOTONIC). */
uint64_t tg_clock_ns(void);

/* Monotonic time in milliseconds (CLOCK_MONOTONIC_COARSE is too coarse for
 * sub-10ms timeouts, so this is tg_clock_ns() / 1e6). */
uint64_t tg_clock_ms(void);

/* Wall-clock seconds since the epoch (CLOCK_REALTIME_COARSE). */
int64_t tg_clock_wall_s(void);

#endif

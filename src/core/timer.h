/*
 * timer.h - per-worker timers: a binary min-heap keyed by expiry time (ms).
 *
 * Moving a deadline later, which is what a connection does on every bit of
 * progress, costs O(1): the new deadline is only recorded, and when the heap
 * entry comes due with a later deadline it is re-keyed once (sift-down) instead
 * of firing. Moving a deadline earlier or arming costs O(log n). Single-threaded.
 */
#ifndef TG_CORE_TIMER_H
#define TG_CORE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define TG_TIMER_IDLE UINT32_MAX /* idx of a timer that is not in the heap */

typedef struct tg_timer tg_timer_t;
typedef void (*tg_timer_fn)(tg_timer_t *t);

struct tg_timer {
	uint64_t key;	   /* expiry the heap is ordered by (<= deadline) */
	uint64_t deadline; /* the real expiry; > key means "re-key when key comes" */
	uint32_t idx;	   /* position in the heap, TG_TIMER_IDLE when not armed */
	tg_timer_fn fn;	   /* called once when the deadline has passed */
};

typedef struct tg_timers {
	tg_timer_t **heap; /* heap[0] has the smallest key */
	uint32_t n;	   /* entries used */
	uint32_t cap;	   /* entries allocated */
} tg_timers_t;

/* Prepares an empty heap. */
void tg_timers_init(tg_timers_t *h);

/* Frees the heap array (the timers themselves are the caller's). */
void tg_timers_destroy(tg_timers_t *h);

/* Prepares a timer that is not armed. */
static inline void tg_timer_init(tg_timer_t *t, tg_timer_fn fn)
{
	t->key = t->deadline = 0;
	t->idx = TG_TIMER_IDLE;
	t->fn = fn;
}

/* True when t is armed. */
static inline bool tg_timer_armed(const tg_timer_t *t)
{
	return t->idx != TG_TIMER_IDLE;
}

/* Arms t to fire at `deadline` (ms, same clock as tg_timers_run's now), or
 * moves it. Returns 0, or -ENOMEM when the heap had to grow and could not (only
 * possible when t was not armed). */
int tg_timer_set(tg_timers_t *h, tg_timer_t *t, uint64_t deadline);

/* Disarms t if armed. */
void tg_timer_cancel(tg_timers_t *h, tg_timer_t *t);

/* Earliest key in the heap (may be earlier than a real deadline), or
 * UINT64_MAX when empty. */
uint64_t tg_timers_next(const tg_timers_t *h);

/* Fires every timer whose deadline is <= now, in deadline order as far as the
 * heap knows. A callback may arm, move or cancel any timer, including its own,
 * but must not re-arm at a time <= now. Returns the number fired. */
unsigned tg_timers_run(tg_timers_t *h, uint64_t now);

#endif

#include "core/timer.h"

#include <errno.h>
#include <stdlib.h>

void tg_timers_init(tg_timers_t *h)
{
	h->heap = NULL;
	h->n = h->cap = 0;
}

void tg_timers_destroy(tg_timers_t *h)
{
	for (uint32_t i = 0; i < h->n; i++)
		h->heap[i]->idx = TG_TIMER_IDLE;
	free(h->heap);
	h->heap = NULL;
	h->n = h->cap = 0;
}

static void place(tg_timers_t *h, uint32_t i, tg_timer_t *t)
{
	h->heap[i] = t;
	t->idx = i;
}

static void sift_up(tg_timers_t *h, uint32_t i)
{
	tg_timer_t *t = h->heap[i];
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (h->heap[parent]->key <= t->key)
			break;
		place(h, i, h->heap[parent]);
		i = parent;
	}
	place(h, i, t);
}

static void sift_down(tg_timers_t *h, uint32_t i)
{
	tg_timer_t *t = h->heap[i];
	for (;;) {
		uint32_t child = 2 * i + 1;
		if (child >= h->n)
			break;
		if (child + 1 < h->n && h->heap[child + 1]->key < h->heap[child]->key)
			child++;
		if (t->key <= h->heap[child]->key)
			break;
		place(h, i, h->heap[child]);
		i = child;
	}
	place(h, i, t);
}

static void remove_at(tg_timers_t *h, uint32_t i)
{
	tg_timer_t *t = h->heap[i];
	t->idx = TG_TIMER_IDLE;
	h->n--;
	if (i == h->n)
		return;
	tg_timer_t *last = h->heap[h->n];
	place(h, i, last);
	/* The moved entry may belong higher or lower than the hole. */
	if (i > 0 && h->heap[(i - 1) / 2]->key > last->key)
		sift_up(h, i);
	else
		sift_down(h, i);
}

int tg_timer_set(tg_timers_t *h, tg_timer_t *t, uint64_t deadline)
{
	if (tg_timer_armed(t)) {
		t->deadline = deadline;
		if (deadline >= t->key)
			return 0; /* lazy: re-keyed when the old key comes due */
		t->key = deadline;
		sift_up(h, t->idx);
		return 0;
	}
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : 64;
		tg_timer_t **nh = realloc(h->heap, (size_t)cap * sizeof(*nh));
		if (!nh)
			return -ENOMEM;
		h->heap = nh;
		h->cap = cap;
	}
	t->key = t->deadline = deadline;
	place(h, h->n, t);
	h->n++;
	sift_up(h, t->idx);
	return 0;
}

void tg_timer_cancel(tg_timers_t *h, tg_timer_t *t)
{
	if (tg_timer_armed(t))
		remove_at(h, t->idx);
}

uint64_t tg_timers_next(const tg_timers_t *h)
{
	return h->n ? h->heap[0]->key : UINT64_MAX;
}

unsigned tg_timers_run(tg_timers_t *h, uint64_t now)
{
	unsigned fired = 0;
	while (h->n && h->heap[0]->key <= now) {
		tg_timer_t *t = h->heap[0];
		if (t->deadline > now) {
			t->key = t->deadline;
			sift_down(h, 0);
			continue;
		}
		remove_at(h, 0);
		fired++;
		t->fn(t);
	}
	return fired;
}

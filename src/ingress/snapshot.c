/*
 * snapshot.c - publication and reference counting of routing snapshots
 * (contract in snapshot.h). tg_snapshot_route() lives in router.c.
 *
 * The current snapshot is one pointer guarded by a mutex for acquire/publish
 * (workers take it only when the generation changed, so the lock is cold) and
 * mirrored by an atomic generation that workers poll for free. A snapshot and
 * everything it points to live in one arena (plus endpoint arrays shared with
 * other snapshots, reference-counted), so the last release frees thousands of
 * routes with one walk over a few chunks.
 */
#include "ingress/snapshot.h"
#include "ingress/translate.h"

#include <pthread.h>

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static tg_snapshot_t *current;		    /* guarded by current_lock */
static uint64_t last_generation;	    /* guarded by current_lock */
static _Atomic uint64_t current_generation; /* mirrors current->generation */

void tg_snapshot_publish(tg_snapshot_t *s)
{
	pthread_mutex_lock(&current_lock);
	tg_snapshot_t *old = current;
	s->generation = ++last_generation;
	current = s;
	atomic_store_explicit(&current_generation, s->generation, memory_order_release);
	pthread_mutex_unlock(&current_lock);
	tg_snapshot_release(old);
}

tg_snapshot_t *tg_snapshot_acquire(void)
{
	pthread_mutex_lock(&current_lock);
	tg_snapshot_t *s = current;
	if (s)
		atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&current_lock);
	return s;
}

void tg_snapshot_release(tg_snapshot_t *s)
{
	if (!s)
		return;
	/* acq_rel: the freeing thread must see every reader's last use. */
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		tg_snapshot_destroy(s);
}

uint64_t tg_snapshot_generation(void)
{
	return atomic_load_explicit(&current_generation, memory_order_relaxed);
}

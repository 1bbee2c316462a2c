/*
 * guard.c - guard-page copies for parser tests (see guard.h).
 *
 * Layout of every mapping: [PROT_NONE page][n data pages][PROT_NONE page],
 * n = ceil(len / page). tg_guard_dup puts the bytes at the end of the data
 * pages, tg_guard_dup_front at the start, so tg_guard_free can find the
 * mapping from (p, len) alone: a page-aligned p means base = p - page (this
 * also holds for a back-placed copy whose length is a multiple of the page
 * size); otherwise p + len is aligned and base = p + len - (n + 1) * page.
 */
#include "guard.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static char *map_guarded(size_t len, size_t *npages)
{
	size_t pg = page_size();
	size_t n = (len + pg - 1) / pg;
	char *base =
	    mmap(NULL, (n + 2) * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (base == MAP_FAILED) {
		perror("guard: mmap");
		abort();
	}
	if (mprotect(base, pg, PROT_NONE) || mprotect(base + (n + 1) * pg, pg, PROT_NONE)) {
		perror("guard: mprotect");
		abort();
	}
	*npages = n;
	return base;
}

/* Makes the data pages read-only once the copy is in place. */
static void seal(char *base, size_t n)
{
	size_t pg = page_size();

	if (n && mprotect(base + pg, n * pg, PROT_READ)) {
		perror("guard: mprotect");
		abort();
	}
}

const char *tg_guard_dup(const void *data, size_t len)
{
	size_t n, pg = page_size();
	char *base = map_guarded(len, &n);
	char *p = base + (n + 1) * pg - len;

	if (len)
		memcpy(p, data, len);
	seal(base, n);
	return p;
}

const char *tg_guard_dup_front(const void *data, size_t len)
{
	size_t n, pg = page_size();
	char *base = map_guarded(len, &n);
	char *p = base + pg;

	if (len)
		memcpy(p, data, len);
	seal(base, n);
	return p;
}

const char *tg_guard_str(const char *s, size_t *len)
{
	*len = strlen(s);
	return tg_guard_dup(s, *len);
}

void tg_guard_free(const char *p, size_t len)
{
	size_t pg = page_size();
	size_t n = (len + pg - 1) / pg;
	uintptr_t a = (uintptr_t)p, base;

	if (!p)
		return;
	if (a % pg == 0)
		base = a - pg;
	else
		base = a + len - (n + 1) * pg;
	munmap((void *)base, (n + 2) * pg);
}

#include "ingress/once.h"
#include "ingress/strmap.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ONCE_MAX 1024

static pthread_mutex_t once_lock = PTHREAD_MUTEX_INITIALIZER;
static tg_strmap_t once_set; /* "category\0name" -> itself (malloc'ed) */

bool tg_once_first(const char *category, const char *name, size_t name_len)
{
	size_t clen = strlen(category);
	if (name_len > 512)
		name_len = 512;
	char key[600];
	memcpy(key, category, clen < 64 ? clen : 64);
	clen = clen < 64 ? clen : 64;
	key[clen] = '\0';
	memcpy(key + clen + 1, name, name_len);
	size_t klen = clen + 1 + name_len;
	bool first = false;
	pthread_mutex_lock(&once_lock);
	if (!tg_strmap_get(&once_set, key, klen) && once_set.n < ONCE_MAX) {
		char *copy = malloc(klen);
		if (copy) {
			memcpy(copy, key, klen);
			if (tg_strmap_put(&once_set, copy, klen, copy, NULL) == 0)
				first = true;
			else
				free(copy);
		}
	}
	pthread_mutex_unlock(&once_lock);
	return first;
}

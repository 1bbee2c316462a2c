/*
 * fdlimit.h - the process's open-file limit. A proxy holds one descriptor per
 * client connection plus one per upstream connection, so the usual soft limit
 * of 1024 would cap it far below max-worker-connections; the hard limit is
 * what the administrator (or the container runtime) actually allows.
 */
#ifndef TG_CORE_FDLIMIT_H
#define TG_CORE_FDLIMIT_H

#include <stdint.h>

/* Raises the soft RLIMIT_NOFILE to the hard limit (capped at what the kernel
 * accepts, fs.nr_open, when the hard limit is unlimited). Returns the soft
 * limit in force afterwards, or -errno when it cannot be read. Failing to
 * raise is not an error: the old soft limit is returned. */
int64_t tg_fdlimit_raise(void);

#endif

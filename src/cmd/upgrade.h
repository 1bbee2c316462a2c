/*
 * upgrade.h - SIGUSR2 binary upgrade of `tidegate ingress`, nginx-style: the
 * running process starts the binary found at its own path again (the file may
 * have been replaced since) with the same arguments, hands it its listening
 * sockets, waits until it reports ready, then drains.
 *
 * Protocol, over a SOCK_SEQPACKET socketpair whose child end is inherited by
 * the new process as the descriptor named by TIDEGATE_UPGRADE_FD:
 *   old -> new  "FDS <kind>..."  with up to TG_UPGRADE_BATCH descriptors
 *                                (SCM_RIGHTS), kinds "http", "https", "admin"
 *               "END <pid>"      everything is sent
 *   new -> old  "READY <pid>"    configuration loaded, sockets adopted, serving
 *               "FAIL <reason>"  could not start (it then exits)
 * The old process also treats the end of the socket (the new one exited) and
 * a timeout as failures; it then keeps serving and logs why. Listening sockets
 * are shared, never closed and reopened, so no connection attempt is refused
 * and the connections queued on them are accepted by whichever process still
 * accepts.
 *
 * Functions return 0 or -errno unless said otherwise.
 */
#ifndef TG_CMD_UPGRADE_H
#define TG_CMD_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TG_UPGRADE_ENV	   "TIDEGATE_UPGRADE_FD"
#define TG_UPGRADE_BATCH   64  /* descriptors per message (SCM_MAX_FD is 253) */
#define TG_UPGRADE_MAX_FDS 600 /* descriptors one handover carries at most */

/* Kinds of handed-over sockets. */
typedef enum tg_upgrade_kind {
	TG_UPGRADE_HTTP = 0,  /* an HTTP listener of the proxy (one per worker) */
	TG_UPGRADE_ADMIN = 1, /* the admin listener (/healthz, /metrics) */
	TG_UPGRADE_HTTPS = 2, /* an HTTPS listener of the proxy */
} tg_upgrade_kind_t;

/* Sockets received by the new process. */
typedef struct tg_upgrade_inherited {
	int channel;		       /* socket to the old process (-1: not upgraded) */
	pid_t old_pid;		       /* the old process */
	int http[TG_UPGRADE_MAX_FDS];  /* HTTP listeners */
	int n_http;		       /* entries in http */
	int https[TG_UPGRADE_MAX_FDS]; /* HTTPS listeners */
	int n_https;		       /* entries in https */
	int admin;		       /* admin listener, -1 when none */
} tg_upgrade_inherited_t;

/* An upgrade in progress, on the old side. */
typedef struct tg_upgrade tg_upgrade_t;

/* Remembers the binary (/proc/self/exe resolved now, so that a file replaced
 * later is the one started) and the arguments. Call once at start. */
void tg_upgrade_remember(int argc, char **argv);

/* Old side: starts the new process and sends it the n descriptors fds with
 * their kinds. On success *out is the upgrade to watch with tg_upgrade_poll.
 * On failure why (len bytes) says what went wrong. */
int tg_upgrade_start(const int *fds, const tg_upgrade_kind_t *kinds, int n, tg_upgrade_t **out,
		     char *why, size_t len);

/* The descriptor to poll for readability while the upgrade is pending. */
int tg_upgrade_fd(const tg_upgrade_t *u);

/* The new process's pid. */
pid_t tg_upgrade_pid(const tg_upgrade_t *u);

/* Reads what the new process said. Returns 1 when it is ready, 0 while
 * pending, -1 when it failed (why says how; the process was reaped or killed).
 * timed_out forces the failure (the caller's deadline passed). */
int tg_upgrade_poll(tg_upgrade_t *u, bool timed_out, char *why, size_t len);

/* Forgets u (after success the new process runs on; after failure it is
 * gone). Accepts NULL. */
void tg_upgrade_free(tg_upgrade_t *u);

/* Reaps the new process if it has exited since (non-blocking); harmless when it
 * has not. Call now and then in the old process after a success. */
void tg_upgrade_reap(void);

/* New side: when TIDEGATE_UPGRADE_FD is set, receives the sockets (the
 * variable is removed so that a later upgrade starts clean). in->channel is -1
 * when the variable was absent. A malformed handover is an error (logged). */
int tg_upgrade_receive(tg_upgrade_inherited_t *in);

/* New side: tells the old process "READY" (ok) or "FAIL why", then closes the
 * channel. No-op when not upgraded. */
void tg_upgrade_report(tg_upgrade_inherited_t *in, bool ok, const char *why);

/* Parses one handover message (exposed for tests): "FDS k1 k2..." with n
 * descriptors attached fills kinds[0..n) and returns n; "END <pid>" returns 0
 * and sets *pid; anything else (unknown kind, count mismatch, junk) returns
 * -EINVAL. */
int tg_upgrade_parse(const char *msg, size_t len, int nfds, tg_upgrade_kind_t *kinds, pid_t *pid);

#endif

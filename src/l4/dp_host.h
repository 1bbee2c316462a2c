/*
 * dp_host.h - host settings a datapath needs (sysctls, local addresses),
 * changed through an undo journal so a command can put everything back as
 * it found it when it exits (`tidegate decap`; usable by `tidegate balancer`
 * for net.ipv4.conf.IF.forwarding, which bpf_fib_lookup requires).
 *
 * Every change is recorded only when it actually changed something: a sysctl
 * already at the wanted value, or an address already present, is left alone
 * on restore too. All functions return 0 or -errno and log what they did.
 */
#ifndef TG_L4_DP_HOST_H
#define TG_L4_DP_HOST_H

#include <stddef.h>
#include <sys/socket.h>

typedef struct tg_dp_host tg_dp_host_t;

/* Allocates an empty journal (NULL when out of memory). */
tg_dp_host_t *tg_dp_host_new(void);

/* Reads a sysctl given as a dotted name ("net.ipv4.conf.all.arp_ignore")
 * into buf (NUL-terminated, trailing newline removed). */
int tg_dp_host_sysctl_get(const char *name, char *buf, size_t len);

/* Sets a sysctl, journalling its previous value when it differs. The name
 * is dotted; an interface part may itself contain dots only if given with
 * a '/' separator instead ("net/ipv4/conf/eth0.100/rp_filter"). */
int tg_dp_host_sysctl_set(tg_dp_host_t *h, const char *name, const char *value);

/* Adds addr as a host address (/32 or /128, IPv6 without DAD) on ifname,
 * journalling it unless it was already there. */
int tg_dp_host_addr_add(tg_dp_host_t *h, const char *ifname, const struct sockaddr *addr);

/* Undoes every journalled change, newest first, logging each; then empties
 * the journal. Failures are logged and skipped so the rest is still undone. */
void tg_dp_host_restore(tg_dp_host_t *h);

/* Restores (tg_dp_host_restore) and frees. Accepts NULL. */
void tg_dp_host_free(tg_dp_host_t *h);

#endif

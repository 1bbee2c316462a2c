/*
 * datapath.h - user-space handle on the XDP balancer (bpf/balancer.bpf.c):
 * load and attach it, program VIPs, reals and Maglev tables, read counters.
 *
 * Ownership of identifiers: the control plane assigns both vip ids
 * (0 .. TG_MAX_VIPS-1) and real ids (0 .. TG_MAX_REALS-1) and keeps them
 * stable for as long as the VIP / real exists; the datapath only stores them.
 * A real id names one real address shared by every VIP that uses it; Maglev
 * tables hold real ids (src/l4/maglev.h's tg_maglev_real_t.value).
 *
 * Life of a real, as the datapath sees it:
 *   tg_dp_real_set          valid: may be in Maglev tables and receives flows
 *   (left out of tables)    draining: no new flows, established flows stay
 *   tg_dp_real_invalidate   gone: receives nothing; old flow entries that point
 *                           at it are re-picked through Maglev on their next packet
 *
 * Every function returns 0 or -errno (libbpf/syscall edge, STYLE.md rule 3)
 * unless stated otherwise, and logs nothing on the hot path. Not thread-safe:
 * one thread (the control plane's) drives a tg_dp_t.
 */
#ifndef TG_L4_DATAPATH_H
#define TG_L4_DATAPATH_H

#include "abi.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct tg_dp tg_dp_t;
struct tg_balancer; /* the bpftool skeleton ($(BUILD)/bpf/balancer.skel.h) */

/* How the XDP program is attached. */
typedef enum tg_dp_xdp_mode {
	TG_DP_XDP_NATIVE = 0,  /* driver mode (XDP_FLAGS_DRV_MODE); veth supports it */
	TG_DP_XDP_GENERIC = 1, /* skb mode (XDP_FLAGS_SKB_MODE): any device, slower */
} tg_dp_xdp_mode_t;

/* Options for tg_dp_open. Zero-initialise, then set what you need. */
typedef struct tg_dp_opts {
	const char *ifname;	     /* interface to attach to; ignored in test_mode */
	tg_dp_xdp_mode_t xdp_mode;   /* native or generic */
	bool test_mode;		     /* load maps and program but attach nothing
					(BPF_PROG_TEST_RUN fixtures, control-plane unit tests) */
	uint8_t encap_src4[4];	     /* IPIP outer source /16 base (bytes 0-1 used);
					all zero -> 198.19.0.0/16 */
	uint8_t encap_src6[16];	     /* IP6IP6 outer source /96 base (bytes 0-11 used);
					all zero -> fd00:7467:ffff:ffff::/96 */
	uint32_t new_flow_rate;	     /* flow-table insertions allowed per second per
					CPU; above it flows are forwarded by Maglev
					without an entry; 0 = no limit */
	uint32_t flow_table_entries; /* flow table size per family (IPv4 and IPv6
					tables each; all CPUs together);
					0 -> TG_FLOW_TABLE_DEFAULT */
} tg_dp_opts_t;

/* A VIP as the control plane describes it to tg_dp_vip_set. */
typedef struct tg_dp_vip {
	struct sockaddr_storage addr; /* AF_INET or AF_INET6 address, port in sin(6)_port */
	uint8_t proto;		      /* IPPROTO_TCP or IPPROTO_UDP */
	bool hash_source_ip;	      /* Maglev hash over the client address only */
	bool forward_l2;	      /* MAC rewrite (real on this segment) instead of IPIP */
	uint32_t idle_timeout_s;      /* 0 -> 350 (TCP) / 120 (UDP) */
} tg_dp_vip_t;

/* Counters of one VIP, real or (VIP, real) pair, summed over CPUs. */
typedef struct tg_dp_counter {
	uint64_t packets; /* packets forwarded for this VIP / to this real */
	uint64_t bytes;	  /* their frame bytes as received (before encapsulation) */
} tg_dp_counter_t;

/* Loads the balancer program (one XDP program per interface: it replaces
 * nothing and fails with -EBUSY when the interface already has one) and,
 * unless test_mode, attaches it to opts->ifname through a bpf_link in the
 * requested mode. On success *out owns the loaded program, its maps and the
 * link; release with tg_dp_close. Errors: -EINVAL (bad opts, unknown
 * interface: logged with the reason), -EPERM, -ENOMEM, other -errno. */
int tg_dp_open(const tg_dp_opts_t *opts, tg_dp_t **out);

/* Detaches (link destroyed first so no packet sees half-freed maps) and frees
 * everything. Accepts NULL. */
void tg_dp_close(tg_dp_t *dp);

/* Creates or updates the VIP with this id. Changing an existing id's address,
 * port or protocol moves it (the old key is removed; its flow entries no
 * longer match, bpf/abi.h: flow tags). Until a Maglev table is
 * swapped in for the id, packets to the VIP are dropped (drop_no_real). A new
 * id starts with zeroed counters. -EINVAL: id >= TG_MAX_VIPS, bad family or
 * protocol, or another id already has this address:port:protocol. */
int tg_dp_vip_set(tg_dp_t *dp, uint32_t vip_id, const tg_dp_vip_t *vip);

/* Removes the VIP: its packets are passed to the kernel from now on, its
 * Maglev table is released. Flow entries age out by themselves; a VIP set
 * again later does not find them (its flows are picked afresh). Its (VIP,
 * real) counters are added to the reals' totals. -ENOENT when the id is not
 * in use. */
int tg_dp_vip_del(tg_dp_t *dp, uint32_t vip_id);

/* Sets (or changes) the real with this id and marks it valid. addr is an
 * AF_INET/AF_INET6 sockaddr (port ignored). The real's family must match the
 * VIPs that use it (IPv4-in-IPv4 / IPv6-in-IPv6). A real id set to another
 * address than it last had (or for the first time) starts with zeroed
 * counters, per real and per (VIP, real); the same address set again after
 * an invalidation keeps counting. -EINVAL on bad id or family. */
int tg_dp_real_set(tg_dp_t *dp, uint32_t real_id, const struct sockaddr *addr);

/* Marks the real gone: it receives no packet from now on, not even from flow
 * entries created while it was valid (they are re-picked). Call it once the
 * deregistration delay ended or the real was removed outright, after the
 * tables no longer contain it. -EINVAL on a bad id. */
int tg_dp_real_invalidate(tg_dp_t *dp, uint32_t real_id);

/* Ends one VIP's flows on one real while the real stays valid for other
 * VIPs (its deregistration delay in this VIP is over): deletes that VIP's
 * flow-table entries that name real_id, so their next packet is re-picked
 * through the VIP's table (which no longer holds the real); their per-CPU
 * cached copies go too, and so do flows of the VIP still pending admission
 * on that real (one packet seen, bpf/abi.h). Walks the flow tables and the
 * flow cache in batches: a rare, control-plane-only cost. Returns the number of entries deleted,
 * -ENOENT when the VIP id is not set, or -errno. */
int tg_dp_flows_purge(tg_dp_t *dp, uint32_t vip_id, uint32_t real_id);

/* Installs a new Maglev table for the VIP: creates a fresh inner map of
 * size+1 entries (see the layout in bpf/abi.h), fills it, replaces the outer
 * slot in one update (packets see the old table or the new one, never a mix),
 * then closes the old inner map. table[i] is the real id of slot i
 * (TG_REAL_NONE for an empty slot); size must be >= 1 and <= TG_RING_SIZE_MAX
 * (prime in practice; the datapath only needs size >= 1). The table is copied;
 * every real it names gets a (VIP, real) counter slot, kept until the VIP is
 * deleted. -ENOENT when the VIP id is not set. */
int tg_dp_maglev_swap(tg_dp_t *dp, uint32_t vip_id, const uint32_t *table, uint32_t size);

/* Reads a VIP's counters summed over CPUs. -ENOENT when the id is not set. */
int tg_dp_vip_stats(tg_dp_t *dp, uint32_t vip_id, tg_dp_counter_t *out);

/* Reads a real's counters summed over CPUs and over every VIP that sent it
 * packets (kept after invalidation and after those VIPs are deleted).
 * -EINVAL on a bad id. */
int tg_dp_real_stats(tg_dp_t *dp, uint32_t real_id, tg_dp_counter_t *out);

/* Reads what the VIP sent to this real, summed over CPUs: zero when the
 * VIP's tables never named the real. -ENOENT when the VIP id is not set,
 * -EINVAL on a bad real id. */
int tg_dp_pair_stats(tg_dp_t *dp, uint32_t vip_id, uint32_t real_id, tg_dp_counter_t *out);

/* Reads the flow-table entry of the client->VIP flow k (bpf/abi.h; the
 * destination must be a set VIP). -ENOENT when there is no such VIP or
 * entry. For tests and diagnostics. */
int tg_dp_flow_get(tg_dp_t *dp, const struct tg_flow_key *k, struct tg_flow_val *out);

/* Creates or replaces the flow-table entry of k and clears the flow's slot
 * in every CPU's flow cache, so the next packet of the flow is decided by
 * this entry (e.g. an entry aged to test the idle timeout). -ENOENT when k's
 * destination is not a set VIP. For tests and diagnostics. */
int tg_dp_flow_set(tg_dp_t *dp, const struct tg_flow_key *k, const struct tg_flow_val *v);

/* Reads the global event counters (enum tg_stat in bpf/abi.h) summed over
 * CPUs into out[0 .. TG_STAT_MAX-1]. */
int tg_dp_stats_read(tg_dp_t *dp, uint64_t out[TG_STAT_MAX]);

/* Metric label of a global counter ("pass_not_vip", ...); "unknown" when
 * stat >= TG_STAT_MAX. Static string. */
const char *tg_dp_stat_name(unsigned int stat);

/* The loaded skeleton, for BPF_PROG_TEST_RUN fixtures and diagnostics
 * (program fd, map fds). Owned by dp. */
struct tg_balancer *tg_dp_skeleton(tg_dp_t *dp);

/* Interface index the program is attached to (0 in test mode). */
int tg_dp_ifindex(const tg_dp_t *dp);

/* Kernel HZ the datapath clock runs at (jiffies; read from the kernel config
 * or measured at open). Flow-table times are jiffies x (1e9 / HZ) ns. */
unsigned int tg_dp_hz(const tg_dp_t *dp);

#endif

/*
 * plane.h - the balancer's control plane: turns configurations and health
 * results into datapath state, and owns the lifecycle of every real.
 *
 * Identifiers: a VIP keeps its vip id (datapath slot) for as long as its
 * address:port/protocol stays in the configuration; a real keeps its real id
 * for as long as the process lives (ids are recycled only when the id space
 * runs out, and then only from reals nobody references), so reloads never
 * renumber anything the flow table points at.
 *
 * A real inside one VIP ("member") is, at any moment:
 *   active    in the VIP's Maglev table: takes new flows
 *   draining  out of the table (removed from the configuration, unhealthy, or
 *             displaced by zone preference) but still valid, so flows already
 *             pinned to it in the flow table keep going, until
 *             deregistration-delay after it left the table
 *   gone      past that: the datapath re-picks its flows through Maglev
 * A real id is valid in the datapath while any VIP has it active or draining.
 *
 * Which reals are active, per VIP:
 *   1. candidates = configured reals that are healthy
 *   2. cross-zone false and this node has a zone: the candidates in that zone,
 *      when there is at least one
 *   3. no candidate at all: every configured real (fail open, as NLB does)
 *
 * The plane drives the datapath through tg_l4_dp_ops_t so that tests can run
 * it against a recording fake (src/l4/plane_dp.c adapts src/l4/datapath.h).
 * It is not thread-safe by itself; tg_l4_plane_lock/unlock serialise the
 * control thread with the admin thread reading metrics.
 */
#ifndef TG_L4_PLANE_H
#define TG_L4_PLANE_H

#include "l4/config.h"
#include "l4/health.h"
#include "core/sbuf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Counters of one VIP or real as read from the datapath. */
typedef struct tg_l4_counter {
	uint64_t packets; /* packets forwarded */
	uint64_t bytes;	  /* their bytes */
} tg_l4_counter_t;

/* Global datapath counters the metrics page needs. */
typedef struct tg_l4_dp_totals {
	uint64_t flow_hit;	   /* flow-table lookups that hit */
	uint64_t flow_miss;	   /* that missed (new flow) */
	uint64_t flow_expired;	   /* hit an idle-expired entry (counted as miss too) */
	uint64_t flow_repick_gone; /* hit an entry whose real is gone: re-picked */
	uint64_t flow_admitted;	   /* flows entered in the table (second packet) */
	uint64_t new_flow_guard;   /* admissions refused (rate guard) */
	size_t n_events;	   /* entries used in events[] */
	struct {
		const char *name; /* label: "drop_no_real", "pass_not_vip", ... */
		uint64_t value;	  /* count */
	} events[48];		  /* every datapath event counter */
} tg_l4_dp_totals_t;

/* What the plane needs from the datapath. Every call returns 0 or -errno. */
typedef struct tg_l4_dp_ops {
	/* Creates/updates a VIP in slot vip_id. */
	int (*vip_set)(void *ctx, uint32_t vip_id, const tg_l4_vip_cfg_t *vip);
	/* Removes the VIP in slot vip_id. */
	int (*vip_del)(void *ctx, uint32_t vip_id);
	/* Sets real_id's address and makes it valid. */
	int (*real_set)(void *ctx, uint32_t real_id, const tg_l4_ip_t *ip);
	/* Makes real_id gone (its flows get re-picked). */
	int (*real_invalidate)(void *ctx, uint32_t real_id);
	/* Installs a VIP's Maglev table (size entries of real ids). */
	int (*maglev_swap)(void *ctx, uint32_t vip_id, const uint32_t *table, uint32_t size);
	/* Optional (may be NULL): ends vip_id's flows on real_id while the real
	 * stays valid for other VIPs. Returns the count ended or -errno. */
	int (*flows_purge)(void *ctx, uint32_t vip_id, uint32_t real_id);
	/* Optional (may be NULL): counters for metrics. */
	int (*vip_stats)(void *ctx, uint32_t vip_id, tg_l4_counter_t *out);
	int (*real_stats)(void *ctx, uint32_t real_id, tg_l4_counter_t *out);
	/* What one VIP sent to one of its reals; when set, the per-(vip, real)
	 * metrics use it instead of real_stats (a real's total under every VIP). */
	int (*pair_stats)(void *ctx, uint32_t vip_id, uint32_t real_id, tg_l4_counter_t *out);
	int (*totals)(void *ctx, tg_l4_dp_totals_t *out);
	void *ctx; /* passed to every call */
} tg_l4_dp_ops_t;

/* What a member looks like from outside, for tests and the admin page. */
typedef enum tg_l4_member_state {
	TG_L4_MEMBER_ACTIVE = 0,   /* in the Maglev table */
	TG_L4_MEMBER_DRAINING = 1, /* out of the table, flows kept */
	TG_L4_MEMBER_GONE = 2,	   /* out of the table, flows re-picked */
} tg_l4_member_state_t;

typedef struct tg_l4_plane tg_l4_plane_t;

/* Creates a plane with no configuration. ops is copied. Returns 0 or -ENOMEM. */
int tg_l4_plane_create(const tg_l4_dp_ops_t *ops, tg_l4_plane_t **out);

/* Frees the plane (does not touch the datapath). Accepts NULL. */
void tg_l4_plane_free(tg_l4_plane_t *p);

/* Makes cfg the running configuration at time now_ms (monotonic ms): new
 * VIPs/reals are programmed, removed reals start draining, tables are
 * rebuilt. Always takes ownership of cfg. Errors, with the reason in err:
 * -ENOSPC when the datapath's VIP or real id space cannot hold the new
 * configuration (checked before anything changes: the previous one stays in
 * force and cfg is freed); -errno when a datapath update failed part-way
 * (cfg is running, minus what the datapath refused).
 * The first configuration applied starts every real healthy; reals added
 * later start unhealthy until they pass healthy-threshold checks (NLB's
 * "initial" state), unless every real of the VIP is unhealthy (fail open). */
int tg_l4_plane_apply(tg_l4_plane_t *p, tg_l4_config_t *cfg, uint64_t now_ms, char *err,
		      size_t errlen);

/* The running configuration (owned by the plane), NULL before the first
 * apply. */
const tg_l4_config_t *tg_l4_plane_config(const tg_l4_plane_t *p);

/* Health-check targets for the running configuration: *out receives an
 * array the caller frees. Returns the count, or -ENOMEM. */
int tg_l4_plane_health_targets(const tg_l4_plane_t *p, tg_health_target_t **out);

/* Records a health transition for target key (as in the targets above) and
 * rebuilds the VIP's table if its active set changed. Unknown keys are
 * ignored (a target removed by a reload may still report once). */
void tg_l4_plane_set_health(tg_l4_plane_t *p, uint64_t key, bool healthy, uint64_t now_ms);

/* Ends drains whose deregistration delay has passed (invalidating reals no
 * VIP still uses). Returns the time of the next drain deadline, or
 * UINT64_MAX when none is pending. */
uint64_t tg_l4_plane_tick(tg_l4_plane_t *p, uint64_t now_ms);

/* State of the real `real` inside the VIP vip:port/proto. Returns -1 when
 * there is no such member (never configured, or forgotten once the drain of a
 * removed real ended), else a tg_l4_member_state_t. */
int tg_l4_plane_member_state(const tg_l4_plane_t *p, const tg_l4_ip_t *vip, uint16_t port,
			     tg_l4_proto_t proto, const tg_l4_ip_t *real);

/* Real id assigned to an address, or -1. */
int tg_l4_plane_real_id(const tg_l4_plane_t *p, const tg_l4_ip_t *real);

/* True while at least one VIP has a real in its table. */
bool tg_l4_plane_has_usable_vip(const tg_l4_plane_t *p);

/* A VIP address as route announcement sees it. */
typedef struct tg_l4_vip_addr {
	tg_l4_ip_t ip; /* the address (several VIPs may share it: other ports) */
	bool usable;   /* some VIP on it has a real in its installed table */
} tg_l4_vip_addr_t;

/* Writes each distinct VIP address of the running configuration into out
 * (room for max entries; TG_L4_MAX_VIPS always suffices), in configuration
 * order. An address is usable while at least one VIP on it has a real in its
 * Maglev table: healthy ones, or all of them when none is (fail open), so it
 * is unusable only when the VIP lists no real. Returns the count. */
size_t tg_l4_plane_vip_addrs(const tg_l4_plane_t *p, tg_l4_vip_addr_t *out, size_t max);

/* Appends the balancer's Prometheus metrics (reading counters through the
 * ops' stats calls). */
void tg_l4_plane_metrics(tg_l4_plane_t *p, tg_sbuf_t *out);

/* Records a reload outcome for tidegate_l4_config_reloads_total. */
void tg_l4_plane_note_reload(tg_l4_plane_t *p, bool ok);

/* Serialise the control thread and readers (metrics, healthz). */
void tg_l4_plane_lock(tg_l4_plane_t *p);
void tg_l4_plane_unlock(tg_l4_plane_t *p);

#endif

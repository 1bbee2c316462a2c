/*
 * datapath.c - loads bpf/balancer.bpf.c and programs its maps.
 *
 * The datapath keeps a shadow of what it wrote (each vip id's key and flow
 * tag, which real ids are valid, which (VIP, real) pair slots exist) so that
 * moves and deletes need no map walks, and so the control plane can stay the
 * only owner of ids.
 *
 * Pair slots (bpf/abi.h, tg_pair_stats): tg_dp_maglev_swap gives every real
 * a VIP's table names a slot for that (VIP, real), kept while the VIP lives
 * so that flow entries naming it keep counting in the right place. Slots
 * are freed when the VIP is deleted, or reclaimed when the pool runs out
 * from reals that have been invalid longer than any idle timeout (no flow
 * entry can still lead a packet to them). Counts of freed slots are added
 * to their real's retired total, so per-real counters never go backwards.
 */
#include "l4/datapath.h"

#include "balancer.skel.h"
#include "clock.skel.h"
#include "core/common.h"
#include "core/log.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

struct tg_dp {
	struct tg_balancer *skel;		    /* loaded program and maps */
	int link_fd;				    /* XDP bpf_link, -1 in test mode */
	int ifindex;				    /* attached interface, 0 in test mode */
	int ncpus;				    /* possible CPUs: per-CPU value count */
	unsigned int hz;			    /* kernel HZ: the datapath clock's tick rate */
	bool vip_used[TG_MAX_VIPS];		    /* vip id currently set */
	struct tg_vip_key vip_keys[TG_MAX_VIPS];    /* key each set vip id is stored under */
	uint32_t vip_slot[TG_MAX_VIPS];		    /* tg_vip_slots index of each set vip id */
	uint8_t slot_state[TG_VIP_SLOTS];	    /* TG_VIP_SLOT_* as written to the map */
	bool real_valid[TG_MAX_REALS];		    /* real id currently valid */
	uint32_t vip_tag[TG_MAX_VIPS];		    /* flow tag of each set vip id */
	uint32_t next_tag;			    /* next flow tag to hand out (never 0) */
	uint32_t max_idle_s;			    /* largest idle timeout ever set */
	bool real_seen[TG_MAX_REALS];		    /* real id has had an address */
	struct tg_real real_last[TG_MAX_REALS];	    /* address each real id last had */
	uint64_t real_gone_ns[TG_MAX_REALS];	    /* CLOCK_MONOTONIC of invalidation */
	tg_dp_counter_t real_retired[TG_MAX_REALS]; /* counts of its freed pair slots */
	uint16_t *pair_of;		  /* [vip * TG_MAX_REALS + real] -> pair slot, 0 none */
	uint16_t pair_vip[TG_MAX_PAIRS];  /* owner VIP of each used slot */
	uint16_t pair_real[TG_MAX_PAIRS]; /* owner real of each used slot */
	uint16_t pair_free[TG_MAX_PAIRS]; /* stack of free slots (1 .. TG_MAX_PAIRS-1) */
	uint32_t n_pair_free;		  /* entries in pair_free */
	bool pair_full_logged;		  /* "out of pair slots" said once */
	uint32_t scratch[TG_MAX_REALS];	  /* tg_dp_maglev_swap: real -> ring target */
};

static const char *const stat_names[] = {
#define TG_STAT_NAME(id, name) name,
    TG_STAT_LIST(TG_STAT_NAME)
#undef TG_STAT_NAME
};
_Static_assert(TG_ARRAY_SIZE(stat_names) == TG_STAT_MAX, "one name per tg_stat");

const char *tg_dp_stat_name(unsigned int stat)
{
	return stat < TG_STAT_MAX ? stat_names[stat] : "unknown";
}

/* Writes a zero value on every CPU for key (counters of a reused id). */
static int percpu_zero(tg_dp_t *dp, int fd, uint32_t key, size_t value_size)
{
	void *zero = calloc((size_t)dp->ncpus, value_size);
	int rc;

	if (!zero)
		return -ENOMEM;
	rc = bpf_map_update_elem(fd, &key, zero, BPF_ANY) ? -errno : 0;
	free(zero);
	return rc;
}

/* Clears one flow-cache slot on every CPU (bpf/abi.h: flow cache; CPU c's
 * copy is entry c x TG_FLOW_CACHE_SLOTS + slot), in one batched update. */
static int cache_clear(tg_dp_t *dp, uint32_t slot)
{
	uint32_t *keys = malloc((size_t)dp->ncpus * sizeof(*keys));
	struct tg_flow_cache *zero = calloc((size_t)dp->ncpus, sizeof(*zero));
	uint32_t n = (uint32_t)dp->ncpus;
	int rc = 0;

	if (!keys || !zero) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t c = 0; c < n; c++)
		keys[c] = c * TG_FLOW_CACHE_SLOTS + slot;
	if (bpf_map_update_batch(bpf_map__fd(dp->skel->maps.tg_flow_cache), keys, zero, &n, NULL))
		rc = -errno;
out:
	free(keys);
	free(zero);
	return rc;
}

/* Sums a per-CPU tg_counter. */
static int counter_read(tg_dp_t *dp, int fd, uint32_t id, tg_dp_counter_t *out)
{
	struct tg_counter *v = calloc((size_t)dp->ncpus, sizeof(*v));
	int rc = 0;

	if (!v)
		return -ENOMEM;
	memset(out, 0, sizeof(*out));
	if (bpf_map_lookup_elem(fd, &id, v)) {
		rc = -errno;
	} else {
		for (int c = 0; c < dp->ncpus; c++) {
			out->packets += v[c].packets;
			out->bytes += v[c].bytes;
		}
	}
	free(v);
	return rc;
}

static uint64_t now_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint16_t *pair_ref(tg_dp_t *dp, uint32_t vip_id, uint32_t real_id)
{
	return &dp->pair_of[(size_t)vip_id * TG_MAX_REALS + real_id];
}

/* Frees a used pair slot; its counts move to its real's retired total. */
static void pair_release(tg_dp_t *dp, uint32_t pair)
{
	uint32_t real = dp->pair_real[pair];
	tg_dp_counter_t c;

	if (counter_read(dp, bpf_map__fd(dp->skel->maps.tg_pair_stats), pair, &c) == 0) {
		dp->real_retired[real].packets += c.packets;
		dp->real_retired[real].bytes += c.bytes;
	}
	*pair_ref(dp, dp->pair_vip[pair], real) = 0;
	dp->pair_free[dp->n_pair_free++] = (uint16_t)pair;
}

/* Frees the slots of reals that have been invalid for longer than any idle
 * timeout (+ the flow table's sync lag, + margin): no flow entry or cache
 * entry can still send a packet through them. Runs only when the pool is
 * empty. */
static void pair_reclaim(tg_dp_t *dp)
{
	uint64_t now = now_mono_ns();
	uint64_t quiet = ((uint64_t)dp->max_idle_s + 2) * 1000000000ull;

	for (uint32_t p = 1; p < TG_MAX_PAIRS; p++) {
		uint32_t real = dp->pair_real[p];
		if (*pair_ref(dp, dp->pair_vip[p], real) != p)
			continue; /* free */
		if (!dp->real_valid[real] && dp->real_gone_ns[real] &&
		    now - dp->real_gone_ns[real] > quiet)
			pair_release(dp, p);
	}
}

/* The pair slot of (vip, real), allocated (counters zeroed) on first use;
 * 0 ("unattributed") when every slot is taken. */
static uint32_t pair_get(tg_dp_t *dp, uint32_t vip_id, uint32_t real_id)
{
	uint16_t *ref = pair_ref(dp, vip_id, real_id);
	uint32_t pair;

	if (*ref)
		return *ref;
	if (!dp->n_pair_free)
		pair_reclaim(dp);
	if (!dp->n_pair_free) {
		if (!dp->pair_full_logged)
			tg_error("datapath",
				 "all %u (VIP, real) counter slots are in use: further pairs are "
				 "counted as unattributed",
				 TG_MAX_PAIRS - 1);
		dp->pair_full_logged = true;
		return 0;
	}
	pair = dp->pair_free[--dp->n_pair_free];
	if (percpu_zero(dp, bpf_map__fd(dp->skel->maps.tg_pair_stats), pair,
			sizeof(struct tg_counter))) {
		dp->pair_free[dp->n_pair_free++] = (uint16_t)pair;
		return 0;
	}
	dp->pair_vip[pair] = (uint16_t)vip_id;
	dp->pair_real[pair] = (uint16_t)real_id;
	*ref = (uint16_t)pair;
	return pair;
}

/* Fills an ABI address (addr[4] + family) from a sockaddr. */
static int addr_from_sockaddr(const struct sockaddr *sa, uint32_t addr[4], uint8_t *family,
			      uint16_t *port)
{
	memset(addr, 0, 16);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		memcpy(&addr[0], &in->sin_addr, 4);
		*family = TG_FAMILY_V4;
		if (port)
			*port = in->sin_port;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		memcpy(addr, &in6->sin6_addr, 16);
		*family = TG_FAMILY_V6;
		if (port)
			*port = in6->sin6_port;
		return 0;
	}
	return -EINVAL;
}

/* CONFIG_HZ from /boot/config-RELEASE or /proc/config.gz (gzopen reads
 * both plain and compressed files); 0 when neither is readable. */
static unsigned int hz_from_config(void)
{
	char path[300], line[256];
	struct utsname u;
	unsigned int hz = 0;
	gzFile f = NULL;

	if (uname(&u) == 0) {
		snprintf(path, sizeof(path), "/boot/config-%s", u.release);
		f = gzopen(path, "r");
	}
	if (!f)
		f = gzopen("/proc/config.gz", "r");
	if (!f)
		return 0;
	while (gzgets(f, line, sizeof(line))) {
		if (strncmp(line, "CONFIG_HZ=", 10) == 0) {
			hz = (unsigned int)strtoul(line + 10, NULL, 10);
			break;
		}
	}
	gzclose(f);
	return hz;
}

/* Runs the jiffies probe (bpf/clock.bpf.c) once; 0 on failure. */
static uint64_t probe_jiffies(struct tg_clock *c, uint64_t *mono_ns)
{
	unsigned char pkt[64] = {0};
	struct timespec ts;
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt, .data_size_in = sizeof(pkt), .repeat = 1);

	if (bpf_prog_test_run_opts(bpf_program__fd(c->progs.clock_probe), &o))
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	*mono_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	return c->bss->probe_jiffies;
}

/* HZ measured over 100 ms and snapped to the usual values (100, 250, 300,
 * 1000; within 10%); 0 when the probe cannot run. */
static unsigned int hz_measure(void)
{
	static const unsigned int common[] = {100, 250, 300, 1000};
	struct tg_clock *c = tg_clock__open_and_load();
	struct timespec pause = {.tv_nsec = 100 * 1000 * 1000};
	uint64_t t0 = 0, t1 = 0, j0, j1;
	unsigned int hz = 0;

	if (!c)
		return 0;
	j0 = probe_jiffies(c, &t0);
	nanosleep(&pause, NULL);
	j1 = probe_jiffies(c, &t1);
	tg_clock__destroy(c);
	if (!j0 || j1 <= j0 || t1 <= t0)
		return 0;
	hz = (unsigned int)((j1 - j0) * 1000000000ull / (t1 - t0));
	for (size_t i = 0; i < TG_ARRAY_SIZE(common); i++)
		if (hz * 10 >= common[i] * 9 && hz * 10 <= common[i] * 11)
			return common[i];
	return hz;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

int tg_dp_open(const tg_dp_opts_t *opts, tg_dp_t **out)
{
	static const uint8_t def_src4[4] = {198, 19, 0, 0};
	static const uint8_t def_src6[16] = {0xfd, 0x00, 0x74, 0x67, 0xff, 0xff, 0xff, 0xff};
	tg_dp_t *dp;
	int rc;

	*out = NULL;
	if (!opts->test_mode && (!opts->ifname || !opts->ifname[0])) {
		tg_error("datapath", "no interface given to attach the XDP program to");
		return -EINVAL;
	}
	if (opts->xdp_mode != TG_DP_XDP_NATIVE && opts->xdp_mode != TG_DP_XDP_GENERIC) {
		tg_error("datapath", "unknown xdp mode %d", (int)opts->xdp_mode);
		return -EINVAL;
	}
	dp = calloc(1, sizeof(*dp));
	if (!dp)
		return -ENOMEM;
	dp->link_fd = -1;
	dp->next_tag = 1;
	dp->pair_of = calloc((size_t)TG_MAX_VIPS * TG_MAX_REALS, sizeof(*dp->pair_of));
	if (!dp->pair_of) {
		rc = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = TG_MAX_PAIRS - 1; i >= 1; i--)
		dp->pair_free[dp->n_pair_free++] = (uint16_t)i;
	dp->ncpus = libbpf_num_possible_cpus();
	if (dp->ncpus <= 0) {
		rc = dp->ncpus ? dp->ncpus : -EINVAL;
		goto fail;
	}
	if (!opts->test_mode) {
		dp->ifindex = (int)if_nametoindex(opts->ifname);
		if (!dp->ifindex) {
			rc = -errno;
			tg_error("datapath", "interface '%s': %s", opts->ifname, strerror(errno));
			rc = rc == -ENODEV ? -EINVAL : rc;
			goto fail;
		}
	}

	dp->skel = tg_balancer__open();
	if (!dp->skel) {
		rc = -errno;
		tg_error("datapath", "opening the balancer BPF object: %s", strerror(errno));
		goto fail;
	}
	const uint8_t *s4 = all_zero(opts->encap_src4, 4) ? def_src4 : opts->encap_src4;
	const uint8_t *s6 = all_zero(opts->encap_src6, 16) ? def_src6 : opts->encap_src6;
	memcpy((void *)&dp->skel->rodata->cfg_encap_src4, s4, 4);
	memcpy((void *)dp->skel->rodata->cfg_encap_src6, s6, 12);
	dp->skel->rodata->cfg_new_flow_rate = opts->new_flow_rate;
	dp->hz = hz_from_config();
	if (!dp->hz)
		dp->hz = hz_measure();
	if (!dp->hz || dp->hz > 100000) {
		tg_error("datapath",
			 "cannot tell the kernel's HZ (no kernel config, probe failed)");
		rc = -ENOTSUP;
		goto fail;
	}
	dp->skel->rodata->cfg_ns_per_jiffy = 1000000000u / dp->hz;

	/* NO_COMMON_LRU splits the entries between CPUs: keep each share sane. */
	uint32_t flows =
	    opts->flow_table_entries ? opts->flow_table_entries : TG_FLOW_TABLE_DEFAULT;
	if (flows < (uint32_t)dp->ncpus * 64u)
		flows = (uint32_t)dp->ncpus * 64u;
	rc = bpf_map__set_max_entries(dp->skel->maps.tg_flows4, flows);
	if (!rc)
		rc = bpf_map__set_max_entries(dp->skel->maps.tg_flows6, flows);
	/* One run of slots per possible CPU (bpf/abi.h: flow cache). */
	if (!rc)
		rc = bpf_map__set_max_entries(dp->skel->maps.tg_flow_cache,
					      (uint32_t)dp->ncpus * TG_FLOW_CACHE_SLOTS);
	if (rc)
		goto fail;

	rc = tg_balancer__load(dp->skel);
	if (rc) {
		tg_error("datapath", "loading the balancer BPF program: %s", strerror(-rc));
		goto fail;
	}

	if (!opts->test_mode) {
		LIBBPF_OPTS(bpf_link_create_opts, lo);
		lo.flags =
		    opts->xdp_mode == TG_DP_XDP_GENERIC ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
		rc = bpf_link_create(bpf_program__fd(dp->skel->progs.balancer_xdp), dp->ifindex,
				     BPF_XDP, &lo);
		if (rc < 0) {
			tg_error("datapath", "attaching XDP (%s mode) to %s: %s%s",
				 opts->xdp_mode == TG_DP_XDP_GENERIC ? "generic" : "native",
				 opts->ifname, strerror(-rc),
				 rc == -EBUSY ? " (another XDP program is attached)" : "");
			goto fail;
		}
		dp->link_fd = rc;
		tg_info("datapath", "XDP balancer attached to %s (ifindex %d, %s mode)",
			opts->ifname, dp->ifindex,
			opts->xdp_mode == TG_DP_XDP_GENERIC ? "generic" : "native");
	}
	*out = dp;
	return 0;
fail:
	tg_dp_close(dp);
	return rc < 0 ? rc : -EINVAL;
}

void tg_dp_close(tg_dp_t *dp)
{
	if (!dp)
		return;
	/* Detach first: no packet may run while the maps go away. */
	if (dp->link_fd >= 0)
		close(dp->link_fd);
	tg_balancer__destroy(dp->skel);
	free(dp->pair_of);
	free(dp);
}

/* Writes one tg_vip_slots entry and its shadow state. */
static int slot_write(tg_dp_t *dp, uint32_t idx, const struct tg_vip_key *key, uint32_t vip_id,
		      uint32_t state)
{
	struct tg_vip_slot slot;

	memset(&slot, 0, sizeof(slot));
	if (key)
		slot.key = *key;
	slot.vip_id = vip_id;
	slot.state = state;
	if (bpf_map_update_elem(bpf_map__fd(dp->skel->maps.tg_vip_slots), &idx, &slot, BPF_ANY))
		return -errno;
	dp->slot_state[idx] = (uint8_t)state;
	return 0;
}

/* First non-USED slot of key's probe sequence, or -ENOSPC. */
static int slot_find_free(const tg_dp_t *dp, const struct tg_vip_key *key)
{
	uint32_t h = tg_vip_slot_hash(key);

	for (uint32_t i = 0; i < TG_VIP_PROBES; i++) {
		uint32_t idx = (h + i) & (TG_VIP_SLOTS - 1);
		if (dp->slot_state[idx] != TG_VIP_SLOT_USED)
			return (int)idx;
	}
	return -ENOSPC;
}

int tg_dp_vip_set(tg_dp_t *dp, uint32_t vip_id, const tg_dp_vip_t *vip)
{
	struct tg_vip_key key;
	struct tg_vip_info info;
	int rc;

	if (vip_id >= TG_MAX_VIPS)
		return -EINVAL;
	if (vip->proto != IPPROTO_TCP && vip->proto != IPPROTO_UDP)
		return -EINVAL;
	memset(&key, 0, sizeof(key));
	if (addr_from_sockaddr((const struct sockaddr *)&vip->addr, key.addr, &key.family,
			       &key.port))
		return -EINVAL;
	key.proto = vip->proto;
	for (uint32_t i = 0; i < TG_MAX_VIPS; i++)
		if (i != vip_id && dp->vip_used[i] && !memcmp(&dp->vip_keys[i], &key, sizeof(key)))
			return -EINVAL;

	bool moved = dp->vip_used[vip_id] && memcmp(&dp->vip_keys[vip_id], &key, sizeof(key));
	memset(&info, 0, sizeof(info));
	info.vip_id = vip_id;
	/* A new address:port:protocol for this id is a new VIP to the flow
	 * tables: a fresh tag, so no entry of the old one can match. */
	info.flow_tag = dp->vip_used[vip_id] && !moved ? dp->vip_tag[vip_id] : dp->next_tag;
	info.flags =
	    (vip->hash_source_ip ? TG_VIP_F_HASH_SRC_IP : 0) | (vip->forward_l2 ? TG_VIP_F_L2 : 0);
	info.idle_timeout_s = vip->idle_timeout_s;
	if (!info.idle_timeout_s)
		info.idle_timeout_s =
		    vip->proto == IPPROTO_TCP ? TG_IDLE_TCP_DEFAULT_S : TG_IDLE_UDP_DEFAULT_S;

	int slot =
	    dp->vip_used[vip_id] && !moved ? (int)dp->vip_slot[vip_id] : slot_find_free(dp, &key);
	if (slot < 0)
		return slot;
	if (!dp->vip_used[vip_id]) {
		rc = percpu_zero(dp, bpf_map__fd(dp->skel->maps.tg_vip_stats), vip_id,
				 sizeof(struct tg_counter));
		if (rc)
			return rc;
	}
	/* Settings first: the slot that makes packets find them comes after. */
	if (bpf_map_update_elem(bpf_map__fd(dp->skel->maps.tg_vip_info), &vip_id, &info, BPF_ANY))
		return -errno;
	if (!dp->vip_used[vip_id] || moved) {
		rc = slot_write(dp, (uint32_t)slot, &key, vip_id, TG_VIP_SLOT_USED);
		if (rc)
			return rc;
		if (moved)
			slot_write(dp, dp->vip_slot[vip_id], NULL, 0, TG_VIP_SLOT_TOMBSTONE);
	}
	if (info.flow_tag == dp->next_tag)
		dp->next_tag = dp->next_tag == UINT32_MAX ? 1 : dp->next_tag + 1;
	dp->vip_tag[vip_id] = info.flow_tag;
	if (info.idle_timeout_s > dp->max_idle_s)
		dp->max_idle_s = info.idle_timeout_s;
	dp->vip_keys[vip_id] = key;
	dp->vip_slot[vip_id] = (uint32_t)slot;
	dp->vip_used[vip_id] = true;
	return 0;
}

int tg_dp_vip_del(tg_dp_t *dp, uint32_t vip_id)
{
	int rc;

	if (vip_id >= TG_MAX_VIPS || !dp->vip_used[vip_id])
		return -ENOENT;
	rc = slot_write(dp, dp->vip_slot[vip_id], NULL, 0, TG_VIP_SLOT_TOMBSTONE);
	if (rc)
		return rc;
	/* The ring goes after the slot: a packet that still found the VIP finds
	 * no ring and is dropped, never sent by a stale table. */
	if (bpf_map_delete_elem(bpf_map__fd(dp->skel->maps.tg_maglev), &vip_id) && errno != ENOENT)
		return -errno;
	/* Its flow entries can no longer match (the tag dies with it). */
	for (uint32_t r = 0; r < TG_MAX_REALS; r++)
		if (*pair_ref(dp, vip_id, r))
			pair_release(dp, *pair_ref(dp, vip_id, r));
	dp->vip_used[vip_id] = false;
	return 0;
}

int tg_dp_real_set(tg_dp_t *dp, uint32_t real_id, const struct sockaddr *addr)
{
	struct tg_real r;
	int rc;

	if (real_id >= TG_MAX_REALS || !addr)
		return -EINVAL;
	memset(&r, 0, sizeof(r));
	if (addr_from_sockaddr(addr, r.addr, &r.family, NULL))
		return -EINVAL;
	r.flags = TG_REAL_F_VALID;
	if (!dp->real_seen[real_id] || memcmp(&dp->real_last[real_id], &r, sizeof(r))) {
		/* Another real under this id: its counters start from zero. */
		for (uint32_t v = 0; v < TG_MAX_VIPS; v++) {
			uint32_t pair = *pair_ref(dp, v, real_id);
			if (pair) {
				rc = percpu_zero(dp, bpf_map__fd(dp->skel->maps.tg_pair_stats),
						 pair, sizeof(struct tg_counter));
				if (rc)
					return rc;
			}
		}
		memset(&dp->real_retired[real_id], 0, sizeof(dp->real_retired[real_id]));
	}
	/* A cached next hop belongs to the old address. */
	rc = percpu_zero(dp, bpf_map__fd(dp->skel->maps.tg_nexthop), real_id,
			 sizeof(struct tg_nexthop));
	if (rc)
		return rc;
	if (bpf_map_update_elem(bpf_map__fd(dp->skel->maps.tg_reals), &real_id, &r, BPF_ANY))
		return -errno;
	dp->real_valid[real_id] = true;
	dp->real_seen[real_id] = true;
	dp->real_last[real_id] = r;
	dp->real_gone_ns[real_id] = 0;
	return 0;
}

int tg_dp_real_invalidate(tg_dp_t *dp, uint32_t real_id)
{
	int fd;
	struct tg_real r;

	if (real_id >= TG_MAX_REALS)
		return -EINVAL;
	fd = bpf_map__fd(dp->skel->maps.tg_reals);
	if (bpf_map_lookup_elem(fd, &real_id, &r))
		return -errno;
	/* Keep the address (diagnostics); only validity matters to packets. */
	r.flags &= (uint8_t)~TG_REAL_F_VALID;
	if (bpf_map_update_elem(fd, &real_id, &r, BPF_ANY))
		return -errno;
	if (dp->real_valid[real_id])
		dp->real_gone_ns[real_id] = now_mono_ns();
	dp->real_valid[real_id] = false;
	return 0;
}

/* Reads a whole map in batches of up to `chunk` entries and calls
 * visit(key, value, ctx) for each; a negative return ends the walk with it.
 * The key and value buffers are reused between batches. Returns 0 or the
 * first negative value (-errno when the kernel refused). */
static int map_walk(int fd, size_t key_size, size_t val_size, uint32_t chunk,
		    int (*visit)(const void *key, const void *val, void *ctx), void *ctx)
{
	uint8_t *keys = malloc((size_t)chunk * key_size);
	uint8_t *vals = malloc((size_t)chunk * val_size);
	uint64_t in_batch = 0, out_batch = 0; /* opaque, >= 4 bytes for hash maps */
	bool first = true;
	int rc = 0;

	if (!keys || !vals) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		uint32_t count = chunk;
		int e = bpf_map_lookup_batch(fd, first ? NULL : &in_batch, &out_batch, keys, vals,
					     &count, NULL);
		bool end = e != 0 && errno == ENOENT;
		if (e != 0 && !end) {
			rc = -errno;
			goto out;
		}
		for (uint32_t i = 0; i < count; i++) {
			rc = visit(keys + i * key_size, vals + i * val_size, ctx);
			if (rc < 0)
				goto out;
		}
		if (end)
			break;
		in_batch = out_batch;
		first = false;
	}
out:
	free(keys);
	free(vals);
	return rc;
}

/* purge_table's walk: collects the keys to delete. */
struct purge_hits {
	size_t key_size, tag_off;
	uint32_t tag, real_id;
	uint8_t *keys;
	size_t n, cap;
};

static int purge_collect(const void *key, const void *val, void *ctx)
{
	struct purge_hits *h = ctx;
	const struct tg_flow_val *v = val;
	uint32_t t;

	memcpy(&t, (const uint8_t *)key + h->tag_off, sizeof(t));
	if (t != h->tag || v->real_id != h->real_id)
		return 0;
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 256;
		uint8_t *k = realloc(h->keys, cap * h->key_size);
		if (!k)
			return -ENOMEM;
		h->keys = k;
		h->cap = cap;
	}
	memcpy(h->keys + h->n * h->key_size, key, h->key_size);
	h->n++;
	return 0;
}

/* Deletes the entries of one flow table (IPv6's when v6) whose VIP tag is
 * `tag` and whose value names real_id, and every CPU's cached copy of them.
 * The table is read whole in batches first and the matching keys deleted
 * after, since deleting during the walk would disturb it. Returns the count
 * deleted or -errno. */
static int purge_table(tg_dp_t *dp, bool v6, uint32_t tag, uint32_t real_id)
{
	int fd = bpf_map__fd(v6 ? dp->skel->maps.tg_flows6 : dp->skel->maps.tg_flows4);
	struct purge_hits h = {
	    .key_size = v6 ? sizeof(struct tg_flow6_key) : sizeof(struct tg_flow4_key),
	    .tag_off = v6 ? offsetof(struct tg_flow6_key, vip_tag)
			  : offsetof(struct tg_flow4_key, vip_tag),
	    .tag = tag,
	    .real_id = real_id,
	};
	int rc = map_walk(fd, h.key_size, sizeof(struct tg_flow_val), 4096, purge_collect, &h);

	for (size_t i = 0; rc >= 0 && i < h.n; i++) {
		const uint8_t *k = h.keys + i * h.key_size;
		/* One at a time: an entry the LRU evicted meanwhile is not an error. */
		if (bpf_map_delete_elem(fd, k) == 0)
			rc++;
		else if (errno != ENOENT) {
			rc = -errno;
			break;
		}
		/* The per-CPU cached copies go too (as in tg_dp_flow_set), so the
		 * flow's next packet is re-picked at once. */
		uint32_t fold;
		uint16_t sport;
		if (v6) {
			const struct tg_flow6_key *k6 = (const void *)k;
			fold = k6->src[0] ^ k6->src[1] ^ k6->src[2] ^ k6->src[3];
			sport = k6->sport;
		} else {
			const struct tg_flow4_key *k4 = (const void *)k;
			fold = k4->src;
			sport = k4->sport;
		}
		int e = cache_clear(dp, tg_flow_cache_slot(fold, sport, tag));
		if (e < 0) {
			rc = e;
			break;
		}
	}
	free(h.keys);
	return rc;
}

/* purge_pending's walk: zeroes matching slots as it goes (an ARRAY map:
 * updates do not disturb a batch walk). */
struct purge_pending_ctx {
	int fd;
	uint32_t tag, real_id;
};

static int pending_clear(const void *key, const void *val, void *ctx)
{
	static const struct tg_flow_cache zero;
	const struct purge_pending_ctx *c = ctx;
	const struct tg_flow_cache *v = val;

	if (v->vip_tag != c->tag || v->real_id != c->real_id || !(v->flags & TG_FLOW_CACHE_PENDING))
		return 0;
	return bpf_map_update_elem(c->fd, key, &zero, BPF_ANY) ? -errno : 0;
}

/* Clears every flow-cache slot, on any CPU, that holds a flow of `tag` on
 * real_id still pending (its first packet seen, no flow-table entry yet:
 * see the flow cache in bpf/abi.h), so that its second packet is re-picked
 * rather than admitted to the purged real. Slots of entries that were in
 * the table went with them (purge_table). A slot the datapath rewrote after
 * the read is zeroed all the same, which costs that flow one table lookup.
 * Returns 0 or -errno. */
static int purge_pending(tg_dp_t *dp, uint32_t tag, uint32_t real_id)
{
	struct purge_pending_ctx c = {
	    .fd = bpf_map__fd(dp->skel->maps.tg_flow_cache), .tag = tag, .real_id = real_id};

	return map_walk(c.fd, sizeof(uint32_t), sizeof(struct tg_flow_cache), 4096, pending_clear,
			&c);
}

int tg_dp_flows_purge(tg_dp_t *dp, uint32_t vip_id, uint32_t real_id)
{
	if (vip_id >= TG_MAX_VIPS || real_id >= TG_MAX_REALS)
		return -EINVAL;
	if (!dp->vip_used[vip_id])
		return -ENOENT;
	uint32_t tag = dp->vip_tag[vip_id];
	int n4 = purge_table(dp, false, tag, real_id);
	if (n4 < 0)
		return n4;
	int n6 = purge_table(dp, true, tag, real_id);
	if (n6 < 0)
		return n6;
	int e = purge_pending(dp, tag, real_id);
	if (e < 0)
		return e;
	return n4 + n6;
}

/* Fills a fresh ring map: key 0 = size, keys 1..size = the table's real ids
 * as ring targets (real id + pair slot, bpf/abi.h). Batched (one syscall per
 * chunk); falls back to one update per slot when the kernel refuses batches
 * for this map. */
static int ring_fill(tg_dp_t *dp, uint32_t vip_id, int fd, const uint32_t *table, uint32_t size)
{
	uint32_t n = size + 1;
	uint32_t *keys = malloc((size_t)n * sizeof(*keys));
	uint32_t *vals = malloc((size_t)n * sizeof(*vals));
	int rc = 0;

	if (!keys || !vals) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < n; i++)
		keys[i] = i;
	vals[0] = size;
	for (uint32_t r = 0; r < TG_MAX_REALS; r++)
		dp->scratch[r] = TG_REAL_NONE;
	for (uint32_t i = 0; i < size; i++) {
		uint32_t id = table[i];
		if (id >= TG_MAX_REALS) {
			vals[1 + i] = TG_REAL_NONE;
			continue;
		}
		if (dp->scratch[id] == TG_REAL_NONE)
			dp->scratch[id] = tg_ring_target(id, pair_get(dp, vip_id, id));
		vals[1 + i] = dp->scratch[id];
	}

	uint32_t count = n;
	if (bpf_map_update_batch(fd, keys, vals, &count, NULL) == 0 && count == n)
		goto out;
	for (uint32_t i = 0; i < n; i++) {
		if (bpf_map_update_elem(fd, &keys[i], &vals[i], BPF_ANY)) {
			rc = -errno;
			break;
		}
	}
out:
	free(keys);
	free(vals);
	return rc;
}

int tg_dp_maglev_swap(tg_dp_t *dp, uint32_t vip_id, const uint32_t *table, uint32_t size)
{
	LIBBPF_OPTS(bpf_map_create_opts, mo, .map_flags = BPF_F_INNER_MAP);
	int fd, rc;

	if (vip_id >= TG_MAX_VIPS || !dp->vip_used[vip_id])
		return -ENOENT;
	if (!table || size < 1 || size > TG_RING_SIZE_MAX)
		return -EINVAL;
	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "tg_ring", sizeof(uint32_t), sizeof(uint32_t),
			    size + 1, &mo);
	if (fd < 0)
		return fd;
	rc = ring_fill(dp, vip_id, fd, table, size);
	if (!rc &&
	    bpf_map_update_elem(bpf_map__fd(dp->skel->maps.tg_maglev), &vip_id, &fd, BPF_ANY))
		rc = -errno;
	/* The outer map holds its own reference; the old ring is freed by the
	 * kernel once no program can still be reading it. */
	close(fd);
	return rc;
}

int tg_dp_vip_stats(tg_dp_t *dp, uint32_t vip_id, tg_dp_counter_t *out)
{
	if (vip_id >= TG_MAX_VIPS || !dp->vip_used[vip_id])
		return -ENOENT;
	return counter_read(dp, bpf_map__fd(dp->skel->maps.tg_vip_stats), vip_id, out);
}

int tg_dp_real_stats(tg_dp_t *dp, uint32_t real_id, tg_dp_counter_t *out)
{
	int fd = bpf_map__fd(dp->skel->maps.tg_pair_stats);

	if (real_id >= TG_MAX_REALS)
		return -EINVAL;
	*out = dp->real_retired[real_id];
	for (uint32_t v = 0; v < TG_MAX_VIPS; v++) {
		uint32_t pair = *pair_ref(dp, v, real_id);
		tg_dp_counter_t c;
		if (!pair)
			continue;
		int rc = counter_read(dp, fd, pair, &c);
		if (rc)
			return rc;
		out->packets += c.packets;
		out->bytes += c.bytes;
	}
	return 0;
}

int tg_dp_pair_stats(tg_dp_t *dp, uint32_t vip_id, uint32_t real_id, tg_dp_counter_t *out)
{
	uint32_t pair;

	if (vip_id >= TG_MAX_VIPS || !dp->vip_used[vip_id])
		return -ENOENT;
	if (real_id >= TG_MAX_REALS)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	pair = *pair_ref(dp, vip_id, real_id);
	if (!pair)
		return 0;
	return counter_read(dp, bpf_map__fd(dp->skel->maps.tg_pair_stats), pair, out);
}

/* The vip id whose address:port:protocol is k's destination, or -ENOENT. */
static int vip_of_flow(const tg_dp_t *dp, const struct tg_flow_key *k)
{
	struct tg_vip_key vk;

	memset(&vk, 0, sizeof(vk));
	memcpy(vk.addr, k->dst, sizeof(vk.addr));
	vk.port = k->dport;
	vk.proto = k->proto;
	vk.family = k->family;
	for (uint32_t i = 0; i < TG_MAX_VIPS; i++)
		if (dp->vip_used[i] && !memcmp(&dp->vip_keys[i], &vk, sizeof(vk)))
			return (int)i;
	return -ENOENT;
}

/* Map fd and compact key (bpf/abi.h) of k's flow-table entry; returns the
 * vip id or -ENOENT. key must have room for a tg_flow6_key. */
static int flow_map_key(tg_dp_t *dp, const struct tg_flow_key *k, void *key, int *fd)
{
	int vip = vip_of_flow(dp, k);

	if (vip < 0)
		return vip;
	if (k->family == TG_FAMILY_V4) {
		struct tg_flow4_key *k4 = key;
		memset(k4, 0, sizeof(*k4));
		k4->src = k->src[0];
		k4->vip_tag = dp->vip_tag[vip];
		k4->sport = k->sport;
		*fd = bpf_map__fd(dp->skel->maps.tg_flows4);
	} else {
		struct tg_flow6_key *k6 = key;
		memset(k6, 0, sizeof(*k6));
		memcpy(k6->src, k->src, sizeof(k6->src));
		k6->vip_tag = dp->vip_tag[vip];
		k6->sport = k->sport;
		*fd = bpf_map__fd(dp->skel->maps.tg_flows6);
	}
	return vip;
}

int tg_dp_flow_get(tg_dp_t *dp, const struct tg_flow_key *k, struct tg_flow_val *out)
{
	struct tg_flow6_key key; /* room for either family's key */
	int fd = -1, rc = flow_map_key(dp, k, &key, &fd);

	if (rc < 0)
		return rc;
	return bpf_map_lookup_elem(fd, &key, out) ? -errno : 0;
}

int tg_dp_flow_set(tg_dp_t *dp, const struct tg_flow_key *k, const struct tg_flow_val *v)
{
	struct tg_flow6_key key;
	int fd = -1, vip = flow_map_key(dp, k, &key, &fd);
	uint32_t fold = k->src[0] ^ k->src[1] ^ k->src[2] ^ k->src[3];

	if (vip < 0)
		return vip;
	if (bpf_map_update_elem(fd, &key, v, BPF_ANY))
		return -errno;
	/* Every CPU's cached copy goes, so the next packet reads the entry. */
	return cache_clear(dp, tg_flow_cache_slot(fold, k->sport, dp->vip_tag[vip]));
}

int tg_dp_stats_read(tg_dp_t *dp, uint64_t out[TG_STAT_MAX])
{
	uint64_t *v = calloc((size_t)dp->ncpus, sizeof(*v));
	int fd = bpf_map__fd(dp->skel->maps.tg_stats);
	int rc = 0;

	if (!v)
		return -ENOMEM;
	for (uint32_t s = 0; s < TG_STAT_MAX; s++) {
		out[s] = 0;
		if (bpf_map_lookup_elem(fd, &s, v)) {
			rc = -errno;
			break;
		}
		for (int c = 0; c < dp->ncpus; c++)
			out[s] += v[c];
	}
	free(v);
	return rc;
}

struct tg_balancer *tg_dp_skeleton(tg_dp_t *dp)
{
	return dp->skel;
}

int tg_dp_ifindex(const tg_dp_t *dp)
{
	return dp->ifindex;
}

unsigned int tg_dp_hz(const tg_dp_t *dp)
{
	return dp->hz;
}

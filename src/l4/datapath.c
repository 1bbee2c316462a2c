/*
 * datapath.c - loads bpf/balancer.bpf.c and programs its maps.
 *
 * The datapath keeps a shadow of what it wrote (each vip id's key, which real
 * ids are valid) so that moves and deletes need no map walks, and so the
 * control plane can stay the only owner of ids.
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
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

struct tg_dp {
	struct tg_balancer *skel;		 /* loaded program and maps */
	int link_fd;				 /* XDP bpf_link, -1 in test mode */
	int ifindex;				 /* attached interface, 0 in test mode */
	int ncpus;				 /* possible CPUs: per-CPU value count */
	unsigned int hz;			 /* kernel HZ: the datapath clock's tick rate */
	bool vip_used[TG_MAX_VIPS];		 /* vip id currently set */
	struct tg_vip_key vip_keys[TG_MAX_VIPS]; /* key each set vip id is stored under */
	uint32_t vip_slot[TG_MAX_VIPS];		 /* tg_vip_slots index of each set vip id */
	uint8_t slot_state[TG_VIP_SLOTS];	 /* TG_VIP_SLOT_* as written to the map */
	bool real_valid[TG_MAX_REALS];		 /* real id currently valid */
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
	rc = bpf_map__set_max_entries(dp->skel->maps.tg_flows, flows);
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

	memset(&info, 0, sizeof(info));
	info.vip_id = vip_id;
	info.flags =
	    (vip->hash_source_ip ? TG_VIP_F_HASH_SRC_IP : 0) | (vip->forward_l2 ? TG_VIP_F_L2 : 0);
	info.idle_timeout_s = vip->idle_timeout_s;
	if (!info.idle_timeout_s)
		info.idle_timeout_s =
		    vip->proto == IPPROTO_TCP ? TG_IDLE_TCP_DEFAULT_S : TG_IDLE_UDP_DEFAULT_S;

	bool moved = dp->vip_used[vip_id] && memcmp(&dp->vip_keys[vip_id], &key, sizeof(key));
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
	if (!dp->real_valid[real_id]) {
		rc = percpu_zero(dp, bpf_map__fd(dp->skel->maps.tg_real_stats), real_id,
				 sizeof(struct tg_counter));
		if (rc)
			return rc;
	}
	/* A cached next hop belongs to the old address. */
	rc = percpu_zero(dp, bpf_map__fd(dp->skel->maps.tg_nexthop), real_id,
			 sizeof(struct tg_nexthop));
	if (rc)
		return rc;
	if (bpf_map_update_elem(bpf_map__fd(dp->skel->maps.tg_reals), &real_id, &r, BPF_ANY))
		return -errno;
	dp->real_valid[real_id] = true;
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
	dp->real_valid[real_id] = false;
	return 0;
}

/* Fills a fresh ring map: key 0 = size, keys 1..size = the table. Batched
 * (one syscall per chunk); falls back to one update per slot when the kernel
 * refuses batches for this map. */
static int ring_fill(int fd, const uint32_t *table, uint32_t size)
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
	memcpy(vals + 1, table, (size_t)size * sizeof(*vals));

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
	rc = ring_fill(fd, table, size);
	if (!rc &&
	    bpf_map_update_elem(bpf_map__fd(dp->skel->maps.tg_maglev), &vip_id, &fd, BPF_ANY))
		rc = -errno;
	/* The outer map holds its own reference; the old ring is freed by the
	 * kernel once no program can still be reading it. */
	close(fd);
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

int tg_dp_vip_stats(tg_dp_t *dp, uint32_t vip_id, tg_dp_counter_t *out)
{
	if (vip_id >= TG_MAX_VIPS || !dp->vip_used[vip_id])
		return -ENOENT;
	return counter_read(dp, bpf_map__fd(dp->skel->maps.tg_vip_stats), vip_id, out);
}

int tg_dp_real_stats(tg_dp_t *dp, uint32_t real_id, tg_dp_counter_t *out)
{
	if (real_id >= TG_MAX_REALS)
		return -EINVAL;
	return counter_read(dp, bpf_map__fd(dp->skel->maps.tg_real_stats), real_id, out);
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

/*
 * plane_dp.c - tg_l4_dp_ops_t over tg_dp_t.
 */
#include "l4/plane_dp.h"
#include "core/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

static void to_sockaddr(const tg_l4_ip_t *ip, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ip->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		memcpy(&s4->sin_addr, &ip->addr.s6_addr[12], 4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		s6->sin6_addr = ip->addr;
	}
}

static int vip_set(void *ctx, uint32_t vip_id, const tg_l4_vip_cfg_t *v)
{
	tg_dp_vip_t dv;
	memset(&dv, 0, sizeof(dv));
	to_sockaddr(&v->ip, v->port, &dv.addr);
	dv.proto = (uint8_t)v->proto;
	dv.hash_source_ip = v->hash == TG_L4_HASH_SRC_IP;
	dv.forward_l2 = v->forwarding == TG_L4_FWD_L2;
	/* The datapath counts whole seconds; round up so a flow never expires
	 * earlier than configured. */
	dv.idle_timeout_s = (v->idle_timeout_ms + 999) / 1000;
	return tg_dp_vip_set(ctx, vip_id, &dv);
}

static int vip_del(void *ctx, uint32_t vip_id)
{
	return tg_dp_vip_del(ctx, vip_id);
}

static int real_set(void *ctx, uint32_t real_id, const tg_l4_ip_t *ip)
{
	struct sockaddr_storage ss;
	to_sockaddr(ip, 0, &ss);
	return tg_dp_real_set(ctx, real_id, (const struct sockaddr *)&ss);
}

static int real_invalidate(void *ctx, uint32_t real_id)
{
	return tg_dp_real_invalidate(ctx, real_id);
}

static int flows_purge(void *ctx, uint32_t vip_id, uint32_t real_id)
{
	return tg_dp_flows_purge(ctx, vip_id, real_id);
}

static int maglev_swap(void *ctx, uint32_t vip_id, const uint32_t *table, uint32_t size)
{
	return tg_dp_maglev_swap(ctx, vip_id, table, size);
}

static int vip_stats(void *ctx, uint32_t vip_id, tg_l4_counter_t *out)
{
	tg_dp_counter_t c;
	int rc = tg_dp_vip_stats(ctx, vip_id, &c);
	if (rc == 0) {
		out->packets = c.packets;
		out->bytes = c.bytes;
	}
	return rc;
}

static int real_stats(void *ctx, uint32_t real_id, tg_l4_counter_t *out)
{
	tg_dp_counter_t c;
	int rc = tg_dp_real_stats(ctx, real_id, &c);
	if (rc == 0) {
		out->packets = c.packets;
		out->bytes = c.bytes;
	}
	return rc;
}

static int pair_stats(void *ctx, uint32_t vip_id, uint32_t real_id, tg_l4_counter_t *out)
{
	tg_dp_counter_t c;
	int rc = tg_dp_pair_stats(ctx, vip_id, real_id, &c);
	if (rc == 0) {
		out->packets = c.packets;
		out->bytes = c.bytes;
	}
	return rc;
}

static int totals(void *ctx, tg_l4_dp_totals_t *out)
{
	uint64_t s[TG_STAT_MAX];
	int rc = tg_dp_stats_read(ctx, s);
	if (rc != 0)
		return rc;
	out->flow_hit = s[TG_STAT_FLOW_HIT];
	/* An expired entry or one whose real is gone is a lookup that found
	 * nothing usable: the flow is picked anew, like a miss. */
	out->flow_miss =
	    s[TG_STAT_FLOW_MISS] + s[TG_STAT_FLOW_EXPIRED] + s[TG_STAT_FLOW_REPICK_GONE];
	out->flow_expired = s[TG_STAT_FLOW_EXPIRED];
	out->flow_repick_gone = s[TG_STAT_FLOW_REPICK_GONE];
	out->flow_admitted = s[TG_STAT_FLOW_ADMIT];
	out->new_flow_guard = s[TG_STAT_FLOW_GUARD_SKIP];
	out->n_events = 0;
	for (unsigned int i = 0; i < TG_STAT_MAX && i < TG_ARRAY_SIZE(out->events); i++) {
		out->events[i].name = tg_dp_stat_name(i);
		out->events[i].value = s[i];
		out->n_events++;
	}
	return 0;
}

void tg_l4_plane_dp_ops(tg_dp_t *dp, tg_l4_dp_ops_t *ops)
{
	memset(ops, 0, sizeof(*ops));
	ops->vip_set = vip_set;
	ops->vip_del = vip_del;
	ops->real_set = real_set;
	ops->real_invalidate = real_invalidate;
	ops->maglev_swap = maglev_swap;
	ops->flows_purge = flows_purge;
	ops->vip_stats = vip_stats;
	ops->real_stats = real_stats;
	ops->pair_stats = pair_stats;
	ops->totals = totals;
	ops->ctx = dp;
}

void tg_l4_plane_dp_opts(const tg_l4_config_t *cfg, tg_dp_opts_t *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->ifname = cfg->interface;
	opts->xdp_mode = cfg->xdp_mode == TG_L4_XDP_GENERIC ? TG_DP_XDP_GENERIC : TG_DP_XDP_NATIVE;
	if (cfg->has_encap_src4)
		memcpy(opts->encap_src4, &cfg->encap_src4, 4);
	if (cfg->has_encap_src6)
		memcpy(opts->encap_src6, &cfg->encap_src6, 16);
	opts->new_flow_rate = (uint32_t)TG_MIN(cfg->max_new_flows_per_sec, UINT32_MAX);
}

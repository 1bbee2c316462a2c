// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * balancer.bpf.c - tidegate's L4 balancer datapath (XDP, skeleton tg_balancer).
 *
 * Per packet:
 *   parse   Ethernet (+ one 802.1Q/802.1ad tag), IPv4 (IHL checked, options
 *           skipped) or IPv6, then TCP/UDP ports, all through a bounds-checked
 *           cursor. Anything not addressed to a configured VIP:port:protocol
 *           is XDP_PASS, byte for byte untouched.
 *   pick    this CPU's flow cache, then the flow table (client address, port
 *           and VIP -> real); on a miss, an idle entry or an entry whose real
 *           is gone, the VIP's Maglev table (abi.h: flow tables, flow cache).
 *   send    IPIP / IP6IP6 encapsulation towards the real, or (l2 mode) a MAC
 *           rewrite; next hop and MACs from bpf_fib_lookup on the real's
 *           address; XDP_TX when the FIB says "out the way it came in"
 *           (balancer on a stick), XDP_REDIRECT otherwise.
 *
 * Verdicts for odd packets (also in the counters, see enum tg_stat):
 *   - truncated Ethernet/IP header, IPv4 IHL < 5 or beyond the packet, IP
 *     length beyond the frame: XDP_PASS (pass_malformed). We cannot know the
 *     packet was for a VIP; the kernel validates and drops it with its own
 *     counters (InHdrErrors, InTruncatedPkts).
 *   - IPv4 fragments (MF set or offset != 0): XDP_PASS (pass_fragment).
 *     Non-first fragments carry no ports, so they cannot be hashed like their
 *     first fragment; passing all of them keeps a datagram's pieces together.
 *   - IPv6 with an extension header before TCP/UDP (including the Fragment
 *     header): XDP_PASS (pass_ipv6_ext). Rare for VIP traffic; not parsed.
 *   - VIP traffic whose TCP/UDP header is cut short (ports readable, rest
 *     missing): XDP_DROP (drop_malformed_l4).
 *   - VIP with no Maglev table yet or whose slot names no valid real:
 *     XDP_DROP (drop_no_real).
 *
 * Known limits: a frame with a VLAN tag keeps its tag when encapsulated, so
 * the FIB must resolve the real on the tagged segment the program sees; an
 * encapsulated packet larger than the egress MTU is dropped (drop_frag_needed)
 * rather than answered with an ICMP error.
 */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "abi.h"

/* Compile-time features (STYLE.md rule 9); all on by default. */
#ifndef ENABLE_IPV6
#define ENABLE_IPV6 1 /* IPv6 VIPs and IP6IP6 */
#endif
#ifndef ENABLE_VLAN
#define ENABLE_VLAN 1 /* accept one 802.1Q / 802.1ad tag */
#endif
#ifndef ENABLE_ICMP_TOO_BIG
#define ENABLE_ICMP_TOO_BIG 1 /* steer PMTU errors about VIP flows to their real */
#endif

#define ETH_P_IP	  0x0800
#define ETH_P_IPV6	  0x86DD
#define ETH_P_8021Q	  0x8100
#define ETH_P_8021AD	  0x88A8
#define ETH_HLEN	  14
#define VLAN_HLEN	  4
#define AF_INET		  2
#define AF_INET6	  10
#define IP_MF		  0x2000
#define IP_DF		  0x4000
#define IP_OFFSET	  0x1FFF
#define IPPROTO_IPIP_	  4  /* IPv4-in-IPv4 */
#define IPPROTO_IPV6_	  41 /* IPv6-in-IPv6 */
#define IPPROTO_ICMPV6	  58
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED  4
#define ICMPV6_PKT_TOOBIG 2
#define NSEC_PER_SEC	  1000000000ull

char LICENSE[] SEC("license") = "Dual BSD/GPL"; /* bpf_fib_lookup is GPL-only */

/* ---- load-time knobs (set through the skeleton's rodata before load) ---- */

/* IPIP outer source /16 base, network order; low 16 bits come from the hash. */
const volatile __u32 cfg_encap_src4 = 0;
/* IP6IP6 outer source /96 base, network order; word 3 comes from the hash. */
const volatile __u32 cfg_encap_src6[4] = {0, 0, 0, 0};
/* Flow-table insertions allowed per second per CPU; 0 = unlimited. */
const volatile __u32 cfg_new_flow_rate = 0;
/* Nanoseconds per jiffy (1e9 / CONFIG_HZ), found by user space. Time is
 * bpf_jiffies64() x this: ~10 ns cheaper per packet than
 * bpf_ktime_get_coarse_ns() here, and jiffy resolution (1-10 ms) is plenty
 * for idle timeouts of seconds and one-second rate windows. */
const volatile __u32 cfg_ns_per_jiffy = 4000000;

/* ---- maps ---------------------------------------------------------------- */

/* Open-addressed VIP table (layout and probing rules in abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TG_VIP_SLOTS);
	__type(key, __u32);
	__type(value, struct tg_vip_slot);
} tg_vip_slots SEC(".maps");

/* vip id -> settings. Written by the control plane only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TG_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct tg_vip_info);
} tg_vip_info SEC(".maps");

/* Real id -> address and validity. ARRAY: ids are dense and owned by the
 * control plane; a lookup is a bounds check and an offset. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TG_MAX_REALS);
	__type(key, __u32);
	__type(value, struct tg_real);
} tg_reals SEC(".maps");

/* Template of a VIP's Maglev ring (layout in abi.h: [0] = size, [1..size]
 * = real ids). BPF_F_INNER_MAP lets each inner map have its own size. */
struct tg_ring {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP);
	__uint(max_entries, TG_RING_SIZE_DEFAULT + 1);
	__type(key, __u32);
	__type(value, __u32);
};

/* vip id -> that VIP's ring. User space swaps a whole table by replacing one
 * slot, so a packet sees the old ring or the new one, never a mix. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, TG_MAX_VIPS);
	__type(key, __u32);
	__array(values, struct tg_ring);
} tg_maglev SEC(".maps");

/*
 * Established flows: (client address, client port, VIP tag) -> real +
 * last-seen time; one map per family so each has a compact key (abi.h).
 *
 * LRU_HASH with BPF_F_NO_COMMON_LRU rather than LRU_PERCPU_HASH. Both keep
 * the LRU bookkeeping per CPU (no global LRU lock on insert), but:
 *  - LRU_PERCPU_HASH keeps one value per CPU under a key. A flow that shows
 *    up on a second CPU (veth NAPI runs on the *sending* CPU; RSS can move a
 *    flow after a queue/indirection change) finds an empty value there and is
 *    picked afresh; after a Maglev change in between, one TCP connection
 *    would be split over two reals.
 *  - LRU_HASH + NO_COMMON_LRU keeps a single value per key that every CPU
 *    sees, while each CPU evicts from its own LRU list (of
 *    max_entries / nr_cpus nodes). A flow seen on two CPUs stays on one
 *    real; the cost is a shared cache line for that rare flow's last_seen.
 * Each map's size is set by user space before load
 * (tg_dp_opts_t.flow_table_entries, per family).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, TG_FLOW_TABLE_DEFAULT);
	__type(key, struct tg_flow4_key);
	__type(value, struct tg_flow_val);
} tg_flows4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, TG_FLOW_TABLE_DEFAULT);
	__type(key, struct tg_flow6_key);
	__type(value, struct tg_flow_val);
} tg_flows6 SEC(".maps");

/* Per-CPU direct-mapped cache in front of the flow tables (abi.h): CPU c
 * owns entries c x TG_FLOW_CACHE_SLOTS onwards. max_entries is set by user
 * space before load (possible CPUs x TG_FLOW_CACHE_SLOTS). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TG_FLOW_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct tg_flow_cache);
} tg_flow_cache SEC(".maps");

/* Per-CPU cache of bpf_fib_lookup answers per real (see abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TG_MAX_REALS);
	__type(key, __u32);
	__type(value, struct tg_nexthop);
} tg_nexthop SEC(".maps");

/* New-flow rate guard state, one per CPU (no atomics needed). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tg_rate_state);
} tg_rate SEC(".maps");

/* Per-VIP packet/byte counters, indexed by vip id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TG_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct tg_counter);
} tg_vip_stats SEC(".maps");

/* Per-(VIP, real) packet/byte counters, indexed by pair slot (abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TG_MAX_PAIRS);
	__type(key, __u32);
	__type(value, struct tg_counter);
} tg_pair_stats SEC(".maps");

/* Event counters by enum tg_stat (verdict reasons, flow-table events). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TG_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tg_stats SEC(".maps");

/* ---- helpers ------------------------------------------------------------- */

/* Bounds-checked cursor over the packet: every header access goes through
 * cur_pull, which returns NULL instead of a pointer past data_end. */
struct cursor {
	void *pos; /* next unread byte */
	void *end; /* data_end */
};

static __always_inline void *cur_pull(struct cursor *c, __u32 len)
{
	void *p = c->pos;

	if (p + len > c->end)
		return NULL;
	c->pos = p + len;
	return p;
}

static __always_inline void stat_inc(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&tg_stats, &stat);

	if (v)
		*v += 1;
}

static __always_inline int verdict(int action, __u32 stat)
{
	stat_inc(stat);
	return action;
}

static __always_inline void counter_add(void *map, __u32 id, __u64 bytes)
{
	struct tg_counter *c = bpf_map_lookup_elem(map, &id);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

/* What the parser learnt about a packet headed for a VIP. */
struct pkt {
	struct tg_flow_key key; /* client->VIP 5-tuple (reversed for ICMP errors) */
	__u32 l2_len;		/* Ethernet header length: 14, or 18 with a tag */
	__u32 l3_len;		/* IP packet length from its header (outer for ICMP) */
	__u32 frame_len;	/* whole frame as received */
	__u64 now;		/* coarse time in ns (jiffies x cfg_ns_per_jiffy) */
	__u8 tos;		/* IPv4 TOS / IPv6 traffic class, copied outwards */
	__u8 lookup_only;	/* ICMP error: use the flow table, never insert */
	__u8 pad[2];		/* unused */
};

/* Where a packet goes: what the flow cache, flow table or Maglev said. */
struct route {
	__u32 real_id; /* the real */
	__u32 pair_id; /* counter slot of (VIP, real) */
	__u32 hash;    /* tg_flow_hash of the 5-tuple */
};

/* A real is usable when its slot is valid; ids beyond the map are not. */
static __always_inline struct tg_real *real_get(__u32 id)
{
	struct tg_real *r;

	if (id >= TG_MAX_REALS)
		return NULL;
	r = bpf_map_lookup_elem(&tg_reals, &id);
	if (!r || !(r->flags & TG_REAL_F_VALID))
		return NULL;
	return r;
}

/* Ring target (real id + pair slot, abi.h) from the VIP's Maglev ring, or
 * TG_REAL_NONE. */
static __always_inline __u32 maglev_pick(__u32 vip_id, __u32 hash)
{
	__u32 key = TG_RING_SIZE_KEY, *size, *id;
	void *ring = bpf_map_lookup_elem(&tg_maglev, &vip_id);

	if (!ring)
		return TG_REAL_NONE;
	size = bpf_map_lookup_elem(ring, &key);
	if (!size || *size == 0)
		return TG_REAL_NONE;
	key = 1 + tg_maglev_slot(hash, *size);
	id = bpf_map_lookup_elem(ring, &key);
	return id ? *id : TG_REAL_NONE;
}

/* True while this CPU may still insert new flows in the current second. */
static __always_inline bool guard_allows(__u64 now)
{
	__u32 zero = 0;
	struct tg_rate_state *r;

	if (cfg_new_flow_rate == 0)
		return true;
	r = bpf_map_lookup_elem(&tg_rate, &zero);
	if (!r)
		return true;
	if (now - r->window_start_ns >= NSEC_PER_SEC) {
		r->window_start_ns = now;
		r->inserted = 0;
	}
	if (r->inserted >= cfg_new_flow_rate)
		return false;
	r->inserted += 1;
	return true;
}

static __always_inline bool is_v6(const struct pkt *p)
{
	return ENABLE_IPV6 && p->key.family == TG_FAMILY_V6;
}

/* The flow-table entry of p's flow (abi.h: flow tables), or NULL. */
static __always_inline struct tg_flow_val *flow_lookup(const struct pkt *p, __u32 tag)
{
	if (is_v6(p)) {
		struct tg_flow6_key k6 = {.vip_tag = tag, .sport = p->key.sport};

		__builtin_memcpy(k6.src, p->key.src, 16);
		return bpf_map_lookup_elem(&tg_flows6, &k6);
	}
	struct tg_flow4_key k4 = {.src = p->key.src[0], .vip_tag = tag, .sport = p->key.sport};

	return bpf_map_lookup_elem(&tg_flows4, &k4);
}

/* Inserts p's flow entry; BPF_NOEXIST: another CPU that admitted the same
 * flow first keeps its entry. Returns 0 or the helper's error. */
static __always_inline long flow_insert(const struct pkt *p, __u32 tag, const struct tg_flow_val *v)
{
	if (is_v6(p)) {
		struct tg_flow6_key k6 = {.vip_tag = tag, .sport = p->key.sport};

		__builtin_memcpy(k6.src, p->key.src, 16);
		return bpf_map_update_elem(&tg_flows6, &k6, v, BPF_NOEXIST);
	}
	struct tg_flow4_key k4 = {.src = p->key.src[0], .vip_tag = tag, .sport = p->key.sport};

	return bpf_map_update_elem(&tg_flows4, &k4, v, BPF_NOEXIST);
}

/* This CPU's flow-cache slot for p's flow (abi.h: flow cache). */
static __always_inline struct tg_flow_cache *cache_slot(const struct pkt *p, __u32 tag)
{
	__u32 fold = p->key.src[0];
	__u32 slot;

	if (is_v6(p))
		fold ^= p->key.src[1] ^ p->key.src[2] ^ p->key.src[3];
	slot = tg_flow_cache_slot(fold, p->key.sport, tag) +
	       bpf_get_smp_processor_id() * TG_FLOW_CACHE_SLOTS;
	return bpf_map_lookup_elem(&tg_flow_cache, &slot);
}

/* True when the slot holds p's flow. Tags are unique per VIP and a VIP has
 * one family, so an IPv4 flow compares only src[0]. */
static __always_inline bool cache_match(const struct tg_flow_cache *c, const struct pkt *p,
					__u32 tag)
{
	if (c->vip_tag != tag || c->sport != p->key.sport || c->src[0] != p->key.src[0])
		return false;
	if (is_v6(p))
		return c->src[1] == p->key.src[1] && c->src[2] == p->key.src[2] &&
		       c->src[3] == p->key.src[3];
	return true;
}

static __always_inline void cache_fill(struct tg_flow_cache *c, const struct pkt *p, __u32 tag,
				       const struct route *rt, __u64 now, __u16 flags)
{
	if (!c)
		return;
	__builtin_memcpy(c->src, p->key.src, 16);
	c->vip_tag = tag;
	c->sport = p->key.sport;
	c->flags = flags;
	c->real_id = rt->real_id;
	c->pair_id = rt->pair_id;
	c->hash = rt->hash;
	c->synced_ns = now;
}

/* The second packet of a pending flow (abi.h: flow cache): enters the flow
 * in the flow table with the real its first packet went to, if the guard
 * allows. Refused, the flow stays pending (and is forwarded all the same);
 * its next packet asks the guard again. */
static __always_inline void admit(struct tg_flow_cache *c, const struct pkt *p, __u32 tag,
				  const struct route *rt, __u64 now)
{
	if (!guard_allows(now)) {
		stat_inc(TG_STAT_FLOW_GUARD_SKIP);
		c->synced_ns = now;
		return;
	}
	struct tg_flow_val nv = {
	    .real_id = rt->real_id, .hash = rt->hash, .last_seen_ns = now, .pair_id = rt->pair_id};

	c->flags = 0;
	if (flow_insert(p, tag, &nv) == 0) {
		stat_inc(TG_STAT_FLOW_ADMIT);
		c->synced_ns = now;
	} else {
		/* Admitted on another CPU first (or the insert failed): the
		 * next packet reads whatever the table holds. */
		c->synced_ns = 0;
	}
}

/*
 * Chooses the real for p's flow and keeps the flow table current.
 * Fast path: this CPU's flow cache holds the flow, synced with the flow
 * table less than TG_FLOW_SYNC_NS ago, and its real is valid; nothing is
 * written. Otherwise the flow table decides: a live entry whose real is
 * valid wins (that is how draining reals keep their flows) and gets its
 * last-seen time refreshed. An entry idle longer than the VIP's timeout
 * (+ TG_FLOW_SYNC_NS, abi.h) counts as a new flow; an entry whose real is
 * gone is re-picked. Both are rewritten in place (no new LRU node, so the
 * rate guard does not apply). With no entry, a pending slot of this flow
 * (its first packet, on this CPU, within the idle timeout) names the real
 * and the flow is admitted to the table (admit); otherwise it is a new
 * flow: Maglev picks and the slot is left pending, nothing inserted.
 * ICMP errors (lookup_only) read the table and pending slots, write nothing.
 * Returns the real or NULL (drop_no_real), and fills *rt.
 */
static __always_inline struct tg_real *pick_real(struct pkt *p, const struct tg_vip_info *vip,
						 struct route *rt)
{
	__u64 now = p->now;
	__u64 idle = (__u64)vip->idle_timeout_s * NSEC_PER_SEC + TG_FLOW_SYNC_NS;
	__u32 tag = vip->flow_tag;
	struct tg_flow_cache *c = cache_slot(p, tag);
	struct tg_flow_cache *pending = NULL;
	struct tg_flow_val *fv;
	struct tg_real *r;
	__u32 target;

	if (c && cache_match(c, p, tag)) {
		if (c->flags & TG_FLOW_CACHE_PENDING) {
			if (now - c->synced_ns <= idle)
				pending = c;
		} else if (!p->lookup_only && now - c->synced_ns < TG_FLOW_SYNC_NS) {
			r = real_get(c->real_id);
			if (r) {
				stat_inc(TG_STAT_FLOW_HIT);
				rt->real_id = c->real_id;
				rt->pair_id = c->pair_id;
				rt->hash = c->hash;
				return r;
			}
		}
	}

	fv = flow_lookup(p, tag);
	if (fv) {
		/* Signed: another CPU may have stored a slightly later time. */
		if ((__s64)(now - fv->last_seen_ns) <= (__s64)idle) {
			rt->real_id = fv->real_id;
			r = real_get(rt->real_id);
			if (r) {
				stat_inc(TG_STAT_FLOW_HIT);
				rt->pair_id = fv->pair_id;
				rt->hash = fv->hash;
				if (!p->lookup_only) {
					fv->last_seen_ns = now;
					cache_fill(c, p, tag, rt, now, 0);
				}
				return r;
			}
			stat_inc(TG_STAT_FLOW_REPICK_GONE);
		} else {
			stat_inc(TG_STAT_FLOW_EXPIRED);
		}
	} else if (pending) {
		rt->real_id = pending->real_id;
		r = real_get(rt->real_id);
		if (r) {
			stat_inc(TG_STAT_FLOW_HIT);
			rt->pair_id = pending->pair_id;
			rt->hash = pending->hash;
			if (!p->lookup_only)
				admit(pending, p, tag, rt, now);
			return r;
		}
		stat_inc(TG_STAT_FLOW_REPICK_GONE);
	} else {
		stat_inc(TG_STAT_FLOW_MISS);
	}

	rt->hash = tg_flow_hash(&p->key, vip->flags);
	target = maglev_pick(vip->vip_id, rt->hash);
	rt->real_id = tg_ring_real(target);
	rt->pair_id = tg_ring_pair(target);
	r = real_get(rt->real_id);
	if (!r || p->lookup_only)
		return r;
	if (fv) {
		fv->real_id = rt->real_id;
		fv->pair_id = rt->pair_id;
		fv->hash = rt->hash;
		fv->last_seen_ns = now;
		cache_fill(c, p, tag, rt, now, 0);
	} else {
		cache_fill(c, p, tag, rt, now, TG_FLOW_CACHE_PENDING);
	}
	return r;
}

/* RFC 1071 checksum of a 20-byte IPv4 header built on the stack. */
static __always_inline __u16 ip4_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Where the FIB (or the next-hop cache) sends a packet. */
struct hop {
	__u32 ifindex; /* egress interface */
	__u8 smac[6];  /* egress interface's MAC */
	__u8 dmac[6];  /* next hop's MAC */
};

/* Writes the next hop's MACs into the frame and sends it out its interface. */
static __always_inline int hop_send(struct xdp_md *ctx, const struct hop *hop)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return verdict(XDP_DROP, TG_STAT_DROP_ENCAP);
	__builtin_memcpy(eth->h_dest, hop->dmac, 6);
	__builtin_memcpy(eth->h_source, hop->smac, 6);
	if (hop->ifindex == ctx->ingress_ifindex)
		return verdict(XDP_TX, TG_STAT_FWD_TX);
	stat_inc(TG_STAT_FWD_REDIRECT);
	return bpf_redirect(hop->ifindex, 0);
}

/*
 * Next hop towards real_id for a packet of L3 length len, through the
 * per-CPU next-hop cache (tg_nexthop, abi.h); bpf_fib_lookup (src -> dst,
 * 4 or 16 address bytes by family) only when the cache has no fresh answer
 * for this length. Returns a BPF_FIB_LKUP_RET_* code; *hop is filled on
 * success.
 */
static __always_inline int nexthop(struct xdp_md *ctx, const struct pkt *p, __u32 real_id,
				   __u8 family, const void *src, const void *dst, __u32 len,
				   struct hop *hop)
{
	struct tg_nexthop *nh = bpf_map_lookup_elem(&tg_nexthop, &real_id);
	__u32 in_ifindex = ctx->ingress_ifindex;
	bool fresh;
	int rc;

	fresh = nh && nh->checked_ns && nh->in_ifindex == in_ifindex &&
		p->now - nh->checked_ns < TG_NEXTHOP_TTL_NS;
	if (fresh && len <= nh->ok_len) {
		hop->ifindex = nh->out_ifindex;
		__builtin_memcpy(hop->smac, nh->smac, 6);
		__builtin_memcpy(hop->dmac, nh->dmac, 6);
		return BPF_FIB_LKUP_RET_SUCCESS;
	}
	/* Only now: zeroing the 64-byte request is itself a cost on the hit path. */
	struct bpf_fib_lookup fib = {};

	fib.ifindex = in_ifindex;
	fib.tot_len = (__u16)len;
	if (family == TG_FAMILY_V4) {
		fib.family = AF_INET;
		__builtin_memcpy(&fib.ipv4_src, src, 4);
		__builtin_memcpy(&fib.ipv4_dst, dst, 4);
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, src, 16);
		__builtin_memcpy(fib.ipv6_dst, dst, 16);
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return rc;
	hop->ifindex = fib.ifindex;
	__builtin_memcpy(hop->smac, fib.smac, 6);
	__builtin_memcpy(hop->dmac, fib.dmac, 6);
	if (!nh)
		return rc;
	if (fresh && nh->out_ifindex == fib.ifindex) {
		/* Same route, longer packet: it passed the MTU check too. */
		if (len > nh->ok_len)
			nh->ok_len = (__u16)len;
	} else {
		nh->checked_ns = p->now;
		nh->in_ifindex = in_ifindex;
		nh->out_ifindex = fib.ifindex;
		nh->ok_len = (__u16)len;
	}
	__builtin_memcpy(nh->smac, fib.smac, 6);
	__builtin_memcpy(nh->dmac, fib.dmac, 6);
	return rc;
}

/*
 * FIB verdicts shared by both forwarding modes. Returns -1 when the lookup
 * succeeded (caller goes on), otherwise the XDP action to return.
 */
static __always_inline int fib_check(int rc)
{
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return -1;
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return verdict(XDP_DROP, TG_STAT_DROP_FRAG_NEEDED);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return verdict(XDP_PASS, TG_STAT_PASS_FIB_NO_NEIGH);
	/* bpf_fib_lookup refuses unless the ingress interface forwards
	 * (net.ipv4.conf.IF.forwarding / net.ipv6.conf.IF.forwarding = 1). */
	if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return verdict(XDP_PASS, TG_STAT_PASS_FIB_FWD_DISABLED);
	return verdict(XDP_PASS, TG_STAT_PASS_FIB_FAIL);
}

/* Moves the Ethernet header (and tag) from `gap` bytes in to the new front
 * after bpf_xdp_adjust_head(-gap). Checks that the frame holds the L2 header,
 * the gap (where the outer header goes) and `inner_min` bytes of the inner
 * header. Returns the new L3 start or NULL. */
static __always_inline void *l2_move(struct xdp_md *ctx, __u32 gap, __u32 l2_len, __u32 inner_min)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	if (l2_len == ETH_HLEN) {
		if (data + gap + ETH_HLEN + inner_min > end)
			return NULL;
		__builtin_memcpy(data, data + gap, ETH_HLEN);
		return data + ETH_HLEN;
	}
	if (data + gap + ETH_HLEN + VLAN_HLEN + inner_min > end)
		return NULL;
	__builtin_memcpy(data, data + gap, ETH_HLEN + VLAN_HLEN);
	return data + ETH_HLEN + VLAN_HLEN;
}

/* IPv4-in-IPv4 towards r. Outer: DF set (a tc decap on the real sees the
 * frame before reassembly, so outer fragments could not be decapsulated),
 * TTL 64, source from the /16 base + flow hash; the inner packet is untouched. */
static __always_inline int lb4_encap(struct xdp_md *ctx, struct pkt *p, const struct tg_real *r,
				     const struct route *rt)
{
	struct hop hop;
	struct iphdr h = {};
	struct iphdr *outer;
	int rc;

	h.version = 4;
	h.ihl = 5;
	h.tos = p->tos;
	h.tot_len = bpf_htons((__u16)(p->l3_len + sizeof(h)));
	h.frag_off = bpf_htons(IP_DF);
	h.ttl = TG_ENCAP_TTL;
	h.protocol = IPPROTO_IPIP_;
	h.saddr = tg_encap_src4(cfg_encap_src4, rt->hash);
	h.daddr = r->addr[0];
	h.check = ip4_csum(&h);

	rc = nexthop(ctx, p, rt->real_id, TG_FAMILY_V4, &h.saddr, &h.daddr, p->l3_len + sizeof(h),
		     &hop);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return fib_check(rc);

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(h)))
		return verdict(XDP_DROP, TG_STAT_DROP_ENCAP);
	outer = l2_move(ctx, sizeof(h), p->l2_len, sizeof(struct iphdr));
	if (!outer)
		return verdict(XDP_DROP, TG_STAT_DROP_ENCAP);
	__builtin_memcpy(outer, &h, sizeof(h));

	/* No neighbour yet: hand the encapsulated packet to the kernel, which
	 * forwards it to the real and resolves the neighbour on the way. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return fib_check(rc);
	return hop_send(ctx, &hop);
}

#if ENABLE_IPV6
/* IPv6-in-IPv6 towards r: hop limit 64, flow label from the flow hash (so
 * ECMP and the real's RSS spread flows), source from the /96 base + hash. */
static __always_inline int lb6_encap(struct xdp_md *ctx, struct pkt *p, const struct tg_real *r,
				     const struct route *rt)
{
	__u32 hash = rt->hash;
	struct hop hop;
	struct ipv6hdr h = {};
	struct ipv6hdr *outer;
	__u32 vtcfl;
	int rc;

	vtcfl = (6u << 28) | ((__u32)p->tos << 20) | (hash & 0xfffff);
	vtcfl = bpf_htonl(vtcfl);
	__builtin_memcpy(&h, &vtcfl, 4);
	h.payload_len = bpf_htons((__u16)p->l3_len);
	h.nexthdr = IPPROTO_IPV6_;
	h.hop_limit = TG_ENCAP_TTL;
	h.saddr.in6_u.u6_addr32[0] = cfg_encap_src6[0];
	h.saddr.in6_u.u6_addr32[1] = cfg_encap_src6[1];
	h.saddr.in6_u.u6_addr32[2] = cfg_encap_src6[2];
	h.saddr.in6_u.u6_addr32[3] = tg_encap_src6_low(hash);
	__builtin_memcpy(&h.daddr, r->addr, 16);

	rc = nexthop(ctx, p, rt->real_id, TG_FAMILY_V6, &h.saddr, &h.daddr, p->l3_len + sizeof(h),
		     &hop);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return fib_check(rc);

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(h)))
		return verdict(XDP_DROP, TG_STAT_DROP_ENCAP);
	outer = l2_move(ctx, sizeof(h), p->l2_len, sizeof(struct ipv6hdr));
	if (!outer)
		return verdict(XDP_DROP, TG_STAT_DROP_ENCAP);
	__builtin_memcpy(outer, &h, sizeof(h));

	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return fib_check(rc);
	return hop_send(ctx, &hop);
}
#endif

/* l2 (direct routing) mode: the IP packet is untouched; only the Ethernet
 * addresses change, to the real's MAC (destination) and the egress
 * interface's own (source, so switches do not learn the router's MAC here).
 * With no neighbour entry the frame is passed unmodified: it is addressed to
 * the VIP, so the kernel cannot resolve the real from it; the control
 * plane's health checks to the real create that entry. */
static __always_inline int lb_l2(struct xdp_md *ctx, struct pkt *p, const struct tg_real *r,
				 __u32 real_id)
{
	struct hop hop;
	int rc;

	rc = nexthop(ctx, p, real_id, p->key.family, p->key.src, r->addr, p->l3_len, &hop);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_check(rc);
	return hop_send(ctx, &hop);
}

/* Common tail once the VIP is known: pick the real, count, forward. */
static __always_inline int lb_forward(struct xdp_md *ctx, struct pkt *p,
				      const struct tg_vip_info *vip)
{
	struct route rt;
	struct tg_real *r;

	p->now = bpf_jiffies64() * cfg_ns_per_jiffy;
	r = pick_real(p, vip, &rt);

	if (!r)
		return verdict(XDP_DROP, TG_STAT_DROP_NO_REAL);
	if (r->family != p->key.family)
		return verdict(XDP_DROP, TG_STAT_DROP_FAMILY);
	counter_add(&tg_vip_stats, vip->vip_id, p->frame_len);
	counter_add(&tg_pair_stats, rt.pair_id, p->frame_len);
	if (vip->flags & TG_VIP_F_L2)
		return lb_l2(ctx, p, r, rt.real_id);
#if ENABLE_IPV6
	if (p->key.family == TG_FAMILY_V6)
		return lb6_encap(ctx, p, r, &rt);
#endif
	return lb4_encap(ctx, p, r, &rt);
}

/* Ports of a TCP/UDP header: the first four bytes of both. */
struct ports {
	__be16 src; /* source port */
	__be16 dst; /* destination port */
};

static __always_inline bool vip_key_eq(const struct tg_vip_key *a, const struct tg_vip_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

/* The VIP for p's destination:port:protocol, or NULL (see abi.h for the
 * probing rules the user-space writer follows). */
static __always_inline struct tg_vip_info *vip_find(const struct pkt *p)
{
	struct tg_vip_key vk = {};
	__u32 h;

	__builtin_memcpy(vk.addr, p->key.dst, 16);
	vk.port = p->key.dport;
	vk.proto = p->key.proto;
	vk.family = p->key.family;
	h = tg_vip_slot_hash(&vk);
#pragma unroll
	for (__u32 i = 0; i < TG_VIP_PROBES; i++) {
		__u32 idx = (h + i) & (TG_VIP_SLOTS - 1);
		struct tg_vip_slot *s = bpf_map_lookup_elem(&tg_vip_slots, &idx);

		if (!s || s->state == TG_VIP_SLOT_EMPTY)
			return NULL;
		if (s->state == TG_VIP_SLOT_USED && vip_key_eq(&s->key, &vk))
			return bpf_map_lookup_elem(&tg_vip_info, &s->vip_id);
	}
	return NULL;
}

/* Reads the ports at the cursor and finds the VIP. The whole L4 header
 * (TCP 20 bytes, UDP 8) must be present for VIP traffic to be forwarded. */
static __always_inline int lb_l4(struct xdp_md *ctx, struct cursor *c, struct pkt *p)
{
	struct ports *pt = c->pos;
	struct tg_vip_info *vip;
	__u32 l4_min = p->key.proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr);

	if ((void *)(pt + 1) > c->end)
		return verdict(XDP_PASS, TG_STAT_PASS_MALFORMED);
	p->key.sport = pt->src;
	p->key.dport = pt->dst;
	vip = vip_find(p);
	if (!vip)
		return verdict(XDP_PASS, TG_STAT_PASS_NOT_VIP);
	if (!cur_pull(c, l4_min))
		return verdict(XDP_DROP, TG_STAT_DROP_MALFORMED_L4);
	return lb_forward(ctx, p, vip);
}

#if ENABLE_ICMP_TOO_BIG
/*
 * ICMP "fragmentation needed" about a VIP flow. The quoted packet is the
 * real's reply VIP->client (direct server return), so reversing it gives the
 * client->VIP flow; the error goes to the real that flow uses, wrapped like
 * the flow, so the real's TCP lowers its MSS for the right connection.
 */
static __always_inline int lb4_icmp(struct xdp_md *ctx, struct cursor *c, struct pkt *p,
				    __be32 outer_dst)
{
	struct icmphdr *ic = cur_pull(c, sizeof(*ic));
	struct tg_vip_info *vip;
	struct iphdr *in;
	struct ports *pt;
	__u32 hlen;

	if (!ic || ic->type != ICMP_DEST_UNREACH || ic->code != ICMP_FRAG_NEEDED)
		return verdict(XDP_PASS, TG_STAT_PASS_ICMP);
	in = cur_pull(c, sizeof(*in));
	if (!in || in->version != 4 || in->ihl < 5 || in->saddr != outer_dst ||
	    (in->frag_off & bpf_htons(IP_OFFSET)) ||
	    (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP))
		return verdict(XDP_PASS, TG_STAT_PASS_ICMP);
	hlen = (__u32)in->ihl * 4;
	if (hlen > sizeof(*in) && !cur_pull(c, hlen - sizeof(*in)))
		return verdict(XDP_PASS, TG_STAT_PASS_ICMP);
	pt = cur_pull(c, sizeof(*pt));
	if (!pt)
		return verdict(XDP_PASS, TG_STAT_PASS_ICMP);
	p->key.src[0] = in->daddr;
	p->key.dst[0] = in->saddr;
	p->key.sport = pt->dst;
	p->key.dport = pt->src;
	p->key.proto = in->protocol;
	p->lookup_only = 1;
	vip = vip_find(p);
	if (!vip)
		return verdict(XDP_PASS, TG_STAT_PASS_ICMP);
	stat_inc(TG_STAT_ICMP_TOO_BIG);
	return lb_forward(ctx, p, vip);
}
#endif

static __always_inline int lb4(struct xdp_md *ctx, struct cursor *c, struct pkt *p)
{
	struct iphdr *ip = cur_pull(c, sizeof(*ip));
	__u32 hlen;

	if (!ip || ip->version != 4 || ip->ihl < 5)
		return verdict(XDP_PASS, TG_STAT_PASS_MALFORMED);
	hlen = (__u32)ip->ihl * 4;
	if (hlen > sizeof(*ip) && !cur_pull(c, hlen - sizeof(*ip)))
		return verdict(XDP_PASS, TG_STAT_PASS_MALFORMED);
	p->l3_len = bpf_ntohs(ip->tot_len);
	if (p->l3_len < hlen || p->l3_len > p->frame_len - p->l2_len)
		return verdict(XDP_PASS, TG_STAT_PASS_MALFORMED);
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return verdict(XDP_PASS, TG_STAT_PASS_FRAGMENT);
	p->tos = ip->tos;
	p->key.family = TG_FAMILY_V4;
	p->key.src[0] = ip->saddr;
	p->key.dst[0] = ip->daddr;
	p->key.proto = ip->protocol;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)
		return lb_l4(ctx, c, p);
#if ENABLE_ICMP_TOO_BIG
	if (ip->protocol == IPPROTO_ICMP)
		return lb4_icmp(ctx, c, p, ip->daddr);
#endif
	return verdict(XDP_PASS, TG_STAT_PASS_NOT_VIP);
}

#if ENABLE_IPV6
/* IPv6 next-header values that are extension headers (RFC 8200 4, 7045). */
static __always_inline bool ip6_is_ext(__u8 nh)
{
	return nh == 0 || nh == 43 || nh == 44 || nh == 50 || nh == 51 || nh == 60 || nh == 135 ||
	       nh == 139 || nh == 140;
}

#if ENABLE_ICMP_TOO_BIG
/* ICMPv6 "packet too big" about a VIP flow; see lb4_icmp. */
static __always_inline int lb6_icmp(struct xdp_md *ctx, struct cursor *c, struct pkt *p,
				    const struct in6_addr *outer_dst)
{
	struct icmp6hdr *ic = cur_pull(c, sizeof(*ic));
	struct tg_vip_info *vip;
	struct ipv6hdr *in;
	struct ports *pt;

	if (!ic || ic->icmp6_type != ICMPV6_PKT_TOOBIG)
		return verdict(XDP_PASS, TG_STAT_PASS_ICMP);
	in = cur_pull(c, sizeof(*in));
	if (!in || in->version != 6 || (in->nexthdr != IPPROTO_TCP && in->nexthdr != IPPROTO_UDP))
		return verdict(XDP_PASS, TG_STAT_PASS_ICMP);
	if (in->saddr.in6_u.u6_addr32[0] != outer_dst->in6_u.u6_addr32[0] ||
	    in->saddr.in6_u.u6_addr32[1] != outer_dst->in6_u.u6_addr32[1] ||
	    in->saddr.in6_u.u6_addr32[2] != outer_dst->in6_u.u6_addr32[2] ||
	    in->saddr.in6_u.u6_addr32[3] != outer_dst->in6_u.u6_addr32[3])
		return verdict(XDP_PASS, TG_STAT_PASS_ICMP);
	pt = cur_pull(c, sizeof(*pt));
	if (!pt)
		return verdict(XDP_PASS, TG_STAT_PASS_ICMP);
	__builtin_memcpy(p->key.src, &in->daddr, 16);
	__builtin_memcpy(p->key.dst, &in->saddr, 16);
	p->key.sport = pt->dst;
	p->key.dport = pt->src;
	p->key.proto = in->nexthdr;
	p->lookup_only = 1;
	vip = vip_find(p);
	if (!vip)
		return verdict(XDP_PASS, TG_STAT_PASS_ICMP);
	stat_inc(TG_STAT_ICMP_TOO_BIG);
	return lb_forward(ctx, p, vip);
}
#endif

static __always_inline int lb6(struct xdp_md *ctx, struct cursor *c, struct pkt *p)
{
	struct ipv6hdr *ip6 = cur_pull(c, sizeof(*ip6));
	__u32 vtc;

	if (!ip6 || ip6->version != 6)
		return verdict(XDP_PASS, TG_STAT_PASS_MALFORMED);
	p->l3_len = (__u32)bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
	if (p->l3_len > p->frame_len - p->l2_len)
		return verdict(XDP_PASS, TG_STAT_PASS_MALFORMED);
	__builtin_memcpy(&vtc, ip6, 4);
	p->tos = (__u8)(bpf_ntohl(vtc) >> 20);
	p->key.family = TG_FAMILY_V6;
	__builtin_memcpy(p->key.src, &ip6->saddr, 16);
	__builtin_memcpy(p->key.dst, &ip6->daddr, 16);
	p->key.proto = ip6->nexthdr;
	if (ip6->nexthdr == IPPROTO_TCP || ip6->nexthdr == IPPROTO_UDP)
		return lb_l4(ctx, c, p);
#if ENABLE_ICMP_TOO_BIG
	if (ip6->nexthdr == IPPROTO_ICMPV6)
		return lb6_icmp(ctx, c, p, &ip6->daddr);
#endif
	if (ip6_is_ext(ip6->nexthdr))
		return verdict(XDP_PASS, TG_STAT_PASS_IPV6_EXT);
	return verdict(XDP_PASS, TG_STAT_PASS_NOT_VIP);
}
#endif

SEC("xdp")
int balancer_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct cursor c = {.pos = data, .end = end};
	struct pkt p = {};
	struct ethhdr *eth = cur_pull(&c, sizeof(*eth));
	__be16 proto;

	if (!eth)
		return verdict(XDP_PASS, TG_STAT_PASS_MALFORMED);
	p.frame_len = end - data;
	p.l2_len = ETH_HLEN;
	proto = eth->h_proto;
#if ENABLE_VLAN
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		/* struct vlan_hdr: TCI, then the encapsulated ethertype. */
		__be16 *vh = cur_pull(&c, VLAN_HLEN);

		if (!vh)
			return verdict(XDP_PASS, TG_STAT_PASS_MALFORMED);
		proto = vh[1];
		p.l2_len = ETH_HLEN + VLAN_HLEN;
	}
#endif
	if (proto == bpf_htons(ETH_P_IP))
		return lb4(ctx, &c, &p);
#if ENABLE_IPV6
	if (proto == bpf_htons(ETH_P_IPV6))
		return lb6(ctx, &c, &p);
#endif
	return verdict(XDP_PASS, TG_STAT_PASS_NOT_IP);
}

/*
 * abi.h - the only header shared by the BPF programs (bpf/balancer.bpf.c,
 * bpf/decap.bpf.c) and user space (src/l4/datapath.c, src/cmd/decap.c, tests).
 *
 * Everything here crosses the kernel/user boundary, so: fixed-width types,
 * explicit padding, a _Static_assert on every struct size, and addresses and
 * ports in network byte order exactly as they appear in packets.
 *
 * Address convention: an address is always `__u32 addr[4]` holding the 16
 * bytes of an IPv6 address, or an IPv4 address in addr[0] with addr[1..3] zero.
 * A `family` byte (TG_FAMILY_V4 / TG_FAMILY_V6) says which.
 *
 * Limits (the maps are sized from them; the control plane validates against
 * them before calling the datapath):
 *   TG_MAX_VIPS       VIP:port:protocol entries, and the range of vip ids
 *   TG_MAX_REALS      distinct reals (addresses) across all VIPs, range of real ids
 *   TG_MAX_PAIRS      (VIP, real) counter slots, allocated by src/l4/datapath.c
 *   TG_RING_SIZE_MAX  largest Maglev table per VIP
 *   TG_DECAP_MAX_VIPS VIP addresses one `tidegate decap` accepts
 *
 * Load-time knobs are `const volatile` rodata in balancer.bpf.c, set by
 * tg_dp_open before load: cfg_encap_src4 (IPIP outer source /16 base),
 * cfg_encap_src6[4] (IP6IP6 outer source /96 base), cfg_new_flow_rate
 * (flow-table insertions per second per CPU, 0 = unlimited), cfg_ns_per_jiffy
 * (1e9 / kernel HZ: the datapath clock is jiffies in ns units). Compile-time
 * features: ENABLE_IPV6, ENABLE_VLAN, ENABLE_ICMP_TOO_BIG (all default 1).
 */
#ifndef TG_BPF_ABI_H
#define TG_BPF_ABI_H

#ifdef __bpf__
/* BPF side: vmlinux.h (included first by each .bpf.c) provides __u8..__u64. */
#define TG_ABI_INLINE static __always_inline
#else
#include <linux/types.h>
#define TG_ABI_INLINE static inline __attribute__((always_inline))
#endif

/* ---- limits ------------------------------------------------------------- */

#define TG_MAX_VIPS	      512u     /* vip ids are 0 .. TG_MAX_VIPS-1 */
#define TG_MAX_REALS	      4096u    /* real ids are 0 .. TG_MAX_REALS-1 */
#define TG_MAX_PAIRS	      65536u   /* (VIP, real) counter slots, see tg_pair_stats */
#define TG_RING_SIZE_DEFAULT  65537u   /* Maglev table size when config says none */
#define TG_RING_SIZE_MAX      4194301u /* same bound as src/l4/maglev.h */
#define TG_FLOW_TABLE_DEFAULT 262144u  /* flow entries, split across CPUs */
#define TG_DECAP_MAX_VIPS     256u     /* VIP addresses on one real */
#define TG_IDLE_TCP_DEFAULT_S 350u     /* AWS NLB TCP idle timeout */
#define TG_IDLE_UDP_DEFAULT_S 120u     /* AWS NLB UDP idle timeout */
#define TG_ENCAP_TTL	      64u      /* outer IPv4 TTL / IPv6 hop limit */

/* A Maglev table entry naming no real (same value as TG_MAGLEV_NONE in
 * src/l4/maglev.h). Any id >= TG_MAX_REALS is treated the same way. */
#define TG_REAL_NONE 0xffffffffu

#define TG_FAMILY_V4 4 /* tg_*.family: IPv4, address in addr[0] */
#define TG_FAMILY_V6 6 /* tg_*.family: IPv6, all of addr[0..3] */

/* ---- VIPs (tg_vip_slots: ARRAY, open addressing; tg_vip_info: ARRAY) ---- */

/*
 * VIP lookup is the first thing every packet does, and a BPF HASH lookup
 * with a 20-byte key measured ~27 ns here (jhash + byte-wise memcmp), a
 * quarter of the whole fast path. So VIPs live in an open-addressed table
 * held in an ARRAY map, whose lookups the verifier inlines:
 *   slot = (tg_vip_slot_hash(key) + i) & (TG_VIP_SLOTS - 1), i < TG_VIP_PROBES
 * The probe stops at the first EMPTY slot (miss) or at a USED slot with an
 * equal key (hit); TOMBSTONE slots (deleted VIPs) are skipped. User space
 * places a VIP in the first non-USED slot of its sequence and refuses
 * (-ENOSPC) when all TG_VIP_PROBES are taken; with TG_VIP_SLOTS = 4 x
 * TG_MAX_VIPS that does not happen in practice. A slot names a vip id;
 * settings are in tg_vip_info[vip id], written before the slot appears.
 */
#define TG_VIP_SLOTS  2048u /* power of two, 4 x TG_MAX_VIPS */
#define TG_VIP_PROBES 8u    /* longest probe sequence */

/* What identifies a VIP: destination address, port and L4 protocol. */
struct tg_vip_key {
	__u32 addr[4]; /* VIP address, network byte order (v4 in addr[0]) */
	__u16 port;    /* destination port, network byte order */
	__u8 proto;    /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 family;   /* TG_FAMILY_V4 or TG_FAMILY_V6 */
};
_Static_assert(sizeof(struct tg_vip_key) == 20, "tg_vip_key layout");

/* tg_vip_slot.state */
#define TG_VIP_SLOT_EMPTY     0u /* never used: ends a probe sequence */
#define TG_VIP_SLOT_USED      1u /* holds a VIP */
#define TG_VIP_SLOT_TOMBSTONE 2u /* held a deleted VIP: probing goes on */

/* One entry of the open-addressed VIP table. */
struct tg_vip_slot {
	struct tg_vip_key key; /* the VIP (valid when state == USED) */
	__u32 vip_id;	       /* index into tg_vip_info, tg_maglev, tg_vip_stats */
	__u32 state;	       /* TG_VIP_SLOT_* */
	__u32 pad;	       /* explicit padding, zero */
};
_Static_assert(sizeof(struct tg_vip_slot) == 32, "tg_vip_slot layout");

/* tg_vip_info.flags */
#define TG_VIP_F_HASH_SRC_IP (1u << 0) /* Maglev hash over the source address only */
#define TG_VIP_F_L2	     (1u << 1) /* forward by MAC rewrite instead of IPIP */

/* Per-VIP settings the datapath reads on every packet for that VIP. */
struct tg_vip_info {
	__u32 vip_id;	      /* own id, slot in tg_maglev and tg_vip_stats (< TG_MAX_VIPS) */
	__u32 flags;	      /* TG_VIP_F_* */
	__u32 idle_timeout_s; /* flow entry older than this is a new flow (> 0) */
	__u32 flow_tag;	      /* stands for the VIP in flow keys (see tg_flow4_key); never 0 */
};
_Static_assert(sizeof(struct tg_vip_info) == 16, "tg_vip_info layout");

/* ---- reals (tg_reals: ARRAY real id -> tg_real) --------------------------- */

/* tg_real.flags */
#define TG_REAL_F_VALID (1u << 0) /* cleared when the control plane removes the real ("gone") */

/* Where a real id sends packets. A slot without TG_REAL_F_VALID never receives
 * a packet: a flow entry pointing at it is re-picked through Maglev. */
struct tg_real {
	__u32 addr[4]; /* real address, network byte order (v4 in addr[0]) */
	__u8 family;   /* TG_FAMILY_V4 or TG_FAMILY_V6; must match the VIP's */
	__u8 flags;    /* TG_REAL_F_* */
	__u8 pad[2];   /* explicit padding, zero */
};
_Static_assert(sizeof(struct tg_real) == 20, "tg_real layout");

/* ---- Maglev rings (tg_maglev: ARRAY_OF_MAPS vip id -> inner ARRAY) ------ */

/*
 * Inner map layout, so that a table and its size change in one atomic outer
 * slot replacement (a size kept elsewhere could disagree with the table for a
 * moment and index past its end):
 *   key 0            the ring size M (prime)
 *   key 1 .. M       target of Maglev slot 0 .. M-1: real id in the low 16
 *                    bits, (VIP, real) counter slot (tg_pair_stats) in the
 *                    high 16 (TG_REAL_NONE for none: its real part is 0xffff)
 * The inner map therefore has M + 1 entries; BPF_F_INNER_MAP lets every VIP's
 * inner map have its own size. User space (tg_dp_maglev_swap) is given plain
 * real ids and adds the pair slots.
 */
#define TG_RING_SIZE_KEY 0u

TG_ABI_INLINE __u32 tg_ring_target(__u32 real_id, __u32 pair_id)
{
	return (pair_id << 16) | (real_id & 0xffffu);
}
TG_ABI_INLINE __u32 tg_ring_real(__u32 target)
{
	return target & 0xffffu; /* >= TG_MAX_REALS: no real */
}
TG_ABI_INLINE __u32 tg_ring_pair(__u32 target)
{
	return target >> 16;
}
_Static_assert(TG_MAX_REALS <= 0xffffu && TG_MAX_PAIRS <= 0x10000u, "ring target packing");

/* ---- flow tables (tg_flows4 / tg_flows6: LRU_HASH) ------------------------ */

/*
 * The flow-table lookup was the largest single cost of the fast path (a
 * kernel hash lookup here costs ~35 ns with the 40-byte 5-tuple key: jhash
 * plus memcmp over every byte). So each family has its own map with a
 * compact key, and the VIP's destination address, port and protocol are
 * replaced by the VIP's flow tag: a 32-bit number user space assigns afresh
 * (never 0, not handed out again before 2^32 more VIP changes) whenever a
 * vip id gets a new address:port:protocol. A tag names exactly one VIP, so
 * (client address, client port, tag) names exactly one flow; entries of a
 * deleted or moved VIP can never match again and age out of the LRU. So a
 * VIP deleted and set again starts with no established flows: each is
 * re-picked through Maglev (the same real unless the table changed).
 */
struct tg_flow4_key {
	__u32 src;     /* client address, network byte order */
	__u32 vip_tag; /* tg_vip_info.flow_tag of the VIP */
	__u16 sport;   /* client port, network byte order */
	__u16 pad;     /* explicit padding, zero (part of the key) */
};
_Static_assert(sizeof(struct tg_flow4_key) == 12, "tg_flow4_key layout");

struct tg_flow6_key {
	__u32 src[4];  /* client address, network byte order */
	__u32 vip_tag; /* tg_vip_info.flow_tag of the VIP */
	__u16 sport;   /* client port, network byte order */
	__u16 pad;     /* explicit padding, zero (part of the key) */
};
_Static_assert(sizeof(struct tg_flow6_key) == 24, "tg_flow6_key layout");

/* The client->VIP 5-tuple: the input of tg_flow_hash (the Maglev pick must
 * agree across balancer nodes, so it hashes addresses, never tags), and how
 * user space names a flow (tg_dp_flow_get). */
struct tg_flow_key {
	__u32 src[4]; /* client address, network byte order (v4 in src[0]) */
	__u32 dst[4]; /* VIP address, network byte order (v4 in dst[0]) */
	__u16 sport;  /* client port, network byte order */
	__u16 dport;  /* VIP port, network byte order */
	__u8 proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;  /* TG_FAMILY_V4 or TG_FAMILY_V6 */
	__u8 pad[2];  /* explicit padding, zero */
};
_Static_assert(sizeof(struct tg_flow_key) == 40, "tg_flow_key layout");

/*
 * last_seen_ns is not written on every packet: packets reach the flow table
 * at most once per TG_FLOW_SYNC_NS per flow and CPU (see tg_flow_cache), so
 * it lags the flow's latest packet by up to that much. To never expire a
 * flow earlier than configured, an entry counts as idle only when
 * now - last_seen_ns > idle timeout + TG_FLOW_SYNC_NS: a flow expires
 * between its idle timeout and idle timeout + 0.25 s after its last packet.
 */
#define TG_FLOW_SYNC_NS 250000000ull /* 0.25 s */

/* Where an established flow goes, and when it was last seen. */
struct tg_flow_val {
	__u32 real_id;	    /* real chosen when the flow started */
	__u32 hash;	    /* tg_flow_hash of the 5-tuple, kept so a hit needs no rehash */
	__u64 last_seen_ns; /* datapath clock: jiffies x ns-per-jiffy (see cfg_ns_per_jiffy) */
	__u32 pair_id;	    /* counter slot of (VIP, real) in tg_pair_stats */
	__u32 pad;	    /* explicit padding, zero */
};
_Static_assert(sizeof(struct tg_flow_val) == 24, "tg_flow_val layout");

/* ---- per-CPU flow cache (tg_flow_cache: PERCPU_ARRAY) ---------------------- */

/*
 * Even a compact-key hash lookup costs more than the rest of the fast path.
 * Each CPU therefore keeps a direct-mapped cache of the flows it forwarded:
 * its own TG_FLOW_CACHE_SLOTS consecutive entries of one ARRAY map (index
 * cpu x TG_FLOW_CACHE_SLOTS + slot), one 64-byte line each, at
 * slot = tg_flow_cache_slot(client address, client port, VIP tag). An ARRAY
 * rather than a PERCPU_ARRAY: both lookups are inlined and lock-free, but
 * a PERCPU_ARRAY keeps a pointer per entry and allocates each entry apart,
 * so a random slot cost two cold cache lines (the pointer, then the entry,
 * which at 48 bytes often spanned two lines); here it costs one, which is
 * most of a new flow's first packet (bench/bpf/run). A packet
 * whose slot holds its flow, synced with the flow table less than
 * TG_FLOW_SYNC_NS ago, and whose real is still valid, is forwarded from the
 * cache alone. Anything else (empty or other flow in the slot, sync older
 * than that, real gone) goes through the flow table, which stays the one
 * truth every CPU shares: it refreshes last_seen_ns and its LRU position,
 * applies the idle timeout, re-picks gone reals, and the slot is rewritten
 * from it. Colliding flows only cost the flow-table lookup they would have
 * cost anyway. User space never reads the cache; it clears a flow's slot
 * on every CPU when it rewrites that flow's entry (tg_dp_flow_set).
 *
 * The cache is also where a flow waits for its second packet before it is
 * admitted to the flow table (TG_FLOW_CACHE_PENDING). A flow-table insert
 * is the dearest step of the datapath (the LRU list rotation and eviction
 * touch several cold nodes: ~0.5-0.9 us, bench/bpf/run), and flows of one
 * packet (a spoofed SYN flood, one-shot UDP queries) would pay it only to
 * evict established flows. So a flow's first packet is forwarded by its
 * Maglev pick and leaves a pending slot; its next packet on the same CPU,
 * within the VIP's idle timeout, inserts the entry with the real the slot
 * names (never a fresh pick, so a table swap between the two packets does
 * not move it), and the new-flow guard counts that insert. A flow whose
 * pending slot is lost before its second packet (taken by a colliding flow,
 * or the packet arrives on another CPU) is picked again through Maglev: the
 * same real unless the VIP's table changed in between.
 */
#define TG_FLOW_CACHE_SLOTS 16384u /* per CPU, power of two: 1 MiB per CPU */

struct tg_flow_cache {
	__u32 src[4];	 /* client address (v4 in src[0]; v6 entries compare all four) */
	__u32 vip_tag;	 /* VIP flow tag; 0 = empty slot (tags are never 0) */
	__u16 sport;	 /* client port, network byte order */
	__u16 flags;	 /* TG_FLOW_CACHE_PENDING, or 0 */
	__u32 real_id;	 /* the flow's real, as in its flow-table entry */
	__u32 pair_id;	 /* counter slot of (VIP, real) */
	__u32 hash;	 /* tg_flow_hash of the 5-tuple */
	__u32 pad2;	 /* explicit padding, zero */
	__u64 synced_ns; /* when the flow table last confirmed this entry */
	__u64 pad3[2];	 /* to one whole cache line per slot */
};
_Static_assert(sizeof(struct tg_flow_cache) == 64, "tg_flow_cache layout");

/* The flow has had one packet and no flow-table entry yet; synced_ns is the
 * time of that packet. */
#define TG_FLOW_CACHE_PENDING 1u

/* ---- new-flow rate guard (tg_rate: PERCPU_ARRAY, 1 entry) --------------- */

/* One CPU's count of flow-table insertions in the current one-second window. */
struct tg_rate_state {
	__u64 window_start_ns; /* start of the current window (datapath clock, ns) */
	__u64 inserted;	       /* new flows inserted since window_start_ns */
};
_Static_assert(sizeof(struct tg_rate_state) == 16, "tg_rate_state layout");

/* ---- next-hop cache (tg_nexthop: PERCPU_ARRAY real id -> tg_nexthop) ----- */

/*
 * bpf_fib_lookup costs about as much as the rest of the fast path together
 * (~110 ns of ~250 ns measured here), and its answer depends only on the
 * real and the ingress interface. So each CPU keeps the last successful
 * answer per real for TG_NEXTHOP_TTL_NS: neighbour or route changes are
 * seen within that time. The MTU check is per packet size: a packet longer
 * than any this entry has already passed (ok_len) triggers a real lookup.
 * Failures are never cached. User space clears a real's entries when the
 * real's address changes; it never reads them otherwise.
 */
#define TG_NEXTHOP_TTL_NS 1000000000ull /* 1 s */

struct tg_nexthop {
	__u64 checked_ns;  /* when bpf_fib_lookup last answered (datapath clock; 0 = empty) */
	__u32 in_ifindex;  /* ingress interface the answer is for */
	__u32 out_ifindex; /* egress interface (== in_ifindex: XDP_TX) */
	__u8 smac[6];	   /* egress interface's MAC */
	__u8 dmac[6];	   /* next hop's MAC */
	__u16 ok_len;	   /* largest L3 length that passed the MTU check */
	__u16 pad;	   /* explicit padding, zero */
};
_Static_assert(sizeof(struct tg_nexthop) == 32, "tg_nexthop layout");

/* ---- counters ------------------------------------------------------------ */

/* Packets and bytes (bytes = frame length as received, before encapsulation).
 * tg_vip_stats is indexed by vip id, tg_pair_stats by (VIP, real) pair slot;
 * both PERCPU. Pair slots are allocated by user space (src/l4/datapath.c)
 * for each real a VIP's Maglev tables name and travel with the ring entry
 * and the flow entry, so the datapath counts a packet under its VIP and real
 * with one update. Slot 0 is "unattributed": used when all TG_MAX_PAIRS - 1
 * slots are taken (1 MiB of counters per CPU: about 64 VIPs x 1024 reals,
 * the configuration's limits). Per-real totals are sums of pair slots. */
struct tg_counter {
	__u64 packets; /* packets forwarded for this VIP / (VIP, real) pair */
	__u64 bytes;   /* their frame bytes */
};
_Static_assert(sizeof(struct tg_counter) == 16, "tg_counter layout");

/*
 * Global event counters (tg_stats: PERCPU_ARRAY of __u64 indexed by
 * enum tg_stat). The second column is the metric label user space prints
 * (`tidegate_l4_events_total{reason="pass_not_vip"}`), Cilium-style. Verdicts:
 *   pass_*   XDP_PASS: the kernel sees the packet unchanged
 *   drop_*   XDP_DROP: traffic for a VIP the balancer cannot forward
 *   fwd_*    forwarded (XDP_TX or XDP_REDIRECT)
 *   others   events that do not decide the verdict (flow table, guard)
 */
#define TG_STAT_LIST(X)                                                                            \
	X(TG_STAT_FWD_TX, "fwd_tx")		    /* XDP_TX: egress == ingress (on a stick) */   \
	X(TG_STAT_FWD_REDIRECT, "fwd_redirect")	    /* XDP_REDIRECT to another interface */        \
	X(TG_STAT_PASS_NOT_IP, "pass_not_ip")	    /* ethertype not IPv4/IPv6 (ARP, LLDP, ...) */ \
	X(TG_STAT_PASS_MALFORMED, "pass_malformed") /* truncated L2/L3 or bad IHL: kernel drops */ \
	X(TG_STAT_PASS_NOT_VIP, "pass_not_vip")	    /* no VIP for dst:port:proto */                \
	X(TG_STAT_PASS_FRAGMENT, "pass_fragment")   /* IPv4 fragment: no ports to hash */          \
	X(TG_STAT_PASS_IPV6_EXT, "pass_ipv6_ext")   /* IPv6 extension header before L4 */          \
	X(TG_STAT_PASS_ICMP, "pass_icmp")	    /* ICMP not about a VIP flow */                \
	X(TG_STAT_PASS_FIB_NO_NEIGH, "pass_fib_no_neigh")	  /* next hop not resolved yet */  \
	X(TG_STAT_PASS_FIB_FAIL, "pass_fib_fail")		  /* no route to the real */       \
	X(TG_STAT_PASS_FIB_FWD_DISABLED, "pass_fib_fwd_disabled") /* ingress forwarding off */     \
	X(TG_STAT_DROP_MALFORMED_L4, "drop_malformed_l4") /* VIP traffic, truncated L4 header */   \
	X(TG_STAT_DROP_NO_REAL, "drop_no_real")		  /* VIP has no table or no valid real */  \
	X(TG_STAT_DROP_FAMILY, "drop_family")		/* real's family differs from the VIP's */ \
	X(TG_STAT_DROP_ENCAP, "drop_encap")		/* bpf_xdp_adjust_head failed */           \
	X(TG_STAT_DROP_FRAG_NEEDED, "drop_frag_needed") /* encapsulated packet exceeds MTU */      \
	X(TG_STAT_FLOW_HIT, "flow_hit")			/* flow table hit on a valid real */       \
	X(TG_STAT_FLOW_MISS, "flow_miss")		/* no entry: new flow, Maglev pick */      \
	X(TG_STAT_FLOW_EXPIRED, "flow_expired")		/* entry idle past the VIP's timeout */    \
	X(TG_STAT_FLOW_REPICK_GONE, "flow_repick_gone") /* entry's real gone: Maglev re-pick */    \
	X(TG_STAT_FLOW_GUARD_SKIP,                                                                 \
	  "flow_guard_skip")		    /* new-flow rate above limit: not inserted */          \
	X(TG_STAT_FLOW_ADMIT, "flow_admit") /* second packet: flow entered in the flow table */    \
	X(TG_STAT_ICMP_TOO_BIG, "icmp_too_big") /* ICMP frag-needed/too-big sent to a real */

#define TG_STAT_ENUM(id, name) id,
enum tg_stat { TG_STAT_LIST(TG_STAT_ENUM) TG_STAT_MAX };
#undef TG_STAT_ENUM

/* ---- decap (bpf/decap.bpf.c: tg_decap_vips HASH tg_decap_key -> __u8) ---- */

/* An address the tc decap program accepts as inner destination. */
struct tg_decap_key {
	__u32 addr[4]; /* VIP address, network byte order (v4 in addr[0]) */
	__u8 family;   /* TG_FAMILY_V4 or TG_FAMILY_V6 */
	__u8 pad[3];   /* explicit padding, zero */
};
_Static_assert(sizeof(struct tg_decap_key) == 20, "tg_decap_key layout");

/* tg_decap_stats (PERCPU_ARRAY of __u64) indices. */
#define TG_DECAP_STAT_LIST(X)                                                                      \
	X(TG_DECAP_STAT_DECAP4, "decap_ipip")	      /* IPv4-in-IPv4 stripped */                  \
	X(TG_DECAP_STAT_DECAP6, "decap_ip6ip6")	      /* IPv6-in-IPv6 stripped */                  \
	X(TG_DECAP_STAT_PASS_NOT_VIP, "pass_not_vip") /* tunnel whose inner dst is no VIP */       \
	X(TG_DECAP_STAT_FAIL, "fail")		      /* bpf_skb_adjust_room failed: passed as is */

#define TG_STAT_ENUM(id, name) id,
enum tg_decap_stat { TG_DECAP_STAT_LIST(TG_STAT_ENUM) TG_DECAP_STAT_MAX };
#undef TG_STAT_ENUM

/* ---- hashing (shared so user space and tests predict the datapath) ------ */

#define TG_HASH_SEED 0x7467u /* "tg": fixed so every balancer node agrees */

TG_ABI_INLINE __u32 tg_rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* One murmur3 block step. */
TG_ABI_INLINE __u32 tg_hash_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51u;
	k = tg_rotl32(k, 15);
	k *= 0x1b873593u;
	h ^= k;
	h = tg_rotl32(h, 13);
	return h * 5 + 0xe6546b64u;
}

/* murmur3 finaliser: every input bit reaches every output bit. */
TG_ABI_INLINE __u32 tg_hash_final(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* First slot of a VIP's probe sequence in tg_vip_slots: the key's words
 * folded (rotated so swapped words differ) and finalised. Weaker than a
 * full murmur3 over the key, which cost ~10 ns per packet; the table holds
 * operator-chosen keys at <= 25% load with TG_VIP_PROBES of slack, and a
 * lookup probes at most TG_VIP_PROBES slots whatever the packet says. */
TG_ABI_INLINE __u32 tg_vip_slot_hash(const struct tg_vip_key *k)
{
	__u32 w;

	__builtin_memcpy(&w, &k->port, 4); /* port, proto, family */
	w ^= k->addr[0] ^ tg_rotl32(k->addr[1], 8) ^ tg_rotl32(k->addr[2], 16) ^
	     tg_rotl32(k->addr[3], 24);
	return tg_hash_final(w ^ TG_HASH_SEED) & (TG_VIP_SLOTS - 1);
}

/* Slot of a flow in tg_flow_cache from its client address folded to one
 * word (v4: the address; v6: the xor of its four words), client port and
 * VIP tag. */
TG_ABI_INLINE __u32 tg_flow_cache_slot(__u32 src_fold, __u16 sport, __u32 vip_tag)
{
	__u32 h = src_fold ^ (vip_tag * 0x9e3779b1u) ^ ((__u32)sport << 16);

	return tg_hash_final(h) & (TG_FLOW_CACHE_SLOTS - 1);
}

/*
 * The flow hash: murmur3-style over the key's words, read as the host sees
 * them (the datapath and user space run on the same host, and every node
 * of a deployment has the same endianness). With TG_VIP_F_HASH_SRC_IP only the
 * source address counts, so every flow of one client lands on one real.
 * The result picks the Maglev slot (tg_maglev_slot) and the low bits of the
 * outer source address (tg_encap_src4/6). Deterministic across nodes: every
 * balancer node sends a flow to the same real.
 */
TG_ABI_INLINE __u32 tg_flow_hash(const struct tg_flow_key *k, __u32 vip_flags)
{
	__u32 h = TG_HASH_SEED;

	h = tg_hash_mix(h, k->src[0]);
	h = tg_hash_mix(h, k->src[1]);
	h = tg_hash_mix(h, k->src[2]);
	h = tg_hash_mix(h, k->src[3]);
	if (!(vip_flags & TG_VIP_F_HASH_SRC_IP)) {
		h = tg_hash_mix(h, k->dst[0]);
		h = tg_hash_mix(h, k->dst[1]);
		h = tg_hash_mix(h, k->dst[2]);
		h = tg_hash_mix(h, k->dst[3]);
		h = tg_hash_mix(h, ((__u32)k->sport << 16) | k->dport);
		h = tg_hash_mix(h, k->proto);
	}
	return tg_hash_final(h ^ k->family);
}

/* Maglev slot (0-based, before the +1 of the inner map layout). */
TG_ABI_INLINE __u32 tg_maglev_slot(__u32 hash, __u32 ring_size)
{
	return hash % ring_size;
}

/* Outer IPv4 source for IPIP: the /16 base (network order; its low 16 bits
 * ignored) with the low 16 bits from the flow hash, so the real's receive
 * hashing (RSS/RPS over the outer header) spreads flows across its CPUs. */
TG_ABI_INLINE __u32 tg_encap_src4(__u32 base_be, __u32 hash)
{
	__u32 low = (hash ^ (hash >> 16)) & 0xffffu;
	/* Build in network order: bytes 2 and 3 of the address. */
	__u8 b[4];
	__builtin_memcpy(b, &base_be, 4);
	b[2] = (__u8)(low >> 8);
	b[3] = (__u8)low;
	__u32 out;
	__builtin_memcpy(&out, b, 4);
	return out;
}

/* Outer IPv6 source for IP6IP6: the /96 base with the last 32 bits (network
 * order) taken from the flow hash. base[0..2] are kept, out[3] replaced. */
TG_ABI_INLINE __u32 tg_encap_src6_low(__u32 hash)
{
	__u8 b[4] = {(__u8)(hash >> 24), (__u8)(hash >> 16), (__u8)(hash >> 8), (__u8)hash};
	__u32 out;
	__builtin_memcpy(&out, b, 4);
	return out;
}

#endif

/*
 * config.h - the balancer's YAML configuration (DESIGN.md, "Balancer side"),
 * parsed and validated in one go into plain data.
 *
 * Defaults follow AWS NLB where it documents one. Every error names the field
 * path and the reason, e.g.
 *   vips[0].reals[2].address: "1.2.3" is not an IPv4 or IPv6 address
 * A configuration is immutable once parsed; a reload parses a new one and the
 * running one stays in force when the new one is rejected.
 */
#ifndef TG_L4_CONFIG_H
#define TG_L4_CONFIG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TG_L4_ZONE_MAX	   32	  /* zone name bytes, NUL included */
#define TG_L4_IFNAME_MAX   16	  /* IFNAMSIZ */
#define TG_L4_PATH_MAX	   256	  /* health-check path bytes, NUL included */
#define TG_L4_LISTEN_MAX   64	  /* admin-listen text, NUL included */
#define TG_L4_ERR_MAX	   512	  /* room callers give error messages */
#define TG_L4_MAX_VIPS	   64	  /* VIPs per configuration */
#define TG_L4_MAX_REALS	   1024	  /* reals per VIP */
#define TG_L4_WEIGHT_MAX   65535  /* largest real weight */
#define TG_L4_RING_DEFAULT 65537u /* Maglev table size (the paper's) */

/* An IPv4 or IPv6 address. IPv4 is stored IPv4-mapped (::ffff:a.b.c.d) so
 * that one 16-byte form identifies any address (Maglev keys, real ids). */
typedef struct tg_l4_ip {
	int family;	      /* AF_INET or AF_INET6 */
	struct in6_addr addr; /* IPv6, or IPv4-mapped IPv4 */
} tg_l4_ip_t;

typedef enum tg_l4_proto { TG_L4_TCP = 6, TG_L4_UDP = 17 } tg_l4_proto_t;
typedef enum tg_l4_fwd { TG_L4_FWD_IPIP = 0, TG_L4_FWD_L2 = 1 } tg_l4_fwd_t;
typedef enum tg_l4_hash { TG_L4_HASH_5TUPLE = 0, TG_L4_HASH_SRC_IP = 1 } tg_l4_hash_t;
typedef enum tg_l4_hc_proto { TG_L4_HC_TCP = 0, TG_L4_HC_HTTP = 1 } tg_l4_hc_proto_t;
typedef enum tg_l4_xdp_mode { TG_L4_XDP_NATIVE = 0, TG_L4_XDP_GENERIC = 1 } tg_l4_xdp_mode_t;

/* vips[].health-check */
typedef struct tg_l4_health_cfg {
	tg_l4_hc_proto_t proto;	      /* http (GET path, expect 200) or tcp (connect) */
	uint16_t port;		      /* port on the real; default: the VIP's port */
	char path[TG_L4_PATH_MAX];    /* HTTP path; default "/" */
	uint32_t interval_ms;	      /* between checks of one real; default 30s */
	uint32_t timeout_ms;	      /* one check's budget; default 6s */
	uint32_t healthy_threshold;   /* consecutive passes to become healthy; default 5 */
	uint32_t unhealthy_threshold; /* consecutive failures to become unhealthy; default 2 */
} tg_l4_health_cfg_t;

/* vips[].reals[] */
typedef struct tg_l4_real_cfg {
	tg_l4_ip_t ip;		   /* the real's address (tunnel destination / next hop) */
	uint32_t weight;	   /* relative share of new flows, 1..65535; default 1 */
	char zone[TG_L4_ZONE_MAX]; /* its zone, "" when not given */
} tg_l4_real_cfg_t;

/* vips[] */
typedef struct tg_l4_vip_cfg {
	tg_l4_ip_t ip;		   /* the VIP */
	uint16_t port;		   /* destination port */
	tg_l4_proto_t proto;	   /* tcp | udp */
	tg_l4_fwd_t forwarding;	   /* ipip | l2 */
	tg_l4_hash_t hash;	   /* 5-tuple | source-ip */
	uint32_t ring_size;	   /* Maglev table size, prime; default 65537 */
	uint32_t idle_timeout_ms;  /* flow idle timeout; 350s tcp / 120s udp */
	uint32_t dereg_delay_ms;   /* drain time of a removed/unhealthy real; 300s */
	bool cross_zone;	   /* send new flows to other zones too; false */
	tg_l4_health_cfg_t health; /* health check of every real */
	tg_l4_real_cfg_t *reals;   /* owned array */
	size_t n_reals;		   /* entries in reals */
} tg_l4_vip_cfg_t;

#define TG_L4_MAX_NEIGHBORS 16 /* bgp.neighbors entries */

/* bgp.neighbors[] */
typedef struct tg_l4_bgp_neighbor_cfg {
	tg_l4_ip_t ip;	    /* the router's address (TCP peer) */
	uint32_t remote_as; /* its AS; equal to local-as makes the session iBGP */
	uint16_t port;	    /* TCP port we connect to; default 179 */
} tg_l4_bgp_neighbor_cfg_t;

/* bgp: announcement of the VIPs to routers (src/l4/bgp.h). */
typedef struct tg_l4_bgp_cfg {
	bool enabled;		    /* the section is present */
	uint32_t local_as;	    /* our AS (4-octet) */
	bool has_router_id;	    /* router-id given (else: first IPv4 of interface) */
	struct in_addr router_id;   /* BGP identifier */
	uint16_t hold_time_s;	    /* proposed hold time, 0 or 3..65535 s; default 90 */
	uint32_t withdraw_delay_ms; /* SIGTERM: withdraw, wait this long, detach; 5s */
	uint16_t listen_port;	    /* passive connections accepted here; 0 = none; 179 */
	bool has_next_hop4;	    /* next-hop-v4 given */
	struct in_addr next_hop4;   /* IPv4 next hop on IPv6 sessions (else interface's) */
	bool has_next_hop6;	    /* next-hop-v6 given */
	struct in6_addr next_hop6;  /* IPv6 next hop on IPv4 sessions (else interface's) */
	tg_l4_bgp_neighbor_cfg_t neighbors[TG_L4_MAX_NEIGHBORS]; /* the routers */
	size_t n_neighbors;					 /* entries used */
} tg_l4_bgp_cfg_t;

/* The whole file. */
typedef struct tg_l4_config {
	char interface[TG_L4_IFNAME_MAX];    /* XDP attaches here */
	tg_l4_xdp_mode_t xdp_mode;	     /* native | generic; default native */
	char admin_listen[TG_L4_LISTEN_MAX]; /* default 0.0.0.0:10255 */
	char zone[TG_L4_ZONE_MAX];	     /* this node's zone, "" when not given */
	bool has_encap_src4;		     /* encap-source-v4 given */
	struct in_addr encap_src4;	/* outer source of IPIP packets (0: datapath default) */
	bool has_encap_src6;		/* encap-source-v6 given */
	struct in6_addr encap_src6;	/* outer source of IP6IP6 packets */
	uint64_t max_new_flows_per_sec; /* flow-table inserts per second per CPU; 0 = no limit */
	tg_l4_vip_cfg_t *vips;		/* owned array */
	size_t n_vips;			/* entries in vips */
	tg_l4_bgp_cfg_t bgp;		/* bgp: section (enabled false when absent) */
} tg_l4_config_t;

/* Parses and validates YAML text (len bytes, need not be NUL-terminated).
 * On success *out receives a new configuration (caller frees it) and 0 is
 * returned; otherwise -EINVAL (or -ENOMEM) with the reason in err. */
int tg_l4_config_parse(const char *text, size_t len, tg_l4_config_t **out, char *err,
		       size_t errlen);

/* Reads the file and parses it like tg_l4_config_parse; err names the file
 * when it cannot be read. */
int tg_l4_config_load(const char *path, tg_l4_config_t **out, char *err, size_t errlen);

/* Releases a configuration. Accepts NULL. */
void tg_l4_config_free(tg_l4_config_t *c);

/* Writes the address without port ("198.18.2.11", "fd00:7467::1"). buf needs
 * INET6_ADDRSTRLEN bytes. Returns buf. */
const char *tg_l4_ip_format(const tg_l4_ip_t *ip, char *buf, size_t buflen);

/* Parses an IPv4 or IPv6 address (len bytes). Returns 0 or -EINVAL. */
int tg_l4_ip_parse(const char *s, size_t len, tg_l4_ip_t *out);

/* True when both name the same address. */
bool tg_l4_ip_eq(const tg_l4_ip_t *a, const tg_l4_ip_t *b);

/* True when two bgp: sections are the same (the balancer refuses a reload
 * that changes it: sessions are set up at start). */
bool tg_l4_bgp_cfg_eq(const tg_l4_bgp_cfg_t *a, const tg_l4_bgp_cfg_t *b);

#endif

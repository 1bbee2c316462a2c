/*
 * bgp.h - a small BGP-4 speaker (RFC 4271) that announces the balancer's VIPs
 * as host routes (/32, /128) to the configured routers, so that they spread
 * flows over every balancer node with ECMP (DESIGN.md, "VIP announced over
 * BGP while healthy").
 *
 * Two layers:
 *   messages  tg_bgp_parse / tg_bgp_encode_*: pure functions on byte buffers,
 *             strict (every length, marker, type, attribute flag checked);
 *             the parser is the fuzz target (fuzz_bgp.c)
 *   speaker   tg_bgp_t: one session per neighbor, non-blocking sockets in an
 *             epoll set of its own whose fd the caller polls (the balancer's
 *             control loop), timers driven by the caller's clock
 *
 * The speaker opens an active TCP connection to each neighbor and accepts
 * passive ones on listen-port; a collision is resolved by BGP identifier
 * (RFC 4271 6.8). OPEN carries the 4-octet AS (RFC 6793) and multiprotocol
 * (RFC 4760) IPv4 and IPv6 unicast capabilities. Routes received are parsed
 * and ignored: the balancer installs nothing.
 *
 * Return values: parsers return bytes consumed, TG_AGAIN or TG_ERROR (with a
 * tg_bgp_error_t naming the NOTIFICATION to send); encoders return bytes
 * written or -ENOSPC; the speaker returns 0 or -errno.
 */
#ifndef TG_L4_BGP_H
#define TG_L4_BGP_H

#include "core/sbuf.h"
#include "l4/config.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TG_BGP_HDR_LEN	19   /* marker (16) + length (2) + type (1) */
#define TG_BGP_MAX_LEN	4096 /* largest message (RFC 4271 4.1) */
#define TG_BGP_AS_TRANS 23456u

/* Message types. */
enum {
	TG_BGP_OPEN = 1,
	TG_BGP_UPDATE = 2,
	TG_BGP_NOTIFICATION = 3,
	TG_BGP_KEEPALIVE = 4,
};

/* NOTIFICATION error codes (RFC 4271 4.5) and the subcodes we send. */
enum {
	TG_BGP_ERR_HEADER = 1, /* 1 not synchronized, 2 bad length, 3 bad type */
	TG_BGP_ERR_OPEN = 2,   /* 1 version, 2 peer AS, 3 identifier, 4 optional
				  parameter, 6 hold time */
	TG_BGP_ERR_UPDATE = 3, /* 1 attribute list, 2 unknown well-known, 3 missing
				  well-known, 4 flags, 5 length, 6 origin, 8 next
				  hop, 9 optional attribute, 10 network field,
				  11 AS_PATH */
	TG_BGP_ERR_HOLD = 4,   /* hold timer expired */
	TG_BGP_ERR_FSM = 5,    /* 1 in OpenSent, 2 in OpenConfirm, 3 in Established
				  (RFC 6608) */
	TG_BGP_ERR_CEASE = 6,  /* 2 administrative shutdown, 7 collision (RFC 4486) */
};

/* Address families a session carries (bits). */
#define TG_BGP_FAM_V4 1u /* AFI 1 SAFI 1 */
#define TG_BGP_FAM_V6 2u /* AFI 2 SAFI 1 */

/* What went wrong in a message: the NOTIFICATION that answers it and a
 * reason for the log. data points into the parsed buffer or into `own`. */
typedef struct tg_bgp_error {
	uint8_t code;	     /* NOTIFICATION error code */
	uint8_t subcode;     /* its subcode */
	const uint8_t *data; /* NOTIFICATION data (may be NULL) */
	size_t data_len;     /* its length */
	uint8_t own[2];	     /* storage for data made up by the parser */
	const char *reason;  /* static text, e.g. "bad marker" */
} tg_bgp_error_t;

/* An OPEN message. */
typedef struct tg_bgp_open {
	uint8_t version;    /* always 4 once parsed */
	uint16_t my_as;	    /* the 2-octet field (AS_TRANS for a 4-octet AS) */
	uint16_t hold_time; /* seconds, 0 or >= 3 once parsed */
	uint32_t bgp_id;    /* BGP identifier, host order, non-zero once parsed */
	bool has_as4;	    /* 4-octet AS capability present */
	uint32_t as4;	    /* its value */
	bool has_mp;	    /* any multiprotocol capability present */
	uint32_t families;  /* TG_BGP_FAM_* the MP capabilities name */
} tg_bgp_open_t;

/* What an UPDATE held (routes themselves are not kept). */
typedef struct tg_bgp_update {
	uint32_t withdrawn;  /* IPv4 prefixes in Withdrawn Routes */
	uint32_t nlri;	     /* IPv4 prefixes in the NLRI field */
	uint32_t mp_reach;   /* prefixes in MP_REACH_NLRI */
	uint32_t mp_unreach; /* prefixes in MP_UNREACH_NLRI */
	uint32_t attrs;	     /* bit t set when attribute type t (< 32) was present */
} tg_bgp_update_t;

/* A parsed message. */
typedef struct tg_bgp_msg {
	uint8_t type; /* TG_BGP_OPEN .. TG_BGP_KEEPALIVE */
	size_t len;   /* whole message, header included */
	union {
		tg_bgp_open_t open;	/* type OPEN */
		tg_bgp_update_t update; /* type UPDATE */
		struct {
			uint8_t code;	     /* error code */
			uint8_t subcode;     /* error subcode */
			const uint8_t *data; /* data (points into the buffer) */
			size_t data_len;     /* its length */
		} notification;		     /* type NOTIFICATION */
	} u;				     /* by type */
} tg_bgp_msg_t;

/* Parses the message at the start of buf (len bytes). as4: the session
 * negotiated 4-octet AS numbers (AS_PATH holds 4-byte ASNs). Returns the
 * message length with *msg filled, TG_AGAIN when buf holds less than one
 * whole message, or TG_ERROR with *err set. Never reads past len; never
 * allocates. */
int tg_bgp_parse(const uint8_t *buf, size_t len, bool as4, tg_bgp_msg_t *msg, tg_bgp_error_t *err);

/* Path attributes of the routes we announce. */
typedef struct tg_bgp_path {
	uint32_t local_as;	   /* our AS */
	bool ebgp;		   /* AS_PATH = our AS; else empty + LOCAL_PREF */
	bool as4;		   /* 4-octet AS negotiated */
	uint32_t local_pref;	   /* iBGP LOCAL_PREF */
	struct in_addr next_hop4;  /* NEXT_HOP of IPv4 routes */
	struct in6_addr next_hop6; /* MP_REACH next hop of IPv6 routes */
} tg_bgp_path_t;

/* Writes an OPEN into buf (cap bytes) advertising IPv4 and IPv6 unicast and
 * the 4-octet AS local_as. Returns the length or -ENOSPC. */
int tg_bgp_encode_open(uint8_t *buf, size_t cap, uint32_t local_as, uint16_t hold_time,
		       uint32_t bgp_id);

/* Writes a KEEPALIVE. Returns 19 or -ENOSPC. */
int tg_bgp_encode_keepalive(uint8_t *buf, size_t cap);

/* Writes a NOTIFICATION (data may be NULL; it is cut to fit one message).
 * Returns the length or -ENOSPC. */
int tg_bgp_encode_notification(uint8_t *buf, size_t cap, uint8_t code, uint8_t subcode,
			       const uint8_t *data, size_t data_len);

/* Writes one UPDATE announcing (withdraw false) or withdrawing host routes
 * for addresses ips[0..n), all of one family (IPv4: NLRI / Withdrawn Routes;
 * IPv6: MP_REACH_NLRI / MP_UNREACH_NLRI). As many as fit in one message are
 * taken; *used receives how many. path is only read when announcing.
 * Returns the length or -ENOSPC (cap too small for even one). */
int tg_bgp_encode_update(uint8_t *buf, size_t cap, const tg_l4_ip_t *ips, size_t n, bool withdraw,
			 const tg_bgp_path_t *path, size_t *used);

/* --- the speaker --------------------------------------------------------- */

/* A route the balancer may announce: one VIP address. */
typedef struct tg_bgp_route {
	tg_l4_ip_t ip; /* the VIP (a host route) */
	bool announce; /* true: announce; false: known but withdrawn */
} tg_bgp_route_t;

/* Session state of a neighbor, as tg_bgp_neighbor_state reports it. */
typedef enum tg_bgp_state {
	TG_BGP_IDLE = 0,	/* waiting to reconnect */
	TG_BGP_CONNECT = 1,	/* TCP connection being opened */
	TG_BGP_OPENSENT = 2,	/* our OPEN sent, waiting for theirs */
	TG_BGP_OPENCONFIRM = 3, /* OPENs exchanged, waiting for a KEEPALIVE */
	TG_BGP_ESTABLISHED = 4, /* routes flow */
} tg_bgp_state_t;

typedef struct tg_bgp tg_bgp_t;

/* Creates a speaker for cfg (copied; cfg->enabled must be true). ifname is the
 * balancer's interface: the router id defaults to its first IPv4 address and
 * next hops of the other family come from it. No socket is opened until
 * tg_bgp_start. Returns 0, -EINVAL with the reason in err, or -ENOMEM. */
int tg_bgp_create(const tg_l4_bgp_cfg_t *cfg, const char *ifname, tg_bgp_t **out, char *err,
		  size_t errlen);

/* Opens the listening socket (when listen-port is not 0; failure to bind is
 * logged and the speaker goes on with active connections only) and schedules
 * a connection to every neighbor at now_ms. Returns 0 or -errno. */
int tg_bgp_start(tg_bgp_t *b, uint64_t now_ms);

/* An epoll fd that is readable when a socket of the speaker needs attention;
 * the caller polls it and then calls tg_bgp_run. */
int tg_bgp_fd(const tg_bgp_t *b);

/* Handles every ready socket and due timer. Returns the time (ms) by which it
 * must be called again, UINT64_MAX when no timer is armed. */
uint64_t tg_bgp_run(tg_bgp_t *b, uint64_t now_ms);

/* Sets what should be announced: routes[0..n) (copied; at most
 * TG_L4_MAX_VIPS). Established sessions get UPDATEs for the difference at
 * once; others get the whole set when they come up. */
void tg_bgp_set_routes(tg_bgp_t *b, const tg_bgp_route_t *routes, size_t n);

/* Takes over a connected socket to neighbor index i (as a passive connection
 * would be), sending our OPEN on it. Used by accept and by tests with a
 * socketpair. Takes ownership of fd. Returns 0 or -errno. */
int tg_bgp_adopt(tg_bgp_t *b, size_t i, int fd, uint64_t now_ms);

/* State of neighbor i (the most advanced of its connections). Like the two
 * below, call it on the thread that drives the speaker. */
tg_bgp_state_t tg_bgp_neighbor_state(const tg_bgp_t *b, size_t i);

/* True when neighbor i's established session carries ip. */
bool tg_bgp_neighbor_has(const tg_bgp_t *b, size_t i, const tg_l4_ip_t *ip);

/* Ends every session with a NOTIFICATION Cease / Administrative Shutdown
 * (RFC 8203 message `why`), closes every socket and stops reconnecting. */
void tg_bgp_shutdown(tg_bgp_t *b, const char *why);

/* Appends tidegate_bgp_session_up, tidegate_bgp_updates_sent_total and
 * tidegate_bgp_vip_announced. Safe from another thread. */
void tg_bgp_metrics(tg_bgp_t *b, tg_sbuf_t *out);

/* Closes everything and frees b. Accepts NULL. */
void tg_bgp_free(tg_bgp_t *b);

#endif

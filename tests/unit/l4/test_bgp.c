/*
 * test_bgp.c - the BGP speaker: messages byte for byte against hand-computed
 * fixtures, the parser's verdict on malformed messages (with the NOTIFICATION
 * a router would receive), the session state machine against a peer on the
 * other end of a socketpair, collision resolution, reconnect backoff, the
 * bgp: configuration section, and which VIP addresses the plane offers for
 * announcement.
 */
#include "l4/bgp.h"
#include "l4/config.h"
#include "l4/plane.h"
#include "core/common.h"
#include "guard.h"

#include "abi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define M16                                                                                        \
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  \
	    0xff

static tg_l4_ip_t ip(const char *s)
{
	tg_l4_ip_t a;
	assert_int_equal(tg_l4_ip_parse(s, strlen(s), &a), 0);
	return a;
}

static void assert_bytes(const uint8_t *got, size_t got_len, const uint8_t *want, size_t want_len)
{
	if (got_len != want_len || memcmp(got, want, want_len) != 0) {
		char g[1024], w[1024];
		size_t o = 0;
		for (size_t i = 0; i < got_len && o + 4 < sizeof(g); i++)
			o += (size_t)snprintf(g + o, sizeof(g) - o, "%02x ", got[i]);
		g[o] = '\0';
		o = 0;
		for (size_t i = 0; i < want_len && o + 4 < sizeof(w); i++)
			o += (size_t)snprintf(w + o, sizeof(w) - o, "%02x ", want[i]);
		w[o] = '\0';
		fail_msg("bytes differ\n got  (%zu) %s\n want (%zu) %s", got_len, g, want_len, w);
	}
}

/* Parses a message copied before a guard page; returns the result. */
static int parse_guarded(const uint8_t *m, size_t len, bool as4, tg_bgp_msg_t *msg,
			 tg_bgp_error_t *e)
{
	const char *g = tg_guard_dup(m, len);
	int rc = tg_bgp_parse((const uint8_t *)g, len, as4, msg, e);
	/* data may point into the guarded copy: compare before freeing. */
	static uint8_t keep[TG_BGP_MAX_LEN];
	if (rc == TG_ERROR && e->data && e->data != e->own) {
		memcpy(keep, e->data, e->data_len);
		e->data = keep;
	}
	tg_guard_free(g, len);
	return rc;
}

/* Every strict prefix of a valid message needs more bytes; the whole parses. */
static void assert_parses(const uint8_t *m, size_t len, bool as4, tg_bgp_msg_t *msg)
{
	tg_bgp_error_t e;
	for (size_t k = 0; k < len; k++)
		assert_int_equal(parse_guarded(m, k, as4, msg, &e), TG_AGAIN);
	int rc = parse_guarded(m, len, as4, msg, &e);
	if (rc != (int)len)
		fail_msg("rc %d: %s (%u/%u)", rc, rc == TG_ERROR ? e.reason : "", e.code,
			 e.subcode);
}

/* ---- encoding fixtures --------------------------------------------------- */

static void test_encode_open(void **state)
{
	(void)state;
	uint8_t buf[64];
	static const uint8_t want[] = {
	    M16,  0x00, 49,   1,	      /* header */
	    4,	  0xfd, 0xe9,		      /* version, AS 65001 */
	    0x00, 90,			      /* hold time */
	    198,  18,	2,    10,	      /* identifier */
	    20,				      /* optional parameters length */
	    2,	  18,			      /* Capabilities, 18 bytes */
	    1,	  4,	0,    1,  0,	1,    /* MP IPv4 unicast */
	    1,	  4,	0,    2,  0,	1,    /* MP IPv6 unicast */
	    65,	  4,	0,    0,  0xfd, 0xe9, /* 4-octet AS 65001 */
	};
	int n = tg_bgp_encode_open(buf, sizeof(buf), 65001, 90, 0xc612020a);
	assert_bytes(buf, (size_t)n, want, sizeof(want));
	tg_bgp_msg_t m;
	assert_parses(buf, (size_t)n, false, &m);
	assert_int_equal(m.type, TG_BGP_OPEN);
	assert_int_equal(m.u.open.as4, 65001);
	assert_int_equal(m.u.open.families, TG_BGP_FAM_V4 | TG_BGP_FAM_V6);

	/* A 4-octet AS: AS_TRANS in the 2-octet field. */
	static const uint8_t want4[] = {
	    M16, 0x00, 49, 1, 4, 0x5b, 0xa0, 0x00, 9, 10, 0, 0,	 1, 20,	  2,	18,   1,
	    4,	 0,    1,  0, 1, 1,    4,    0,	   2, 0,  1, 65, 4, 0xfa, 0x56, 0xea, 0x01,
	};
	n = tg_bgp_encode_open(buf, sizeof(buf), 4200000001u, 9, 0x0a000001);
	assert_bytes(buf, (size_t)n, want4, sizeof(want4));
	assert_int_equal(tg_bgp_encode_open(buf, 48, 65001, 90, 1), -ENOSPC);
}

static void test_encode_keepalive_notification(void **state)
{
	(void)state;
	uint8_t buf[64];
	static const uint8_t ka[] = {M16, 0x00, 19, 4};
	int n = tg_bgp_encode_keepalive(buf, sizeof(buf));
	assert_bytes(buf, (size_t)n, ka, sizeof(ka));
	static const uint8_t cease[] = {M16, 0x00, 25, 3, 6, 2, 3, 'b', 'y', 'e'};
	n = tg_bgp_encode_notification(buf, sizeof(buf), 6, 2, (const uint8_t *)"\003bye", 4);
	assert_bytes(buf, (size_t)n, cease, sizeof(cease));
	tg_bgp_msg_t m;
	assert_parses(buf, (size_t)n, false, &m);
	assert_int_equal(m.u.notification.code, 6);
	assert_int_equal(m.u.notification.subcode, 2);
	assert_int_equal(m.u.notification.data_len, 4);
	static const uint8_t hold[] = {M16, 0x00, 21, 3, 4, 0};
	n = tg_bgp_encode_notification(buf, sizeof(buf), 4, 0, NULL, 0);
	assert_bytes(buf, (size_t)n, hold, sizeof(hold));
	assert_int_equal(tg_bgp_encode_notification(buf, 20, 4, 0, NULL, 0), -ENOSPC);
}

static tg_bgp_path_t path(uint32_t as, bool ebgp, bool as4)
{
	tg_bgp_path_t p;
	memset(&p, 0, sizeof(p));
	p.local_as = as;
	p.ebgp = ebgp;
	p.as4 = as4;
	p.local_pref = 100;
	inet_pton(AF_INET, "198.18.2.10", &p.next_hop4);
	inet_pton(AF_INET6, "fd00:7467:2::10", &p.next_hop6);
	return p;
}

static void test_encode_update_v4(void **state)
{
	(void)state;
	uint8_t buf[TG_BGP_MAX_LEN];
	size_t used;
	tg_l4_ip_t v[2] = {ip("198.18.100.1"), ip("198.18.100.2")};
	tg_bgp_msg_t m;

	/* eBGP, 4-octet AS session. */
	tg_bgp_path_t p = path(65001, true, true);
	static const uint8_t ebgp[] = {
	    M16,  0x00, 53, 2,				     /* header */
	    0x00, 0x00,					     /* no withdrawn routes */
	    0x00, 20,					     /* attributes */
	    0x40, 1,	1,  0,				     /* ORIGIN IGP */
	    0x40, 2,	6,  2,	 1,  0x00, 0x00, 0xfd, 0xe9, /* AS_PATH (65001) */
	    0x40, 3,	4,  198, 18, 2,	   10,		     /* NEXT_HOP */
	    32,	  198,	18, 100, 1,			     /* 198.18.100.1/32 */
	    32,	  198,	18, 100, 2,			     /* 198.18.100.2/32 */
	};
	int n = tg_bgp_encode_update(buf, sizeof(buf), v, 2, false, &p, &used);
	assert_int_equal(used, 2);
	assert_bytes(buf, (size_t)n, ebgp, sizeof(ebgp));
	assert_parses(buf, (size_t)n, true, &m);
	assert_int_equal(m.u.update.nlri, 2);

	/* iBGP: empty AS_PATH and LOCAL_PREF. */
	p = path(65001, false, true);
	static const uint8_t ibgp[] = {
	    M16,  0x00, 49, 2,	 0x00, 0x00, 0x00, 21, /* header, lengths */
	    0x40, 1,	1,  0,			       /* ORIGIN */
	    0x40, 2,	0,			       /* AS_PATH empty */
	    0x40, 3,	4,  198, 18,   2,    10,       /* NEXT_HOP */
	    0x40, 5,	4,  0,	 0,    0,    100,      /* LOCAL_PREF 100 */
	    32,	  198,	18, 100, 1,
	};
	n = tg_bgp_encode_update(buf, sizeof(buf), v, 1, false, &p, &used);
	assert_bytes(buf, (size_t)n, ibgp, sizeof(ibgp));
	assert_parses(buf, (size_t)n, true, &m);

	/* 2-octet session, 4-octet AS: AS_TRANS in AS_PATH, ours in AS4_PATH. */
	p = path(4200000001u, true, false);
	static const uint8_t trans[] = {
	    M16,  0x00, 55, 2,	 0x00, 0x00, 0x00, 27,	       /* header, lengths */
	    0x40, 1,	1,  0,				       /* ORIGIN */
	    0x40, 2,	4,  2,	 1,    0x5b, 0xa0,	       /* AS_PATH (23456) */
	    0x40, 3,	4,  198, 18,   2,    10,	       /* NEXT_HOP */
	    0xc0, 17,	6,  2,	 1,    0xfa, 0x56, 0xea, 0x01, /* AS4_PATH */
	    32,	  198,	18, 100, 1,
	};
	n = tg_bgp_encode_update(buf, sizeof(buf), v, 1, false, &p, &used);
	assert_bytes(buf, (size_t)n, trans, sizeof(trans));
	assert_parses(buf, (size_t)n, false, &m);

	/* Withdrawal. */
	static const uint8_t wd[] = {
	    M16, 0x00, 33, 2, 0x00, 10, 32, 198, 18, 100, 1, 32, 198, 18, 100, 2, 0x00, 0x00,
	};
	n = tg_bgp_encode_update(buf, sizeof(buf), v, 2, true, NULL, &used);
	assert_bytes(buf, (size_t)n, wd, sizeof(wd));
	assert_parses(buf, (size_t)n, false, &m);
	assert_int_equal(m.u.update.withdrawn, 2);
	assert_int_equal(m.u.update.nlri, 0);

	/* Room for only part of the list: as many as fit; none: -ENOSPC. */
	n = tg_bgp_encode_update(buf, 29, v, 2, true, NULL, &used);
	assert_int_equal(n, 28);
	assert_int_equal(used, 1);
	assert_int_equal(tg_bgp_encode_update(buf, 27, v, 2, true, NULL, &used), -ENOSPC);
	/* A list that changes family stops there. */
	tg_l4_ip_t mixed[2] = {ip("198.18.100.1"), ip("fd00:7467:100::1")};
	n = tg_bgp_encode_update(buf, sizeof(buf), mixed, 2, true, NULL, &used);
	assert_int_equal(used, 1);
}

static void test_encode_update_v6(void **state)
{
	(void)state;
	uint8_t buf[TG_BGP_MAX_LEN];
	size_t used;
	tg_l4_ip_t v = ip("fd00:7467:100::1");
	tg_bgp_path_t p = path(65001, true, true);
	tg_bgp_msg_t m;
#define NH6  0xfd, 0x00, 0x74, 0x67, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10
#define VIP6 0xfd, 0x00, 0x74, 0x67, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01
	static const uint8_t reach[] = {
	    M16,  0x00, 77,   2,		       /* header */
	    0x00, 0x00, 0x00, 54,		       /* no withdrawn, attributes */
	    0x40, 1,	1,    0,		       /* ORIGIN */
	    0x40, 2,	6,    2,  1, 0, 0, 0xfd, 0xe9, /* AS_PATH */
	    0x80, 14,	38,			       /* MP_REACH_NLRI */
	    0x00, 2,	1,			       /* AFI IPv6, SAFI unicast */
	    16,	  NH6,				       /* next hop */
	    0,					       /* reserved */
	    128,  VIP6,				       /* fd00:7467:100::1/128 */
	};
	int n = tg_bgp_encode_update(buf, sizeof(buf), &v, 1, false, &p, &used);
	assert_bytes(buf, (size_t)n, reach, sizeof(reach));
	assert_parses(buf, (size_t)n, true, &m);
	assert_int_equal(m.u.update.mp_reach, 1);
	assert_true(m.u.update.attrs & (1u << 14));

	static const uint8_t unreach[] = {
	    M16, 0x00, 46, 2, 0x00, 0x00, 0x00, 23, 0x80, 15, 20, 0x00, 2, 1, 128, VIP6,
	};
	n = tg_bgp_encode_update(buf, sizeof(buf), &v, 1, true, NULL, &used);
	assert_bytes(buf, (size_t)n, unreach, sizeof(unreach));
	assert_parses(buf, (size_t)n, false, &m);
	assert_int_equal(m.u.update.mp_unreach, 1);

	/* Twenty routes need a 2-byte attribute length (extended flag). */
	tg_l4_ip_t many[TG_L4_MAX_VIPS];
	for (int i = 0; i < TG_L4_MAX_VIPS; i++) {
		char a[64];
		snprintf(a, sizeof(a), "fd00:7467:100::%x", i + 1);
		many[i] = ip(a);
	}
	n = tg_bgp_encode_update(buf, sizeof(buf), many, 20, false, &p, &used);
	assert_int_equal(used, 20);
	assert_int_equal(buf[19 + 4 + 13], 0x90); /* flags of MP_REACH_NLRI */
	assert_parses(buf, (size_t)n, true, &m);
	assert_int_equal(m.u.update.mp_reach, 20);
	/* Every VIP the configuration can hold fits in one message. */
	n = tg_bgp_encode_update(buf, sizeof(buf), many, TG_L4_MAX_VIPS, true, NULL, &used);
	assert_int_equal(used, TG_L4_MAX_VIPS);
	assert_parses(buf, (size_t)n, false, &m);
	assert_int_equal(m.u.update.mp_unreach, TG_L4_MAX_VIPS);
}

/* ---- parser rejections ------------------------------------------------------ */

/* Expects message m to be rejected with code/subcode. */
#define REJECT(as4_, c_, s_, ...)                                                                  \
	do {                                                                                       \
		static const uint8_t m_[] = {__VA_ARGS__};                                         \
		tg_bgp_msg_t msg_;                                                                 \
		tg_bgp_error_t e_;                                                                 \
		int rc_ = parse_guarded(m_, sizeof(m_), as4_, &msg_, &e_);                         \
		if (rc_ != TG_ERROR || e_.code != (c_) || e_.subcode != (s_))                      \
			fail_msg("line %d: rc %d, %u/%u (%s), wanted %u/%u", __LINE__, rc_,        \
				 e_.code, e_.subcode, e_.reason ? e_.reason : "", c_, s_);         \
		assert_non_null(e_.reason);                                                        \
	} while (0)

static void test_parse_header_errors(void **state)
{
	(void)state;
	tg_bgp_msg_t m;
	tg_bgp_error_t e;
	/* A bad marker is seen before the message is complete. */
	static const uint8_t early[] = {0xff, 0xff, 0x00};
	assert_int_equal(parse_guarded(early, sizeof(early), false, &m, &e), TG_ERROR);
	assert_int_equal(e.code, 1);
	assert_int_equal(e.subcode, 1);
	REJECT(false, 1, 2, M16, 0x00, 18, 4);
	REJECT(false, 1, 2, M16, 0x10, 0x01, 4); /* 4097 */
	REJECT(false, 1, 3, M16, 0x00, 19, 0);
	REJECT(false, 1, 3, M16, 0x00, 19, 5); /* ROUTE-REFRESH: not advertised */
	REJECT(false, 1, 2, M16, 0x00, 20, 4, 0);
	REJECT(false, 1, 2, M16, 0x00, 28, 1, 4, 0, 1, 0, 90, 1, 1, 1, 1);
	REJECT(false, 1, 2, M16, 0x00, 22, 2, 0, 0, 0);
	REJECT(false, 1, 2, M16, 0x00, 20, 3, 6);
	/* The NOTIFICATION data names the bad length field. */
	static const uint8_t len18[] = {M16, 0x00, 18, 4};
	assert_int_equal(parse_guarded(len18, sizeof(len18), false, &m, &e), TG_ERROR);
	assert_int_equal(e.data_len, 2);
	assert_int_equal(e.data[1], 18);
	/* Two messages back to back: the first is consumed alone. */
	static const uint8_t two[] = {M16, 0x00, 19, 4, M16, 0x00, 19, 4};
	assert_int_equal(parse_guarded(two, sizeof(two), false, &m, &e), 19);
}

#define OPEN_HDR(len) M16, 0x00, (len), 1

static void test_parse_open_errors(void **state)
{
	(void)state;
	tg_bgp_msg_t m;
	tg_bgp_error_t e;
	static const uint8_t v3[] = {OPEN_HDR(29), 3, 0xfd, 0xe8, 0, 90, 1, 1, 1, 1, 0};
	assert_int_equal(parse_guarded(v3, sizeof(v3), false, &m, &e), TG_ERROR);
	assert_int_equal(e.code, 2);
	assert_int_equal(e.subcode, 1);
	assert_int_equal(e.data_len, 2);
	assert_int_equal(e.data[1], 4); /* the version we speak */
	REJECT(false, 2, 6, OPEN_HDR(29), 4, 0xfd, 0xe8, 0, 2, 1, 1, 1, 1, 0);
	REJECT(false, 2, 3, OPEN_HDR(29), 4, 0xfd, 0xe8, 0, 90, 0, 0, 0, 0, 0);
	REJECT(false, 2, 0, OPEN_HDR(29), 4, 0xfd, 0xe8, 0, 90, 1, 1, 1, 1, 2);
	REJECT(false, 2, 0, OPEN_HDR(31), 4, 0xfd, 0xe8, 0, 90, 1, 1, 1, 1, 2, 2, 1);
	REJECT(false, 2, 4, OPEN_HDR(31), 4, 0xfd, 0xe8, 0, 90, 1, 1, 1, 1, 2, 1, 0);
	REJECT(false, 2, 0, OPEN_HDR(33), 4, 0xfd, 0xe8, 0, 90, 1, 1, 1, 1, 4, 2, 2, 1, 4);
	REJECT(false, 2, 0, OPEN_HDR(36), 4, 0xfd, 0xe8, 0, 90, 1, 1, 1, 1, 7, 2, 5, 1, 3, 0, 1, 1);
	REJECT(false, 2, 2, OPEN_HDR(37), 4, 0x5b, 0xa0, 0, 90, 1, 1, 1, 1, 8, 2, 6, 65, 4, 0, 0, 0,
	       0);
	/* Hold time 0, no capability at all, unknown capabilities: fine. */
	static const uint8_t bare[] = {OPEN_HDR(29), 4, 0xfd, 0xe8, 0, 0, 1, 1, 1, 1, 0};
	assert_parses(bare, sizeof(bare), false, &m);
	assert_false(m.u.open.has_mp);
	assert_false(m.u.open.has_as4);
	assert_int_equal(m.u.open.my_as, 65000);
	static const uint8_t odd[] = {OPEN_HDR(35), 4, 0xfd, 0xe8, 0, 3, 1, 1, 1, 1, 6, 2, 4, 2, 0,
				      70,	    0};
	assert_parses(odd, sizeof(odd), false, &m);
	/* RFC 9072 extended optional parameters. */
	static const uint8_t ext[] = {OPEN_HDR(41),
				      4,
				      0xfd,
				      0xe8,
				      0,
				      9,
				      1,
				      1,
				      1,
				      1,
				      255,
				      255,
				      0,
				      9,
				      2,
				      0,
				      6,
				      1,
				      4,
				      0,
				      2,
				      0,
				      1};
	assert_parses(ext, sizeof(ext), false, &m);
	assert_int_equal(m.u.open.families, TG_BGP_FAM_V6);
}

#define UPD_HDR(len) M16, 0x00, (len), 2
#define ORIGIN	     0x40, 1, 1, 0
#define ASPATH4	     0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe8
#define NEXTHOP	     0x40, 3, 4, 198, 18, 2, 1

static void test_parse_update_errors(void **state)
{
	(void)state;
	tg_bgp_msg_t m;
	tg_bgp_error_t e;
	/* End-of-RIB and a full announcement are fine. */
	static const uint8_t eor[] = {UPD_HDR(23), 0, 0, 0, 0};
	assert_parses(eor, sizeof(eor), false, &m);
	static const uint8_t ok[] = {UPD_HDR(47), 0,	   0,  0,  20, ORIGIN,
				     ASPATH4,	  NEXTHOP, 24, 10, 1,  2};
	assert_parses(ok, sizeof(ok), true, &m);
	assert_int_equal(m.u.update.nlri, 1);
	/* ... but the same AS_PATH is malformed on a 2-octet session. */
	REJECT(false, 3, 11, UPD_HDR(47), 0, 0, 0, 20, ORIGIN, ASPATH4, NEXTHOP, 24, 10, 1, 2);

	REJECT(false, 3, 1, UPD_HDR(23), 0, 1, 0, 0);		     /* withdrawn overruns */
	REJECT(false, 3, 1, UPD_HDR(23), 0, 0, 0, 1);		     /* attributes overrun */
	REJECT(false, 3, 10, UPD_HDR(25), 0, 2, 33, 1, 0, 0);	     /* /33 withdrawn */
	REJECT(false, 3, 10, UPD_HDR(25), 0, 2, 24, 1, 0, 0);	     /* prefix bytes missing */
	REJECT(false, 3, 1, UPD_HDR(25), 0, 0, 0, 2, 0x40, 1);	     /* truncated header */
	REJECT(false, 3, 1, UPD_HDR(26), 0, 0, 0, 3, 0x40, 1, 1);    /* value missing */
	REJECT(false, 3, 1, UPD_HDR(26), 0, 0, 0, 3, 0x50, 1, 0);    /* extended, short */
	REJECT(true, 3, 1, UPD_HDR(31), 0, 0, 0, 8, ORIGIN, ORIGIN); /* twice */
	REJECT(true, 3, 4, UPD_HDR(27), 0, 0, 0, 4, 0xc0, 1, 1, 0);  /* ORIGIN optional */
	REJECT(true, 3, 4, UPD_HDR(27), 0, 0, 0, 4, 0x00, 1, 1, 0);  /* not transitive */
	REJECT(true, 3, 4, UPD_HDR(30), 0, 0, 0, 7, 0x40, 4, 4, 0, 0, 0, 0); /* MED flags */
	REJECT(true, 3, 4, UPD_HDR(30), 0, 0, 0, 7, 0xa0, 4, 4, 0, 0, 0, 0); /* MED partial */
	REJECT(true, 3, 6, UPD_HDR(27), 0, 0, 0, 4, 0x40, 1, 1, 3);
	REJECT(true, 3, 5, UPD_HDR(28), 0, 0, 0, 5, 0x40, 1, 2, 0, 0);
	REJECT(true, 3, 5, UPD_HDR(29), 0, 0, 0, 6, 0x40, 3, 3, 1, 2, 3);
	REJECT(true, 3, 8, UPD_HDR(30), 0, 0, 0, 7, 0x40, 3, 4, 0, 0, 0, 0);
	REJECT(true, 3, 8, UPD_HDR(30), 0, 0, 0, 7, 0x40, 3, 4, 224, 0, 0, 1);
	REJECT(true, 3, 5, UPD_HDR(26), 0, 0, 0, 3, 0x40, 5, 0);
	REJECT(true, 3, 5, UPD_HDR(27), 0, 0, 0, 4, 0x40, 6, 1, 0);
	REJECT(true, 3, 5, UPD_HDR(29), 0, 0, 0, 6, 0xc0, 7, 3, 0, 0, 0);
	REJECT(true, 3, 9, UPD_HDR(29), 0, 0, 0, 6, 0xc0, 8, 3, 0, 0, 0);
	REJECT(true, 3, 2, UPD_HDR(27), 0, 0, 0, 4, 0x40, 99, 1, 0);	/* unknown well-known */
	REJECT(true, 3, 11, UPD_HDR(28), 0, 0, 0, 5, 0x40, 2, 2, 2, 0); /* empty segment */
	REJECT(true, 3, 11, UPD_HDR(28), 0, 0, 0, 5, 0x40, 2, 2, 5, 1); /* bad type */
	REJECT(true, 3, 11, UPD_HDR(30), 0, 0, 0, 7, 0x40, 2, 4, 2, 1, 0, 1); /* short ASN */
	/* NLRI without NEXT_HOP: the NOTIFICATION names the missing type. */
	static const uint8_t nonh[] = {UPD_HDR(40), 0, 0, 0, 13, ORIGIN, ASPATH4, 24, 10, 1, 2};
	assert_int_equal(parse_guarded(nonh, sizeof(nonh), true, &m, &e), TG_ERROR);
	assert_int_equal(e.code, 3);
	assert_int_equal(e.subcode, 3);
	assert_int_equal(e.data_len, 1);
	assert_int_equal(e.data[0], 3);
	REJECT(true, 3, 10, UPD_HDR(47), 0, 0, 0, 20, ORIGIN, ASPATH4, NEXTHOP, 33, 10, 1, 2);
	/* Attribute errors carry the attribute in the data. */
	static const uint8_t bado[] = {UPD_HDR(27), 0, 0, 0, 4, 0x40, 1, 1, 7};
	assert_int_equal(parse_guarded(bado, sizeof(bado), true, &m, &e), TG_ERROR);
	assert_int_equal(e.data_len, 4);
	assert_int_equal(e.data[3], 7);
	/* Unknown optional attributes are skipped. */
	static const uint8_t unk[] = {UPD_HDR(28), 0, 0, 0, 5, 0xc0, 99, 2, 1, 2};
	assert_parses(unk, sizeof(unk), true, &m);

	/* MP_REACH_NLRI: next hop length, prefix length, mandatory attributes. */
	REJECT(true, 3, 9, UPD_HDR(27), 0, 0, 0, 4, 0x80, 14, 1, 0);
	REJECT(true, 3, 9, UPD_HDR(36), 0, 0, 0, 13, 0x80, 14, 10, 0, 2, 1, 4, 1, 2, 3, 4, 0, 0);
	REJECT(true, 3, 9, UPD_HDR(32), 0, 0, 0, 9, 0x80, 14, 6, 0, 2, 1, 16, 0, 0);
	REJECT(true, 3, 9, UPD_HDR(50), 0, 0, 0, 27, 0x80, 14, 24, 0, 2, 1, 16, NH6, 0, 129, 0, 0);
	REJECT(true, 3, 3, UPD_HDR(49), 0, 0, 0, 26, 0x80, 14, 23, 0, 2, 1, 16, NH6, 0, 8, 0xfd);
	REJECT(true, 3, 9, UPD_HDR(26), 0, 0, 0, 3, 0x80, 15, 0);
	/* IPv6 End-of-RIB: MP_UNREACH_NLRI with no prefix. */
	static const uint8_t eor6[] = {UPD_HDR(29), 0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1};
	assert_parses(eor6, sizeof(eor6), true, &m);
	/* MP_UNREACH with a prefix longer than 128 bits. */
	REJECT(true, 3, 9, UPD_HDR(31), 0, 0, 0, 8, 0x80, 15, 5, 0, 2, 1, 200, 0);
	/* An AFI/SAFI we never negotiated is skipped, not judged. */
	static const uint8_t vpn[] = {UPD_HDR(31), 0, 0, 0, 8, 0x80, 15, 5, 0, 1, 128, 200, 0};
	assert_parses(vpn, sizeof(vpn), true, &m);
}

/* ---- configuration ------------------------------------------------------------ */

#define CFG_HEAD "interface: eth0\nvips:\n  - address: 198.18.100.1\n    port: 80\n"

static tg_l4_config_t *cfg_ok(const char *y)
{
	tg_l4_config_t *c = NULL;
	char err[TG_L4_ERR_MAX];
	if (tg_l4_config_parse(y, strlen(y), &c, err, sizeof(err)) != 0)
		fail_msg("rejected: %s\n--\n%s", err, y);
	return c;
}

static void cfg_err(const char *y, const char *want)
{
	tg_l4_config_t *c = NULL;
	char err[TG_L4_ERR_MAX];
	int rc = tg_l4_config_parse(y, strlen(y), &c, err, sizeof(err));
	if (rc == 0) {
		tg_l4_config_free(c);
		fail_msg("accepted, wanted \"%s\"\n--\n%s", want, y);
	}
	assert_null(c);
	if (strcmp(err, want) != 0)
		fail_msg("got  \"%s\"\nwant \"%s\"", err, want);
}

static void test_config_section(void **state)
{
	(void)state;
	tg_l4_config_t *c = cfg_ok(CFG_HEAD "bgp:\n  local-as: 65001\n  neighbors:\n"
					    "    - address: 198.18.2.1\n      remote-as: 65000\n");
	const tg_l4_bgp_cfg_t *b = &c->bgp;
	assert_true(b->enabled);
	assert_int_equal(b->local_as, 65001);
	assert_false(b->has_router_id);
	assert_int_equal(b->hold_time_s, 90);
	assert_int_equal(b->withdraw_delay_ms, 5000);
	assert_int_equal(b->listen_port, 179);
	assert_int_equal(b->n_neighbors, 1);
	assert_int_equal(b->neighbors[0].remote_as, 65000);
	assert_int_equal(b->neighbors[0].port, 179);
	tg_l4_config_t *d = cfg_ok(
	    CFG_HEAD
	    "bgp:\n  local-as: 4200000001\n  router-id: 198.18.2.10\n  hold-time: 9s\n"
	    "  withdraw-delay: 2s\n  listen-port: 0\n  next-hop-v4: 198.18.2.10\n"
	    "  next-hop-v6: fd00:7467:2::10\n  neighbors:\n"
	    "    - address: 198.18.2.1\n      remote-as: 65000\n"
	    "    - address: fd00:7467:2::1\n      remote-as: 4200000001\n      port: 1179\n");
	b = &d->bgp;
	assert_int_equal(b->local_as, 4200000001u);
	assert_true(b->has_router_id);
	assert_int_equal(ntohl(b->router_id.s_addr), 0xc612020a);
	assert_int_equal(b->hold_time_s, 9);
	assert_int_equal(b->withdraw_delay_ms, 2000);
	assert_int_equal(b->listen_port, 0);
	assert_true(b->has_next_hop4 && b->has_next_hop6);
	assert_int_equal(b->n_neighbors, 2);
	assert_int_equal(b->neighbors[1].ip.family, AF_INET6);
	assert_int_equal(b->neighbors[1].port, 1179);
	assert_true(tg_l4_bgp_cfg_eq(&c->bgp, &c->bgp));
	assert_false(tg_l4_bgp_cfg_eq(&c->bgp, &d->bgp));
	tg_l4_config_t *none = cfg_ok(CFG_HEAD);
	assert_false(none->bgp.enabled);
	assert_false(tg_l4_bgp_cfg_eq(&c->bgp, &none->bgp));
	tg_l4_config_free(c);
	tg_l4_config_free(d);
	tg_l4_config_free(none);
}

#define NB "  neighbors:\n    - address: 198.18.2.1\n      remote-as: 65000\n"

static void test_config_errors(void **state)
{
	(void)state;
	cfg_err(CFG_HEAD "bgp:\n" NB, "bgp: local-as is required");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n",
		"bgp: neighbors: at least one neighbor is required");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  neighbors: []\n",
		"bgp.neighbors: at least one neighbor is required");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 0\n" NB,
		"bgp.local-as: \"0\" is out of range (1..4294967295)");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 4294967296\n" NB,
		"bgp.local-as: \"4294967296\" is out of range (1..4294967295)");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 23456\n" NB,
		"bgp.local-as: 23456 is AS_TRANS (RFC 6793), not a usable AS number");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  router-id: fd00::1\n" NB,
		"bgp.router-id: expected an IPv4 address");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  router-id: 0.0.0.0\n" NB,
		"bgp.router-id: 0.0.0.0 is not a valid BGP identifier");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  hold-time: 2s\n" NB,
		"bgp.hold-time: 2000ms: the hold time is 0 (no keepalives) or whole seconds from "
		"3s");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  hold-time: 3500ms\n" NB,
		"bgp.hold-time: 3500ms: the hold time is 0 (no keepalives) or whole seconds from "
		"3s");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  withdraw-delay: 11m\n" NB,
		"bgp.withdraw-delay: \"11m\" is out of range (0ms..600s)");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  next-hop-v6: 198.18.2.10\n" NB,
		"bgp.next-hop-v6: expected an IPv6 address");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  med: 5\n" NB, "bgp.med: unknown key");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  neighbors:\n    - remote-as: 65000\n",
		"bgp.neighbors[0]: address is required");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  neighbors:\n    - address: 198.18.2.1\n",
		"bgp.neighbors[0]: remote-as is required");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n" NB
			 "    - address: 198.18.2.1\n      remote-as: 65002\n",
		"bgp.neighbors[1]: address 198.18.2.1 is already listed as neighbors[0]");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  neighbors:\n    - address: 198.18.2.x\n"
			 "      remote-as: 65000\n",
		"bgp.neighbors[0].address: \"198.18.2.x\" is not an IPv4 or IPv6 address");
	cfg_err(CFG_HEAD "bgp:\n  local-as: 65001\n  neighbors:\n    - address: 198.18.2.1\n"
			 "      remote-as: 65000\n      port: 0\n",
		"bgp.neighbors[0].port: \"0\" is out of range (1..65535)");
	cfg_err(CFG_HEAD "bgp: yes\n", "bgp: expected a mapping");
}

/* ---- the plane's VIP addresses ------------------------------------------------ */

static int f_ok(void *ctx, uint32_t id, const tg_l4_vip_cfg_t *v)
{
	(void)ctx, (void)id, (void)v;
	return 0;
}
static int f_id(void *ctx, uint32_t id)
{
	(void)ctx, (void)id;
	return 0;
}
static int f_real(void *ctx, uint32_t id, const tg_l4_ip_t *a)
{
	(void)ctx, (void)id, (void)a;
	return 0;
}
static int f_swap(void *ctx, uint32_t id, const uint32_t *t, uint32_t size)
{
	(void)ctx, (void)id, (void)t, (void)size;
	return 0;
}

static void test_plane_vip_addrs(void **state)
{
	(void)state;
	tg_l4_dp_ops_t ops = {.vip_set = f_ok,
			      .vip_del = f_id,
			      .real_set = f_real,
			      .real_invalidate = f_id,
			      .maglev_swap = f_swap};
	tg_l4_plane_t *p;
	assert_int_equal(tg_l4_plane_create(&ops, &p), 0);
	tg_l4_vip_addr_t va[TG_L4_MAX_VIPS];
	assert_int_equal(tg_l4_plane_vip_addrs(p, va, TG_L4_MAX_VIPS), 0);
	/* A: port 80 with a real, port 443 without; B: no real at all. */
	const char *y = "interface: eth0\nvips:\n"
			"  - address: 198.18.100.1\n    port: 80\n    ring-size: 13\n"
			"    reals:\n      - address: 198.18.2.11\n"
			"  - address: 198.18.100.1\n    port: 443\n    ring-size: 13\n"
			"  - address: fd00:7467:100::1\n    port: 80\n    ring-size: 13\n";
	char err[TG_L4_ERR_MAX];
	assert_int_equal(tg_l4_plane_apply(p, cfg_ok(y), 0, err, sizeof(err)), 0);
	size_t n = tg_l4_plane_vip_addrs(p, va, TG_L4_MAX_VIPS);
	assert_int_equal(n, 2);
	assert_true(tg_l4_ip_eq(&va[0].ip, &(tg_l4_ip_t){0}) == false);
	tg_l4_ip_t a = ip("198.18.100.1"), b6 = ip("fd00:7467:100::1");
	assert_true(tg_l4_ip_eq(&va[0].ip, &a));
	assert_true(va[0].usable);
	assert_true(tg_l4_ip_eq(&va[1].ip, &b6));
	assert_false(va[1].usable);
	/* Every real unhealthy: fail open, still usable. */
	tg_health_target_t *t;
	int nt = tg_l4_plane_health_targets(p, &t);
	assert_int_equal(nt, 1);
	tg_l4_plane_set_health(p, t[0].key, false, 1);
	free(t);
	n = tg_l4_plane_vip_addrs(p, va, TG_L4_MAX_VIPS);
	assert_true(va[0].usable);
	/* Room for one: the first address. */
	assert_int_equal(tg_l4_plane_vip_addrs(p, va, 1), 1);
	/* A reload that removes A's real: A is unusable; removing A: gone. */
	const char *y2 = "interface: eth0\nvips:\n"
			 "  - address: 198.18.100.1\n    port: 80\n    ring-size: 13\n"
			 "    deregistration-delay: 0s\n"
			 "  - address: fd00:7467:100::1\n    port: 80\n    ring-size: 13\n"
			 "    reals:\n      - address: fd00:7467:2::11\n";
	assert_int_equal(tg_l4_plane_apply(p, cfg_ok(y2), 2, err, sizeof(err)), 0);
	n = tg_l4_plane_vip_addrs(p, va, TG_L4_MAX_VIPS);
	assert_int_equal(n, 2);
	assert_false(va[0].usable);
	assert_true(va[1].usable);
	const char *y3 = "interface: eth0\nvips:\n"
			 "  - address: fd00:7467:100::1\n    port: 80\n    ring-size: 13\n"
			 "    reals:\n      - address: fd00:7467:2::11\n";
	assert_int_equal(tg_l4_plane_apply(p, cfg_ok(y3), 3, err, sizeof(err)), 0);
	n = tg_l4_plane_vip_addrs(p, va, TG_L4_MAX_VIPS);
	assert_int_equal(n, 1);
	assert_true(tg_l4_ip_eq(&va[0].ip, &b6));
	tg_l4_plane_free(p);
}

/* ---- the session, against a peer on a socketpair ------------------------------ */

#define T0 1000000ull /* arbitrary start of the speaker's clock */

/* Reads one whole message from fd (waiting up to a second); returns its
 * length, 0 on EOF, -1 when nothing came. */
static int peer_read(int fd, uint8_t *buf)
{
	size_t got = 0, want = TG_BGP_HDR_LEN;
	while (got < want) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 1000) != 1)
			return -1;
		ssize_t r = recv(fd, buf + got, want - got, 0);
		if (r <= 0)
			return got == 0 && r == 0 ? 0 : -1;
		got += (size_t)r;
		if (got == TG_BGP_HDR_LEN)
			want = (size_t)buf[16] << 8 | buf[17];
		if (want < TG_BGP_HDR_LEN || want > TG_BGP_MAX_LEN)
			return -1;
	}
	return (int)got;
}

/* True when fd has nothing to read right now. */
static bool peer_quiet(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 0;
}

static void peer_send(int fd, const uint8_t *m, size_t len)
{
	assert_int_equal(send(fd, m, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Reads a message and checks it is a NOTIFICATION code/subcode. */
static void expect_notification(int fd, uint8_t code, uint8_t sub)
{
	uint8_t m[TG_BGP_MAX_LEN];
	int n = peer_read(fd, m);
	assert_true(n >= 21);
	assert_int_equal(m[18], TG_BGP_NOTIFICATION);
	if (m[19] != code || m[20] != sub)
		fail_msg("NOTIFICATION %u/%u, wanted %u/%u", m[19], m[20], code, sub);
}

static void expect_type(int fd, uint8_t type)
{
	uint8_t m[TG_BGP_MAX_LEN];
	int n = peer_read(fd, m);
	if (n < TG_BGP_HDR_LEN || m[18] != type)
		fail_msg("read %d bytes of type %d, wanted type %u", n, n > 18 ? m[18] : -1, type);
}

/* A speaker for AS 65001 (router id 10.0.0.1, hold 9 s, fixed next hops)
 * with one neighbor of AS remote_as at 127.0.0.1:port, never listening. */
typedef struct fx {
	tg_l4_config_t *cfg; /* its configuration */
	tg_bgp_t *b;	     /* the speaker */
	int peer;	     /* our end of the socketpair (the "router") */
} fx_t;

static void fx_init(fx_t *f, uint32_t remote_as, unsigned port)
{
	char y[1024];
	snprintf(y, sizeof(y),
		 CFG_HEAD "bgp:\n  local-as: 65001\n  router-id: 10.0.0.1\n  hold-time: 9s\n"
			  "  listen-port: 0\n  next-hop-v4: 192.0.2.10\n"
			  "  next-hop-v6: \"2001:db8::10\"\n  neighbors:\n"
			  "    - address: 127.0.0.1\n      remote-as: %u\n      port: %u\n",
		 remote_as, port);
	f->cfg = cfg_ok(y);
	char err[256];
	assert_int_equal(tg_bgp_create(&f->cfg->bgp, "lo", &f->b, err, sizeof(err)), 0);
	f->peer = -1;
}

static void fx_free(fx_t *f)
{
	tg_bgp_free(f->b);
	tg_l4_config_free(f->cfg);
	if (f->peer >= 0)
		close(f->peer);
}

static void set_routes(fx_t *f, bool v4, bool v6, bool extra)
{
	tg_bgp_route_t r[3] = {
	    {.ip = ip("198.18.100.1"), .announce = v4},
	    {.ip = ip("fd00:7467:100::1"), .announce = v6},
	    {.ip = ip("198.18.100.2"), .announce = extra},
	};
	tg_bgp_set_routes(f->b, r, 3);
}

/* Connects a socketpair peer and checks our OPEN. */
static void fx_connect(fx_t *f, uint64_t now)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->peer = sv[1];
	assert_int_equal(tg_bgp_adopt(f->b, 0, sv[0], now), 0);
	assert_int_equal(tg_bgp_neighbor_state(f->b, 0), TG_BGP_OPENSENT);
	uint8_t m[TG_BGP_MAX_LEN], want[64];
	int n = peer_read(f->peer, m);
	int wn = tg_bgp_encode_open(want, sizeof(want), 65001, 9, 0x0a000001);
	assert_bytes(m, (size_t)n, want, (size_t)wn);
}

/* Brings the session up: OPEN (AS as, hold, given OPEN bytes or ours), our
 * KEEPALIVE, their KEEPALIVE. */
static void fx_establish(fx_t *f, const uint8_t *open, size_t open_len, uint64_t now)
{
	peer_send(f->peer, open, open_len);
	tg_bgp_run(f->b, now);
	assert_int_equal(tg_bgp_neighbor_state(f->b, 0), TG_BGP_OPENCONFIRM);
	expect_type(f->peer, TG_BGP_KEEPALIVE);
	uint8_t ka[19];
	tg_bgp_encode_keepalive(ka, sizeof(ka));
	peer_send(f->peer, ka, sizeof(ka));
	tg_bgp_run(f->b, now);
	assert_int_equal(tg_bgp_neighbor_state(f->b, 0), TG_BGP_ESTABLISHED);
}

static bool metrics_have(tg_bgp_t *b, const char *line)
{
	tg_sbuf_t s = {0};
	tg_bgp_metrics(b, &s);
	bool ok = s.data && strstr(s.data, line) != NULL;
	if (!ok)
		print_message("metrics:\n%s", s.data ? s.data : "");
	tg_sbuf_free(&s);
	return ok;
}

static void test_session_lifecycle(void **state)
{
	(void)state;
	fx_t f;
	fx_init(&f, 65000, 1);
	set_routes(&f, true, true, false);
	assert_true(metrics_have(f.b, "tidegate_bgp_session_up{neighbor=\"127.0.0.1\"} 0\n"));
	fx_connect(&f, T0);
	uint8_t open[64], m[TG_BGP_MAX_LEN], want[TG_BGP_MAX_LEN];
	int on = tg_bgp_encode_open(open, sizeof(open), 65000, 6, 0x0a000002);
	fx_establish(&f, open, (size_t)on, T0 + 10);

	/* The announcements: IPv4 then IPv6, with the configured next hops;
	 * 198.18.100.2 is known but not to be announced. */
	tg_bgp_path_t p = path(65001, true, true);
	inet_pton(AF_INET, "192.0.2.10", &p.next_hop4);
	inet_pton(AF_INET6, "2001:db8::10", &p.next_hop6);
	tg_l4_ip_t v4 = ip("198.18.100.1"), v6 = ip("fd00:7467:100::1"), x = ip("198.18.100.2");
	size_t used;
	int n = peer_read(f.peer, m);
	int wn = tg_bgp_encode_update(want, sizeof(want), &v4, 1, false, &p, &used);
	assert_bytes(m, (size_t)n, want, (size_t)wn);
	n = peer_read(f.peer, m);
	wn = tg_bgp_encode_update(want, sizeof(want), &v6, 1, false, &p, &used);
	assert_bytes(m, (size_t)n, want, (size_t)wn);
	assert_true(peer_quiet(f.peer));
	assert_true(tg_bgp_neighbor_has(f.b, 0, &v4));
	assert_false(tg_bgp_neighbor_has(f.b, 0, &x));
	assert_true(metrics_have(f.b, "tidegate_bgp_session_up{neighbor=\"127.0.0.1\"} 1\n"));
	assert_true(metrics_have(f.b, "tidegate_bgp_vip_announced{vip=\"198.18.100.1\"} 1\n"));
	assert_true(metrics_have(f.b, "tidegate_bgp_vip_announced{vip=\"198.18.100.2\"} 0\n"));
	assert_true(
	    metrics_have(f.b, "tidegate_bgp_updates_sent_total{neighbor=\"127.0.0.1\"} 2\n"));

	/* The same set again sends nothing; a change sends the difference. */
	set_routes(&f, true, true, false);
	assert_true(peer_quiet(f.peer));
	set_routes(&f, false, true, true);
	n = peer_read(f.peer, m);
	wn = tg_bgp_encode_update(want, sizeof(want), &v4, 1, true, NULL, &used);
	assert_bytes(m, (size_t)n, want, (size_t)wn);
	n = peer_read(f.peer, m);
	wn = tg_bgp_encode_update(want, sizeof(want), &x, 1, false, &p, &used);
	assert_bytes(m, (size_t)n, want, (size_t)wn);
	assert_false(tg_bgp_neighbor_has(f.b, 0, &v4));
	assert_true(metrics_have(f.b, "tidegate_bgp_vip_announced{vip=\"198.18.100.1\"} 0\n"));
	/* A VIP that leaves the list altogether is withdrawn too. */
	tg_bgp_route_t only6 = {.ip = v6, .announce = true};
	tg_bgp_set_routes(f.b, &only6, 1);
	n = peer_read(f.peer, m);
	wn = tg_bgp_encode_update(want, sizeof(want), &x, 1, true, NULL, &used);
	assert_bytes(m, (size_t)n, want, (size_t)wn);
	assert_true(peer_quiet(f.peer));

	/* Their hold time (6 s) wins over ours (9 s): KEEPALIVE every 2 s;
	 * their UPDATEs are parsed and ignored but count as life. */
	uint64_t t = T0 + 10;
	uint64_t next = tg_bgp_run(f.b, t);
	assert_int_equal(next, t + 2000);
	assert_true(peer_quiet(f.peer));
	tg_bgp_run(f.b, t + 2000);
	expect_type(f.peer, TG_BGP_KEEPALIVE);
	static const uint8_t upd[] = {M16, 0x00, 48,  2, 0, 0, 0,  20, 0x40, 1,	   1,
				      0,   0x40, 2,   6, 2, 1, 0,  0,  0xfd, 0xe8, 0x40,
				      3,   4,	 127, 0, 0, 1, 24, 10, 1,    2};
	peer_send(f.peer, upd, sizeof(upd));
	tg_bgp_run(f.b, t + 5000);
	assert_int_equal(tg_bgp_neighbor_state(f.b, 0), TG_BGP_ESTABLISHED);
	expect_type(f.peer, TG_BGP_KEEPALIVE); /* due at t + 4000 */
	/* Silence for the hold time: NOTIFICATION Hold Timer Expired, closed. */
	tg_bgp_run(f.b, t + 5000 + 6000);
	expect_notification(f.peer, 4, 0);
	assert_int_equal(peer_read(f.peer, m), 0);
	assert_int_equal(tg_bgp_neighbor_state(f.b, 0), TG_BGP_IDLE);
	assert_false(tg_bgp_neighbor_has(f.b, 0, &v6));
	assert_true(metrics_have(f.b, "tidegate_bgp_session_up{neighbor=\"127.0.0.1\"} 0\n"));
	fx_free(&f);
}

/* Each bad first message from the peer gets its NOTIFICATION and a close. */
static void test_session_errors(void **state)
{
	(void)state;
	uint8_t m[TG_BGP_MAX_LEN], open[64];
	struct {
		uint32_t as;	 /* the peer's AS in our configuration */
		uint8_t msg[64]; /* what the peer sends after our OPEN */
		size_t len;	 /* its length (0: an OPEN for AS 65000) */
		uint8_t code;	 /* NOTIFICATION expected */
		uint8_t sub;	 /* its subcode */
	} cases[] = {
	    /* OPEN from AS 65000 while we expect 65002: Bad Peer AS. */
	    {65002, {0}, 0, 2, 2},
	    /* UPDATE before OPEN: FSM error in OpenSent. */
	    {65000, {M16, 0x00, 23, 2, 0, 0, 0, 0}, 23, 5, 1},
	    /* KEEPALIVE before OPEN. */
	    {65000, {M16, 0x00, 19, 4}, 19, 5, 1},
	    /* Garbage. */
	    {65000, {'G', 'E', 'T', ' ', '/'}, 5, 1, 1},
	    /* OPEN with hold time 1. */
	    {65000, {M16, 0x00, 29, 1, 4, 0xfd, 0xe8, 0, 1, 1, 1, 1, 1, 0}, 29, 2, 6},
	    /* iBGP peer using our router id. */
	    {65001, {M16, 0x00, 29, 1, 4, 0xfd, 0xe9, 0, 9, 10, 0, 0, 1, 0}, 29, 2, 3},
	};
	for (size_t i = 0; i < TG_ARRAY_SIZE(cases); i++) {
		fx_t f;
		fx_init(&f, cases[i].as, 1);
		fx_connect(&f, T0);
		size_t len = cases[i].len;
		const uint8_t *msg = cases[i].msg;
		if (len == 0) {
			len = (size_t)tg_bgp_encode_open(open, sizeof(open), 65000, 9, 0x0a000002);
			msg = open;
		}
		peer_send(f.peer, msg, len);
		tg_bgp_run(f.b, T0 + 1);
		expect_notification(f.peer, cases[i].code, cases[i].sub);
		assert_int_equal(peer_read(f.peer, m), 0);
		assert_int_equal(tg_bgp_neighbor_state(f.b, 0), TG_BGP_IDLE);
		fx_free(&f);
	}

	/* OPEN on an established session: FSM error in Established. */
	fx_t f;
	fx_init(&f, 65000, 1);
	fx_connect(&f, T0);
	int on = tg_bgp_encode_open(open, sizeof(open), 65000, 9, 0x0a000002);
	fx_establish(&f, open, (size_t)on, T0);
	peer_send(f.peer, open, (size_t)on);
	tg_bgp_run(f.b, T0 + 1);
	expect_notification(f.peer, 5, 3);
	fx_free(&f);

	/* The peer's NOTIFICATION ends the session without an answer. */
	fx_init(&f, 65000, 1);
	fx_connect(&f, T0);
	fx_establish(&f, open, (size_t)on, T0);
	int nn = tg_bgp_encode_notification(m, sizeof(m), 6, 2, (const uint8_t *)"\002hi", 3);
	peer_send(f.peer, m, (size_t)nn);
	tg_bgp_run(f.b, T0 + 1);
	assert_int_equal(peer_read(f.peer, m), 0);
	assert_int_equal(tg_bgp_neighbor_state(f.b, 0), TG_BGP_IDLE);
	fx_free(&f);
}

/* A peer without multiprotocol capabilities gets IPv4 only (RFC 4760); an
 * iBGP peer gets an empty AS_PATH and LOCAL_PREF; a 2-octet peer gets
 * 2-byte AS numbers. */
static void test_session_capabilities(void **state)
{
	(void)state;
	fx_t f;
	uint8_t m[TG_BGP_MAX_LEN];
	fx_init(&f, 65001, 1);
	set_routes(&f, true, true, false);
	fx_connect(&f, T0);
	static const uint8_t bare[] = {M16, 0x00, 29, 1, 4, 0xfd, 0xe9, 0, 9, 10, 0, 0, 2, 0};
	fx_establish(&f, bare, sizeof(bare), T0);
	static const uint8_t want[] = {
	    M16,  0x00, 49, 2,	 0x00, 0x00, 0x00, 21, /* header, lengths */
	    0x40, 1,	1,  0,			       /* ORIGIN */
	    0x40, 2,	0,			       /* AS_PATH empty */
	    0x40, 3,	4,  192, 0,    2,    10,       /* NEXT_HOP */
	    0x40, 5,	4,  0,	 0,    0,    100,      /* LOCAL_PREF */
	    32,	  198,	18, 100, 1,		       /* 198.18.100.1/32 */
	};
	int n = peer_read(f.peer, m);
	assert_bytes(m, (size_t)n, want, sizeof(want));
	assert_true(peer_quiet(f.peer)); /* no IPv6 */
	fx_free(&f);

	/* eBGP, 2-octet peer: AS_PATH with a 2-byte 65001. */
	fx_init(&f, 65000, 1);
	set_routes(&f, true, false, false);
	fx_connect(&f, T0);
	static const uint8_t old[] = {M16, 0x00, 37, 1, 4, 0xfd, 0xe8, 0, 9, 10, 0,
				      0,   2,	 8,  2, 6, 1,	 4,    0, 1, 0,	 1};
	fx_establish(&f, old, sizeof(old), T0);
	n = peer_read(f.peer, m);
	static const uint8_t aspath2[] = {0x40, 2, 4, 2, 1, 0xfd, 0xe9};
	assert_true(n > 30);
	assert_memory_equal(m + 19 + 4 + 4, aspath2, sizeof(aspath2));
	fx_free(&f);
}

static void test_shutdown_sends_cease(void **state)
{
	(void)state;
	fx_t f;
	uint8_t m[TG_BGP_MAX_LEN], open[64];
	fx_init(&f, 65000, 1);
	fx_connect(&f, T0);
	int on = tg_bgp_encode_open(open, sizeof(open), 65000, 9, 0x0a000002);
	fx_establish(&f, open, (size_t)on, T0);
	tg_bgp_shutdown(f.b, "bye");
	int n = peer_read(f.peer, m);
	static const uint8_t cease[] = {M16, 0x00, 25, 3, 6, 2, 3, 'b', 'y', 'e'};
	assert_bytes(m, (size_t)n, cease, sizeof(cease));
	assert_int_equal(peer_read(f.peer, m), 0);
	/* No reconnect planned, no new connection taken. */
	assert_int_equal(tg_bgp_run(f.b, T0 + 1), UINT64_MAX);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(tg_bgp_adopt(f.b, 0, sv[0], T0 + 2), -EINVAL);
	close(sv[1]);
	fx_free(&f);
}

/* A TCP listener on loopback standing in for the router's port 179. */
static int listener(unsigned *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* Runs the speaker until the neighbor is in state want, polling its fd. */
static void pump_until(tg_bgp_t *b, uint64_t now, tg_bgp_state_t want)
{
	for (int i = 0; i < 100 && tg_bgp_neighbor_state(b, 0) != want; i++) {
		struct pollfd p = {.fd = tg_bgp_fd(b), .events = POLLIN};
		poll(&p, 1, 20);
		tg_bgp_run(b, now);
	}
	assert_int_equal(tg_bgp_neighbor_state(b, 0), want);
}

/* Both sides open a connection; RFC 4271 6.8 keeps the one opened by the
 * higher BGP identifier. */
static void collision(uint32_t peer_id, bool keep_ours)
{
	unsigned port;
	int lfd = listener(&port);
	fx_t f;
	fx_init(&f, 65000, port);
	assert_int_equal(tg_bgp_start(f.b, T0), 0);
	tg_bgp_run(f.b, T0); /* connects out */
	int out = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(out >= 0);
	pump_until(f.b, T0, TG_BGP_OPENSENT);
	expect_type(out, TG_BGP_OPEN);
	/* ... and the peer's own connection arrives. */
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(tg_bgp_adopt(f.b, 0, sv[0], T0), 0);
	expect_type(sv[1], TG_BGP_OPEN);
	uint8_t open[64], ka[19];
	int on = tg_bgp_encode_open(open, sizeof(open), 65000, 9, peer_id);
	tg_bgp_encode_keepalive(ka, sizeof(ka));
	/* OPEN on our connection first: OpenConfirm there. */
	peer_send(out, open, (size_t)on);
	tg_bgp_run(f.b, T0 + 1);
	expect_type(out, TG_BGP_KEEPALIVE);
	/* OPEN on theirs: collision, decided by identifier. */
	peer_send(sv[1], open, (size_t)on);
	tg_bgp_run(f.b, T0 + 2);
	int lose = keep_ours ? sv[1] : out, keep = keep_ours ? out : sv[1];
	expect_notification(lose, 6, 7);
	if (!keep_ours)
		expect_type(keep, TG_BGP_KEEPALIVE);
	peer_send(keep, ka, sizeof(ka));
	tg_bgp_run(f.b, T0 + 3);
	assert_int_equal(tg_bgp_neighbor_state(f.b, 0), TG_BGP_ESTABLISHED);
	assert_true(metrics_have(f.b, "tidegate_bgp_session_up{neighbor=\"127.0.0.1\"} 1\n"));
	close(out);
	close(sv[1]);
	close(lfd);
	fx_free(&f);
}

static void test_collision_higher_peer_id(void **state)
{
	(void)state;
	collision(0x0a000002, false); /* 10.0.0.2 > our 10.0.0.1: theirs stays */
}

static void test_collision_lower_peer_id(void **state)
{
	(void)state;
	collision(0x09000001, true); /* 9.0.0.1 < 10.0.0.1: ours stays */
}

/* After a failure the next attempt waits 75-100% of a delay that doubles up
 * to 30 s and starts over once a session was established. */
static void test_reconnect_backoff(void **state)
{
	(void)state;
	unsigned port;
	int lfd = listener(&port);
	close(lfd); /* nothing listens there now: connections are refused */
	fx_t f;
	fx_init(&f, 65000, port);
	assert_int_equal(tg_bgp_start(f.b, T0), 0);
	uint64_t now = T0, want = 1000;
	for (int round = 0; round < 7; round++) {
		tg_bgp_run(f.b, now); /* connect attempt */
		assert_int_equal(tg_bgp_neighbor_state(f.b, 0), TG_BGP_CONNECT);
		pump_until(f.b, now, TG_BGP_IDLE);
		uint64_t next = tg_bgp_run(f.b, now);
		assert_true(next > now);
		uint64_t d = next - now;
		if (d > want || d < want * 3 / 4)
			fail_msg("round %d: retry after %llums, wanted 75-100%% of %llums", round,
				 (unsigned long long)d, (unsigned long long)want);
		now = next;
		want = TG_MIN(want * 2, 30000);
	}
	/* A session resets the delay. */
	fx_connect(&f, now);
	uint8_t open[64];
	int on = tg_bgp_encode_open(open, sizeof(open), 65000, 9, 0x0a000002);
	fx_establish(&f, open, (size_t)on, now);
	close(f.peer);
	f.peer = -1;
	tg_bgp_run(f.b, now);
	assert_int_equal(tg_bgp_neighbor_state(f.b, 0), TG_BGP_IDLE);
	uint64_t next = tg_bgp_run(f.b, now);
	assert_true(next - now <= 1000 && next - now >= 750);
	fx_free(&f);
}

/* The router id must come from somewhere. */
static void test_create_errors(void **state)
{
	(void)state;
	tg_l4_config_t *c = cfg_ok(CFG_HEAD "bgp:\n  local-as: 65001\n" NB);
	tg_bgp_t *b = NULL;
	char err[256];
	/* No router-id and no IPv4 address on the interface to take it from. */
	assert_int_equal(tg_bgp_create(&c->bgp, "tg-no-such-if", &b, err, sizeof(err)), -EINVAL);
	assert_null(b);
	assert_string_equal(err, "bgp.router-id: interface tg-no-such-if has no IPv4 address to "
				 "take it from; set bgp.router-id");
	/* lo has 127.0.0.1. */
	assert_int_equal(tg_bgp_create(&c->bgp, "lo", &b, err, sizeof(err)), 0);
	tg_bgp_free(b);
	tg_bgp_free(NULL);
	tg_l4_config_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encode_open),
	    cmocka_unit_test(test_encode_keepalive_notification),
	    cmocka_unit_test(test_encode_update_v4),
	    cmocka_unit_test(test_encode_update_v6),
	    cmocka_unit_test(test_parse_header_errors),
	    cmocka_unit_test(test_parse_open_errors),
	    cmocka_unit_test(test_parse_update_errors),
	    cmocka_unit_test(test_config_section),
	    cmocka_unit_test(test_config_errors),
	    cmocka_unit_test(test_plane_vip_addrs),
	    cmocka_unit_test(test_session_lifecycle),
	    cmocka_unit_test(test_session_errors),
	    cmocka_unit_test(test_session_capabilities),
	    cmocka_unit_test(test_shutdown_sends_cease),
	    cmocka_unit_test(test_collision_higher_peer_id),
	    cmocka_unit_test(test_collision_lower_peer_id),
	    cmocka_unit_test(test_reconnect_backoff),
	    cmocka_unit_test(test_create_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

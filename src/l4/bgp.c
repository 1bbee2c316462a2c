/*
 * bgp.c - BGP-4 messages (parse, encode) and the speaker that announces VIPs.
 *
 * The speaker runs on the balancer's control thread: its sockets sit in an
 * epoll set of their own whose fd the control loop polls next to the signal
 * and health fds, and tg_bgp_run returns the next timer deadline so that the
 * loop's wait covers it. A thread of its own would buy nothing (a handful of
 * small messages a second) and would need the plane's lock to read the VIP
 * set; this way route changes are computed and sent in the same iteration
 * that changed the plane. The only other thread that looks inside is the
 * admin thread (metrics), under `lock`.
 *
 * Per neighbor there are at most two connections: the one we opened
 * (conn[0]) and the one the neighbor opened (conn[1]). Both run the OPEN
 * exchange; when both get far enough, RFC 4271 6.8 keeps the one opened by
 * the side with the higher BGP identifier, and the other is closed with
 * Cease / Connection Collision Resolution. Once a connection is Established
 * the other one is closed too.
 */
#include "l4/bgp.h"
#include "core/common.h"
#include "core/log.h"
#include "core/rand.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- byte helpers -------------------------------------------------------- */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- parsing ------------------------------------------------------------- */

/* Attribute type codes. */
enum {
	A_ORIGIN = 1,
	A_AS_PATH = 2,
	A_NEXT_HOP = 3,
	A_MED = 4,
	A_LOCAL_PREF = 5,
	A_ATOMIC_AGGREGATE = 6,
	A_AGGREGATOR = 7,
	A_COMMUNITIES = 8,
	A_MP_REACH = 14,
	A_MP_UNREACH = 15,
	A_AS4_PATH = 17,
	A_AS4_AGGREGATOR = 18,
	A_LARGE_COMMUNITIES = 32,
};

/* Attribute flag bits. */
#define F_OPTIONAL   0x80
#define F_TRANSITIVE 0x40
#define F_PARTIAL    0x20
#define F_EXTENDED   0x10

static int fail(tg_bgp_error_t *e, uint8_t code, uint8_t sub, const uint8_t *data, size_t dlen,
		const char *reason)
{
	e->code = code;
	e->subcode = sub;
	e->data = data;
	e->data_len = data ? dlen : 0;
	e->reason = reason;
	return TG_ERROR;
}

/* Walks a run of prefixes (length byte + significant bytes) of at most
 * maxbits each; counts them into *count. False when one is too long or runs
 * past len. */
static bool check_prefixes(const uint8_t *p, size_t len, unsigned maxbits, uint32_t *count)
{
	size_t i = 0;
	while (i < len) {
		unsigned bits = p[i];
		size_t bytes = (bits + 7) / 8;
		if (bits > maxbits || len - i - 1 < bytes)
			return false;
		i += 1 + bytes;
		(*count)++;
	}
	return true;
}

/* AS_PATH / AS4_PATH segments: type 1..4 (AS_SET, AS_SEQUENCE, AS_CONFED_*),
 * a non-zero count, count ASNs of asn_size bytes. */
static bool check_as_path(const uint8_t *p, size_t len, size_t asn_size)
{
	size_t i = 0;
	while (i < len) {
		if (len - i < 2 || p[i] < 1 || p[i] > 4 || p[i + 1] == 0)
			return false;
		size_t bytes = (size_t)p[i + 1] * asn_size;
		if (len - i - 2 < bytes)
			return false;
		i += 2 + bytes;
	}
	return true;
}

static int parse_open(const uint8_t *b, size_t len, tg_bgp_open_t *o, tg_bgp_error_t *e)
{
	/* len >= 10: checked with the header. */
	o->version = b[0];
	if (o->version != 4) {
		put16(e->own, 4); /* the version we support */
		return fail(e, TG_BGP_ERR_OPEN, 1, e->own, 2, "unsupported BGP version");
	}
	o->my_as = get16(b + 1);
	o->hold_time = get16(b + 3);
	o->bgp_id = get32(b + 5);
	size_t optlen = b[9];
	const uint8_t *p = b + 10;
	size_t plen = len - 10;
	bool ext = false;
	/* RFC 9072: 255 followed by type 255 announces 2-byte lengths. */
	if (optlen == 255 && plen >= 3 && p[0] == 255) {
		ext = true;
		optlen = get16(p + 1);
		p += 3;
		plen -= 3;
	}
	if (optlen != plen)
		return fail(e, TG_BGP_ERR_OPEN, 0, NULL, 0,
			    "optional parameters length does not match the message length");
	if (o->hold_time == 1 || o->hold_time == 2)
		return fail(e, TG_BGP_ERR_OPEN, 6, b + 3, 2, "hold time of 1 or 2 seconds");
	if (o->bgp_id == 0)
		return fail(e, TG_BGP_ERR_OPEN, 3, b + 5, 4, "BGP identifier 0");
	size_t i = 0;
	while (i < plen) {
		size_t hdr = ext ? 3 : 2;
		if (plen - i < hdr)
			return fail(e, TG_BGP_ERR_OPEN, 0, NULL, 0, "truncated optional parameter");
		uint8_t type = p[i];
		size_t vlen = ext ? get16(p + i + 1) : p[i + 1];
		if (plen - i - hdr < vlen)
			return fail(e, TG_BGP_ERR_OPEN, 0, NULL, 0,
				    "optional parameter overruns the message");
		const uint8_t *v = p + i + hdr;
		if (type != 2) /* only Capabilities (RFC 5492) */
			return fail(e, TG_BGP_ERR_OPEN, 4, NULL, 0,
				    "unsupported optional parameter");
		size_t k = 0;
		while (k < vlen) {
			if (vlen - k < 2 || vlen - k - 2 < v[k + 1])
				return fail(e, TG_BGP_ERR_OPEN, 0, NULL, 0,
					    "capability overruns its parameter");
			uint8_t code = v[k], clen = v[k + 1];
			const uint8_t *c = v + k + 2;
			if (code == 1) { /* multiprotocol (RFC 4760) */
				if (clen != 4)
					return fail(e, TG_BGP_ERR_OPEN, 0, NULL, 0,
						    "multiprotocol capability is not 4 bytes");
				o->has_mp = true;
				uint16_t afi = get16(c);
				if (afi == 1 && c[3] == 1)
					o->families |= TG_BGP_FAM_V4;
				if (afi == 2 && c[3] == 1)
					o->families |= TG_BGP_FAM_V6;
			} else if (code == 65) { /* 4-octet AS (RFC 6793) */
				if (clen != 4)
					return fail(e, TG_BGP_ERR_OPEN, 0, NULL, 0,
						    "4-octet AS capability is not 4 bytes");
				o->has_as4 = true;
				o->as4 = get32(c);
				if (o->as4 == 0)
					return fail(e, TG_BGP_ERR_OPEN, 2, c, 4, "AS number 0");
			}
			k += 2 + (size_t)clen;
		}
		i += hdr + vlen;
	}
	return TG_OK;
}

/* Expected flags of the attributes we know: optional, transitive, and whether
 * the partial bit may be set. */
static bool flags_ok(uint8_t type, uint8_t flags, bool *known)
{
	bool opt = flags & F_OPTIONAL, trans = flags & F_TRANSITIVE, part = flags & F_PARTIAL;
	*known = true;
	switch (type) {
	case A_ORIGIN:
	case A_AS_PATH:
	case A_NEXT_HOP:
	case A_LOCAL_PREF:
	case A_ATOMIC_AGGREGATE:
		return !opt && trans && !part; /* well-known */
	case A_MED:
	case A_MP_REACH:
	case A_MP_UNREACH:
		return opt && !trans && !part; /* optional non-transitive */
	case A_AGGREGATOR:
	case A_COMMUNITIES:
	case A_AS4_PATH:
	case A_AS4_AGGREGATOR:
	case A_LARGE_COMMUNITIES:
		return opt && trans; /* optional transitive */
	default:
		*known = false;
		return true;
	}
}

/* MP_REACH_NLRI (reach) or MP_UNREACH_NLRI value. */
static int parse_mp(const uint8_t *v, size_t vlen, bool reach, const uint8_t *attr, size_t alen,
		    tg_bgp_update_t *u, tg_bgp_error_t *e)
{
	size_t fixed = reach ? 5 : 3;
	if (vlen < fixed)
		return fail(e, TG_BGP_ERR_UPDATE, 9, attr, alen, "MP attribute too short");
	uint16_t afi = get16(v);
	uint8_t safi = v[2];
	const uint8_t *nlri = v + 3;
	size_t nlen = vlen - 3;
	if (reach) {
		size_t nh = v[3];
		if (vlen - 5 < nh)
			return fail(e, TG_BGP_ERR_UPDATE, 9, attr, alen,
				    "MP_REACH_NLRI next hop overruns the attribute");
		bool nh_ok = (afi == 1 && (nh == 4 || nh == 16 || nh == 32)) ||
			     (afi == 2 && (nh == 16 || nh == 32));
		if (safi == 1 && (afi == 1 || afi == 2) && !nh_ok)
			return fail(e, TG_BGP_ERR_UPDATE, 9, attr, alen,
				    "MP_REACH_NLRI next hop has a bad length");
		nlri = v + 5 + nh;
		nlen = vlen - 5 - nh;
	}
	uint32_t *count = reach ? &u->mp_reach : &u->mp_unreach;
	if (safi == 1 && (afi == 1 || afi == 2) &&
	    !check_prefixes(nlri, nlen, afi == 1 ? 32 : 128, count))
		return fail(e, TG_BGP_ERR_UPDATE, 9, attr, alen, "bad prefix in an MP attribute");
	return TG_OK;
}

static int parse_update(const uint8_t *b, size_t len, bool as4, tg_bgp_update_t *u,
			tg_bgp_error_t *e)
{
	/* len >= 4: checked with the header. */
	size_t wlen = get16(b);
	if (len - 4 < wlen)
		return fail(e, TG_BGP_ERR_UPDATE, 1, NULL, 0,
			    "withdrawn routes length overruns the message");
	if (!check_prefixes(b + 2, wlen, 32, &u->withdrawn))
		return fail(e, TG_BGP_ERR_UPDATE, 10, NULL, 0, "bad prefix in Withdrawn Routes");
	size_t alen = get16(b + 2 + wlen);
	if (len - 4 - wlen < alen)
		return fail(e, TG_BGP_ERR_UPDATE, 1, NULL, 0,
			    "path attribute length overruns the message");
	const uint8_t *a = b + 4 + wlen;
	const uint8_t *nlri = a + alen;
	size_t nlen = len - 4 - wlen - alen;
	uint32_t seen[8] = {0};
	size_t i = 0;
	while (i < alen) {
		if (alen - i < 3)
			return fail(e, TG_BGP_ERR_UPDATE, 1, NULL, 0, "truncated path attribute");
		uint8_t flags = a[i], type = a[i + 1];
		size_t hdr = flags & F_EXTENDED ? 4 : 3;
		if (alen - i < hdr)
			return fail(e, TG_BGP_ERR_UPDATE, 1, NULL, 0, "truncated path attribute");
		size_t vlen = hdr == 4 ? get16(a + i + 2) : a[i + 2];
		if (alen - i - hdr < vlen)
			return fail(e, TG_BGP_ERR_UPDATE, 1, NULL, 0,
				    "path attribute overruns the attribute list");
		const uint8_t *attr = a + i, *v = a + i + hdr;
		size_t atl = hdr + vlen;
		if (seen[type / 32] & (1u << (type % 32)))
			return fail(e, TG_BGP_ERR_UPDATE, 1, NULL, 0,
				    "path attribute appears twice");
		seen[type / 32] |= 1u << (type % 32);
		if (type < 32)
			u->attrs |= 1u << type;
		bool known;
		if (!flags_ok(type, flags, &known))
			return fail(e, TG_BGP_ERR_UPDATE, 4, attr, atl, "bad attribute flags");
		if (!known && !(flags & F_OPTIONAL))
			return fail(e, TG_BGP_ERR_UPDATE, 2, attr, atl,
				    "unrecognized well-known attribute");
		int rc = TG_OK;
		switch (type) {
		case A_ORIGIN:
			if (vlen != 1)
				return fail(e, TG_BGP_ERR_UPDATE, 5, attr, atl,
					    "ORIGIN is not 1 byte");
			if (v[0] > 2)
				return fail(e, TG_BGP_ERR_UPDATE, 6, attr, atl, "bad ORIGIN value");
			break;
		case A_AS_PATH:
			if (!check_as_path(v, vlen, as4 ? 4 : 2))
				return fail(e, TG_BGP_ERR_UPDATE, 11, NULL, 0, "malformed AS_PATH");
			break;
		case A_NEXT_HOP:
			if (vlen != 4)
				return fail(e, TG_BGP_ERR_UPDATE, 5, attr, atl,
					    "NEXT_HOP is not 4 bytes");
			if (get32(v) == 0 || get32(v) == 0xffffffffu || (v[0] & 0xf0) == 0xe0)
				return fail(e, TG_BGP_ERR_UPDATE, 8, attr, atl,
					    "NEXT_HOP is not a unicast address");
			break;
		case A_MED:
		case A_LOCAL_PREF:
			if (vlen != 4)
				return fail(e, TG_BGP_ERR_UPDATE, 5, attr, atl,
					    "MED or LOCAL_PREF is not 4 bytes");
			break;
		case A_ATOMIC_AGGREGATE:
			if (vlen != 0)
				return fail(e, TG_BGP_ERR_UPDATE, 5, attr, atl,
					    "ATOMIC_AGGREGATE is not empty");
			break;
		case A_AGGREGATOR:
			if (vlen != (as4 ? 8u : 6u))
				return fail(e, TG_BGP_ERR_UPDATE, 5, attr, atl,
					    "AGGREGATOR has a bad length");
			break;
		case A_COMMUNITIES:
			if (vlen == 0 || vlen % 4 != 0)
				return fail(e, TG_BGP_ERR_UPDATE, 9, attr, atl,
					    "COMMUNITIES is not a list of 4-byte values");
			break;
		case A_LARGE_COMMUNITIES:
			if (vlen == 0 || vlen % 12 != 0)
				return fail(e, TG_BGP_ERR_UPDATE, 9, attr, atl,
					    "LARGE_COMMUNITY is not a list of 12-byte values");
			break;
		case A_MP_REACH:
		case A_MP_UNREACH:
			rc = parse_mp(v, vlen, type == A_MP_REACH, attr, atl, u, e);
			break;
		default:
			/* AS4_PATH / AS4_AGGREGATOR errors mean "discard the
			 * attribute" (RFC 6793 6); unknown optional ones are
			 * ignored. We install no route, so nothing to do. */
			break;
		}
		if (rc != TG_OK)
			return rc;
		i += atl;
	}
	if (!check_prefixes(nlri, nlen, 32, &u->nlri))
		return fail(e, TG_BGP_ERR_UPDATE, 10, NULL, 0, "bad prefix in the NLRI");
	static const uint8_t mandatory[] = {A_ORIGIN, A_AS_PATH, A_NEXT_HOP};
	for (size_t m = 0; m < TG_ARRAY_SIZE(mandatory); m++) {
		uint8_t t = mandatory[m];
		bool needed = u->nlri > 0 || (t != A_NEXT_HOP && (u->attrs & (1u << A_MP_REACH)));
		if (needed && !(u->attrs & (1u << t))) {
			e->own[0] = t;
			return fail(e, TG_BGP_ERR_UPDATE, 3, e->own, 1,
				    "missing well-known attribute");
		}
	}
	return TG_OK;
}

int tg_bgp_parse(const uint8_t *buf, size_t len, bool as4, tg_bgp_msg_t *msg, tg_bgp_error_t *err)
{
	memset(msg, 0, sizeof(*msg));
	memset(err, 0, sizeof(*err));
	for (size_t i = 0; i < 16 && i < len; i++)
		if (buf[i] != 0xff)
			return fail(err, TG_BGP_ERR_HEADER, 1, NULL, 0, "bad marker");
	if (len < TG_BGP_HDR_LEN)
		return TG_AGAIN;
	size_t mlen = get16(buf + 16);
	uint8_t type = buf[18];
	if (mlen < TG_BGP_HDR_LEN || mlen > TG_BGP_MAX_LEN)
		return fail(err, TG_BGP_ERR_HEADER, 2, buf + 16, 2, "bad message length");
	static const size_t min_len[] = {0, 29, 23, 21, 19};
	if (type < TG_BGP_OPEN || type > TG_BGP_KEEPALIVE)
		return fail(err, TG_BGP_ERR_HEADER, 3, buf + 18, 1, "bad message type");
	if (mlen < min_len[type] || (type == TG_BGP_KEEPALIVE && mlen != 19))
		return fail(err, TG_BGP_ERR_HEADER, 2, buf + 16, 2,
			    "bad message length for its type");
	if (len < mlen)
		return TG_AGAIN;
	msg->type = type;
	msg->len = mlen;
	const uint8_t *body = buf + TG_BGP_HDR_LEN;
	size_t blen = mlen - TG_BGP_HDR_LEN;
	int rc = TG_OK;
	switch (type) {
	case TG_BGP_OPEN:
		rc = parse_open(body, blen, &msg->u.open, err);
		break;
	case TG_BGP_UPDATE:
		rc = parse_update(body, blen, as4, &msg->u.update, err);
		break;
	case TG_BGP_NOTIFICATION:
		msg->u.notification.code = body[0];
		msg->u.notification.subcode = body[1];
		msg->u.notification.data = blen > 2 ? body + 2 : NULL;
		msg->u.notification.data_len = blen - 2;
		break;
	default:
		break;
	}
	return rc == TG_OK ? (int)mlen : rc;
}

/* ---- encoding ------------------------------------------------------------ */

static void header(uint8_t *buf, size_t len, uint8_t type)
{
	memset(buf, 0xff, 16);
	put16(buf + 16, (uint16_t)len);
	buf[18] = type;
}

int tg_bgp_encode_open(uint8_t *buf, size_t cap, uint32_t local_as, uint16_t hold_time,
		       uint32_t bgp_id)
{
	static const uint8_t mp[] = {1, 4, 0, 1, 0, 1, 1, 4, 0, 2, 0, 1};
	size_t caps = sizeof(mp) + 6, len = TG_BGP_HDR_LEN + 10 + 2 + caps;
	if (cap < len)
		return -ENOSPC;
	header(buf, len, TG_BGP_OPEN);
	uint8_t *p = buf + TG_BGP_HDR_LEN;
	p[0] = 4;
	put16(p + 1, local_as > 0xffff ? (uint16_t)TG_BGP_AS_TRANS : (uint16_t)local_as);
	put16(p + 3, hold_time);
	put32(p + 5, bgp_id);
	p[9] = (uint8_t)(2 + caps);
	p[10] = 2; /* Capabilities */
	p[11] = (uint8_t)caps;
	memcpy(p + 12, mp, sizeof(mp));
	p[12 + sizeof(mp)] = 65;
	p[13 + sizeof(mp)] = 4;
	put32(p + 14 + sizeof(mp), local_as);
	return (int)len;
}

int tg_bgp_encode_keepalive(uint8_t *buf, size_t cap)
{
	if (cap < TG_BGP_HDR_LEN)
		return -ENOSPC;
	header(buf, TG_BGP_HDR_LEN, TG_BGP_KEEPALIVE);
	return TG_BGP_HDR_LEN;
}

int tg_bgp_encode_notification(uint8_t *buf, size_t cap, uint8_t code, uint8_t subcode,
			       const uint8_t *data, size_t data_len)
{
	if (!data)
		data_len = 0;
	data_len = TG_MIN(data_len, (size_t)TG_BGP_MAX_LEN - 21);
	size_t len = 21 + data_len;
	if (cap < len)
		return -ENOSPC;
	header(buf, len, TG_BGP_NOTIFICATION);
	buf[19] = code;
	buf[20] = subcode;
	if (data_len)
		memcpy(buf + 21, data, data_len);
	return (int)len;
}

/* Writes the host-route prefix of ip (length byte + address). */
static size_t put_prefix(uint8_t *p, const tg_l4_ip_t *ip)
{
	if (ip->family == AF_INET) {
		p[0] = 32;
		memcpy(p + 1, &ip->addr.s6_addr[12], 4);
		return 5;
	}
	p[0] = 128;
	memcpy(p + 1, &ip->addr, 16);
	return 17;
}

/* ORIGIN, AS_PATH (+ AS4_PATH), LOCAL_PREF for iBGP; NEXT_HOP when nh4.
 * Returns bytes written (p has room for 64). */
static size_t common_attrs(uint8_t *p, const tg_bgp_path_t *path, bool nh4)
{
	size_t o = 0;
	p[o++] = F_TRANSITIVE;
	p[o++] = A_ORIGIN;
	p[o++] = 1;
	p[o++] = 0; /* IGP */
	p[o++] = F_TRANSITIVE;
	p[o++] = A_AS_PATH;
	bool trans = !path->as4 && path->local_as > 0xffff;
	if (path->ebgp) {
		size_t asn = path->as4 ? 4 : 2;
		p[o++] = (uint8_t)(2 + asn);
		p[o++] = 2; /* AS_SEQUENCE */
		p[o++] = 1;
		if (asn == 4)
			put32(p + o, path->local_as);
		else
			put16(p + o, trans ? (uint16_t)TG_BGP_AS_TRANS : (uint16_t)path->local_as);
		o += asn;
	} else {
		p[o++] = 0;
	}
	if (nh4) {
		p[o++] = F_TRANSITIVE;
		p[o++] = A_NEXT_HOP;
		p[o++] = 4;
		memcpy(p + o, &path->next_hop4, 4);
		o += 4;
	}
	if (!path->ebgp) {
		p[o++] = F_TRANSITIVE;
		p[o++] = A_LOCAL_PREF;
		p[o++] = 4;
		put32(p + o, path->local_pref);
		o += 4;
	} else if (trans) {
		/* RFC 6793 4.2.2: a 2-octet peer sees AS_TRANS in AS_PATH and
		 * our real AS in AS4_PATH. */
		p[o++] = F_OPTIONAL | F_TRANSITIVE;
		p[o++] = A_AS4_PATH;
		p[o++] = 6;
		p[o++] = 2;
		p[o++] = 1;
		put32(p + o, path->local_as);
		o += 4;
	}
	return o;
}

int tg_bgp_encode_update(uint8_t *buf, size_t cap, const tg_l4_ip_t *ips, size_t n, bool withdraw,
			 const tg_bgp_path_t *path, size_t *used)
{
	*used = 0;
	cap = TG_MIN(cap, (size_t)TG_BGP_MAX_LEN);
	if (n == 0)
		return -EINVAL;
	int fam = ips[0].family;
	size_t each = fam == AF_INET ? 5 : 17;
	size_t k = 0;
	while (k < n && ips[k].family == fam)
		k++;
	uint8_t attrs[64];
	size_t o = TG_BGP_HDR_LEN;
	if (fam == AF_INET && withdraw) {
		if (cap < 23 + each)
			return -ENOSPC;
		k = TG_MIN(k, (cap - 23) / each);
		put16(buf + o, (uint16_t)(k * each));
		o += 2;
		for (size_t i = 0; i < k; i++)
			o += put_prefix(buf + o, &ips[i]);
		put16(buf + o, 0);
		o += 2;
	} else if (fam == AF_INET) {
		size_t al = common_attrs(attrs, path, true);
		if (cap < 23 + al + each)
			return -ENOSPC;
		k = TG_MIN(k, (cap - 23 - al) / each);
		put16(buf + o, 0);
		put16(buf + o + 2, (uint16_t)al);
		memcpy(buf + o + 4, attrs, al);
		o += 4 + al;
		for (size_t i = 0; i < k; i++)
			o += put_prefix(buf + o, &ips[i]);
	} else {
		/* IPv6: everything inside MP_REACH_NLRI / MP_UNREACH_NLRI. */
		size_t al = withdraw ? 0 : common_attrs(attrs, path, false);
		size_t fixed = withdraw ? 3 : 21; /* AFI SAFI [nh len, nh, reserved] */
		if (cap < 23 + al + 4 + fixed + each)
			return -ENOSPC;
		k = TG_MIN(k, (cap - 23 - al - 4 - fixed) / each);
		size_t vlen = fixed + k * each;
		size_t hdr = vlen > 255 ? 4 : 3;
		put16(buf + o, 0);
		put16(buf + o + 2, (uint16_t)(al + hdr + vlen));
		o += 4;
		memcpy(buf + o, attrs, al);
		o += al;
		buf[o++] = F_OPTIONAL | (hdr == 4 ? F_EXTENDED : 0);
		buf[o++] = withdraw ? A_MP_UNREACH : A_MP_REACH;
		if (hdr == 4) {
			put16(buf + o, (uint16_t)vlen);
			o += 2;
		} else {
			buf[o++] = (uint8_t)vlen;
		}
		put16(buf + o, 2);
		buf[o + 2] = 1;
		o += 3;
		if (!withdraw) {
			buf[o++] = 16;
			memcpy(buf + o, &path->next_hop6, 16);
			o += 16;
			buf[o++] = 0;
		}
		for (size_t i = 0; i < k; i++)
			o += put_prefix(buf + o, &ips[i]);
	}
	header(buf, o, TG_BGP_UPDATE);
	*used = k;
	return (int)o;
}

/* ---- the speaker --------------------------------------------------------- */

#define OPEN_HOLD_MS	240000u	     /* hold timer until the OPENs are exchanged (RFC 4271 8) */
#define CONNECT_TIMEOUT 5000u	     /* give up a TCP connect after this long */
#define BACKOFF_MIN_MS	1000u	     /* first reconnect delay */
#define BACKOFF_MAX_MS	30000u	     /* reconnect delay ceiling (doubling in between) */
#define TX_MAX		(256u << 10) /* a peer that reads nothing is dropped here */
#define LOCAL_PREF	100u	     /* iBGP LOCAL_PREF */
#define EV_LISTEN	UINT64_MAX   /* epoll tag of the listening socket */

typedef struct neighbor neighbor_t;

/* One TCP connection to a neighbor. */
typedef struct conn {
	int fd;			    /* -1 when unused */
	uint32_t gen;		    /* bumped on every open: stale epoll events are ignored */
	tg_bgp_state_t state;	    /* CONNECT .. ESTABLISHED while fd >= 0 */
	bool want_out;		    /* EPOLLOUT is registered */
	uint8_t rx[TG_BGP_MAX_LEN]; /* bytes of an incomplete message */
	size_t rx_len;		    /* used in rx */
	uint8_t *tx;		    /* bytes waiting for the socket */
	size_t tx_len;		    /* used in tx */
	size_t tx_cap;		    /* allocated */
	uint64_t hold_at;	    /* hold (or connect) deadline; 0 = none */
	uint64_t keepalive_at;	    /* next KEEPALIVE; 0 = none */
	uint32_t keepalive_ms;	    /* interval (hold / 3) */
	uint16_t hold_s;	    /* negotiated hold time */
	uint32_t peer_id;	    /* their BGP identifier (after their OPEN) */
	bool as4;		    /* both sides speak 4-octet AS */
	uint32_t families;	    /* negotiated TG_BGP_FAM_* */
} conn_t;

struct neighbor {
	tg_l4_bgp_neighbor_cfg_t cfg;	/* address, AS, port */
	char label[INET6_ADDRSTRLEN];	/* address as text */
	conn_t conn[2];			/* [0] we opened, [1] they opened */
	uint64_t retry_at;		/* next active connect; 0 = none planned */
	uint32_t backoff_ms;		/* delay before the next one after a failure */
	tg_bgp_path_t path;		/* attributes on the established session */
	bool has_nh4;			/* path.next_hop4 is usable */
	bool has_nh6;			/* path.next_hop6 is usable */
	tg_l4_ip_t adv[TG_L4_MAX_VIPS]; /* routes announced on the session */
	size_t n_adv;			/* entries in adv */
	uint64_t updates_sent;		/* UPDATE messages sent, every session */
	bool warned_down;		/* a failure streak was logged */
};

struct tg_bgp {
	tg_l4_bgp_cfg_t cfg;		       /* copy of the configuration */
	char ifname[TG_L4_IFNAME_MAX];	       /* interface for default addresses */
	uint32_t router_id;		       /* host order */
	int ep;				       /* epoll set of every socket */
	int lfd;			       /* listening socket, -1 when none */
	neighbor_t *nb;			       /* cfg.n_neighbors entries */
	tg_bgp_route_t routes[TG_L4_MAX_VIPS]; /* what should be announced */
	size_t n_routes;		       /* entries in routes */
	bool stopped;			       /* shut down: no connects, no accepts */
	tg_rand_t rand;			       /* reconnect jitter */
	pthread_mutex_t lock;		       /* against the metrics reader */
	uint64_t now;			       /* time of the current call */
};

static const char *const state_names[] = {"Idle", "Connect", "OpenSent", "OpenConfirm",
					  "Established"};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* First address of `family` on ifname (IPv6: not link-local). */
static bool iface_addr(const char *ifname, int family, void *out)
{
	struct ifaddrs *ifs, *i;
	bool found = false;
	if (getifaddrs(&ifs) != 0)
		return false;
	for (i = ifs; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != family ||
		    strcmp(i->ifa_name, ifname) != 0)
			continue;
		if (family == AF_INET) {
			memcpy(out, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
			found = true;
		} else {
			const struct in6_addr *a = &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
			if (IN6_IS_ADDR_LINKLOCAL(a))
				continue;
			memcpy(out, a, 16);
			found = true;
		}
	}
	freeifaddrs(ifs);
	return found;
}

int tg_bgp_create(const tg_l4_bgp_cfg_t *cfg, const char *ifname, tg_bgp_t **out, char *err,
		  size_t errlen)
{
	*out = NULL;
	if (!cfg->enabled || cfg->n_neighbors == 0 || cfg->n_neighbors > TG_L4_MAX_NEIGHBORS) {
		seterr(err, errlen, "bgp: no neighbor configured");
		return -EINVAL;
	}
	uint32_t rid;
	if (cfg->has_router_id) {
		rid = ntohl(cfg->router_id.s_addr);
	} else {
		struct in_addr a;
		if (!iface_addr(ifname, AF_INET, &a) || a.s_addr == 0) {
			seterr(err, errlen,
			       "bgp.router-id: interface %s has no IPv4 address to take it from; "
			       "set bgp.router-id",
			       ifname);
			return -EINVAL;
		}
		rid = ntohl(a.s_addr);
	}
	tg_bgp_t *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->nb = calloc(cfg->n_neighbors, sizeof(*b->nb));
	b->ep = epoll_create1(EPOLL_CLOEXEC);
	if (!b->nb || b->ep < 0) {
		int e = b->ep < 0 ? -errno : -ENOMEM;
		if (b->ep >= 0)
			close(b->ep);
		free(b->nb);
		free(b);
		seterr(err, errlen, "bgp: %s", strerror(-e));
		return e;
	}
	b->cfg = *cfg;
	snprintf(b->ifname, sizeof(b->ifname), "%s", ifname);
	b->router_id = rid;
	b->lfd = -1;
	tg_rand_seed(&b->rand);
	pthread_mutex_init(&b->lock, NULL);
	for (size_t i = 0; i < cfg->n_neighbors; i++) {
		neighbor_t *n = &b->nb[i];
		n->cfg = cfg->neighbors[i];
		tg_l4_ip_format(&n->cfg.ip, n->label, sizeof(n->label));
		n->conn[0].fd = n->conn[1].fd = -1;
		n->backoff_ms = BACKOFF_MIN_MS;
	}
	*out = b;
	return 0;
}

int tg_bgp_fd(const tg_bgp_t *b)
{
	return b->ep;
}

static uint64_t tag(const tg_bgp_t *b, const neighbor_t *n, int slot)
{
	const conn_t *c = &n->conn[slot];
	return (uint64_t)c->gen << 32 | (uint64_t)(n - b->nb) << 1 | (uint64_t)slot;
}

static void set_events(tg_bgp_t *b, neighbor_t *n, int slot, bool out)
{
	conn_t *c = &n->conn[slot];
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0u)};
	ev.data.u64 = tag(b, n, slot);
	if (epoll_ctl(b->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->want_out = out;
}

/* Writes what the socket takes. False when the connection broke. */
static bool flush(tg_bgp_t *b, neighbor_t *n, int slot)
{
	conn_t *c = &n->conn[slot];
	size_t off = 0;
	while (off < c->tx_len) {
		ssize_t w = send(c->fd, c->tx + off, c->tx_len - off, MSG_NOSIGNAL);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		return false;
	}
	memmove(c->tx, c->tx + off, c->tx_len - off);
	c->tx_len -= off;
	bool out = c->tx_len > 0;
	if (out != c->want_out && c->state != TG_BGP_CONNECT)
		set_events(b, n, slot, out);
	return true;
}

/* Appends a message to the connection's output. False when out of memory or
 * over TX_MAX (the caller closes the connection). */
static bool queue(conn_t *c, const uint8_t *msg, size_t len)
{
	if (c->tx_len + len > TX_MAX)
		return false;
	if (c->tx_len + len > c->tx_cap) {
		size_t cap = c->tx_cap ? c->tx_cap : 8192;
		while (cap < c->tx_len + len)
			cap *= 2;
		uint8_t *t = realloc(c->tx, cap);
		if (!t)
			return false;
		c->tx = t;
		c->tx_cap = cap;
	}
	memcpy(c->tx + c->tx_len, msg, len);
	c->tx_len += len;
	return true;
}

static bool established(const neighbor_t *n, int *slot)
{
	for (int s = 0; s < 2; s++) {
		if (n->conn[s].fd >= 0 && n->conn[s].state == TG_BGP_ESTABLISHED) {
			if (slot)
				*slot = s;
			return true;
		}
	}
	return false;
}

/* Releases a connection without sending anything. Plans the next active
 * connect when the neighbor has no connection left. quiet: an expected end
 * (collision resolution), logged at debug level only. */
static void release(tg_bgp_t *b, neighbor_t *n, int slot, const char *why, bool quiet)
{
	conn_t *c = &n->conn[slot];
	if (c->fd < 0)
		return;
	bool was_up = c->state == TG_BGP_ESTABLISHED;
	if (quiet && !was_up) {
		tg_debug("bgp", "%s: closed a duplicate connection: %s", n->label, why);
	} else if (quiet) {
		tg_info("bgp", "session with %s closed: %s", n->label, why);
		n->n_adv = 0;
	} else if (was_up) {
		tg_warn("bgp", "session with %s down: %s", n->label, why);
		n->n_adv = 0; /* the neighbor drops our routes with the session */
		n->warned_down = true;
	} else if (!n->warned_down) {
		tg_warn("bgp", "%s: %s connection in state %s failed: %s (retrying with backoff)",
			n->label, slot == 0 ? "outgoing" : "incoming", state_names[c->state], why);
		n->warned_down = true;
	} else {
		tg_debug("bgp", "%s: connection failed: %s", n->label, why);
	}
	close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	c->state = TG_BGP_IDLE;
	c->rx_len = c->tx_len = 0;
	c->hold_at = c->keepalive_at = 0;
	int other = n->conn[!slot].fd;
	if (other < 0 && !b->stopped) {
		uint32_t d = n->backoff_ms;
		d -= (uint32_t)(tg_rand_next(&b->rand) % (d / 4 + 1)); /* jitter: 75-100% */
		n->retry_at = b->now + d;
		n->backoff_ms = TG_MIN(n->backoff_ms * 2, BACKOFF_MAX_MS);
	}
}

static void drop(tg_bgp_t *b, neighbor_t *n, int slot, const char *why)
{
	release(b, n, slot, why, false);
}

/* Drains unread input, sends what is queued, and closes so that the peer
 * gets a FIN after our last message rather than a reset (Linux resets a
 * socket closed with unread data). */
static void close_gracefully(tg_bgp_t *b, neighbor_t *n, int slot)
{
	conn_t *c = &n->conn[slot];
	uint8_t sink[1024];
	while (read(c->fd, sink, sizeof(sink)) > 0)
		;
	if (flush(b, n, slot))
		shutdown(c->fd, SHUT_WR);
}

/* Sends a NOTIFICATION and closes the connection (quiet: see release). */
static void send_and_release(tg_bgp_t *b, neighbor_t *n, int slot, uint8_t code, uint8_t sub,
			     const uint8_t *data, size_t dlen, const char *why, bool quiet)
{
	conn_t *c = &n->conn[slot];
	uint8_t m[TG_BGP_MAX_LEN];
	int len = tg_bgp_encode_notification(m, sizeof(m), code, sub, data, dlen);
	if (c->state != TG_BGP_CONNECT && len > 0 && queue(c, m, (size_t)len))
		close_gracefully(b, n, slot);
	char text[160];
	snprintf(text, sizeof(text), "%s (sent NOTIFICATION %u/%u)", why, code, sub);
	release(b, n, slot, text, quiet);
}

/* Sends a NOTIFICATION and closes the connection; a collision resolution
 * (Cease 7) is an expected end, not a failure. */
static void notify(tg_bgp_t *b, neighbor_t *n, int slot, uint8_t code, uint8_t sub,
		   const uint8_t *data, size_t dlen, const char *why)
{
	send_and_release(b, n, slot, code, sub, data, dlen, why,
			 code == TG_BGP_ERR_CEASE && sub == 7);
}

static bool carried(const neighbor_t *n, const conn_t *c, int family)
{
	if (family == AF_INET)
		return (c->families & TG_BGP_FAM_V4) && n->has_nh4;
	return (c->families & TG_BGP_FAM_V6) && n->has_nh6;
}

static bool wanted(const tg_bgp_t *b, const neighbor_t *n, const conn_t *c, const tg_l4_ip_t *ip)
{
	if (!carried(n, c, ip->family))
		return false;
	for (size_t i = 0; i < b->n_routes; i++)
		if (b->routes[i].announce && tg_l4_ip_eq(&b->routes[i].ip, ip))
			return true;
	return false;
}

static bool advertised(const neighbor_t *n, const tg_l4_ip_t *ip)
{
	for (size_t i = 0; i < n->n_adv; i++)
		if (tg_l4_ip_eq(&n->adv[i], ip))
			return true;
	return false;
}

/* Queues UPDATEs for ips[0..k) (one family each call). False on failure. */
static bool send_updates(conn_t *c, neighbor_t *n, const tg_l4_ip_t *ips, size_t k, bool withdraw)
{
	uint8_t m[TG_BGP_MAX_LEN];
	size_t done = 0;
	while (done < k) {
		size_t used;
		int len = tg_bgp_encode_update(m, sizeof(m), ips + done, k - done, withdraw,
					       &n->path, &used);
		if (len < 0 || used == 0 || !queue(c, m, (size_t)len))
			return false;
		n->updates_sent++;
		done += used;
	}
	return true;
}

/* Brings the established session's announcements in line with b->routes:
 * withdrawals first, then announcements, per family. */
static void sync_neighbor(tg_bgp_t *b, neighbor_t *n)
{
	int slot;
	if (!established(n, &slot))
		return;
	conn_t *c = &n->conn[slot];
	tg_l4_ip_t out[TG_L4_MAX_VIPS], in[TG_L4_MAX_VIPS];
	bool ok = true;
	for (int pass = 0; pass < 2 && ok; pass++) {
		int fam = pass == 0 ? AF_INET : AF_INET6;
		size_t no = 0, ni = 0;
		for (size_t i = 0; i < n->n_adv; i++)
			if (n->adv[i].family == fam && !wanted(b, n, c, &n->adv[i]))
				out[no++] = n->adv[i];
		for (size_t i = 0; i < b->n_routes; i++) {
			const tg_l4_ip_t *ip = &b->routes[i].ip;
			if (ip->family == fam && wanted(b, n, c, ip) && !advertised(n, ip))
				in[ni++] = *ip;
		}
		if (no)
			ok = send_updates(c, n, out, no, true);
		if (ok && ni)
			ok = send_updates(c, n, in, ni, false);
		if (!ok)
			break;
		/* adv = adv - out + in */
		size_t k = 0;
		for (size_t i = 0; i < n->n_adv; i++) {
			bool gone = false;
			for (size_t j = 0; j < no && !gone; j++)
				gone = tg_l4_ip_eq(&out[j], &n->adv[i]);
			if (!gone)
				n->adv[k++] = n->adv[i];
		}
		for (size_t j = 0; j < ni && k < TG_L4_MAX_VIPS; j++)
			n->adv[k++] = in[j];
		n->n_adv = k;
		char a[INET6_ADDRSTRLEN];
		for (size_t j = 0; j < no; j++)
			tg_info("bgp", "withdrew %s from %s",
				tg_l4_ip_format(&out[j], a, sizeof(a)), n->label);
		for (size_t j = 0; j < ni; j++)
			tg_info("bgp", "announced %s to %s", tg_l4_ip_format(&in[j], a, sizeof(a)),
				n->label);
	}
	if (!ok || !flush(b, n, slot))
		drop(b, n, slot, ok ? "write failed" : "output queue full");
}

/* Next hops for the session on conn c: the session's own local address for
 * its family, configured next-hop-v4/v6 or the interface's address for the
 * other. */
static void pick_next_hops(tg_bgp_t *b, neighbor_t *n, conn_t *c)
{
	n->has_nh4 = n->has_nh6 = false;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			n->path.next_hop4 = ((struct sockaddr_in *)&ss)->sin_addr;
			n->has_nh4 = true;
		} else if (ss.ss_family == AF_INET6) {
			const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
			if (IN6_IS_ADDR_V4MAPPED(a)) {
				memcpy(&n->path.next_hop4, &a->s6_addr[12], 4);
				n->has_nh4 = true;
			} else if (!IN6_IS_ADDR_LINKLOCAL(a)) {
				n->path.next_hop6 = *a;
				n->has_nh6 = true;
			}
		}
	}
	if (!n->has_nh4 && b->cfg.has_next_hop4) {
		n->path.next_hop4 = b->cfg.next_hop4;
		n->has_nh4 = true;
	}
	if (!n->has_nh6 && b->cfg.has_next_hop6) {
		n->path.next_hop6 = b->cfg.next_hop6;
		n->has_nh6 = true;
	}
	if (!n->has_nh4)
		n->has_nh4 = iface_addr(b->ifname, AF_INET, &n->path.next_hop4);
	if (!n->has_nh6)
		n->has_nh6 = iface_addr(b->ifname, AF_INET6, &n->path.next_hop6);
}

static void arm_hold(tg_bgp_t *b, conn_t *c)
{
	c->hold_at = c->hold_s ? b->now + (uint64_t)c->hold_s * 1000 : 0;
}

static bool send_keepalive(tg_bgp_t *b, neighbor_t *n, int slot)
{
	conn_t *c = &n->conn[slot];
	uint8_t m[TG_BGP_HDR_LEN];
	tg_bgp_encode_keepalive(m, sizeof(m));
	if (c->keepalive_ms)
		c->keepalive_at = b->now + c->keepalive_ms;
	if (!queue(c, m, sizeof(m)) || !flush(b, n, slot)) {
		drop(b, n, slot, "write failed");
		return false;
	}
	return true;
}

/* Their OPEN arrived on conn `slot` (in OpenSent). */
static void on_open(tg_bgp_t *b, neighbor_t *n, int slot, const tg_bgp_open_t *o,
		    const uint8_t *msg)
{
	conn_t *c = &n->conn[slot];
	uint32_t peer_as = o->has_as4 ? o->as4 : o->my_as;
	bool ibgp = n->cfg.remote_as == b->cfg.local_as;
	if (peer_as != n->cfg.remote_as) {
		char why[96];
		snprintf(why, sizeof(why), "neighbor says AS %u, configured remote-as is %u",
			 peer_as, n->cfg.remote_as);
		notify(b, n, slot, TG_BGP_ERR_OPEN, 2, msg + 20, 2, why);
		return;
	}
	if (ibgp && o->bgp_id == b->router_id) {
		notify(b, n, slot, TG_BGP_ERR_OPEN, 3, msg + 24, 4,
		       "neighbor uses our router id on an iBGP session");
		return;
	}
	c->peer_id = o->bgp_id;
	/* Collision (RFC 4271 6.8). */
	conn_t *oc = &n->conn[!slot];
	if (oc->fd >= 0 && oc->state == TG_BGP_ESTABLISHED) {
		notify(b, n, slot, TG_BGP_ERR_CEASE, 7, NULL, 0,
		       "connection collision with the established session");
		return;
	}
	if (oc->fd >= 0 && oc->state == TG_BGP_OPENCONFIRM) {
		/* The side with the higher identifier keeps the connection it opened. */
		int keep = b->router_id > o->bgp_id ? 0 : 1;
		int lose = !keep;
		notify(b, n, lose, TG_BGP_ERR_CEASE, 7, NULL, 0, "connection collision resolved");
		if (lose == slot)
			return;
	}
	c->hold_s = TG_MIN(b->cfg.hold_time_s, o->hold_time);
	c->keepalive_ms = c->hold_s ? (uint32_t)c->hold_s * 1000 / 3 : 0;
	c->as4 = o->has_as4;
	c->families = o->has_mp ? o->families & (TG_BGP_FAM_V4 | TG_BGP_FAM_V6) : TG_BGP_FAM_V4;
	c->state = TG_BGP_OPENCONFIRM;
	arm_hold(b, c);
	send_keepalive(b, n, slot);
}

/* Their KEEPALIVE arrived on conn `slot` in OpenConfirm. */
static void on_established(tg_bgp_t *b, neighbor_t *n, int slot)
{
	conn_t *c = &n->conn[slot];
	if (n->conn[!slot].fd >= 0) {
		if (n->conn[!slot].state == TG_BGP_CONNECT)
			release(b, n, !slot, "the other connection was established", true);
		else
			notify(b, n, !slot, TG_BGP_ERR_CEASE, 7, NULL, 0,
			       "the other connection was established");
	}
	c->state = TG_BGP_ESTABLISHED;
	n->retry_at = 0;
	n->backoff_ms = BACKOFF_MIN_MS;
	n->warned_down = false;
	n->n_adv = 0;
	n->path.local_as = b->cfg.local_as;
	n->path.ebgp = n->cfg.remote_as != b->cfg.local_as;
	n->path.as4 = c->as4;
	n->path.local_pref = LOCAL_PREF;
	pick_next_hops(b, n, c);
	char h4[INET_ADDRSTRLEN] = "none", h6[INET6_ADDRSTRLEN] = "none";
	if (n->has_nh4)
		inet_ntop(AF_INET, &n->path.next_hop4, h4, sizeof(h4));
	if (n->has_nh6)
		inet_ntop(AF_INET6, &n->path.next_hop6, h6, sizeof(h6));
	tg_info("bgp",
		"session with %s (AS %u, %s) established: hold %us, IPv4 %s, IPv6 %s, next hops "
		"%s / %s",
		n->label, n->cfg.remote_as, n->path.ebgp ? "eBGP" : "iBGP", c->hold_s,
		c->families & TG_BGP_FAM_V4 ? "on" : "off",
		c->families & TG_BGP_FAM_V6 ? "on" : "off", h4, h6);
	if ((c->families & TG_BGP_FAM_V6) && !n->has_nh6)
		tg_warn("bgp",
			"%s: no IPv6 next hop (set bgp.next-hop-v6): IPv6 VIPs not announced",
			n->label);
	if ((c->families & TG_BGP_FAM_V4) && !n->has_nh4)
		tg_warn("bgp",
			"%s: no IPv4 next hop (set bgp.next-hop-v4): IPv4 VIPs not announced",
			n->label);
	sync_neighbor(b, n);
}

/* One parsed message on conn `slot`. */
static void on_message(tg_bgp_t *b, neighbor_t *n, int slot, const tg_bgp_msg_t *m,
		       const uint8_t *raw)
{
	conn_t *c = &n->conn[slot];
	if (m->type == TG_BGP_NOTIFICATION) {
		char why[160];
		int off = snprintf(why, sizeof(why), "neighbor sent NOTIFICATION %u/%u",
				   m->u.notification.code, m->u.notification.subcode);
		/* RFC 8203 shutdown communication: length byte + UTF-8. */
		const uint8_t *d = m->u.notification.data;
		size_t dl = m->u.notification.data_len;
		if (m->u.notification.code == TG_BGP_ERR_CEASE && dl > 1 && d[0] > 0 &&
		    d[0] <= dl - 1 && off > 0) {
			snprintf(why + off, sizeof(why) - (size_t)off, " \"");
			size_t o = strlen(why);
			for (size_t i = 0; i < d[0] && o + 2 < sizeof(why); i++)
				why[o++] =
				    d[1 + i] >= 0x20 && d[1 + i] < 0x7f ? (char)d[1 + i] : '?';
			why[o++] = '"';
			why[o] = '\0';
		}
		drop(b, n, slot, why);
		return;
	}
	switch (c->state) {
	case TG_BGP_OPENSENT:
		if (m->type == TG_BGP_OPEN)
			on_open(b, n, slot, &m->u.open, raw);
		else
			notify(b, n, slot, TG_BGP_ERR_FSM, 1, NULL, 0,
			       "unexpected message in OpenSent");
		return;
	case TG_BGP_OPENCONFIRM:
		if (m->type == TG_BGP_KEEPALIVE) {
			arm_hold(b, c);
			on_established(b, n, slot);
		} else {
			notify(b, n, slot, TG_BGP_ERR_FSM, 2, NULL, 0,
			       "unexpected message in OpenConfirm");
		}
		return;
	case TG_BGP_ESTABLISHED:
		if (m->type == TG_BGP_OPEN)
			notify(b, n, slot, TG_BGP_ERR_FSM, 3, NULL, 0,
			       "OPEN on an established session");
		else
			arm_hold(b, c); /* KEEPALIVE or UPDATE: routes are ignored */
		return;
	default:
		return;
	}
}

/* Reads and handles everything available on conn `slot`. */
static void on_readable(tg_bgp_t *b, neighbor_t *n, int slot)
{
	conn_t *c = &n->conn[slot];
	uint32_t gen = c->gen;
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t r = read(c->fd, c->rx + c->rx_len, sizeof(c->rx) - c->rx_len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			drop(b, n, slot,
			     r == 0 ? "connection closed by the neighbor" : strerror(errno));
			return;
		}
		c->rx_len += (size_t)r;
		size_t off = 0;
		for (;;) {
			tg_bgp_msg_t m;
			tg_bgp_error_t e;
			int rc = tg_bgp_parse(c->rx + off, c->rx_len - off, c->as4, &m, &e);
			if (rc == TG_AGAIN)
				break;
			if (rc == TG_ERROR) {
				char why[128];
				snprintf(why, sizeof(why),
					 "malformed message from the neighbor: %s", e.reason);
				notify(b, n, slot, e.code, e.subcode, e.data, e.data_len, why);
				return;
			}
			on_message(b, n, slot, &m, c->rx + off);
			if (c->fd < 0 || c->gen != gen)
				return;
			off += (size_t)rc;
		}
		memmove(c->rx, c->rx + off, c->rx_len - off);
		c->rx_len -= off;
	}
}

/* Sends our OPEN on a connected socket. */
static void start_open(tg_bgp_t *b, neighbor_t *n, int slot)
{
	conn_t *c = &n->conn[slot];
	uint8_t m[64];
	int len =
	    tg_bgp_encode_open(m, sizeof(m), b->cfg.local_as, b->cfg.hold_time_s, b->router_id);
	c->state = TG_BGP_OPENSENT;
	c->hold_at = b->now + OPEN_HOLD_MS;
	c->keepalive_at = 0;
	if (!queue(c, m, (size_t)len) || !flush(b, n, slot))
		drop(b, n, slot, "cannot send OPEN");
}

/* Installs fd as conn `slot` of n. */
static int attach(tg_bgp_t *b, neighbor_t *n, int slot, int fd, bool connecting)
{
	conn_t *c = &n->conn[slot];
	c->fd = fd;
	c->gen++;
	c->rx_len = c->tx_len = 0;
	c->want_out = connecting;
	c->as4 = false;
	c->families = 0;
	c->hold_s = 0;
	c->keepalive_ms = 0;
	c->state = connecting ? TG_BGP_CONNECT : TG_BGP_OPENSENT;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct epoll_event ev = {.events = connecting ? EPOLLOUT : EPOLLIN};
	ev.data.u64 = tag(b, n, slot);
	if (epoll_ctl(b->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		int e = -errno;
		close(fd);
		c->fd = -1;
		c->state = TG_BGP_IDLE;
		return e;
	}
	return 0;
}

/* tg_bgp_adopt with the lock held. */
static int adopt(tg_bgp_t *b, size_t i, int fd)
{
	neighbor_t *n = i < b->cfg.n_neighbors ? &b->nb[i] : NULL;
	if (!n || b->stopped) {
		close(fd);
		return -EINVAL;
	}
	conn_t *c = &n->conn[1];
	if (c->fd >= 0 && c->state == TG_BGP_ESTABLISHED) {
		/* RFC 4271 6.8: a new connection loses against an established one. */
		close(fd);
		return -EBUSY;
	}
	if (c->fd >= 0)
		drop(b, n, 1, "replaced by a new connection from the neighbor");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	int rc = attach(b, n, 1, fd, false);
	if (rc == 0)
		start_open(b, n, 1);
	return rc;
}

int tg_bgp_adopt(tg_bgp_t *b, size_t i, int fd, uint64_t now)
{
	pthread_mutex_lock(&b->lock);
	b->now = now;
	int rc = adopt(b, i, fd);
	pthread_mutex_unlock(&b->lock);
	return rc;
}

static void start_connect(tg_bgp_t *b, neighbor_t *n)
{
	n->retry_at = 0;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t sl;
	int fam = n->cfg.ip.family;
	if (fam == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(n->cfg.port);
		memcpy(&s4->sin_addr, &n->cfg.ip.addr.s6_addr[12], 4);
		sl = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(n->cfg.port);
		s6->sin6_addr = n->cfg.ip.addr;
		sl = sizeof(*s6);
	}
	int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || attach(b, n, 0, fd, true) != 0) {
		if (fd >= 0)
			tg_warn("bgp", "%s: cannot register socket", n->label);
		n->retry_at = b->now + n->backoff_ms;
		return;
	}
	n->conn[0].hold_at = b->now + CONNECT_TIMEOUT;
	if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS)
		drop(b, n, 0, strerror(errno));
	/* Completion (or immediate success) shows up as EPOLLOUT. */
}

static void on_connected(tg_bgp_t *b, neighbor_t *n)
{
	conn_t *c = &n->conn[0];
	int err = 0;
	socklen_t el = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
		err = errno;
	if (err) {
		drop(b, n, 0, strerror(err));
		return;
	}
	struct epoll_event ev = {.events = EPOLLIN};
	ev.data.u64 = tag(b, n, 0);
	epoll_ctl(b->ep, EPOLL_CTL_MOD, c->fd, &ev);
	c->want_out = false;
	start_open(b, n, 0);
}

static void on_accept(tg_bgp_t *b)
{
	for (int k = 0; k < 16; k++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(b->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		tg_l4_ip_t ip;
		memset(&ip, 0, sizeof(ip));
		if (ss.ss_family == AF_INET) {
			ip.family = AF_INET;
			ip.addr.s6_addr[10] = ip.addr.s6_addr[11] = 0xff;
			memcpy(&ip.addr.s6_addr[12], &((struct sockaddr_in *)&ss)->sin_addr, 4);
		} else if (ss.ss_family == AF_INET6) {
			ip.addr = ((struct sockaddr_in6 *)&ss)->sin6_addr;
			ip.family = IN6_IS_ADDR_V4MAPPED(&ip.addr) ? AF_INET : AF_INET6;
		}
		size_t i = 0;
		while (i < b->cfg.n_neighbors && !tg_l4_ip_eq(&b->nb[i].cfg.ip, &ip))
			i++;
		if (i == b->cfg.n_neighbors) {
			char a[INET6_ADDRSTRLEN];
			tg_warn("bgp", "refused a connection from %s: not a configured neighbor",
				ip.family ? tg_l4_ip_format(&ip, a, sizeof(a)) : "?");
			close(fd);
			continue;
		}
		adopt(b, i, fd);
	}
}

int tg_bgp_start(tg_bgp_t *b, uint64_t now)
{
	pthread_mutex_lock(&b->lock);
	b->now = now;
	for (size_t i = 0; i < b->cfg.n_neighbors; i++)
		b->nb[i].retry_at = now;
	int rc = 0;
	if (b->cfg.listen_port) {
		int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int one = 1, zero = 0;
		struct sockaddr_in6 s6 = {.sin6_family = AF_INET6,
					  .sin6_port = htons(b->cfg.listen_port)};
		struct sockaddr_in s4 = {.sin_family = AF_INET,
					 .sin_port = htons(b->cfg.listen_port)};
		if (fd >= 0) {
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, (struct sockaddr *)&s6, sizeof(s6)) != 0) {
				close(fd);
				fd = -1;
			}
		}
		if (fd < 0) { /* no IPv6 here: IPv4 only */
			fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (fd >= 0) {
				setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
				if (bind(fd, (struct sockaddr *)&s4, sizeof(s4)) != 0) {
					close(fd);
					fd = -1;
				}
			}
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_LISTEN};
		if (fd >= 0 && listen(fd, 16) == 0 &&
		    epoll_ctl(b->ep, EPOLL_CTL_ADD, fd, &ev) == 0) {
			b->lfd = fd;
		} else {
			tg_warn("bgp",
				"cannot listen on port %u (%s): only outgoing connections will be "
				"made",
				b->cfg.listen_port, strerror(errno));
			if (fd >= 0)
				close(fd);
		}
	}
	pthread_mutex_unlock(&b->lock);
	return rc;
}

static void timers(tg_bgp_t *b)
{
	uint64_t now = b->now;
	for (size_t i = 0; i < b->cfg.n_neighbors; i++) {
		neighbor_t *n = &b->nb[i];
		for (int s = 0; s < 2; s++) {
			conn_t *c = &n->conn[s];
			if (c->fd < 0)
				continue;
			if (c->hold_at && now >= c->hold_at) {
				if (c->state == TG_BGP_CONNECT)
					drop(b, n, s, "connect timed out");
				else
					notify(b, n, s, TG_BGP_ERR_HOLD, 0, NULL, 0,
					       "hold timer expired");
				continue;
			}
			if (c->keepalive_at && now >= c->keepalive_at &&
			    (c->state == TG_BGP_OPENCONFIRM || c->state == TG_BGP_ESTABLISHED))
				send_keepalive(b, n, s);
		}
		if (!b->stopped && n->retry_at && now >= n->retry_at && n->conn[0].fd < 0 &&
		    !established(n, NULL))
			start_connect(b, n);
	}
}

static uint64_t next_deadline(const tg_bgp_t *b)
{
	uint64_t next = UINT64_MAX;
	for (size_t i = 0; i < b->cfg.n_neighbors; i++) {
		const neighbor_t *n = &b->nb[i];
		for (int s = 0; s < 2; s++) {
			const conn_t *c = &n->conn[s];
			if (c->fd < 0)
				continue;
			if (c->hold_at)
				next = TG_MIN(next, c->hold_at);
			if (c->keepalive_at)
				next = TG_MIN(next, c->keepalive_at);
		}
		if (n->retry_at && !b->stopped)
			next = TG_MIN(next, n->retry_at);
	}
	return next;
}

uint64_t tg_bgp_run(tg_bgp_t *b, uint64_t now)
{
	pthread_mutex_lock(&b->lock);
	b->now = now;
	struct epoll_event evs[32];
	int ne = epoll_wait(b->ep, evs, 32, 0);
	for (int k = 0; k < ne; k++) {
		uint64_t t = evs[k].data.u64;
		if (t == EV_LISTEN) {
			on_accept(b);
			continue;
		}
		size_t i = (size_t)(t & 0xffffffffu) >> 1;
		int slot = (int)(t & 1);
		if (i >= b->cfg.n_neighbors)
			continue;
		neighbor_t *n = &b->nb[i];
		conn_t *c = &n->conn[slot];
		if (c->fd < 0 || c->gen != (uint32_t)(t >> 32))
			continue; /* closed or replaced earlier in this batch */
		uint32_t e = evs[k].events;
		if (c->state == TG_BGP_CONNECT) {
			on_connected(b, n);
			continue;
		}
		if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
			on_readable(b, n, slot);
		if (c->fd >= 0 && c->gen == (uint32_t)(t >> 32) && (e & EPOLLOUT) &&
		    !flush(b, n, slot))
			drop(b, n, slot, "write failed");
	}
	timers(b);
	uint64_t next = next_deadline(b);
	pthread_mutex_unlock(&b->lock);
	return next;
}

void tg_bgp_set_routes(tg_bgp_t *b, const tg_bgp_route_t *routes, size_t n)
{
	pthread_mutex_lock(&b->lock);
	n = TG_MIN(n, (size_t)TG_L4_MAX_VIPS);
	bool same = n == b->n_routes;
	for (size_t i = 0; same && i < n; i++)
		same = tg_l4_ip_eq(&routes[i].ip, &b->routes[i].ip) &&
		       routes[i].announce == b->routes[i].announce;
	if (!same) {
		memcpy(b->routes, routes, n * sizeof(*routes));
		b->n_routes = n;
		for (size_t i = 0; i < b->cfg.n_neighbors; i++)
			sync_neighbor(b, &b->nb[i]);
	}
	pthread_mutex_unlock(&b->lock);
}

tg_bgp_state_t tg_bgp_neighbor_state(const tg_bgp_t *b, size_t i)
{
	if (i >= b->cfg.n_neighbors)
		return TG_BGP_IDLE;
	tg_bgp_state_t st = TG_BGP_IDLE;
	for (int s = 0; s < 2; s++)
		if (b->nb[i].conn[s].fd >= 0 && b->nb[i].conn[s].state > st)
			st = b->nb[i].conn[s].state;
	return st;
}

bool tg_bgp_neighbor_has(const tg_bgp_t *b, size_t i, const tg_l4_ip_t *ip)
{
	return i < b->cfg.n_neighbors && established(&b->nb[i], NULL) && advertised(&b->nb[i], ip);
}

void tg_bgp_shutdown(tg_bgp_t *b, const char *why)
{
	pthread_mutex_lock(&b->lock);
	b->stopped = true;
	uint8_t data[1 + 128];
	size_t wl = why ? TG_MIN(strlen(why), sizeof(data) - 1) : 0;
	data[0] = (uint8_t)wl;
	if (wl)
		memcpy(data + 1, why, wl);
	for (size_t i = 0; i < b->cfg.n_neighbors; i++) {
		neighbor_t *n = &b->nb[i];
		n->retry_at = 0;
		for (int s = 0; s < 2; s++) {
			if (n->conn[s].fd < 0)
				continue;
			if (n->conn[s].state == TG_BGP_CONNECT)
				drop(b, n, s, "shutting down");
			else
				send_and_release(b, n, s, TG_BGP_ERR_CEASE, 2, data,
						 wl ? wl + 1 : 0, "shutting down", true);
		}
	}
	if (b->lfd >= 0) {
		close(b->lfd);
		b->lfd = -1;
	}
	pthread_mutex_unlock(&b->lock);
}

void tg_bgp_metrics(tg_bgp_t *b, tg_sbuf_t *out)
{
	pthread_mutex_lock(&b->lock);
	tg_sbuf_printf(out, "# HELP tidegate_bgp_session_up 1 while the BGP session with the "
			    "neighbor is established.\n"
			    "# TYPE tidegate_bgp_session_up gauge\n");
	for (size_t i = 0; i < b->cfg.n_neighbors; i++)
		tg_sbuf_printf(out, "tidegate_bgp_session_up{neighbor=\"%s\"} %d\n", b->nb[i].label,
			       established(&b->nb[i], NULL));
	tg_sbuf_printf(out, "# HELP tidegate_bgp_updates_sent_total BGP UPDATE messages sent "
			    "(announcements and withdrawals).\n"
			    "# TYPE tidegate_bgp_updates_sent_total counter\n");
	for (size_t i = 0; i < b->cfg.n_neighbors; i++)
		tg_sbuf_printf(out, "tidegate_bgp_updates_sent_total{neighbor=\"%s\"} %llu\n",
			       b->nb[i].label, (unsigned long long)b->nb[i].updates_sent);
	tg_sbuf_printf(out, "# HELP tidegate_bgp_vip_announced 1 while the VIP is announced on at "
			    "least one established BGP session.\n"
			    "# TYPE tidegate_bgp_vip_announced gauge\n");
	for (size_t r = 0; r < b->n_routes; r++) {
		bool on = false;
		for (size_t i = 0; i < b->cfg.n_neighbors && !on; i++)
			on = tg_bgp_neighbor_has(b, i, &b->routes[r].ip);
		char a[INET6_ADDRSTRLEN];
		tg_sbuf_printf(out, "tidegate_bgp_vip_announced{vip=\"%s\"} %d\n",
			       tg_l4_ip_format(&b->routes[r].ip, a, sizeof(a)), on);
	}
	pthread_mutex_unlock(&b->lock);
}

void tg_bgp_free(tg_bgp_t *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->cfg.n_neighbors; i++) {
		for (int s = 0; s < 2; s++) {
			if (b->nb[i].conn[s].fd >= 0)
				close(b->nb[i].conn[s].fd);
			free(b->nb[i].conn[s].tx);
		}
	}
	if (b->lfd >= 0)
		close(b->lfd);
	close(b->ep);
	free(b->nb);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

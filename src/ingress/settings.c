#include "ingress/settings.h"
#include "ingress/once.h"
#include "core/common.h"
#include "core/log.h"
#include "core/parse.h"
#include "ingress/kubeconfig.h"
#include "tls/tls.h"

#include <stdlib.h>
#include <sys/socket.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

void tg_settings_defaults(tg_settings_t *s)
{
	memset(s, 0, sizeof(*s));
	s->keep_alive_ms = 75000;
	s->keep_alive_requests = 1000;
	s->keep_alive_time_ms = 3600000;
	s->upstream_keepalive_connections = 320;
	s->upstream_keepalive_timeout_ms = 60000;
	s->upstream_keepalive_requests = 10000;
	s->proxy_connect_timeout_ms = 5000;
	s->proxy_read_timeout_ms = 60000;
	s->proxy_send_timeout_ms = 60000;
	s->client_header_timeout_ms = 60000;
	s->client_body_timeout_ms = 60000;
	s->proxy_body_size = 1024 * 1024;
	s->worker_shutdown_timeout_ms = 240000;
	s->max_worker_connections = 16384;
	s->client_header_buffer_size = 1024;
	s->large_client_header_buffers = 4 * 8192;
	s->max_headers = 100;
	s->tcp_keepalive_ms = 0;
	s->use_proxy_protocol = false;
	s->use_forwarded_headers = false;
	s->ssl_redirect = true;
	s->disable_access_log = false;
	s->load_balance = TG_LB_ROUND_ROBIN;
	s->ssl_session_timeout_ms = 600000;
	s->ssl_session_tickets = true;
	s->limit_req_status_code = 503; /* ingress-nginx's defaults */
	s->limit_conn_status_code = 503;
	/* ingress-nginx's default: every IPv4 peer may set X-Forwarded-* (when
	 * use-forwarded-headers is on). */
	s->proxy_real_ip_cidr[0] = (tg_cidr_t){.family = AF_INET, .bits = 0};
	s->n_proxy_real_ip_cidr = 1;
}

typedef enum vtype {
	V_MS32,	     /* duration into uint32_t milliseconds */
	V_MS64,	     /* duration into uint64_t milliseconds */
	V_U32,	     /* plain integer into uint32_t */
	V_SIZE32,    /* size into uint32_t bytes */
	V_SIZE64,    /* size into uint64_t bytes */
	V_BOOL,	     /* boolean */
	V_LB,	     /* load-balance algorithm */
	V_HDRBUFS,   /* "count size" into uint32_t total bytes */
	V_SSLPROTO,  /* ssl-protocols text, checked by the TLS library */
	V_SSLCIPHER, /* ssl-ciphers text, checked by the TLS library */
	V_TICKETKEY, /* base64 of an 80-byte ticket key */
	V_CIDRS,     /* comma-separated address blocks */
	V_ALLOW,     /* whitelist-source-range: blocks, fail closed when bad */
	V_DENY,	     /* denylist-source-range: the same */
	V_STATUS,    /* an HTTP error status (400-599) into uint32_t */
} vtype_t;

/* One ConfigMap key: nginx-style directive table (name, type, offset, bound). */
typedef struct key_desc {
	const char *name; /* ConfigMap key */
	vtype_t type;	  /* how its value is parsed */
	size_t off;	  /* field offset in tg_settings_t */
	uint64_t min;	  /* smallest accepted value (ms, bytes or count) */
} key_desc_t;

#define F(field) offsetof(tg_settings_t, field)

static const key_desc_t keys[] = {
    {"keep-alive", V_MS32, F(keep_alive_ms), 0},
    {"keep-alive-requests", V_U32, F(keep_alive_requests), 1},
    {"keep-alive-time", V_MS64, F(keep_alive_time_ms), 1},
    {"upstream-keepalive-connections", V_U32, F(upstream_keepalive_connections), 0},
    {"upstream-keepalive-timeout", V_MS32, F(upstream_keepalive_timeout_ms), 0},
    {"upstream-keepalive-requests", V_U32, F(upstream_keepalive_requests), 1},
    {"proxy-connect-timeout", V_MS32, F(proxy_connect_timeout_ms), 1},
    {"proxy-read-timeout", V_MS32, F(proxy_read_timeout_ms), 1},
    {"proxy-send-timeout", V_MS32, F(proxy_send_timeout_ms), 1},
    {"client-header-timeout", V_MS32, F(client_header_timeout_ms), 1},
    {"client-body-timeout", V_MS32, F(client_body_timeout_ms), 1},
    {"proxy-body-size", V_SIZE64, F(proxy_body_size), 0},
    {"limit-rate", V_SIZE64, F(limit_rate), 0},
    {"limit-rate-after", V_SIZE64, F(limit_rate_after), 0},
    {"worker-shutdown-timeout", V_MS32, F(worker_shutdown_timeout_ms), 0},
    {"max-worker-connections", V_U32, F(max_worker_connections), 1},
    {"client-header-buffer-size", V_SIZE32, F(client_header_buffer_size), 64},
    {"large-client-header-buffers", V_HDRBUFS, F(large_client_header_buffers), 64},
    {"max-headers", V_U32, F(max_headers), 1},
    {"tcp-keepalive", V_MS32, F(tcp_keepalive_ms), 0},
    {"use-proxy-protocol", V_BOOL, F(use_proxy_protocol), 0},
    {"use-forwarded-headers", V_BOOL, F(use_forwarded_headers), 0},
    {"ssl-redirect", V_BOOL, F(ssl_redirect), 0},
    {"disable-access-log", V_BOOL, F(disable_access_log), 0},
    {"load-balance", V_LB, F(load_balance), 0},
    {"ssl-protocols", V_SSLPROTO, F(ssl_protocols), 0},
    {"ssl-ciphers", V_SSLCIPHER, F(ssl_ciphers), 0},
    {"ssl-session-timeout", V_MS32, F(ssl_session_timeout_ms), 1000},
    {"ssl-session-tickets", V_BOOL, F(ssl_session_tickets), 0},
    {"enable-ocsp", V_BOOL, F(enable_ocsp), 0},
    {"ssl-session-ticket-key", V_TICKETKEY, F(ssl_session_ticket_key), 0},
    {"proxy-real-ip-cidr", V_CIDRS, F(proxy_real_ip_cidr), 0},
    {"whitelist-source-range", V_ALLOW, F(allow_ranges), 0},
    {"allowlist-source-range", V_ALLOW, F(allow_ranges), 0},
    {"denylist-source-range", V_DENY, F(deny_ranges), 0},
    {"limit-req-status-code", V_STATUS, F(limit_req_status_code), 400},
    {"limit-conn-status-code", V_STATUS, F(limit_conn_status_code), 400},
};

/* Copies the text of an ssl-* value into the fixed field (NUL-terminated) and
 * lets the TLS library judge it. Returns NULL or a reason. */
static const char *ssl_text(const key_desc_t *k, const char *v, size_t len, char *field, size_t cap)
{
	static _Thread_local char why[TG_TLS_ERR_MAX];
	if (len >= cap)
		return "too long";
	char tmp[1024];
	memcpy(tmp, v, len);
	tmp[len] = '\0';
	tg_tls_options_t o = {0};
	if (k->type == V_SSLPROTO)
		o.protocols = tmp;
	else
		o.ciphers = tmp;
	if (len && tg_tls_options_check(&o, why, sizeof(why)) < 0) {
		/* The library prefixes "ssl-protocols: "; the caller names the key. */
		const char *colon = strstr(why, ": ");
		return colon ? colon + 2 : why;
	}
	memcpy(field, tmp, len + 1);
	return NULL;
}

/* Parses one value into the field at `field`. Returns NULL or a reason. */
static const char *parse_value(const key_desc_t *k, const char *v, size_t len, void *field)
{
	uint64_t x;
	switch (k->type) {
	case V_MS32:
	case V_MS64:
		if (tg_parse_duration_ms(v, len, 1000, &x))
			return "want seconds (60) or a duration (60s, 1m30s, 500ms)";
		if (x < k->min)
			return "must be greater than zero";
		if (k->type == V_MS32) {
			if (x > UINT32_MAX)
				return "too large";
			*(uint32_t *)field = (uint32_t)x;
		} else {
			*(uint64_t *)field = x;
		}
		return NULL;
	case V_U32:
		if (tg_parse_u64(v, len, &x))
			return "want a non-negative integer";
		if (x < k->min)
			return "must be greater than zero";
		if (x > UINT32_MAX)
			return "too large";
		*(uint32_t *)field = (uint32_t)x;
		return NULL;
	case V_SIZE32:
	case V_SIZE64:
		if (tg_parse_size(v, len, &x))
			return "want a size (1024, 8k, 1m)";
		if (x < k->min)
			return "too small";
		if (k->type == V_SIZE32) {
			if (x > UINT32_MAX)
				return "too large";
			*(uint32_t *)field = (uint32_t)x;
		} else {
			*(uint64_t *)field = x;
		}
		return NULL;
	case V_STATUS:
		if (tg_parse_u64(v, len, &x) || x < k->min || x > 599)
			return "want an HTTP status from 400 to 599";
		*(uint32_t *)field = (uint32_t)x;
		return NULL;
	case V_BOOL:
		if (tg_parse_bool(v, len, (bool *)field))
			return "want true or false";
		return NULL;
	case V_LB: {
		tg_str_t s = {v, len};
		if (tg_str_eq(s, "round_robin", 11))
			*(tg_lb_algo_t *)field = TG_LB_ROUND_ROBIN;
		else if (tg_str_eq(s, "ewma", 4))
			*(tg_lb_algo_t *)field = TG_LB_EWMA;
		else
			return "want round_robin or ewma";
		return NULL;
	}
	case V_SSLPROTO:
		return ssl_text(k, v, len, field, sizeof(((tg_settings_t *)0)->ssl_protocols));
	case V_SSLCIPHER:
		return ssl_text(k, v, len, field, sizeof(((tg_settings_t *)0)->ssl_ciphers));
	case V_TICKETKEY: {
		tg_settings_t *s = (tg_settings_t *)((char *)field - k->off);
		if (len == 0) {
			s->has_ssl_session_ticket_key = false;
			return NULL;
		}
		size_t n = 0;
		uint8_t *key = tg_kube_base64_decode(v, len, &n);
		if (!key)
			return "not valid base64";
		bool ok = n == sizeof(s->ssl_session_ticket_key);
		if (ok)
			memcpy(s->ssl_session_ticket_key, key, n);
		memset(key, 0, n);
		free(key);
		if (!ok)
			return "want base64 of 80 bytes (openssl rand 80 | openssl enc -A -base64)";
		s->has_ssl_session_ticket_key = true;
		return NULL;
	}
	case V_CIDRS: {
		tg_settings_t *s = (tg_settings_t *)((char *)field - k->off);
		tg_cidr_t tmp[TG_MAX_REAL_IP_CIDRS];
		int n = tg_cidr_parse_list(v, len, tmp, TG_MAX_REAL_IP_CIDRS, NULL);
		if (n < 0)
			return "want comma-separated addresses or blocks (10.0.0.0/8, fd00::/8), "
			       "at most 16";
		memcpy(s->proxy_real_ip_cidr, tmp, sizeof(tmp));
		s->n_proxy_real_ip_cidr = (uint8_t)n;
		return NULL;
	}
	case V_ALLOW:
	case V_DENY: {
		tg_settings_t *s = (tg_settings_t *)((char *)field - k->off);
		tg_cidr_t tmp[TG_MAX_GLOBAL_RANGES];
		/* Blank means none (a key left empty in a ConfigMap). */
		int n = len ? tg_cidr_parse_list(v, len, tmp, TG_MAX_GLOBAL_RANGES, NULL) : 0;
		if (n < 0)
			return "want comma-separated addresses or blocks (10.0.0.0/8, fd00::/8), "
			       "at most 64";
		if (k->type == V_ALLOW) {
			memcpy(s->allow_ranges, tmp, sizeof(tmp[0]) * (size_t)n);
			s->n_allow_ranges = (uint8_t)n;
		} else {
			memcpy(s->deny_ranges, tmp, sizeof(tmp[0]) * (size_t)n);
			s->n_deny_ranges = (uint8_t)n;
		}
		return NULL;
	}
	case V_HDRBUFS: {
		size_t i = 0;
		while (i < len && v[i] >= '0' && v[i] <= '9')
			i++;
		size_t j = i;
		while (j < len && (v[j] == ' ' || v[j] == '\t'))
			j++;
		uint64_t count, size;
		if (i == 0 || j == i || tg_parse_u64(v, i, &count) ||
		    tg_parse_size(v + j, len - j, &size))
			return "want \"<count> <size>\" such as \"4 8k\"";
		if (count == 0 || count > 1024 || size == 0 || count * size < k->min)
			return "count must be 1..1024 and the total at least 64 bytes";
		if (count * size > UINT32_MAX)
			return "too large";
		*(uint32_t *)field = (uint32_t)(count * size);
		return NULL;
	}
	}
	return "unsupported";
}

/* A rejected key keeps its previous effective value (only that key). */
static void keep_previous(const key_desc_t *k, tg_settings_t *out, const tg_settings_t *prev,
			  size_t w)
{
	switch (k->type) {
	case V_SSLPROTO:
		memcpy(out->ssl_protocols, prev->ssl_protocols, sizeof(out->ssl_protocols));
		return;
	case V_SSLCIPHER:
		memcpy(out->ssl_ciphers, prev->ssl_ciphers, sizeof(out->ssl_ciphers));
		return;
	case V_TICKETKEY:
		out->has_ssl_session_ticket_key = prev->has_ssl_session_ticket_key;
		memcpy(out->ssl_session_ticket_key, prev->ssl_session_ticket_key,
		       sizeof(out->ssl_session_ticket_key));
		return;
	case V_CIDRS:
		memcpy(out->proxy_real_ip_cidr, prev->proxy_real_ip_cidr,
		       sizeof(out->proxy_real_ip_cidr));
		out->n_proxy_real_ip_cidr = prev->n_proxy_real_ip_cidr;
		return;
	default:
		memcpy((char *)out + k->off, (const char *)prev + k->off, w);
		return;
	}
}

int tg_settings_from_configmap(const tg_kv_t *data, uint32_t n, const tg_settings_t *prev,
			       const char *cm_id, tg_settings_t *out)
{
	int bad = 0;
	tg_settings_defaults(out);
	for (uint32_t i = 0; i < n; i++) {
		const key_desc_t *k = NULL;
		for (size_t j = 0; j < TG_ARRAY_SIZE(keys); j++)
			if (strcmp(data[i].key, keys[j].name) == 0)
				k = &keys[j];
		if (!k) {
			if (tg_once_first("configmap-key", data[i].key, strlen(data[i].key)))
				tg_warn("ingress",
					"ConfigMap %s: unknown key %s ignored (logged once)", cm_id,
					data[i].key);
			continue;
		}
		/* Trim surrounding blanks: "60 " is a common hand-edit. */
		const char *v = data[i].value;
		size_t len = data[i].value_len;
		while (len && (*v == ' ' || *v == '\t')) {
			v++;
			len--;
		}
		while (len && (v[len - 1] == ' ' || v[len - 1] == '\t' || v[len - 1] == '\n'))
			len--;
		void *field = (char *)out + k->off;
		const char *why = parse_value(k, v, len, field);
		if (why && (k->type == V_ALLOW || k->type == V_DENY)) {
			/* A protection that cannot be read is not dropped, nor is an
			 * older list kept as if it were what the ConfigMap says: the
			 * routes it governs answer 503 until it is fixed, as
			 * ingress-nginx denies their locations. */
			bad++;
			out->ranges_bad = true;
			tg_error("ingress",
				 "ConfigMap %s: key %s: bad value \"%.*s\": %s; routes without "
				 "their own source-range annotation answer 503 until it is fixed",
				 cm_id, k->name, (int)TG_MIN(len, 64), v, why);
			continue;
		}
		if (why) {
			bad++;
			/* Keep the previous effective value for this key only. */
			size_t w = (k->type == V_MS64 || k->type == V_SIZE64) ? sizeof(uint64_t)
				   : k->type == V_BOOL			      ? sizeof(bool)
				   : k->type == V_LB			      ? sizeof(tg_lb_algo_t)
									      : sizeof(uint32_t);
			if (prev)
				keep_previous(k, out, prev, w);
			tg_warn(
			    "ingress",
			    "ConfigMap %s: key %s: bad value \"%.*s\": %s; keeping the previous "
			    "value",
			    cm_id, k->name, k->type == V_TICKETKEY ? 8 : (int)TG_MIN(len, 64),
			    k->type == V_TICKETKEY ? "(secret)" : v, why);
		}
	}
	return bad;
}

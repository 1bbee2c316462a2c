#include "ingress/kube_status.h"
#include "ingress/object.h"
#include "core/addr.h"
#include "core/common.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* More entries than any load balancer publishes; bounds the work. */
#define MAX_ENTRIES 64

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts entries and appends them joined by spaces; frees them. */
static void join_sorted(char **e, size_t n, tg_sbuf_t *out)
{
	qsort(e, n, sizeof(*e), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (i)
			tg_sbuf_append(out, " ", 1);
		tg_sbuf_append(out, e[i], strlen(e[i]));
		free(e[i]);
	}
}

/* "ip:<canonical address>" when text is an IP address, else NULL. */
static char *ip_entry(const char *text)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (tg_addr_parse_ip(text, &ss, &sl) != 0)
		return NULL;
	char buf[TG_ADDR_TEXT_MAX], *r = malloc(TG_ADDR_TEXT_MAX + 4);
	tg_addr_format_ip((struct sockaddr *)&ss, buf, sizeof(buf));
	if (r)
		snprintf(r, TG_ADDR_TEXT_MAX + 4, "ip:%s", buf);
	return r;
}

static char *host_entry(const char *text, size_t len)
{
	char *r = malloc(len + 10);
	if (!r)
		return NULL;
	memcpy(r, "hostname:", 9);
	for (size_t i = 0; i < len; i++)
		r[9 + i] = tg_lower(text[i]);
	r[9 + len] = 0;
	return r;
}

int tg_kube_status_build(const char *addresses, tg_kube_status_t *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	char *ent[MAX_ENTRIES];
	size_t n = 0;
	tg_sbuf_t patch = {0}, canon = {0};
	tg_sbuf_printf(&patch, "{\"status\":{\"loadBalancer\":{\"ingress\":[");
	const char *p = addresses ? addresses : "";
	int rc = 0;
	while (*p) {
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);
		const char *a = p, *b = end;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		p = comma ? comma + 1 : end;
		if (a == b)
			continue;
		size_t len = (size_t)(b - a);
		if (n == MAX_ENTRIES || len > 253) {
			snprintf(err, errlen,
				 "--publish-status-address: too many or too long entries");
			rc = -EINVAL;
			goto fail;
		}
		char text[256];
		memcpy(text, a, len);
		text[len] = 0;
		char *e = ip_entry(text);
		if (e) {
			tg_sbuf_printf(&patch, "%s{\"ip\":\"%s\"}", n ? "," : "", e + 3);
		} else if (tg_object_valid_host(text, len) && !memchr(text, '*', len)) {
			e = host_entry(text, len);
			if (e)
				tg_sbuf_printf(&patch, "%s{\"hostname\":\"%s\"}", n ? "," : "",
					       e + 9);
		} else {
			snprintf(
			    err, errlen,
			    "--publish-status-address: \"%s\" is neither an IP address nor a DNS "
			    "host name",
			    text);
			rc = -EINVAL;
			goto fail;
		}
		if (!e) {
			rc = -ENOMEM;
			goto fail;
		}
		ent[n++] = e;
	}
	tg_sbuf_printf(&patch, "]}}}");
	tg_sbuf_append(&canon, "", 0);
	join_sorted(ent, n, &canon);
	n = 0;
	if (patch.oom || canon.oom || !canon.data) {
		rc = -ENOMEM;
		goto fail;
	}
	out->patch = patch.data;
	out->canonical = canon.data;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		free(ent[i]);
	tg_sbuf_free(&patch);
	tg_sbuf_free(&canon);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	return rc;
}

void tg_kube_status_free(tg_kube_status_t *s)
{
	if (!s)
		return;
	free(s->canonical);
	free(s->patch);
	memset(s, 0, sizeof(*s));
}

static struct fy_node *mget(struct fy_node *m, const char *key)
{
	if (!m || fy_node_get_type(m) != FYNT_MAPPING)
		return NULL;
	return fy_node_mapping_lookup_by_string(m, key, strlen(key));
}

/* The scalar text of m[key] copied into buf; false when absent. */
static bool sget(struct fy_node *m, const char *key, char *buf, size_t len)
{
	struct fy_node *v = mget(m, key);
	size_t n;
	const char *s = v && fy_node_get_type(v) == FYNT_SCALAR ? fy_node_get_scalar(v, &n) : NULL;
	if (!s || n == 0 || n >= len)
		return false;
	memcpy(buf, s, n);
	buf[n] = 0;
	return true;
}

void tg_kube_status_current(struct fy_node *obj, tg_sbuf_t *out)
{
	struct fy_node *list = mget(mget(mget(obj, "status"), "loadBalancer"), "ingress");
	if (!list || fy_node_get_type(list) != FYNT_SEQUENCE)
		return;
	char *ent[MAX_ENTRIES];
	size_t n = 0;
	void *it = NULL;
	struct fy_node *e;
	while (n < MAX_ENTRIES && (e = fy_node_sequence_iterate(list, &it))) {
		char text[256];
		char *s = NULL;
		if (sget(e, "ip", text, sizeof(text)))
			s = ip_entry(text);
		if (!s &&
		    (sget(e, "hostname", text, sizeof(text)) || sget(e, "ip", text, sizeof(text))))
			s = host_entry(text, strlen(text));
		if (!s)
			s = strdup("?");
		struct fy_node *ports = mget(e, "ports");
		if (s && ports && fy_node_get_type(ports) == FYNT_SEQUENCE &&
		    fy_node_sequence_item_count(ports) > 0) {
			size_t l = strlen(s);
			char *t = realloc(s, l + 7);
			if (t)
				memcpy(t + l, "+ports", 7);
			else
				free(s);
			s = t;
		}
		if (s)
			ent[n++] = s;
		else
			tg_sbuf_append(out, "?", 1); /* allocation failure: force a difference */
	}
	join_sorted(ent, n, out);
}

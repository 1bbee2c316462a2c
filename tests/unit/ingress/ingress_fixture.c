#include "ingress_fixture.h"
#include "ingress/manifest.h"

#include <stdio.h>
#include <string.h>

int ingfx_apply(tg_store_t *st, const char *yaml)
{
	tg_manifest_t m;
	if (tg_manifest_parse("test.yaml", yaml, strlen(yaml), &m))
		return -1;
	if (m.failed) {
		fprintf(stderr, "ingfx_apply: file failed at line %d: %s\n", m.line, m.reason);
		tg_manifest_free(&m);
		return -1;
	}
	int rejected = 0;
	for (size_t i = 0; i < m.n_items; i++) {
		if (m.items[i].obj) {
			tg_store_apply(st, m.items[i].obj);
			m.items[i].obj = NULL;
		} else {
			fprintf(stderr, "ingfx_apply: rejected %s/%s (line %d): %s\n",
				m.items[i].error.ns, m.items[i].error.name, m.items[i].error.line,
				m.items[i].error.reason);
			rejected++;
		}
	}
	tg_manifest_free(&m);
	return rejected;
}

tg_translate_config_t ingfx_config(void)
{
	tg_translate_config_t c = {
	    .ingress_class = "tidegate",
	    .controller_class = "tidegate.io/ingress-controller",
	    .watch_ingress_without_class = false,
	    .configmap = "tidegate-system/tidegate",
	};
	return c;
}

tg_snapshot_t *ingfx_build(tg_store_t *st, const tg_translate_config_t *cfg)
{
	tg_translate_config_t c = cfg ? *cfg : ingfx_config();
	tg_translator_t *t = tg_translator_new(&c);
	if (!t)
		return NULL;
	tg_snapshot_t *s = tg_translator_build(t, st, NULL);
	tg_translator_free(t);
	return s;
}

const tg_route_t *ingfx_find(const tg_snapshot_t *s, const char *host, const char *path)
{
	tg_str_t h = {host, strlen(host)}, p = {path, strlen(path)};
	return tg_snapshot_route(s, h, p);
}

const char *ingfx_route(const tg_snapshot_t *s, const char *host, const char *path)
{
	static char buf[256];
	const tg_route_t *r = ingfx_find(s, host, path);
	if (!r)
		return "404";
	if (!r->backend)
		snprintf(buf, sizeof(buf), "503 %s/%s", r->ingress_ns, r->ingress_name);
	else
		snprintf(buf, sizeof(buf), "%s:%s", r->backend->service, r->backend->port);
	return buf;
}

int ingfx_services(tg_store_t *st, const char *ns, const char *names)
{
	char name[64], yaml[2048];
	int i = 0;
	const char *p = names;
	while (*p) {
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, " ");
		if (!n)
			break;
		snprintf(name, sizeof(name), "%.*s", (int)n, p);
		p += n;
		i++;
		snprintf(yaml, sizeof(yaml),
			 "apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: %s}\n"
			 "spec:\n  ports:\n  - {name: http, port: 80, targetPort: 8080}\n---\n"
			 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
			 "metadata:\n  name: %s-x\n  namespace: %s\n"
			 "  labels: {kubernetes.io/service-name: %s}\n"
			 "addressType: IPv4\nports: [{name: http, port: 8080}]\n"
			 "endpoints:\n- addresses: [10.0.0.%d]\n",
			 name, ns, name, ns, name, i);
		if (ingfx_apply(st, yaml) != 0)
			return -1;
	}
	return 0;
}

/*
 * fuzz_manifest.c - libFuzzer target: arbitrary bytes as one manifest file ->
 * objects -> store -> snapshot -> route lookups. Finds crashes, leaks and
 * undefined behaviour anywhere between libfyaml's output and the router.
 * Seeds: corpus/manifest/; dictionary: manifest.dict.
 */
#include "ingress/manifest.h"
#include "ingress/snapshot.h"
#include "ingress/store.h"
#include "ingress/translate.h"
#include "core/log.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	tg_log_set_level(TG_LOG_ERROR);
	return 0;
}

static void lookups(const tg_snapshot_t *s, const tg_store_t *st)
{
	static const char *const hosts[] = {
	    "",		"a.example.com", "A.Example.COM:8080", "x.y.z",
	    "[::1]:80", "example.com.",	 "*.example.com"};
	static const char *const paths[] = {"/",       "",   "/foo",	     "/foo/", "/foo/bar",
					    "/foobar", "//", "/a/b/c/d/e/f", "*"};
	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++)
		for (size_t j = 0; j < sizeof(paths) / sizeof(paths[0]); j++) {
			tg_str_t h = {hosts[i], strlen(hosts[i])}, p = {paths[j], strlen(paths[j])};
			const tg_route_t *r = tg_snapshot_route(s, h, p);
			if (r && r->backend && r->backend->id >= s->n_backends)
				__builtin_trap();
		}
	/* Every rule's own host and path must find a route. */
	uint32_t n;
	tg_object_t *const *ings = tg_store_list(st, TG_KIND_INGRESS, &n);
	for (uint32_t i = 0; i < n && i < 16; i++) {
		const tg_ingress_spec_t *ing = &ings[i]->u.ingress;
		for (uint32_t r = 0; r < ing->n_rules && r < 8; r++)
			for (uint32_t p = 0; p < ing->rules[r].n_paths && p < 8; p++) {
				const char *host = ing->rules[r].host;
				const char *path = ing->rules[r].paths[p].path;
				tg_str_t h = {host, strlen(host)}, pp = {path, strlen(path)};
				(void)tg_snapshot_route(s, h, pp);
			}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tg_manifest_t m;
	const char *name = size && data[0] == '{' ? "fuzz.json" : "fuzz.yaml";
	if (tg_manifest_parse(name, (const char *)data, size, &m))
		return 0;
	tg_store_t *st = tg_store_new();
	if (!st) {
		tg_manifest_free(&m);
		return 0;
	}
	for (size_t i = 0; i < m.n_items; i++) {
		if (m.items[i].obj) {
			tg_store_apply(st, m.items[i].obj);
			m.items[i].obj = NULL;
		}
	}
	tg_manifest_free(&m);
	tg_translate_config_t cfg = {
	    .ingress_class = "tidegate",
	    .controller_class = "tidegate.io/ingress-controller",
	    .watch_ingress_without_class = (size & 1) != 0,
	    .configmap = "tidegate-system/tidegate",
	};
	tg_translator_t *t = tg_translator_new(&cfg);
	if (t) {
		tg_snapshot_t *s = tg_translator_build(t, st, NULL);
		if (s)
			lookups(s, st);
		tg_snapshot_release(s);
		tg_translator_free(t);
	}
	tg_store_free(st);
	return 0;
}

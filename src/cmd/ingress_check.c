/*
 * ingress_check.c - `tidegate ingress --check` (see ingress_check.h).
 */
#include "cmd/ingress_check.h"

#include "ingress/manifest.h"
#include "ingress/snapshot.h"
#include "ingress/store.h"
#include "ingress/translate.h"
#include "tls/tls.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DEPTH      16
#define MAX_FILE_BYTES (64u << 20)

typedef struct check {
	tg_store_t *store; /* objects applied so far */
	unsigned files;	   /* manifest files read */
	unsigned failed;   /* files refused as a whole */
	unsigned objects;  /* objects accepted */
	unsigned rejected; /* objects refused one by one */
} check_t;

/* Same rule as the directory source: hidden names are skipped (editor files,
 * ConfigMap-volume internals), and only these extensions are manifests. */
static int manifest_name(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || name[0] == '.')
		return 0;
	return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
	       (n > 4 && strcmp(name + n - 4, ".yml") == 0) ||
	       (n > 5 && strcmp(name + n - 5, ".json") == 0);
}

static void check_file(check_t *k, const char *path, const struct stat *st)
{
	k->files++;
	if (st->st_size > (off_t)MAX_FILE_BYTES) {
		fprintf(stderr, "%s: larger than %u MiB\n", path, MAX_FILE_BYTES >> 20);
		k->failed++;
		return;
	}
	FILE *f = fopen(path, "rb");
	char *text = malloc((size_t)st->st_size + 1);
	size_t len = f && text ? fread(text, 1, (size_t)st->st_size, f) : 0;
	int rerr = f ? ferror(f) : errno;
	if (f)
		fclose(f);
	if (!f || !text || rerr) {
		fprintf(stderr, "%s: cannot read: %s\n", path, strerror(f ? EIO : rerr));
		free(text);
		k->failed++;
		return;
	}
	tg_manifest_t m;
	int rc = tg_manifest_parse(path, text, len, &m);
	free(text);
	if (rc || m.failed) {
		if (rc)
			fprintf(stderr, "%s: out of memory\n", path);
		else if (m.line)
			fprintf(stderr, "%s:%d: %s\n", path, m.line, m.reason);
		else
			fprintf(stderr, "%s: %s\n", path, m.reason);
		k->failed++;
		tg_manifest_free(&m);
		return;
	}
	for (size_t i = 0; i < m.n_items; i++) {
		tg_manifest_item_t *it = &m.items[i];
		if (it->obj) {
			k->objects++;
			tg_store_apply(k->store, it->obj); /* takes it, even on failure */
			it->obj = NULL;
			continue;
		}
		k->rejected++;
		const tg_object_error_t *e = &it->error;
		fprintf(stderr, "%s:%d: %s %s%s%s rejected: %s\n", path, e->line,
			tg_kind_name(e->kind), e->ns, *e->ns ? "/" : "", e->name, e->reason);
	}
	tg_manifest_free(&m);
}

static int compare(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int scan(check_t *k, const char *dir, int depth)
{
	if (depth > MAX_DEPTH) {
		fprintf(stderr, "%s: deeper than %d directories: not read\n", dir, MAX_DEPTH);
		return 0;
	}
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "%s: %s\n", dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			char **nn = realloc(names, cap * sizeof(*nn));
			if (!nn)
				break;
			names = nn;
		}
		if (!(names[n] = strdup(de->d_name)))
			break;
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), compare); /* stable report order */
	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX];
		int pl = snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		struct stat st;
		if (pl >= 0 && (size_t)pl < sizeof(path) && stat(path, &st) == 0) {
			if (S_ISDIR(st.st_mode))
				scan(k, path, depth + 1);
			else if (S_ISREG(st.st_mode) && manifest_name(names[i]))
				check_file(k, path, &st);
		}
		free(names[i]);
	}
	free(names);
	return 0;
}

int tg_ingress_check(const tg_source_config_t *cfg)
{
	if (!cfg->manifests_dir) {
		fprintf(stderr, "tidegate ingress: --check needs --manifests DIR\n");
		return 2;
	}
	if (tg_tls_init() < 0) { /* the build checks TLS Secrets too */
		fprintf(stderr, "tidegate ingress: TLS initialisation failed (OpenSSL)\n");
		return 1;
	}
	check_t k = {0};
	k.store = tg_store_new();
	tg_translate_config_t tc = {
	    .ingress_class = cfg->ingress_class,
	    .controller_class = cfg->controller_class,
	    .watch_ingress_without_class = cfg->watch_ingress_without_class,
	    .configmap = cfg->configmap,
	};
	tg_translator_t *tr = tg_translator_new(&tc);
	if (!k.store || !tr) {
		fprintf(stderr, "tidegate ingress: out of memory\n");
		tg_store_free(k.store);
		tg_translator_free(tr);
		return 1;
	}
	int rc = 0;
	struct stat st;
	if (stat(cfg->manifests_dir, &st) < 0) {
		fprintf(stderr, "%s: %s\n", cfg->manifests_dir, strerror(errno));
		rc = 1;
	} else if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "%s: not a directory\n", cfg->manifests_dir);
		rc = 1;
	} else if (scan(&k, cfg->manifests_dir, 0) < 0) {
		rc = 1;
	}
	tg_build_stats_t bs = {0};
	tg_snapshot_t *s = rc ? NULL : tg_translator_build(tr, k.store, &bs);
	if (!rc && !s) {
		fprintf(stderr, "tidegate ingress: out of memory building the configuration\n");
		rc = 1;
	}
	if (!rc) {
		printf("%s: %u files (%u failed), %u objects (%u rejected), %u ConfigMap keys "
		       "rejected; %u Ingresses routed, %u routes (%u without backend), "
		       "%u backends, %u endpoints\n",
		       cfg->manifests_dir, k.files, k.failed, k.objects, k.rejected,
		       bs.settings_errors, bs.ingresses_routed, bs.routes, bs.unresolved,
		       bs.backends, bs.endpoints);
		if (k.failed || k.rejected || bs.settings_errors)
			rc = 1;
	}
	tg_snapshot_release(s);
	tg_translator_free(tr);
	tg_store_free(k.store);
	return rc;
}

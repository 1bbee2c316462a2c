/*
 * source.c - the manifest-directory configuration source (contract in
 * source.h).
 *
 * One thread owns the store, the translator and the table of files. Each file
 * is the unit of change: re-reading it applies the objects it now declares,
 * deletes the ones it no longer declares (when the store's version came from
 * this file) and leaves everything alone when the file does not parse, so its
 * last good objects stay in force. Invalid objects are rejected one by one
 * (their last good version stays in the store).
 *
 * inotify events only mark paths dirty; the reload waits for a quiet period
 * so that an editor's write-rename-chmod burst costs one reload. How long
 * depends on what the events say (watch_thread):
 *   - quick (QUICK_MS after the last event, at most DEBOUNCE_MS after the
 *     first): the first change after a quiet source (no reload for
 *     DEBOUNCE_MS) whose dirty paths are all complete files (closed after
 *     writing, or renamed into place), the common "one kubectl apply / one
 *     save" case, so that it goes live in a few milliseconds;
 *   - normal (DEBOUNCE_MS after the last event, at most DEBOUNCE_MAX_MS after
 *     the first): everything else: a file deleted or renamed away (often the
 *     first half of a replace, as vim's backup-rename-write does; acting
 *     quickly would withdraw its objects for a moment), a directory, a queue
 *     overflow, a ConfigMap-volume swap, and any event that arrives within
 *     DEBOUNCE_MS of the last reload (a burst: it coalesces);
 *   - until closed (at most DEBOUNCE_MAX_MS after the first event): a file
 *     created and not closed yet, whose content may still be partial (a
 *     slow writer); reading it early could withdraw objects it declares
 *     further down.
 * A file reported complete is parsed during that wait (pending_t), so the
 * reload itself only applies objects and builds the snapshot.
 * Names starting with '.' are ignored (editor swap files, temporaries), except
 * "..data": a Kubernetes ConfigMap volume swaps that symlink to update every
 * file at once, which triggers a full re-read.
 */
#include "ingress/source.h"
#include "ingress/config_metrics.h"
#include "ingress/kube.h"
#include "ingress/manifest.h"
#include "ingress/snapshot.h"
#include "ingress/store.h"
#include "ingress/strmap.h"
#include "ingress/translate.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QUICK_MS	5    /* quiet time before applying a lone complete write */
#define DEBOUNCE_MS	50   /* quiet time otherwise (see the top of the file) */
#define DEBOUNCE_MAX_MS 1000 /* longest a change waits under a steady event stream */
#define MAX_FILE_BYTES	(64u << 20)
#define MAX_DEPTH	16
#define WATCH_MASK                                                                                 \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |        \
	 IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

/* An object a file declared at its last good read. */
typedef struct okey {
	tg_kind_t kind; /* kind */
	char *ns;	/* namespace */
	char *name;	/* name */
} okey_t;

/* One manifest file. */
typedef struct file_entry {
	char *path;	 /* full path, the files-map key */
	size_t path_len; /* bytes of path */
	okey_t *keys;	 /* objects declared at the last good read */
	uint32_t n_keys; /* entries in keys */
	uint32_t errors; /* current errors: 1 when unparsable, else rejected objects */
	bool seen;	 /* found by the running full scan */
} file_entry_t;

/* What the last inotify event said about a dirty path's content. */
enum {
	P_UNKNOWN = 0, /* nothing (attributes changed), or not yet known */
	P_COMPLETE,    /* final: closed after writing, or renamed into place */
	P_WRITING,     /* created and not closed yet: may be partial */
	P_GONE,	       /* deleted or renamed away (maybe the first half of a replace) */
	P_DIR,	       /* a directory appeared or went */
};

/*
 * A changed path waiting for the reload. A file reported complete (closed
 * after writing, or renamed into place) is parsed at once, during the
 * debounce wait, so the reload only applies it; the early parse is used only
 * if the file is still the one parsed (same inode, size, mtime and ctime).
 */
typedef struct pending {
	char *path;	 /* full path, the dirty-map key */
	int state;	 /* what the last event said about the content: P_* */
	bool want_parse; /* reported complete since the last early parse */
	bool parsed;	 /* m holds the parse of the file `st` describes */
	struct stat st;	 /* identity of the parsed version */
	tg_manifest_t m; /* early parse */
} pending_t;

/* An inotify watch on a directory. */
typedef struct watch {
	int wd;	    /* watch descriptor */
	char *path; /* directory path */
} watch_t;

/* A failing file as the metrics page shows it (copied after each reload). */
typedef struct failing {
	char *path;	 /* file */
	uint32_t errors; /* errors in it */
} failing_t;

/* Counters read by tg_source_metrics from another thread (under mlock). */
typedef struct metrics {
	tg_config_metrics_t cm; /* the families every source reports */
	failing_t *failing;	/* files with errors now */
	uint32_t n_failing;	/* entries in failing */
} metrics_t;

static struct source {
	bool running;			 /* between start and stop */
	char *dir;			 /* --manifests, without trailing '/' */
	tg_store_t *store;		 /* current objects */
	tg_translator_t *tr;		 /* store -> snapshot */
	tg_strmap_t files;		 /* path -> file_entry_t */
	tg_strmap_t dirty;		 /* path (malloc'ed key) -> itself */
	bool dirty_all;			 /* a full re-read is due */
	watch_t *watches;		 /* directory watches */
	uint32_t n_watches, cap_watches; /* used / allocated */
	int ifd;			 /* inotify */
	int efd;			 /* eventfd: wakes the thread for resync/stop */
	pthread_t thread;		 /* the watcher */
	_Atomic bool stop;		 /* tg_source_stop asked */
	_Atomic bool resync;		 /* tg_source_resync asked */
	bool force_publish;		 /* the pending reload is a resync: publish a
					  * snapshot even when no object changed */
	uint64_t published_seq;		 /* store seq of the published snapshot */
	bool published;			 /* a snapshot was published */
	uint64_t reloads;		 /* reload counter for log lines */
	/* per-reload tallies */
	uint32_t r_files;      /* files read */
	uint32_t r_failed;     /* files that failed to parse */
	uint32_t r_rejected;   /* objects rejected */
	uint32_t r_removed;    /* files gone */
	pthread_mutex_t mlock; /* guards m */
	metrics_t m;	       /* for tg_source_metrics */
} src = {.ifd = -1, .efd = -1, .mlock = PTHREAD_MUTEX_INITIALIZER};

/* Which source runs: the API source (kube.h) has its own thread and state;
 * source.h's functions forward to it. */
static _Atomic bool kube_mode;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool manifest_name(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || name[0] == '.')
		return false;
	return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
	       (n > 4 && strcmp(name + n - 4, ".yml") == 0) ||
	       (n > 5 && strcmp(name + n - 5, ".json") == 0);
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* ---- files -------------------------------------------------------------- */

static void free_keys(okey_t *k, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		free(k[i].ns);
		free(k[i].name);
	}
	free(k);
}

static void entry_free(file_entry_t *fe)
{
	free_keys(fe->keys, fe->n_keys);
	free(fe->path);
	free(fe);
}

/* Deletes the objects of keys[0..n) whose stored version this file applied,
 * skipping those present in `keep` (a set of store keys). */
static void drop_objects(file_entry_t *fe, const okey_t *keys, uint32_t n, const tg_strmap_t *keep)
{
	char key[400];
	for (uint32_t i = 0; i < n; i++) {
		size_t kl = tg_object_key(keys[i].kind, keys[i].ns, keys[i].name, key, sizeof(key));
		if (keep && kl && tg_strmap_get(keep, key, kl))
			continue;
		const tg_object_t *o =
		    tg_store_get(src.store, keys[i].kind, keys[i].ns, keys[i].name);
		if (o && o->owner == fe)
			tg_store_delete(src.store, keys[i].kind, keys[i].ns, keys[i].name);
	}
}

static void remove_entry(file_entry_t *fe)
{
	tg_strmap_del(&src.files, fe->path, fe->path_len);
	drop_objects(fe, fe->keys, fe->n_keys, NULL);
	tg_info("ingress", "%s: removed; its %u objects are withdrawn", fe->path, fe->n_keys);
	src.r_removed++;
	entry_free(fe);
}

/* Removes the file at path, and every file below it when it was a directory. */
static void remove_path(const char *path)
{
	size_t len = strlen(path);
	file_entry_t *fe = tg_strmap_get(&src.files, path, len);
	if (fe)
		remove_entry(fe);
	/* A directory that went away: collect first, the map must not change
	 * while iterating it. */
	file_entry_t **gone = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < src.files.cap; i++) {
		file_entry_t *e = src.files.slots[i].key ? src.files.slots[i].value : NULL;
		if (!e || e->path_len <= len || memcmp(e->path, path, len) != 0 ||
		    e->path[len] != '/')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			file_entry_t **g = realloc(gone, cap * sizeof(*g));
			if (!g)
				break;
			gone = g;
		}
		gone[n++] = e;
	}
	for (size_t i = 0; i < n; i++)
		remove_entry(gone[i]);
	free(gone);
}

static int read_file(const char *path, char **out, size_t *len, struct stat *st_out)
{
	/* O_NONBLOCK: a FIFO dropped into the directory must not hang the
	 * watcher; only regular files are read. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if (st.st_size > (off_t)MAX_FILE_BYTES) {
		close(fd);
		return -EFBIG;
	}
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *buf = malloc(cap);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		if (n == cap) {
			if (cap > MAX_FILE_BYTES) {
				free(buf);
				close(fd);
				return -EFBIG;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				close(fd);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = -errno;
			free(buf);
			close(fd);
			return e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*out = buf;
	*len = n;
	if (st_out)
		*st_out = st;
	return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void pending_free(pending_t *p)
{
	if (!p)
		return;
	tg_manifest_free(&p->m);
	free(p->path);
	free(p);
}

/* Parses a complete file ahead of the reload (see pending_t). */
static void preparse(pending_t *p)
{
	char *text;
	size_t len;
	struct stat st;
	p->want_parse = false;
	if (p->parsed) {
		tg_manifest_free(&p->m);
		p->parsed = false;
	}
	if (read_file(p->path, &text, &len, &st))
		return; /* the reload reads it again and reports */
	if (st.st_size != (off_t)len) {
		free(text); /* changed while read: the reload reads it again */
		return;
	}
	int rc = tg_manifest_parse(p->path, text, len, &p->m);
	free(text);
	if (rc) {
		tg_manifest_free(&p->m);
		return;
	}
	p->st = st;
	p->parsed = true;
}

static file_entry_t *entry_get(const char *path)
{
	size_t len = strlen(path);
	file_entry_t *fe = tg_strmap_get(&src.files, path, len);
	if (fe)
		return fe;
	fe = calloc(1, sizeof(*fe));
	if (!fe || !(fe->path = strdup(path))) {
		free(fe);
		return NULL;
	}
	fe->path_len = len;
	if (tg_strmap_put(&src.files, fe->path, len, fe, NULL)) {
		entry_free(fe);
		return NULL;
	}
	return fe;
}

/* Reads one manifest file (or takes its early parse from p) and applies it
 * to the store. */
static void load_file(const char *path, pending_t *p)
{
	char *text = NULL;
	size_t len = 0;
	file_entry_t *fe = entry_get(path);
	if (!fe) {
		tg_error("ingress", "%s: out of memory", path);
		return;
	}
	src.r_files++;
	tg_manifest_t m;
	int rc = 0;
	struct stat now;
	if (p && p->parsed && stat(path, &now) == 0 && same_file(&now, &p->st)) {
		m = p->m; /* taken: p no longer owns it */
		memset(&p->m, 0, sizeof(p->m));
		p->parsed = false;
	} else {
		rc = read_file(path, &text, &len, NULL);
		if (rc) {
			tg_warn("ingress", "%s: cannot read: %s; keeping its last good objects",
				path, strerror(-rc));
			fe->errors = 1;
			src.r_failed++;
			return;
		}
		rc = tg_manifest_parse(path, text, len, &m);
		free(text);
	}
	if (rc || m.failed) {
		if (rc)
			tg_error("ingress", "%s: out of memory; keeping its last good objects",
				 path);
		else if (m.line)
			tg_warn("ingress", "%s:%d: %s; keeping the file's last good objects", path,
				m.line, m.reason);
		else
			tg_warn("ingress", "%s: %s; keeping the file's last good objects", path,
				m.reason);
		fe->errors = 1;
		src.r_failed++;
		tg_manifest_free(&m);
		return;
	}
	okey_t *keys = calloc(m.n_items ? m.n_items : 1, sizeof(*keys));
	tg_strmap_t keep = {0};
	char **keep_keys = calloc(m.n_items ? m.n_items : 1, sizeof(char *));
	if (!keys || !keep_keys) {
		free(keys);
		free(keep_keys);
		tg_manifest_free(&m);
		tg_error("ingress", "%s: out of memory; keeping its last good objects", path);
		return;
	}
	uint32_t n_keys = 0, rejected = 0;
	for (size_t i = 0; i < m.n_items; i++) {
		tg_manifest_item_t *it = &m.items[i];
		tg_kind_t kind = it->obj ? it->obj->kind : it->error.kind;
		const char *ns = it->obj ? it->obj->ns : it->error.ns;
		const char *name = it->obj ? it->obj->name : it->error.name;
		okey_t *k = &keys[n_keys];
		k->kind = kind;
		k->ns = strdup(ns);
		k->name = strdup(name);
		char key[400];
		size_t kl = tg_object_key(kind, ns, name, key, sizeof(key));
		keep_keys[n_keys] = kl ? strndup(key, kl) : NULL;
		if (!k->ns || !k->name || !keep_keys[n_keys] ||
		    tg_strmap_put(&keep, keep_keys[n_keys], kl, k, NULL)) {
			free(k->ns);
			free(k->name);
			free(keep_keys[n_keys]);
			tg_error("ingress", "%s: out of memory", path);
			continue;
		}
		n_keys++;
		if (it->obj) {
			it->obj->owner = fe;
			if (tg_store_apply(src.store, it->obj) < 0)
				tg_error("ingress", "%s: out of memory applying %s %s/%s", path,
					 tg_kind_name(kind), ns, name);
			it->obj = NULL;
			continue;
		}
		rejected++;
		bool has_good = tg_store_get(src.store, kind, ns, name) != NULL;
		tg_warn("ingress", "%s %s%s%s rejected (%s:%d): %s; %s", tg_kind_name(kind), ns,
			*ns ? "/" : "", name, path, it->error.line, it->error.reason,
			has_good ? "its last good version stays in force"
				 : "it is not used until fixed");
	}
	drop_objects(fe, fe->keys, fe->n_keys, &keep);
	free_keys(fe->keys, fe->n_keys);
	fe->keys = keys;
	fe->n_keys = n_keys;
	fe->errors = rejected;
	src.r_rejected += rejected;
	for (uint32_t i = 0; i < n_keys; i++)
		free(keep_keys[i]);
	free(keep_keys);
	tg_strmap_free(&keep);
	tg_manifest_free(&m);
}

/* ---- directories -------------------------------------------------------- */

static void add_watch(const char *dir)
{
	if (src.ifd < 0)
		return;
	int wd = inotify_add_watch(src.ifd, dir, WATCH_MASK);
	if (wd < 0) {
		tg_warn("ingress", "%s: cannot watch: %s (changes there need SIGHUP)", dir,
			strerror(errno));
		return;
	}
	for (uint32_t i = 0; i < src.n_watches; i++)
		if (src.watches[i].wd == wd) {
			char *p = strdup(dir);
			if (p) {
				free(src.watches[i].path);
				src.watches[i].path = p;
			}
			return;
		}
	if (src.n_watches == src.cap_watches) {
		uint32_t ncap = src.cap_watches ? src.cap_watches * 2 : 16;
		watch_t *n = realloc(src.watches, ncap * sizeof(*n));
		if (!n)
			return;
		src.watches = n;
		src.cap_watches = ncap;
	}
	char *p = strdup(dir);
	if (!p)
		return;
	src.watches[src.n_watches++] = (watch_t){wd, p};
}

static const char *watch_path(int wd)
{
	for (uint32_t i = 0; i < src.n_watches; i++)
		if (src.watches[i].wd == wd)
			return src.watches[i].path;
	return NULL;
}

static void drop_watch(int wd)
{
	for (uint32_t i = 0; i < src.n_watches; i++)
		if (src.watches[i].wd == wd) {
			free(src.watches[i].path);
			src.watches[i] = src.watches[--src.n_watches];
			return;
		}
}

/* Loads every manifest under dir (watching each directory), marking the
 * entries it sees. */
static void scan_dir(const char *dir, int depth)
{
	if (depth > MAX_DEPTH)
		return;
	add_watch(dir);
	DIR *d = opendir(dir);
	if (!d) {
		tg_warn("ingress", "%s: cannot list: %s", dir, strerror(errno));
		return;
	}
	/* Sorted names: the load order (and so the log) does not depend on the
	 * file system's order. */
	struct dirent **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			struct dirent **nn = realloc(names, cap * sizeof(*nn));
			if (!nn)
				break;
			names = nn;
		}
		size_t nl = strlen(de->d_name);
		struct dirent *copy = malloc(offsetof(struct dirent, d_name) + nl + 1);
		if (!copy)
			break;
		memcpy(copy->d_name, de->d_name, nl + 1);
		names[n++] = copy;
	}
	closedir(d);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(names[j - 1]->d_name, names[j]->d_name) > 0;
		     j--) {
			struct dirent *t = names[j];
			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	char path[PATH_MAX];
	for (size_t i = 0; i < n; i++) {
		int pl = snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		free(names[i]);
		if (pl < 0 || (size_t)pl >= sizeof(path))
			continue;
		struct stat st;
		if (stat(path, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			scan_dir(path, depth + 1);
		} else if (S_ISREG(st.st_mode) && manifest_name(base_name(path))) {
			load_file(path, NULL);
			file_entry_t *fe = tg_strmap_get(&src.files, path, strlen(path));
			if (fe)
				fe->seen = true;
		}
	}
	free(names);
}

static int path_depth(const char *path)
{
	int d = 0;
	for (const char *p = path + strlen(src.dir); *p; p++)
		d += *p == '/';
	return d;
}

/* Re-reads one changed path (file, new directory, or something gone). */
static void load_path(const char *path, pending_t *p)
{
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		scan_dir(path, path_depth(path));
		return;
	}
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && manifest_name(base_name(path))) {
		load_file(path, p);
		return;
	}
	remove_path(path);
}

/* Re-reads the whole tree; files that disappeared are withdrawn. */
static void full_scan(void)
{
	struct stat st;
	if (stat(src.dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		tg_error("ingress",
			 "%s: not readable as a directory any more; keeping the current "
			 "configuration",
			 src.dir);
		src.r_failed++;
		return;
	}
	for (size_t i = 0; i < src.files.cap; i++)
		if (src.files.slots[i].key)
			((file_entry_t *)src.files.slots[i].value)->seen = false;
	scan_dir(src.dir, 0);
	file_entry_t **gone = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < src.files.cap; i++) {
		file_entry_t *e = src.files.slots[i].key ? src.files.slots[i].value : NULL;
		if (!e || e->seen)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			file_entry_t **g = realloc(gone, cap * sizeof(*g));
			if (!g)
				break;
			gone = g;
		}
		gone[n++] = e;
	}
	for (size_t i = 0; i < n; i++)
		remove_entry(gone[i]);
	free(gone);
}

/* ---- reload ------------------------------------------------------------- */

static void update_metrics(bool ok, const tg_build_stats_t *bs, bool built)
{
	uint32_t nf = 0;
	for (size_t i = 0; i < src.files.cap; i++)
		if (src.files.slots[i].key && ((file_entry_t *)src.files.slots[i].value)->errors)
			nf++;
	failing_t *f = calloc(nf ? nf : 1, sizeof(*f));
	uint32_t k = 0;
	for (size_t i = 0; f && i < src.files.cap && k < nf; i++) {
		file_entry_t *e = src.files.slots[i].key ? src.files.slots[i].value : NULL;
		if (e && e->errors) {
			f[k].path = strdup(e->path);
			f[k].errors = e->errors;
			if (f[k].path)
				k++;
		}
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	pthread_mutex_lock(&src.mlock);
	metrics_t *m = &src.m;
	m->cm.last_ok = ok;
	if (ok) {
		m->cm.reloads_ok++;
		m->cm.last_success = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	} else {
		m->cm.reloads_failed++;
	}
	m->cm.errors_total += src.r_failed + src.r_rejected;
	for (int i = 0; i < TG_KIND_COUNT; i++)
		tg_store_list(src.store, (tg_kind_t)i, &m->cm.objects[i]);
	if (built) {
		m->cm.routed = bs->ingresses_routed;
		m->cm.build_seconds = bs->build_ms / 1e3;
	}
	for (uint32_t i = 0; i < m->n_failing; i++)
		free(m->failing[i].path);
	free(m->failing);
	m->failing = f;
	m->n_failing = f ? k : 0;
	pthread_mutex_unlock(&src.mlock);
}

/* Applies what changed (everything when full), then builds and publishes a
 * snapshot when the store moved, or when a resync asked for one (so that the
 * generation shows an operator that the SIGHUP was done). */
static void reload(bool full)
{
	double t0 = now_ms();
	src.r_files = src.r_failed = src.r_rejected = src.r_removed = 0;
	if (full) {
		full_scan();
	} else {
		/* Copy the dirty keys out: load_path may mark nothing, but the
		 * set must not change while iterated. */
		for (size_t i = 0; i < src.dirty.cap; i++)
			if (src.dirty.slots[i].key)
				load_path(src.dirty.slots[i].key, src.dirty.slots[i].value);
	}
	for (size_t i = 0; i < src.dirty.cap; i++)
		if (src.dirty.slots[i].key)
			pending_free(src.dirty.slots[i].value);
	tg_strmap_free(&src.dirty);
	src.dirty_all = false;
	src.reloads++;

	bool ok = src.r_failed == 0 && src.r_rejected == 0;
	tg_build_stats_t bs = {0};
	bool built = false;
	uint64_t seq = tg_store_seq(src.store);
	bool force = src.force_publish;
	src.force_publish = false;
	if (!src.published || seq != src.published_seq || force) {
		tg_snapshot_t *s = tg_translator_build(src.tr, src.store, &bs);
		if (s) {
			tg_snapshot_publish(s);
			src.published = true;
			src.published_seq = seq;
			built = true;
		} else {
			ok = false;
		}
	}
	double total = now_ms() - t0;
	char counts[256];
	int off = 0;
	for (int i = 0; i < TG_KIND_COUNT && off < (int)sizeof(counts); i++) {
		uint32_t n;
		tg_store_list(src.store, (tg_kind_t)i, &n);
		off += snprintf(counts + off, sizeof(counts) - (size_t)off, "%s%s=%u", i ? " " : "",
				tg_kind_name((tg_kind_t)i), n);
	}
	if (built)
		tg_info(
		    "ingress",
		    "reload %llu%s: %u files read (%u failed, %u removed), %u objects rejected; "
		    "objects %s; %u Ingresses routed, %u hosts + %u wildcards, %u routes "
		    "(%u shadowed, %u without backend), %u backends, %u endpoints; build %.1f ms, "
		    "total %.1f ms, snapshot %zu KiB, generation %llu",
		    (unsigned long long)src.reloads, full ? " (full)" : "", src.r_files,
		    src.r_failed, src.r_removed, src.r_rejected, counts, bs.ingresses_routed,
		    bs.hosts, bs.wildcards, bs.routes, bs.shadowed, bs.unresolved, bs.backends,
		    bs.endpoints, bs.build_ms, total, bs.bytes / 1024,
		    (unsigned long long)tg_snapshot_generation());
	else
		tg_info(
		    "ingress",
		    "reload %llu%s: %u files read (%u failed, %u removed), %u objects rejected; "
		    "no object changed, snapshot kept (generation %llu), %.1f ms",
		    (unsigned long long)src.reloads, full ? " (full)" : "", src.r_files,
		    src.r_failed, src.r_removed, src.r_rejected,
		    (unsigned long long)tg_snapshot_generation(), total);
	update_metrics(ok, &bs, built);
}

/* Marks dir/name changed. `what` is what the event says about the path's
 * content (P_*); P_UNKNOWN leaves the path's state alone unless new. */
static void mark_dirty(const char *dir, const char *name, int what)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(path))
		return;
	pending_t *p = tg_strmap_get(&src.dirty, path, (size_t)n);
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (p)
			p->path = strdup(path);
		if (!p || !p->path || tg_strmap_put(&src.dirty, p->path, (size_t)n, p, NULL)) {
			pending_free(p);
			src.dirty_all = true; /* cannot track it: re-read everything */
			return;
		}
	}
	if (what == P_COMPLETE)
		p->want_parse = true;
	if (what != P_UNKNOWN)
		p->state = what;
}

/* The least settled state over the dirty paths: P_WRITING when a file is
 * still being written, else P_COMPLETE when every path is a complete file,
 * else P_UNKNOWN. */
static int dirty_state(void)
{
	if (src.dirty_all)
		return P_UNKNOWN;
	int st = P_COMPLETE;
	for (size_t i = 0; i < src.dirty.cap; i++) {
		const pending_t *p = src.dirty.slots[i].key ? src.dirty.slots[i].value : NULL;
		if (!p || p->state == P_COMPLETE)
			continue;
		if (p->state == P_WRITING)
			return P_WRITING;
		st = P_UNKNOWN;
	}
	return st;
}

/* Parses the files reported complete by the last batch of events. */
static void preparse_dirty(void)
{
	if (src.dirty_all)
		return; /* a full re-read is coming anyway */
	for (size_t i = 0; i < src.dirty.cap; i++) {
		pending_t *p = src.dirty.slots[i].key ? src.dirty.slots[i].value : NULL;
		if (p && p->want_parse)
			preparse(p);
	}
}

/* Drains the inotify queue; returns true when something relevant happened. */
static bool read_events(void)
{
	char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool any = false;
	for (;;) {
		ssize_t n = read(src.ifd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				src.dirty_all = true;
				any = true;
				continue;
			}
			if (ev->mask & IN_IGNORED) {
				drop_watch(ev->wd);
				continue;
			}
			const char *dir = watch_path(ev->wd);
			if (!dir)
				continue;
			if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
				if (strcmp(dir, src.dir) == 0) {
					src.dirty_all = true; /* root gone: full_scan decides */
					any = true;
				}
				continue;
			}
			if (!ev->len || !ev->name[0])
				continue;
			if (ev->name[0] == '.') {
				if (strcmp(ev->name, "..data") == 0) {
					src.dirty_all = true;
					any = true;
				}
				continue;
			}
			/* Files must look like manifests; directories may have any
			 * name (and a vanished name may have been a directory). */
			if (!(ev->mask & IN_ISDIR) && !manifest_name(ev->name) &&
			    !(ev->mask & (IN_DELETE | IN_MOVED_FROM)))
				continue;
			int what = P_GONE;
			if (ev->mask & IN_ISDIR)
				what = P_DIR;
			else if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO))
				what = P_COMPLETE;
			else if (ev->mask & IN_CREATE)
				what = P_WRITING;
			else if (ev->mask & IN_ATTRIB)
				what = P_UNKNOWN;
			mark_dirty(dir, ev->name, what);
			any = true;
		}
	}
	return any;
}

/* When the pending reload is due (see the top of the file). */
static double reload_due(double first, double last, bool quick)
{
	int st = dirty_state();
	if (st == P_WRITING)
		return first + DEBOUNCE_MAX_MS; /* or sooner: when it is closed */
	if (quick && st == P_COMPLETE)
		return TG_MIN(last + QUICK_MS, first + DEBOUNCE_MS);
	return TG_MIN(last + DEBOUNCE_MS, first + DEBOUNCE_MAX_MS);
}

static void *watch_thread(void *arg)
{
	(void)arg;
	double first = 0, last = 0;
	double reloaded = -1e9; /* when the last reload finished */
	bool pending = false;
	bool quick = false; /* the batch started on a quiet source */
	while (!atomic_load(&src.stop)) {
		int timeout = -1;
		if (pending) {
			double wait = reload_due(first, last, quick) - now_ms();
			timeout = wait <= 0 ? 0 : (int)wait + 1;
		}
		struct pollfd pfd[2] = {{.fd = src.efd, .events = POLLIN},
					{.fd = src.ifd, .events = POLLIN}};
		int rc = poll(pfd, src.ifd >= 0 ? 2 : 1, timeout);
		if (rc < 0 && errno != EINTR) {
			tg_error("ingress", "watcher: poll: %s", strerror(errno));
			break;
		}
		if (atomic_load(&src.stop))
			break;
		double t = now_ms();
		if (rc > 0 && (pfd[0].revents & POLLIN)) {
			uint64_t v;
			ssize_t r = read(src.efd, &v, sizeof(v));
			(void)r;
			if (atomic_exchange(&src.resync, false)) {
				src.dirty_all = true;
				src.force_publish = true;
				if (!pending)
					first = t;
				pending = true;
				quick = false;
				last = t - DEBOUNCE_MS; /* no need to wait: run now */
			}
		}
		if (rc > 0 && src.ifd >= 0 && (pfd[1].revents & POLLIN) && read_events()) {
			if (!pending) {
				first = t;
				quick = t - reloaded >= DEBOUNCE_MS;
			}
			pending = true;
			last = TG_MAX(last, t);
			preparse_dirty(); /* uses the debounce wait */
		}
		if (pending && now_ms() >= reload_due(first, last, quick)) {
			pending = false;
			reload(src.dirty_all);
			reloaded = now_ms();
		}
	}
	return NULL;
}

/* ---- public ------------------------------------------------------------- */

static void cleanup(void)
{
	tg_store_free(src.store);
	src.store = NULL;
	tg_translator_free(src.tr);
	src.tr = NULL;
	for (size_t i = 0; i < src.files.cap; i++)
		if (src.files.slots[i].key)
			entry_free(src.files.slots[i].value);
	tg_strmap_free(&src.files);
	for (size_t i = 0; i < src.dirty.cap; i++)
		if (src.dirty.slots[i].key)
			pending_free(src.dirty.slots[i].value);
	tg_strmap_free(&src.dirty);
	for (uint32_t i = 0; i < src.n_watches; i++)
		free(src.watches[i].path);
	free(src.watches);
	src.watches = NULL;
	src.n_watches = src.cap_watches = 0;
	if (src.ifd >= 0)
		close(src.ifd);
	if (src.efd >= 0)
		close(src.efd);
	src.ifd = src.efd = -1;
	free(src.dir);
	src.dir = NULL;
	src.published = false;
	src.published_seq = 0;
}

int tg_source_start(const tg_source_config_t *cfg)
{
	if (src.running || atomic_load(&kube_mode))
		return -EALREADY;
	if (!cfg->manifests_dir) {
		if (!cfg->kubeconfig && !cfg->in_cluster)
			return -EINVAL;
		int rc = tg_kube_start(cfg);
		if (rc == 0)
			atomic_store(&kube_mode, true);
		return rc;
	}
	struct stat st;
	if (stat(cfg->manifests_dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	size_t dl = strlen(cfg->manifests_dir);
	while (dl > 1 && cfg->manifests_dir[dl - 1] == '/')
		dl--;
	src.dir = strndup(cfg->manifests_dir, dl);
	src.store = tg_store_new();
	tg_translate_config_t tc = {
	    .ingress_class = cfg->ingress_class,
	    .controller_class = cfg->controller_class,
	    .watch_ingress_without_class = cfg->watch_ingress_without_class,
	    .configmap = cfg->configmap,
	};
	src.tr = tg_translator_new(&tc);
	src.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!src.dir || !src.store || !src.tr || src.efd < 0) {
		int e = src.efd < 0 ? -errno : -ENOMEM;
		cleanup();
		return e;
	}
	src.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (src.ifd < 0)
		tg_warn("ingress", "inotify unavailable (%s): changes apply on SIGHUP only",
			strerror(errno));
	atomic_store(&src.stop, false);
	atomic_store(&src.resync, false);
	src.reloads = 0;
	/* Counters belong to this run of the source. */
	pthread_mutex_lock(&src.mlock);
	for (uint32_t i = 0; i < src.m.n_failing; i++)
		free(src.m.failing[i].path);
	free(src.m.failing);
	memset(&src.m, 0, sizeof(src.m));
	pthread_mutex_unlock(&src.mlock);
	reload(true);
	if (!src.published) {
		cleanup();
		return -ENOMEM;
	}
	int rc = pthread_create(&src.thread, NULL, watch_thread, NULL);
	if (rc) {
		cleanup();
		return -rc;
	}
	src.running = true;
	return 0;
}

void tg_source_resync(void)
{
	/* Async-signal-safe: an atomic store and a write(2). */
	if (atomic_load(&kube_mode)) {
		tg_kube_resync();
		return;
	}
	atomic_store(&src.resync, true);
	if (src.efd >= 0) {
		uint64_t one = 1;
		ssize_t r = write(src.efd, &one, sizeof(one));
		(void)r;
	}
}

void tg_source_stop(void)
{
	if (atomic_load(&kube_mode)) {
		tg_kube_stop();
		atomic_store(&kube_mode, false);
		return;
	}
	if (!src.running)
		return;
	atomic_store(&src.stop, true);
	uint64_t one = 1;
	ssize_t r = write(src.efd, &one, sizeof(one));
	(void)r;
	pthread_join(src.thread, NULL);
	src.running = false;
	cleanup();
}

void tg_source_metrics(tg_sbuf_t *out)
{
	if (atomic_load(&kube_mode)) {
		tg_kube_metrics(out);
		return;
	}
	pthread_mutex_lock(&src.mlock);
	const metrics_t *m = &src.m;
	tg_config_metrics_write(out, &m->cm);
	tg_sbuf_printf(out, "# HELP tidegate_config_file_errors Errors in a manifest file now "
			    "(1 when it does not parse, else the objects rejected in it).\n"
			    "# TYPE tidegate_config_file_errors gauge\n");
	for (uint32_t i = 0; i < m->n_failing; i++) {
		tg_sbuf_printf(out, "tidegate_config_file_errors{file=\"");
		tg_sbuf_label_escape(out, m->failing[i].path);
		tg_sbuf_printf(out, "\"} %u\n", m->failing[i].errors);
	}
	pthread_mutex_unlock(&src.mlock);
}

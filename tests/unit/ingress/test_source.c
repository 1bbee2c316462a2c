/*
 * test_source.c - the manifest directory source: first load, then live
 * changes through inotify (write, atomic rename, delete, subdirectories, a
 * ConfigMap-volume "..data" swap), broken files keeping their last good
 * objects, SIGHUP-style resync, and the metrics. Waits are bounded (10 s)
 * polls of the published generation or the metrics page; no timing is
 * asserted.
 */
#include "ingress_fixture.h"
#include "ingress/source.h"
#include "core/sbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[256];

static void put(const char *rel, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Writes a temporary file and renames it over rel, as kubectl and most
 * editors do. */
static void put_atomic(const char *rel, const char *text)
{
	char tmp[512], path[512];
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, rel);
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(rename(tmp, path), 0);
}

static void rm(const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	assert_int_equal(unlink(path), 0);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* Waits (bounded) until the published generation differs from g. */
static bool wait_gen(uint64_t g)
{
	for (int i = 0; i < 2000; i++) {
		if (tg_snapshot_generation() != g)
			return true;
		sleep_ms(5);
	}
	return false;
}

static bool metrics_has(const char *needle)
{
	tg_sbuf_t b = {0};
	tg_source_metrics(&b);
	bool r = b.data && strstr(b.data, needle);
	tg_sbuf_free(&b);
	return r;
}

static bool wait_metrics(const char *needle)
{
	for (int i = 0; i < 2000; i++) {
		if (metrics_has(needle))
			return true;
		sleep_ms(5);
	}
	return false;
}

/* Route description on the current snapshot. */
static const char *route(const char *host, const char *path)
{
	static char buf[128];
	tg_snapshot_t *s = tg_snapshot_acquire();
	snprintf(buf, sizeof(buf), "%s", ingfx_route(s, host, path));
	tg_snapshot_release(s);
	return buf;
}

#define SVC(name)                                                                                  \
	"apiVersion: v1\nkind: Service\nmetadata: {name: " name ", namespace: default}\n"          \
	"spec:\n  ports: [{name: http, port: 80}]\n---\n"

#define ING(name, host, svc)                                                                       \
	"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: " name                  \
	", namespace: default}\nspec:\n  ingressClassName: tidegate\n  rules:\n  - host: " host    \
	"\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: "       \
	"{name: " svc ", port: {number: 80}}}}\n"

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/tg-ingress-test-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	put("00-class.yaml", INGFX_CLASS SVC("a") SVC("b") SVC("c"));
	put("a.yaml", ING("ia", "a.com", "a"));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tg_source_stop();
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static tg_source_config_t config(void)
{
	tg_source_config_t c = {
	    .manifests_dir = dir,
	    .ingress_class = "tidegate",
	    .controller_class = "tidegate.io/ingress-controller",
	    .configmap = "tidegate-system/tidegate",
	};
	return c;
}

static void test_missing_directory(void **state)
{
	(void)state;
	tg_source_config_t c = config();
	c.manifests_dir = "/nonexistent/tidegate/manifests";
	assert_int_equal(tg_source_start(&c), -ENOENT);
	c.manifests_dir = NULL;
	c.kubeconfig = "/x";
	assert_true(tg_source_start(&c) < 0);
}

static void test_live_changes(void **state)
{
	(void)state;
	tg_source_config_t c = config();
	assert_int_equal(tg_source_start(&c), 0);
	/* The first load is synchronous. */
	uint64_t g = tg_snapshot_generation();
	assert_true(g > 0);
	assert_string_equal(route("a.com", "/"), "a:80");
	assert_true(metrics_has("tidegate_config_objects{kind=\"Ingress\"} 1"));
	assert_true(metrics_has("tidegate_config_ingresses_routed 1"));

	/* New file. */
	put("b.yaml", ING("ib", "b.com", "b"));
	assert_true(wait_gen(g));
	g = tg_snapshot_generation();
	assert_string_equal(route("b.com", "/"), "b:80");

	/* Rewritten in place through a rename. */
	put_atomic("b.yaml", ING("ib", "b.com", "c"));
	assert_true(wait_gen(g));
	g = tg_snapshot_generation();
	assert_string_equal(route("b.com", "/"), "c:80");

	/* Deleted: its objects go. */
	rm("b.yaml");
	assert_true(wait_gen(g));
	g = tg_snapshot_generation();
	assert_string_equal(route("b.com", "/"), "404");
	assert_string_equal(route("a.com", "/"), "a:80");

	/* Non-manifest names are ignored. */
	put("notes.txt", "kind: nonsense");
	put("a.yaml~", "broken: [");

	/* A subdirectory with a file, then removed as a whole. */
	char sub[300];
	snprintf(sub, sizeof(sub), "%s/team", dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	put("team/t.yml", ING("it", "t.com", "b"));
	assert_true(wait_gen(g));
	for (int i = 0; i < 2000 && strcmp(route("t.com", "/"), "b:80") != 0; i++)
		sleep_ms(5);
	g = tg_snapshot_generation();
	assert_string_equal(route("t.com", "/"), "b:80");
	rm("team/t.yml");
	assert_int_equal(rmdir(sub), 0);
	assert_true(wait_gen(g));
	g = tg_snapshot_generation();
	assert_string_equal(route("t.com", "/"), "404");
}

static void test_broken_file_keeps_last_good(void **state)
{
	(void)state;
	tg_source_config_t c = config();
	put("b.yaml", ING("ib", "b.com", "b"));
	assert_int_equal(tg_source_start(&c), 0);
	uint64_t g = tg_snapshot_generation();
	assert_string_equal(route("b.com", "/"), "b:80");

	char label[400];
	snprintf(label, sizeof(label), "tidegate_config_file_errors{file=\"%s/b.yaml\"} 1", dir);
	/* A YAML syntax error: the whole file keeps its last good objects. */
	put("b.yaml", ING("ib", "b.com", "c") "  bad: [unclosed\n");
	assert_true(wait_metrics(label));
	assert_true(metrics_has("tidegate_config_last_reload_successful 0"));
	assert_int_equal(tg_snapshot_generation(), g); /* nothing changed */
	assert_string_equal(route("b.com", "/"), "b:80");

	/* Fixed: applies, the error gauge clears. */
	put("b.yaml", ING("ib", "b.com", "c"));
	assert_true(wait_gen(g));
	g = tg_snapshot_generation();
	assert_string_equal(route("b.com", "/"), "c:80");
	assert_true(wait_metrics("tidegate_config_last_reload_successful 1"));
	assert_false(metrics_has(label));

	/* One bad object: only it is rejected and keeps its last good version;
	 * the other object of the same file applies. */
	put("b.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
		      "  name: ib\n  namespace: default\n  annotations:\n"
		      "    nginx.ingress.kubernetes.io/proxy-body-size: lots\n"
		      "spec:\n  ingressClassName: tidegate\n  rules:\n  - host: b.com\n    http:\n"
		      "      paths:\n      - {path: /, pathType: Prefix, backend: {service: "
		      "{name: a, port: {number: 80}}}}\n---\n" ING("ib2", "b2.com", "a"));
	assert_true(wait_gen(g));
	g = tg_snapshot_generation();
	assert_string_equal(route("b2.com", "/"), "a:80");
	assert_string_equal(route("b.com", "/"), "c:80");
	assert_true(wait_metrics(label));
	assert_true(metrics_has("tidegate_config_errors_total 2"));

	/* Removing the file withdraws even the last good version. */
	rm("b.yaml");
	assert_true(wait_gen(g));
	assert_string_equal(route("b.com", "/"), "404");
	assert_string_equal(route("b2.com", "/"), "404");
}

/* A file created and still open for writing is not read until it is closed
 * (within the watcher's longest wait, 1 s): a slow writer's first half must
 * not be published, or the objects further down would be missing. */
static void test_file_being_written_waits_for_close(void **state)
{
	(void)state;
	tg_source_config_t c = config();
	assert_int_equal(tg_source_start(&c), 0);
	uint64_t g = tg_snapshot_generation();
	char path[512];
	snprintf(path, sizeof(path), "%s/slow.yaml", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	const char *part1 = ING("is1", "s1.com", "a") "---\n";
	const char *part2 = ING("is2", "s2.com", "b");
	assert_int_equal(write(fd, part1, strlen(part1)), (ssize_t)strlen(part1));
	sleep_ms(300); /* several debounce periods, well under the 1 s bound */
	assert_int_equal(tg_snapshot_generation(), g);
	assert_string_equal(route("s1.com", "/"), "404");
	assert_int_equal(write(fd, part2, strlen(part2)), (ssize_t)strlen(part2));
	close(fd);
	assert_true(wait_gen(g));
	assert_string_equal(route("s1.com", "/"), "a:80");
	assert_string_equal(route("s2.com", "/"), "b:80");
}

/* vim's default save: the file is renamed to a backup, a new one is written
 * and closed, the backup deleted. The new content applies; the objects the
 * file keeps declaring stay routed. */
static void test_editor_backup_rename_save(void **state)
{
	(void)state;
	put("e.yaml", ING("ie", "e.com", "a") "---\n" ING("ie2", "e2.com", "a"));
	tg_source_config_t c = config();
	assert_int_equal(tg_source_start(&c), 0);
	uint64_t g = tg_snapshot_generation();
	assert_string_equal(route("e.com", "/"), "a:80");
	char path[512], backup[512];
	snprintf(path, sizeof(path), "%s/e.yaml", dir);
	snprintf(backup, sizeof(backup), "%s/e.yaml~", dir);
	assert_int_equal(rename(path, backup), 0);
	put("e.yaml", ING("ie", "e.com", "a") "---\n" ING("ie2", "e2.com", "b"));
	assert_int_equal(unlink(backup), 0);
	assert_true(wait_gen(g));
	assert_string_equal(route("e.com", "/"), "a:80");
	assert_string_equal(route("e2.com", "/"), "b:80");
}

static void test_resync(void **state)
{
	(void)state;
	tg_source_config_t c = config();
	assert_int_equal(tg_source_start(&c), 0);
	assert_true(metrics_has("tidegate_config_reloads_total{result=\"success\"} 1\n"));
	uint64_t g = tg_snapshot_generation();
	tg_source_resync();
	assert_true(wait_metrics("tidegate_config_reloads_total{result=\"success\"} 2\n"));
	/* Nothing changed, yet a new snapshot shows the re-read happened. */
	assert_true(wait_gen(g));
	assert_string_equal(route("a.com", "/"), "a:80");
}

static void test_configmap_volume_swap(void **state)
{
	/* kubelet's ConfigMap volume: visible names are symlinks into ..data,
	 * itself a symlink swapped atomically to a new timestamped directory. */
	(void)state;
	char p[600], q[600];
	snprintf(p, sizeof(p), "%s/..v1", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	put("..v1/vol.yaml", ING("iv", "v.com", "a"));
	snprintf(p, sizeof(p), "%s/..data", dir);
	assert_int_equal(symlink("..v1", p), 0);
	snprintf(p, sizeof(p), "%s/vol.yaml", dir);
	assert_int_equal(symlink("..data/vol.yaml", p), 0);
	tg_source_config_t c = config();
	assert_int_equal(tg_source_start(&c), 0);
	uint64_t g = tg_snapshot_generation();
	assert_string_equal(route("v.com", "/"), "a:80");

	snprintf(p, sizeof(p), "%s/..v2", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	put("..v2/vol.yaml", ING("iv", "v.com", "b"));
	snprintf(p, sizeof(p), "%s/..data_tmp", dir);
	assert_int_equal(symlink("..v2", p), 0);
	snprintf(q, sizeof(q), "%s/..data", dir);
	assert_int_equal(rename(p, q), 0);
	assert_true(wait_gen(g));
	assert_string_equal(route("v.com", "/"), "b:80");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_missing_directory),		 T(test_live_changes),
	    T(test_broken_file_keeps_last_good), T(test_resync),
	    T(test_configmap_volume_swap),	 T(test_file_being_written_waits_for_close),
	    T(test_editor_backup_rename_save),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_kube_client.c - the Kubernetes API source end to end, in process:
 * tg_kube_start against tests/integration/fake_apiserver.py, which is a
 * stand-in written for these tests (no Kubernetes API server can run here),
 * speaking the documented list/watch wire format. The routes a user would get
 * are read from the published snapshot.
 *
 * Covered: routes appear after ADDED, change after MODIFIED, go after
 * DELETED; paginated lists; bookmarks requested; a 410 both as an ERROR event
 * and as an HTTP status makes a relist that also removes objects whose
 * DELETED event was lost, and so does a resync (SIGHUP); a dropped watch reconnects; status written
 * once per Ingress and not rewritten when unchanged; bearer-token auth over HTTP and
 * client-certificate auth over TLS with the cluster CA and tls-server-name.
 *
 * Needs /usr/bin/python3 (and openssl for the TLS case); skips with a reason
 * otherwise. Waits are "until true, give up after 20 s", never thresholds.
 */
#include "ingress/kube.h"
#include "ingress/snapshot.h"
#include "core/common.h"
#include "core/sbuf.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define PYTHON	"/usr/bin/python3"
#define WAIT_MS 20000
#define TOKEN	"test-token-0123"

static const char *fake_path(void)
{
	const char *e = getenv("TG_FAKE_APISERVER");
	return e ? e : "tests/integration/fake_apiserver.py";
}

/* ---- the stand-in process ------------------------------------------------- */

typedef struct fake {
	pid_t pid; /* python process */
	int in_fd; /* its stdin: closing it stops it */
	int port;  /* where it listens */
	bool tls;  /* https */
} fake_t;

static fake_t fake;
static char tmpdir[64];

static int fake_start(char *const extra[])
{
	int in[2], out[2];
	if (pipe(in) || pipe(out))
		return -1;
	char *argv[24] = {PYTHON, (char *)fake_path(), "--port", "0"};
	int n = 4;
	for (int i = 0; extra && extra[i] && n < 22; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execv(PYTHON, argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	char line[64] = "";
	size_t got = 0;
	while (got < sizeof(line) - 1) {
		ssize_t r = read(out[0], line + got, 1);
		if (r <= 0 || line[got] == '\n')
			break;
		got++;
	}
	line[got] = 0;
	close(out[0]);
	fake.pid = pid;
	fake.in_fd = in[1];
	if (sscanf(line, "PORT %d", &fake.port) != 1) {
		close(in[1]);
		waitpid(pid, NULL, 0);
		return -1;
	}
	return 0;
}

static void fake_stop(void)
{
	if (fake.pid <= 0)
		return;
	close(fake.in_fd);
	int st;
	for (int i = 0; i < 100; i++) {
		if (waitpid(fake.pid, &st, WNOHANG) == fake.pid) {
			fake.pid = 0;
			return;
		}
		usleep(50000);
	}
	kill(fake.pid, SIGKILL);
	waitpid(fake.pid, &st, 0);
	fake.pid = 0;
}

static size_t collect(char *p, size_t sz, size_t nm, void *ud)
{
	tg_sbuf_append(ud, p, sz * nm);
	return sz * nm;
}

/* POST /_control/<name> with a JSON body (or GET when body is NULL); the
 * response lands in out when not NULL. */
static void ctl(const char *name, const char *body, tg_sbuf_t *out)
{
	CURL *e = curl_easy_init();
	assert_non_null(e);
	char url[256];
	snprintf(url, sizeof(url), "%s://127.0.0.1:%d/_control/%s", fake.tls ? "https" : "http",
		 fake.port, name);
	tg_sbuf_t sink = {0};
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, out ? out : &sink);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	if (fake.tls) {
		char c[128], k[128];
		snprintf(c, sizeof(c), "%s/client.crt", tmpdir);
		snprintf(k, sizeof(k), "%s/client.key", tmpdir);
		curl_easy_setopt(e, CURLOPT_SSLCERT, c);
		curl_easy_setopt(e, CURLOPT_SSLKEY, k);
	}
	if (body)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	CURLcode rc = curl_easy_perform(e);
	long code = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(e);
	tg_sbuf_free(&sink);
	if (rc != CURLE_OK || code != 200)
		fail_msg("control %s failed: %s, HTTP %ld", name, curl_easy_strerror(rc), code);
}

static void apply(const char *object_json)
{
	tg_sbuf_t b = {0};
	tg_sbuf_printf(&b, "{\"object\": %s}", object_json);
	ctl("apply", b.data, NULL);
	tg_sbuf_free(&b);
}

/* ---- objects ------------------------------------------------------------------ */

#define CLASS                                                                                      \
	"{\"kind\":\"IngressClass\",\"metadata\":{\"name\":\"tidegate\"},"                         \
	"\"spec\":{\"controller\":\"tidegate.io/ingress-controller\"}}"

static void service(const char *name)
{
	char b[512];
	snprintf(b, sizeof(b),
		 "{\"kind\":\"Service\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"web\"},"
		 "\"spec\":{\"ports\":[{\"name\":\"http\",\"port\":80,\"targetPort\":8080}]}}",
		 name);
	apply(b);
}

static void slice(const char *svc, const char *addr)
{
	char b[768];
	snprintf(b, sizeof(b),
		 "{\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"%s-1\",\"namespace\":"
		 "\"web\",\"labels\":{\"kubernetes.io/service-name\":\"%s\"}},"
		 "\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"%s\"],"
		 "\"conditions\":{\"ready\":true}}],\"ports\":[{\"name\":\"http\",\"port\":8080}]}",
		 svc, svc, addr);
	apply(b);
}

static void ingress(const char *name, const char *host, const char *svc)
{
	char b[768];
	snprintf(b, sizeof(b),
		 "{\"kind\":\"Ingress\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"web\"},"
		 "\"spec\":{\"ingressClassName\":\"tidegate\",\"rules\":[{\"host\":\"%s\","
		 "\"http\":{\"paths\":[{\"path\":\"/\",\"pathType\":\"Prefix\",\"backend\":"
		 "{\"service\":{\"name\":\"%s\",\"port\":{\"number\":80}}}}]}}]}}",
		 name, host, svc);
	apply(b);
}

static void delete (const char *kind, const char *name, bool silent)
{
	char b[256];
	snprintf(b, sizeof(b),
		 "{\"kind\":\"%s\",\"namespace\":\"web\",\"name\":\"%s\",\"silent\":%s}", kind,
		 name, silent ? "true" : "false");
	ctl("delete", b, NULL);
}

/* ---- what a user would see ---------------------------------------------------------- */

/* "404", or "<service> <endpoint>[,<endpoint>...]" for host and "/". */
static const char *route(const char *host)
{
	static char out[256];
	tg_snapshot_t *s = tg_snapshot_acquire();
	if (!s) {
		snprintf(out, sizeof(out), "no snapshot");
		return out;
	}
	const tg_route_t *r = tg_snapshot_route(s, (tg_str_t){host, strlen(host)}, TG_STR("/"));
	if (!r) {
		snprintf(out, sizeof(out), "404");
	} else if (!r->backend) {
		snprintf(out, sizeof(out), "503");
	} else {
		int n = snprintf(out, sizeof(out), "%s ", r->backend->service);
		for (uint32_t i = 0; i < r->backend->n_endpoints && n < (int)sizeof(out); i++)
			n += snprintf(out + n, sizeof(out) - (size_t)n, "%s%s", i ? "," : "",
				      r->backend->endpoints[i].text);
	}
	tg_snapshot_release(s);
	return out;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void wait_route(const char *host, const char *want)
{
	uint64_t end = now_ms() + WAIT_MS;
	while (strcmp(route(host), want) != 0) {
		if (now_ms() > end)
			fail_msg("host %s: route is \"%s\", want \"%s\"", host, route(host), want);
		usleep(20000);
	}
}

/* The value of one metric line (exact name with labels), or -1. */
static double metric(const char *series)
{
	tg_sbuf_t b = {0};
	tg_kube_metrics(&b);
	double v = -1;
	size_t sl = strlen(series);
	for (const char *p = b.data; p && *p;) {
		const char *nl = strchr(p, '\n');
		if (strncmp(p, series, sl) == 0 && p[sl] == ' ')
			v = strtod(p + sl + 1, NULL);
		p = nl ? nl + 1 : NULL;
	}
	tg_sbuf_free(&b);
	return v;
}

static void wait_metric_at_least(const char *series, double min)
{
	uint64_t end = now_ms() + WAIT_MS;
	while (metric(series) < min) {
		if (now_ms() > end)
			fail_msg("%s is %g, want at least %g", series, metric(series), min);
		usleep(20000);
	}
}

/* How often s occurs in the stand-in's control document `what`. */
static int count_in(const char *what, const char *s)
{
	tg_sbuf_t b = {0};
	ctl(what, NULL, &b);
	int n = 0;
	for (const char *p = b.data; p && (p = strstr(p, s)); p += strlen(s))
		n++;
	tg_sbuf_free(&b);
	return n;
}

static int status_writes(const char *name)
{
	char s[128];
	snprintf(s, sizeof(s), "\"name\": \"%s\"", name);
	return count_in("status_writes", s);
}

static void wait_status_writes(const char *name, int n)
{
	uint64_t end = now_ms() + WAIT_MS;
	while (status_writes(name) < n) {
		if (now_ms() > end)
			fail_msg("Ingress %s: %d status writes, want %d", name, status_writes(name),
				 n);
		usleep(20000);
	}
}

static tg_source_config_t config(const char *kubeconfig)
{
	return (tg_source_config_t){
	    .kubeconfig = kubeconfig,
	    .ingress_class = "tidegate",
	    .controller_class = "tidegate.io/ingress-controller",
	    .configmap = "tidegate-system/tidegate",
	    .publish_status_address = "198.18.0.10,lb.example.com",
	};
}

static bool have(const char *path)
{
	return access(path, X_OK) == 0;
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tg-kube-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tg_kube_stop();
	fake_stop();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		return -1;
	return 0;
}

static void write_file(const char *name, const char *text, char *path, size_t pathlen)
{
	snprintf(path, pathlen, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_list_watch_410_drop_status(void **state)
{
	(void)state;
	if (!have(PYTHON) || access(fake_path(), R_OK) != 0) {
		printf("SKIP: needs %s and %s\n", PYTHON, fake_path());
		skip();
	}
	char *const extra[] = {"--token", TOKEN, NULL};
	assert_int_equal(fake_start(extra), 0);
	/* Pages of one object: every list paginates with continue tokens. */
	ctl("set", "{\"max_page\": 1}", NULL);
	apply(CLASS);
	service("svc-a");
	slice("svc-a", "198.18.1.1");
	service("svc-b");
	slice("svc-b", "198.18.1.2");
	ingress("ing-a", "a.example", "svc-a");

	char kc[256], text[512];
	snprintf(text, sizeof(text),
		 "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
		 "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:%d'}}]\n"
		 "contexts: [{name: t, context: {cluster: c, user: u}}]\n"
		 "users: [{name: u, user: {token: " TOKEN "}}]\n",
		 fake.port);
	write_file("kubeconfig", text, kc, sizeof(kc));
	tg_source_config_t cfg = config(kc);
	assert_int_equal(tg_kube_start(&cfg), 0);
	assert_true(tg_kube_running());

	/* Initial list (paginated): the route is there. */
	wait_route("a.example", "svc-a 198.18.1.1:8080");
	assert_true(count_in("requests", "\"continue\": ") >= 1);
	assert_true(count_in("requests", "\"allowWatchBookmarks\": \"true\"") >= 1);
	assert_int_equal(count_in("requests", "\"bearer\": false"), 0);
	assert_true(count_in("requests", "/api/v1/namespaces/tidegate-system/configmaps") >= 1);

	/* Status: the owned Ingress is written once; our own write comes back
	 * as MODIFIED and must not cause a second one. */
	wait_status_writes("ing-a", 1);
	assert_int_equal(count_in("status_writes", "\"ip\": \"198.18.0.10\""), 1);
	assert_int_equal(count_in("status_writes", "\"hostname\": \"lb.example.com\""), 1);

	/* ADDED, MODIFIED, DELETED. */
	ingress("ing-b", "b.example", "svc-b");
	wait_route("b.example", "svc-b 198.18.1.2:8080");
	slice("svc-b", "198.18.1.3");
	wait_route("b.example", "svc-b 198.18.1.3:8080");
	delete ("Ingress", "ing-b", false);
	wait_route("b.example", "404");
	wait_metric_at_least("tidegate_kube_events_total{resource=\"ingresses\",type=\"DELETED\"}",
			     1);
	assert_int_equal(status_writes("ing-a"), 1);

	/* A bookmark moves the resourceVersion without any object change. */
	ctl("bookmark", "{}", NULL);
	wait_metric_at_least("tidegate_kube_events_total{resource=\"ingresses\",type=\"BOOKMARK\"}",
			     1);

	/* 410 as an ERROR event: history is compacted, an Ingress is deleted
	 * without an event (lost), open watches get ERROR 410. The relist
	 * must remove the object nobody told us about. */
	ctl("compact", "{}", NULL);
	delete ("Ingress", "ing-a", true);
	ctl("expire", "{}", NULL);
	wait_route("a.example", "404");
	assert_true(metric("tidegate_kube_relists_total{resource=\"ingresses\",reason=\"gone\"}") >=
		    1);
	assert_true(metric("tidegate_kube_events_total{resource=\"ingresses\",type=\"ERROR\"}") >=
		    1);

	/* 410 as the HTTP status of the watch request, after a dropped
	 * connection: the reconnect from an old resourceVersion is refused. */
	double relists =
	    metric("tidegate_kube_relists_total{resource=\"services\",reason=\"gone\"}");
	double connects = metric("tidegate_kube_watch_connects_total{resource=\"ingresses\"}");
	ctl("set", "{\"gone_as_http\": true}", NULL);
	ctl("compact", "{}", NULL);
	ctl("drop", "{}", NULL);
	wait_metric_at_least("tidegate_kube_relists_total{resource=\"services\",reason=\"gone\"}",
			     relists + 1);
	wait_metric_at_least("tidegate_kube_watch_connects_total{resource=\"ingresses\"}",
			     connects + 1);
	service("svc-c");
	slice("svc-c", "198.18.1.4");
	ingress("ing-c", "c.example", "svc-c");
	wait_route("c.example", "svc-c 198.18.1.4:8080");

	/* A plain dropped connection (history intact): reconnect and resume. */
	ctl("set", "{\"gone_as_http\": false}", NULL);
	connects = metric("tidegate_kube_watch_connects_total{resource=\"endpointslices\"}");
	ctl("drop", "{}", NULL);
	wait_metric_at_least("tidegate_kube_watch_connects_total{resource=\"endpointslices\"}",
			     connects + 1);
	slice("svc-c", "198.18.1.5");
	wait_route("c.example", "svc-c 198.18.1.5:8080");

	/* The new Ingress got its status once; ing-a (deleted) none more. */
	wait_status_writes("ing-c", 1);
	uint64_t gen = tg_snapshot_generation();
	slice("svc-c", "198.18.1.6"); /* another build, another status pass */
	wait_route("c.example", "svc-c 198.18.1.6:8080");
	assert_true(tg_snapshot_generation() > gen);
	assert_int_equal(status_writes("ing-c"), 1);
	assert_int_equal(status_writes("ing-a"), 1);

	/* SIGHUP (resync): every kind is listed again; an object deleted
	 * without an event disappears. */
	ingress("ing-d", "d.example", "svc-c");
	wait_route("d.example", "svc-c 198.18.1.6:8080");
	delete ("Ingress", "ing-d", true);
	tg_kube_resync();
	wait_route("d.example", "404");
	assert_true(
	    metric("tidegate_kube_relists_total{resource=\"endpointslices\",reason=\"resync\"}") >=
	    1);
	assert_string_equal(route("c.example"), "svc-c 198.18.1.6:8080");

	tg_kube_stop();
	assert_false(tg_kube_running());
	/* The last configuration stays published after stop. */
	assert_string_equal(route("c.example"), "svc-c 198.18.1.6:8080");
	fake_stop();
}

/* Generates a CA, a server certificate for the name kube-api.test only (not
 * 127.0.0.1: verification passes only through tls-server-name) and a client
 * certificate with openssl(1). */
static int make_pki(void)
{
	char cmd[2048];
	snprintf(
	    cmd, sizeof(cmd),
	    "cd '%s' && printf 'subjectAltName=DNS:kube-api.test\\n' > san.ext && "
	    "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
	    "openssl req -x509 $K -keyout ca.key -out ca.crt -days 2 -subj /CN=tg-test-ca && "
	    "openssl req $K -keyout server.key -out server.csr -subj /CN=localhost && "
	    "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
	    "-out server.crt -days 2 -extfile san.ext && "
	    "openssl req $K -keyout client.key -out client.csr -subj /CN=tidegate-test-client && "
	    "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
	    "-out client.crt -days 2",
	    tmpdir);
	char full[2200];
	snprintf(full, sizeof(full), "(%s) >/dev/null 2>&1", cmd);
	return system(full);
}

static void test_tls_client_certificate(void **state)
{
	(void)state;
	if (!have(PYTHON) || access(fake_path(), R_OK) != 0 || !have("/usr/bin/openssl")) {
		printf("SKIP: needs %s, %s and /usr/bin/openssl\n", PYTHON, fake_path());
		skip();
	}
	assert_int_equal(make_pki(), 0);
	char cert[128], key[128], ca[128];
	snprintf(cert, sizeof(cert), "%s/server.crt", tmpdir);
	snprintf(key, sizeof(key), "%s/server.key", tmpdir);
	snprintf(ca, sizeof(ca), "%s/ca.crt", tmpdir);
	char *const extra[] = {
	    "--cert", cert, "--key", key, "--client-ca", ca, "--require-client-cert", NULL};
	assert_int_equal(fake_start(extra), 0);
	fake.tls = true;
	apply(CLASS);
	service("svc-t");
	slice("svc-t", "198.18.2.1");
	ingress("ing-t", "t.example", "svc-t");
	/* Paths relative to the kubeconfig's directory, as kubectl reads them. */
	char kc[256], text[768];
	snprintf(
	    text, sizeof(text),
	    "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
	    "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:%d', "
	    "certificate-authority: ca.crt, tls-server-name: kube-api.test}}]\n"
	    "contexts: [{name: t, context: {cluster: c, user: u}}]\n"
	    "users: [{name: u, user: {client-certificate: client.crt, client-key: client.key}}]\n",
	    fake.port);
	write_file("kubeconfig", text, kc, sizeof(kc));
	tg_source_config_t cfg = config(kc);
	cfg.publish_status_address = NULL;
	assert_int_equal(tg_kube_start(&cfg), 0);
	wait_route("t.example", "svc-t 198.18.2.1:8080");
	/* The stand-in saw our client certificate on the API requests. */
	assert_true(count_in("requests", "\"cert\": \"tidegate-test-client\"") >= 6);
	assert_int_equal(count_in("requests", "\"cert\": null"), 0);
	/* No --publish-status-address: no status writes. */
	assert_int_equal(count_in("status_writes", "\"name\""), 0);
	slice("svc-t", "198.18.2.2");
	wait_route("t.example", "svc-t 198.18.2.2:8080");
	tg_kube_stop();
	fake_stop();
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_list_watch_410_drop_status, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tls_client_certificate, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_kubeconfig.c - kubeconfig parsing (current-context -> context ->
 * cluster + user, *-data base64, paths relative to the file, tokenFile),
 * in-cluster service account loading, token rotation, and the errors a user
 * gets for configurations tidegate cannot use. Error messages are checked to
 * name the offending field and never to contain a token.
 */
#include "ingress/kubeconfig.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* base64("-----CA-----\n"), base64("CERT"), base64("KEY") */
#define CA_B64	 "LS0tLS1DQS0tLS0tCg=="
#define CERT_B64 "Q0VSVA=="
#define KEY_B64	 "S0VZ"

static const char *const base_cfg = "apiVersion: v1\n"
				    "kind: Config\n"
				    "current-context: prod\n"
				    "clusters:\n"
				    "- name: other\n"
				    "  cluster: {server: 'https://wrong.example:6443'}\n"
				    "- name: c1\n"
				    "  cluster:\n"
				    "    server: https://10.0.0.1:6443/\n"
				    "    certificate-authority-data: " CA_B64 "\n"
				    "contexts:\n"
				    "- name: dev\n"
				    "  context: {cluster: other, user: u2}\n"
				    "- name: prod\n"
				    "  context: {cluster: c1, user: u1, namespace: team-a}\n"
				    "users:\n"
				    "- name: u1\n"
				    "  user:\n"
				    "    token: s3cr3t-token\n"
				    "- name: u2\n"
				    "  user:\n"
				    "    client-certificate-data: " CERT_B64 "\n"
				    "    client-key-data: " KEY_B64 "\n";

static int parse(const char *text, const char *base, const char *ctx, tg_kube_auth_t *a, char *err,
		 size_t errlen)
{
	err[0] = 0;
	return tg_kubeconfig_parse(text, strlen(text), base, ctx, a, err, errlen);
}

static void test_token_and_ca_data(void **state)
{
	(void)state;
	tg_kube_auth_t a;
	char err[256];
	assert_int_equal(parse(base_cfg, NULL, NULL, &a, err, sizeof(err)), 0);
	assert_string_equal(a.server, "https://10.0.0.1:6443"); /* trailing '/' dropped */
	assert_string_equal(a.context, "prod");
	assert_string_equal(a.ns, "team-a");
	assert_string_equal(a.token, "s3cr3t-token");
	assert_non_null(a.ca);
	assert_int_equal(a.ca_len, 13);
	assert_memory_equal(a.ca, "-----CA-----\n", 13);
	assert_null(a.cert);
	assert_null(a.key);
	assert_false(a.insecure);
	tg_kube_auth_free(&a);
	tg_kube_auth_free(&a); /* idempotent on an emptied struct */
	tg_kube_auth_free(NULL);
}

static void test_context_override_client_cert(void **state)
{
	(void)state;
	tg_kube_auth_t a;
	char err[256];
	assert_int_equal(parse(base_cfg, NULL, "dev", &a, err, sizeof(err)), 0);
	assert_string_equal(a.server, "https://wrong.example:6443");
	assert_null(a.token);
	assert_int_equal(a.cert_len, 4);
	assert_memory_equal(a.cert, "CERT", 4);
	assert_int_equal(a.key_len, 3);
	assert_memory_equal(a.key, "KEY", 3);
	assert_null(a.ca);
	tg_kube_auth_free(&a);
}

/* Writes a file under dir. */
static void put(const char *dir, const char *name, const char *content)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void rm_tree(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_files_relative_to_kubeconfig(void **state)
{
	(void)state;
	char dir[] = "/tmp/tg-kubecfg-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char sub[600];
	snprintf(sub, sizeof(sub), "%s/pki", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	put(dir, "pki/ca.pem", "CA-PEM\n");
	put(dir, "pki/client.pem", "CLIENT-PEM\n");
	put(dir, "pki/client.key", "CLIENT-KEY\n");
	put(dir, "tok", "file-token\n\n");
	put(dir, "config",
	    "current-context: x\n"
	    "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', "
	    "certificate-authority: pki/ca.pem, insecure-skip-tls-verify: true}}]\n"
	    "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
	    "users: [{name: u, user: {client-certificate: pki/client.pem, "
	    "client-key: pki/client.key, tokenFile: tok}}]\n");
	char path[600], err[256];
	snprintf(path, sizeof(path), "%s/config", dir);
	tg_kube_auth_t a;
	assert_int_equal(tg_kubeconfig_load(path, &a, err, sizeof(err)), 0);
	char want[700];
	snprintf(want, sizeof(want), "%s/pki/ca.pem", dir);
	assert_string_equal(a.ca_file, want);
	assert_memory_equal(a.ca, "CA-PEM\n", 7);
	assert_memory_equal(a.cert, "CLIENT-PEM\n", 11);
	assert_memory_equal(a.key, "CLIENT-KEY\n", 11);
	assert_true(a.insecure);
	/* tokenFile is read and trimmed. */
	assert_string_equal(a.token, "file-token");
	/* Unchanged file: 0; rotated file: 1 and the new token. */
	assert_int_equal(tg_kube_auth_reload_token(&a, err, sizeof(err)), 0);
	put(dir, "tok", "rotated-token");
	assert_int_equal(tg_kube_auth_reload_token(&a, err, sizeof(err)), 1);
	assert_string_equal(a.token, "rotated-token");
	/* A token file that becomes unreadable keeps the previous token. */
	snprintf(path, sizeof(path), "%s/tok", dir);
	unlink(path);
	assert_true(tg_kube_auth_reload_token(&a, err, sizeof(err)) < 0);
	assert_string_equal(a.token, "rotated-token");
	assert_non_null(strstr(err, "tok"));
	tg_kube_auth_free(&a);

	/* A referenced file that is missing is named in the error. */
	snprintf(path, sizeof(path), "%s/pki/client.key", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/config", dir);
	assert_int_equal(tg_kubeconfig_load(path, &a, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "client-key"));
	assert_non_null(strstr(err, "client.key"));
	assert_null(a.server); /* nothing left allocated */
	rm_tree(dir);
}

/* Each bad configuration fails with -EINVAL and a message containing `want`. */
static void expect_error(const char *text, const char *want)
{
	tg_kube_auth_t a;
	char err[512];
	int rc = parse(text, NULL, NULL, &a, err, sizeof(err));
	if (rc != -EINVAL || !strstr(err, want))
		fail_msg("config:\n%s\nrc %d, error \"%s\", want \"%s\"", text, rc, err, want);
	assert_null(a.server);
	assert_null(a.token);
	/* No error message ever repeats a secret. */
	assert_null(strstr(err, "s3cr3t"));
}

#define CLUSTERS "clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
#define CONTEXTS "contexts: [{name: x, context: {cluster: c, user: u}}]\n"

static void test_errors_name_the_problem(void **state)
{
	(void)state;
	expect_error("current-context: x\n" CLUSTERS, "context \"x\" is not in contexts");
	expect_error(CLUSTERS CONTEXTS, "current-context is not set");
	expect_error("current-context: x\n" CONTEXTS "clusters: []\n",
		     "names cluster \"c\", which is not in clusters");
	expect_error("current-context: x\n" CLUSTERS CONTEXTS "users: []\n",
		     "names user \"u\", which is not in users");
	expect_error("current-context: x\n" CONTEXTS
		     "clusters: [{name: c, cluster: {insecure-skip-tls-verify: true}}]\n",
		     "cluster \"c\": server is missing");
	expect_error("current-context: x\n" CONTEXTS
		     "clusters: [{name: c, cluster: {server: 'ftp://h'}}]\n",
		     "is not an http(s):// URL");
	expect_error("current-context: x\n" CONTEXTS
		     "clusters: [{name: c, cluster: {server: 'https://h', "
		     "certificate-authority-data: '!!notbase64'}}]\n",
		     "certificate-authority-data is not valid base64");
	expect_error("current-context: x\n" CLUSTERS CONTEXTS
		     "users: [{name: u, user: {exec: {command: aws}}}]\n",
		     "exec credential plugins are not supported");
	expect_error("current-context: x\n" CLUSTERS CONTEXTS
		     "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n",
		     "auth-provider is not supported");
	expect_error("current-context: x\n" CLUSTERS CONTEXTS
		     "users: [{name: u, user: {username: a, password: s3cr3t}}]\n",
		     "basic authentication");
	expect_error("current-context: x\n" CLUSTERS CONTEXTS
		     "users: [{name: u, user: {client-certificate-data: " CERT_B64 "}}]\n",
		     "client-certificate and client-key must be given together");
	expect_error("current-context: x\n" CLUSTERS CONTEXTS
		     "users: [{name: u, user: {token: \"s3cr3t\\r\\nX-Injected: 1\"}}]\n",
		     "token is empty or contains control characters");
	expect_error("current-context: [unclosed\n", "YAML");
	expect_error("- a list\n", "not a mapping");
}

static void test_in_cluster(void **state)
{
	(void)state;
	char dir[] = "/tmp/tg-sa-XXXXXX";
	assert_non_null(mkdtemp(dir));
	put(dir, "token", "sa-token\n");
	put(dir, "ca.crt", "SA-CA\n");
	put(dir, "namespace", "tidegate-system\n");
	tg_kube_auth_t a;
	char err[256];
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	assert_int_equal(tg_kube_in_cluster(dir, &a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));

	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	assert_int_equal(tg_kube_in_cluster(dir, &a, err, sizeof(err)), 0);
	assert_string_equal(a.server, "https://10.96.0.1:443");
	assert_string_equal(a.token, "sa-token");
	assert_string_equal(a.ns, "tidegate-system");
	assert_memory_equal(a.ca, "SA-CA\n", 6);
	assert_non_null(a.token_file); /* re-read periodically */
	tg_kube_auth_free(&a);

	setenv("KUBERNETES_SERVICE_HOST", "fd00:7467::1", 1);
	assert_int_equal(tg_kube_in_cluster(dir, &a, err, sizeof(err)), 0);
	assert_string_equal(a.server, "https://[fd00:7467::1]:443");
	tg_kube_auth_free(&a);

	setenv("KUBERNETES_SERVICE_PORT", "443x", 1);
	assert_int_equal(tg_kube_in_cluster(dir, &a, err, sizeof(err)), -EINVAL);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);

	char p[600];
	snprintf(p, sizeof(p), "%s/token", dir);
	unlink(p);
	assert_true(tg_kube_in_cluster(dir, &a, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "token"));
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	rm_tree(dir);
}

static void test_base64(void **state)
{
	(void)state;
	size_t n;
	uint8_t *p = tg_kube_base64_decode("aGVsbG8=", 8, &n);
	assert_non_null(p);
	assert_int_equal(n, 5);
	assert_memory_equal(p, "hello", 5);
	free(p);
	/* Unpadded, with line breaks (PEM-style wrapping in YAML). */
	p = tg_kube_base64_decode("aGVs\nbG8", 8, &n);
	assert_non_null(p);
	assert_int_equal(n, 5);
	assert_memory_equal(p, "hello", 5);
	free(p);
	assert_null(tg_kube_base64_decode("aGV*bG8=", 8, &n));
	assert_null(tg_kube_base64_decode("aGVsbG8=x", 9, &n)); /* data after padding */
	assert_null(tg_kube_base64_decode("a", 1, &n));		/* 6 bits: no byte */
	p = tg_kube_base64_decode("", 0, &n);
	assert_non_null(p);
	assert_int_equal(n, 0);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_token_and_ca_data),
	    cmocka_unit_test(test_context_override_client_cert),
	    cmocka_unit_test(test_files_relative_to_kubeconfig),
	    cmocka_unit_test(test_errors_name_the_problem),
	    cmocka_unit_test(test_in_cluster),
	    cmocka_unit_test(test_base64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * kubeconfig.h - how to reach and authenticate to a Kubernetes API server:
 * from a kubeconfig file (current-context -> context -> cluster + user) or
 * from the in-cluster service account.
 *
 * Parsing and file reading are separate so that the parser can be fuzzed and
 * unit-tested without touching the file system: tg_kubeconfig_parse() only
 * records the paths a kubeconfig names (resolved against the file's
 * directory, as kubectl does), tg_kube_auth_load_files() reads them.
 *
 * Secrets (token, client key) live only in this struct and in the headers
 * and TLS options of requests; nothing here logs them, and error messages
 * name fields, never values.
 *
 * Return convention: 0, or -errno (-EINVAL for a malformed or unusable
 * configuration) with a reason in err that names what was wrong.
 */
#ifndef TG_INGRESS_KUBECONFIG_H
#define TG_INGRESS_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The default service account directory a pod gets mounted. */
#define TG_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

typedef struct tg_kube_auth {
	char *server;	       /* "https://host:port[/prefix]", no trailing slash */
	char *context;	       /* name of the context used ("in-cluster" otherwise) */
	char *ns;	       /* the context's namespace, or the pod's namespace (or NULL) */
	char *tls_server_name; /* cluster tls-server-name (SNI and verification), or NULL */
	bool insecure;	       /* insecure-skip-tls-verify: no server verification */
	char *ca_file;	       /* certificate-authority path, or NULL */
	uint8_t *ca;	       /* CA bundle PEM (decoded -data, or read from ca_file) */
	size_t ca_len;	       /* bytes of ca */
	char *cert_file;       /* client-certificate path, or NULL */
	uint8_t *cert;	       /* client certificate PEM */
	size_t cert_len;       /* bytes of cert */
	char *key_file;	       /* client-key path, or NULL */
	uint8_t *key;	       /* client key PEM; never logged */
	size_t key_len;	       /* bytes of key */
	char *token;	       /* bearer token (trailing whitespace trimmed); never logged */
	char *token_file;      /* tokenFile / service-account token path, re-read
				* periodically because projected tokens rotate */
} tg_kube_auth_t;

/*
 * Parses kubeconfig text. base_dir is the directory relative paths are
 * resolved against (NULL: left as written). context, when not NULL, overrides
 * current-context. *-data fields are base64-decoded into out; paths are only
 * recorded (see tg_kube_auth_load_files). On success out owns everything
 * (tg_kube_auth_free); on error out is left empty.
 */
int tg_kubeconfig_parse(const char *text, size_t len, const char *base_dir, const char *context,
			tg_kube_auth_t *out, char *err, size_t errlen);

/* Reads a kubeconfig file, parses it (relative paths against its directory)
 * and loads the files it names. */
int tg_kubeconfig_load(const char *path, tg_kube_auth_t *out, char *err, size_t errlen);

/*
 * The in-cluster configuration: server from KUBERNETES_SERVICE_HOST and
 * KUBERNETES_SERVICE_PORT (IPv6 hosts bracketed), token, CA and namespace from
 * sa_dir (NULL: TG_KUBE_SA_DIR). The token is required, ca.crt is used when
 * present, namespace is optional.
 */
int tg_kube_in_cluster(const char *sa_dir, tg_kube_auth_t *out, char *err, size_t errlen);

/* Reads ca_file, cert_file, key_file and token_file into the matching fields
 * (a field already filled from *-data is kept). Checks that a client
 * certificate comes with its key. */
int tg_kube_auth_load_files(tg_kube_auth_t *a, char *err, size_t errlen);

/*
 * Re-reads token_file (no-op without one). Returns 1 when the token changed,
 * 0 when unchanged, or -errno (the previous token stays in use).
 */
int tg_kube_auth_reload_token(tg_kube_auth_t *a, char *err, size_t errlen);

/* Frees every field (key material is wiped first). Accepts NULL. */
void tg_kube_auth_free(tg_kube_auth_t *a);

/* Decodes standard base64 (padding optional, whitespace ignored) into a
 * malloc'd buffer with a NUL appended. Returns NULL on bad input or
 * allocation failure. */
uint8_t *tg_kube_base64_decode(const char *in, size_t len, size_t *outlen);

#endif

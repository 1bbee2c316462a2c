#include "ingress/kubeconfig.h"
#include "ingress/kube_stream.h"
#include "core/common.h"

#include <errno.h>
#include <fcntl.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest file we read (kubeconfig, PEM bundle, token): far above any real
 * one, low enough that a wrong path (a device, a huge log) fails cleanly. */
#define MAX_FILE (8u << 20)

static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Wipes and frees key material. */
static void wipe_free(void *p, size_t len)
{
	if (p) {
		explicit_bzero(p, len);
		free(p);
	}
}

void tg_kube_auth_free(tg_kube_auth_t *a)
{
	if (!a)
		return;
	free(a->server);
	free(a->context);
	free(a->ns);
	free(a->tls_server_name);
	free(a->ca_file);
	free(a->ca);
	free(a->cert_file);
	free(a->cert);
	free(a->key_file);
	wipe_free(a->key, a->key_len);
	wipe_free(a->token, a->token ? strlen(a->token) : 0);
	free(a->token_file);
	memset(a, 0, sizeof(*a));
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

uint8_t *tg_kube_base64_decode(const char *in, size_t len, size_t *outlen)
{
	uint8_t *out = malloc(len / 4 * 3 + 4);
	if (!out)
		return NULL;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0, pad = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		int v = b64_value(c);
		if (v < 0 || pad) /* bad character, or data after padding */
			goto bad;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* 6 leftover bits can never come from whole bytes; more than two '='
	 * is not base64 either. */
	if (bits >= 6 || pad > 2)
		goto bad;
	out[o] = 0;
	*outlen = o;
	return out;
bad:
	free(out);
	return NULL;
}

/* Reads a whole (regular, bounded) file into a NUL-terminated buffer. */
static int read_file(const char *path, uint8_t **out, size_t *outlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0)
		rc = -errno;
	else if (S_ISDIR(st.st_mode))
		rc = -EISDIR;
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	else if ((uint64_t)st.st_size > MAX_FILE)
		rc = -EFBIG;
	if (rc) {
		close(fd);
		return rc;
	}
	size_t cap = (size_t)st.st_size + 1, len = 0;
	uint8_t *buf = malloc(cap);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		if (len + 1 == cap) {
			/* The file grew while we read it: take what the stat said. */
			break;
		}
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			close(fd);
			free(buf);
			return rc;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = 0;
	*out = buf;
	*outlen = len;
	return 0;
}

/* Trims trailing whitespace of a token in place and refuses control
 * characters, which would let a token file inject HTTP headers. */
static bool token_clean(char *t)
{
	size_t n = strlen(t);
	while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t'))
		t[--n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] < 0x20 || t[i] == 0x7f)
			return false;
	return n > 0;
}

static char *dupn(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

/* ---- YAML helpers ------------------------------------------------------ */

static struct fy_node *mget(struct fy_node *m, const char *key)
{
	if (!m || fy_node_get_type(m) != FYNT_MAPPING)
		return NULL;
	return fy_node_mapping_lookup_by_string(m, key, strlen(key));
}

/* The scalar at m[key]; false when absent, null or not a scalar. */
static bool sget(struct fy_node *m, const char *key, const char **s, size_t *len)
{
	struct fy_node *v = mget(m, key);
	if (!v || fy_node_get_type(v) != FYNT_SCALAR)
		return false;
	*s = fy_node_get_scalar(v, len);
	if (!*s)
		return false;
	/* An explicit null ("~", "null", empty plain scalar) counts as absent. */
	if (fy_node_get_style(v) == FYNS_PLAIN &&
	    (*len == 0 || (*len == 1 && **s == '~') || (*len == 4 && memcmp(*s, "null", 4) == 0)))
		return false;
	return true;
}

static bool bget(struct fy_node *m, const char *key)
{
	const char *s;
	size_t n;
	return sget(m, key, &s, &n) && ((n == 4 && strncasecmp(s, "true", 4) == 0) ||
					(n == 3 && strncasecmp(s, "yes", 3) == 0));
}

/* The `inner` mapping of the entry named `name` in the list root[list]
 * (kubeconfig's `clusters: [{name, cluster: {...}}]` shape). */
static struct fy_node *named(struct fy_node *root, const char *list, const char *name,
			     size_t name_len, const char *inner, bool *found)
{
	struct fy_node *seq = mget(root, list);
	*found = false;
	if (!seq || fy_node_get_type(seq) != FYNT_SEQUENCE)
		return NULL;
	void *it = NULL;
	struct fy_node *e;
	while ((e = fy_node_sequence_iterate(seq, &it))) {
		const char *s;
		size_t n;
		if (sget(e, "name", &s, &n) && n == name_len && memcmp(s, name, n) == 0) {
			*found = true;
			return mget(e, inner);
		}
	}
	return NULL;
}

/* Resolves a path from the kubeconfig against base_dir. */
static char *path_of(const char *p, size_t n, const char *base_dir)
{
	if (n == 0)
		return NULL;
	if (p[0] == '/' || !base_dir || !*base_dir)
		return dupn(p, n);
	size_t bl = strlen(base_dir);
	char *r = malloc(bl + 1 + n + 1);
	if (!r)
		return NULL;
	memcpy(r, base_dir, bl);
	r[bl] = '/';
	memcpy(r + bl + 1, p, n);
	r[bl + 1 + n] = 0;
	return r;
}

/* One "<x>-data" (base64) or "<x>" (path) pair. Data wins, as in kubectl. */
static int data_or_path(struct fy_node *m, const char *what, const char *field, const char *obj,
			const char *base_dir, uint8_t **data, size_t *data_len, char **path,
			char *err, size_t errlen)
{
	char dkey[64];
	snprintf(dkey, sizeof(dkey), "%s-data", field);
	const char *s;
	size_t n;
	if (sget(m, dkey, &s, &n)) {
		*data = tg_kube_base64_decode(s, n, data_len);
		if (!*data || *data_len == 0) {
			free(*data);
			*data = NULL;
			return errf(err, errlen, -EINVAL,
				    "kubeconfig: %s \"%s\": %s is not valid base64", what, obj,
				    dkey);
		}
		return 0;
	}
	if (sget(m, field, &s, &n)) {
		*path = path_of(s, n, base_dir);
		if (!*path)
			return errf(err, errlen, -ENOMEM, "kubeconfig: out of memory");
	}
	return 0;
}

static int parse_doc(struct fy_node *root, const char *base_dir, const char *ctx_override,
		     tg_kube_auth_t *a, char *err, size_t errlen)
{
	if (!root || fy_node_get_type(root) != FYNT_MAPPING)
		return errf(err, errlen, -EINVAL,
			    "kubeconfig: not a mapping (expected kind: Config)");
	const char *ctx;
	size_t ctx_len;
	if (ctx_override) {
		ctx = ctx_override;
		ctx_len = strlen(ctx);
	} else if (!sget(root, "current-context", &ctx, &ctx_len)) {
		return errf(err, errlen, -EINVAL, "kubeconfig: current-context is not set");
	}
	bool found;
	struct fy_node *c = named(root, "contexts", ctx, ctx_len, "context", &found);
	if (!found)
		return errf(err, errlen, -EINVAL, "kubeconfig: context \"%.*s\" is not in contexts",
			    (int)TG_MIN(ctx_len, 200), ctx);
	a->context = dupn(ctx, ctx_len);
	const char *cl, *us, *ns;
	size_t cl_len, us_len = 0, ns_len;
	if (!sget(c, "cluster", &cl, &cl_len))
		return errf(err, errlen, -EINVAL, "kubeconfig: context \"%s\" names no cluster",
			    a->context ? a->context : "");
	if (sget(c, "namespace", &ns, &ns_len))
		a->ns = dupn(ns, ns_len);
	char clname[256], usname[256] = "";
	snprintf(clname, sizeof(clname), "%.*s", (int)TG_MIN(cl_len, 255), cl);

	struct fy_node *cluster = named(root, "clusters", cl, cl_len, "cluster", &found);
	if (!found || !cluster)
		return errf(
		    err, errlen, -EINVAL,
		    "kubeconfig: context \"%s\" names cluster \"%s\", which is not in clusters",
		    a->context ? a->context : "", clname);
	const char *srv;
	size_t srv_len;
	if (!sget(cluster, "server", &srv, &srv_len))
		return errf(err, errlen, -EINVAL, "kubeconfig: cluster \"%s\": server is missing",
			    clname);
	while (srv_len && srv[srv_len - 1] == '/')
		srv_len--;
	if (!((srv_len > 8 && strncasecmp(srv, "https://", 8) == 0) ||
	      (srv_len > 7 && strncasecmp(srv, "http://", 7) == 0)))
		return errf(err, errlen, -EINVAL,
			    "kubeconfig: cluster \"%s\": server \"%.*s\" is not an http(s):// URL",
			    clname, (int)TG_MIN(srv_len, 200), srv);
	for (size_t i = 0; i < srv_len; i++)
		if ((unsigned char)srv[i] <= 0x20 || srv[i] == 0x7f)
			return errf(err, errlen, -EINVAL,
				    "kubeconfig: cluster \"%s\": server contains spaces or control "
				    "characters",
				    clname);
	a->server = dupn(srv, srv_len);
	/* The scheme is case-insensitive; store it in lower case. */
	for (char *p = a->server; p && *p && *p != ':'; p++)
		*p = tg_lower(*p);
	a->insecure = bget(cluster, "insecure-skip-tls-verify");
	const char *sn;
	size_t sn_len;
	if (sget(cluster, "tls-server-name", &sn, &sn_len))
		a->tls_server_name = dupn(sn, sn_len);
	if (sget(cluster, "proxy-url", &sn, &sn_len))
		return errf(err, errlen, -EINVAL,
			    "kubeconfig: cluster \"%s\": proxy-url is not supported", clname);
	int rc = data_or_path(cluster, "cluster", "certificate-authority", clname, base_dir, &a->ca,
			      &a->ca_len, &a->ca_file, err, errlen);
	if (rc)
		return rc;

	if (sget(c, "user", &us, &us_len)) {
		snprintf(usname, sizeof(usname), "%.*s", (int)TG_MIN(us_len, 255), us);
		struct fy_node *user = named(root, "users", us, us_len, "user", &found);
		if (!found)
			return errf(
			    err, errlen, -EINVAL,
			    "kubeconfig: context \"%s\" names user \"%s\", which is not in users",
			    a->context ? a->context : "", usname);
		if (mget(user, "exec"))
			return errf(
			    err, errlen, -EINVAL,
			    "kubeconfig: user \"%s\": exec credential plugins are not supported "
			    "(use token, tokenFile or a client certificate)",
			    usname);
		if (mget(user, "auth-provider"))
			return errf(err, errlen, -EINVAL,
				    "kubeconfig: user \"%s\": auth-provider is not supported "
				    "(use token, tokenFile or a client certificate)",
				    usname);
		if (mget(user, "username") || mget(user, "password"))
			return errf(
			    err, errlen, -EINVAL,
			    "kubeconfig: user \"%s\": basic authentication (username/password) "
			    "is not supported",
			    usname);
		const char *tok;
		size_t tok_len;
		if (sget(user, "token", &tok, &tok_len)) {
			a->token = dupn(tok, tok_len);
			if (a->token && !token_clean(a->token))
				return errf(err, errlen, -EINVAL,
					    "kubeconfig: user \"%s\": token is empty or contains "
					    "control characters",
					    usname);
		} else if (sget(user, "tokenFile", &tok, &tok_len)) {
			a->token_file = path_of(tok, tok_len, base_dir);
		}
		rc = data_or_path(user, "user", "client-certificate", usname, base_dir, &a->cert,
				  &a->cert_len, &a->cert_file, err, errlen);
		if (!rc)
			rc = data_or_path(user, "user", "client-key", usname, base_dir, &a->key,
					  &a->key_len, &a->key_file, err, errlen);
		if (rc)
			return rc;
		bool has_cert = a->cert || a->cert_file, has_key = a->key || a->key_file;
		if (has_cert != has_key)
			return errf(
			    err, errlen, -EINVAL,
			    "kubeconfig: user \"%s\": client-certificate and client-key must be "
			    "given together",
			    usname);
	}
	if (!a->server || !a->context)
		return errf(err, errlen, -ENOMEM, "kubeconfig: out of memory");
	return 0;
}

int tg_kubeconfig_parse(const char *text, size_t len, const char *base_dir, const char *context,
			tg_kube_auth_t *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	size_t bad;
	if (!tg_kube_utf8_valid(text, len, &bad))
		return errf(err, errlen, -EINVAL, "kubeconfig: not valid UTF-8 (byte %zu)", bad);
	struct fy_diag_cfg dc;
	fy_diag_cfg_default(&dc);
	dc.fp = NULL;
	dc.output_fn = NULL;
	dc.colorize = false;
	struct fy_diag *diag = fy_diag_create(&dc);
	if (!diag)
		return errf(err, errlen, -ENOMEM, "kubeconfig: out of memory");
	fy_diag_set_collect_errors(diag, true);
	struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET, .diag = diag};
	struct fy_document *doc = fy_document_build_from_string(&cfg, text, len);
	int rc;
	if (!doc) {
		void *it = NULL;
		struct fy_diag_error *e = fy_diag_errors_iterate(diag, &it);
		rc =
		    e ? errf(err, errlen, -EINVAL, "kubeconfig: line %d: YAML: %s", e->line, e->msg)
		      : errf(err, errlen, -EINVAL, "kubeconfig: not valid YAML");
	} else {
		rc = parse_doc(fy_document_root(doc), base_dir, context, out, err, errlen);
		fy_document_destroy(doc);
	}
	fy_diag_destroy(diag);
	if (rc)
		tg_kube_auth_free(out);
	return rc;
}

/* Reads one referenced file into (*data, *len) unless already filled. */
static int load_one(const char *what, const char *path, uint8_t **data, size_t *len, char *err,
		    size_t errlen)
{
	if (*data || !path)
		return 0;
	int rc = read_file(path, data, len);
	if (rc)
		return errf(err, errlen, rc, "%s %s: %s", what, path, strerror(-rc));
	if (*len == 0) {
		free(*data);
		*data = NULL;
		return errf(err, errlen, -EINVAL, "%s %s: file is empty", what, path);
	}
	return 0;
}

int tg_kube_auth_load_files(tg_kube_auth_t *a, char *err, size_t errlen)
{
	int rc = load_one("certificate-authority", a->ca_file, &a->ca, &a->ca_len, err, errlen);
	if (!rc)
		rc = load_one("client-certificate", a->cert_file, &a->cert, &a->cert_len, err,
			      errlen);
	if (!rc)
		rc = load_one("client-key", a->key_file, &a->key, &a->key_len, err, errlen);
	if (!rc && a->token_file && !a->token)
		rc = tg_kube_auth_reload_token(a, err, errlen) < 0 ? -EINVAL : 0;
	if (!rc && (!a->cert) != (!a->key))
		rc = errf(err, errlen, -EINVAL,
			  "client-certificate and client-key must be given together");
	return rc;
}

int tg_kube_auth_reload_token(tg_kube_auth_t *a, char *err, size_t errlen)
{
	if (!a->token_file)
		return 0;
	uint8_t *buf;
	size_t len;
	int rc = read_file(a->token_file, &buf, &len);
	if (rc)
		return errf(err, errlen, rc, "token file %s: %s", a->token_file, strerror(-rc));
	if (memchr(buf, 0, len) || !token_clean((char *)buf)) {
		wipe_free(buf, len);
		return errf(err, errlen, -EINVAL,
			    "token file %s: empty or contains control characters", a->token_file);
	}
	if (a->token && strcmp(a->token, (char *)buf) == 0) {
		wipe_free(buf, len);
		return 0;
	}
	wipe_free(a->token, a->token ? strlen(a->token) : 0);
	a->token = (char *)buf;
	return 1;
}

int tg_kubeconfig_load(const char *path, tg_kube_auth_t *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	uint8_t *text;
	size_t len;
	int rc = read_file(path, &text, &len);
	if (rc)
		return errf(err, errlen, rc, "kubeconfig %s: %s", path, strerror(-rc));
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (slash)
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	else
		snprintf(dir, sizeof(dir), ".");
	if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	rc = tg_kubeconfig_parse((const char *)text, len, dir, NULL, out, err, errlen);
	/* The text may hold tokens and keys. */
	wipe_free(text, len);
	if (rc)
		return rc;
	rc = tg_kube_auth_load_files(out, err, errlen);
	if (rc)
		tg_kube_auth_free(out);
	return rc;
}

int tg_kube_in_cluster(const char *sa_dir, tg_kube_auth_t *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (!sa_dir)
		sa_dir = TG_KUBE_SA_DIR;
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	if (!host || !*host || !port || !*port)
		return errf(
		    err, errlen, -EINVAL,
		    "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be "
		    "set (is this running in a pod?)");
	for (const char *p = port; *p; p++)
		if (*p < '0' || *p > '9' || p - port > 5)
			return errf(err, errlen, -EINVAL,
				    "in-cluster: KUBERNETES_SERVICE_PORT is not a port number");
	for (const char *p = host; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == '/' || *p == '[' || *p == ']' || *p == '@')
			return errf(
			    err, errlen, -EINVAL,
			    "in-cluster: KUBERNETES_SERVICE_HOST is not a host name or address");
	bool v6 = strchr(host, ':') != NULL;
	size_t sl = strlen(host) + strlen(port) + 16;
	out->server = malloc(sl);
	out->context = strdup("in-cluster");
	char path[4200];
	snprintf(path, sizeof(path), "%s/token", sa_dir);
	out->token_file = strdup(path);
	if (!out->server || !out->context || !out->token_file) {
		tg_kube_auth_free(out);
		return errf(err, errlen, -ENOMEM, "in-cluster: out of memory");
	}
	snprintf(out->server, sl, v6 ? "https://[%s]:%s" : "https://%s:%s", host, port);
	int rc = tg_kube_auth_reload_token(out, err, errlen);
	if (rc < 0) {
		tg_kube_auth_free(out);
		return rc;
	}
	snprintf(path, sizeof(path), "%s/ca.crt", sa_dir);
	if (access(path, F_OK) == 0) {
		out->ca_file = strdup(path);
		rc = load_one("in-cluster CA", out->ca_file, &out->ca, &out->ca_len, err, errlen);
		if (rc) {
			tg_kube_auth_free(out);
			return rc;
		}
	}
	snprintf(path, sizeof(path), "%s/namespace", sa_dir);
	uint8_t *ns;
	size_t ns_len;
	if (read_file(path, &ns, &ns_len) == 0) {
		token_clean((char *)ns);
		out->ns = (char *)ns;
	}
	return 0;
}

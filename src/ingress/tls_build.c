/*
 * tls_build.c - Secrets, auth-tls-* annotations and ssl-* keys into the
 * snapshot's TLS store (contract in tls_build.h).
 *
 * Per Secret the state remembers the store seq of the version last looked at
 * and its last good PEM (malloc'd copies: the Secret object may be replaced
 * or freed by the store at any later apply). A Secret version is judged once:
 * later builds reuse the verdict and only hand the remembered PEM to the TLS
 * builder, which reuses its OpenSSL context when the PEM is unchanged.
 */
#include "ingress/tls_build.h"

#include "core/log.h"
#include "core/parse.h"
#include "ingress/strmap.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ANN "nginx.ingress.kubernetes.io/"

/* What a Secret is used for: the key of the state map starts with it, so one
 * Secret used as a certificate and as a CA bundle has two entries. */
enum { USE_CERT = 'c', USE_CA = 'a' };

/* Remembered state of one Secret in one use. */
typedef struct secret_state {
	char *key;	     /* use byte + "ns/name" (owned; the map key) */
	size_t key_len;	     /* bytes of key */
	uint64_t seq;	     /* store seq of the version judged (0: missing) */
	bool judged;	     /* seq holds a verdict (good or bad) */
	char *pem;	     /* last good tls.crt or ca.crt (owned), or NULL */
	size_t pem_len;	     /* its bytes */
	char *key_pem;	     /* last good tls.key (owned, wiped when freed), or NULL */
	size_t key_pem_len;  /* its bytes */
	uint64_t used_build; /* last build that referenced it (eviction) */
} secret_state_t;

struct tg_tls_build {
	tg_strmap_t secrets;		      /* key -> secret_state_t */
	tg_tls_store_t *prev;		      /* store of the last build (one reference) */
	tg_tls_store_builder_t *b;	      /* builder of the running build, or NULL */
	uint64_t builds;		      /* build counter */
	uint8_t cur_verify;		      /* last Ingress: its tg_tls_verify_t (OFF: none) */
	const tg_tls_client_auth_t *cur_auth; /* last Ingress: its policy, or NULL */
	bool key_installed;		      /* ssl-session-ticket-key installed by us */
	uint8_t key[80];		      /* the installed key */
	char opts_err[TG_TLS_ERR_MAX];	      /* last option error logged (no repeats) */
};

static char *default_cert_name;	   /* --default-ssl-certificate (read-only once set) */
static _Atomic bool ticket_pinned; /* ssl-session-ticket-key in force */

void tg_tls_build_set_default_certificate(const char *ns_name)
{
	free(default_cert_name);
	default_cert_name = ns_name && *ns_name ? strdup(ns_name) : NULL;
}

bool tg_tls_build_ticket_key_pinned(void)
{
	return atomic_load(&ticket_pinned);
}

tg_tls_build_t *tg_tls_build_new(void)
{
	/* Idempotent; done here too so that every user of a translator (tests,
	 * --check) gets stores with the generated default certificate. */
	if (tg_tls_init() < 0)
		tg_error("tls", "TLS initialisation failed: HTTPS will be refused");
	return calloc(1, sizeof(tg_tls_build_t));
}

static void state_free(secret_state_t *s)
{
	if (!s)
		return;
	if (s->key_pem)
		OPENSSL_cleanse(s->key_pem, s->key_pem_len);
	free(s->key_pem);
	free(s->pem);
	free(s->key);
	free(s);
}

void tg_tls_build_free(tg_tls_build_t *tb)
{
	if (!tb)
		return;
	tg_tls_build_abort(tb);
	for (size_t i = 0; i < tb->secrets.cap; i++)
		if (tb->secrets.slots[i].key)
			state_free(tb->secrets.slots[i].value);
	tg_strmap_free(&tb->secrets);
	tg_tls_store_free(tb->prev);
	free(tb);
}

void tg_tls_build_abort(tg_tls_build_t *tb)
{
	tg_tls_store_builder_free(tb->b);
	tb->b = NULL;
	tb->cur_auth = NULL;
	tb->cur_verify = TG_TLS_VERIFY_OFF;
}

/* Installs or withdraws the configured ticket key when it changed. */
static void apply_ticket_key(tg_tls_build_t *tb, const tg_settings_t *s)
{
	if (s->has_ssl_session_ticket_key) {
		if (tb->key_installed && memcmp(tb->key, s->ssl_session_ticket_key, 80) == 0)
			return;
		char err[TG_TLS_ERR_MAX];
		if (tg_tls_ticket_keys_set(s->ssl_session_ticket_key, 80, err, sizeof(err)) < 0) {
			tg_warn("tls", "%s", err);
			return;
		}
		memcpy(tb->key, s->ssl_session_ticket_key, 80);
		tb->key_installed = true;
		atomic_store(&ticket_pinned, true);
		tg_info("tls", "ssl-session-ticket-key installed: tickets resume on every node "
			       "sharing it; automatic rotation paused");
		return;
	}
	if (!tb->key_installed)
		return;
	/* Key removed from the ConfigMap: back to random rotating keys at once,
	 * so the withdrawn key only opens tickets until the next rotation. */
	tb->key_installed = false;
	OPENSSL_cleanse(tb->key, sizeof(tb->key));
	atomic_store(&ticket_pinned, false);
	tg_tls_ticket_keys_rotate();
	tg_info("tls", "ssl-session-ticket-key removed: rotating random ticket keys again");
}

int tg_tls_build_begin(tg_tls_build_t *tb, const tg_store_t *st, const tg_settings_t *s)
{
	(void)st;
	tg_tls_build_abort(tb);
	tb->builds++;
	apply_ticket_key(tb, s);
	tg_tls_options_t o = {
	    .protocols = s->ssl_protocols[0] ? s->ssl_protocols : NULL,
	    .ciphers = s->ssl_ciphers[0] ? s->ssl_ciphers : NULL,
	    .session_timeout_s = s->ssl_session_timeout_ms / 1000,
	    .no_session_tickets = !s->ssl_session_tickets,
	    .ocsp = s->enable_ocsp,
	};
	char err[TG_TLS_ERR_MAX];
	tb->b = tg_tls_store_builder_new(&o, tb->prev, err, sizeof(err));
	if (!tb->b) {
		/* Each key was checked alone when the ConfigMap was read; only a
		 * combination can fail here. Logged once per distinct reason. */
		if (strcmp(err, tb->opts_err) != 0) {
			tg_warn("tls", "ConfigMap TLS settings rejected: %s; using the defaults",
				err);
			snprintf(tb->opts_err, sizeof(tb->opts_err), "%s", err);
		}
		tb->b = tg_tls_store_builder_new(NULL, tb->prev, err, sizeof(err));
		if (!tb->b) {
			tg_error("tls", "cannot start the certificate store: %s", err);
			return -ENOMEM;
		}
	} else {
		tb->opts_err[0] = '\0';
	}
	if (default_cert_name) {
		/* Same path as any certificate Secret, without hosts. */
		int e = tg_tls_build_add_ingress(tb, st, NULL, false);
		if (e < 0)
			return e;
	}
	return 0;
}

/* ---- Secret state ------------------------------------------------------ */

/* Writes a reason into err and returns -EINVAL (the TLS library's style). */
static int reason(char *err, size_t len, const char *why)
{
	snprintf(err, len, "%s", why);
	return -EINVAL;
}

static secret_state_t *state_get(tg_tls_build_t *tb, int use, const char *ns_name)
{
	char key[320];
	int n = snprintf(key, sizeof(key), "%c%s", use, ns_name);
	if (n < 0 || (size_t)n >= sizeof(key))
		return NULL;
	secret_state_t *s = tg_strmap_get(&tb->secrets, key, (size_t)n);
	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->key = strndup(key, (size_t)n)) ||
	    tg_strmap_put(&tb->secrets, s->key, (size_t)n, s, NULL)) {
		state_free(s);
		return NULL;
	}
	s->key_len = (size_t)n;
	return s;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
	char *d = malloc(n ? n : 1);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

/* Remembers the current version's PEM as the last good one. */
static int remember(secret_state_t *ss, const uint8_t *pem, size_t pem_len, const uint8_t *key,
		    size_t key_len)
{
	char *p = dup_bytes(pem, pem_len);
	char *k = key ? dup_bytes(key, key_len) : NULL;
	if (!p || (key && !k)) {
		free(p);
		free(k);
		return -ENOMEM;
	}
	free(ss->pem);
	if (ss->key_pem)
		OPENSSL_cleanse(ss->key_pem, ss->key_pem_len);
	free(ss->key_pem);
	ss->pem = p;
	ss->pem_len = pem_len;
	ss->key_pem = k;
	ss->key_pem_len = key ? key_len : 0;
	return 0;
}

/* Splits "ns/name" (or "name", in default_ns). */
static void split_ref(const char *ref, const char *default_ns, char *out, size_t len)
{
	if (strchr(ref, '/'))
		snprintf(out, len, "%s", ref);
	else
		snprintf(out, len, "%s/%s", default_ns, ref);
}

static const tg_object_t *find_secret(const tg_store_t *st, const char *ns_name)
{
	const char *slash = strchr(ns_name, '/');
	if (!slash)
		return NULL;
	char ns[256];
	size_t nl = (size_t)(slash - ns_name);
	if (nl >= sizeof(ns))
		return NULL;
	memcpy(ns, ns_name, nl);
	ns[nl] = '\0';
	return tg_store_get(st, TG_KIND_SECRET, ns, slash + 1);
}

/*
 * Adds the certificate Secret ns_name for hosts (or as the default
 * certificate when is_default). `who` names the referrer in logs. A Secret
 * version is judged once; a bad one leaves its last good PEM in force.
 */
static int add_cert_secret(tg_tls_build_t *tb, const tg_store_t *st, const char *ns_name,
			   const char *const *hosts, size_t n_hosts, bool is_default,
			   const char *who)
{
	secret_state_t *ss = state_get(tb, USE_CERT, ns_name);
	if (!ss)
		return -ENOMEM;
	ss->used_build = tb->builds;
	const tg_object_t *o = find_secret(st, ns_name);
	char err[TG_TLS_ERR_MAX];
	if (!o) {
		if (ss->seq != 0 || !ss->judged)
			tg_warn("tls",
				"%s: TLS Secret %s not found; %s get the default certificate", who,
				ns_name, is_default ? "unknown hosts" : "its hosts");
		ss->seq = 0;
		ss->judged = true;
		free(ss->pem);
		ss->pem = NULL;
		if (ss->key_pem)
			OPENSSL_cleanse(ss->key_pem, ss->key_pem_len);
		free(ss->key_pem);
		ss->key_pem = NULL;
		return 0;
	}
	const tg_secret_spec_t *sec = &o->u.secret;
	if (!ss->judged || ss->seq != o->seq) {
		ss->judged = true;
		ss->seq = o->seq;
		int rc;
		if (!sec->tls_crt || !sec->tls_key)
			rc = reason(err, sizeof(err),
				    "no tls.crt and tls.key (not a kubernetes.io/tls Secret)");
		else
			rc = tg_tls_cert_validate((const char *)sec->tls_crt, sec->tls_crt_len,
						  (const char *)sec->tls_key, sec->tls_key_len, err,
						  sizeof(err));
		if (rc == 0) {
			if (remember(ss, sec->tls_crt, sec->tls_crt_len, sec->tls_key,
				     sec->tls_key_len) < 0)
				return -ENOMEM;
		} else {
			tg_warn("tls", "%s: %s; %s", ns_name, err,
				ss->pem ? "Secret rejected, its previous certificate stays in force"
					: "Secret rejected, its hosts get the default certificate");
		}
	}
	if (!ss->pem)
		return 0;
	int rc = is_default
		     ? tg_tls_store_set_default_cert(tb->b, ns_name, ss->pem, ss->pem_len,
						     ss->key_pem, ss->key_pem_len, err, sizeof(err))
		     : tg_tls_store_add_cert(tb->b, ns_name, ss->pem, ss->pem_len, ss->key_pem,
					     ss->key_pem_len, hosts, n_hosts, err, sizeof(err));
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0)
		tg_warn("tls", "%s", err); /* validated before: not expected */
	return 0;
}

/* ---- client-certificate policy ----------------------------------------- */

static const char *raw_annotation(const tg_ingress_spec_t *ing, const char *name)
{
	for (uint32_t i = 0; i < ing->ann.n_raw; i++) {
		const char *k = ing->ann.raw[i].key;
		if (strncmp(k, ANN, sizeof(ANN) - 1) == 0 && strcmp(k + sizeof(ANN) - 1, name) == 0)
			return ing->ann.raw[i].value;
	}
	return NULL;
}

static int add_client_auth(tg_tls_build_t *tb, const tg_store_t *st, const tg_object_t *ingo,
			   bool warn)
{
	const tg_ingress_spec_t *ing = &ingo->u.ingress;
	const char *ref = raw_annotation(ing, "auth-tls-secret");
	if (!ref)
		return 0;
	/* Values were validated when the Ingress was parsed (annotations.c). */
	tg_tls_client_auth_config_t cfg = {.verify = TG_TLS_VERIFY_ON, .depth = 1};
	const char *v = raw_annotation(ing, "auth-tls-verify-client");
	if (v)
		tg_tls_verify_parse(v, strlen(v), &cfg.verify);
	v = raw_annotation(ing, "auth-tls-verify-depth");
	uint64_t d;
	if (v && tg_parse_u64(v, strlen(v), &d) == 0 && d >= 1 && d <= 100)
		cfg.depth = (uint32_t)d;
	v = raw_annotation(ing, "auth-tls-pass-certificate-to-upstream");
	if (v)
		tg_parse_bool(v, strlen(v), &cfg.pass_cert);
	tb->cur_verify = (uint8_t)cfg.verify;
	if (cfg.verify == TG_TLS_VERIFY_OFF)
		return 0;

	char ns_name[320];
	split_ref(ref, ingo->ns, ns_name, sizeof(ns_name));
	secret_state_t *ss = state_get(tb, USE_CA, ns_name);
	if (!ss)
		return -ENOMEM;
	ss->used_build = tb->builds;
	const tg_object_t *o = find_secret(st, ns_name);
	char err[TG_TLS_ERR_MAX];
	if (!o) {
		if (warn || ss->seq != 0 || !ss->judged)
			tg_warn(
			    "tls",
			    "Ingress %s/%s: auth-tls-secret %s not found; its routes answer 503",
			    ingo->ns, ingo->name, ns_name);
		ss->seq = 0;
		ss->judged = true;
		free(ss->pem);
		ss->pem = NULL;
		return 0;
	}
	if (!ss->judged || ss->seq != o->seq) {
		ss->judged = true;
		ss->seq = o->seq;
		const tg_secret_spec_t *sec = &o->u.secret;
		tg_tls_client_auth_config_t probe = cfg;
		probe.ca_pem = (const char *)sec->ca_crt;
		probe.ca_len = sec->ca_crt_len;
		int rc = sec->ca_crt
			     ? tg_tls_client_auth_validate(&probe, err, sizeof(err))
			     : reason(err, sizeof(err),
				      "no ca.crt (auth-tls-secret needs the CA certificates "
				      "under ca.crt)");
		if (rc == 0) {
			if (remember(ss, sec->ca_crt, sec->ca_crt_len, NULL, 0) < 0)
				return -ENOMEM;
		} else {
			tg_warn("tls", "%s: %s; auth-tls-secret rejected, %s", ns_name, err,
				ss->pem ? "its previous CA certificates stay in force"
					: "routes using it answer 503");
		}
	}
	if (!ss->pem)
		return 0;
	cfg.ca_pem = ss->pem;
	cfg.ca_len = ss->pem_len;
	/* The certificate is requested for the Ingress's rule hosts. */
	const char *hosts[64];
	size_t nh = 0;
	for (uint32_t i = 0; i < ing->n_rules && nh < TG_ARRAY_SIZE(hosts); i++)
		if (ing->rules[i].host[0])
			hosts[nh++] = ing->rules[i].host;
	if (nh == 0 && warn)
		tg_warn(
		    "tls",
		    "Ingress %s/%s: auth-tls-secret needs rules with a host (the certificate is "
		    "requested by SNI); requests to it answer 421",
		    ingo->ns, ingo->name);
	tb->cur_auth =
	    tg_tls_store_add_client_auth(tb->b, ns_name, hosts, nh, &cfg, err, sizeof(err));
	if (!tb->cur_auth)
		tg_warn("tls", "Ingress %s/%s: %s; its routes answer 503", ingo->ns, ingo->name,
			err);
	return 0;
}

/* ---- per Ingress --------------------------------------------------------- */

int tg_tls_build_add_ingress(tg_tls_build_t *tb, const tg_store_t *st, const tg_object_t *ingo,
			     bool warn)
{
	if (!tb->b)
		return -EINVAL;
	tb->cur_auth = NULL;
	tb->cur_verify = TG_TLS_VERIFY_OFF;
	if (!ingo) /* the default certificate (from tg_tls_build_begin) */
		return add_cert_secret(tb, st, default_cert_name, NULL, 0, true,
				       "--default-ssl-certificate");
	const tg_ingress_spec_t *ing = &ingo->u.ingress;
	char who[320], ns_name[320];
	snprintf(who, sizeof(who), "Ingress %s/%s", ingo->ns, ingo->name);
	for (uint32_t i = 0; i < ing->n_tls; i++) {
		const tg_ingress_tls_t *t = &ing->tls[i];
		if (!t->secret || !t->secret[0])
			continue; /* hosts served by the default certificate */
		snprintf(ns_name, sizeof(ns_name), "%s/%s", ingo->ns, t->secret);
		int e = add_cert_secret(tb, st, ns_name, t->hosts, t->n_hosts, false, who);
		if (e < 0)
			return e;
	}
	return add_client_auth(tb, st, ingo, warn);
}

void tg_tls_build_route_opts(const tg_tls_build_t *tb, tg_route_opts_t *opts)
{
	opts->client_auth_verify = tb->cur_verify;
	opts->client_auth = tb->cur_auth;
}

tg_tls_store_t *tg_tls_build_finish(tg_tls_build_t *tb)
{
	if (!tb->b)
		return NULL;
	char err[TG_TLS_ERR_MAX];
	tg_tls_store_t *s = tg_tls_store_build(tb->b, err, sizeof(err));
	tb->b = NULL;
	tb->cur_auth = NULL;
	if (!s) {
		tg_error("tls", "certificate store build failed: %s", err);
		return NULL;
	}
	tg_tls_store_free(tb->prev);
	tb->prev = tg_tls_store_ref(s);
	/* Forget Secrets no longer referenced: a later reference judges them anew. */
	secret_state_t *gone[64];
	size_t n;
	do {
		n = 0;
		for (size_t i = 0; i < tb->secrets.cap && n < TG_ARRAY_SIZE(gone); i++) {
			secret_state_t *ss =
			    tb->secrets.slots[i].key ? tb->secrets.slots[i].value : NULL;
			if (ss && ss->used_build != tb->builds)
				gone[n++] = ss;
		}
		for (size_t i = 0; i < n; i++) {
			tg_strmap_del(&tb->secrets, gone[i]->key, gone[i]->key_len);
			state_free(gone[i]);
		}
	} while (n == TG_ARRAY_SIZE(gone));
	return s;
}

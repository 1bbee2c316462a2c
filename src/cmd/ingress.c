/*
 * ingress.c - `tidegate ingress`: the L7 proxy fed by Kubernetes objects.
 *
 * Threads: N proxy workers, the access-log writer, the admin server, the
 * configuration source's watcher, and this main thread, which only waits for
 * signals (signalfd) and for an upgrade in progress:
 *   SIGTERM/SIGINT  /healthz turns 503 at once and every response from then on
 *                   carries Connection: close (idle keep-alive connections are
 *                   closed with a FIN); listeners keep accepting for
 *                   --shutdown-grace-period; then they are closed (their queue
 *                   accepted first) and the process exits when no connection is
 *                   left, or at worker-shutdown-timeout closing what is left.
 *                   A second SIGTERM/SIGINT is logged and changes nothing: the
 *                   drain keeps its grace. SIGQUIT (or SIGKILL) stops at once.
 *   SIGHUP          full re-read of the configuration source.
 *   SIGUSR2         binary upgrade (upgrade.h): the binary at the same path is
 *                   started with the same arguments and given the listening
 *                   sockets; once it reports ready, this process drains as on
 *                   SIGTERM (without grace: the sockets stay open in the new
 *                   one). If it fails, this process keeps serving.
 * Start order: configuration first, then the admin listener, then the proxy
 * workers, so that no request is answered before a configuration exists (an
 * upgraded process shares its listening sockets with a process that serves).
 */
#include "cmd/cmd.h"
#include "cmd/ingress_check.h"
#include "cmd/upgrade.h"
#include "core/addr.h"
#include "core/admin.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/parse.h"
#include "ingress/snapshot.h"
#include "ingress/source.h"
#include "ingress/tls_build.h"
#include "proxy/proxy.h"
#include "tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct ingress_ctx {
	tg_proxy_t *_Atomic proxy; /* the data path (NULL until started) */
	_Atomic bool draining;	   /* SIGTERM seen: /healthz answers 503 */
} ingress_ctx_t;

/* How long a new process (SIGUSR2) may take to load its configuration and
 * report ready before it is killed and this one keeps serving. */
#define UPGRADE_TIMEOUT_MS 60000
/* How often the drain logs its progress. */
#define DRAIN_REPORT_MS 5000

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: tidegate ingress (--manifests DIR | --kubeconfig FILE | --in-cluster) "
	    "[OPTIONS]\n"
	    "\n"
	    "L7 ingress proxy configured from Kubernetes Ingress, Service, EndpointSlice,\n"
	    "IngressClass, Secret and ConfigMap objects. With --manifests the directory is\n"
	    "watched and changes apply live without dropping requests.\n"
	    "\n"
	    "sources:\n"
	    "  --manifests DIR                  directory of YAML/JSON manifests\n"
	    "  --kubeconfig FILE                Kubernetes API: list+watch with the kubeconfig's\n"
	    "                                   current context (token or client certificate)\n"
	    "  --in-cluster                     Kubernetes API from a pod's service account\n"
	    "\n"
	    "options (defaults in brackets):\n"
	    "  --http-listen ADDR:PORT          plain HTTP listener [0.0.0.0:80]\n"
	    "  --https-listen ADDR:PORT         HTTPS listener [0.0.0.0:443]; \"off\": none\n"
	    "  --default-ssl-certificate NS/NAME  kubernetes.io/tls Secret answered for\n"
	    "                                   unknown or absent SNI [a generated\n"
	    "                                   self-signed certificate]\n"
	    "  --admin-listen ADDR:PORT         /healthz and /metrics [0.0.0.0:10254]\n"
	    "  --workers N                      worker threads [number of CPUs]\n"
	    "  --ingress-class NAME             IngressClass name to serve [tidegate]\n"
	    "  --controller-class NAME          IngressClass spec.controller to serve\n"
	    "                                   [tidegate.io/ingress-controller]\n"
	    "  --watch-ingress-without-class[=BOOL]  also serve Ingresses without a class [false]\n"
	    "  --publish-status-address ADDR[,ADDR]  written to owned Ingresses'\n"
	    "                                   status.loadBalancer.ingress (API sources only)\n"
	    "  --configmap NS/NAME              global settings ConfigMap "
	    "[tidegate-system/tidegate]\n"
	    "  --shutdown-grace-period DURATION keep accepting this long after SIGTERM [0];\n"
	    "                                   a bare number is seconds (\"5\", \"500ms\", "
	    "\"1m\")\n"
	    "  --check                          with --manifests: load the directory, report\n"
	    "                                   what would be rejected, exit 0 (all good) or 1\n"
	    "  --help                           this text\n"
	    "\n"
	    "signals:\n"
	    "  SIGTERM, SIGINT  graceful drain: /healthz answers 503 at once, every response\n"
	    "                   carries Connection: close, idle keep-alive connections are\n"
	    "                   closed; listeners accept for --shutdown-grace-period, then\n"
	    "                   close; exit 0 once no connection is left, or after the\n"
	    "                   ConfigMap's worker-shutdown-timeout [240s] closing the rest.\n"
	    "                   A second one is logged and ignored (the drain goes on).\n"
	    "  SIGQUIT          stop at once, closing every connection (SIGKILL also works)\n"
	    "  SIGHUP           full re-read of the configuration source\n"
	    "  SIGUSR2          binary upgrade: start the binary at the same path with the\n"
	    "                   same arguments, hand it the listening sockets, and drain\n"
	    "                   once it is ready; if it fails, keep serving (logged)\n"
	    "\n"
	    "TLS: certificates come from the Secrets named by Ingress spec.tls (SNI picks\n"
	    "the certificate, Host the route); TLS 1.2 and 1.3, ALPN http/1.1; ConfigMap\n"
	    "keys ssl-protocols, ssl-ciphers, ssl-session-timeout, ssl-session-tickets,\n"
	    "ssl-session-ticket-key, ssl-redirect, use-proxy-protocol, use-forwarded-headers,\n"
	    "proxy-real-ip-cidr; annotations ssl-redirect, force-ssl-redirect, auth-tls-*.\n"
	    "The handshake (and a PROXY protocol header) must end within\n"
	    "client-header-timeout. Session tickets use keys shared by all workers, rotated\n"
	    "every 12 hours. See README \"TLS\".\n"
	    "\n"
	    "The access log (one line per request) goes to stdout, diagnostics to stderr.\n");
}

static bool healthy(void *arg, tg_sbuf_t *why)
{
	ingress_ctx_t *ctx = arg;
	if (atomic_load(&ctx->draining)) {
		tg_sbuf_printf(why, "draining");
		return false;
	}
	if (!atomic_load(&ctx->proxy)) {
		tg_sbuf_printf(why, "starting");
		return false;
	}
	if (tg_snapshot_generation() == 0) {
		tg_sbuf_printf(why, "no configuration loaded yet");
		return false;
	}
	return true;
}

static void metrics(void *arg, tg_sbuf_t *out)
{
	ingress_ctx_t *ctx = arg;
	tg_proxy_t *p = atomic_load(&ctx->proxy);
	if (p)
		tg_proxy_metrics(p, out);
	tg_source_metrics(out);
	tg_tls_metrics(out);
}

/* Session-ticket keys: a new one every 12 hours (the previous one still
 * opens tickets), unless ssl-session-ticket-key pins a shared key. */
static void rotate_ticket_keys(uint64_t now)
{
	static uint64_t last;
	if (!last)
		last = now;
	if (now - last < TG_TLS_TICKET_ROTATE_MS)
		return;
	last = now;
	if (!tg_tls_build_ticket_key_pinned() && tg_tls_ticket_keys_rotate() < 0)
		tg_warn("ingress", "TLS ticket key rotation failed (no randomness); kept the keys");
}

enum {
	OPT_MANIFESTS = 256,
	OPT_KUBECONFIG,
	OPT_IN_CLUSTER,
	OPT_HTTP,
	OPT_HTTPS,
	OPT_ADMIN,
	OPT_WORKERS,
	OPT_CLASS,
	OPT_CONTROLLER,
	OPT_WITHOUT_CLASS,
	OPT_CONFIGMAP,
	OPT_GRACE,
	OPT_PUBLISH,
	OPT_DEFAULT_CERT,
	OPT_CHECK,
	OPT_HELP,
};

/* True when listening socket fd is bound where `text` says (any port when it
 * says port 0): an inherited socket is only used for the address asked for. */
static bool same_address(int fd, const char *text)
{
	struct sockaddr_storage want, got;
	socklen_t wl, gl = sizeof(got);
	if (tg_addr_parse(text, -1, &want, &wl) < 0 ||
	    getsockname(fd, (struct sockaddr *)&got, &gl) < 0 || got.ss_family != want.ss_family)
		return false;
	if (got.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)&got, *b = (const void *)&want;
		return a->sin_addr.s_addr == b->sin_addr.s_addr &&
		       (b->sin_port == 0 || a->sin_port == b->sin_port);
	}
	const struct sockaddr_in6 *a = (const void *)&got, *b = (const void *)&want;
	return memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0 &&
	       (b->sin6_port == 0 || a->sin6_port == b->sin6_port);
}

/* What the main thread is doing. */
enum { ST_SERVING, ST_GRACE, ST_DRAINING };

typedef struct runstate {
	ingress_ctx_t *ctx;   /* shared with the admin thread */
	tg_proxy_t *proxy;    /* the data path */
	tg_admin_t **admin;   /* the admin server (NULL once handed over) */
	int state;	      /* ST_* */
	uint64_t grace_ms;    /* --shutdown-grace-period */
	uint64_t grace_end;   /* ms: listeners close then */
	uint64_t deadline;    /* ms: worker-shutdown-timeout ends (ST_DRAINING) */
	bool aborted;	      /* SIGQUIT: stopping at once */
	uint64_t next_report; /* ms: next progress line */
	tg_upgrade_t *up;     /* upgrade in progress (NULL: none) */
	uint64_t up_deadline; /* ms: the new process must be ready by then */
} runstate_t;

static unsigned long long open_conns(const runstate_t *r)
{
	return (unsigned long long)tg_proxy_connections(r->proxy);
}

/* Listeners closed (grace over, or handed over): the countdown starts. */
static void start_countdown(runstate_t *r, uint64_t now)
{
	tg_snapshot_t *s = tg_snapshot_acquire();
	uint64_t t = s ? s->settings.worker_shutdown_timeout_ms : 240000;
	tg_snapshot_release(s);
	r->state = ST_DRAINING;
	r->deadline = now + t;
	r->next_report = now + DRAIN_REPORT_MS;
	tg_info("ingress",
		"listeners closed; waiting for %llu open connections to finish "
		"(worker-shutdown-timeout %llu ms)",
		open_conns(r), (unsigned long long)t);
}

static void upgrade_failed(runstate_t *r, const char *why)
{
	tg_error("ingress", "upgrade failed: %s; this process keeps serving", why);
	tg_upgrade_free(r->up);
	r->up = NULL;
}

static void on_sigusr2(runstate_t *r, uint64_t now)
{
	if (r->state != ST_SERVING) {
		tg_warn("ingress", "SIGUSR2 ignored: this process is draining");
		return;
	}
	if (r->up) {
		tg_warn("ingress", "SIGUSR2 ignored: pid %d is already starting",
			(int)tg_upgrade_pid(r->up));
		return;
	}
	static int fds[TG_UPGRADE_MAX_FDS];
	static bool tls[TG_UPGRADE_MAX_FDS];
	static tg_upgrade_kind_t kinds[TG_UPGRADE_MAX_FDS];
	int n = tg_proxy_listen_fds(r->proxy, fds, tls, TG_UPGRADE_MAX_FDS - 1);
	for (int i = 0; i < n; i++)
		kinds[i] = tls[i] ? TG_UPGRADE_HTTPS : TG_UPGRADE_HTTP;
	if (*r->admin) {
		fds[n] = tg_admin_listen_fd(*r->admin);
		kinds[n++] = TG_UPGRADE_ADMIN;
	}
	char why[512];
	if (tg_upgrade_start(fds, kinds, n, &r->up, why, sizeof(why)) < 0) {
		r->up = NULL;
		tg_error("ingress", "upgrade failed: %s; this process keeps serving", why);
		return;
	}
	r->up_deadline = now + UPGRADE_TIMEOUT_MS;
	tg_info("ingress",
		"SIGUSR2: started the new binary as pid %d with the same arguments, %d listening "
		"sockets handed over; waiting for it to be ready",
		(int)tg_upgrade_pid(r->up), n);
}

static void on_terminate(runstate_t *r, int sig, uint64_t now)
{
	if (r->state != ST_SERVING) {
		tg_warn("ingress",
			"%s: already draining (%llu open connections); the drain goes on "
			"(SIGQUIT or SIGKILL stops at once)",
			strsignal(sig), open_conns(r));
		return;
	}
	if (r->up) {
		/* The new process must not serve alongside a draining one. */
		kill(tg_upgrade_pid(r->up), SIGKILL);
		char why[256];
		tg_upgrade_poll(r->up, true, why, sizeof(why));
		upgrade_failed(r, "cancelled by the shutdown");
	}
	atomic_store(&r->ctx->draining, true);
	tg_proxy_drain(r->proxy);
	r->state = ST_GRACE;
	r->grace_end = now + r->grace_ms;
	tg_info("ingress",
		"%s: draining: /healthz answers 503, responses carry Connection: close, idle "
		"keep-alive connections close; listeners open for the grace period (%llu ms); "
		"%llu open connections",
		strsignal(sig), (unsigned long long)r->grace_ms, open_conns(r));
}

static void end_grace(runstate_t *r, uint64_t now)
{
	char v = '?';
	int fd = open("/proc/sys/net/ipv4/tcp_migrate_req", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &v, 1) != 1)
			v = '?';
		close(fd);
	}
	tg_info("ingress",
		"grace period over: accepting what is queued, then closing the listeners "
		"(net.ipv4.tcp_migrate_req=%c%s); %llu open connections",
		v,
		v == '1' ? ""
			 : ": a connection completing its handshake at that instant is reset "
			   "if another process shares the port",
		open_conns(r));
	tg_proxy_unlisten(r->proxy, false);
	start_countdown(r, now);
}

static void on_upgrade_ready(runstate_t *r, uint64_t now)
{
	tg_info("ingress",
		"upgrade: pid %d is ready; this process (pid %d) stops accepting and drains; "
		"%llu open connections",
		(int)tg_upgrade_pid(r->up), (int)getpid(), open_conns(r));
	tg_upgrade_free(r->up);
	r->up = NULL;
	atomic_store(&r->ctx->draining, true);
	/* The new process serves the admin socket from now on. */
	tg_admin_stop(*r->admin);
	*r->admin = NULL;
	tg_proxy_unlisten(r->proxy, true);
	start_countdown(r, now);
}

/* The main thread's loop: signals, the upgrade, the drain. Returns when the
 * workers are gone. */
static void run(ingress_ctx_t *ctx, int sfd, tg_admin_t **admin, uint64_t grace_ms)
{
	runstate_t r = {.ctx = ctx, .proxy = atomic_load(&ctx->proxy), .admin = admin};
	r.grace_ms = grace_ms;
	for (;;) {
		uint64_t now = tg_clock_ms();
		int timeout = 1000;
		if (r.state == ST_GRACE)
			timeout = r.grace_end > now ? (int)TG_MIN(r.grace_end - now, 1000) : 0;
		else if (r.state == ST_DRAINING || r.up)
			timeout = 50;
		struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN},
					{.fd = r.up ? tg_upgrade_fd(r.up) : -1, .events = POLLIN}};
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR) {
			tg_error("ingress", "poll: %s", strerror(errno));
			tg_proxy_abort(r.proxy);
			r.aborted = true;
		}
		now = tg_clock_ms();
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			int sig = (int)si.ssi_signo;
			if (sig == SIGHUP) {
				tg_info("ingress", "SIGHUP: re-reading the configuration");
				tg_source_resync();
			} else if (sig == SIGUSR2) {
				on_sigusr2(&r, now);
			} else if (sig == SIGQUIT) {
				tg_warn("ingress",
					"SIGQUIT: stopping now, closing %llu connections",
					open_conns(&r));
				tg_proxy_abort(r.proxy);
				r.aborted = true;
			} else {
				on_terminate(&r, sig, now);
			}
		}
		if (r.up) {
			char why[512];
			int u = tg_upgrade_poll(r.up, now >= r.up_deadline, why, sizeof(why));
			if (u > 0)
				on_upgrade_ready(&r, now);
			else if (u < 0)
				upgrade_failed(&r, why);
		}
		rotate_ticket_keys(now);
		if (r.state == ST_GRACE && now >= r.grace_end)
			end_grace(&r, now);
		if (tg_proxy_wait(r.proxy, 0)) {
			unsigned long long forced = tg_proxy_forced(r.proxy);
			if (forced && !r.aborted)
				tg_warn("ingress",
					"worker-shutdown-timeout reached: closed %llu connections "
					"still "
					"open",
					forced);
			else if (r.state == ST_DRAINING && !r.aborted)
				tg_info("ingress", "drain complete: no connection left");
			break;
		}
		if (r.state == ST_DRAINING && now >= r.next_report) {
			r.next_report = now + DRAIN_REPORT_MS;
			tg_info(
			    "ingress",
			    "draining: %llu open connections (closed by force in %llu s)",
			    open_conns(&r),
			    (unsigned long long)(r.deadline > now ? (r.deadline - now) / 1000 : 0));
		}
	}
	tg_upgrade_reap();
}

int tg_cmd_ingress(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"manifests", required_argument, NULL, OPT_MANIFESTS},
	    {"kubeconfig", required_argument, NULL, OPT_KUBECONFIG},
	    {"in-cluster", no_argument, NULL, OPT_IN_CLUSTER},
	    {"http-listen", required_argument, NULL, OPT_HTTP},
	    {"https-listen", required_argument, NULL, OPT_HTTPS},
	    {"admin-listen", required_argument, NULL, OPT_ADMIN},
	    {"workers", required_argument, NULL, OPT_WORKERS},
	    {"ingress-class", required_argument, NULL, OPT_CLASS},
	    {"controller-class", required_argument, NULL, OPT_CONTROLLER},
	    {"watch-ingress-without-class", optional_argument, NULL, OPT_WITHOUT_CLASS},
	    {"configmap", required_argument, NULL, OPT_CONFIGMAP},
	    {"shutdown-grace-period", required_argument, NULL, OPT_GRACE},
	    {"publish-status-address", required_argument, NULL, OPT_PUBLISH},
	    {"default-ssl-certificate", required_argument, NULL, OPT_DEFAULT_CERT},
	    {"check", no_argument, NULL, OPT_CHECK},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	tg_source_config_t sc = {
	    .ingress_class = "tidegate",
	    .controller_class = "tidegate.io/ingress-controller",
	    .configmap = "tidegate-system/tidegate",
	};
	const char *http_listen = "0.0.0.0:80";
	const char *https_listen = "0.0.0.0:443";
	const char *admin_listen = "0.0.0.0:10254";
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t workers = cpus > 0 ? (uint64_t)cpus : 1;
	uint64_t grace_ms = 0;
	bool check = false;
	optind = 1;
	opterr = 0;
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case OPT_MANIFESTS:
			sc.manifests_dir = optarg;
			break;
		case OPT_KUBECONFIG:
			sc.kubeconfig = optarg;
			break;
		case OPT_IN_CLUSTER:
			sc.in_cluster = true;
			break;
		case OPT_HTTP:
			http_listen = optarg;
			break;
		case OPT_HTTPS:
			https_listen = strcmp(optarg, "off") == 0 ? NULL : optarg;
			break;
		case OPT_ADMIN:
			admin_listen = optarg;
			break;
		case OPT_WORKERS:
			if (tg_parse_u64(optarg, strlen(optarg), &workers) < 0 || workers < 1 ||
			    workers > 256) {
				fprintf(stderr, "tidegate ingress: --workers '%s': want 1..256\n",
					optarg);
				return 2;
			}
			break;
		case OPT_CLASS:
			sc.ingress_class = optarg;
			break;
		case OPT_CONTROLLER:
			sc.controller_class = optarg;
			break;
		case OPT_WITHOUT_CLASS:
			sc.watch_ingress_without_class = true;
			if (optarg && tg_parse_bool(optarg, strlen(optarg),
						    &sc.watch_ingress_without_class) < 0) {
				fprintf(
				    stderr,
				    "tidegate ingress: --watch-ingress-without-class '%s': want "
				    "true or false\n",
				    optarg);
				return 2;
			}
			break;
		case OPT_CONFIGMAP:
			if (!strchr(optarg, '/')) {
				fprintf(stderr,
					"tidegate ingress: --configmap '%s': want NS/NAME\n",
					optarg);
				return 2;
			}
			sc.configmap = optarg;
			break;
		case OPT_GRACE:
			if (tg_parse_duration_ms(optarg, strlen(optarg), 1000, &grace_ms) < 0) {
				fprintf(
				    stderr,
				    "tidegate ingress: --shutdown-grace-period '%s': want seconds "
				    "or a duration like 500ms, 30s, 1m\n",
				    optarg);
				return 2;
			}
			break;
		case OPT_PUBLISH:
			sc.publish_status_address = optarg;
			break;
		case OPT_DEFAULT_CERT:
			if (!strchr(optarg, '/') || optarg[0] == '/' || !strchr(optarg, '/')[1]) {
				fprintf(stderr,
					"tidegate ingress: --default-ssl-certificate '%s': want "
					"NS/NAME\n",
					optarg);
				return 2;
			}
			sc.default_ssl_certificate = optarg;
			tg_tls_build_set_default_certificate(optarg);
			break;
		case OPT_CHECK:
			check = true;
			break;
		case OPT_HELP:
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "tidegate ingress: unknown or incomplete option '%s'\n\n",
				argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tidegate ingress: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	int nsrc = (sc.manifests_dir != NULL) + (sc.kubeconfig != NULL) + sc.in_cluster;
	if (nsrc != 1) {
		fprintf(stderr, "tidegate ingress: give exactly one of --manifests DIR, "
				"--kubeconfig FILE, --in-cluster\n\n");
		usage(stderr);
		return 2;
	}

	if (check)
		return tg_ingress_check(&sc);

	/* An upgraded process gets its listening sockets from the old one. */
	tg_upgrade_remember(argc, argv);
	tg_upgrade_inherited_t inh;
	if (tg_upgrade_receive(&inh) < 0) {
		tg_upgrade_report(&inh, false, "the socket handover failed");
		return 1;
	}
	if (inh.channel >= 0)
		tg_info("ingress", "upgrade: started by pid %d, %d listening sockets handed over",
			(int)inh.old_pid, inh.n_http + inh.n_https + (inh.admin >= 0));

	/* Signals are taken by this thread only (signalfd); the mask is set
	 * before any thread exists so that every thread inherits it. */
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		tg_error("ingress", "signalfd: %s", strerror(errno));
		tg_upgrade_report(&inh, false, "signalfd failed");
		return 1;
	}

	ingress_ctx_t ctx = {.proxy = NULL};
	char why[512];
	if (tg_tls_init() < 0) {
		snprintf(why, sizeof(why), "TLS initialisation failed (OpenSSL)");
		goto fail_early;
	}
	int e = tg_source_start(&sc);
	if (e < 0) {
		if (e != -ENOTSUP)
			tg_error("ingress", "cannot load %s: %s",
				 sc.manifests_dir ? sc.manifests_dir : "the configuration source",
				 strerror(-e));
		snprintf(why, sizeof(why), "cannot load the configuration: %s", strerror(-e));
		goto fail_early;
	}
	tg_admin_t *admin = NULL;
	tg_admin_ops_t ops = {healthy, metrics, &ctx};
	if (inh.admin >= 0 && same_address(inh.admin, admin_listen)) {
		e = tg_admin_adopt(inh.admin, &ops, &admin);
	} else {
		if (inh.admin >= 0) {
			tg_warn("ingress",
				"upgrade: the inherited admin socket does not match "
				"--admin-listen %s: binding anew",
				admin_listen);
			close(inh.admin);
		}
		e = tg_admin_start(admin_listen, &ops, &admin);
	}
	inh.admin = -1;
	if (e < 0) {
		snprintf(why, sizeof(why), "cannot serve --admin-listen %s: %s", admin_listen,
			 strerror(-e));
		tg_source_stop();
		goto fail_early;
	}
	tg_proxy_t *proxy = NULL;
	tg_proxy_config_t pc = {
	    .http_listen = http_listen,
	    .workers = (int)workers,
	    .access_log_fd = STDOUT_FILENO,
	    .inherit_fds = inh.http,
	    .n_inherit = inh.n_http,
	    .https_listen = https_listen,
	    .inherit_tls_fds = inh.https,
	    .n_inherit_tls = inh.n_https,
	};
	inh.n_http = inh.n_https = 0; /* the proxy owns them now, also on failure */
	e = tg_proxy_start(&pc, &proxy);
	if (e < 0) {
		snprintf(why, sizeof(why), "cannot serve --http-listen %s: %s", http_listen,
			 strerror(-e));
		tg_admin_stop(admin);
		tg_source_stop();
		goto fail_early;
	}
	atomic_store(&ctx.proxy, proxy);
	tg_info("ingress",
		"serving http on port %d (%d workers), https on port %d, admin on port %d, pid %d",
		tg_proxy_http_port(proxy), (int)workers, tg_proxy_https_port(proxy),
		tg_admin_port(admin), (int)getpid());
	if (inh.channel >= 0) {
		tg_upgrade_report(&inh, true, NULL);
		tg_info("ingress", "upgrade: ready; pid %d stops accepting and drains",
			(int)inh.old_pid);
	}
	run(&ctx, sfd, &admin, grace_ms);
	tg_admin_stop(admin); /* first: its /metrics reads the proxy */
	tg_proxy_free(proxy);
	tg_source_stop();
	close(sfd);
	tg_info("ingress", "stopped");
	return 0;

fail_early:
	for (int i = 0; i < inh.n_http; i++)
		close(inh.http[i]);
	for (int i = 0; i < inh.n_https; i++)
		close(inh.https[i]);
	if (inh.admin >= 0)
		close(inh.admin);
	tg_upgrade_report(&inh, false, why);
	close(sfd);
	return 1;
}

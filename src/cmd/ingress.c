/*
 * ingress.c - `tidegate ingress`: the L7 proxy fed by Kubernetes objects.
 *
 * Threads: N proxy workers, the access-log writer, the admin server, the
 * configuration source's watcher, and this main thread, which only waits for
 * signals:
 *   SIGTERM/SIGINT  /healthz turns 503 at once; listeners keep accepting for
 *                   --shutdown-grace-period; then the workers drain (listeners
 *                   closed, idle keep-alive connections closed, Connection:
 *                   close on the next responses) and the process exits when
 *                   no connection is left or at worker-shutdown-timeout.
 *                   A second SIGTERM/SIGINT stops at once.
 *   SIGHUP          full re-read of the configuration source.
 */
#include "cmd/cmd.h"
#include "core/admin.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/parse.h"
#include "ingress/snapshot.h"
#include "ingress/source.h"
#include "proxy/proxy.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct ingress_ctx {
	tg_proxy_t *proxy;     /* the data path */
	_Atomic bool draining; /* SIGTERM seen: /healthz answers 503 */
} ingress_ctx_t;

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
	    "  --https-listen ADDR:PORT         HTTPS listener [0.0.0.0:443]; accepted and\n"
	    "                                   ignored until TLS support lands\n"
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
	    "  --help                           this text\n"
	    "\n"
	    "signals: SIGTERM/SIGINT drain and exit (twice: exit now), SIGHUP re-reads the "
	    "source.\n"
	    "The access log (one line per request) goes to stdout, diagnostics to stderr.\n");
}

static bool healthy(void *arg, tg_sbuf_t *why)
{
	ingress_ctx_t *ctx = arg;
	if (atomic_load(&ctx->draining)) {
		tg_sbuf_printf(why, "draining");
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
	tg_proxy_metrics(ctx->proxy, out);
	tg_source_metrics(out);
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
	OPT_HELP,
};

/* Waits up to ms for a signal in set; returns its number or 0. */
static int wait_signal(const sigset_t *set, long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	int s = sigtimedwait(set, NULL, &ts);
	return s < 0 ? 0 : s;
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
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	tg_source_config_t sc = {
	    .ingress_class = "tidegate",
	    .controller_class = "tidegate.io/ingress-controller",
	    .configmap = "tidegate-system/tidegate",
	};
	const char *http_listen = "0.0.0.0:80";
	const char *admin_listen = "0.0.0.0:10254";
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t workers = cpus > 0 ? (uint64_t)cpus : 1;
	uint64_t grace_ms = 0;
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
			break; /* accepted; TLS is not implemented yet */
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
			sc.default_ssl_certificate = optarg;
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

	/* Signals are taken by this thread only (sigtimedwait); the mask is set
	 * before any thread exists so that every thread inherits it. */
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	ingress_ctx_t ctx = {0};
	tg_proxy_config_t pc = {http_listen, (int)workers, STDOUT_FILENO};
	int e = tg_proxy_start(&pc, &ctx.proxy);
	if (e < 0)
		return 1;
	tg_admin_t *admin = NULL;
	tg_admin_ops_t ops = {healthy, metrics, &ctx};
	e = tg_admin_start(admin_listen, &ops, &admin);
	if (e < 0) {
		tg_proxy_free(ctx.proxy);
		return 1;
	}
	e = tg_source_start(&sc);
	if (e < 0) {
		if (e != -ENOTSUP)
			tg_error("ingress", "cannot load %s: %s",
				 sc.manifests_dir ? sc.manifests_dir : "the configuration source",
				 strerror(-e));
		tg_admin_stop(admin);
		tg_proxy_free(ctx.proxy);
		return 1;
	}
	tg_info("ingress", "serving http on port %d (%d workers), admin on port %d",
		tg_proxy_http_port(ctx.proxy), (int)workers, tg_admin_port(admin));

	int sig;
	for (;;) {
		sig = wait_signal(&set, 1000);
		if (sig == SIGHUP) {
			tg_info("ingress", "SIGHUP: re-reading the configuration");
			tg_source_resync();
		} else if (sig == SIGTERM || sig == SIGINT) {
			break;
		}
	}
	atomic_store(&ctx.draining, true);
	tg_info("ingress", "%s: draining (grace period %llu ms)", strsignal(sig),
		(unsigned long long)grace_ms);
	bool now = false;
	uint64_t end = tg_clock_ms() + grace_ms;
	while (!now && tg_clock_ms() < end) {
		uint64_t left = end - tg_clock_ms();
		sig = wait_signal(&set, (long)(left < 1000 ? left : 1000));
		if (sig == SIGHUP)
			tg_source_resync();
		else if (sig)
			now = true;
	}
	if (now) {
		tg_proxy_abort(ctx.proxy);
	} else {
		tg_proxy_drain(ctx.proxy);
		while (!tg_proxy_wait(ctx.proxy, 0)) {
			sig = wait_signal(&set, 100);
			if (sig == SIGTERM || sig == SIGINT) {
				tg_info("ingress", "second signal: closing every connection now");
				tg_proxy_abort(ctx.proxy);
			} else if (sig == SIGHUP) {
				tg_source_resync();
			}
		}
	}
	tg_proxy_free(ctx.proxy);
	tg_admin_stop(admin);
	tg_source_stop();
	tg_info("ingress", "stopped");
	return 0;
}

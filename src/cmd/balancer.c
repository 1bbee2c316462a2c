/*
 * balancer.c - `tidegate balancer --config FILE`: the L4 XDP balancer.
 *
 * Threads: this one (configuration, health results, drain deadlines, signals:
 * one epoll loop), the health-check thread (l4/health.h) and the admin thread
 * (core/admin.h). The control plane (l4/plane.h) is shared with the admin
 * thread under the plane's lock; the datapath is only touched with it held.
 *
 * With a bgp: section the same loop also drives the BGP speaker (l4/bgp.h):
 * its epoll fd sits in the loop's set, and after every iteration the VIP
 * addresses that have a usable real are handed to it to announce.
 *
 * Signals: SIGHUP reloads the file (a rejected file leaves the running
 * configuration and the XDP program untouched), SIGTERM/SIGINT turn /healthz
 * to 503, stop the checks and detach XDP. With BGP, SIGTERM first withdraws
 * every VIP and keeps forwarding for bgp.withdraw-delay, so that routers move
 * the flows to other balancer nodes before this one stops taking them; then
 * the sessions end with Cease and XDP is detached. A second SIGTERM/SIGINT
 * during that delay skips the rest of it.
 */
#include "cmd/cmd.h"
#include "core/admin.h"
#include "core/clock.h"
#include "core/common.h"
#include "core/log.h"
#include "l4/bgp.h"
#include "l4/config.h"
#include "l4/datapath.h"
#include "l4/health.h"
#include "l4/plane.h"
#include "l4/plane_dp.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* Everything the process runs. */
typedef struct balancer {
	const char *config_path; /* --config */
	tg_dp_t *dp;		 /* XDP program and maps */
	tg_l4_plane_t *plane;	 /* control plane (its lock guards dp too) */
	tg_health_t *health;	 /* health-check thread */
	tg_admin_t *admin;	 /* /healthz, /metrics */
	tg_bgp_t *bgp;		 /* BGP speaker, NULL without a bgp: section */
	bool stopping;		 /* SIGTERM seen: /healthz answers 503 (atomic) */
} balancer_t;

static void usage(FILE *f)
{
	fprintf(f, "usage: tidegate balancer --config FILE [--check]\n"
		   "\n"
		   "L4 load balancer: attaches the XDP program to the configured interface,\n"
		   "programs each VIP's reals through Maglev tables, health-checks the reals and\n"
		   "serves /healthz and /metrics on admin-listen (default 0.0.0.0:10255).\n"
		   "\n"
		   "  --config FILE  balancer YAML (see examples/balancer.yaml)\n"
		   "  --check        validate FILE, print the reason if it is rejected, and exit\n"
		   "  --help         this text\n"
		   "\n"
		   "signals: SIGHUP reloads FILE (a bad file is rejected and the running\n"
		   "configuration stays); SIGTERM detaches XDP and exits (with bgp:, after\n"
		   "withdrawing the VIPs and waiting withdraw-delay).\n");
}

static bool admin_healthy(void *ctx, tg_sbuf_t *why)
{
	balancer_t *b = ctx;
	if (__atomic_load_n(&b->stopping, __ATOMIC_ACQUIRE)) {
		tg_sbuf_printf(why, "shutting down");
		return false;
	}
	tg_l4_plane_lock(b->plane);
	bool ok = tg_l4_plane_has_usable_vip(b->plane);
	tg_l4_plane_unlock(b->plane);
	if (!ok)
		tg_sbuf_printf(why, "no VIP has a usable real");
	return ok;
}

static void admin_metrics(void *ctx, tg_sbuf_t *out)
{
	balancer_t *b = ctx;
	tg_l4_plane_lock(b->plane);
	tg_l4_plane_metrics(b->plane, out);
	tg_sbuf_printf(out,
		       "# HELP tidegate_l4_xdp_attached 1 while the XDP program is attached.\n"
		       "# TYPE tidegate_l4_xdp_attached gauge\n"
		       "tidegate_l4_xdp_attached %d\n",
		       b->dp != NULL); /* still 1 during bgp.withdraw-delay */
	tg_l4_plane_unlock(b->plane);
	tg_health_stats_t hs;
	tg_health_get_stats(b->health, &hs);
	tg_sbuf_printf(
	    out,
	    "# HELP tidegate_l4_health_checks_total Health checks completed, by result.\n"
	    "# TYPE tidegate_l4_health_checks_total counter\n"
	    "tidegate_l4_health_checks_total{result=\"pass\"} %llu\n"
	    "tidegate_l4_health_checks_total{result=\"fail\"} %llu\n"
	    "tidegate_l4_health_checks_total{result=\"timeout\"} %llu\n",
	    (unsigned long long)hs.passes,
	    (unsigned long long)(hs.checks - hs.passes - hs.timeouts),
	    (unsigned long long)hs.timeouts);
	tg_bgp_t *bgp = __atomic_load_n(&b->bgp, __ATOMIC_ACQUIRE);
	if (bgp)
		tg_bgp_metrics(bgp, out);
}

static void push_targets(balancer_t *b)
{
	tg_health_target_t *t;
	int n = tg_l4_plane_health_targets(b->plane, &t);
	if (n < 0 || tg_health_set_targets(b->health, t, (size_t)n) != 0)
		tg_error("balancer", "out of memory updating health checks");
	if (n >= 0)
		free(t);
}

/* Fields the datapath or the admin listener took at start; changing them
 * needs a restart. Returns the first one that differs, or NULL. */
static const char *fixed_field_changed(const tg_l4_config_t *a, const tg_l4_config_t *b)
{
	if (strcmp(a->interface, b->interface) != 0)
		return "interface";
	if (a->xdp_mode != b->xdp_mode)
		return "xdp-mode";
	if (strcmp(a->admin_listen, b->admin_listen) != 0)
		return "admin-listen";
	if (a->has_encap_src4 != b->has_encap_src4 ||
	    memcmp(&a->encap_src4, &b->encap_src4, sizeof(a->encap_src4)) != 0)
		return "encap-source-v4";
	if (a->has_encap_src6 != b->has_encap_src6 ||
	    memcmp(&a->encap_src6, &b->encap_src6, sizeof(a->encap_src6)) != 0)
		return "encap-source-v6";
	if (a->max_new_flows_per_sec != b->max_new_flows_per_sec)
		return "max-new-flows-per-second";
	if (!tg_l4_bgp_cfg_eq(&a->bgp, &b->bgp))
		return "bgp";
	return NULL;
}

/* bpf_fib_lookup, which finds the next hop of every forwarded packet, fails
 * with "forwarding disabled" unless the interface forwards; every packet for
 * a VIP would then be handed to the kernel (pass_fib_fail). Warn at start
 * rather than flip a host-wide routing switch behind the operator's back. */
static void check_forwarding(const tg_l4_config_t *cfg)
{
	bool v4 = false, v6 = false;
	for (size_t i = 0; i < cfg->n_vips; i++) {
		v4 |= cfg->vips[i].ip.family == AF_INET;
		v6 |= cfg->vips[i].ip.family == AF_INET6;
	}
	for (int fam = 0; fam < 2; fam++) {
		if (!(fam ? v6 : v4))
			continue;
		char path[128], val[8] = "";
		snprintf(path, sizeof(path), "/proc/sys/net/%s/conf/%s/forwarding",
			 fam ? "ipv6" : "ipv4", cfg->interface);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(val, sizeof(val), f) && val[0] == '0')
			tg_warn("balancer",
				"net.%s.conf.%s.forwarding is 0: the datapath cannot look up next "
				"hops and passes VIP traffic to the kernel (pass_fib_fail); set it "
				"to 1",
				fam ? "ipv6" : "ipv4", cfg->interface);
		fclose(f);
	}
}

static void reload(balancer_t *b)
{
	char err[TG_L4_ERR_MAX];
	tg_l4_config_t *cfg;
	int rc = tg_l4_config_load(b->config_path, &cfg, err, sizeof(err));
	tg_l4_plane_lock(b->plane);
	if (rc == 0) {
		const char *f = fixed_field_changed(tg_l4_plane_config(b->plane), cfg);
		if (f) {
			snprintf(err, sizeof(err),
				 "%s: %s cannot change on reload (restart needed)", b->config_path,
				 f);
			tg_l4_config_free(cfg);
			rc = -EINVAL;
		}
	}
	if (rc == 0) {
		size_t n_vips = cfg->n_vips;
		char perr[TG_L4_ERR_MAX];
		rc = tg_l4_plane_apply(b->plane, cfg, tg_clock_ms(), perr, sizeof(perr));
		if (rc != 0)
			snprintf(err, sizeof(err), "%s", perr);
		else
			tg_info("balancer", "reloaded %s: %zu VIPs", b->config_path, n_vips);
		push_targets(b);
	}
	tg_l4_plane_note_reload(b->plane, rc == 0);
	tg_l4_plane_unlock(b->plane);
	if (rc != 0)
		tg_error("balancer", "reload rejected, the running configuration stays: %s", err);
}

static void on_health(void *ctx, uint64_t key, bool healthy)
{
	balancer_t *b = ctx;
	tg_l4_plane_set_health(b->plane, key, healthy, tg_clock_ms());
}

/* Hands the BGP speaker the VIP addresses to announce: those with a usable
 * real, none once the balancer is stopping. */
static void push_routes(balancer_t *b)
{
	if (!b->bgp)
		return;
	tg_l4_vip_addr_t va[TG_L4_MAX_VIPS];
	tg_bgp_route_t r[TG_L4_MAX_VIPS];
	bool stopping = __atomic_load_n(&b->stopping, __ATOMIC_ACQUIRE);
	tg_l4_plane_lock(b->plane);
	size_t n = tg_l4_plane_vip_addrs(b->plane, va, TG_L4_MAX_VIPS);
	tg_l4_plane_unlock(b->plane);
	for (size_t i = 0; i < n; i++) {
		r[i].ip = va[i].ip;
		r[i].announce = va[i].usable && !stopping;
	}
	tg_bgp_set_routes(b->bgp, r, n);
}

/* The control loop. Returns when SIGTERM/SIGINT arrives (with BGP: once the
 * withdraw delay that follows it has passed). */
static int run(balancer_t *b, int sfd, uint32_t withdraw_delay_ms)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return -errno;
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	ev.data.u32 = 1;
	epoll_ctl(ep, EPOLL_CTL_ADD, tg_health_fd(b->health), &ev);
	if (b->bgp) {
		ev.data.u32 = 2;
		epoll_ctl(ep, EPOLL_CTL_ADD, tg_bgp_fd(b->bgp), &ev);
	}
	bool draining = false;
	uint64_t drain_end = 0;
	for (;;) {
		tg_l4_plane_lock(b->plane);
		uint64_t now = tg_clock_ms();
		uint64_t next = tg_l4_plane_tick(b->plane, now);
		tg_l4_plane_unlock(b->plane);
		if (draining && now >= drain_end)
			break;
		if (b->bgp) {
			push_routes(b);
			next = TG_MIN(next, tg_bgp_run(b->bgp, now));
		}
		if (draining)
			next = TG_MIN(next, drain_end);
		/* Drain deadlines are honoured to the millisecond; otherwise
		 * wake once a second so nothing can be missed for long. */
		uint64_t wait = next == UINT64_MAX ? 1000 : next > now ? next - now : 0;
		struct epoll_event evs[4];
		int n = epoll_wait(ep, evs, 4, (int)TG_MIN(wait, 1000));
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u32 == 1) {
				tg_l4_plane_lock(b->plane);
				tg_health_collect(b->health, on_health, b);
				tg_l4_plane_unlock(b->plane);
				continue;
			}
			if (evs[i].data.u32 == 2)
				continue; /* tg_bgp_run at the top of the loop */
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				if (si.ssi_signo == SIGHUP && !draining) {
					tg_info("balancer", "SIGHUP: reloading %s", b->config_path);
					reload(b);
				} else if (si.ssi_signo == SIGHUP) {
					tg_info("balancer", "SIGHUP ignored: shutting down");
				} else if (!b->bgp || draining) {
					tg_info("balancer", "signal %u: detaching and exiting",
						si.ssi_signo);
					close(ep);
					return 0;
				} else {
					/* Routers first, XDP last: flows keep being
					 * forwarded while the routers move them. */
					__atomic_store_n(&b->stopping, true, __ATOMIC_RELEASE);
					draining = true;
					drain_end = tg_clock_ms() + withdraw_delay_ms;
					push_routes(b);
					tg_info("balancer",
						"signal %u: VIPs withdrawn from BGP; detaching XDP "
						"after withdraw-delay (%ums)",
						si.ssi_signo, withdraw_delay_ms);
				}
			}
		}
	}
	tg_info("balancer", "withdraw-delay over: detaching and exiting");
	close(ep);
	return 0;
}

int tg_cmd_balancer(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	balancer_t b;
	memset(&b, 0, sizeof(b));
	bool check_only = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			b.config_path = optarg;
			break;
		case 'k':
			check_only = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!b.config_path || optind != argc) {
		fprintf(stderr, "tidegate balancer: %s\n\n",
			b.config_path ? "unexpected argument" : "--config FILE is required");
		usage(stderr);
		return 2;
	}

	char err[TG_L4_ERR_MAX];
	tg_l4_config_t *cfg;
	if (tg_l4_config_load(b.config_path, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "tidegate balancer: %s\n", err);
		return 1;
	}
	if (check_only) {
		printf("%s: ok (%zu VIPs)\n", b.config_path, cfg->n_vips);
		tg_l4_config_free(cfg);
		return 0;
	}

	/* Signals go to the signalfd; threads started below inherit the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	int status = 1, rc;
	tg_dp_opts_t dopts;
	tg_l4_plane_dp_opts(cfg, &dopts);
	char admin_listen[TG_L4_LISTEN_MAX];
	memcpy(admin_listen, cfg->admin_listen, sizeof(admin_listen));
	if (sfd < 0) {
		fprintf(stderr, "tidegate balancer: signalfd: %s\n", strerror(errno));
		tg_l4_config_free(cfg);
		goto out;
	}
	rc = tg_dp_open(&dopts, &b.dp);
	if (rc != 0) {
		fprintf(stderr, "tidegate balancer: cannot load XDP on %s: %s\n", cfg->interface,
			strerror(-rc));
		tg_l4_config_free(cfg);
		goto out;
	}
	tg_l4_dp_ops_t ops;
	tg_l4_plane_dp_ops(b.dp, &ops);
	if (tg_l4_plane_create(&ops, &b.plane) != 0 || tg_health_start(&b.health) != 0) {
		fprintf(stderr, "tidegate balancer: out of memory\n");
		tg_l4_config_free(cfg);
		goto out;
	}
	const char *ifname = cfg->interface;
	char ifbuf[TG_L4_IFNAME_MAX];
	memcpy(ifbuf, ifname, sizeof(ifbuf));
	size_t n_vips = cfg->n_vips;
	bool generic = cfg->xdp_mode == TG_L4_XDP_GENERIC;
	tg_l4_plane_lock(b.plane);
	rc = tg_l4_plane_apply(b.plane, cfg, tg_clock_ms(), err, sizeof(err));
	if (rc == 0)
		push_targets(&b);
	tg_l4_plane_unlock(b.plane);
	if (rc != 0) {
		fprintf(stderr, "tidegate balancer: %s\n", err);
		goto out;
	}
	tg_admin_ops_t aops = {.healthy = admin_healthy, .metrics = admin_metrics, .ctx = &b};
	rc = tg_admin_start(admin_listen, &aops, &b.admin);
	if (rc != 0) {
		fprintf(stderr, "tidegate balancer: admin-listen %s: %s\n", admin_listen,
			strerror(-rc));
		goto out;
	}
	tg_l4_plane_lock(b.plane);
	const tg_l4_config_t *running = tg_l4_plane_config(b.plane);
	check_forwarding(running);
	tg_l4_bgp_cfg_t bgp_cfg = running->bgp;
	tg_l4_plane_unlock(b.plane);
	tg_info("balancer", "XDP attached to %s (%s), %zu VIPs, admin on %s", ifbuf,
		generic ? "generic" : "native", n_vips, admin_listen);
	if (bgp_cfg.enabled) {
		tg_bgp_t *bgp;
		rc = tg_bgp_create(&bgp_cfg, ifbuf, &bgp, err, sizeof(err));
		if (rc != 0) {
			fprintf(stderr, "tidegate balancer: %s\n", err);
			goto out;
		}
		/* The admin thread reads b.bgp for metrics: publish it whole. */
		__atomic_store_n(&b.bgp, bgp, __ATOMIC_RELEASE);
		tg_bgp_start(b.bgp, tg_clock_ms());
		push_routes(&b);
		tg_info("balancer", "BGP: AS %u, %zu neighbors, withdraw-delay %ums",
			bgp_cfg.local_as, bgp_cfg.n_neighbors, bgp_cfg.withdraw_delay_ms);
	}
	status = run(&b, sfd, bgp_cfg.withdraw_delay_ms) == 0 ? 0 : 1;
out:
	__atomic_store_n(&b.stopping, true, __ATOMIC_RELEASE);
	/* Cease to every router before XDP goes (routes were withdrawn already
	 * when run() returned normally). */
	if (b.bgp)
		tg_bgp_shutdown(b.bgp, "tidegate balancer shutting down");
	/* The admin thread reads counters through the datapath: it stops
	 * before the datapath goes away. */
	tg_admin_stop(b.admin);
	tg_health_stop(b.health);
	b.health = NULL;
	/* From here on packets go to the kernel untouched. */
	tg_dp_close(b.dp);
	b.dp = NULL;
	tg_bgp_free(b.bgp);
	tg_l4_plane_free(b.plane);
	if (sfd >= 0)
		close(sfd);
	if (status == 0)
		tg_info("balancer", "XDP detached from %s", ifbuf);
	return status;
}

/*
 * decap.c - `tidegate decap --iface IF --vip ADDR...`: make this host a real
 * behind the L4 balancer (direct server return).
 *
 * What it does, in order, each step logged and undone on exit:
 *  1. loads bpf/decap.bpf.c with the VIPs in its map and attaches it to IF's
 *     ingress: tcx (bpf_link; detached by the kernel even if this process is
 *     killed) or, when the kernel has no tcx, a clsact qdisc + cls_bpf filter;
 *  2. puts each VIP on `lo` as /32 or /128, so the stack accepts the
 *     decapsulated packets and replies come from the VIP;
 *  3. sets net.ipv4.conf.{all,lo,IF}.arp_ignore=1 and arp_announce=2 so this
 *     host never answers ARP for the VIP (the balancer owns it) nor uses it
 *     as an ARP source, and relaxes rp_filter from strict (1) to loose (2)
 *     on all and IF, since client sources arrive from the balancer.
 * Then it waits in the foreground for SIGTERM or SIGINT, and undoes
 * everything newest first: detach, remove addresses it added, restore every
 * sysctl it changed. Addresses and sysctls that were already as wanted are
 * left alone. Works inside `ip netns exec NS`: every change is per netns.
 */
#include "cmd/cmd.h"

#include "abi.h"
#include "core/addr.h"
#include "core/log.h"
#include "decap.skel.h"
#include "l4/dp_host.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Kernel 6.6+ attach type; the 6.1 uapi headers here predate it. */
#define TCX_INGRESS_ATTACH_TYPE 46
/* cls_bpf filter identity when tcx is unavailable ("tg"). */
#define DECAP_TC_HANDLE	  0x7467
#define DECAP_TC_PRIORITY 1

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tidegate decap --iface IF --vip ADDR [ADDR...] [--vip ADDR...]\n"
		"\n"
		"Runs on a real behind the L4 balancer, in the foreground, until SIGTERM\n"
		"or SIGINT. Attaches a tc ingress program on IF that removes the IPIP\n"
		"(IPv4 protocol 4) or IP6IP6 (IPv6 next header 41) header of packets whose\n"
		"inner destination is one of the VIPs, puts each VIP on lo (/32 or /128),\n"
		"sets arp_ignore=1 / arp_announce=2 on all, lo and IF and rp_filter loose\n"
		"where it was strict. On exit everything is put back as it was.\n"
		"\n"
		"options:\n"
		"  --iface IF     interface the balancer's packets arrive on\n"
		"  --vip ADDR...  VIP address(es), IPv4 or IPv6 (up to %u)\n"
		"  --help         this text\n",
		TG_DECAP_MAX_VIPS);
}

/* State to undo on exit. */
typedef struct decap {
	struct tg_decap *skel; /* loaded program and maps */
	int link_fd;	       /* tcx link, -1 when none */
	bool tc_attached;      /* cls_bpf filter attached (no tcx) */
	bool qdisc_created;    /* we created the clsact qdisc */
	int ifindex;	       /* IF */
	tg_dp_host_t *host;    /* sysctl/address journal */
} decap_t;

static int attach(decap_t *d, const char *ifname)
{
	int prog = bpf_program__fd(d->skel->progs.decap_tc);
	int rc =
	    bpf_link_create(prog, d->ifindex, (enum bpf_attach_type)TCX_INGRESS_ATTACH_TYPE, NULL);

	if (rc >= 0) {
		d->link_fd = rc;
		tg_info("decap", "attached to %s ingress (tcx link)", ifname);
		return 0;
	}
	tg_info("decap", "tcx unavailable (%s); using a clsact qdisc", strerror(-rc));

	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = d->ifindex, .attach_point = BPF_TC_INGRESS);
	rc = bpf_tc_hook_create(&hook);
	if (rc && rc != -EEXIST) {
		tg_error("decap", "creating clsact on %s: %s", ifname, strerror(-rc));
		return rc;
	}
	d->qdisc_created = rc == 0;
	LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog, .handle = DECAP_TC_HANDLE,
		    .priority = DECAP_TC_PRIORITY);
	rc = bpf_tc_attach(&hook, &opts);
	if (rc) {
		tg_error("decap", "attaching tc filter on %s: %s", ifname, strerror(-rc));
		return rc;
	}
	d->tc_attached = true;
	tg_info("decap", "attached to %s ingress (clsact, handle 0x%x prio %d)", ifname,
		DECAP_TC_HANDLE, DECAP_TC_PRIORITY);
	return 0;
}

static void detach(decap_t *d)
{
	if (d->link_fd >= 0) {
		close(d->link_fd);
		d->link_fd = -1;
		tg_info("decap", "detached (tcx link closed)");
	}
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = d->ifindex, .attach_point = BPF_TC_INGRESS);
	if (d->tc_attached) {
		LIBBPF_OPTS(bpf_tc_opts, opts, .handle = DECAP_TC_HANDLE,
			    .priority = DECAP_TC_PRIORITY);
		int rc = bpf_tc_detach(&hook, &opts);
		if (rc)
			tg_warn("decap", "detaching tc filter: %s", strerror(-rc));
		else
			tg_info("decap", "detached tc filter");
		d->tc_attached = false;
	}
	if (d->qdisc_created) {
		/* Destroying with attach_point INGRESS alone would only flush
		 * filters; INGRESS|EGRESS removes the clsact qdisc itself. */
		hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
		int rc = bpf_tc_hook_destroy(&hook);
		if (rc)
			tg_warn("decap", "removing clsact qdisc: %s", strerror(-rc));
		else
			tg_info("decap", "removed clsact qdisc");
		d->qdisc_created = false;
	}
}

/* The sysctls of step 3. */
static int host_prepare(decap_t *d, const char *ifname, bool any_v4)
{
	const char *scopes[] = {"all", "lo", ifname};
	char name[160], val[16];
	int rc;

	if (any_v4) {
		for (size_t i = 0; i < 3; i++) {
			snprintf(name, sizeof(name), "net/ipv4/conf/%s/arp_ignore", scopes[i]);
			if ((rc = tg_dp_host_sysctl_set(d->host, name, "1")))
				return rc;
			snprintf(name, sizeof(name), "net/ipv4/conf/%s/arp_announce", scopes[i]);
			if ((rc = tg_dp_host_sysctl_set(d->host, name, "2")))
				return rc;
		}
		/* The effective rp_filter is max(all, IF): strict on either
		 * drops client sources the real has no route back through IF. */
		const char *rp[] = {"all", ifname};
		for (size_t i = 0; i < 2; i++) {
			snprintf(name, sizeof(name), "net/ipv4/conf/%s/rp_filter", rp[i]);
			if ((rc = tg_dp_host_sysctl_get(name, val, sizeof(val))))
				return rc;
			if (strcmp(val, "1") == 0 &&
			    (rc = tg_dp_host_sysctl_set(d->host, name, "2")))
				return rc;
		}
	}
	return 0;
}

static void print_stats(decap_t *d)
{
	static const char *const names[] = {
#define TG_STAT_NAME(id, name) name,
	    TG_DECAP_STAT_LIST(TG_STAT_NAME)
#undef TG_STAT_NAME
	};
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v;

	if (ncpu <= 0 || !(v = calloc((size_t)ncpu, sizeof(*v))))
		return;
	for (uint32_t s = 0; s < TG_DECAP_STAT_MAX; s++) {
		uint64_t sum = 0;
		if (bpf_map_lookup_elem(bpf_map__fd(d->skel->maps.tg_decap_stats), &s, v))
			continue;
		for (int c = 0; c < ncpu; c++)
			sum += v[c];
		tg_info("decap", "%s: %llu packets", names[s], (unsigned long long)sum);
	}
	free(v);
}

int tg_cmd_decap(int argc, char **argv)
{
	const char *ifname = NULL;
	struct sockaddr_storage vips[TG_DECAP_MAX_VIPS];
	size_t nvips = 0;
	bool in_vips = false, any_v4 = false;
	decap_t d = {.link_fd = -1};
	sigset_t sigs;
	int rc, status = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(a, "--iface") == 0) {
			if (++i >= argc) {
				fprintf(stderr,
					"tidegate decap: --iface needs an interface name\n");
				return 2;
			}
			ifname = argv[i];
			in_vips = false;
			continue;
		}
		if (strcmp(a, "--vip") == 0) {
			in_vips = true;
			if (i + 1 >= argc || argv[i + 1][0] == '-') {
				fprintf(stderr, "tidegate decap: --vip needs an address\n");
				return 2;
			}
			continue;
		}
		if (!in_vips || a[0] == '-') {
			fprintf(stderr, "tidegate decap: unexpected argument '%s'\n\n", a);
			usage(stderr);
			return 2;
		}
		if (nvips == TG_DECAP_MAX_VIPS) {
			fprintf(stderr, "tidegate decap: more than %u VIPs\n", TG_DECAP_MAX_VIPS);
			return 2;
		}
		socklen_t len;
		if (tg_addr_parse_ip(a, &vips[nvips], &len)) {
			fprintf(stderr, "tidegate decap: '%s' is not an IPv4 or IPv6 address\n", a);
			return 2;
		}
		any_v4 |= vips[nvips].ss_family == AF_INET;
		nvips++;
	}
	if (!ifname || !nvips) {
		fprintf(stderr, "tidegate decap: %s\n\n",
			!ifname ? "--iface is required" : "at least one --vip is required");
		usage(stderr);
		return 2;
	}
	d.ifindex = (int)if_nametoindex(ifname);
	if (!d.ifindex) {
		fprintf(stderr, "tidegate decap: interface '%s': %s\n", ifname, strerror(errno));
		return 2;
	}

	/* Signals wait until setup is complete, then trigger the undo. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);

	d.host = tg_dp_host_new();
	d.skel = tg_decap__open_and_load();
	if (!d.host || !d.skel) {
		tg_error("decap", "loading the decap BPF program: %s", strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < nvips; i++) {
		struct tg_decap_key k;
		uint8_t one = 1;
		memset(&k, 0, sizeof(k));
		if (vips[i].ss_family == AF_INET) {
			memcpy(k.addr, &((struct sockaddr_in *)&vips[i])->sin_addr, 4);
			k.family = TG_FAMILY_V4;
		} else {
			memcpy(k.addr, &((struct sockaddr_in6 *)&vips[i])->sin6_addr, 16);
			k.family = TG_FAMILY_V6;
		}
		if (bpf_map_update_elem(bpf_map__fd(d.skel->maps.tg_decap_vips), &k, &one, 0)) {
			tg_error("decap", "filling the VIP map: %s", strerror(errno));
			goto out;
		}
	}
	if (host_prepare(&d, ifname, any_v4))
		goto out;
	for (size_t i = 0; i < nvips; i++)
		if (tg_dp_host_addr_add(d.host, "lo", (struct sockaddr *)&vips[i]))
			goto out;
	if (attach(&d, ifname))
		goto out;

	tg_info("decap", "ready: %zu VIP(s) on %s; SIGTERM or SIGINT to undo and exit", nvips,
		ifname);
	int sig = 0;
	rc = sigwait(&sigs, &sig);
	tg_info("decap", "%s: restoring", rc == 0 ? strsignal(sig) : "sigwait failed");
	print_stats(&d);
	status = 0;
out:
	detach(&d);
	tg_dp_host_free(d.host);
	tg_decap__destroy(d.skel);
	tg_info("decap", "exit");
	return status;
}

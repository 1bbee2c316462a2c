/*
 * dp_host.c - sysctl and address changes with an undo journal.
 * Addresses go through rtnetlink directly (no dependency on iproute2 at run
 * time); sysctls through /proc/sys, which follows the caller's network
 * namespace, so `ip netns exec NS tidegate ...` changes only NS.
 */
#include "l4/dp_host.h"

#include "core/addr.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SYSCTL_NAME_MAX	 128
#define SYSCTL_VALUE_MAX 64

typedef enum { J_SYSCTL, J_ADDR } jkind_t;

/* One undoable change. */
typedef struct jentry {
	jkind_t kind;		      /* what was changed */
	char name[SYSCTL_NAME_MAX];   /* sysctl name, or interface name */
	char old[SYSCTL_VALUE_MAX];   /* sysctl value before the change */
	struct sockaddr_storage addr; /* address added (J_ADDR) */
} jentry_t;

struct tg_dp_host {
	jentry_t *e; /* journal, oldest first */
	size_t n;    /* entries used */
	size_t cap;  /* entries allocated */
};

tg_dp_host_t *tg_dp_host_new(void)
{
	return calloc(1, sizeof(tg_dp_host_t));
}

static jentry_t *journal_push(tg_dp_host_t *h)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 16;
		jentry_t *e = realloc(h->e, cap * sizeof(*e));
		if (!e)
			return NULL;
		h->e = e;
		h->cap = cap;
	}
	memset(&h->e[h->n], 0, sizeof(h->e[0]));
	return &h->e[h->n++];
}

/* "net.ipv4.conf.all.rp_filter" -> "/proc/sys/net/ipv4/conf/all/rp_filter";
 * a name containing '/' is taken as already separated. */
static int sysctl_path(const char *name, char *path, size_t len)
{
	bool slashed = strchr(name, '/') != NULL;
	int n = snprintf(path, len, "/proc/sys/%s", name);

	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	if (!slashed)
		for (char *p = path + strlen("/proc/sys/"); *p; p++)
			if (*p == '.')
				*p = '/';
	return 0;
}

int tg_dp_host_sysctl_get(const char *name, char *buf, size_t len)
{
	char path[256];
	int fd, rc;
	ssize_t r;

	rc = sysctl_path(name, path, sizeof(path));
	if (rc)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = read(fd, buf, len - 1);
	rc = r < 0 ? -errno : 0;
	close(fd);
	if (rc)
		return rc;
	buf[r] = '\0';
	while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == ' '))
		buf[--r] = '\0';
	return 0;
}

static int sysctl_write(const char *name, const char *value)
{
	char path[256];
	int fd, rc;
	size_t n = strlen(value);

	rc = sysctl_path(name, path, sizeof(path));
	if (rc)
		return rc;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = write(fd, value, n) == (ssize_t)n ? 0 : -errno;
	close(fd);
	return rc;
}

int tg_dp_host_sysctl_set(tg_dp_host_t *h, const char *name, const char *value)
{
	char old[SYSCTL_VALUE_MAX];
	jentry_t *e;
	int rc;

	if (strlen(name) >= SYSCTL_NAME_MAX || strlen(value) >= SYSCTL_VALUE_MAX)
		return -ENAMETOOLONG;
	rc = tg_dp_host_sysctl_get(name, old, sizeof(old));
	if (rc) {
		tg_error("host", "reading sysctl %s: %s", name, strerror(-rc));
		return rc;
	}
	if (strcmp(old, value) == 0) {
		tg_info("host", "sysctl %s already %s", name, value);
		return 0;
	}
	e = journal_push(h);
	if (!e)
		return -ENOMEM;
	rc = sysctl_write(name, value);
	if (rc) {
		h->n--;
		tg_error("host", "setting sysctl %s=%s: %s", name, value, strerror(-rc));
		return rc;
	}
	e->kind = J_SYSCTL;
	snprintf(e->name, sizeof(e->name), "%s", name);
	snprintf(e->old, sizeof(e->old), "%s", old);
	tg_info("host", "sysctl %s=%s (was %s)", name, value, old);
	return 0;
}

/* Sends one RTM_NEWADDR / RTM_DELADDR and returns the kernel's answer. */
static int rtnl_addr(int type, int flags, int ifindex, const struct sockaddr *sa)
{
	struct {
		struct nlmsghdr nh;	       /* netlink header */
		struct ifaddrmsg ifa;	       /* address message */
		char attrs[2 * RTA_SPACE(16)]; /* IFA_LOCAL + IFA_ADDRESS */
	} req;
	const void *a;
	size_t alen;
	int fd, rc;

	memset(&req, 0, sizeof(req));
	if (sa->sa_family == AF_INET) {
		a = &((const struct sockaddr_in *)sa)->sin_addr;
		alen = 4;
		req.ifa.ifa_prefixlen = 32;
	} else if (sa->sa_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		alen = 16;
		req.ifa.ifa_prefixlen = 128;
		req.ifa.ifa_flags = IFA_F_NODAD;
	} else {
		return -EAFNOSUPPORT;
	}
	req.nh.nlmsg_type = (unsigned short)type;
	req.nh.nlmsg_flags = (unsigned short)(NLM_F_REQUEST | NLM_F_ACK | flags);
	req.nh.nlmsg_seq = 1;
	req.ifa.ifa_family = (unsigned char)sa->sa_family;
	req.ifa.ifa_scope = RT_SCOPE_HOST;
	req.ifa.ifa_index = (unsigned int)ifindex;
	size_t off = NLMSG_ALIGN(NLMSG_LENGTH(sizeof(req.ifa)));
	unsigned short kinds[2] = {IFA_LOCAL, IFA_ADDRESS};
	for (int i = 0; i < 2; i++) {
		struct rtattr *rta = (struct rtattr *)((char *)&req + off);
		rta->rta_type = kinds[i];
		rta->rta_len = (unsigned short)RTA_LENGTH(alen);
		memcpy(RTA_DATA(rta), a, alen);
		off += RTA_SPACE(alen);
	}
	req.nh.nlmsg_len = (unsigned int)off;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	if (sendto(fd, &req, off, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	union {
		char buf[4096];
		struct nlmsghdr align; /* alignment for the header cast */
	} resp;
	ssize_t r = recv(fd, resp.buf, sizeof(resp.buf), 0);
	rc = r < 0 ? -errno : -EPROTO;
	if (r >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
		struct nlmsghdr *nh = &resp.align;
		if (nh->nlmsg_type == NLMSG_ERROR)
			rc = ((struct nlmsgerr *)NLMSG_DATA(nh))->error;
	}
	close(fd);
	return rc;
}

int tg_dp_host_addr_add(tg_dp_host_t *h, const char *ifname, const struct sockaddr *addr)
{
	char text[TG_ADDR_TEXT_MAX];
	int ifindex = (int)if_nametoindex(ifname);
	jentry_t *e;
	int rc;

	tg_addr_format_ip(addr, text, sizeof(text));
	if (!ifindex) {
		tg_error("host", "interface %s: %s", ifname, strerror(errno));
		return -ENODEV;
	}
	if (strlen(ifname) >= SYSCTL_NAME_MAX)
		return -ENAMETOOLONG;
	e = journal_push(h);
	if (!e)
		return -ENOMEM;
	h->n--; /* kept only when the address was really added */
	rc = rtnl_addr(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, ifindex, addr);
	if (rc == -EEXIST) {
		tg_info("host", "address %s already on %s", text, ifname);
		return 0;
	}
	if (rc) {
		tg_error("host", "adding %s to %s: %s", text, ifname, strerror(-rc));
		return rc;
	}
	h->n++;
	e->kind = J_ADDR;
	snprintf(e->name, sizeof(e->name), "%s", ifname);
	memcpy(&e->addr, addr,
	       addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
					  : sizeof(struct sockaddr_in6));
	tg_info("host", "added %s/%d to %s", text, addr->sa_family == AF_INET ? 32 : 128, ifname);
	return 0;
}

void tg_dp_host_restore(tg_dp_host_t *h)
{
	if (!h)
		return;
	while (h->n > 0) {
		jentry_t *e = &h->e[--h->n];
		int rc;

		if (e->kind == J_SYSCTL) {
			rc = sysctl_write(e->name, e->old);
			if (rc)
				tg_warn("host", "restoring sysctl %s=%s: %s", e->name, e->old,
					strerror(-rc));
			else
				tg_info("host", "restored sysctl %s=%s", e->name, e->old);
			continue;
		}
		char text[TG_ADDR_TEXT_MAX];
		tg_addr_format_ip((struct sockaddr *)&e->addr, text, sizeof(text));
		int ifindex = (int)if_nametoindex(e->name);
		rc = ifindex ? rtnl_addr(RTM_DELADDR, 0, ifindex, (struct sockaddr *)&e->addr)
			     : -ENODEV;
		if (rc)
			tg_warn("host", "removing %s from %s: %s", text, e->name, strerror(-rc));
		else
			tg_info("host", "removed %s from %s", text, e->name);
	}
}

void tg_dp_host_free(tg_dp_host_t *h)
{
	if (!h)
		return;
	tg_dp_host_restore(h);
	free(h->e);
	free(h);
}

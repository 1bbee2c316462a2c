/*
 * plane.c - control plane state: ids, members, drains, Maglev rebuilds.
 *
 * Every change (apply, health transition, drain deadline) ends in sync(),
 * which recomputes each VIP's active set from the rules in plane.h and
 * pushes the difference to the datapath in the only safe order:
 *   1. reals that must be valid are made valid (a table may name them next)
 *   2. changed tables are rebuilt and swapped in whole
 *   3. reals nothing needs any more are invalidated (no table names them now)
 */
#include "l4/plane.h"
#include "l4/maglev.h"
#include "core/clock.h"
#include "core/common.h"
#include "core/log.h"

#include "abi.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

/* A real address and its id. Indexed by real id. */
typedef struct real_slot {
	bool used;	   /* the id is assigned to ip */
	bool valid;	   /* the datapath has it valid (not gone) */
	bool needed;	   /* sync scratch: some member is active or draining */
	tg_l4_ip_t ip;	   /* its address */
	uint32_t refs;	   /* members referencing it (configured or draining) */
	uint64_t freed_at; /* when refs dropped to 0, for recycling the oldest */
} real_slot_t;

/* A real inside one VIP. */
typedef struct member {
	uint32_t real_id;	   /* index into reals */
	tg_l4_ip_t ip;		   /* its address (copy) */
	uint32_t weight;	   /* Maglev weight */
	char zone[TG_L4_ZONE_MAX]; /* its zone */
	bool configured;	   /* listed in the running configuration */
	bool healthy;		   /* last health verdict */
	bool active;		   /* in the installed table */
	bool valid_needed;	   /* active, or draining before its deadline */
	uint64_t drain_until;	   /* draining: when it becomes gone */
} member_t;

/* A VIP slot. Indexed by vip id. */
typedef struct vip_state {
	bool used;		    /* slot assigned */
	const tg_l4_vip_cfg_t *cfg; /* its entry in the running configuration */
	member_t *members;	    /* configured and draining reals */
	size_t n_members;	    /* used */
	size_t cap_members;	    /* allocated */
	bool dirty;		    /* table must be rebuilt */
	size_t n_active;	    /* reals in the installed table */
	uint64_t rebuilds;	    /* tables built */
	uint64_t rebuild_ns_sum;    /* time spent building them */
	uint64_t rebuild_ns_last;   /* the last build */
} vip_state_t;

/* A member whose drain ended: its VIP's flows on the real may have to end. */
typedef struct purge {
	uint32_t vip_id;  /* the VIP */
	uint32_t real_id; /* the real */
} purge_t;

struct tg_l4_plane {
	tg_l4_dp_ops_t ops;	 /* datapath */
	pthread_mutex_t lock;	 /* see tg_l4_plane_lock */
	tg_l4_config_t *cfg;	 /* running configuration, owned */
	real_slot_t *reals;	 /* TG_MAX_REALS slots */
	vip_state_t *vips;	 /* TG_MAX_VIPS slots */
	uint32_t *scratch;	 /* Maglev table being built */
	uint32_t scratch_size;	 /* its entries */
	uint64_t reloads_ok;	 /* successful reloads */
	uint64_t reloads_failed; /* rejected reloads */
	uint64_t dp_errors;	 /* datapath calls that failed */
	purge_t *purges;	 /* sync: flows to end if the real stays valid */
	size_t n_purges;	 /* queued */
	size_t cap_purges;	 /* allocated */
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool same_vip(const tg_l4_vip_cfg_t *a, const tg_l4_vip_cfg_t *b)
{
	return tg_l4_ip_eq(&a->ip, &b->ip) && a->port == b->port && a->proto == b->proto;
}

static void vip_label(const tg_l4_vip_cfg_t *v, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	tg_l4_ip_format(&v->ip, a, sizeof(a));
	bool v6 = v->ip.family == AF_INET6;
	snprintf(buf, len, "%s%s%s:%u/%s", v6 ? "[" : "", a, v6 ? "]" : "", v->port,
		 v->proto == TG_L4_TCP ? "tcp" : "udp");
}

int tg_l4_plane_create(const tg_l4_dp_ops_t *ops, tg_l4_plane_t **out)
{
	*out = NULL;
	tg_l4_plane_t *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->ops = *ops;
	p->reals = calloc(TG_MAX_REALS, sizeof(*p->reals));
	p->vips = calloc(TG_MAX_VIPS, sizeof(*p->vips));
	if (!p->reals || !p->vips) {
		free(p->reals);
		free(p->vips);
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	*out = p;
	return 0;
}

void tg_l4_plane_free(tg_l4_plane_t *p)
{
	if (!p)
		return;
	for (uint32_t i = 0; i < TG_MAX_VIPS; i++)
		free(p->vips[i].members);
	free(p->vips);
	free(p->reals);
	free(p->scratch);
	free(p->purges);
	tg_l4_config_free(p->cfg);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

void tg_l4_plane_lock(tg_l4_plane_t *p)
{
	pthread_mutex_lock(&p->lock);
}

void tg_l4_plane_unlock(tg_l4_plane_t *p)
{
	pthread_mutex_unlock(&p->lock);
}

const tg_l4_config_t *tg_l4_plane_config(const tg_l4_plane_t *p)
{
	return p->cfg;
}

static int find_real(const tg_l4_plane_t *p, const tg_l4_ip_t *ip)
{
	for (uint32_t i = 0; i < TG_MAX_REALS; i++)
		if (p->reals[i].used && tg_l4_ip_eq(&p->reals[i].ip, ip))
			return (int)i;
	return -1;
}

int tg_l4_plane_real_id(const tg_l4_plane_t *p, const tg_l4_ip_t *real)
{
	return find_real(p, real);
}

static bool in_config(const tg_l4_config_t *cfg, const tg_l4_ip_t *ip)
{
	for (size_t v = 0; v < cfg->n_vips; v++)
		for (size_t r = 0; r < cfg->vips[v].n_reals; r++)
			if (tg_l4_ip_eq(&cfg->vips[v].reals[r].ip, ip))
				return true;
	return false;
}

/* An id for ip: its existing one, a never used one, or the longest-unused
 * id no member references and `keep` does not list. -1 when none. */
static int alloc_real(tg_l4_plane_t *p, const tg_l4_ip_t *ip, const tg_l4_config_t *keep)
{
	int id = find_real(p, ip);
	if (id >= 0)
		return id;
	int best = -1;
	for (uint32_t i = 0; i < TG_MAX_REALS; i++) {
		real_slot_t *r = &p->reals[i];
		if (!r->used) {
			best = (int)i;
			break;
		}
		if (r->refs == 0 && !r->valid && !in_config(keep, &r->ip) &&
		    (best < 0 || r->freed_at < p->reals[best].freed_at))
			best = (int)i;
	}
	if (best < 0)
		return -1;
	real_slot_t *r = &p->reals[best];
	memset(r, 0, sizeof(*r));
	r->used = true;
	r->ip = *ip;
	return best;
}

static member_t *find_member(vip_state_t *v, const tg_l4_ip_t *ip)
{
	for (size_t i = 0; i < v->n_members; i++)
		if (tg_l4_ip_eq(&v->members[i].ip, ip))
			return &v->members[i];
	return NULL;
}

static void member_unref(tg_l4_plane_t *p, const member_t *m, uint64_t now)
{
	real_slot_t *r = &p->reals[m->real_id];
	if (r->refs > 0 && --r->refs == 0)
		r->freed_at = now;
}

static void dp_fail(tg_l4_plane_t *p, const char *what, int rc)
{
	p->dp_errors++;
	tg_error("balancer", "datapath %s failed: %s", what, strerror(-rc));
}

/* The active set a VIP should have now (plane.h, rules 1-3), written into
 * each member's `want` via the out array. */
static void desired(const tg_l4_plane_t *p, const vip_state_t *v, bool *want)
{
	const char *zone = p->cfg ? p->cfg->zone : "";
	bool zonal = !v->cfg->cross_zone && zone[0] != '\0';
	size_t healthy = 0, healthy_here = 0;
	for (size_t i = 0; i < v->n_members; i++) {
		const member_t *m = &v->members[i];
		if (!m->configured || !m->healthy)
			continue;
		healthy++;
		if (zonal && strcmp(m->zone, zone) == 0)
			healthy_here++;
	}
	for (size_t i = 0; i < v->n_members; i++) {
		const member_t *m = &v->members[i];
		if (!m->configured)
			want[i] = false;
		else if (healthy == 0)
			want[i] = true; /* fail open */
		else if (healthy_here > 0)
			want[i] = m->healthy && strcmp(m->zone, zone) == 0;
		else
			want[i] = m->healthy;
	}
}

static int rebuild(tg_l4_plane_t *p, uint32_t vip_id)
{
	vip_state_t *v = &p->vips[vip_id];
	uint32_t m = v->cfg->ring_size;
	if (p->scratch_size < m) {
		uint32_t *s = realloc(p->scratch, (size_t)m * sizeof(*s));
		if (!s)
			return -ENOMEM;
		p->scratch = s;
		p->scratch_size = m;
	}
	tg_maglev_real_t *in = calloc(v->n_members ? v->n_members : 1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < v->n_members; i++) {
		const member_t *mb = &v->members[i];
		if (!mb->active)
			continue;
		memcpy(in[n].key, &mb->ip.addr, 16);
		in[n].weight = mb->weight;
		in[n].value = mb->real_id;
		n++;
	}
	uint64_t t0 = tg_clock_ns();
	int rc = tg_maglev_build(in, n, m, p->scratch);
	uint64_t dt = tg_clock_ns() - t0;
	free(in);
	if (rc != 0)
		return rc;
	v->rebuilds++;
	v->rebuild_ns_sum += dt;
	v->rebuild_ns_last = dt;
	v->n_active = n;
	rc = p->ops.maglev_swap(p->ops.ctx, vip_id, p->scratch, m);
	if (rc != 0)
		dp_fail(p, "maglev table swap", rc);
	return rc;
}

/* Member (vip_id, real_id) stopped needing its real valid. If the real
 * stays valid for another VIP, the flows of this VIP on it would live on
 * until they idle out; sync() ends them (purge_flows). */
static void queue_purge(tg_l4_plane_t *p, uint32_t vip_id, uint32_t real_id)
{
	if (!p->ops.flows_purge)
		return;
	if (p->n_purges == p->cap_purges) {
		size_t cap = p->cap_purges ? p->cap_purges * 2 : 16;
		void *np = realloc(p->purges, cap * sizeof(*p->purges));
		if (!np) {
			tg_error("balancer", "out of memory: the flows of a drained real stay "
					     "until they idle out");
			return;
		}
		p->purges = np;
		p->cap_purges = cap;
	}
	p->purges[p->n_purges].vip_id = vip_id;
	p->purges[p->n_purges].real_id = real_id;
	p->n_purges++;
}

/* Last step of sync: for each queued member whose real is still valid (it
 * serves another VIP) and that did not become active again, ends the VIP's
 * flows on it. A real that went gone needs nothing: its flows are re-picked. */
static void purge_flows(tg_l4_plane_t *p)
{
	for (size_t i = 0; i < p->n_purges; i++) {
		uint32_t vid = p->purges[i].vip_id, rid = p->purges[i].real_id;
		vip_state_t *v = &p->vips[vid];
		if (!v->used || !p->reals[rid].valid)
			continue;
		bool needed = false;
		for (size_t k = 0; k < v->n_members; k++)
			if (v->members[k].real_id == rid && v->members[k].valid_needed)
				needed = true;
		if (needed)
			continue;
		int n = p->ops.flows_purge(p->ops.ctx, vid, rid);
		char l[80], a[INET6_ADDRSTRLEN];
		vip_label(v->cfg, l, sizeof(l));
		tg_l4_ip_format(&p->reals[rid].ip, a, sizeof(a));
		if (n < 0)
			dp_fail(p, "flow purge", n);
		else
			tg_info("balancer",
				"%s: real %s drained here but serves other VIPs: %d flow entr%s of "
				"this VIP ended",
				l, a, n, n == 1 ? "y" : "ies");
	}
	p->n_purges = 0;
}

/* Brings the datapath in line with the members (see the file comment). */
static void sync(tg_l4_plane_t *p, uint64_t now)
{
	bool *want = NULL;
	size_t want_cap = 0;
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		vip_state_t *v = &p->vips[id];
		if (!v->used)
			continue;
		if (want_cap < v->n_members) {
			bool *w = realloc(want, v->n_members * sizeof(*w));
			if (!w) {
				tg_error("balancer", "out of memory recomputing VIP tables");
				free(want);
				return;
			}
			want = w;
			want_cap = v->n_members;
		}
		desired(p, v, want);
		for (size_t i = 0; i < v->n_members; i++) {
			member_t *m = &v->members[i];
			if (want[i] && !m->active) {
				m->active = true;
				m->valid_needed = true;
				m->drain_until = 0;
				v->dirty = true;
			} else if (!want[i] && m->active) {
				m->active = false;
				m->drain_until = now + v->cfg->dereg_delay_ms;
				m->valid_needed = v->cfg->dereg_delay_ms > 0;
				if (!m->valid_needed)
					queue_purge(p, id, m->real_id);
				v->dirty = true;
			}
		}
	}
	free(want);

	for (uint32_t r = 0; r < TG_MAX_REALS; r++)
		p->reals[r].needed = false;
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		vip_state_t *v = &p->vips[id];
		for (size_t i = 0; v->used && i < v->n_members; i++)
			if (v->members[i].valid_needed)
				p->reals[v->members[i].real_id].needed = true;
	}
	for (uint32_t r = 0; r < TG_MAX_REALS; r++) {
		real_slot_t *rs = &p->reals[r];
		if (rs->used && rs->needed && !rs->valid) {
			int rc = p->ops.real_set(p->ops.ctx, r, &rs->ip);
			if (rc == 0)
				rs->valid = true;
			else
				dp_fail(p, "real set", rc);
		}
	}
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		vip_state_t *v = &p->vips[id];
		if (v->used && v->dirty) {
			int rc = rebuild(p, id);
			if (rc == 0)
				v->dirty = false;
			else if (rc == -ENOMEM)
				tg_error("balancer", "out of memory building a Maglev table");
		}
	}
	for (uint32_t r = 0; r < TG_MAX_REALS; r++) {
		real_slot_t *rs = &p->reals[r];
		if (rs->used && !rs->needed && rs->valid) {
			int rc = p->ops.real_invalidate(p->ops.ctx, r);
			if (rc == 0)
				rs->valid = false;
			else
				dp_fail(p, "real invalidate", rc);
		}
	}
	purge_flows(p);
}

uint64_t tg_l4_plane_tick(tg_l4_plane_t *p, uint64_t now)
{
	bool changed = false;
	uint64_t next = UINT64_MAX;
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		vip_state_t *v = &p->vips[id];
		if (!v->used)
			continue;
		size_t k = 0;
		for (size_t i = 0; i < v->n_members; i++) {
			member_t *m = &v->members[i];
			if (!m->active && m->valid_needed && m->drain_until <= now) {
				m->valid_needed = false;
				queue_purge(p, id, m->real_id);
				changed = true;
			}
			if (!m->configured && !m->active && !m->valid_needed) {
				member_unref(p, m, now); /* drained and removed: forget */
				changed = true;
				continue;
			}
			if (!m->active && m->valid_needed && m->drain_until < next)
				next = m->drain_until;
			v->members[k++] = *m;
		}
		v->n_members = k;
	}
	if (changed)
		sync(p, now);
	return next;
}

static void drop_vip(tg_l4_plane_t *p, uint32_t id, uint64_t now)
{
	vip_state_t *v = &p->vips[id];
	int rc = p->ops.vip_del(p->ops.ctx, id);
	if (rc != 0 && rc != -ENOENT)
		dp_fail(p, "VIP delete", rc);
	for (size_t i = 0; i < v->n_members; i++)
		member_unref(p, &v->members[i], now);
	free(v->members);
	memset(v, 0, sizeof(*v));
}

static member_t *add_member(vip_state_t *v)
{
	if (v->n_members == v->cap_members) {
		size_t cap = v->cap_members ? v->cap_members * 2 : 8;
		member_t *m = realloc(v->members, cap * sizeof(*m));
		if (!m)
			return NULL;
		v->members = m;
		v->cap_members = cap;
	}
	member_t *m = &v->members[v->n_members++];
	memset(m, 0, sizeof(*m));
	return m;
}

int tg_l4_plane_apply(tg_l4_plane_t *p, tg_l4_config_t *cfg, uint64_t now, char *err, size_t errlen)
{
	bool first = p->cfg == NULL;
	char a[INET6_ADDRSTRLEN];

	/* 1. Check that ids suffice before changing anything. */
	uint32_t vip_of[TG_L4_MAX_VIPS];
	size_t free_vips = 0, new_vips = 0;
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		vip_state_t *v = &p->vips[id];
		bool kept = false;
		for (size_t i = 0; v->used && i < cfg->n_vips; i++)
			kept |= same_vip(v->cfg, &cfg->vips[i]);
		free_vips += !v->used || !kept;
	}
	for (size_t i = 0; i < cfg->n_vips; i++) {
		vip_of[i] = UINT32_MAX;
		for (uint32_t id = 0; id < TG_MAX_VIPS; id++)
			if (p->vips[id].used && same_vip(p->vips[id].cfg, &cfg->vips[i]))
				vip_of[i] = id;
		new_vips += vip_of[i] == UINT32_MAX;
	}
	if (new_vips > free_vips) {
		seterr(err, errlen, "no free VIP slot (the datapath holds %u)", TG_MAX_VIPS);
		tg_l4_config_free(cfg);
		return -ENOSPC;
	}
	size_t need = 0, spare = 0;
	for (size_t v = 0; v < cfg->n_vips; v++) {
		for (size_t r = 0; r < cfg->vips[v].n_reals; r++) {
			const tg_l4_ip_t *ip = &cfg->vips[v].reals[r].ip;
			bool seen = false;
			for (size_t w = 0; w <= v && !seen; w++)
				for (size_t s = 0; s < (w == v ? r : cfg->vips[w].n_reals) && !seen;
				     s++)
					seen = tg_l4_ip_eq(&cfg->vips[w].reals[s].ip, ip);
			need += !seen && find_real(p, ip) < 0;
		}
	}
	for (uint32_t i = 0; i < TG_MAX_REALS; i++) {
		const real_slot_t *r = &p->reals[i];
		spare += !r->used || (r->refs == 0 && !r->valid && !in_config(cfg, &r->ip));
	}
	if (need > spare) {
		seterr(
		    err, errlen,
		    "%zu new reals but only %zu free real ids (the datapath holds %u; reals still "
		    "draining keep theirs)",
		    need, spare, TG_MAX_REALS);
		tg_l4_config_free(cfg);
		return -ENOSPC;
	}

	/* 2. VIPs that left the configuration. */
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		vip_state_t *v = &p->vips[id];
		bool kept = false;
		for (size_t i = 0; v->used && i < cfg->n_vips; i++)
			kept |= vip_of[i] == id;
		if (v->used && !kept)
			drop_vip(p, id, now);
	}

	/* 3. VIPs that stay or arrive, and their members. */
	int rc = 0;
	for (size_t i = 0; i < cfg->n_vips; i++) {
		const tg_l4_vip_cfg_t *vc = &cfg->vips[i];
		uint32_t id = vip_of[i];
		if (id == UINT32_MAX) {
			for (id = 0; id < TG_MAX_VIPS && p->vips[id].used; id++)
				;
			p->vips[id].used = true;
		}
		vip_state_t *v = &p->vips[id];
		bool ring_changed = !v->cfg || v->cfg->ring_size != vc->ring_size;
		v->cfg = vc;
		int r = p->ops.vip_set(p->ops.ctx, id, vc);
		if (r != 0) {
			char l[96];
			vip_label(vc, l, sizeof(l));
			dp_fail(p, "VIP set", r);
			seterr(err, errlen, "vips[%zu] (%s): the datapath refused it: %s", i, l,
			       strerror(-r));
			rc = r;
		}
		if (ring_changed)
			v->dirty = true;
		for (size_t m = 0; m < v->n_members; m++)
			v->members[m].configured = false;
		for (size_t k = 0; k < vc->n_reals; k++) {
			const tg_l4_real_cfg_t *rc_ = &vc->reals[k];
			member_t *m = find_member(v, &rc_->ip);
			if (!m) {
				int rid = alloc_real(p, &rc_->ip, cfg);
				if (rid < 0 || !(m = add_member(v))) {
					seterr(err, errlen,
					       "vips[%zu].reals[%zu]: no real id or memory for %s",
					       i, k, tg_l4_ip_format(&rc_->ip, a, sizeof(a)));
					rc = -ENOSPC;
					continue;
				}
				m->real_id = (uint32_t)rid;
				m->ip = rc_->ip;
				m->healthy = first;
				p->reals[rid].refs++;
			}
			if (m->weight != rc_->weight || strcmp(m->zone, rc_->zone) != 0)
				v->dirty = true;
			m->weight = rc_->weight;
			memcpy(m->zone, rc_->zone, sizeof(m->zone));
			m->configured = true;
		}
	}
	tg_l4_config_t *old = p->cfg;
	p->cfg = cfg;
	sync(p, now);
	tg_l4_plane_tick(p, now); /* forget removed reals with no drain */
	tg_l4_config_free(old);
	return rc;
}

int tg_l4_plane_health_targets(const tg_l4_plane_t *p, tg_health_target_t **out)
{
	size_t n = 0;
	*out = NULL;
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++)
		for (size_t i = 0; p->vips[id].used && i < p->vips[id].n_members; i++)
			n += p->vips[id].members[i].configured;
	tg_health_target_t *t = calloc(n ? n : 1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	size_t k = 0;
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		const vip_state_t *v = &p->vips[id];
		for (size_t i = 0; v->used && i < v->n_members; i++) {
			const member_t *m = &v->members[i];
			if (!m->configured)
				continue;
			t[k].key = (uint64_t)id << 32 | m->real_id;
			t[k].ip = m->ip;
			t[k].cfg = v->cfg->health;
			t[k].initially_healthy = m->healthy;
			k++;
		}
	}
	*out = t;
	return (int)k;
}

void tg_l4_plane_set_health(tg_l4_plane_t *p, uint64_t key, bool healthy, uint64_t now)
{
	uint32_t id = (uint32_t)(key >> 32), rid = (uint32_t)key;
	if (id >= TG_MAX_VIPS || !p->vips[id].used)
		return;
	vip_state_t *v = &p->vips[id];
	for (size_t i = 0; i < v->n_members; i++) {
		member_t *m = &v->members[i];
		if (m->real_id != rid || !m->configured || m->healthy == healthy)
			continue;
		m->healthy = healthy;
		char a[INET6_ADDRSTRLEN], l[96];
		vip_label(v->cfg, l, sizeof(l));
		tg_info("balancer", "%s: real %s is now %s", l,
			tg_l4_ip_format(&m->ip, a, sizeof(a)), healthy ? "healthy" : "unhealthy");
		sync(p, now);
		return;
	}
}

int tg_l4_plane_member_state(const tg_l4_plane_t *p, const tg_l4_ip_t *vip, uint16_t port,
			     tg_l4_proto_t proto, const tg_l4_ip_t *real)
{
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		const vip_state_t *v = &p->vips[id];
		if (!v->used || !tg_l4_ip_eq(&v->cfg->ip, vip) || v->cfg->port != port ||
		    v->cfg->proto != proto)
			continue;
		for (size_t i = 0; i < v->n_members; i++) {
			const member_t *m = &v->members[i];
			if (!tg_l4_ip_eq(&m->ip, real))
				continue;
			if (m->active)
				return TG_L4_MEMBER_ACTIVE;
			return m->valid_needed ? TG_L4_MEMBER_DRAINING : TG_L4_MEMBER_GONE;
		}
	}
	return -1;
}

bool tg_l4_plane_has_usable_vip(const tg_l4_plane_t *p)
{
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++)
		if (p->vips[id].used && p->vips[id].n_active > 0 && !p->vips[id].dirty)
			return true;
	return false;
}

size_t tg_l4_plane_vip_addrs(const tg_l4_plane_t *p, tg_l4_vip_addr_t *out, size_t max)
{
	size_t n = 0;
	if (!p->cfg)
		return 0;
	for (size_t i = 0; i < p->cfg->n_vips; i++) {
		const tg_l4_vip_cfg_t *vc = &p->cfg->vips[i];
		bool usable = false;
		for (uint32_t id = 0; id < TG_MAX_VIPS; id++)
			if (p->vips[id].used && p->vips[id].cfg == vc)
				usable = p->vips[id].n_active > 0;
		size_t k = 0;
		while (k < n && !tg_l4_ip_eq(&out[k].ip, &vc->ip))
			k++;
		if (k == n) {
			if (n == max)
				continue;
			out[n].ip = vc->ip;
			out[n].usable = false;
			n++;
		}
		out[k].usable |= usable;
	}
	return n;
}

void tg_l4_plane_note_reload(tg_l4_plane_t *p, bool ok)
{
	if (ok)
		p->reloads_ok++;
	else
		p->reloads_failed++;
}

/* One labelled sample per (vip, member); `what` picks the value. */
enum member_metric { MM_PACKETS, MM_BYTES, MM_HEALTHY, MM_STATE, MM_WEIGHT };

static void member_samples(tg_l4_plane_t *p, tg_sbuf_t *out, const char *name,
			   enum member_metric what)
{
	static const char *const states[] = {"active", "draining", "gone"};
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		const vip_state_t *v = &p->vips[id];
		if (!v->used)
			continue;
		char l[96];
		vip_label(v->cfg, l, sizeof(l));
		for (size_t i = 0; i < v->n_members; i++) {
			const member_t *m = &v->members[i];
			char a[INET6_ADDRSTRLEN];
			tg_l4_ip_format(&m->ip, a, sizeof(a));
			if (what == MM_STATE) {
				int st = m->active ? 0 : m->valid_needed ? 1 : 2;
				for (int s = 0; s < 3; s++)
					tg_sbuf_printf(
					    out, "%s{vip=\"%s\",real=\"%s\",state=\"%s\"} %d\n",
					    name, l, a, states[s], s == st);
				continue;
			}
			uint64_t val = 0;
			if (what == MM_PACKETS || what == MM_BYTES) {
				tg_l4_counter_t c = {0};
				if (p->ops.pair_stats)
					p->ops.pair_stats(p->ops.ctx, id, m->real_id, &c);
				else if (p->ops.real_stats)
					p->ops.real_stats(p->ops.ctx, m->real_id, &c);
				val = what == MM_PACKETS ? c.packets : c.bytes;
			} else if (what == MM_HEALTHY) {
				val = m->configured && m->healthy;
			} else {
				val = m->configured ? m->weight : 0;
			}
			tg_sbuf_printf(out, "%s{vip=\"%s\",real=\"%s\"} %llu\n", name, l, a,
				       (unsigned long long)val);
		}
	}
}

static void family(tg_sbuf_t *out, const char *name, const char *type, const char *help)
{
	tg_sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void tg_l4_plane_metrics(tg_l4_plane_t *p, tg_sbuf_t *out)
{
	family(out, "tidegate_l4_packets_total", "counter",
	       p->ops.pair_stats ? "Packets a VIP forwarded to one of its reals."
				 : "Packets forwarded to a real (per real address: a real shared "
				   "by several VIPs shows its total under each).");
	member_samples(p, out, "tidegate_l4_packets_total", MM_PACKETS);
	family(out, "tidegate_l4_bytes_total", "counter",
	       "Bytes (frames as received, before encapsulation) a VIP forwarded to a real.");
	member_samples(p, out, "tidegate_l4_bytes_total", MM_BYTES);
	family(out, "tidegate_l4_real_healthy", "gauge",
	       "1 when the real passes its health check.");
	member_samples(p, out, "tidegate_l4_real_healthy", MM_HEALTHY);
	family(out, "tidegate_l4_real_state", "gauge",
	       "Lifecycle of a real in a VIP: active (takes new flows), draining (keeps its "
	       "flows until deregistration-delay ends), gone.");
	member_samples(p, out, "tidegate_l4_real_state", MM_STATE);
	family(out, "tidegate_l4_real_weight", "gauge", "Configured Maglev weight of a real.");
	member_samples(p, out, "tidegate_l4_real_weight", MM_WEIGHT);

	family(out, "tidegate_l4_vip_packets_total", "counter", "Packets forwarded for a VIP.");
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		if (!p->vips[id].used)
			continue;
		char l[96];
		tg_l4_counter_t c = {0};
		vip_label(p->vips[id].cfg, l, sizeof(l));
		if (p->ops.vip_stats)
			p->ops.vip_stats(p->ops.ctx, id, &c);
		tg_sbuf_printf(out, "tidegate_l4_vip_packets_total{vip=\"%s\"} %llu\n", l,
			       (unsigned long long)c.packets);
	}
	family(out, "tidegate_l4_maglev_rebuilds_total", "counter",
	       "Maglev tables built and swapped in.");
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		if (!p->vips[id].used)
			continue;
		char l[96];
		vip_label(p->vips[id].cfg, l, sizeof(l));
		tg_sbuf_printf(out, "tidegate_l4_maglev_rebuilds_total{vip=\"%s\"} %llu\n", l,
			       (unsigned long long)p->vips[id].rebuilds);
	}
	family(out, "tidegate_l4_maglev_rebuild_duration_seconds", "summary",
	       "Time spent populating Maglev tables.");
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		const vip_state_t *v = &p->vips[id];
		if (!v->used)
			continue;
		char l[96];
		vip_label(v->cfg, l, sizeof(l));
		tg_sbuf_printf(
		    out,
		    "tidegate_l4_maglev_rebuild_duration_seconds_sum{vip=\"%s\"} %.6f\n"
		    "tidegate_l4_maglev_rebuild_duration_seconds_count{vip=\"%s\"} %llu\n",
		    l, (double)v->rebuild_ns_sum / 1e9, l, (unsigned long long)v->rebuilds);
	}
	family(out, "tidegate_l4_maglev_last_rebuild_duration_seconds", "gauge",
	       "Duration of the latest Maglev table population.");
	for (uint32_t id = 0; id < TG_MAX_VIPS; id++) {
		const vip_state_t *v = &p->vips[id];
		if (!v->used)
			continue;
		char l[96];
		vip_label(v->cfg, l, sizeof(l));
		tg_sbuf_printf(
		    out, "tidegate_l4_maglev_last_rebuild_duration_seconds{vip=\"%s\"} %.6f\n", l,
		    (double)v->rebuild_ns_last / 1e9);
	}

	tg_l4_dp_totals_t t;
	memset(&t, 0, sizeof(t));
	if (p->ops.totals)
		p->ops.totals(p->ops.ctx, &t);
	family(out, "tidegate_l4_flow_table_lookups_total", "counter",
	       "Flow-table lookups by result (miss: new flow picked through Maglev).");
	tg_sbuf_printf(out,
		       "tidegate_l4_flow_table_lookups_total{result=\"hit\"} %llu\n"
		       "tidegate_l4_flow_table_lookups_total{result=\"miss\"} %llu\n",
		       (unsigned long long)t.flow_hit, (unsigned long long)t.flow_miss);
	family(out, "tidegate_l4_flow_repicks_total", "counter",
	       "Flows re-picked through Maglev: entry idle past the timeout, or its real gone.");
	tg_sbuf_printf(out,
		       "tidegate_l4_flow_repicks_total{reason=\"expired\"} %llu\n"
		       "tidegate_l4_flow_repicks_total{reason=\"real_gone\"} %llu\n",
		       (unsigned long long)t.flow_expired, (unsigned long long)t.flow_repick_gone);
	family(out, "tidegate_l4_flows_admitted_total", "counter",
	       "Flows entered in the flow table. A flow is entered on its second packet; until "
	       "then its first packet's pick waits in the per-CPU flow cache.");
	tg_sbuf_printf(out, "tidegate_l4_flows_admitted_total %llu\n",
		       (unsigned long long)t.flow_admitted);
	family(out, "tidegate_l4_new_flow_guard_total", "counter",
	       "Packets of flows forwarded without a flow-table entry because the rate of "
	       "entries was above max-new-flows-per-second.");
	tg_sbuf_printf(out, "tidegate_l4_new_flow_guard_total %llu\n",
		       (unsigned long long)t.new_flow_guard);
	family(out, "tidegate_l4_drops_total", "counter",
	       "Packets for a VIP the balancer dropped, by reason.");
	for (size_t i = 0; i < t.n_events; i++)
		if (strncmp(t.events[i].name, "drop_", 5) == 0)
			tg_sbuf_printf(out, "tidegate_l4_drops_total{reason=\"%s\"} %llu\n",
				       t.events[i].name + 5, (unsigned long long)t.events[i].value);
	family(out, "tidegate_l4_events_total", "counter",
	       "Every datapath event counter (pass_*: handed to the kernel unchanged; fwd_*: "
	       "forwarded; drop_*: dropped; flow_*: flow table).");
	for (size_t i = 0; i < t.n_events; i++)
		tg_sbuf_printf(out, "tidegate_l4_events_total{event=\"%s\"} %llu\n",
			       t.events[i].name, (unsigned long long)t.events[i].value);
	family(out, "tidegate_l4_config_reloads_total", "counter",
	       "Configuration reloads (SIGHUP) by result.");
	tg_sbuf_printf(out,
		       "tidegate_l4_config_reloads_total{result=\"success\"} %llu\n"
		       "tidegate_l4_config_reloads_total{result=\"failure\"} %llu\n",
		       (unsigned long long)p->reloads_ok, (unsigned long long)p->reloads_failed);
	family(out, "tidegate_l4_datapath_errors_total", "counter",
	       "Datapath map updates that failed (see the log).");
	tg_sbuf_printf(out, "tidegate_l4_datapath_errors_total %llu\n",
		       (unsigned long long)p->dp_errors);
}

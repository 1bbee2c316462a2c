/*
 * plane_dp.h - connects the control plane (l4/plane.h) to the XDP datapath
 * (l4/datapath.h): translates configuration types into datapath calls.
 */
#ifndef TG_L4_PLANE_DP_H
#define TG_L4_PLANE_DP_H

#include "l4/datapath.h"
#include "l4/plane.h"

/* Fills *ops with calls on dp (which must outlive the plane using them). */
void tg_l4_plane_dp_ops(tg_dp_t *dp, tg_l4_dp_ops_t *ops);

/* The datapath options a configuration asks for (interface, XDP mode, encap
 * source bases, new-flow rate). The returned ifname points into cfg. */
void tg_l4_plane_dp_opts(const tg_l4_config_t *cfg, tg_dp_opts_t *opts);

#endif

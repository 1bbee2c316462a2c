/*
 * settings.h - global settings from the ConfigMap named by --configmap, with
 * ingress-nginx's key names and value formats (tg_settings_t in snapshot.h
 * lists the keys and defaults; tg_settings_defaults() is implemented here).
 *
 * Formats: durations are bare seconds ("60") or durations ("60s", "1m30s",
 * "500ms"); sizes "1024", "8k", "1m"; large-client-header-buffers is
 * "<count> <size>" ("4 8k") and becomes count * size bytes; booleans
 * "true"/"false"; load-balance "round_robin" or "ewma".
 *
 * A key absent from the ConfigMap takes its default. A key with a bad value is
 * logged with the key and the reason and keeps its previous value (so a typo
 * in one key never resets the others, nor that one). An unknown key is logged
 * once per process and ignored.
 */
#ifndef TG_INGRESS_SETTINGS_H
#define TG_INGRESS_SETTINGS_H

#include "ingress/object.h"
#include "ingress/snapshot.h"

/*
 * Computes into *out the settings the n ConfigMap data entries ask for
 * (data may be NULL: no ConfigMap, all defaults). prev holds the previous
 * effective settings, used for keys whose value is bad. cm_id ("ns/name")
 * names the ConfigMap in log lines. Returns the number of rejected keys.
 */
int tg_settings_from_configmap(const tg_kv_t *data, uint32_t n, const tg_settings_t *prev,
			       const char *cm_id, tg_settings_t *out);

#endif

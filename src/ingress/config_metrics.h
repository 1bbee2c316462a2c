/*
 * config_metrics.h - the tidegate_config_* metric families, written the same
 * way whichever source (manifest directory or Kubernetes API) built the
 * snapshot, so that dashboards and alerts do not depend on the source.
 */
#ifndef TG_INGRESS_CONFIG_METRICS_H
#define TG_INGRESS_CONFIG_METRICS_H

#include "core/sbuf.h"
#include "ingress/object.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct tg_config_metrics {
	bool last_ok;			 /* the last build rejected no file or object */
	double last_success;		 /* Unix time of the last build without rejections */
	uint64_t reloads_ok;		 /* builds without rejections */
	uint64_t reloads_failed;	 /* builds that rejected something (last good kept) */
	uint64_t errors_total;		 /* files and objects rejected, over all builds */
	uint32_t objects[TG_KIND_COUNT]; /* objects in the store, per kind */
	uint32_t routed;		 /* Ingresses in the current snapshot */
	double build_seconds;		 /* duration of the last snapshot build */
} tg_config_metrics_t;

/* Appends every tidegate_config_* family (with HELP and TYPE) except the
 * per-file errors, which only the directory source has. */
void tg_config_metrics_write(tg_sbuf_t *out, const tg_config_metrics_t *m);

#endif

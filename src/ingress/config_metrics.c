#include "ingress/config_metrics.h"
#include "ingress/snapshot.h"

void tg_config_metrics_write(tg_sbuf_t *out, const tg_config_metrics_t *m)
{
	tg_sbuf_printf(
	    out,
	    "# HELP tidegate_config_last_reload_successful Whether the last snapshot build "
	    "applied without rejecting a file or object.\n"
	    "# TYPE tidegate_config_last_reload_successful gauge\n"
	    "tidegate_config_last_reload_successful %d\n"
	    "# HELP tidegate_config_last_reload_success_timestamp_seconds Time of the "
	    "last snapshot build without rejections.\n"
	    "# TYPE tidegate_config_last_reload_success_timestamp_seconds gauge\n"
	    "tidegate_config_last_reload_success_timestamp_seconds %.3f\n"
	    "# HELP tidegate_config_reloads_total Snapshot builds; failure means a file or "
	    "object was rejected and its last good version kept.\n"
	    "# TYPE tidegate_config_reloads_total counter\n"
	    "tidegate_config_reloads_total{result=\"success\"} %llu\n"
	    "tidegate_config_reloads_total{result=\"failure\"} %llu\n"
	    "# HELP tidegate_config_errors_total Files that failed to parse and objects "
	    "rejected, over all builds.\n"
	    "# TYPE tidegate_config_errors_total counter\n"
	    "tidegate_config_errors_total %llu\n"
	    "# HELP tidegate_config_objects Kubernetes objects in the store.\n"
	    "# TYPE tidegate_config_objects gauge\n",
	    m->last_ok ? 1 : 0, m->last_success, (unsigned long long)m->reloads_ok,
	    (unsigned long long)m->reloads_failed, (unsigned long long)m->errors_total);
	for (int i = 0; i < TG_KIND_COUNT; i++)
		tg_sbuf_printf(out, "tidegate_config_objects{kind=\"%s\"} %u\n",
			       tg_kind_name((tg_kind_t)i), m->objects[i]);
	tg_sbuf_printf(
	    out,
	    "# HELP tidegate_config_ingresses_routed Ingresses in the current snapshot.\n"
	    "# TYPE tidegate_config_ingresses_routed gauge\n"
	    "tidegate_config_ingresses_routed %u\n"
	    "# HELP tidegate_config_last_build_duration_seconds Time to build the last "
	    "snapshot.\n"
	    "# TYPE tidegate_config_last_build_duration_seconds gauge\n"
	    "tidegate_config_last_build_duration_seconds %.6f\n"
	    "# HELP tidegate_config_generation Generation of the current snapshot.\n"
	    "# TYPE tidegate_config_generation gauge\n"
	    "tidegate_config_generation %llu\n",
	    m->routed, m->build_seconds, (unsigned long long)tg_snapshot_generation());
}

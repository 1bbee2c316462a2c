/*
 * source.h - where the ingress configuration comes from: a directory of
 * manifests (watched with inotify) or, later, the Kubernetes API. A source runs
 * on its own thread, builds snapshots off the workers and publishes them with
 * tg_snapshot_publish().
 */
#ifndef TG_INGRESS_SOURCE_H
#define TG_INGRESS_SOURCE_H

#include "core/sbuf.h"

#include <stdbool.h>

typedef struct tg_source_config {
	const char *manifests_dir;	  /* --manifests DIR (NULL when not used) */
	const char *kubeconfig;		  /* --kubeconfig FILE (NULL when not used) */
	bool in_cluster;		  /* --in-cluster */
	const char *ingress_class;	  /* --ingress-class [tidegate] */
	const char *controller_class;	  /* --controller-class [tidegate.io/ingress-controller] */
	bool watch_ingress_without_class; /* --watch-ingress-without-class [false] */
	const char *configmap;		  /* --configmap NS/NAME [tidegate-system/tidegate] */
	const char *publish_status_address;  /* --publish-status-address (NULL: none) */
	const char *default_ssl_certificate; /* --default-ssl-certificate NS/NAME (NULL) */
} tg_source_config_t;

/*
 * Loads the configuration once, publishes the first snapshot, then starts the
 * watching thread. Returns 0, or -errno when the source cannot be read at all
 * (missing directory). A source whose objects are partly invalid still starts:
 * the invalid objects are logged and left out.
 */
int tg_source_start(const tg_source_config_t *cfg);

/* Forces a full re-read of the source (SIGHUP). Asynchronous, thread-safe.
 * The directory source then publishes a new snapshot even when nothing
 * changed, so that tidegate_config_generation shows the re-read is done. */
void tg_source_resync(void);

/* Stops the watching thread and waits for it. */
void tg_source_stop(void);

/* Appends the source's metrics (tidegate_config_*) in Prometheus text format. */
void tg_source_metrics(tg_sbuf_t *out);

#endif

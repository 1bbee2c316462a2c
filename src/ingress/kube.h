/*
 * kube.h - the Kubernetes API configuration source (`tidegate ingress
 * --kubeconfig FILE` / `--in-cluster`): list+watch of every kind tidegate
 * reads, feeding the same object store and translator as the manifest
 * directory, and the status writer for owned Ingresses.
 *
 * One thread drives every request through a libcurl multi handle:
 *
 *   - per kind, a paginated LIST (limit/continue) and then a WATCH from the
 *     list's resourceVersion with allowWatchBookmarks=true; the watch body
 *     is split into events (kube_stream.h); ADDED/MODIFIED apply, DELETED
 *     delete, BOOKMARK only moves the resourceVersion;
 *   - 410 Gone (HTTP status, or an ERROR event carrying a Status with code
 *     410) relists; objects absent from the new list are deleted;
 *   - any other failure (refused, reset, dropped mid-stream, 5xx, 401/403)
 *     retries the watch from the last resourceVersion after a capped
 *     exponential backoff with jitter;
 *   - store changes are debounced (50 ms, at most 1 s) and then one
 *     snapshot is built and published, never while a kind has not finished
 *     its first list or is in the middle of a paginated relist;
 *   - after each publication the owned Ingresses whose
 *     status.loadBalancer.ingress differs from --publish-status-address get
 *     one merge-patch on their status subresource.
 *
 * Credentials and TLS come from kubeconfig.h: bearer token (a token file is
 * re-read every minute), client certificate, the cluster CA only (not the
 * system store), tls-server-name (SNI and verification name, the connection
 * still going to the server's address), insecure-skip-tls-verify. Tokens and
 * keys are never logged.
 *
 * Kinds and collections: networking.k8s.io/v1 ingresses and ingressclasses,
 * v1 services and secrets, discovery.k8s.io/v1 endpointslices (all
 * namespaces), and v1 configmaps restricted to the --configmap object
 * (its namespace, fieldSelector metadata.name).
 */
#ifndef TG_INGRESS_KUBE_H
#define TG_INGRESS_KUBE_H

#include "ingress/kubeconfig.h"
#include "ingress/source.h"
#include "core/sbuf.h"

#include <stdbool.h>

/*
 * Loads the credentials (cfg->kubeconfig, or the in-cluster service account
 * when cfg->in_cluster) and starts the source. Returns 0, or -errno when the
 * credentials or --publish-status-address are unusable (the reason is
 * logged) or the source already runs. Waits up to a few seconds for the
 * first snapshot; when the API server is not reachable by then it still
 * returns 0 and keeps retrying (no snapshot is published until every kind
 * has been listed once, so /healthz stays 503).
 */
int tg_kube_start(const tg_source_config_t *cfg);

/* The same with credentials already loaded; takes ownership of *auth (its
 * fields are moved out and *auth is left empty), on failure too. */
int tg_kube_start_auth(const tg_source_config_t *cfg, tg_kube_auth_t *auth);

/* Relists every kind (SIGHUP). Asynchronous, thread-safe and
 * async-signal-safe. */
void tg_kube_resync(void);

/* Stops the thread, cancels every request and frees the state. The last
 * published snapshot stays published. */
void tg_kube_stop(void);

/* True between a successful start and stop. */
bool tg_kube_running(void);

/*
 * Appends the source's metrics: the tidegate_config_* family the directory
 * source also exports (reloads, objects per kind, generation) and
 * tidegate_kube_* (lists and relists, watch connections and failures,
 * events by resource and type, last event time, sync state, status
 * updates). Thread-safe.
 */
void tg_kube_metrics(tg_sbuf_t *out);

#endif

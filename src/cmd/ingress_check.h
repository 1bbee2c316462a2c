/*
 * ingress_check.h - `tidegate ingress --manifests DIR --check`: loads the
 * directory the way the proxy would, reports every file and object that would
 * be refused, and exits without serving. For CI pipelines and for deploy/.
 */
#ifndef TG_CMD_INGRESS_CHECK_H
#define TG_CMD_INGRESS_CHECK_H

#include "ingress/source.h"

/* Reads every manifest under cfg->manifests_dir (the same file names the
 * directory source reads), parses it, applies the objects to a scratch store
 * and builds a snapshot with cfg's class and ConfigMap settings. Problems go
 * to stderr, one line each with the file (and line) at fault; a summary line
 * goes to stdout. Returns the exit status: 0 when nothing was refused, 1 when
 * a file failed, an object or a ConfigMap key was rejected, or the directory
 * cannot be read. */
int tg_ingress_check(const tg_source_config_t *cfg);

#endif

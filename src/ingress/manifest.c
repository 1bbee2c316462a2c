#include "ingress/manifest.h"
#include "ingress/once.h"
#include "core/common.h"
#include "core/log.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int push(tg_manifest_t *m, tg_object_t *obj, const tg_object_error_t *err)
{
	if (m->n_items == m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 8;
		tg_manifest_item_t *n = realloc(m->items, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		m->items = n;
		m->cap = ncap;
	}
	tg_manifest_item_t *it = &m->items[m->n_items++];
	it->obj = obj;
	if (err)
		it->error = *err;
	else
		memset(&it->error, 0, sizeof(it->error));
	return 0;
}

static void file_fail(tg_manifest_t *m, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void file_fail(tg_manifest_t *m, int line, const char *fmt, ...)
{
	if (m->failed)
		return;
	m->failed = true;
	m->line = line;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->reason, sizeof(m->reason), fmt, ap);
	va_end(ap);
}

/* Parses one object node; unidentifiable errors fail the file. */
static int one(tg_manifest_t *m, struct fy_node *n)
{
	tg_object_t *obj;
	tg_object_error_t err;
	int rc = tg_object_parse(n, &obj, &err);
	if (rc == TG_OBJECT_IGNORED) {
		if (tg_once_first("kind", err.reason, strlen(err.reason)))
			tg_info("ingress", "objects of kind %s are ignored (logged once)",
				err.reason);
		return 0;
	}
	if (rc == TG_OK)
		return push(m, obj, NULL);
	if (!err.identified) {
		file_fail(m, err.line, "%s", err.reason);
		return 0;
	}
	return push(m, NULL, &err);
}

static bool is_list(struct fy_node *root, struct fy_node **items)
{
	if (fy_node_get_type(root) != FYNT_MAPPING)
		return false;
	struct fy_node *k = fy_node_mapping_lookup_by_string(root, "kind", 4);
	size_t len;
	const char *s =
	    k && fy_node_get_type(k) == FYNT_SCALAR ? fy_node_get_scalar(k, &len) : NULL;
	if (!s || len < 4 || memcmp(s + len - 4, "List", 4) != 0)
		return false;
	*items = fy_node_mapping_lookup_by_string(root, "items", 5);
	return true;
}

/* Offset of the first byte that is not part of valid UTF-8 (overlong forms,
 * surrogates and NUL refused), or len when all is valid. YAML text must be
 * Unicode, and libfyaml 0.7.12 can loop forever on some invalid sequences
 * (found by fuzz_manifest), so such input never reaches it. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		if (c >= 0x01 && c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		uint32_t cp;
		if (c >= 0xc2 && c <= 0xdf) {
			n = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 4;
			cp = c & 0x07;
		} else {
			return i;
		}
		if (len - i < n)
			return i;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += n;
	}
	return len;
}

static bool has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

int tg_manifest_parse(const char *name, const char *text, size_t len, tg_manifest_t *m)
{
	memset(m, 0, sizeof(*m));
	size_t bad = utf8_invalid_at((const unsigned char *)text, len);
	if (bad < len) {
		int line = 1;
		for (size_t i = 0; i < bad; i++)
			line += text[i] == '\n';
		file_fail(m, line, "not valid UTF-8 text (byte offset %zu)", bad);
		return 0;
	}
	struct fy_diag_cfg dc;
	fy_diag_cfg_default(&dc);
	dc.fp = NULL;
	dc.output_fn = NULL;
	dc.colorize = false;
	struct fy_diag *diag = fy_diag_create(&dc);
	if (!diag)
		return -ENOMEM;
	/* Errors are collected and reported by us, with file and line. */
	fy_diag_set_collect_errors(diag, true);
	struct fy_parse_cfg cfg = {
	    .flags = FYPCF_QUIET |
		     (name && has_suffix(name, ".json") ? FYPCF_JSON_FORCE : FYPCF_JSON_NONE),
	    .diag = diag,
	};
	struct fy_parser *p = fy_parser_create(&cfg);
	if (!p) {
		fy_diag_destroy(diag);
		return -ENOMEM;
	}
	int rc = 0;
	if (fy_parser_set_string(p, text, len)) {
		file_fail(m, 0, "cannot read input");
		goto out;
	}
	int doc_no = 0;
	struct fy_document *d;
	while (!m->failed && rc == 0 && (d = fy_parse_load_document(p))) {
		doc_no++;
		struct fy_node *root = fy_document_root(d);
		struct fy_node *items;
		if (!root || (fy_node_get_type(root) == FYNT_SCALAR && !fy_node_is_alias(root) &&
			      fy_node_get_scalar_length(root) == 0)) {
			/* empty document ("---" alone): nothing */
		} else if (is_list(root, &items)) {
			if (items && fy_node_get_type(items) == FYNT_SEQUENCE) {
				void *it = NULL;
				struct fy_node *n;
				while (rc == 0 && !m->failed &&
				       (n = fy_node_sequence_iterate(items, &it)))
					rc = one(m, n);
			} else if (items && !(fy_node_get_type(items) == FYNT_SCALAR &&
					      fy_node_get_scalar_length(items) <= 4)) {
				file_fail(m, 0, "document %d: items of a List must be a list",
					  doc_no);
			}
		} else {
			rc = one(m, root);
		}
		fy_parse_document_destroy(p, d);
	}
	if (!m->failed && fy_parser_get_stream_error(p)) {
		void *it = NULL;
		struct fy_diag_error *e = fy_diag_errors_iterate(diag, &it);
		if (e)
			file_fail(m, e->line, "YAML: %s", e->msg);
		else
			file_fail(m, 0, "YAML: syntax error");
	}
out:
	fy_parser_destroy(p);
	fy_diag_destroy(diag);
	if (m->failed || rc) {
		/* All or nothing: none of the file's objects are used. */
		for (size_t i = 0; i < m->n_items; i++) {
			tg_object_free(m->items[i].obj);
			m->items[i].obj = NULL;
		}
		m->n_items = 0;
	}
	return rc;
}

void tg_manifest_free(tg_manifest_t *m)
{
	for (size_t i = 0; i < m->n_items; i++)
		tg_object_free(m->items[i].obj);
	free(m->items);
	memset(m, 0, sizeof(*m));
}

/*
 * chunked.c - pass-through scanner for the chunked transfer coding (RFC 9112
 * section 7.1). It never changes or copies bytes: it only tells the caller how
 * many of them belong to the body, so a proxy forwards the client's exact
 * framing (and cannot be made to re-frame it differently from the origin).
 *
 * Grammar enforced, byte by byte for the framing and in bulk for data:
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-size   = 1*HEXDIG            (value below 2^63)
 *   chunk-ext    = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
 *   ext-val      = token / quoted-string
 *   trailer      = *( field-line CRLF ), no obs-fold
 * Whitespace is accepted only where BWS is: before ';' and around '='; a size
 * line ending in whitespace ("5 \r\n") is an error, as is any bare CR or LF.
 */
#include "http/http.h"

/* Scanner states (tg_http_chunked_t.state). */
enum {
	CH_SIZE_START = 0,   /* first hex digit of a size line */
	CH_SIZE,	     /* more hex digits, BWS, ';' or CR */
	CH_SIZE_BWS,	     /* whitespace after the size: more of it or ';' */
	CH_EXT_NAME_START,   /* after ';': BWS then the extension name */
	CH_EXT_NAME,	     /* name characters, then BWS, '=', ';' or CR */
	CH_EXT_NAME_BWS,     /* whitespace after a name: '=' or ';' */
	CH_EXT_VAL_START,    /* after '=': BWS then a token or a quoted-string */
	CH_EXT_VAL_TOKEN,    /* token value characters */
	CH_EXT_VAL_QUOTED,   /* inside a quoted-string */
	CH_EXT_VAL_QPAIR,    /* after a backslash in a quoted-string */
	CH_EXT_AFTER_QUOTE,  /* after the closing quote: ';', BWS or CR */
	CH_EXT_AFTER_VAL_WS, /* whitespace after a value: more of it or ';' */
	CH_SIZE_LF,	     /* LF ending a size line */
	CH_DATA,	     /* chunk data */
	CH_DATA_CR,	     /* CR after chunk data */
	CH_DATA_LF,	     /* LF after chunk data */
	CH_TRAILER_START,    /* start of a trailer line or of the final CRLF */
	CH_TRAILER_NAME,     /* trailer field name */
	CH_TRAILER_VALUE,    /* trailer field value */
	CH_TRAILER_LF,	     /* LF ending a trailer line */
	CH_END_LF,	     /* LF of the final CRLF */
	CH_DONE,	     /* body complete */
	CH_FAILED,	     /* an error was reported; stays so */
};

/* tchar (RFC 9110 5.6.2) */
static const uint8_t tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1,		['&'] = 1,	   ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,		['^'] = 1,	   ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

/* HTAB, SP, VCHAR, obs-text: field values, quoted-string content, reasons. */
static const uint8_t text_ok[256] = {
    ['\t'] = 1,
    [0x20 ... 0x7e] = 1,
    [0x80 ... 0xff] = 1,
};

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch |= 0x20;
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

static ssize_t chunk_fail(tg_http_chunked_t *c, const char *why)
{
	c->state = CH_FAILED;
	c->error = why;
	return TG_ERROR;
}

/* The scanner. With data (non-NULL), stops right after the first run of
 * chunk data it passes and reports it in data[0] (offset) and data[1]
 * (length; 0 when the bytes returned held no data). */
static ssize_t scan(tg_http_chunked_t *c, const char *buf, size_t len, bool *done, size_t *data)
{
	size_t i = 0;

	*done = false;
	if (data)
		data[0] = data[1] = 0;
	if (c->state == CH_DONE) {
		*done = true;
		return 0;
	}
	if (c->state == CH_FAILED)
		return TG_ERROR;

	while (i < len) {
		if (c->state == CH_DATA) {
			size_t n = len - i;
			if (n > c->chunk_left)
				n = (size_t)c->chunk_left;
			if (data) {
				data[0] = i;
				data[1] = n;
			}
			i += n;
			c->chunk_left -= n;
			c->body_bytes =
			    c->body_bytes + n < c->body_bytes ? UINT64_MAX : c->body_bytes + n;
			if (c->chunk_left == 0)
				c->state = CH_DATA_CR;
			if (data)
				return (ssize_t)i;
			continue;
		}

		char ch = buf[i++];
		uint8_t u = (uint8_t)ch;

		/* Every framing byte belongs to a line: bound lines and the trailer. */
		if (++c->line_bytes > TG_HTTP_CHUNK_LINE_MAX)
			return chunk_fail(c, c->state >= CH_TRAILER_START
						 ? "trailer line too long"
						 : "chunk size line too long");
		if (c->state >= CH_TRAILER_START && ++c->trailer_bytes > TG_HTTP_CHUNK_TRAILER_MAX)
			return chunk_fail(c, "trailer section too large");

		switch (c->state) {
		case CH_SIZE_START: {
			int h = hex_value(ch);
			if (h < 0)
				return chunk_fail(c, "invalid chunk size");
			c->chunk_left = (uint64_t)h;
			c->state = CH_SIZE;
			break;
		}
		case CH_SIZE: {
			int h = hex_value(ch);
			if (h >= 0) {
				if (c->chunk_left >> 59)
					return chunk_fail(c, "chunk size too large");
				c->chunk_left = c->chunk_left << 4 | (uint64_t)h;
			} else if (ch == ';') {
				c->state = CH_EXT_NAME_START;
			} else if (ch == ' ' || ch == '\t') {
				c->state = CH_SIZE_BWS;
			} else if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else if (ch == '\n') {
				return chunk_fail(c, "bare LF in chunk size line");
			} else {
				return chunk_fail(c, "invalid chunk size");
			}
			break;
		}
		case CH_SIZE_BWS:
			if (ch == ';')
				c->state = CH_EXT_NAME_START;
			else if (ch != ' ' && ch != '\t')
				return chunk_fail(c, "whitespace after chunk size");
			break;
		case CH_EXT_NAME_START:
			if (tchar[u])
				c->state = CH_EXT_NAME;
			else if (ch != ' ' && ch != '\t')
				return chunk_fail(c, "invalid chunk extension");
			break;
		case CH_EXT_NAME:
			if (tchar[u])
				break;
			if (ch == '=')
				c->state = CH_EXT_VAL_START;
			else if (ch == ';')
				c->state = CH_EXT_NAME_START;
			else if (ch == ' ' || ch == '\t')
				c->state = CH_EXT_NAME_BWS;
			else if (ch == '\r')
				c->state = CH_SIZE_LF;
			else
				return chunk_fail(c, "invalid chunk extension");
			break;
		case CH_EXT_NAME_BWS:
			if (ch == '=')
				c->state = CH_EXT_VAL_START;
			else if (ch == ';')
				c->state = CH_EXT_NAME_START;
			else if (ch != ' ' && ch != '\t')
				return chunk_fail(c, "invalid chunk extension");
			break;
		case CH_EXT_VAL_START:
			if (tchar[u])
				c->state = CH_EXT_VAL_TOKEN;
			else if (ch == '"')
				c->state = CH_EXT_VAL_QUOTED;
			else if (ch != ' ' && ch != '\t')
				return chunk_fail(c, "invalid chunk extension value");
			break;
		case CH_EXT_VAL_TOKEN:
			if (tchar[u])
				break;
			if (ch == ';')
				c->state = CH_EXT_NAME_START;
			else if (ch == ' ' || ch == '\t')
				c->state = CH_EXT_AFTER_VAL_WS;
			else if (ch == '\r')
				c->state = CH_SIZE_LF;
			else
				return chunk_fail(c, "invalid chunk extension value");
			break;
		case CH_EXT_VAL_QUOTED:
			if (ch == '"')
				c->state = CH_EXT_AFTER_QUOTE;
			else if (ch == '\\')
				c->state = CH_EXT_VAL_QPAIR;
			else if (!text_ok[u])
				return chunk_fail(c, "invalid character in chunk extension");
			break;
		case CH_EXT_VAL_QPAIR:
			if (!text_ok[u])
				return chunk_fail(c, "invalid character in chunk extension");
			c->state = CH_EXT_VAL_QUOTED;
			break;
		case CH_EXT_AFTER_QUOTE:
			if (ch == ';')
				c->state = CH_EXT_NAME_START;
			else if (ch == ' ' || ch == '\t')
				c->state = CH_EXT_AFTER_VAL_WS;
			else if (ch == '\r')
				c->state = CH_SIZE_LF;
			else
				return chunk_fail(c, "invalid chunk extension");
			break;
		case CH_EXT_AFTER_VAL_WS:
			if (ch == ';')
				c->state = CH_EXT_NAME_START;
			else if (ch != ' ' && ch != '\t')
				return chunk_fail(c, "invalid chunk extension");
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return chunk_fail(c, "bare CR in chunk size line");
			c->line_bytes = 0;
			c->state = c->chunk_left ? CH_DATA : CH_TRAILER_START;
			break;
		case CH_DATA_CR:
			if (ch != '\r')
				return chunk_fail(c, "missing CRLF after chunk data");
			c->state = CH_DATA_LF;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return chunk_fail(c, "missing CRLF after chunk data");
			c->line_bytes = 0;
			c->state = CH_SIZE_START;
			break;
		case CH_TRAILER_START:
			if (ch == '\r')
				c->state = CH_END_LF;
			else if (tchar[u])
				c->state = CH_TRAILER_NAME;
			else if (ch == ' ' || ch == '\t')
				return chunk_fail(c, "obsolete line folding in trailer");
			else if (ch == '\n')
				return chunk_fail(c, "bare LF in trailer section");
			else
				return chunk_fail(c, "invalid character in trailer field name");
			break;
		case CH_TRAILER_NAME:
			if (tchar[u])
				break;
			if (ch == ':')
				c->state = CH_TRAILER_VALUE;
			else if (ch == ' ' || ch == '\t')
				return chunk_fail(c, "whitespace between trailer name and colon");
			else
				return chunk_fail(c, "invalid character in trailer field name");
			break;
		case CH_TRAILER_VALUE:
			if (ch == '\r')
				c->state = CH_TRAILER_LF;
			else if (ch == '\n')
				return chunk_fail(c, "bare LF in trailer section");
			else if (!text_ok[u])
				return chunk_fail(c, "control character in trailer field");
			break;
		case CH_TRAILER_LF:
			if (ch != '\n')
				return chunk_fail(c, "bare CR in trailer section");
			c->line_bytes = 0;
			c->state = CH_TRAILER_START;
			break;
		case CH_END_LF:
			if (ch != '\n')
				return chunk_fail(c, "bare CR in trailer section");
			c->line_bytes = 0;
			c->state = CH_DONE;
			*done = true;
			return (ssize_t)i;
		default:
			return chunk_fail(c, "corrupt chunked scanner state");
		}
	}
	return (ssize_t)i;
}

ssize_t tg_http_chunked_scan(tg_http_chunked_t *c, const char *buf, size_t len, bool *done)
{
	return scan(c, buf, len, done, NULL);
}

ssize_t tg_http_chunked_next_data(tg_http_chunked_t *c, const char *buf, size_t len, bool *done,
				  size_t *data_off, size_t *data_len)
{
	size_t d[2];
	ssize_t r = scan(c, buf, len, done, d);
	*data_off = d[0];
	*data_len = d[1];
	return r;
}

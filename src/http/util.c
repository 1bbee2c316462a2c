/*
 * util.c - small helpers a proxy needs to write messages: reason phrases, the
 * Date header's text, method properties.
 */
#include "http/http.h"

#include <time.h>

const char *tg_http_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 101:
		return "Switching Protocols";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 203:
		return "Non-Authoritative Information";
	case 204:
		return "No Content";
	case 205:
		return "Reset Content";
	case 206:
		return "Partial Content";
	case 300:
		return "Multiple Choices";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 303:
		return "See Other";
	case 304:
		return "Not Modified";
	case 307:
		return "Temporary Redirect";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 402:
		return "Payment Required";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 406:
		return "Not Acceptable";
	case 407:
		return "Proxy Authentication Required";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 411:
		return "Length Required";
	case 412:
		return "Precondition Failed";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 416:
		return "Range Not Satisfiable";
	case 417:
		return "Expectation Failed";
	case 421:
		return "Misdirected Request";
	case 422:
		return "Unprocessable Content";
	case 425:
		return "Too Early";
	case 426:
		return "Upgrade Required";
	case 428:
		return "Precondition Required";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 451:
		return "Unavailable For Legal Reasons";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	case 507:
		return "Insufficient Storage";
	case 511:
		return "Network Authentication Required";
	default:
		return "";
	}
}

static void two_digits(char *p, int v)
{
	p[0] = (char)('0' + v / 10);
	p[1] = (char)('0' + v % 10);
}

/* IMF-fixdate (RFC 9110 5.6.7) of t, without snprintf: 29 bytes, no NUL. */
static void format_date(char out[29], time_t t)
{
	static const char days[7][3] = {{'S', 'u', 'n'}, {'M', 'o', 'n'}, {'T', 'u', 'e'},
					{'W', 'e', 'd'}, {'T', 'h', 'u'}, {'F', 'r', 'i'},
					{'S', 'a', 't'}};
	static const char months[12][3] = {{'J', 'a', 'n'}, {'F', 'e', 'b'}, {'M', 'a', 'r'},
					   {'A', 'p', 'r'}, {'M', 'a', 'y'}, {'J', 'u', 'n'},
					   {'J', 'u', 'l'}, {'A', 'u', 'g'}, {'S', 'e', 'p'},
					   {'O', 'c', 't'}, {'N', 'o', 'v'}, {'D', 'e', 'c'}};
	struct tm tm;
	int year;

	gmtime_r(&t, &tm);
	year = tm.tm_year + 1900;
	memcpy(out, days[tm.tm_wday], 3);
	out[3] = ',';
	out[4] = ' ';
	two_digits(out + 5, tm.tm_mday);
	out[7] = ' ';
	memcpy(out + 8, months[tm.tm_mon], 3);
	out[11] = ' ';
	two_digits(out + 12, year / 100 % 100);
	two_digits(out + 14, year % 100);
	out[16] = ' ';
	two_digits(out + 17, tm.tm_hour);
	out[19] = ':';
	two_digits(out + 20, tm.tm_min);
	out[22] = ':';
	two_digits(out + 23, tm.tm_sec);
	memcpy(out + 25, " GMT", 4);
}

void tg_http_date(char out[29])
{
	/* per worker thread, so no locking; formatted once per second */
	static __thread time_t cached_at = -1;
	static __thread char cached[29];
	time_t now = time(NULL);

	if (now != cached_at) {
		format_date(cached, now);
		cached_at = now;
	}
	memcpy(out, cached, 29);
}

bool tg_http_method_idempotent(tg_http_method_t m)
{
	switch (m) {
	case TG_METHOD_GET:
	case TG_METHOD_HEAD:
	case TG_METHOD_PUT:
	case TG_METHOD_DELETE:
	case TG_METHOD_OPTIONS:
	case TG_METHOD_TRACE:
		return true;
	default:
		return false;
	}
}

/*
 * http_parse.c - micro-benchmark of the HTTP/1.1 head parsers: nanoseconds per
 * parse of a typical browser request head (~500 bytes), a minimal curl-style
 * request, a typical response head, and the request head arriving in two
 * pieces (plain re-parse vs. the resume API). Prints the best of 30 rounds in
 * thread CPU time; asserts nothing.
 *
 * Build and run by hand (not part of `make`):
 *   cc -O2 -D_GNU_SOURCE -Isrc -o build-http/http_parse bench/http_parse.c \
 *      src/http/parser.c src/http/chunked.c src/http/util.c && build-http/http_parse
 * Pin it for steadier numbers: taskset -c 1 build-http/http_parse
 */
#include "http/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char browser[] =
    "GET /app/dashboard?tab=overview&range=7d HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "Connection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
    "sec-ch-ua-mobile: ?0\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "*/*;q=0.8\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Cookie: session=4f1c2a9e7b; theme=dark\r\n"
    "\r\n";

static const char curl[] = "GET / HTTP/1.1\r\nHost: localhost:8080\r\n"
			   "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";

static const char response[] = "HTTP/1.1 200 OK\r\n"
			       "Server: nginx/1.22.1\r\n"
			       "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
			       "Content-Type: text/html; charset=utf-8\r\n"
			       "Content-Length: 1534\r\n"
			       "Connection: keep-alive\r\n"
			       "Cache-Control: no-cache\r\n"
			       "ETag: \"65f1c2-5fe\"\r\n\r\n";

static double now_ns(void)
{
	struct timespec ts;

	/* CPU time of this thread: other processes on a shared machine do not
	 * inflate it the way they inflate wall-clock time */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

enum mode { REQUEST, RESPONSE, SPLIT_PLAIN, SPLIT_RESUME };

/* Best of 30 rounds of iters parses: ns per parse. */
static double bench(const char *msg, size_t len, enum mode mode, long iters)
{
	tg_http_header_t h[64];
	tg_http_request_t req;
	tg_http_response_t resp;
	double best = 1e18;
	long sink = 0;

	for (int round = 0; round < 30; round++) {
		double t0 = now_ns();
		for (long i = 0; i < iters; i++) {
			switch (mode) {
			case REQUEST:
				req.headers = h;
				req.max_headers = 64;
				sink += tg_http_parse_request(msg, len, &req, NULL);
				break;
			case RESPONSE:
				resp.headers = h;
				resp.max_headers = 64;
				sink +=
				    tg_http_parse_response(msg, len, &resp, TG_METHOD_GET, NULL);
				break;
			case SPLIT_PLAIN:
				req.headers = h;
				req.max_headers = 64;
				sink += tg_http_parse_request(msg, len / 2, &req, NULL);
				sink += tg_http_parse_request(msg, len, &req, NULL);
				break;
			case SPLIT_RESUME:
				memset(&req.priv, 0, sizeof(req.priv));
				req.headers = h;
				req.max_headers = 64;
				sink += tg_http_parse_request_resume(msg, len / 2, &req, NULL);
				sink += tg_http_parse_request_resume(msg, len, &req, NULL);
				break;
			}
		}
		double ns = (now_ns() - t0) / (double)iters;
		if (ns < best)
			best = ns;
	}
	if (sink == 42) /* keeps the calls; never true */
		puts("");
	return best;
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 100000;
	tg_http_header_t h[64];
	tg_http_request_t req = {.headers = h, .max_headers = 64};

	if (tg_http_parse_request(browser, sizeof(browser) - 1, &req, NULL) !=
	    (int)sizeof(browser) - 1) {
		fprintf(stderr, "browser request did not parse: %s\n", req.error);
		return 1;
	}
	double ns = bench(browser, sizeof(browser) - 1, REQUEST, iters);
	printf("browser request head (%zu bytes, %zu fields): %6.1f ns/parse  %5.2f GB/s\n",
	       sizeof(browser) - 1, req.num_headers, ns, (double)(sizeof(browser) - 1) / ns);
	printf("curl request head    (%3zu bytes):            %6.1f ns/parse\n", sizeof(curl) - 1,
	       bench(curl, sizeof(curl) - 1, REQUEST, iters));
	printf("response head        (%3zu bytes):            %6.1f ns/parse\n",
	       sizeof(response) - 1, bench(response, sizeof(response) - 1, RESPONSE, iters));
	printf("browser head in 2 pieces, re-parse from 0:     %6.1f ns\n",
	       bench(browser, sizeof(browser) - 1, SPLIT_PLAIN, iters));
	printf("browser head in 2 pieces, resume API:          %6.1f ns\n",
	       bench(browser, sizeof(browser) - 1, SPLIT_RESUME, iters));
	return 0;
}

/*
 * test_health.c - health checks against real sockets on loopback: HTTP status
 * judgement, TCP connect, timeouts, thresholds, target reconciliation.
 *
 * Waits are bounded (10 s) only so that a broken checker fails instead of
 * hanging; nothing asserts how fast a check is.
 */
#include "l4/health.h"
#include "core/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define WAIT_MS 10000

/* A loopback server the test drives by hand. */
typedef struct server {
	int lfd;	    /* listener */
	uint16_t port;	    /* its port */
	const char *answer; /* status line + headers sent after a request, NULL: never answer */
	int conns[64];	    /* accepted, not answered (the silent mode keeps them) */
	int n_conns;	    /* used */
} server_t;

static void server_open(server_t *s, const char *answer)
{
	memset(s, 0, sizeof(*s));
	s->answer = answer;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(s->lfd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->lfd, 64), 0);
	socklen_t l = sizeof(a);
	getsockname(s->lfd, (struct sockaddr *)&a, &l);
	s->port = ntohs(a.sin_port);
}

static void server_close(server_t *s)
{
	for (int i = 0; i < s->n_conns; i++)
		close(s->conns[i]);
	s->n_conns = 0;
	if (s->lfd >= 0)
		close(s->lfd);
	s->lfd = -1;
}

/* Accepts and answers whatever is waiting. */
static void server_step(server_t *s)
{
	if (s->lfd < 0)
		return;
	int fd;
	while ((fd = accept(s->lfd, NULL, NULL)) >= 0) {
		if (!s->answer) {
			if (s->n_conns < 64)
				s->conns[s->n_conns++] = fd;
			else
				close(fd);
			continue;
		}
		/* Read the request head (it arrives at once on loopback). */
		char buf[1024];
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 1000) == 1) {
			ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
			if (n > 0) {
				buf[n] = '\0';
				/* The request is a proper GET with our path. */
				if (strncmp(buf, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:", 39) !=
				    0)
					fail_msg("unexpected request: %s", buf);
				ssize_t w = send(fd, s->answer, strlen(s->answer), MSG_NOSIGNAL);
				(void)w;
			}
		}
		close(fd);
	}
}

typedef struct seen {
	uint64_t key; /* last key reported */
	bool healthy; /* its state */
	int count;    /* transitions reported */
} seen_t;

static void on_change(void *ctx, uint64_t key, bool healthy)
{
	seen_t *s = ctx;
	s->key = key;
	s->healthy = healthy;
	s->count++;
}

/* Runs the server until the checker reports a transition to `want`. */
static void wait_for(tg_health_t *h, server_t *s, bool want, seen_t *seen)
{
	uint64_t end = tg_clock_ms() + WAIT_MS;
	while (tg_clock_ms() < end) {
		struct pollfd p[2] = {{.fd = tg_health_fd(h), .events = POLLIN},
				      {.fd = s->lfd, .events = POLLIN}};
		poll(p, s->lfd >= 0 ? 2 : 1, 20);
		server_step(s);
		if (p[0].revents & POLLIN) {
			tg_health_collect(h, on_change, seen);
			if (seen->count > 0 && seen->healthy == want)
				return;
		}
	}
	fail_msg("no transition to %s within %d ms", want ? "healthy" : "unhealthy", WAIT_MS);
}

static tg_health_target_t target(uint64_t key, uint16_t port, tg_l4_hc_proto_t proto)
{
	tg_health_target_t t;
	memset(&t, 0, sizeof(t));
	t.key = key;
	assert_int_equal(tg_l4_ip_parse("127.0.0.1", 9, &t.ip), 0);
	t.cfg.proto = proto;
	t.cfg.port = port;
	memcpy(t.cfg.path, "/healthz", 9);
	t.cfg.interval_ms = 50;
	t.cfg.timeout_ms = 40;
	t.cfg.healthy_threshold = 2;
	t.cfg.unhealthy_threshold = 2;
	t.initially_healthy = false;
	return t;
}

static void test_http(void **state)
{
	(void)state;
	tg_health_t *h;
	server_t s;
	seen_t seen = {0};
	assert_int_equal(tg_health_start(&h), 0);
	server_open(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	tg_health_target_t t = target(42, s.port, TG_L4_HC_HTTP);
	assert_int_equal(tg_health_set_targets(h, &t, 1), 0);
	wait_for(h, &s, true, &seen);
	assert_int_equal(seen.key, 42);
	/* 503 is a failure; so is 2000 or a non-HTTP answer. */
	s.answer = "HTTP/1.1 503 Service Unavailable\r\n\r\n";
	wait_for(h, &s, false, &seen);
	s.answer = "HTTP/1.0 200 OK\r\n\r\n";
	wait_for(h, &s, true, &seen);
	s.answer = "HTTP/1.1 2000 OK\r\n\r\n";
	wait_for(h, &s, false, &seen);
	s.answer = "HTTP/1.1 200\r\n\r\n"; /* reason phrase is optional */
	wait_for(h, &s, true, &seen);
	s.answer = "SSH-2.0-OpenSSH_9.2\r\n";
	wait_for(h, &s, false, &seen);
	tg_health_stats_t st;
	tg_health_get_stats(h, &st);
	assert_true(st.checks >= 12);
	assert_int_equal(st.targets, 1);
	tg_health_stop(h);
	server_close(&s);
}

static void test_tcp_and_refused(void **state)
{
	(void)state;
	tg_health_t *h;
	server_t s;
	seen_t seen = {0};
	assert_int_equal(tg_health_start(&h), 0);
	server_open(&s, NULL);
	tg_health_target_t t = target(7, s.port, TG_L4_HC_TCP);
	assert_int_equal(tg_health_set_targets(h, &t, 1), 0);
	wait_for(h, &s, true, &seen);
	/* Listener gone: connection refused. */
	server_close(&s);
	wait_for(h, &s, false, &seen);
	tg_health_stop(h);
}

/* A server that accepts but never answers: checks time out. */
static void test_timeout(void **state)
{
	(void)state;
	tg_health_t *h;
	server_t s;
	seen_t seen = {0};
	assert_int_equal(tg_health_start(&h), 0);
	server_open(&s, NULL);
	tg_health_target_t t = target(9, s.port, TG_L4_HC_HTTP);
	t.initially_healthy = true;
	assert_int_equal(tg_health_set_targets(h, &t, 1), 0);
	wait_for(h, &s, false, &seen);
	tg_health_stats_t st;
	tg_health_get_stats(h, &st);
	assert_true(st.timeouts >= 2);
	assert_int_equal(st.passes, 0);
	tg_health_stop(h);
	server_close(&s);
}

/* Targets keep their state across set_targets; removed ones stop. */
static void test_reconcile(void **state)
{
	(void)state;
	tg_health_t *h;
	server_t s;
	seen_t seen = {0};
	assert_int_equal(tg_health_start(&h), 0);
	server_open(&s, "HTTP/1.1 200 OK\r\n\r\n");
	tg_health_target_t t[2] = {target(1, s.port, TG_L4_HC_HTTP),
				   target(2, s.port, TG_L4_HC_TCP)};
	t[1].initially_healthy = true; /* already right: no transition expected */
	assert_int_equal(tg_health_set_targets(h, t, 2), 0);
	wait_for(h, &s, true, &seen);
	assert_int_equal(seen.key, 1);
	/* Same keys again, one parameter changed: no new transition. */
	t[0].cfg.interval_ms = 60;
	t[0].initially_healthy = false; /* ignored: the key keeps its state */
	assert_int_equal(tg_health_set_targets(h, t, 2), 0);
	uint64_t end = tg_clock_ms() + 500;
	while (tg_clock_ms() < end) {
		struct pollfd p = {.fd = s.lfd, .events = POLLIN};
		poll(&p, 1, 10);
		server_step(&s);
	}
	seen.count = 0;
	tg_health_collect(h, on_change, &seen);
	assert_int_equal(seen.count, 0);
	/* Duplicate keys count once; an empty list stops everything. */
	tg_health_target_t d[2] = {t[0], t[0]};
	assert_int_equal(tg_health_set_targets(h, d, 2), 0);
	tg_health_stats_t st;
	end = tg_clock_ms() + WAIT_MS;
	do {
		usleep(1000);
		tg_health_get_stats(h, &st);
	} while (st.targets != 1 && tg_clock_ms() < end);
	assert_int_equal(st.targets, 1);
	assert_int_equal(tg_health_set_targets(h, NULL, 0), 0);
	do {
		usleep(1000);
		tg_health_get_stats(h, &st);
	} while (st.targets != 0 && tg_clock_ms() < end);
	assert_int_equal(st.targets, 0);
	tg_health_stop(h);
	server_close(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_http),
	    cmocka_unit_test(test_tcp_and_refused),
	    cmocka_unit_test(test_timeout),
	    cmocka_unit_test(test_reconcile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

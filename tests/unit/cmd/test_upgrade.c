/*
 * test_upgrade.c - the SIGUSR2 handover protocol: message parsing (hostile
 * input never crashes and is refused), and the new process's side receiving
 * descriptors over a real socketpair and reporting back.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cmd/upgrade.h"

static int parse(const char *msg, int nfds, tg_upgrade_kind_t *kinds, pid_t *pid)
{
	return tg_upgrade_parse(msg, strlen(msg), nfds, kinds, pid);
}

static void test_parse_messages(void **state)
{
	(void)state;
	tg_upgrade_kind_t k[8];
	pid_t pid = 0;
	assert_int_equal(parse("FDS http http admin https", 4, k, &pid), 4);
	assert_int_equal(k[0], TG_UPGRADE_HTTP);
	assert_int_equal(k[2], TG_UPGRADE_ADMIN);
	assert_int_equal(k[3], TG_UPGRADE_HTTPS);
	assert_int_equal(parse("END 4242", 0, k, &pid), 0);
	assert_int_equal(pid, 4242);
	/* the kinds must name exactly the descriptors attached */
	assert_int_equal(parse("FDS http http", 1, k, &pid), -EINVAL);
	assert_int_equal(parse("FDS http", 2, k, &pid), -EINVAL);
	assert_int_equal(parse("FDS", 0, k, &pid), -EINVAL);
	assert_int_equal(parse("END 12", 1, k, &pid), -EINVAL);
	/* junk */
	assert_int_equal(parse("FDS udp", 1, k, &pid), -EINVAL);
	assert_int_equal(parse("END", 0, k, &pid), -EINVAL);
	assert_int_equal(parse("END -3", 0, k, &pid), -EINVAL);
	assert_int_equal(parse("END 12x", 0, k, &pid), -EINVAL);
	assert_int_equal(parse("END 1 2", 0, k, &pid), -EINVAL);
	assert_int_equal(parse("END 99999999999999999999", 0, k, &pid), -EINVAL);
	assert_int_equal(parse("READY 1", 0, k, &pid), -EINVAL);
	assert_int_equal(parse("", 0, k, &pid), -EINVAL);
	assert_int_equal(parse("   ", 0, k, &pid), -EINVAL);
	assert_int_equal(tg_upgrade_parse("FDS http\0admin", 14, 2, k, &pid), -EINVAL);
	char big[2048];
	memset(big, 'x', sizeof(big));
	assert_int_equal(tg_upgrade_parse(big, sizeof(big), 0, k, &pid), -EINVAL);
}

/* Sends text with the descriptors attached. */
static void send_fds(int sock, const char *text, const int *fds, int n)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = {(void *)text, strlen(text)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (n) {
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
	}
	assert_true(sendmsg(sock, &mh, 0) >= 0);
}

static void set_env_fd(int fd)
{
	char v[16];
	snprintf(v, sizeof(v), "%d", fd);
	setenv(TG_UPGRADE_ENV, v, 1);
}

static bool same_file(int a, int b)
{
	struct stat sa, sb;
	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_ino == sb.st_ino &&
	       sa.st_dev == sb.st_dev;
}

static void test_receive_and_report(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	int p1[2], p2[2];
	assert_int_equal(pipe(p1), 0);
	assert_int_equal(pipe(p2), 0);
	int batch1[3] = {p1[0], p1[1], p2[0]};
	send_fds(sv[0], "FDS http http admin", batch1, 3);
	send_fds(sv[0], "FDS https", &p2[1], 1);
	send_fds(sv[0], "END 77", NULL, 0);
	set_env_fd(sv[1]);
	tg_upgrade_inherited_t in;
	assert_int_equal(tg_upgrade_receive(&in), 0);
	assert_null(getenv(TG_UPGRADE_ENV)); /* a later upgrade starts clean */
	assert_int_equal(in.old_pid, 77);
	assert_int_equal(in.n_http, 2);
	assert_int_equal(in.n_https, 1);
	assert_true(same_file(in.http[0], p1[0]));
	assert_true(same_file(in.http[1], p1[1]));
	assert_true(same_file(in.admin, p2[0]));
	assert_true(same_file(in.https[0], p2[1]));
	tg_upgrade_report(&in, true, NULL);
	assert_int_equal(in.channel, -1);
	char msg[64] = {0};
	assert_true(recv(sv[0], msg, sizeof(msg) - 1, 0) > 0);
	assert_int_equal(strncmp(msg, "READY ", 6), 0);
	close(in.http[0]);
	close(in.http[1]);
	close(in.admin);
	close(in.https[0]);
	for (int i = 0; i < 2; i++) {
		close(p1[i]);
		close(p2[i]);
	}
	close(sv[0]);
}

static void test_malformed_handover_is_refused(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	int p[2];
	assert_int_equal(pipe(p), 0);
	send_fds(sv[0], "FDS http", p, 2); /* two descriptors, one kind */
	set_env_fd(sv[1]);
	tg_upgrade_inherited_t in;
	assert_int_equal(tg_upgrade_receive(&in), -EPROTO);
	assert_int_equal(in.n_http, 0);
	tg_upgrade_report(&in, false, "the socket handover failed");
	char msg[64] = {0};
	assert_true(recv(sv[0], msg, sizeof(msg) - 1, 0) > 0);
	assert_string_equal(msg, "FAIL the socket handover failed");
	close(sv[0]);
	close(p[0]);
	close(p[1]);

	/* the old process went away before END */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	close(sv[0]);
	set_env_fd(sv[1]);
	assert_int_equal(tg_upgrade_receive(&in), -EPROTO);
	tg_upgrade_report(&in, false, "x");

	/* not a handover socket at all */
	setenv(TG_UPGRADE_ENV, "0x", 1);
	assert_int_equal(tg_upgrade_receive(&in), -EINVAL);
	assert_int_equal(pipe(p), 0);
	set_env_fd(p[0]);
	assert_int_equal(tg_upgrade_receive(&in), -EINVAL);
	close(p[0]);
	close(p[1]);

	/* absent: a normal start */
	unsetenv(TG_UPGRADE_ENV);
	assert_int_equal(tg_upgrade_receive(&in), 0);
	assert_int_equal(in.channel, -1);
	tg_upgrade_report(&in, true, NULL); /* no-op */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_messages),
	    cmocka_unit_test(test_receive_and_report),
	    cmocka_unit_test(test_malformed_handover_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

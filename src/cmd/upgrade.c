/*
 * upgrade.c - SIGUSR2 binary upgrade: starting the new process, passing the
 * listening sockets with SCM_RIGHTS, and the new process's side of it. See
 * upgrade.h for the protocol.
 */
#include "cmd/upgrade.h"

#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MSG_MAX 1024 /* longest protocol message */

struct tg_upgrade {
	pid_t pid; /* the new process */
	int fd;	   /* our end of the channel */
};

/* Written once by tg_upgrade_remember before any thread exists. */
static char exe_path[PATH_MAX];
static int saved_argc;
static char **saved_argv;

static const char *const kind_names[] = {"http", "admin", "https"};

void tg_upgrade_remember(int argc, char **argv)
{
	ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
	if (n > 0) {
		exe_path[n] = '\0';
		/* Already replaced before we got here: the path is still the one
		 * to start. */
		static const char del[] = " (deleted)";
		size_t dl = sizeof(del) - 1;
		if ((size_t)n > dl && strcmp(exe_path + n - dl, del) == 0)
			exe_path[n - dl] = '\0';
	} else {
		exe_path[0] = '\0';
	}
	saved_argc = argc;
	saved_argv = argv;
}

static void fmt_status(int st, char *why, size_t len)
{
	if (WIFEXITED(st))
		snprintf(why, len, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(why, len, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(why, len, "ended (status 0x%x)", (unsigned)st);
}

/* Waits for pid up to ms, then kills it. Writes how it ended into why. */
static void reap(pid_t pid, int ms, char *why, size_t len)
{
	int st = 0;
	for (int waited = 0;; waited += 10) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			fmt_status(st, why, len);
			return;
		}
		if (r < 0) {
			snprintf(why, len, "gone (%s)", strerror(errno));
			return;
		}
		if (waited >= ms)
			break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	if (waitpid(pid, &st, 0) == pid)
		fmt_status(st, why, len);
}

static int send_batch(int fd, const int *fds, const tg_upgrade_kind_t *kinds, int n)
{
	char text[MSG_MAX];
	size_t off = (size_t)snprintf(text, sizeof(text), "FDS");
	for (int i = 0; i < n; i++)
		off +=
		    (size_t)snprintf(text + off, sizeof(text) - off, " %s", kind_names[kinds[i]]);
	union {
		char buf[CMSG_SPACE(sizeof(int) * TG_UPGRADE_BATCH)];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = {text, off};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	mh.msg_control = ctl.buf;
	mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
	return sendmsg(fd, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

int tg_upgrade_start(const int *fds, const tg_upgrade_kind_t *kinds, int n, tg_upgrade_t **out,
		     char *why, size_t len)
{
	if (!exe_path[0] || !saved_argv) {
		snprintf(why, len, "the path of the running binary is unknown");
		return -ENOENT;
	}
	if (access(exe_path, X_OK) < 0) {
		int e = errno;
		snprintf(why, len, "%s: %s", exe_path, strerror(e));
		return -e;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		int e = errno;
		snprintf(why, len, "socketpair: %s", strerror(e));
		return -e;
	}
	/* Everything the child needs is built before fork: after it, only
	 * async-signal-safe calls (this process has threads). */
	size_t nenv = 0;
	while (environ[nenv])
		nenv++;
	char **envp = calloc(nenv + 2, sizeof(char *));
	char **argv = calloc((size_t)saved_argc + 2, sizeof(char *));
	char envfd[64];
	if (!envp || !argv) {
		free(envp);
		free(argv);
		close(sv[0]);
		close(sv[1]);
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	size_t k = 0;
	size_t el = strlen(TG_UPGRADE_ENV);
	for (size_t i = 0; i < nenv; i++)
		if (strncmp(environ[i], TG_UPGRADE_ENV, el) != 0 || environ[i][el] != '=')
			envp[k++] = environ[i];
	snprintf(envfd, sizeof(envfd), "%s=%d", TG_UPGRADE_ENV, sv[1]);
	envp[k] = envfd;
	argv[0] = exe_path;
	argv[1] = (char *)"ingress";
	for (int i = 1; i < saved_argc; i++)
		argv[i + 1] = saved_argv[i];
	static const char fail[] = "FAIL cannot execute the binary (errno ";
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		struct sigaction dfl;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGPIPE, &dfl, NULL);
		fcntl(sv[1], F_SETFD, 0); /* the one descriptor that crosses exec */
		execve(exe_path, argv, envp);
		char msg[sizeof(fail) + 16];
		memcpy(msg, fail, sizeof(fail) - 1);
		size_t m = sizeof(fail) - 1;
		char digits[12];
		int d = 0, e = errno;
		do {
			digits[d++] = (char)('0' + e % 10);
			e /= 10;
		} while (e && d < 11);
		while (d)
			msg[m++] = digits[--d];
		msg[m++] = ')';
		ssize_t w = write(sv[1], msg, m);
		(void)w;
		_exit(127);
	}
	int fe = errno;
	free(envp);
	free(argv);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		snprintf(why, len, "fork: %s", strerror(fe));
		return -fe;
	}
	int e = 0;
	for (int i = 0; i < n && !e; i += TG_UPGRADE_BATCH)
		e = send_batch(sv[0], fds + i, kinds + i,
			       n - i < TG_UPGRADE_BATCH ? n - i : TG_UPGRADE_BATCH);
	if (!e) {
		char end[32];
		int l = snprintf(end, sizeof(end), "END %d", (int)getpid());
		if (send(sv[0], end, (size_t)l, MSG_NOSIGNAL) < 0)
			e = -errno;
	}
	tg_upgrade_t *u = e ? NULL : calloc(1, sizeof(*u));
	if (!u) {
		close(sv[0]);
		char how[128];
		reap(pid, e == -EPIPE ? 5000 : 0, how, sizeof(how));
		snprintf(why, len,
			 "new process %d %s before it was ready (handing the sockets over "
			 "failed: %s)",
			 (int)pid, how, strerror(e ? -e : ENOMEM));
		return e ? e : -ENOMEM;
	}
	u->pid = pid;
	u->fd = sv[0];
	*out = u;
	return 0;
}

int tg_upgrade_fd(const tg_upgrade_t *u)
{
	return u->fd;
}

pid_t tg_upgrade_pid(const tg_upgrade_t *u)
{
	return u->pid;
}

int tg_upgrade_poll(tg_upgrade_t *u, bool timed_out, char *why, size_t len)
{
	char how[128];
	if (timed_out) {
		kill(u->pid, SIGKILL);
		reap(u->pid, 1000, how, sizeof(how));
		snprintf(why, len, "new process %d was not ready in time (%s)", (int)u->pid, how);
		return -1;
	}
	char msg[MSG_MAX];
	ssize_t n = recv(u->fd, msg, sizeof(msg) - 1, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n > 0) {
		msg[n] = '\0';
		if (strncmp(msg, "READY", 5) == 0)
			return 1;
		/* FAIL <reason>, or anything unexpected: the process is not
		 * usable; it exits by itself after FAIL. */
		for (ssize_t i = 0; i < n; i++)
			if (msg[i] < 0x20 || msg[i] > 0x7e)
				msg[i] = '?';
		reap(u->pid, 5000, how, sizeof(how));
		snprintf(why, len, "new process %d: %s (%s)", (int)u->pid,
			 strncmp(msg, "FAIL ", 5) == 0 ? msg + 5 : msg, how);
		return -1;
	}
	/* End of the channel: the process exited (or exec'd something that does
	 * not speak the protocol and closed it). */
	reap(u->pid, 5000, how, sizeof(how));
	snprintf(why, len, "new process %d %s before it was ready", (int)u->pid, how);
	return -1;
}

void tg_upgrade_free(tg_upgrade_t *u)
{
	if (!u)
		return;
	close(u->fd);
	free(u);
}

void tg_upgrade_reap(void)
{
	int st;
	while (waitpid(-1, &st, WNOHANG) > 0)
		;
}

int tg_upgrade_parse(const char *msg, size_t len, int nfds, tg_upgrade_kind_t *kinds, pid_t *pid)
{
	char buf[MSG_MAX];
	if (len == 0 || len >= sizeof(buf) || memchr(msg, '\0', len))
		return -EINVAL;
	memcpy(buf, msg, len);
	buf[len] = '\0';
	char *save = NULL;
	char *tok = strtok_r(buf, " ", &save);
	if (!tok)
		return -EINVAL;
	if (strcmp(tok, "END") == 0) {
		tok = strtok_r(NULL, " ", &save);
		char *end = NULL;
		long v = tok ? strtol(tok, &end, 10) : 0;
		if (!tok || *end || v <= 0 || v > INT_MAX || nfds != 0 ||
		    strtok_r(NULL, " ", &save))
			return -EINVAL;
		*pid = (pid_t)v;
		return 0;
	}
	if (strcmp(tok, "FDS") != 0)
		return -EINVAL;
	int n = 0;
	while ((tok = strtok_r(NULL, " ", &save))) {
		if (n >= nfds)
			return -EINVAL;
		int k = -1;
		for (int i = 0; i < (int)(sizeof(kind_names) / sizeof(kind_names[0])); i++)
			if (strcmp(tok, kind_names[i]) == 0)
				k = i;
		if (k < 0)
			return -EINVAL;
		kinds[n++] = (tg_upgrade_kind_t)k;
	}
	return n == nfds && n > 0 ? n : -EINVAL;
}

static void close_inherited(tg_upgrade_inherited_t *in)
{
	for (int i = 0; i < in->n_http; i++)
		close(in->http[i]);
	in->n_http = 0;
	for (int i = 0; i < in->n_https; i++)
		close(in->https[i]);
	in->n_https = 0;
	if (in->admin >= 0)
		close(in->admin);
	in->admin = -1;
}

int tg_upgrade_receive(tg_upgrade_inherited_t *in)
{
	in->channel = -1;
	in->old_pid = 0;
	in->n_http = 0;
	in->n_https = 0;
	in->admin = -1;
	const char *v = getenv(TG_UPGRADE_ENV);
	if (!v)
		return 0;
	char *end = NULL;
	long fd = strtol(v, &end, 10);
	unsetenv(TG_UPGRADE_ENV);
	int type = 0;
	socklen_t tl = sizeof(type);
	if (!*v || *end || fd < 0 || fd > INT_MAX ||
	    getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_SEQPACKET) {
		tg_error("upgrade", "%s=%s is not a handover socket", TG_UPGRADE_ENV, v);
		return -EINVAL;
	}
	in->channel = (int)fd;
	fcntl(in->channel, F_SETFD, FD_CLOEXEC);
	/* The old process sent everything before we started: never wait long. */
	struct timeval tv = {.tv_sec = 10};
	setsockopt(in->channel, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		char msg[MSG_MAX];
		union {
			char buf[CMSG_SPACE(sizeof(int) * TG_UPGRADE_BATCH)];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = {msg, sizeof(msg)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		ssize_t n = recvmsg(in->channel, &mh, MSG_CMSG_CLOEXEC);
		int fds[TG_UPGRADE_BATCH];
		int nfds = 0;
		for (struct cmsghdr *cm = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm;
		     cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int f;
				memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (nfds < TG_UPGRADE_BATCH)
					fds[nfds++] = f;
				else
					close(f);
			}
		}
		const char *bad = NULL;
		tg_upgrade_kind_t kinds[TG_UPGRADE_BATCH];
		pid_t pid = 0;
		int r = -1;
		if (n < 0)
			bad = strerror(errno);
		else if (n == 0)
			bad = "the old process closed the channel";
		else if (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
			bad = "message truncated";
		else if ((r = tg_upgrade_parse(msg, (size_t)n, nfds, kinds, &pid)) < 0)
			bad = "malformed message";
		else if (in->n_http + in->n_https + r > TG_UPGRADE_MAX_FDS)
			bad = "too many sockets";
		if (bad) {
			for (int i = 0; i < nfds; i++)
				close(fds[i]);
			close_inherited(in);
			tg_error("upgrade", "handover from the old process failed: %s", bad);
			return -EPROTO;
		}
		if (r == 0) {
			in->old_pid = pid;
			return 0;
		}
		for (int i = 0; i < r; i++) {
			if (kinds[i] == TG_UPGRADE_HTTP) {
				in->http[in->n_http++] = fds[i];
			} else if (kinds[i] == TG_UPGRADE_HTTPS) {
				in->https[in->n_https++] = fds[i];
			} else if (in->admin < 0) {
				in->admin = fds[i];
			} else {
				close(fds[i]);
			}
		}
	}
}

void tg_upgrade_report(tg_upgrade_inherited_t *in, bool ok, const char *why)
{
	if (in->channel < 0)
		return;
	char msg[512];
	int n = ok ? snprintf(msg, sizeof(msg), "READY %d", (int)getpid())
		   : snprintf(msg, sizeof(msg), "FAIL %s", why ? why : "could not start");
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	ssize_t w = send(in->channel, msg, (size_t)n, MSG_NOSIGNAL);
	(void)w;
	close(in->channel);
	in->channel = -1;
}

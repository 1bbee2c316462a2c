/*
 * test_guard.c - the guard-page helper the parser tests rely on really
 * crashes on a read past the end (or before the start) and on a write: a
 * child process does the bad access and must die of SIGSEGV. Without this, a
 * broken helper would make every parser test pass vacuously.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard.h"

enum access { READ_AFTER, READ_BEFORE, WRITE_INSIDE, READ_INSIDE };

/* Runs one access in a child; returns the signal that ended it, or 0. */
static int child_access(const char *p, size_t len, enum access what)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		volatile char sink = 0;
		/* a sanitizer's SEGV handler would turn the signal into exit(1) */
		signal(SIGSEGV, SIG_DFL);
		switch (what) {
		case READ_AFTER:
			sink = p[len];
			break;
		case READ_BEFORE:
			sink = p[-1];
			break;
		case WRITE_INSIDE:
			*(volatile char *)(uintptr_t)p = 'x';
			break;
		case READ_INSIDE:
			for (size_t i = 0; i < len; i++)
				sink = (char)(sink + p[i]);
			break;
		}
		(void)sink;
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static void test_back(void **state)
{
	(void)state;
	static const size_t lens[] = {1, 7, 4095, 4096, 4097, 10000};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		char src[10000];
		memset(src, 'a', sizeof(src));
		const char *p = tg_guard_dup(src, lens[i]);
		assert_memory_equal(p, src, lens[i]);
		assert_int_equal(child_access(p, lens[i], READ_INSIDE), 0);
		assert_int_equal(child_access(p, lens[i], READ_AFTER), SIGSEGV);
		assert_int_equal(child_access(p, lens[i], WRITE_INSIDE), SIGSEGV);
		tg_guard_free(p, lens[i]);
	}
	/* zero bytes: the pointer is at the guard itself */
	const char *z = tg_guard_dup("", 0);
	assert_int_equal(child_access(z, 0, READ_AFTER), SIGSEGV);
	tg_guard_free(z, 0);
}

static void test_front(void **state)
{
	(void)state;
	const char *p = tg_guard_dup_front("abc", 3);
	assert_memory_equal(p, "abc", 3);
	assert_int_equal(child_access(p, 3, READ_BEFORE), SIGSEGV);
	assert_int_equal(child_access(p, 3, READ_INSIDE), 0);
	tg_guard_free(p, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_back),
	    cmocka_unit_test(test_front),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

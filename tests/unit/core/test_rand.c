/*
 * test_rand.c - request IDs: 32 lower-case hex characters carrying 128
 * random bits (every character position takes every hex digit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/rand.h"

static void test_hex32_is_lower_hex_and_varies(void **state)
{
	(void)state;
	tg_rand_t r;
	tg_rand_seed(&r);
	/* seen[i][d]: digit d appeared at position i */
	uint8_t seen[32][16];
	memset(seen, 0, sizeof(seen));
	char prev[32] = {0};
	for (int k = 0; k < 2000; k++) {
		char id[33];
		id[32] = '#';
		tg_rand_hex32(&r, id);
		assert_int_equal(id[32], '#'); /* exactly 32 bytes written */
		for (int i = 0; i < 32; i++) {
			char ch = id[i];
			int d = ch >= '0' && ch <= '9'	 ? ch - '0'
				: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
							 : -1;
			assert_true(d >= 0);
			seen[i][d] = 1;
		}
		assert_memory_not_equal(id, prev, 32);
		memcpy(prev, id, 32);
	}
	for (int i = 0; i < 32; i++)
		for (int d = 0; d < 16; d++)
			assert_int_equal(seen[i][d], 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hex32_is_lower_hex_and_varies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Placeholder until the decap subcommand lands; replaced by its implementation. */
#include "cmd/cmd.h"

#include <stdio.h>

int tg_cmd_decap(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "tidegate decap: not implemented yet\n");
	return 1;
}

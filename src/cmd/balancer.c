/* Placeholder until the balancer subcommand lands; replaced by its implementation. */
#include "cmd/cmd.h"

#include <stdio.h>

int tg_cmd_balancer(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "tidegate balancer: not implemented yet\n");
	return 1;
}

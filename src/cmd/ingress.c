/* Placeholder until the ingress subcommand lands; replaced by its implementation. */
#include "cmd/cmd.h"

#include <stdio.h>

int tg_cmd_ingress(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "tidegate ingress: not implemented yet\n");
	return 1;
}

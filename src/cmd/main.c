/*
 * main.c - dispatch to the subcommand named by argv[1].
 */
#include "cmd/cmd.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: tidegate COMMAND [OPTIONS]\n"
		   "\n"
		   "commands:\n"
		   "  ingress   L7 ingress proxy fed by Kubernetes objects (--manifests DIR)\n"
		   "  balancer  L4 XDP balancer with Maglev hashing (--config FILE)\n"
		   "  decap     tc program on a real that strips the IPIP header (--iface IF --vip "
		   "ADDR...)\n"
		   "  version   print version and build features\n"
		   "\n"
		   "`tidegate COMMAND --help` describes each command's options.\n");
}

static int cmd_version(void)
{
	printf("tidegate %s\n", TG_VERSION);
	printf("features: http1 xdp-balancer tc-decap maglev\n");
	return 0;
}

int main(int argc, char **argv)
{
	tg_log_init();
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "ingress") == 0)
		return tg_cmd_ingress(argc - 1, argv + 1);
	if (strcmp(cmd, "balancer") == 0)
		return tg_cmd_balancer(argc - 1, argv + 1);
	if (strcmp(cmd, "decap") == 0)
		return tg_cmd_decap(argc - 1, argv + 1);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
		return cmd_version();
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "tidegate: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}

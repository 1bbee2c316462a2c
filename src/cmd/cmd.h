/*
 * cmd.h - subcommands of the single tidegate binary. Each returns the process
 * exit status (0 success, 1 runtime failure, 2 usage error).
 */
#ifndef TG_CMD_CMD_H
#define TG_CMD_CMD_H

#define TG_VERSION "0.1.0"

/* tidegate ingress: the L7 proxy (src/cmd/ingress.c). */
int tg_cmd_ingress(int argc, char **argv);

/* tidegate balancer: the L4 XDP balancer (src/cmd/balancer.c). */
int tg_cmd_balancer(int argc, char **argv);

/* tidegate decap: tc IPIP decapsulation on a real (src/cmd/decap.c). */
int tg_cmd_decap(int argc, char **argv);

#endif

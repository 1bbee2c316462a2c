// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * clock.bpf.c - jiffies probe (skeleton tg_clock). The balancer reads time as
 * bpf_jiffies64() x ns-per-jiffy because that is ~10 ns cheaper per packet
 * than bpf_ktime_get_coarse_ns() here; user space needs the kernel's HZ for
 * the factor. When no kernel config file says CONFIG_HZ, src/l4/datapath.c
 * runs this program (BPF_PROG_TEST_RUN) twice some time apart and derives HZ.
 */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* jiffies at the last run, read by user space through the skeleton. */
__u64 probe_jiffies = 0;

SEC("xdp")
int clock_probe(struct xdp_md *ctx)
{
	probe_jiffies = bpf_jiffies64();
	return XDP_PASS;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The lab: a cluster of N nodes on one machine, for tests and benchmarks.
 *
 *   node ni (i = 1..N)           network namespace sm.<LAB>.ni
 *     lo                         up
 *     eth0                       198.18.0.i/24, 2001:2::i/64 (no DAD)
 *   the wire                     network namespace sm.<LAB>.net
 *     br0                        bridge, STP and multicast snooping off
 *     n1 .. nN                   veth ports, peers of the nodes' eth0
 *
 * The addresses are the benchmarking ranges of RFC 2544 and RFC 5180, never
 * routed. Nothing is created in the machine's own network namespace, not even
 * for a moment: each veth peer is born inside its node. The namespaces are
 * named the iproute2 way (/run/netns/NAME), so `ip netns exec sm.lab.n1 ...`
 * works too.
 *
 * Record: /run/sockmig/labs/<LAB>/state is written before the first object
 * is created and updated as the lab comes up, so sockmig_lab_down() removes
 * exactly what was made, also after a crash or a half-finished up. down ends
 * the processes that still run inside the lab's namespaces first.
 *
 * Every call needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
 *
 * Fault injection for tests: if the environment variable
 * SOCKMIG_LAB_CRASH_AFTER=K is set, sockmig_lab_up() kills its own process
 * with SIGKILL after K creation steps.
 */
#ifndef SOCKMIG_LAB_H
#define SOCKMIG_LAB_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SOCKMIG_LAB_NAME_MAX 20
#define SOCKMIG_LAB_NODES_MAX 64
#define SOCKMIG_LAB_DEFAULT_NAME "lab"
#define SOCKMIG_LAB_DEFAULT_NODES 3
#define SOCKMIG_LAB_DIR "/run/sockmig/labs"
/* Long enough for any "sm.<LAB>.<node>" namespace name, with the NUL. */
#define SOCKMIG_LAB_NETNS_NAME_SIZE 40
/* Long enough for any "n<number>", with the NUL. */
#define SOCKMIG_LAB_NODE_NAME_SIZE 12

struct sockmig_lab_config {
	const char *name;   /* NULL: SOCKMIG_LAB_DEFAULT_NAME */
	unsigned int nodes; /* 0: SOCKMIG_LAB_DEFAULT_NODES */
};

/* true if name is a valid lab name: 1..20 of [A-Za-z0-9_-]. */
bool sockmig_lab_name_valid(const char *name);

/* Make the lab and wait until the link of every node and its bridge port
 * are operationally up, so that frames pass between any two nodes; the
 * addresses are usable at once (no duplicate address detection). Nothing is
 * sent to probe reachability. -EEXIST if a lab of that name exists (also a
 * half-made one). On failure, what was made is removed again; if that fails
 * too, the error says so and 'sockmig lab down' removes the rest. */
int sockmig_lab_up(const struct sockmig_lab_config *cfg);

/* End the lab's processes and remove everything the lab consists of, as
 * far as it exists. -ENOENT if there is no trace of a lab of that name. */
int sockmig_lab_down(const char *name);

/* Names of all labs with a record or a namespace, sorted; *ret is one
 * malloc'ed block (free() it), each entry SOCKMIG_LAB_NAME_MAX + 1 bytes. */
int sockmig_lab_list(char (**ret)[SOCKMIG_LAB_NAME_MAX + 1], size_t *ret_n);

/* Number of nodes of the lab; -ENOENT if it does not exist. */
int sockmig_lab_node_count(const char *lab);

/* Check that the lab has the node (e.g. "n2"); *ret_index gets i (1..N) and
 * ret_netns, if not NULL, the namespace name (SOCKMIG_LAB_NETNS_NAME_SIZE). */
int sockmig_lab_node_lookup(const char *lab, const char *node, unsigned int *ret_index, char *ret_netns);

/* An O_CLOEXEC fd of the node's network namespace, for setns(). */
int sockmig_lab_node_netns_open(const char *lab, const char *node);

/* The node's own addresses, as made by up: "198.18.0.i" and "2001:2::i"
 * (no prefix length), into buf of at least 46 bytes. */
int sockmig_lab_node_address(unsigned int index, int family, char *buf, size_t size);

/* Move the calling process into the node, the way `ip netns exec` does
 * (network namespace, a private mount namespace, the node's /sys), to exec
 * a program next. Not undoable. */
int sockmig_lab_enter(const char *lab, const char *node);

struct sockmig_lab_addr {
	int family;              /* AF_INET or AF_INET6 */
	unsigned int prefixlen;
	char ifname[16];
	char text[46];           /* the address without prefix length */
};

struct sockmig_lab_node_info {
	char name[SOCKMIG_LAB_NODE_NAME_SIZE];
	char netns[SOCKMIG_LAB_NETNS_NAME_SIZE];
	bool present;                    /* its namespace exists */
	struct sockmig_lab_addr *addrs;  /* global-scope addresses, from the kernel */
	size_t n_addrs;
};

struct sockmig_lab_info {
	char name[SOCKMIG_LAB_NAME_MAX + 1];
	char state[16]; /* "up", "creating" (being made, or crashed), "unknown" (no record) */
	unsigned int n_nodes;
	struct sockmig_lab_node_info *nodes;
};

/* State of one lab, addresses read from each node's kernel. */
int sockmig_lab_info(const char *lab, struct sockmig_lab_info **ret);
void sockmig_lab_info_free(struct sockmig_lab_info *info);

#ifdef __cplusplus
}
#endif

#endif

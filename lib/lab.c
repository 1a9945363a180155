/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The lab: see include/sockmig/lab.h for what it is made of. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/rtnetlink.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "netns.h"
#include "rtnl.h"
#include "sockmig/lab.h"
#include "util.h"

#define LAB_PREFIX "sm."
#define LAB_STATE_FILE "state"
#define LAB_LOCK_FILE SOCKMIG_LAB_DIR "/.lock"
/* Links come up asynchronously (linkwatch); this is a generous bound. */
#define LAB_LINK_TIMEOUT_MS 5000
#define LAB_TERM_MS 2000
#define LAB_KILL_MS 2000

bool sockmig_lab_name_valid(const char *name)
{
	size_t len;

	if (!name)
		return false;
	len = strlen(name);
	if (len == 0 || len > SOCKMIG_LAB_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int check_name(const char *name)
{
	if (!sockmig_lab_name_valid(name))
		return sm_fail(-EINVAL, "'%s' is not a valid lab name (1 to %d letters, digits, '_' or '-')",
			       name ? name : "", SOCKMIG_LAB_NAME_MAX);
	return 0;
}

static void node_netns_name(const char *lab, unsigned int i, char *buf)
{
	snprintf(buf, SOCKMIG_LAB_NETNS_NAME_SIZE, LAB_PREFIX "%s.n%u", lab, i);
}

static void wire_netns_name(const char *lab, char *buf)
{
	snprintf(buf, SOCKMIG_LAB_NETNS_NAME_SIZE, LAB_PREFIX "%s.net", lab);
}

static void lab_path(const char *lab, const char *file, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s%s%s", SOCKMIG_LAB_DIR, lab, file ? "/" : "", file ? file : "");
}

static int mkdir_p_run(void)
{
	static const char *const dirs[] = { "/run/sockmig", SOCKMIG_LAB_DIR };

	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		if (mkdir(dirs[i], 0755) < 0 && errno != EEXIST)
			return sm_fail(-errno, "cannot create %s: %s", dirs[i], strerror(errno));
	}
	return 0;
}

/* One lock for every lab: up and down of different labs then only queue for
 * the short time they create or remove, and never interleave on the shared
 * /run/netns mount point. */
static int lab_lock(void)
{
	int r = mkdir_p_run(), fd;

	if (r < 0)
		return r;
	fd = open(LAB_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return sm_fail(-errno, "cannot open %s: %s", LAB_LOCK_FILE, strerror(errno));
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			r = -errno;
			close(fd);
			return sm_fail(r, "cannot lock %s: %s", LAB_LOCK_FILE, strerror(-r));
		}
	}
	return fd;
}

static void lab_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* ---- the record ---- */

struct lab_record {
	unsigned int nodes;
	char state[16];
};

static int record_write(const char *lab, unsigned int nodes, const char *state)
{
	char path[128], tmp[140], text[256];
	int fd, r;

	lab_path(lab, LAB_STATE_FILE, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	snprintf(text, sizeof(text),
		 "# sockmig lab record: what 'sockmig lab down' removes\n"
		 "version 1\nname %s\nnodes %u\nstate %s\n",
		 lab, nodes, state);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return sm_fail(-errno, "cannot write %s: %s", tmp, strerror(errno));
	r = sm_write_full(fd, text, strlen(text));
	close(fd);
	/* rename: a crash leaves the old record or the new, never half of one. */
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return sm_fail(r, "cannot write %s: %s", path, strerror(-r));
	}
	return 0;
}

static int record_read(const char *lab, struct lab_record *rec)
{
	char path[128], text[512], *line, *save = NULL;
	int r;

	lab_path(lab, LAB_STATE_FILE, path, sizeof(path));
	r = sm_read_file(path, text, sizeof(text));
	if (r < 0)
		return r;
	memset(rec, 0, sizeof(*rec));
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned int n;
		if (sscanf(line, "nodes %u", &n) == 1 && n <= SOCKMIG_LAB_NODES_MAX)
			rec->nodes = n;
		else if (!strncmp(line, "state ", 6))
			snprintf(rec->state, sizeof(rec->state), "%s", line + 6);
	}
	return 0;
}

/* 1 if the lab's directory exists, 0 if not, or -errno. */
static int record_dir_exists(const char *lab)
{
	char path[128];
	struct stat st;

	lab_path(lab, NULL, path, sizeof(path));
	if (stat(path, &st) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	return sm_fail(-errno, "cannot look at %s: %s", path, strerror(errno));
}

/*
 * Lock of one lab: flock on its directory. up and down hold it exclusively
 * (besides the global lock), lab exec shared while it looks the node up and
 * enters it, so that a process cannot slip into a node between down's kill
 * scan and the unmount. Returns the fd, -ENOENT if the lab has no directory.
 * A directory removed and made anew while we waited is not the lab's any
 * more: then the lock is taken again on the new one.
 */
static int lab_dir_lock(const char *lab, int op)
{
	char path[128];
	struct stat a, b;
	int fd, r;

	lab_path(lab, NULL, path, sizeof(path));
	for (;;) {
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				return -ENOENT;
			return sm_fail(-errno, "cannot open %s: %s", path, strerror(errno));
		}
		while (flock(fd, op) < 0) {
			if (errno != EINTR) {
				r = -errno;
				close(fd);
				return sm_fail(r, "cannot lock %s: %s", path, strerror(-r));
			}
		}
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			return fd;
		close(fd);
		if (stat(path, &b) < 0 && errno == ENOENT)
			return -ENOENT;
	}
}

/*
 * The namespaces of a lab are whatever /run/netns/sm.<LAB>.* holds: a lab
 * name has no '.', so the prefix cannot match another lab. Calls fn for each
 * name (the part after the prefix in *suffix); returns how many there are.
 */
static int lab_netns_each(const char *lab, int (*fn)(const char *netns, const char *suffix, void *arg), void *arg)
{
	char prefix[SOCKMIG_LAB_NETNS_NAME_SIZE];
	size_t plen;
	struct dirent *de;
	int n = 0, first_err = 0;
	DIR *d;

	snprintf(prefix, sizeof(prefix), LAB_PREFIX "%s.", lab);
	plen = strlen(prefix);
	d = opendir(SM_NETNS_RUN_DIR);
	if (!d)
		return errno == ENOENT ? 0 : sm_fail(-errno, "cannot read %s: %s", SM_NETNS_RUN_DIR, strerror(errno));
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, prefix, plen) || !de->d_name[plen])
			continue;
		n++;
		if (fn) {
			int r = fn(de->d_name, de->d_name + plen, arg);
			if (r < 0 && !first_err)
				first_err = r;
		}
	}
	closedir(d);
	return first_err ? first_err : n;
}

/* 1 if there is any trace of the lab, 0 if none, or -errno. */
static int lab_exists(const char *lab)
{
	int r = record_dir_exists(lab);

	if (r != 0)
		return r;
	r = lab_netns_each(lab, NULL, NULL);
	return r < 0 ? r : r > 0;
}

/* ---- fault injection ---- */

static long crash_after = -2; /* -2: environment not read yet; -1: off */
static long steps_done;

static void lab_step(void)
{
	if (crash_after == -2) {
		const char *s = getenv("SOCKMIG_LAB_CRASH_AFTER");
		crash_after = s && *s ? strtol(s, NULL, 10) : -1;
	}
	if (crash_after >= 0 && ++steps_done >= crash_after)
		kill(getpid(), SIGKILL);
}

/* ---- down ---- */

static int kill_in_netns(const char *netns, const char *suffix, void *arg)
{
	int fd = sm_netns_open(netns), r;

	(void)suffix;
	(void)arg;
	/* A file without a namespace on it holds no processes. */
	if (fd < 0)
		return fd == -ENOENT || fd == -ENOMEDIUM ? 0 : fd;
	r = sm_netns_kill_all(fd, LAB_TERM_MS, LAB_KILL_MS);
	close(fd);
	return r < 0 ? r : 0;
}

static int delete_netns(const char *netns, const char *suffix, void *arg)
{
	int r;

	(void)suffix;
	(void)arg;
	r = sm_netns_delete(netns);
	return r == -ENOENT ? 0 : r;
}

static int remove_record(const char *lab)
{
	char path[128], file[400];
	struct dirent *de;
	DIR *d;

	lab_path(lab, NULL, path, sizeof(path));
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : sm_fail(-errno, "cannot read %s: %s", path, strerror(errno));
	/* Flat by design: whatever a lab keeps (record, the cluster's secret,
	 * the nodes' configs, daemon logs and control sockets: cli/lab.c)
	 * lives directly in its directory. The daemons are gone by now: they
	 * run inside the nodes, and kill_in_netns() ended them (SIGTERM: they
	 * stop cleanly and remove their sockets themselves). */
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
		unlink(file);
	}
	closedir(d);
	if (rmdir(path) < 0 && errno != ENOENT)
		return sm_fail(-errno, "cannot remove %s: %s", path, strerror(errno));
	return 0;
}

/* Remove every trace of the lab; keeps going after errors, returns the
 * first. Caller holds the lab's lock, if it has a directory. */
static int lab_remove(const char *lab)
{
	int r, first = 0;

	/* Processes first: a namespace unmounted under a running process lives
	 * on invisibly, and its interfaces with it. So if one survives, nothing
	 * is removed, and down can be run again. */
	r = lab_netns_each(lab, kill_in_netns, NULL);
	if (r < 0)
		return r;
	r = lab_netns_each(lab, delete_netns, NULL);
	if (r < 0 && !first)
		first = r;
	r = remove_record(lab);
	if (r < 0 && !first)
		first = r;
	return first;
}

int sockmig_lab_down(const char *name)
{
	int lock, dir_lock = -1, r;

	r = check_name(name);
	if (r < 0)
		return r;
	lock = lab_lock();
	if (lock < 0)
		return lock;
	r = lab_exists(name);
	if (r == 0)
		r = sm_fail(-ENOENT, "lab '%s' does not exist", name);
	if (r < 0)
		goto out_unlock;
	/* -ENOENT: only namespaces are left; exec then takes the global lock. */
	dir_lock = lab_dir_lock(name, LOCK_EX);
	if (dir_lock < 0 && dir_lock != -ENOENT) {
		r = dir_lock;
		goto out_unlock;
	}
	r = lab_remove(name);
	lab_unlock(dir_lock);
out_unlock:
	lab_unlock(lock);
	return r;
}

/* ---- up ---- */

struct lab_build {
	const char *lab;
	unsigned int n;
	int wire_fd;
	struct sm_rtnl *wire;
	int *port_ifindex;       /* [n], in the wire namespace */
	struct sm_rtnl **node;   /* [n] */
	int *eth0_ifindex;       /* [n], each in its node */
};

static int build_wire(struct lab_build *b)
{
	char netns[SOCKMIG_LAB_NETNS_NAME_SIZE];
	int br, r;

	wire_netns_name(b->lab, netns);
	r = sm_netns_create(netns);
	if (r < 0)
		return r;
	lab_step();
	b->wire_fd = sm_netns_open(netns);
	if (b->wire_fd < 0)
		return b->wire_fd;
	/* The wire only bridges frames; without IPv6 of its own it sends no
	 * router solicitations or MLD reports into the nodes' traffic. */
	r = sm_netns_sysctl_write(b->wire_fd, "net/ipv6/conf/all/disable_ipv6", "1");
	if (r == 0)
		r = sm_netns_sysctl_write(b->wire_fd, "net/ipv6/conf/default/disable_ipv6", "1");
	if (r < 0)
		return r;
	r = sm_rtnl_open_in(b->wire_fd, &b->wire);
	if (r < 0)
		return r;
	br = sm_rtnl_bridge_add(b->wire, "br0");
	if (br < 0)
		return br;
	lab_step();
	return sm_rtnl_link_set_up(b->wire, br, true);
}

static int build_node(struct lab_build *b, unsigned int i, int br)
{
	char netns[SOCKMIG_LAB_NETNS_NAME_SIZE], port[IF_NAMESIZE], text[INET6_ADDRSTRLEN];
	struct sm_rtnl *node;
	int fd, lo, eth0, r;

	node_netns_name(b->lab, i, netns);
	r = sm_netns_create(netns);
	if (r < 0)
		return r;
	lab_step();
	fd = sm_netns_open(netns);
	if (fd < 0)
		return fd;
	/* Set before eth0 exists so it inherits: addresses usable at once,
	 * no one-second wait for duplicate address detection. */
	r = sm_netns_sysctl_write(fd, "net/ipv6/conf/all/accept_dad", "0");
	if (r == 0)
		r = sm_netns_sysctl_write(fd, "net/ipv6/conf/default/accept_dad", "0");
	if (r < 0)
		goto out_close;
	r = sm_rtnl_open_in(fd, &b->node[i - 1]);
	if (r < 0)
		goto out_close;
	node = b->node[i - 1];
	lo = sm_rtnl_link_index(node, "lo");
	r = lo < 0 ? lo : sm_rtnl_link_set_up(node, lo, true);
	if (r < 0)
		goto out_close;

	snprintf(port, sizeof(port), "n%u", i);
	r = sm_rtnl_veth_add(b->wire, port, "eth0", fd);
	if (r < 0)
		goto out_close;
	b->port_ifindex[i - 1] = r;
	lab_step();
	r = sm_rtnl_link_set_master(b->wire, b->port_ifindex[i - 1], br);
	if (r == 0)
		r = sm_rtnl_link_set_up(b->wire, b->port_ifindex[i - 1], true);
	if (r < 0)
		goto out_close;
	eth0 = sm_rtnl_link_index(node, "eth0");
	if (eth0 < 0) {
		r = eth0;
		goto out_close;
	}
	b->eth0_ifindex[i - 1] = eth0;
	r = sm_netns_sysctl_write(fd, "net/ipv6/conf/eth0/accept_dad", "0");
	if (r == 0)
		r = sm_rtnl_link_set_up(node, eth0, true);
	if (r < 0)
		goto out_close;
	for (int k = 0; k < 2; k++) {
		int family = k == 0 ? AF_INET : AF_INET6;
		struct sm_rtnl_addr a = { 0 };

		sockmig_lab_node_address(i, family, text, sizeof(text));
		r = sm_rtnl_addr_parse(text, &a);
		if (r < 0)
			goto out_close;
		a.prefixlen = family == AF_INET ? 24 : 64;
		a.ifindex = eth0;
		a.flags = family == AF_INET6 ? IFA_F_NODAD : 0;
		r = sm_rtnl_addr_add(node, &a);
		if (r < 0)
			goto out_close;
	}
	lab_step();
out_close:
	close(fd);
	return r;
}

static int build_lab(struct lab_build *b)
{
	int br, r;

	r = build_wire(b);
	if (r < 0)
		return r;
	br = sm_rtnl_link_index(b->wire, "br0");
	if (br < 0)
		return br;
	for (unsigned int i = 1; i <= b->n; i++) {
		r = build_node(b, i, br);
		if (r < 0)
			return r;
	}
	/* Links become operational asynchronously; until then packets are
	 * dropped, so the first connection of a test would stall on a
	 * retransmission. Wait for each side of every wire. */
	r = sm_rtnl_links_wait_running(b->wire, b->port_ifindex, b->n, LAB_LINK_TIMEOUT_MS);
	for (unsigned int i = 0; r == 0 && i < b->n; i++)
		r = sm_rtnl_links_wait_running(b->node[i], &b->eth0_ifindex[i], 1, LAB_LINK_TIMEOUT_MS);
	return r;
}

static void build_free(struct lab_build *b)
{
	if (b->node) {
		for (unsigned int i = 0; i < b->n; i++)
			sm_rtnl_close(b->node[i]);
	}
	free(b->node);
	free(b->port_ifindex);
	free(b->eth0_ifindex);
	sm_rtnl_close(b->wire);
	if (b->wire_fd >= 0)
		close(b->wire_fd);
}

int sockmig_lab_up(const struct sockmig_lab_config *cfg)
{
	const char *name = cfg && cfg->name ? cfg->name : SOCKMIG_LAB_DEFAULT_NAME;
	unsigned int n = cfg && cfg->nodes ? cfg->nodes : SOCKMIG_LAB_DEFAULT_NODES;
	struct lab_build b = { .lab = name, .n = n, .wire_fd = -1 };
	char path[128];
	int lock, dir_lock = -1, r;

	r = check_name(name);
	if (r < 0)
		return r;
	if (n > SOCKMIG_LAB_NODES_MAX)
		return sm_fail(-EINVAL, "a lab has 1 to %d nodes, not %u", SOCKMIG_LAB_NODES_MAX, n);
	lock = lab_lock();
	if (lock < 0)
		return lock;
	r = lab_exists(name);
	if (r > 0)
		r = sm_fail(-EEXIST, "lab '%s' already exists", name);
	if (r < 0)
		goto out_unlock;
	lab_path(name, NULL, path, sizeof(path));
	if (mkdir(path, 0755) < 0) {
		r = sm_fail(-errno, "cannot create %s: %s", path, strerror(errno));
		goto out_unlock;
	}
	/* exec into the lab waits until it is made (or removed again). */
	dir_lock = lab_dir_lock(name, LOCK_EX);
	if (dir_lock < 0) {
		r = dir_lock == -ENOENT ? sm_fail(-ENOENT, "%s vanished while lab '%s' was made", path, name)
					: dir_lock;
		goto out_remove;
	}
	/* The record comes first: from here on, down can undo whatever a
	 * crash leaves. */
	r = record_write(name, n, "creating");
	if (r < 0)
		goto out_remove;
	lab_step();

	b.port_ifindex = calloc(n, sizeof(*b.port_ifindex));
	b.eth0_ifindex = calloc(n, sizeof(*b.eth0_ifindex));
	b.node = calloc(n, sizeof(*b.node));
	if (!b.port_ifindex || !b.eth0_ifindex || !b.node) {
		r = sm_fail(-ENOMEM, "out of memory for lab '%s'", name);
		goto out_remove;
	}
	r = build_lab(&b);
	if (r == 0)
		r = record_write(name, n, "up");
	if (r < 0)
		goto out_remove;
	lab_step();
	build_free(&b);
	lab_unlock(dir_lock);
	lab_unlock(lock);
	return 0;

out_remove: {
	/* Keep the sentence that explains the failure, not one from cleanup. */
	char why[512], cleanup[512];
	int c;

	snprintf(why, sizeof(why), "%s", sockmig_error()[0] ? sockmig_error() : strerror(-r));
	build_free(&b);
	sockmig_error_clear();
	c = lab_remove(name);
	if (c < 0) {
		snprintf(cleanup, sizeof(cleanup), "%s", sockmig_error()[0] ? sockmig_error() : strerror(-c));
		sm_fail(r, "lab '%s' was not made: %s; cleanup failed too (%s); run 'sockmig lab down --name %s'",
			name, why, cleanup, name);
	} else {
		sm_fail(r, "lab '%s' was not made: %s", name, why);
	}
	lab_unlock(dir_lock);
}
out_unlock:
	lab_unlock(lock);
	return r;
}

/* ---- queries ---- */

static int lab_name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int list_add(char (**v)[SOCKMIG_LAB_NAME_MAX + 1], size_t *n, size_t *cap, const char *name, size_t len)
{
	if (len == 0 || len > SOCKMIG_LAB_NAME_MAX)
		return 0;
	for (size_t i = 0; i < *n; i++) {
		if (strlen((*v)[i]) == len && !strncmp((*v)[i], name, len))
			return 0;
	}
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 8;
		void *p = realloc(*v, c * sizeof(**v));
		if (!p)
			return -ENOMEM;
		*v = p;
		*cap = c;
	}
	memcpy((*v)[*n], name, len);
	(*v)[*n][len] = '\0';
	if (!sockmig_lab_name_valid((*v)[*n]))
		return 0;
	(*n)++;
	return 0;
}

int sockmig_lab_list(char (**ret)[SOCKMIG_LAB_NAME_MAX + 1], size_t *ret_n)
{
	char (*v)[SOCKMIG_LAB_NAME_MAX + 1] = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int r = 0;
	DIR *d;

	d = opendir(SOCKMIG_LAB_DIR);
	while (d && r == 0 && (de = readdir(d))) {
		if (de->d_name[0] != '.')
			r = list_add(&v, &n, &cap, de->d_name, strlen(de->d_name));
	}
	if (d)
		closedir(d);
	d = opendir(SM_NETNS_RUN_DIR);
	while (d && r == 0 && (de = readdir(d))) {
		const char *s = de->d_name, *dot;
		if (strncmp(s, LAB_PREFIX, strlen(LAB_PREFIX)))
			continue;
		s += strlen(LAB_PREFIX);
		dot = strchr(s, '.');
		if (dot)
			r = list_add(&v, &n, &cap, s, (size_t)(dot - s));
	}
	if (d)
		closedir(d);
	if (r < 0) {
		free(v);
		return sm_fail(r, "out of memory listing labs");
	}
	if (n)
		qsort(v, n, sizeof(*v), lab_name_cmp);
	*ret = v;
	*ret_n = n;
	return 0;
}

static int count_node_netns(const char *netns, const char *suffix, void *arg)
{
	unsigned int *max = arg, i;
	char end;

	(void)netns;
	if (sscanf(suffix, "n%u%c", &i, &end) == 1 && i > *max && i <= SOCKMIG_LAB_NODES_MAX)
		*max = i;
	return 0;
}

int sockmig_lab_node_count(const char *lab)
{
	struct lab_record rec;
	unsigned int max = 0;
	int r = check_name(lab);

	if (r < 0)
		return r;
	if (record_read(lab, &rec) == 0 && rec.nodes > 0)
		return (int)rec.nodes;
	/* No record (removed by hand?): the namespaces tell. */
	r = lab_netns_each(lab, count_node_netns, &max);
	if (r < 0)
		return r;
	if (r == 0) {
		r = record_dir_exists(lab);
		if (r < 0)
			return r;
		if (r == 0)
			return sm_fail(-ENOENT, "lab '%s' does not exist", lab);
	}
	return (int)max;
}

int sockmig_lab_node_lookup(const char *lab, const char *node, unsigned int *ret_index, char *ret_netns)
{
	int n = sockmig_lab_node_count(lab);
	unsigned long i = 0;
	char *end = NULL;

	if (n < 0)
		return n;
	if (node[0] == 'n' && node[1] >= '1' && node[1] <= '9') {
		errno = 0;
		i = strtoul(node + 1, &end, 10);
		if (errno || *end)
			i = 0;
	}
	if (i == 0 || i > (unsigned long)n) {
		if (n == 0)
			return sm_fail(-ENOENT, "lab '%s' has no node '%s' (it has no nodes)", lab, node);
		if (n == 1)
			return sm_fail(-ENOENT, "lab '%s' has no node '%s' (nodes: n1)", lab, node);
		return sm_fail(-ENOENT, "lab '%s' has no node '%s' (nodes: n1..n%d)", lab, node, n);
	}
	if (ret_index)
		*ret_index = (unsigned int)i;
	if (ret_netns)
		node_netns_name(lab, (unsigned int)i, ret_netns);
	return 0;
}

int sockmig_lab_node_netns_open(const char *lab, const char *node)
{
	char netns[SOCKMIG_LAB_NETNS_NAME_SIZE];
	int r = sockmig_lab_node_lookup(lab, node, NULL, netns), fd;

	if (r < 0)
		return r;
	fd = sm_netns_open(netns);
	if (fd == -ENOENT || fd == -ENOMEDIUM)
		return sm_fail(fd, "node %s of lab '%s' is gone (no namespace %s); the lab is incomplete", node, lab,
			       netns);
	return fd;
}

int sockmig_lab_node_address(unsigned int index, int family, char *buf, size_t size)
{
	if (index < 1 || index > SOCKMIG_LAB_NODES_MAX)
		return sm_fail(-EINVAL, "there is no lab node number %u", index);
	if (family == AF_INET)
		snprintf(buf, size, "198.18.0.%u", index);
	else if (family == AF_INET6)
		snprintf(buf, size, "2001:2::%x", index);
	else
		return sm_fail(-EAFNOSUPPORT, "lab nodes have no address of family %d", family);
	return 0;
}

int sockmig_lab_enter(const char *lab, const char *node)
{
	char netns[SOCKMIG_LAB_NETNS_NAME_SIZE];
	int lock, fd, r;

	r = check_name(lab);
	if (r < 0)
		return r;
	/* Held until we are inside: down's kill scan, which runs under the
	 * exclusive lock, then finds us. A lab left with namespaces only has
	 * no directory; its down holds the global lock throughout. */
	lock = lab_dir_lock(lab, LOCK_SH);
	if (lock == -ENOENT)
		lock = lab_lock();
	if (lock < 0)
		return lock;
	r = sockmig_lab_node_lookup(lab, node, NULL, netns);
	if (r < 0)
		goto out_unlock;
	fd = sockmig_lab_node_netns_open(lab, node);
	if (fd < 0) {
		r = fd;
		goto out_unlock;
	}
	r = sm_netns_enter_for_exec(fd, netns);
	close(fd);
out_unlock:
	lab_unlock(lock);
	return r;
}

static int node_info_fill(struct sockmig_lab_node_info *ni)
{
	struct sm_rtnl_addr *addrs = NULL;
	struct sm_rtnl *r = NULL;
	size_t n = 0;
	int fd, err;

	fd = sm_netns_open(ni->netns);
	if (fd < 0)
		return fd == -ENOENT || fd == -ENOMEDIUM ? 0 : fd;
	ni->present = true;
	err = sm_rtnl_open_in(fd, &r);
	close(fd);
	if (err < 0)
		return err;
	err = sm_rtnl_addr_dump(r, AF_UNSPEC, 0, &addrs, &n);
	if (err < 0)
		goto out;
	ni->addrs = calloc(n ? n : 1, sizeof(*ni->addrs));
	if (!ni->addrs) {
		err = sm_fail(-ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct sockmig_lab_addr *o = &ni->addrs[ni->n_addrs];

		if (addrs[i].scope != RT_SCOPE_UNIVERSE)
			continue;
		o->family = addrs[i].family;
		o->prefixlen = addrs[i].prefixlen;
		inet_ntop(o->family, &addrs[i].addr, o->text, sizeof(o->text));
		if (sm_rtnl_link_name(r, addrs[i].ifindex, o->ifname) < 0)
			snprintf(o->ifname, sizeof(o->ifname), "if%d", addrs[i].ifindex);
		ni->n_addrs++;
	}
out:
	free(addrs);
	sm_rtnl_close(r);
	return err;
}

void sockmig_lab_info_free(struct sockmig_lab_info *info)
{
	if (!info)
		return;
	for (unsigned int i = 0; info->nodes && i < info->n_nodes; i++)
		free(info->nodes[i].addrs);
	free(info->nodes);
	free(info);
}

int sockmig_lab_info(const char *lab, struct sockmig_lab_info **ret)
{
	struct sockmig_lab_info *info;
	struct lab_record rec;
	int n = sockmig_lab_node_count(lab), r;

	if (n < 0)
		return n;
	info = calloc(1, sizeof(*info));
	if (!info)
		return sm_fail(-ENOMEM, "out of memory");
	snprintf(info->name, sizeof(info->name), "%s", lab);
	if (record_read(lab, &rec) == 0 && rec.state[0])
		snprintf(info->state, sizeof(info->state), "%s", rec.state);
	else
		snprintf(info->state, sizeof(info->state), "unknown");
	info->nodes = calloc(n ? (size_t)n : 1, sizeof(*info->nodes));
	if (!info->nodes) {
		sockmig_lab_info_free(info);
		return sm_fail(-ENOMEM, "out of memory");
	}
	info->n_nodes = (unsigned int)n;
	for (unsigned int i = 0; i < info->n_nodes; i++) {
		struct sockmig_lab_node_info *ni = &info->nodes[i];

		snprintf(ni->name, sizeof(ni->name), "n%u", i + 1);
		node_netns_name(lab, i + 1, ni->netns);
		r = node_info_fill(ni);
		if (r < 0) {
			sockmig_lab_info_free(info);
			return r;
		}
	}
	*ret = info;
	return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <net/if.h> /* before linux/if.h, which then defers to it */
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_bridge.h>
#include <linux/fib_rules.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <libmnl/libmnl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "netns.h"
#include "rtnl.h"
#include "util.h"

/* Dumps come in multipart messages of up to 32 KiB with default settings. */
#define RTNL_BUF_SIZE 32768

struct sm_rtnl {
	struct mnl_socket *nl;
	unsigned int portid;
	uint32_t seq;
	/* Link notifications seen while waiting for replies: a waiter that
	 * joined RTNLGRP_LINK must not sleep through one we swallowed. */
	unsigned long notified;
	char ext_msg[160]; /* the kernel's extended ack text of the last error */
	char buf[RTNL_BUF_SIZE];
};

typedef int (*rtnl_cb)(const struct nlmsghdr *nlh, void *data);

static int rtnl_setup(struct mnl_socket *nl, struct sm_rtnl **ret)
{
	struct sm_rtnl *r;
	int one = 1;

	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int err = -errno;
		mnl_socket_close(nl);
		return sm_fail(err, "cannot bind a netlink socket: %s", strerror(-err));
	}
	/* Error text from the kernel, and acks without a copy of our request. */
	mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, sizeof(one));
	r = calloc(1, sizeof(*r));
	if (!r) {
		mnl_socket_close(nl);
		return sm_fail(-ENOMEM, "out of memory for a netlink handle");
	}
	r->nl = nl;
	r->portid = mnl_socket_get_portid(nl);
	r->seq = (uint32_t)sm_now_ns();
	*ret = r;
	return 0;
}

int sm_rtnl_open(struct sm_rtnl **ret)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);

	if (!nl)
		return sm_fail(-errno, "cannot open a netlink socket: %s", strerror(errno));
	return rtnl_setup(nl, ret);
}

int sm_rtnl_open_in(int nsfd, struct sm_rtnl **ret)
{
	struct mnl_socket *nl;
	int fd = sm_netns_socket(nsfd, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);

	if (fd < 0)
		return fd;
	nl = mnl_socket_fdopen(fd);
	if (!nl) {
		int err = -errno;
		close(fd);
		return sm_fail(err, "cannot use a netlink socket: %s", strerror(-err));
	}
	return rtnl_setup(nl, ret);
}

void sm_rtnl_close(struct sm_rtnl *r)
{
	if (!r)
		return;
	mnl_socket_close(r->nl);
	free(r);
}

static void rtnl_ext_ack(struct sm_rtnl *r, const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *attr;
	size_t off = sizeof(*e);

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS) || mnl_nlmsg_get_payload_len(nlh) < off)
		return;
	/* Without NETLINK_CAP_ACK honoured, our request follows the header. */
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
	if (mnl_nlmsg_get_payload_len(nlh) <= off)
		return;
	mnl_attr_for_each_payload((const void *)((const char *)e + off), mnl_nlmsg_get_payload_len(nlh) - off) {
		if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
			snprintf(r->ext_msg, sizeof(r->ext_msg), "%s", mnl_attr_get_str(attr));
	}
}

/* Read everything that is queued without blocking; count notifications. */
static void rtnl_drain(struct sm_rtnl *r)
{
	for (int i = 0; i < 64; i++) {
		ssize_t n = recv(mnl_socket_get_fd(r->nl), r->buf, sizeof(r->buf), MSG_DONTWAIT);
		if (n <= 0)
			return;
		r->notified++;
	}
}

/*
 * Send nlh (a request or a dump) and read until its ack or the end of the
 * dump, handing each reply to cb. Anything else on the socket (multicast
 * notifications, stale replies) is skipped. Returns 0 or -errno, the kernel's
 * explanation, if any, in r->ext_msg.
 */
static int rtnl_talk(struct sm_rtnl *r, struct nlmsghdr *nlh, rtnl_cb cb, void *data)
{
	uint32_t seq = ++r->seq;
	int cb_err = 0;

	r->ext_msg[0] = '\0';
	nlh->nlmsg_seq = seq;
	nlh->nlmsg_flags |= NLM_F_ACK;
	if (mnl_socket_sendto(r->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = recv(mnl_socket_get_fd(r->nl), r->buf, sizeof(r->buf), 0);
		int left;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		left = (int)n;
		for (const struct nlmsghdr *m = (const struct nlmsghdr *)r->buf; mnl_nlmsg_ok(m, left);
		     m = mnl_nlmsg_next(m, &left)) {
			if (m->nlmsg_seq != seq || m->nlmsg_pid != r->portid) {
				if (m->nlmsg_seq == 0)
					r->notified++;
				continue;
			}
			if (m->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
				if (mnl_nlmsg_get_payload_len(m) < sizeof(*e))
					return -EBADMSG;
				if (e->error)
					rtnl_ext_ack(r, m);
				return e->error ? e->error : cb_err;
			}
			if (m->nlmsg_type == NLMSG_DONE) {
				int err = 0;
				if (mnl_nlmsg_get_payload_len(m) >= sizeof(int))
					memcpy(&err, mnl_nlmsg_get_payload(m), sizeof(err));
				return err ? err : cb_err;
			}
			if (cb && !cb_err)
				cb_err = cb(m, data);
		}
	}
}

/* "'eth0'" or "index 7" for error sentences. */
static const char *ifdesc(struct sm_rtnl *r, int ifindex, char *buf, size_t size)
{
	char name[IF_NAMESIZE];
	char saved[sizeof(r->ext_msg)];

	memcpy(saved, r->ext_msg, sizeof(saved));
	if (sm_rtnl_link_name(r, ifindex, name) == 0)
		snprintf(buf, size, "'%s'", name);
	else
		snprintf(buf, size, "index %d", ifindex);
	memcpy(r->ext_msg, saved, sizeof(saved));
	return buf;
}

/* strerror plus the kernel's own words when it gave some. */
static const char *rtnl_cause(struct sm_rtnl *r, int err, char *buf, size_t size)
{
	if (r->ext_msg[0])
		snprintf(buf, size, "%s (%s)", strerror(-err), r->ext_msg);
	else
		snprintf(buf, size, "%s", strerror(-err));
	return buf;
}

static struct nlmsghdr *link_msg(struct sm_rtnl *r, uint16_t type, uint16_t flags, int ifindex,
				 struct ifinfomsg **ret_ifi)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(r->buf);
	struct ifinfomsg *ifi;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	if (ret_ifi)
		*ret_ifi = ifi;
	return nlh;
}

struct link_info {
	int ifindex;
	char name[IF_NAMESIZE];
	uint8_t operstate;
	bool is_bridge_port;
	uint8_t port_state;
};

static int slave_data_cb(const struct nlattr *attr, void *data)
{
	struct link_info *li = data;

	if (mnl_attr_get_type(attr) == IFLA_BRPORT_STATE && mnl_attr_validate(attr, MNL_TYPE_U8) == 0)
		li->port_state = mnl_attr_get_u8(attr);
	return MNL_CB_OK;
}

static int linkinfo_cb(const struct nlattr *attr, void *data)
{
	struct link_info *li = data;

	switch (mnl_attr_get_type(attr)) {
	case IFLA_INFO_SLAVE_KIND:
		if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0 && !strcmp(mnl_attr_get_str(attr), "bridge"))
			li->is_bridge_port = true;
		break;
	case IFLA_INFO_SLAVE_DATA:
		mnl_attr_parse_nested(attr, slave_data_cb, li);
		break;
	}
	return MNL_CB_OK;
}

static int link_attr_cb(const struct nlattr *attr, void *data)
{
	struct link_info *li = data;

	switch (mnl_attr_get_type(attr)) {
	case IFLA_IFNAME:
		if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
			snprintf(li->name, sizeof(li->name), "%s", mnl_attr_get_str(attr));
		break;
	case IFLA_OPERSTATE:
		if (mnl_attr_validate(attr, MNL_TYPE_U8) == 0)
			li->operstate = mnl_attr_get_u8(attr);
		break;
	case IFLA_LINKINFO:
		mnl_attr_parse_nested(attr, linkinfo_cb, li);
		break;
	}
	return MNL_CB_OK;
}

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	struct link_info *li = data;

	if (nlh->nlmsg_type != RTM_NEWLINK)
		return 0;
	li->ifindex = ifi->ifi_index;
	mnl_attr_parse(nlh, sizeof(*ifi), link_attr_cb, li);
	return 0;
}

static int link_get(struct sm_rtnl *r, int ifindex, const char *ifname, struct link_info *li)
{
	struct nlmsghdr *nlh = link_msg(r, RTM_GETLINK, 0, ifindex, NULL);

	if (ifname)
		mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
	memset(li, 0, sizeof(*li));
	return rtnl_talk(r, nlh, link_cb, li);
}

int sm_rtnl_link_index(struct sm_rtnl *r, const char *ifname)
{
	struct link_info li;
	int err;

	if (strlen(ifname) >= IF_NAMESIZE)
		return sm_fail(-EINVAL, "interface name '%s' is longer than %d characters", ifname, IF_NAMESIZE - 1);
	err = link_get(r, 0, ifname, &li);
	if (err < 0)
		return sm_fail(err, "no interface '%s': %s", ifname, strerror(-err));
	return li.ifindex;
}

int sm_rtnl_link_name(struct sm_rtnl *r, int ifindex, char *buf)
{
	struct link_info li;
	int err = link_get(r, ifindex, NULL, &li);

	if (err < 0)
		return sm_fail(err, "no interface with index %d: %s", ifindex, strerror(-err));
	memcpy(buf, li.name, IF_NAMESIZE);
	return 0;
}

int sm_rtnl_bridge_add(struct sm_rtnl *r, const char *name)
{
	struct nlmsghdr *nlh = link_msg(r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0, NULL);
	struct nlattr *linkinfo, *data;
	char cause[256];
	int err;

	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	mnl_attr_put_u32(nlh, IFLA_BR_STP_STATE, 0);
	mnl_attr_put_u8(nlh, IFLA_BR_MCAST_SNOOPING, 0);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	err = rtnl_talk(r, nlh, NULL, NULL);
	if (err < 0)
		return sm_fail(err, "cannot create bridge '%s': %s", name, rtnl_cause(r, err, cause, sizeof(cause)));
	return sm_rtnl_link_index(r, name);
}

int sm_rtnl_veth_add(struct sm_rtnl *r, const char *name, const char *peer, int peer_nsfd)
{
	struct nlmsghdr *nlh = link_msg(r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0, NULL);
	struct nlattr *linkinfo, *data, *peer_attr;
	struct ifinfomsg *peer_ifi;
	char cause[256];
	int err;

	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	/* VETH_INFO_PEER carries a whole ifinfomsg and then its attributes. */
	peer_attr = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	peer_ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*peer_ifi));
	peer_ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	if (peer_nsfd >= 0)
		mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_nsfd);
	mnl_attr_nest_end(nlh, peer_attr);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	err = rtnl_talk(r, nlh, NULL, NULL);
	if (err < 0)
		return sm_fail(err, "cannot create veth pair '%s'/'%s': %s", name, peer,
			       rtnl_cause(r, err, cause, sizeof(cause)));
	return sm_rtnl_link_index(r, name);
}

int sm_rtnl_link_set_up(struct sm_rtnl *r, int ifindex, bool up)
{
	struct ifinfomsg *ifi;
	struct nlmsghdr *nlh = link_msg(r, RTM_NEWLINK, 0, ifindex, &ifi);
	char cause[256], desc[32];
	int err;

	ifi->ifi_change = IFF_UP;
	ifi->ifi_flags = up ? IFF_UP : 0;
	err = rtnl_talk(r, nlh, NULL, NULL);
	if (err < 0)
		return sm_fail(err, "cannot set interface %s %s: %s", ifdesc(r, ifindex, desc, sizeof(desc)),
			       up ? "up" : "down", rtnl_cause(r, err, cause, sizeof(cause)));
	return 0;
}

int sm_rtnl_link_set_master(struct sm_rtnl *r, int ifindex, int master_ifindex)
{
	struct nlmsghdr *nlh = link_msg(r, RTM_NEWLINK, 0, ifindex, NULL);
	char cause[256], desc[32], mdesc[32];
	int err;

	mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master_ifindex);
	err = rtnl_talk(r, nlh, NULL, NULL);
	if (err < 0)
		return sm_fail(err, "cannot attach interface %s to %s: %s", ifdesc(r, ifindex, desc, sizeof(desc)),
			       master_ifindex ? ifdesc(r, master_ifindex, mdesc, sizeof(mdesc)) : "no master",
			       rtnl_cause(r, err, cause, sizeof(cause)));
	return 0;
}

int sm_rtnl_link_del(struct sm_rtnl *r, int ifindex)
{
	char cause[256], desc[32];
	int err;

	ifdesc(r, ifindex, desc, sizeof(desc));
	err = rtnl_talk(r, link_msg(r, RTM_DELLINK, 0, ifindex, NULL), NULL, NULL);
	if (err < 0)
		return sm_fail(err, "cannot delete interface %s: %s", desc, rtnl_cause(r, err, cause, sizeof(cause)));
	return 0;
}

static bool link_running(const struct link_info *li)
{
	return li->operstate == IF_OPER_UP && (!li->is_bridge_port || li->port_state == BR_STATE_FORWARDING);
}

int sm_rtnl_links_wait_running(struct sm_rtnl *r, const int *ifindexes, size_t n, int timeout_ms)
{
	uint64_t deadline = sm_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	unsigned int group = RTNLGRP_LINK;
	struct link_info li = { 0 };
	int fd = mnl_socket_get_fd(r->nl), err = 0;
	char desc[32];

	if (mnl_socket_setsockopt(r->nl, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0)
		return sm_fail(-errno, "cannot listen for link changes: %s", strerror(errno));
	/* Bounded twice: by the deadline and by the number of wake-ups. */
	for (int round = 0; round < 10000; round++) {
		unsigned long seen = r->notified;
		size_t i;

		for (i = 0; i < n; i++) {
			err = link_get(r, ifindexes[i], NULL, &li);
			if (err < 0 || !link_running(&li))
				break;
		}
		if (err < 0 || i == n)
			break;
		err = -ETIMEDOUT;
		if (r->notified == seen) {
			uint64_t now = sm_now_ns();
			struct pollfd pfd = { .fd = fd, .events = POLLIN };

			if (now >= deadline)
				break;
			if (poll(&pfd, 1, (int)((deadline - now) / 1000000ull) + 1) < 0 && errno != EINTR) {
				err = -errno;
				break;
			}
			rtnl_drain(r);
		}
	}
	mnl_socket_setsockopt(r->nl, NETLINK_DROP_MEMBERSHIP, &group, sizeof(group));
	rtnl_drain(r);
	if (err == -ETIMEDOUT)
		return sm_fail(err, "interface %s is not running after %d ms (operstate %u%s)",
			       ifdesc(r, li.ifindex, desc, sizeof(desc)), timeout_ms, li.operstate,
			       li.is_bridge_port && li.port_state != BR_STATE_FORWARDING ? ", bridge port not forwarding" : "");
	if (err < 0)
		return sm_fail(err, "cannot read the state of an interface: %s", strerror(-err));
	return 0;
}

/* ---- addresses ---- */

int sm_rtnl_addr_parse(const char *s, struct sm_rtnl_addr *ret)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t len = slash ? (size_t)(slash - s) : strlen(s);
	struct sm_rtnl_addr a = { 0 };
	unsigned long plen;
	char *end;

	if (len == 0 || len >= sizeof(host))
		return sm_fail(-EINVAL, "'%s' is not an IP address", s);
	memcpy(host, s, len);
	host[len] = '\0';
	if (inet_pton(AF_INET, host, &a.addr.v4) == 1)
		a.family = AF_INET;
	else if (inet_pton(AF_INET6, host, &a.addr.v6) == 1)
		a.family = AF_INET6;
	else
		return sm_fail(-EINVAL, "'%s' is not an IP address", s);
	plen = a.family == AF_INET ? 32 : 128;
	if (slash) {
		unsigned long max = plen;
		errno = 0;
		plen = strtoul(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || plen > max)
			return sm_fail(-EINVAL, "'%s' has an invalid prefix length", s);
	}
	a.prefixlen = (uint8_t)plen;
	*ret = a;
	return 0;
}

const char *sm_rtnl_addr_format(const struct sm_rtnl_addr *a, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";

	inet_ntop(a->family, &a->addr, host, sizeof(host));
	snprintf(buf, size, "%s/%u", host, a->prefixlen);
	return buf;
}

static size_t addr_len(int family)
{
	return family == AF_INET ? sizeof(struct in_addr) : sizeof(struct in6_addr);
}

static struct nlmsghdr *addr_msg(struct sm_rtnl *r, uint16_t type, uint16_t flags, const struct sm_rtnl_addr *a)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(r->buf);
	struct ifaddrmsg *ifa;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)a->family;
	ifa->ifa_prefixlen = a->prefixlen;
	ifa->ifa_flags = (uint8_t)a->flags;
	ifa->ifa_scope = a->scope;
	ifa->ifa_index = (uint32_t)a->ifindex;
	/* For IPv4 IFA_LOCAL is the address and IFA_ADDRESS the peer; on a
	 * broadcast link both are the same, as `ip addr add` sends them. */
	mnl_attr_put(nlh, IFA_LOCAL, addr_len(a->family), &a->addr);
	mnl_attr_put(nlh, IFA_ADDRESS, addr_len(a->family), &a->addr);
	return nlh;
}

static int addr_check(const struct sm_rtnl_addr *a, const char *what)
{
	if ((a->family != AF_INET && a->family != AF_INET6) || a->ifindex <= 0)
		return sm_fail(-EINVAL, "cannot %s an address of family %d on interface index %d", what, a->family,
			       a->ifindex);
	return 0;
}

static int addr_new(struct sm_rtnl *r, const struct sm_rtnl_addr *a, uint16_t how)
{
	char cause[256], desc[32], text[SM_RTNL_ADDR_STRLEN];
	struct nlmsghdr *nlh;
	int err = addr_check(a, "add");

	if (err < 0)
		return err;
	nlh = addr_msg(r, RTM_NEWADDR, NLM_F_CREATE | how, a);
	if (a->flags)
		mnl_attr_put_u32(nlh, IFA_FLAGS, a->flags);
	/* Without IFA_CACHEINFO the address lives forever (a change with
	 * NLM_F_REPLACE makes a temporary one permanent). */
	if (a->valid_s) {
		struct ifa_cacheinfo ci = { .ifa_prefered = a->valid_s, .ifa_valid = a->valid_s };

		mnl_attr_put(nlh, IFA_CACHEINFO, sizeof(ci), &ci);
	}
	err = rtnl_talk(r, nlh, NULL, NULL);
	if (err < 0)
		return sm_fail(err, "cannot add address %s to interface %s: %s", sm_rtnl_addr_format(a, text, sizeof(text)),
			       ifdesc(r, a->ifindex, desc, sizeof(desc)), rtnl_cause(r, err, cause, sizeof(cause)));
	return 0;
}

int sm_rtnl_addr_add(struct sm_rtnl *r, const struct sm_rtnl_addr *a)
{
	return addr_new(r, a, NLM_F_EXCL);
}

int sm_rtnl_addr_change(struct sm_rtnl *r, const struct sm_rtnl_addr *a)
{
	return addr_new(r, a, NLM_F_REPLACE);
}

int sm_rtnl_addr_del(struct sm_rtnl *r, const struct sm_rtnl_addr *a)
{
	char cause[256], desc[32], text[SM_RTNL_ADDR_STRLEN];
	int err = addr_check(a, "delete");

	if (err < 0)
		return err;
	err = rtnl_talk(r, addr_msg(r, RTM_DELADDR, 0, a), NULL, NULL);
	if (err < 0)
		return sm_fail(err, "cannot delete address %s from interface %s: %s",
			       sm_rtnl_addr_format(a, text, sizeof(text)), ifdesc(r, a->ifindex, desc, sizeof(desc)),
			       rtnl_cause(r, err, cause, sizeof(cause)));
	return 0;
}

struct addr_dump {
	int ifindex;
	struct sm_rtnl_addr *v;
	size_t n, cap;
};

struct addr_attrs {
	const struct nlattr *local, *address, *flags;
};

static int addr_attr_cb(const struct nlattr *attr, void *data)
{
	struct addr_attrs *aa = data;

	switch (mnl_attr_get_type(attr)) {
	case IFA_LOCAL:
		aa->local = attr;
		break;
	case IFA_ADDRESS:
		aa->address = attr;
		break;
	case IFA_FLAGS:
		if (mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
			aa->flags = attr;
		break;
	}
	return MNL_CB_OK;
}

static int addr_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	struct addr_dump *d = data;
	struct addr_attrs aa = { 0 };
	const struct nlattr *which;
	struct sm_rtnl_addr *a;

	if (nlh->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifa))
		return 0;
	if ((ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) ||
	    (d->ifindex && (int)ifa->ifa_index != d->ifindex))
		return 0;
	mnl_attr_parse(nlh, sizeof(*ifa), addr_attr_cb, &aa);
	which = aa.local ? aa.local : aa.address;
	if (!which || mnl_attr_get_payload_len(which) != addr_len(ifa->ifa_family))
		return 0;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct sm_rtnl_addr *v = realloc(d->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	a = &d->v[d->n++];
	memset(a, 0, sizeof(*a));
	a->family = ifa->ifa_family;
	a->ifindex = (int)ifa->ifa_index;
	a->prefixlen = ifa->ifa_prefixlen;
	a->scope = ifa->ifa_scope;
	a->flags = aa.flags ? mnl_attr_get_u32(aa.flags) : ifa->ifa_flags;
	memcpy(&a->addr, mnl_attr_get_payload(which), addr_len(a->family));
	return 0;
}

int sm_rtnl_addr_dump(struct sm_rtnl *r, int family, int ifindex, struct sm_rtnl_addr **ret, size_t *ret_n)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(r->buf);
	struct addr_dump d = { .ifindex = ifindex };
	struct ifaddrmsg *ifa;
	int err;

	nlh->nlmsg_type = RTM_GETADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)family;
	err = rtnl_talk(r, nlh, addr_cb, &d);
	if (err < 0) {
		free(d.v);
		return sm_fail(err, "cannot list addresses: %s", strerror(-err));
	}
	*ret = d.v;
	*ret_n = d.n;
	return 0;
}

/* ---- policy rules ---- */

static const char *family_name(int family)
{
	return family == AF_INET ? "IPv4" : family == AF_INET6 ? "IPv6" : "unknown family";
}

static const char *rule_format(const struct sm_rtnl_rule *rule, char *buf, size_t size)
{
	snprintf(buf, size, "%s fwmark 0x%x/0x%x lookup %u pref %u", family_name(rule->family), rule->fwmark,
		 rule->fwmask, rule->table, rule->priority);
	return buf;
}

static struct nlmsghdr *rule_msg(struct sm_rtnl *r, uint16_t type, uint16_t flags, const struct sm_rtnl_rule *rule)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(r->buf);
	struct fib_rule_hdr *frh;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	frh = mnl_nlmsg_put_extra_header(nlh, sizeof(*frh));
	frh->family = (uint8_t)rule->family;
	frh->action = FR_ACT_TO_TBL;
	/* Tables above 255 only fit the attribute. */
	frh->table = rule->table < 256 ? (uint8_t)rule->table : RT_TABLE_UNSPEC;
	mnl_attr_put_u32(nlh, FRA_TABLE, rule->table);
	mnl_attr_put_u32(nlh, FRA_PRIORITY, rule->priority);
	mnl_attr_put_u32(nlh, FRA_FWMARK, rule->fwmark);
	mnl_attr_put_u32(nlh, FRA_FWMASK, rule->fwmask);
	return nlh;
}

int sm_rtnl_rule_add(struct sm_rtnl *r, const struct sm_rtnl_rule *rule)
{
	char cause[256], desc[96];
	int err;

	if (rule->family != AF_INET && rule->family != AF_INET6)
		return sm_fail(-EINVAL, "cannot add a policy rule of family %d", rule->family);
	err = rtnl_talk(r, rule_msg(r, RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, rule), NULL, NULL);
	if (err < 0)
		return sm_fail(err, "cannot add policy rule %s: %s", rule_format(rule, desc, sizeof(desc)),
			       rtnl_cause(r, err, cause, sizeof(cause)));
	return 0;
}

int sm_rtnl_rule_del(struct sm_rtnl *r, const struct sm_rtnl_rule *rule)
{
	char cause[256], desc[96];
	int err;

	if (rule->family != AF_INET && rule->family != AF_INET6)
		return sm_fail(-EINVAL, "cannot delete a policy rule of family %d", rule->family);
	err = rtnl_talk(r, rule_msg(r, RTM_DELRULE, 0, rule), NULL, NULL);
	if (err < 0)
		return sm_fail(err, "cannot delete policy rule %s: %s", rule_format(rule, desc, sizeof(desc)),
			       rtnl_cause(r, err, cause, sizeof(cause)));
	return 0;
}

/* ---- routes ---- */

static const char *route_format(const struct sm_rtnl_route *rt, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";

	inet_ntop(rt->family, &rt->dst, host, sizeof(host));
	snprintf(buf, size, "%s%s/%u table %u", rt->type == RTN_LOCAL ? "local " : "", host, rt->dst_len, rt->table);
	return buf;
}

static struct nlmsghdr *route_msg(struct sm_rtnl *r, uint16_t type, uint16_t flags, const struct sm_rtnl_route *rt)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(r->buf);
	struct rtmsg *rtm;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)rt->family;
	rtm->rtm_dst_len = rt->dst_len;
	rtm->rtm_table = rt->table < 256 ? (uint8_t)rt->table : RT_TABLE_UNSPEC;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_type = rt->type;
	rtm->rtm_scope = rt->type == RTN_LOCAL ? RT_SCOPE_HOST : RT_SCOPE_UNIVERSE;
	mnl_attr_put_u32(nlh, RTA_TABLE, rt->table);
	if (rt->dst_len)
		mnl_attr_put(nlh, RTA_DST, addr_len(rt->family), &rt->dst);
	if (rt->oif > 0)
		mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)rt->oif);
	return nlh;
}

int sm_rtnl_route_replace(struct sm_rtnl *r, const struct sm_rtnl_route *rt)
{
	char cause[256], desc[96];
	int err;

	if (rt->family != AF_INET && rt->family != AF_INET6)
		return sm_fail(-EINVAL, "cannot add a route of family %d", rt->family);
	err = rtnl_talk(r, route_msg(r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, rt), NULL, NULL);
	if (err < 0)
		return sm_fail(err, "cannot add route %s: %s", route_format(rt, desc, sizeof(desc)),
			       rtnl_cause(r, err, cause, sizeof(cause)));
	return 0;
}

int sm_rtnl_route_del(struct sm_rtnl *r, const struct sm_rtnl_route *rt)
{
	char cause[256], desc[96];
	int err;

	if (rt->family != AF_INET && rt->family != AF_INET6)
		return sm_fail(-EINVAL, "cannot delete a route of family %d", rt->family);
	err = rtnl_talk(r, route_msg(r, RTM_DELROUTE, 0, rt), NULL, NULL);
	if (err < 0)
		return sm_fail(err, "cannot delete route %s: %s", route_format(rt, desc, sizeof(desc)),
			       rtnl_cause(r, err, cause, sizeof(cause)));
	return 0;
}

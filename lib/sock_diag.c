/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sock_diag lookups for what no getsockopt tells: the peer of a socket in
 * SYN_SENT (getpeername() answers ENOTCONN until the handshake completes).
 * The query runs in the socket's own network namespace (SIOCGSKNS), which
 * need not be the calling thread's.
 */
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sock.h"
#include "util.h"

/* A NETLINK_SOCK_DIAG socket in fd's network namespace. */
static int diag_open(int fd)
{
	_cleanup_close_ int nsfd = -1, self = -1;
	struct stat a, b;
	int nl;

	nsfd = ioctl(fd, SIOCGSKNS);
	if (nsfd < 0)
		return sm_fail(-errno, "socket fd %d: cannot get its network namespace: %s", fd, strerror(errno));
	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return sm_fail(-errno, "cannot open this thread's network namespace: %s", strerror(errno));
	if (fstat(nsfd, &a) < 0 || fstat(self, &b) < 0)
		return sm_fail(-errno, "cannot compare network namespaces: %s", strerror(errno));
	if (a.st_ino != b.st_ino && setns(nsfd, CLONE_NEWNET) < 0)
		return sm_fail(-errno, "socket fd %d: cannot enter its network namespace: %s", fd, strerror(errno));
	nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		nl = sm_fail(-errno, "cannot open a sock_diag socket: %s", strerror(errno));
	if (a.st_ino != b.st_ino && setns(self, CLONE_NEWNET) < 0) {
		/* cannot happen short of a kernel bug; never leave the thread elsewhere */
		abort();
	}
	return nl;
}

int sm_diag_tcp_peer(int fd, int family, uint16_t local_port, uint32_t states,
		     struct sockmig_endpoint *ret)
{
	_cleanup_close_ int nl = -1;
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg = {
		.nlh = { .nlmsg_len = sizeof(msg), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
		.req = { .sdiag_family = (uint8_t)family, .sdiag_protocol = IPPROTO_TCP,
			 .idiag_states = states },
	};
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	uint8_t buf[16384] __attribute__((aligned(4)));
	struct stat stt;
	ssize_t n;

	if (fstat(fd, &stt) < 0)
		return sm_fail(-errno, "socket fd %d: fstat: %s", fd, strerror(errno));
	nl = diag_open(fd);
	if (nl < 0)
		return nl;
	msg.req.id.idiag_sport = htons(local_port);
	if (sendto(nl, &msg, sizeof(msg), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return sm_fail(-errno, "sock_diag request: %s", strerror(errno));
	for (;;) {
		n = recv(nl, buf, sizeof(buf), 0);
		if (n < 0)
			return sm_fail(-errno, "sock_diag answer: %s", strerror(errno));
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			struct inet_diag_msg *m = NLMSG_DATA(h);

			if (h->nlmsg_type == NLMSG_DONE)
				return sm_fail(-ENOENT, "socket fd %d: not found by sock_diag", fd);
			if (h->nlmsg_type == NLMSG_ERROR)
				return sm_fail(-EIO, "sock_diag: error answer");
			if (m->idiag_inode != stt.st_ino)
				continue;
			memset(ret, 0, sizeof(*ret));
			ret->family = m->idiag_family;
			memcpy(ret->addr, m->id.idiag_dst, m->idiag_family == AF_INET6 ? 16 : 4);
			ret->port = ntohs(m->id.idiag_dport);
			return 0;
		}
	}
}

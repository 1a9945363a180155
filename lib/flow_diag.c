/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Handshakes in progress for a listener, through sock_diag.
 *
 * Before a listener is frozen whole, its connection attempts alone are
 * frozen (sockmig_flow_freeze_syn) and the move waits for the handshakes
 * already begun: a request socket is kernel state that no socket option can
 * read or recreate, so one left in SYN_RECV at the freeze would be lost with
 * the peer believing itself connected. Request sockets are not in the
 * listener's queues but in the established hash, as TCP_NEW_SYN_RECV;
 * inet_diag reports them with state SYN_RECV (and asking for TCPF_SYN_RECV
 * includes them; TCPF_NEW_SYN_RECV is added for kernels that want it
 * spelled out). The diag request filters by state only; address and port
 * are compared here, which keeps the code free of filter bytecode.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <libmnl/libmnl.h>

#include "flow.h"
#include "util.h"

/* include/net/tcp_states.h, not exported to userspace. */
#define SM_TCP_SYN_RECV 3
#define SM_TCP_NEW_SYN_RECV 12

struct pending_ctx {
	const struct sockmig_flow *listener;
	int family;            /* of the dump being read */
	uint32_t count;
};

static int pending_cb(const struct nlmsghdr *nlh, void *data)
{
	struct pending_ctx *c = data;
	const struct inet_diag_msg *m = mnl_nlmsg_get_payload(nlh);
	const struct sockmig_endpoint *l = &c->listener->local;
	int lf = sm_flow_family(l);
	const uint8_t *la = lf == AF_INET && l->family == AF_INET6 ? l->addr + 12 : l->addr;

	if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY || mnl_nlmsg_get_payload_len(nlh) < sizeof(*m))
		return MNL_CB_OK;
	if (m->idiag_state != SM_TCP_SYN_RECV || ntohs(m->id.idiag_sport) != l->port)
		return MNL_CB_OK;
	if (!sm_addr_is_any(l)) {
		/* idiag_src holds 4 bytes for AF_INET, 16 for AF_INET6 */
		if (c->family != lf || memcmp(m->id.idiag_src, la, lf == AF_INET ? 4 : 16))
			return MNL_CB_OK;
	}
	c->count++;
	return MNL_CB_OK;
}

static int pending_dump(struct mnl_socket *nl, int family, struct pending_ctx *c)
{
	uint8_t buf[32768]; /* a dump reply fills up to a page or so per read */
	struct inet_diag_req_v2 *req;
	struct nlmsghdr *nlh;
	uint32_t seq = (uint32_t)sm_now_ns(), portid = mnl_socket_get_portid(nl);
	int r;

	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
	req->sdiag_family = (uint8_t)family;
	req->sdiag_protocol = IPPROTO_TCP;
	req->idiag_states = 1u << SM_TCP_SYN_RECV | 1u << SM_TCP_NEW_SYN_RECV;
	/* Only the port can be given to the kernel without bytecode: the
	 * cookie and addresses of inet_diag_sockid are for exact lookups. */
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	c->family = family;
	do {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		r = mnl_cb_run(buf, (size_t)n, seq, portid, pending_cb, c);
	} while (r > MNL_CB_STOP);
	return r < 0 ? -errno : 0;
}

int sockmig_listener_pending(const struct sockmig_flow *listener, uint32_t *ret_synrecv)
{
	struct pending_ctx c = { .listener = listener };
	struct timeval tv = { .tv_sec = 5 };
	struct mnl_socket *nl;
	int lf = sm_flow_family(&listener->local), r;
	char s[128];

	if (listener->proto != IPPROTO_TCP || listener->remote.family || (lf != AF_INET && lf != AF_INET6))
		return sm_fail(-EINVAL, "cannot count the handshakes of %s: not a TCP listener",
			       sockmig_flow_str(listener, s, sizeof(s)));
	nl = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC);
	if (!nl)
		return sm_fail(-errno, "cannot open a sock_diag socket: %m");
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		r = sm_fail(-errno, "cannot bind a sock_diag socket: %m");
		goto out;
	}
	(void)setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* A request of an IPv4 SYN on a dual-stack listener is an AF_INET
	 * socket: an IPv6 listener on the wildcard (or a v4-mapped address)
	 * has IPv4 handshakes too. */
	if (lf == AF_INET || sm_addr_is_any(&listener->local)) {
		r = pending_dump(nl, AF_INET, &c);
		if (r < 0)
			goto out_fail;
	}
	if (listener->local.family == AF_INET6 && lf == AF_INET6) {
		r = pending_dump(nl, AF_INET6, &c);
		if (r < 0)
			goto out_fail;
	}
	*ret_synrecv = c.count;
	r = 0;
	goto out;

out_fail:
	r = sm_fail(r, "cannot count the handshakes of %s through sock_diag: %s",
		    sockmig_flow_str(listener, s, sizeof(s)), strerror(-r));
out:
	mnl_socket_close(nl);
	return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The end of a move on the source side (lib/move_src.c has the rest): the
 * captures as they travel, COMMIT with what came late, the original made
 * unable to run again, the originals' sockets destroyed.
 */
#include <dirent.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>

#include "flow.h"
#include "move.h"
#include "move_src.h"
#include "sock.h"
#include "sockmig/proc.h"
#include "util.h"

int sm_sock_destroy(int fd, uint8_t proto)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct sockaddr_storage l, p;
	socklen_t ll = sizeof(l), pl = sizeof(p);
	struct inet_diag_req_v2 *req;
	struct mnl_socket *nl;
	struct nlmsghdr *nlh;
	uint64_t cookie;
	socklen_t cl = sizeof(cookie);
	uint32_t seq = (uint32_t)sm_now_ns();
	int r;

	if (getsockname(fd, (struct sockaddr *)&l, &ll) < 0 || getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &cl) < 0)
		return -errno;
	if (getpeername(fd, (struct sockaddr *)&p, &pl) < 0) {
		struct sockmig_endpoint peer;

		memset(&p, 0, sizeof(p));
		p.ss_family = l.ss_family;
		/* SYN_SENT has no peer name yet, but the kernel finds the
		 * socket only by its whole 4-tuple: sock_diag knows the peer. */
		if (proto == IPPROTO_TCP &&
		    sm_diag_tcp_peer(fd, l.ss_family, ntohs(((struct sockaddr_in *)&l)->sin_port), 1u << TCP_SYN_SENT,
				     &peer) == 0)
			sm_ep_to_sockaddr(&peer, &p);
	}
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = SOCK_DESTROY;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
	req->sdiag_family = (uint8_t)l.ss_family;
	req->sdiag_protocol = proto;
	req->idiag_states = ~0u;
	/* The kernel finds the socket by its names, then checks the cookie: a
	 * socket that has the same names by now is never hit. */
	req->id.idiag_cookie[0] = (uint32_t)cookie;
	req->id.idiag_cookie[1] = (uint32_t)(cookie >> 32);
	if (l.ss_family == AF_INET) {
		const struct sockaddr_in *a = (void *)&l, *b = (void *)&p;

		req->id.idiag_sport = a->sin_port;
		req->id.idiag_dport = b->sin_port;
		memcpy(req->id.idiag_src, &a->sin_addr, 4);
		memcpy(req->id.idiag_dst, &b->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *a = (void *)&l, *b = (void *)&p;

		req->id.idiag_sport = a->sin6_port;
		req->id.idiag_dport = b->sin6_port;
		memcpy(req->id.idiag_src, &a->sin6_addr, 16);
		memcpy(req->id.idiag_dst, &b->sin6_addr, 16);
	}
	nl = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC);
	if (!nl)
		return -errno;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 || mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		r = -errno;
	} else {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));

		r = n < 0 ? -errno : mnl_cb_run(buf, (size_t)n, seq, mnl_socket_get_portid(nl), NULL, NULL);
		if (r < 0 && n >= 0)
			r = -errno;
	}
	mnl_socket_close(nl);
	return r < 0 ? r : 0;
}

void sm_src_commit(struct src *s)
{
	/* The flows are still blocked: what the dying originals send is
	 * dropped, the peer only ever hears D. */
	for (size_t i = 0; i < s->n; i++) {
		struct sm_move_sock *m = &s->socks[i];

		if (m->fd < 0)
			continue;
		if (sm_sock_destroy(m->fd, m->proto) < 0 && m->proto == IPPROTO_TCP && !m->listener) {
			sockmig_tcp_discard(m->fd); /* at least silent */
		} else {
			/* A destroyed UDP socket stays bound with its receive
			 * queue: empty it, or the process would read again what
			 * D now delivers (nothing new arrives: still blocked). */
			for (int k = 0; m->proto == IPPROTO_UDP && k < 1 << 20; k++) {
				/* the destroy's ECONNABORTED is reported once */
				if (recv(m->fd, NULL, 0, MSG_DONTWAIT | MSG_TRUNC) < 0 && errno != ECONNABORTED &&
				    errno != EINTR)
					break;
			}
			close(m->fd);
		}
		m->fd = -1;
	}
	sockmig_flowlock_free(s->lock);
	s->lock = NULL;
	/* With the process: killed before COMMIT went out. */
	if (!s->o->with_process)
		sockmig_proc_resume(s->proc);
}

/* Only the flows that caught something: one section each. D finds a
 * flow's packets by the flow, so the empty ones (most, at 1,000
 * connections: one write each) need not travel. With `split` (a test's
 * fault), only the older half of each flow's packets. */
int sm_src_write_captures(struct sm_image_writer *w, const struct sockmig_flow_capture *fc, size_t n, bool split)
{
	_cleanup_free_ struct sockmig_flow_capture *v = NULL;

	if (!split)
		return sm_move_write_captures(w, fc, n);
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i] = fc[i];
		v[i].n_packets -= v[i].n_packets / 2;
	}
	return sm_move_write_captures(w, v, n);
}

uint32_t sm_src_count_packets(const struct sockmig_flow_capture *fc, size_t n)
{
	uint32_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += fc[i].n_packets;
	return k;
}

/*
 * Make the original die with us, should we die between COMMIT and the
 * kill: a tracee whose tracer exits is let go, and would run beside its
 * copy on D. With PTRACE_O_EXITKILL on every thread (all of them are
 * ptrace-stopped, ours), COMMIT can go out first and the kill, whose
 * teardown of the process's memory took 5 to 25 ms of the pause, after.
 * false: not armed, kill first.
 */
bool sm_src_exit_kills(struct src *s)
{
	char path[64];
	struct dirent *e;
	bool ok = true;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)sockmig_proc_pid(s->proc));
	dir = opendir(path);
	if (!dir)
		return false;
	while (ok && (e = readdir(dir))) {
		pid_t tid = (pid_t)atoi(e->d_name);

		if (tid > 0 && ptrace(PTRACE_SETOPTIONS, tid, 0, (void *)(long)PTRACE_O_EXITKILL) < 0)
			ok = false;
	}
	closedir(dir);
	return ok;
}

/* COMMIT, with what reached S since image 2 (peers that had not yet heard
 * the announcement, or packets that took long on their way): D replays
 * them before anything of its own, so they are not lost, and not overtaken
 * by newer ones either. */
void sm_src_send_commit(struct src *s, int chan)
{
	struct sockmig_flow_capture *tail = NULL;
	struct sm_image_writer *w = NULL;
	int r;

	r = sockmig_capture_collect(s->cap, s->flows, s->n, &tail);
	/* the test's split: the held half first, in one section per flow */
	for (size_t i = 0; r >= 0 && s->split && i < s->n; i++) {
		struct sockmig_flow_capture *c = &s->sent_caps[i], *t = &tail[i];
		uint32_t held = c->n_packets / 2;
		struct sockmig_packet *p = calloc((size_t)held + t->n_packets + 1, sizeof(*p));

		if (!p) {
			r = -ENOMEM;
			break;
		}
		/* the packets move to the tail, which frees them */
		memcpy(p, c->packets + c->n_packets - held, held * sizeof(*p));
		memcpy(p + held, t->packets, t->n_packets * sizeof(*p));
		c->n_packets -= held;
		free(t->packets);
		t->packets = p;
		t->n_packets += held;
	}
	if (r >= 0)
		r = sm_image_writer_new(chan, SM_IMAGE_KIND_SOCKETS, &w);
	if (r >= 0)
		r = sm_src_write_captures(w, tail, s->n, false);
	if (r >= 0)
		r = sm_move_write_status(w, SM_MOVE_COMMIT, NULL);
	if (r >= 0)
		r = sm_image_writer_finish(w);
	sm_image_writer_free(w);
	if (r < 0)
		sm_debug("move src: COMMIT could not be sent: %s", sockmig_error());
	if (tail)
		s->st.captured_src += sm_src_count_packets(tail, s->n) - (s->split ? s->held : 0);
	sm_debug("move src: COMMIT sent, with %u packets caught since the captures", tail ? sm_src_count_packets(tail, s->n) : 0);
	sockmig_flow_captures_free(tail, tail ? s->n : 0);
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/* sockmig sockets show FILE [--json]: what a sockets image holds. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sockmig/proc.h"
#include "sockmig/sockets.h"
#include "sockmig/sockmig.h"

int sockets_show_main(int argc, char *argv[]);

static const char *ep_str(const struct sockmig_endpoint *e, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN];

	if (!e->family) {
		snprintf(buf, size, "*");
		return buf;
	}
	inet_ntop(e->family, e->addr, a, sizeof(a));
	snprintf(buf, size, e->family == AF_INET6 ? "[%s]:%u" : "%s:%u", a, e->port);
	return buf;
}

static void show_text(const struct sockmig_sockets_image *img)
{
	char a[INET6_ADDRSTRLEN], l[80], r[80];

	printf("sockets of pid %u: %zu\n", img->pid, img->n);
	for (uint32_t i = 0; i < img->n_addrs; i++)
		printf("address %s/%u moves with them\n",
		       inet_ntop(img->addrs[i].family, img->addrs[i].addr, a, sizeof(a)), img->addrs[i].prefixlen);
	for (size_t i = 0; i < img->n; i++) {
		const struct sockmig_image_sock *s = &img->socks[i];

		if (s->proto == IPPROTO_TCP) {
			const struct sockmig_tcp_state *t = &s->tcp;

			printf("fd %u: tcp %s %s > %s mss %u wscale %u/%u%s%s send queue %u (unsent %u) "
			       "receive queue %u, %u packets captured\n",
			       s->fd, sockmig_tcp_state_name(t->state), ep_str(&t->local, l, sizeof(l)),
			       ep_str(&t->remote, r, sizeof(r)), t->mss_clamp, t->snd_wscale, t->rcv_wscale,
			       t->opts & 2 ? " sack" : "", t->opts & 1 ? " timestamps" : "", t->sndq_len,
			       t->sndq_unsent, t->rcvq_len, s->captured);
		} else {
			printf("fd %u: udp %s > %s receive queue %u datagrams (%llu bytes), %u packets captured\n",
			       s->fd, ep_str(&s->udp.local, l, sizeof(l)), ep_str(&s->udp.remote, r, sizeof(r)),
			       s->udp_queued, (unsigned long long)s->udp_queued_bytes, s->captured);
		}
	}
}

static void show_json(const struct sockmig_sockets_image *img)
{
	char a[INET6_ADDRSTRLEN], l[80], r[80];

	printf("{\"pid\":%u,\"addresses\":[", img->pid);
	for (uint32_t i = 0; i < img->n_addrs; i++)
		printf("%s\"%s/%u\"", i ? "," : "", inet_ntop(img->addrs[i].family, img->addrs[i].addr, a, sizeof(a)),
		       img->addrs[i].prefixlen);
	printf("],\"sockets\":[");
	for (size_t i = 0; i < img->n; i++) {
		const struct sockmig_image_sock *s = &img->socks[i];

		printf("%s{\"fd\":%u,", i ? "," : "", s->fd);
		if (s->proto == IPPROTO_TCP) {
			const struct sockmig_tcp_state *t = &s->tcp;

			printf("\"proto\":\"tcp\",\"state\":\"%s\",\"local\":\"%s\",\"remote\":\"%s\",\"mss\":%u,"
			       "\"snd_wscale\":%u,\"rcv_wscale\":%u,\"sack\":%s,\"timestamps\":%s,\"snd_una\":%u,"
			       "\"snd_seq\":%u,\"rcv_seq\":%u,\"send_queue\":%u,\"send_queue_unsent\":%u,"
			       "\"receive_queue\":%u,\"captured\":%u}",
			       sockmig_tcp_state_name(t->state), ep_str(&t->local, l, sizeof(l)),
			       ep_str(&t->remote, r, sizeof(r)), t->mss_clamp, t->snd_wscale, t->rcv_wscale,
			       t->opts & 2 ? "true" : "false", t->opts & 1 ? "true" : "false", t->snd_una, t->snd_seq,
			       t->rcv_seq, t->sndq_len, t->sndq_unsent, t->rcvq_len, s->captured);
		} else {
			printf("\"proto\":\"udp\",\"local\":\"%s\",\"remote\":\"%s\",\"receive_queue\":%u,"
			       "\"receive_queue_bytes\":%llu,\"captured\":%u}",
			       ep_str(&s->udp.local, l, sizeof(l)),
			       s->udp.remote.family ? ep_str(&s->udp.remote, r, sizeof(r)) : "", s->udp_queued,
			       (unsigned long long)s->udp_queued_bytes, s->captured);
		}
	}
	printf("]}\n");
}

int sockets_show_main(int argc, char *argv[])
{
	struct sockmig_sockets_image *img = NULL;
	const char *file = NULL;
	bool json = false;
	int fd, r;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("Usage: %s sockets show FILE [--json]\n", prog_name);
			return 0;
		} else if (!file)
			file = argv[i];
		else {
			cli_err("sockets show: one image at a time ('%s' is one too many)", argv[i]);
			return 1;
		}
	}
	if (!file) {
		cli_err("sockets show: name the image file");
		return 1;
	}
	fd = strcmp(file, "-") ? open(file, O_RDONLY | O_CLOEXEC) : 0;
	if (fd < 0) {
		cli_err("sockets show: cannot open %s: %s", file, strerror(errno));
		return 1;
	}
	r = sockmig_sockets_image_read(fd, &img);
	if (fd)
		close(fd);
	if (r < 0) {
		cli_lib_err(r, "%s", file);
		return 1;
	}
	if (json)
		show_json(img);
	else
		show_text(img);
	free(img);
	return 0;
}

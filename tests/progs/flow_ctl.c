/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test driver for flow control, run inside a node's network namespace.
 *
 *   flow_ctl lock [--capture] [--pass-local]
 *       reads commands on stdin, one answer line each on stdout:
 *         flow PROTO LADDR LPORT RADDR|- RPORT|-   add a flow to the list
 *         gen N PROTO LADDR LPORT RADDR RPORT0      add N flows, RPORT0+i
 *         freeze | thaw                             the whole list, timed
 *         freeze_syn | thaw_syn                     connection attempts only
 *                                                   (the list: TCP listeners)
 *         count                                     packets captured so far
 *         wait N SECS                               until N captured (bounded)
 *         collect FILE                              sort to flows, write an image
 *         bench N                                   freeze+thaw the first N flows
 *         unlock                                    free the lock, keep the capture
 *         quit                                      release everything
 *   flow_ctl replay FILE                            replay an image's packets
 *   flow_ctl pending ADDR PORT                      "pending N": handshakes in
 *                                                   SYN_RECV of that listener
 *   flow_ctl addr take|add|announce|release IFNAME ADDR/PLEN
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "flow.h"
#include "image.h"
#include "sockmig/flow.h"
#include "util.h"

static struct sockmig_flow *flows;
static size_t n_flows, cap_flows;

static int parse_ep(struct sockmig_endpoint *e, const char *addr, const char *port)
{
	memset(e, 0, sizeof(*e));
	if (!strcmp(addr, "-"))
		return 0;
	if (inet_pton(AF_INET, addr, e->addr) == 1)
		e->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, e->addr) == 1)
		e->family = AF_INET6;
	else
		return -1;
	e->port = (uint16_t)atoi(port);
	return 0;
}

static int add_flow(const char *proto, const char *la, const char *lp, const char *ra, const char *rp)
{
	struct sockmig_flow f = { .proto = !strcmp(proto, "tcp") ? IPPROTO_TCP : IPPROTO_UDP };

	if (parse_ep(&f.local, la, lp) < 0 || parse_ep(&f.remote, ra, rp) < 0)
		return -1;
	if (n_flows == cap_flows) {
		cap_flows = cap_flows ? cap_flows * 2 : 16;
		flows = realloc(flows, cap_flows * sizeof(*flows));
		if (!flows)
			abort();
	}
	flows[n_flows++] = f;
	return 0;
}

static int write_image(const char *path, const struct sockmig_flow_capture *fc, size_t n)
{
	struct sm_image_writer *w;
	int fd, r;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = sm_image_writer_new(fd, SM_IMAGE_KIND_SOCKETS, &w);
	if (r == 0) {
		r = sm_flow_captures_write(w, fc, n);
		if (r == 0)
			r = sm_image_writer_finish(w);
		sm_image_writer_free(w);
	}
	close(fd);
	return r;
}

static double ms_since(uint64_t t0)
{
	return (double)(sm_now_ns() - t0) / 1e6;
}

static int cmd_lock(int argc, char **argv)
{
	struct sockmig_capture *cap = NULL;
	struct sockmig_flowlock *lock = NULL;
	unsigned flags = 0;
	char line[512];
	uint64_t total = 0;
	int r;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--capture"))
			flags |= SOCKMIG_FLOWLOCK_CAPTURE;
		else if (!strcmp(argv[i], "--pass-local"))
			flags |= SOCKMIG_FLOWLOCK_PASS_LOCAL;
	}
	if (flags & SOCKMIG_FLOWLOCK_CAPTURE) {
		r = sockmig_capture_open(&cap);
		if (r < 0) {
			fprintf(stderr, "flow_ctl: %s\n", sockmig_error());
			return 1;
		}
	}
	r = sockmig_flowlock_new(flags, cap, &lock);
	if (r < 0) {
		fprintf(stderr, "flow_ctl: %s\n", sockmig_error());
		sockmig_capture_free(cap);
		return 1;
	}
	printf("ready group=%u\n", cap ? sockmig_capture_group(cap) : 0);
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		char a[6][64] = { { 0 } };
		int n = sscanf(line, "%63s %63s %63s %63s %63s %63s", a[0], a[1], a[2], a[3], a[4], a[5]);
		uint64_t t0 = sm_now_ns();

		if (n < 1)
			continue;
		if (!strcmp(a[0], "quit")) {
			break;
		} else if (!lock && (strstr(a[0], "freeze") || strstr(a[0], "thaw") || !strcmp(a[0], "bench"))) {
			printf("error unlocked\n");
		} else if (!strcmp(a[0], "flow") && n == 6) {
			r = add_flow(a[1], a[2], a[3], a[4], a[5]);
			printf(r < 0 ? "error bad flow\n" : "ok %zu\n", n_flows);
		} else if (!strcmp(a[0], "gen")) {
			char proto[64], la[64], lp[64], ra[64];
			unsigned cnt, rp0;
			if (sscanf(line, "gen %u %63s %63s %63s %63s %u", &cnt, proto, la, lp, ra, &rp0) != 6) {
				printf("error bad gen\n");
			} else {
				for (unsigned i = 0; i < cnt; i++) {
					char rp[16];
					snprintf(rp, sizeof(rp), "%u", rp0 + i);
					add_flow(proto, la, lp, ra, rp);
				}
				printf("ok %zu\n", n_flows);
			}
		} else if (!strcmp(a[0], "freeze") || !strcmp(a[0], "thaw")) {
			r = a[0][0] == 'f' ? sockmig_flow_freeze(lock, flows, n_flows)
					   : sockmig_flow_thaw(lock, flows, n_flows);
			if (r < 0)
				printf("error %s\n", sockmig_error());
			else
				printf("ok %s %zu flows in %.3f ms\n", a[0], n_flows, ms_since(t0));
		} else if (!strcmp(a[0], "freeze_syn") || !strcmp(a[0], "thaw_syn")) {
			r = a[0][0] == 'f' ? sockmig_flow_freeze_syn(lock, flows, n_flows)
					   : sockmig_flow_thaw_syn(lock, flows, n_flows);
			if (r < 0)
				printf("error %s\n", sockmig_error());
			else
				printf("ok %s %zu flows in %.3f ms\n", a[0], n_flows, ms_since(t0));
		} else if (!strcmp(a[0], "bench") && n == 2) {
			size_t k = (size_t)atol(a[1]);
			double f_ms, t_ms;
			if (k > n_flows)
				k = n_flows;
			r = sockmig_flow_freeze(lock, flows, k);
			f_ms = ms_since(t0);
			t0 = sm_now_ns();
			if (r == 0)
				r = sockmig_flow_thaw(lock, flows, k);
			t_ms = ms_since(t0);
			if (r < 0)
				printf("error %s\n", sockmig_error());
			else
				printf("ok bench %zu flows: freeze %.3f ms, thaw %.3f ms\n", k, f_ms, t_ms);
		} else if (!strcmp(a[0], "unlock")) {
			sockmig_flowlock_free(lock);
			lock = NULL;
			printf("ok\n");
		} else if (!strcmp(a[0], "count")) {
			r = cap ? sockmig_capture_poll(cap) : 0;
			if (r < 0) {
				printf("error %s\n", sockmig_error());
			} else {
				total += (uint64_t)r;
				printf("ok count %llu\n", (unsigned long long)total);
			}
		} else if (!strcmp(a[0], "wait") && n == 3 && cap) {
			/* Woken by the capture fd, bounded by the deadline. */
			uint64_t want = (uint64_t)atoll(a[1]), end = t0 + (uint64_t)(atof(a[2]) * 1e9);
			struct pollfd pfd = { .fd = sockmig_capture_fd(cap), .events = POLLIN };
			r = 0;
			while (total < want && r >= 0 && sm_now_ns() < end) {
				if (poll(&pfd, 1, (int)((end - sm_now_ns()) / 1000000) + 1) < 0)
					break;
				r = sockmig_capture_poll(cap);
				if (r > 0)
					total += (uint64_t)r;
			}
			if (r < 0)
				printf("error %s\n", sockmig_error());
			else
				printf("%s count %llu\n", total >= want ? "ok" : "error", (unsigned long long)total);
		} else if (!strcmp(a[0], "collect") && n == 2 && cap) {
			struct sockmig_flow_capture *fc;
			unsigned long long pk = 0, bytes = 0, fixed = 0;
			r = sockmig_capture_collect(cap, flows, n_flows, &fc);
			if (r < 0) {
				printf("error %s\n", sockmig_error());
			} else {
				printf("ok collect");
				for (size_t i = 0; i < n_flows; i++) {
					pk += fc[i].n_packets;
					for (uint32_t j = 0; j < fc[i].n_packets; j++) {
						struct sockmig_packet *pk_ = &fc[i].packets[j];
						uint8_t *copy = malloc(pk_->len);
						bytes += pk_->len;
						/* How many arrived with an unfinished checksum. */
						if (copy) {
							memcpy(copy, pk_->data, pk_->len);
							sockmig_packet_fix_checksums(copy, pk_->len);
							fixed += memcmp(copy, pk_->data, pk_->len) != 0;
							free(copy);
						}
					}
					if (fc[i].n_packets)
						printf(" flow%zu=%u%s", i, fc[i].n_packets,
						       fc[i].has_ack ? "+ack" : "");
				}
				r = write_image(a[1], fc, n_flows);
				printf(" packets=%llu ipbytes=%llu unmatched=%llu image=%d csum_fixed=%llu\n", pk, bytes,
				       (unsigned long long)sockmig_capture_unmatched(cap), r, fixed);
				sockmig_flow_captures_free(fc, n_flows);
			}
		} else {
			printf("error unknown command\n");
		}
		fflush(stdout);
	}
	sockmig_flowlock_free(lock);
	sockmig_capture_free(cap);
	free(flows);
	printf("bye\n");
	return 0;
}

static int cmd_replay(const char *path)
{
	struct sm_image_reader *rd;
	struct sockmig_flow_capture *fc = NULL;
	size_t n = 0;
	int fd, r, sent;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	r = sm_image_reader_new_fd(fd, &rd);
	if (r < 0) {
		fprintf(stderr, "flow_ctl: %s\n", sockmig_error());
		return 1;
	}
	while (r >= 0) {
		const uint8_t *p;
		size_t len;
		uint64_t off;
		uint16_t type;

		r = sm_image_next_section(rd, &type, &p, &len, &off);
		if (r <= 0)
			break;
		if (type != SM_SECTION_FLOW_CAPTURE)
			continue;
		fc = realloc(fc, (n + 1) * sizeof(*fc));
		if (!fc)
			abort();
		r = sm_flow_capture_decode(p, len, off, &fc[n]);
		if (r == 0)
			n++;
	}
	sm_image_reader_free(rd);
	close(fd);
	if (r < 0) {
		fprintf(stderr, "flow_ctl: %s\n", sockmig_error());
		return 1;
	}
	sent = sockmig_flow_replay(fc, n);
	sockmig_flow_captures_free(fc, n);
	if (sent < 0) {
		fprintf(stderr, "flow_ctl: %s\n", sockmig_error());
		return 1;
	}
	printf("replayed %d\n", sent);
	return 0;
}

static int cmd_pending(const char *addr, const char *port)
{
	struct sockmig_flow f = { .proto = IPPROTO_TCP };
	uint32_t n;

	if (parse_ep(&f.local, addr, port) < 0)
		return 2;
	if (sockmig_listener_pending(&f, &n) < 0) {
		fprintf(stderr, "flow_ctl: %s\n", sockmig_error());
		return 1;
	}
	printf("pending %u\n", n);
	return 0;
}

static int cmd_addr(const char *verb, const char *ifname, const char *spec)
{
	char addr[64];
	uint8_t a[16];
	unsigned plen;
	int family, r;

	if (sscanf(spec, "%63[^/]/%u", addr, &plen) != 2)
		return 2;
	family = strchr(addr, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(family, addr, a) != 1)
		return 2;
	if (!strcmp(verb, "take"))
		r = sockmig_addr_take(ifname, family, a, plen);
	else if (!strcmp(verb, "add"))
		r = sockmig_addr_add(ifname, family, a, plen);
	else if (!strcmp(verb, "announce"))
		r = sockmig_addr_announce(ifname, family, a);
	else if (!strcmp(verb, "release"))
		r = sockmig_addr_release(ifname, family, a, plen);
	else
		return 2;
	if (r < 0) {
		fprintf(stderr, "flow_ctl: %s\n", sockmig_error());
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "lock"))
		return cmd_lock(argc - 2, argv + 2);
	if (argc == 3 && !strcmp(argv[1], "replay"))
		return cmd_replay(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "pending"))
		return cmd_pending(argv[2], argv[3]);
	if (argc == 5 && !strcmp(argv[1], "addr"))
		return cmd_addr(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: flow_ctl lock [--capture] [--pass-local] | replay FILE | pending ADDR PORT | addr VERB IF ADDR/PLEN\n");
	return 2;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmigd's pieces:
 *
 *   sockmigd.c   options, config, listeners, the epoll loop (signals,
 *                accepts), the registry of connections and their threads
 *   log.c        one key=value line per event on stderr
 *   control.c    the unix control socket: caller check (SO_PEERCRED), the
 *                request table, the requests of the local CLI
 *   peer.c       the other daemons: accepting their channels (the peer
 *                request table) and dialing them (ping)
 *   jobs.c       what runs here under sockmig: jobs (sockmig run, with an
 *                address of their own) and processes moved in; the
 *                children the daemon reaps; the cluster interface
 *   migrate.c    moving a process to another node (source: the control
 *                request; destination: the peer request)
 *
 * One thread per connection, at most DAEMON_MAX_PEER_CONNS from other nodes
 * and DAEMON_MAX_CONTROL_CONNS from the CLI at a time; every wait in a
 * thread is bounded by the config's timeout, and stop shuts every
 * registered socket down so that no thread waits that long.
 */
#ifndef SOCKMIGD_DAEMON_H
#define SOCKMIGD_DAEMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "sockmig/chan.h"
#include "sockmig/config.h"

#define DAEMON_MAX_PEER_CONNS 64
#define DAEMON_MAX_CONTROL_CONNS 16
/* A ping answers in well under this on a live node. */
#define DAEMON_PING_TIMEOUT_MS 3000
#define DAEMON_STOP_WAIT_MS 5000
/* Jobs and moved-in processes one daemon keeps track of. */
#define DAEMON_MAX_JOBS 512
/* A "job ..." line of the control protocol, at most. */
#define JOB_LINE_MAX 1024

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline void daemon_freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ __attribute__((cleanup(daemon_freep)))

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

/* ---- log.c ---- */

void log_set_node(const char *node);
/* level: "info", "warn", "err". fmt gives the key=value pairs after
 * "ts=... level=... node=...". */
void log_kv(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a log or control-protocol value: bare if it is one plain word,
 * else in double quotes with \" and \\ escaped and control bytes as '?'. */
const char *kv_quote(const char *s, char *buf, size_t size);
/* "198.18.0.1:7890" or "[2001:2::1]:7890". */
const char *addr_text(const struct sockaddr *sa, char *buf, size_t size);

/* ---- sockmigd.c: the daemon and its connections ---- */

enum conn_kind { CONN_PEER, CONN_CONTROL, CONN_OUTGOING };

struct job;
struct sockmig_route;
struct sockmig_flow;

struct daemon {
	struct sockmig_config *cfg;
	const char *node;
	int peer_fd;    /* listening for other daemons, or -1 */
	int control_fd; /* the control socket, or -1 */
	int epoll_fd;   /* the main loop's; children's pidfds are added to it */
	pthread_mutex_t jobs_lock; /* the job list */
	struct job *jobs;
	unsigned n_jobs;
	pthread_mutex_t route_lock; /* this node's flow routes (routes.c) */
	struct sockmig_route *route;
	pthread_mutex_t lock;
	pthread_cond_t idle;   /* signalled when a connection ends */
	struct conn *conns;    /* every registered socket */
	unsigned n_conns[3];   /* by kind */
	bool stopping;
};

struct conn {
	struct daemon *d;
	enum conn_kind kind;
	int fd;
	struct sockaddr_storage addr; /* the peer's (CONN_PEER, CONN_OUTGOING) */
	struct conn *prev, *next;
};

/* Register a socket a thread waits on (an outgoing channel), so that stop
 * wakes it; false if the daemon is stopping (then do not start). */
bool daemon_register(struct daemon *d, struct conn *c);
void daemon_unregister(struct daemon *d, struct conn *c);

/* The channel options of this node (secret, names, timeout). */
void daemon_chan_opts(const struct daemon *d, struct sockmig_chan_opts *o);

/* The main loop's epoll data: these three, or a struct child_watch *. */
enum { EV_SIGNAL = 1, EV_PEER_LISTEN = 2, EV_CONTROL_LISTEN = 3 };

/* ---- log.c: key=value ---- */

#define KV_ARGS_MAX 32
struct kv_args {
	size_t n;
	char *key[KV_ARGS_MAX];
	char *val[KV_ARGS_MAX];
};
/* Split `k=v k="quoted \" v" ...` in place (the inverse of kv_quote);
 * false if it is not that, or has more than KV_ARGS_MAX pairs. */
bool kv_split(char *s, struct kv_args *a);
/* The value of key, or NULL. */
const char *kv_arg(const struct kv_args *a, const char *key);

/* ---- peer.c: other daemons ---- */

/* Serve one accepted TCP connection from another node (its own thread). */
void peer_serve(struct conn *c);

/* A request from another node, as its handler sees it. */
struct peer_req {
	struct daemon *d;
	struct conn *conn;          /* the accepted connection (addr: the peer's) */
	struct sockmig_chan *chan;  /* authenticated: sockmig_chan_peer() is its node */
	char *verb;
	char *args;                 /* the rest of the request, "" if none */
	bool replied;
	char error[512];
};
/* Answer the request now (a handler that goes on with the channel, or one
 * whose answer is longer than a line: up to SOCKMIG_CHAN_RECORD_MAX). */
int peer_reply(struct peer_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int peer_reply_raw(struct peer_req *r, const char *text, size_t len);

struct peer_link {
	struct conn conn;
	struct sockmig_chan *chan;
	uint64_t connect_ns;   /* TCP connect + handshake */
};

/* Dial member m and authenticate both ways: on success l->chan is up and
 * registered. On failure, err gets the sentence. */
int peer_open(struct daemon *d, const struct sockmig_member *m, unsigned timeout_ms, struct peer_link *l, char *err,
	      size_t size);
/* One request over the link: sends "verb args", waits for the reply;
 * "ok ..." gives 0 and the rest in reply, "error ..." -EREMOTEIO and the
 * sentence in reply. */
int peer_request(struct peer_link *l, const char *request, char *reply, size_t size);
/* END, close, unregister. */
void peer_close(struct daemon *d, struct peer_link *l);

struct ping_result {
	bool up;
	uint64_t rtt_ns;       /* request to reply, on the authenticated channel */
	uint64_t connect_ns;   /* TCP connect + handshake */
	char error[512];
};

void peer_ping(struct daemon *d, const struct sockmig_member *m, unsigned timeout_ms, struct ping_result *res);

/* One request over the link with a long answer (up to
 * SOCKMIG_CHAN_RECORD_MAX): like peer_request, into a malloc'ed *ret (free
 * it; NULL on failure, with the sentence in err). */
int peer_request_long(struct peer_link *l, const char *request, char **ret, char *err, size_t size);

/* ---- control.c: the local CLI ---- */

void control_serve(struct conn *c);

#define CTL_ARGS_MAX 128

/* A request from the local CLI, as its handler sees it. */
struct ctl_req {
	struct daemon *d;
	int fd;
	uid_t uid; /* the caller, from SO_PEERCRED */
	gid_t gid;
	pid_t pid;
	int argc;
	char *argv[CTL_ARGS_MAX + 1];
	pid_t target; /* CTL_PID: the process, checked */
	int pidfd;    /* CTL_PID: a pidfd on it, ours until the handler returns */
	char error[512];
};
/* One line of the answer. */
int ctl_send(struct ctl_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Record the sentence of a failure; returns err. */
int ctl_fail(struct ctl_req *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- jobs.c: what runs here under sockmig ---- */

enum job_kind {
	JOB_RUN,     /* started by sockmig run (here or on the node it came from) */
	JOB_ADOPTED, /* a process moved here by pid, not a job */
};

enum job_state {
	JOB_RUNNING,
	JOB_LEAVING,  /* being moved to another node */
	JOB_ARRIVING, /* being moved here (its name and address are taken) */
	JOB_STARTING, /* sockmig run: being started (likewise) */
};

struct job {
	struct job *next;
	char name[SOCKMIG_NAME_MAX + 1]; /* "" for an adopted process */
	bool has_addr;
	int family;
	uint8_t addr[16];
	unsigned prefixlen;
	pid_t pid;     /* the process, in our pid namespace */
	pid_t own_pid; /* as it sees itself (its own pid namespace) */
	pid_t child;   /* our child to reap: pid (run here) or its namespace's init */
	uid_t uid;
	enum job_kind kind;
	enum job_state state;
	bool exited;   /* LEAVING, and its original has ended (the move committed) */
	char origin[SOCKMIG_NAME_MAX + 1]; /* the node that started it */
	char from[SOCKMIG_NAME_MAX + 1];   /* the node it came from last, "" */
	unsigned moves;
	char cmd[64];
	/* flows routed to it here (accept entries; modes forward, rewrite) */
	struct sockmig_flow *routed;
	size_t n_routed;
};

/* The interface that holds this node's member address, and that address's
 * prefix length there; -errno with the sentence in err. */
int cluster_iface(struct daemon *d, char *ifname, size_t size, unsigned *ret_prefixlen, char *err, size_t esize);
/* "198.18.0.100/24" */
const char *job_addr_text(const struct job *j, char *buf, size_t size);
/* The job's log: job-NAME.log beside the control socket. */
void job_log_path(const struct daemon *d, const char *name, char *buf, size_t size);
/* Open it for the job's stdout and stderr (append, created for uid). */
int job_log_open(const struct daemon *d, const char *name, uid_t uid);

/* Under d->jobs_lock. */
struct job *jobs_find_pid(struct daemon *d, pid_t pid);
struct job *jobs_find_name(struct daemon *d, const char *name);
struct job *jobs_find_addr(struct daemon *d, int family, const uint8_t *addr);
/* Take j into the list (d->jobs_lock held); -ENOSPC past DAEMON_MAX_JOBS. */
int jobs_add(struct daemon *d, struct job *j);
/* Take j out of the list and free it (d->jobs_lock held). */
void jobs_remove(struct daemon *d, struct job *j);
/* Reap pid, our child, when it ends (a pidfd in the main loop). */
int daemon_watch_child(struct daemon *d, pid_t pid);
/* The main loop: the child behind this epoll event has ended. */
void daemon_child_ended(struct daemon *d, void *watch);
/* One "job ..." line (control protocol) of j, into buf. */
void job_line(struct daemon *d, const struct job *j, char *buf, size_t size);
/* Stop: forget the watches (the children run on; we are not their judge). */
void jobs_stop(struct daemon *d);

/* What the other members run (their `jobs`), asked all at once, each
 * bounded by a few seconds: one per member (self: text NULL, error ""). */
struct remote {
	struct daemon *d;
	const struct sockmig_member *m;
	char *text; /* the lines, or NULL: error */
	char error[512];
	pthread_t thread;
	bool started;
};
struct remote *remotes_ask(struct daemon *d);
void remotes_free(struct daemon *d, struct remote *x);
/* Calls fn on every well-formed job line of a member's answer. */
void remote_each(char *text, void (*fn)(struct kv_args *a, void *userdata), void *userdata);
/* Whether the address is on one of this node's interfaces. */
bool addr_is_local(int family, const uint8_t *addr);

/* run.c */
int ctl_run(struct ctl_req *r);
int ctl_ps(struct ctl_req *r);
int peer_jobs(struct peer_req *r);

/* ---- migrate.c ---- */

int ctl_migrate(struct ctl_req *r);
int peer_migrate(struct peer_req *r);

#endif

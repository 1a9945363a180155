/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Syscall injection into a ptrace-stopped thread (ckpt_inject.h).
 *
 * One injected syscall: the registers get rip = a `syscall` instruction
 * (found in the process's vdso, else written over the code at rip and put
 * back at the end), rax = nr, the arguments, and orig_rax = -1; then
 * PTRACE_SYSCALL to the syscall-enter stop and PTRACE_SYSCALL to the exit
 * stop, where rax is the result. orig_rax = -1 matters on the first resume:
 * the thread leaves its stop through the kernel's signal code, which would
 * otherwise "restart" the interrupted syscall on our registers.
 *
 * What the kernel does on the way, and how it is undone (x86-64, 6.x):
 *
 *  - The first resume runs the rest of get_signal(): a pending unblocked
 *    signal is dequeued there and reported as a signal-delivery stop before
 *    our syscall runs. It is held (suppressed) and queued again at the end
 *    with rt_tgsigqueueinfo to itself, which the kernel allows for any
 *    si_code. From the first syscall-enter stop on, all signals are blocked
 *    (PTRACE_SETSIGMASK), so a handler never runs on borrowed registers.
 *  - The first resume also runs restore_saved_sigmask(): a thread stopped in
 *    sigsuspend/ppoll/pselect gets its real mask back, as it would on its own
 *    restart. The mask read at the first enter stop is therefore the one put
 *    back; the restarted call sets its temporary mask again from its
 *    arguments.
 *  - The exit-to-user path runs the rseq fixup with our rip, outside any
 *    critical section, which clears rseq->rseq_cs; the 8 bytes are put back
 *    so that the real fixup happens on the real resume.
 *  - At the end the thread sits in a syscall-exit stop. For a thread found
 *    in a PTRACE_EVENT_STOP: saved registers back, PTRACE_INTERRUPT (which
 *    also sets TIF_SIGPENDING), PTRACE_CONT: get_signal() traps to a
 *    PTRACE_EVENT_STOP again before anything else, with rax = -ERESTART* and
 *    orig_rax intact, so the detach restarts the syscall exactly as it would
 *    have. For a thread found in a signal-delivery stop of S: S was queued
 *    again, the mask opened for S alone, PTRACE_CONT: get_signal() dequeues S
 *    and stops for its delivery again; then the mask is put back.
 *
 * A batch (ckpt_inject_batch) costs one round trip instead of two stops per
 * syscall (70 reads: about 0.15 ms instead of 2 ms here): a small loop runs a table
 * of syscalls from a read+exec mapping of the process and ends with a
 * tgkill() to itself of a signal nobody else has pending, the only one
 * opened in the mask for that moment; its delivery stop hands the thread
 * back, and resuming with signal 0 discards it. Not int3 or ud2: the kernel
 * forces those signals, which resets their handler to SIG_DFL when they are
 * blocked or ignored.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "ckpt_inject.h"
#include "util.h"

#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif

#define X86_EFLAGS_TF 0x100ull
/* Signals that arrive between the first resume and the mask: a handful at
 * most (each standard signal once, rt signals as queued). */
#define HELD_MAX 64
/* Stops to go through while waiting for one we expect (event stops from a
 * pending interrupt, held signals): far more than can happen. */
#define STOPS_MAX (HELD_MAX + 16)

enum where {
	AT_START, /* in the stop it was found in, untouched */
	AT_EXIT,  /* in the syscall-exit stop of our last syscall, or in the
		     delivery stop of the signal that ends a batch */
	LOST,     /* dead, or in a state we cannot account for */
};

struct ckpt_inject {
	pid_t pid, tid;
	pid_t ns_pid, ns_tid; /* the same as the process sees them (its pid namespace) */
	int mem_fd;
	struct user_regs_struct saved;
	uint64_t insn; /* a `syscall` instruction */
	bool poked;    /* insn was written at saved.rip */
	uint8_t poked_orig[2];
	bool stop_is_signal;
	siginfo_t stop_info;
	enum where where;
	bool masked;
	uint64_t mask; /* the thread's blocked mask, read at the first enter stop */
	siginfo_t held[HELD_MAX];
	size_t n_held;
	uint64_t scratch;
	size_t scratch_len;
	uint64_t rseq_cs_addr; /* 0: no rseq registered */
	uint64_t rseq_cs;
	uint64_t loop;     /* the batch loop's mapping (code + op table), or 0 */
};

/* The batch loop, copied into a read+exec mapping of the process with its
 * op table (struct ckpt_inject_op, 56 bytes each) behind it. Registers set
 * by us: rbx = first op, r12 = count, rbp = the final op, r13 = r14 = 0. It
 * runs the ops until one returns non-zero (its index in r14, its result in
 * r13), then tkill(gettid(), the final op's arg[0]): a signal to itself
 * that only it may receive, whose delivery stop hands the thread back to us
 * (gettid: its own id in its own pid namespace). No stack, no memory writes
 * (the kernel writes results into the scratch), relative jumps only, and
 * syscall numbers of the x86-64 ABI (186 gettid, 200 tkill). The int3 is
 * never reached (the kernel delivers to a traced thread whatever the
 * disposition); if it were, its forced SIGTRAP reports the failure instead
 * of leaving the thread in a loop. */
__asm__(".pushsection .text\n"
	".globl ckpt_inject_loop_start\n"
	".globl ckpt_inject_loop_end\n"
	".hidden ckpt_inject_loop_start\n"
	".hidden ckpt_inject_loop_end\n"
	".p2align 4\n"
	"ckpt_inject_loop_start:\n"
	"1:	cmp %r14, %r12\n"
	"	je 2f\n"
	"	mov 0(%rbx), %rax\n"
	"	mov 8(%rbx), %rdi\n"
	"	mov 16(%rbx), %rsi\n"
	"	mov 24(%rbx), %rdx\n"
	"	mov 32(%rbx), %r10\n"
	"	mov 40(%rbx), %r8\n"
	"	mov 48(%rbx), %r9\n"
	"	syscall\n"
	"	test %rax, %rax\n"
	"	jnz 3f\n"
	"	add $56, %rbx\n"
	"	inc %r14\n"
	"	jmp 1b\n"
	"3:	mov %rax, %r13\n"
	"2:	mov $186, %eax\n"
	"	syscall\n"
	"	mov %rax, %rdi\n"
	"	mov 8(%rbp), %rsi\n"
	"	mov $200, %eax\n"
	"	syscall\n"
	"	int3\n"
	"	jmp 2b\n"
	"ckpt_inject_loop_end:\n"
	".popsection\n");
extern const uint8_t ckpt_inject_loop_start[], ckpt_inject_loop_end[];

#define LOOP_CODE 256        /* bytes reserved for the code */
#define LOOP_OPS 256         /* ops per round trip */
#define LOOP_LEN (LOOP_CODE + (LOOP_OPS + 1) * sizeof(struct ckpt_inject_op))

struct rseq_config { /* struct ptrace_rseq_configuration */
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size;
	uint32_t signature;
	uint32_t flags;
	uint32_t pad;
};

static int wait_thread(struct ckpt_inject *in, int *ret_status)
{
	for (int i = 0; i < 1000; i++) {
		pid_t w = waitpid(in->tid, ret_status, __WALL);

		if (w == in->tid) {
			if (WIFEXITED(*ret_status) || WIFSIGNALED(*ret_status)) {
				in->where = LOST;
				return -ESRCH;
			}
			return 0;
		}
		if (w < 0 && errno != EINTR) {
			in->where = LOST;
			return -errno;
		}
	}
	in->where = LOST;
	return -EINTR;
}

static bool is_event_stop(int status)
{
	return (status >> 16) == PTRACE_EVENT_STOP;
}

static bool is_syscall_stop(int status)
{
	return (status >> 16) == 0 && (WSTOPSIG(status) == SIGTRAP || WSTOPSIG(status) == (SIGTRAP | 0x80));
}

static int mem_rw(struct ckpt_inject *in, bool write, uint64_t addr, void *p, size_t len)
{
	ssize_t n = write ? pwrite(in->mem_fd, p, len, (off_t)addr) : pread(in->mem_fd, p, len, (off_t)addr);

	if (n == (ssize_t)len)
		return 0;
	return n < 0 ? -errno : -EIO;
}

/* A `syscall` (0f 05) in the [vdso], or 0. Its bytes need not be an
 * instruction boundary of the vdso's code: the CPU decodes from rip. */
static uint64_t find_vdso_syscall(struct ckpt_inject *in)
{
	char path[64], line[512];
	unsigned long long start = 0, end = 0;
	uint64_t found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)in->pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "[vdso]") && sscanf(line, "%llx-%llx", &start, &end) == 2)
			break;
	fclose(f);
	if (end > start && end - start <= (1u << 20)) {
		size_t len = end - start;
		uint8_t *buf = malloc(len);
		uint8_t *hit;

		if (buf && mem_rw(in, false, start, buf, len) == 0 && (hit = memmem(buf, len, "\x0f\x05", 2)))
			found = start + (uint64_t)(hit - buf);
		free(buf);
	}
	return found;
}

/* Hand the thread a syscall: at the enter stop on return. Signals it
 * dequeues on the way are held. */
static int run_to_enter(struct ckpt_inject *in)
{
	int status, r;

	if (ptrace(PTRACE_SYSCALL, in->tid, 0, 0) < 0)
		return -errno;
	for (int i = 0; i < STOPS_MAX; i++) {
		struct user_regs_struct cur;

		r = wait_thread(in, &status);
		if (r < 0)
			return r;
		if (!WIFSTOPPED(status)) {
			in->where = LOST;
			return -EIO;
		}
		if (is_syscall_stop(status)) {
			if (ptrace(PTRACE_GETREGS, in->tid, 0, &cur) < 0)
				return -errno;
			/* a SIGTRAP delivery would stop before the instruction */
			if (cur.rip == in->insn + 2)
				return 0;
		}
		if (!is_event_stop(status)) {
			/* signal-delivery stop: hold the signal, deliver nothing */
			if (in->n_held == HELD_MAX) {
				in->where = LOST;
				return -EAGAIN;
			}
			if (ptrace(PTRACE_GETSIGINFO, in->tid, 0, &in->held[in->n_held]) < 0)
				return -errno;
			in->n_held++;
		}
		if (ptrace(PTRACE_SYSCALL, in->tid, 0, 0) < 0)
			return -errno;
	}
	in->where = LOST;
	return -EIO;
}

int ckpt_inject_syscall(struct ckpt_inject *in, uint64_t nr, const uint64_t a[6], int64_t *ret_result)
{
	struct user_regs_struct regs = in->saved;
	int status, r;

	if (in->where == LOST)
		return -ESRCH;
	regs.rax = nr;
	regs.orig_rax = (unsigned long long)-1;
	regs.rdi = a[0];
	regs.rsi = a[1];
	regs.rdx = a[2];
	regs.r10 = a[3];
	regs.r8 = a[4];
	regs.r9 = a[5];
	regs.rip = in->insn;
	regs.eflags &= ~X86_EFLAGS_TF;
	if (ptrace(PTRACE_SETREGS, in->tid, 0, &regs) < 0)
		return -errno;
	in->where = LOST; /* until we are at the exit stop */
	r = run_to_enter(in);
	if (r < 0)
		return r;
	if (!in->masked) {
		uint64_t all = ~0ull;

		if (ptrace(PTRACE_GETSIGMASK, in->tid, (void *)sizeof(in->mask), &in->mask) < 0 ||
		    ptrace(PTRACE_SETSIGMASK, in->tid, (void *)sizeof(all), &all) < 0)
			return -errno;
		in->masked = true;
	}
	/* after an enter stop the next stop is its exit stop (or death) */
	if (ptrace(PTRACE_SYSCALL, in->tid, 0, 0) < 0)
		return -errno;
	r = wait_thread(in, &status);
	if (r < 0)
		return r;
	if (!WIFSTOPPED(status) || !is_syscall_stop(status))
		return -EIO;
	if (ptrace(PTRACE_GETREGS, in->tid, 0, &regs) < 0)
		return -errno;
	in->where = AT_EXIT;
	*ret_result = (int64_t)regs.rax;
	return 0;
}

static int inject6(struct ckpt_inject *in, uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
		   uint64_t a4, uint64_t a5, int64_t *ret)
{
	const uint64_t a[6] = { a0, a1, a2, a3, a4, a5 };

	return ckpt_inject_syscall(in, nr, a, ret);
}

static int map_scratch(struct ckpt_inject *in, size_t len)
{
	int64_t res;
	int r;

	len = (len + 4095) & ~(size_t)4095;
	r = inject6(in, SYS_mmap, 0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, (uint64_t)-1, 0,
		    &res);
	if (r < 0)
		return r;
	if (res < 0 && res > -4096)
		return (int)res;
	in->scratch = (uint64_t)res;
	in->scratch_len = len;
	return 0;
}

/* A signal for the end of a batch: one not pending now (so the first
 * delivery stop is ours) and harmless to send (no stop or continue
 * signal, which flush each other's pending instances when sent). */
static int batch_signal(struct ckpt_inject *in)
{
	static const int candidates[] = { SIGTRAP, SIGUSR1, SIGUSR2, SIGWINCH, SIGURG, SIGPROF, SIGALRM, SIGHUP };
	char path[64], buf[4096], *p;
	uint64_t pend = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)in->tid);
	if (sm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	if ((p = strstr(buf, "\nSigPnd:")))
		pend |= strtoull(p + 8, NULL, 16);
	if ((p = strstr(buf, "\nShdPnd:")))
		pend |= strtoull(p + 8, NULL, 16);
	for (size_t i = 0; i < ARRAY_SIZE(candidates); i++)
		if (!(pend & (1ull << (candidates[i] - 1))))
			return candidates[i];
	return -1;
}

static int batch_round(struct ckpt_inject *in, const struct ckpt_inject_op *ops, size_t n, int sig,
		       size_t *ret_index, int64_t *ret_result)
{
	struct ckpt_inject_op table[LOOP_OPS + 1];
	struct user_regs_struct regs = in->saved;
	uint64_t open_mask = ~(1ull << (sig - 1)), all = ~0ull;
	int status, r;

	memcpy(table, ops, n * sizeof(*ops));
	table[n] = (struct ckpt_inject_op){ SYS_tkill, { (uint64_t)sig } };
	r = mem_rw(in, true, in->loop + LOOP_CODE, table, (n + 1) * sizeof(*ops));
	if (r < 0)
		return r;
	regs.rip = in->loop;
	regs.orig_rax = (unsigned long long)-1;
	regs.rbx = in->loop + LOOP_CODE;
	regs.r12 = n;
	regs.rbp = in->loop + LOOP_CODE + n * sizeof(*ops);
	regs.r13 = 0;
	regs.r14 = 0;
	regs.eflags &= ~X86_EFLAGS_TF;
	if (ptrace(PTRACE_SETREGS, in->tid, 0, &regs) < 0 ||
	    ptrace(PTRACE_SETSIGMASK, in->tid, (void *)sizeof(open_mask), &open_mask) < 0)
		return -errno;
	in->where = LOST; /* until the signal stops it */
	if (ptrace(PTRACE_CONT, in->tid, 0, 0) < 0)
		return -errno;
	for (int i = 0; i < STOPS_MAX; i++) {
		siginfo_t si;

		r = wait_thread(in, &status);
		if (r < 0)
			return r;
		if (!WIFSTOPPED(status))
			return -EIO;
		if (!is_event_stop(status)) {
			if (ptrace(PTRACE_GETSIGINFO, in->tid, 0, &si) < 0)
				return -errno;
			if (si.si_signo == sig && si.si_pid == in->ns_pid && si.si_code <= 0)
				break; /* ours: discarded on the next resume */
			if (si.si_signo == SIGTRAP && si.si_code == SI_KERNEL) {
				in->where = AT_EXIT; /* the int3: discarded all the same */
				return -EIO;
			}
			/* someone else's (the same signal, sent meanwhile): held */
			if (in->n_held == HELD_MAX)
				return -EAGAIN;
			in->held[in->n_held++] = si;
		}
		if (ptrace(PTRACE_CONT, in->tid, 0, 0) < 0)
			return -errno;
		if (i == STOPS_MAX - 1)
			return -EIO;
	}
	if (ptrace(PTRACE_SETSIGMASK, in->tid, (void *)sizeof(all), &all) < 0 ||
	    ptrace(PTRACE_GETREGS, in->tid, 0, &regs) < 0)
		return -errno;
	in->where = AT_EXIT;
	*ret_index = regs.r14;
	*ret_result = (int64_t)regs.r13;
	return 0;
}

int ckpt_inject_batch(struct ckpt_inject *in, const struct ckpt_inject_op *ops, size_t n, size_t *ret_index,
		      int64_t *ret_result)
{
	size_t done = 0;
	int sig, r;

	if (in->where == LOST)
		return -ESRCH;
	if (!in->loop) {
		/* read+exec only (also under PR_SET_MDWE); written through
		 * /proc/PID/mem, which may write a private read-only mapping */
		int64_t res;
		const uint64_t a[6] = { 0, LOOP_LEN, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
					(uint64_t)-1, 0 };

		r = ckpt_inject_syscall(in, SYS_mmap, a, &res);
		if (r < 0)
			return r;
		if (res < 0 && res > -4096)
			return (int)res;
		in->loop = (uint64_t)res;
		if (ckpt_inject_loop_end - ckpt_inject_loop_start > LOOP_CODE ||
		    mem_rw(in, true, in->loop, (void *)ckpt_inject_loop_start,
			   (size_t)(ckpt_inject_loop_end - ckpt_inject_loop_start)) < 0)
			return -EOPNOTSUPP; /* e.g. proc_mem.force_override=never */
	}
	sig = batch_signal(in);
	if (sig < 0)
		return -EOPNOTSUPP;
	while (done < n) {
		size_t k = n - done < LOOP_OPS ? n - done : LOOP_OPS, idx;
		int64_t res;

		r = batch_round(in, ops + done, k, sig, &idx, &res);
		if (r < 0)
			return r;
		if (idx < k) {
			*ret_index = done + idx;
			*ret_result = res;
			return 0;
		}
		done += k;
	}
	*ret_index = n;
	*ret_result = 0;
	return 0;
}

/* The last (innermost) number of "NStgid:" / "NSpid:" in the thread's
 * status: its id in its own pid namespace, which is what the syscalls it
 * makes take. */
static pid_t ns_id(pid_t pid, pid_t tid, const char *key, pid_t fallback)
{
	char path[96], buf[4096], *p, *end;
	size_t klen = strlen(key);
	long v = fallback;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
	if (sm_read_file(path, buf, sizeof(buf)) < 0)
		return fallback;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, klen) || p[klen] != ':')
			continue;
		p += klen + 1;
		for (;;) {
			long x = strtol(p, &end, 10);

			if (end == p)
				break;
			v = x;
			p = end;
		}
		break;
	}
	return (pid_t)v;
}

int ckpt_inject_begin(pid_t pid, pid_t tid, size_t scratch_len, struct ckpt_inject **ret)
{
	struct ckpt_inject *in = calloc(1, sizeof(*in));
	struct rseq_config rc = { 0 };
	char path[64];
	int r;

	if (!in)
		return -ENOMEM;
	in->pid = pid;
	in->tid = tid;
	in->ns_pid = ns_id(pid, tid, "NStgid", pid);
	in->ns_tid = ns_id(pid, tid, "NSpid", tid);
	in->where = AT_START;
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	in->mem_fd = open(path, O_RDWR | O_CLOEXEC);
	if (in->mem_fd < 0) {
		r = -errno;
		free(in);
		return r;
	}
	if (ptrace(PTRACE_GETREGS, tid, 0, &in->saved) < 0) {
		r = -errno;
		goto fail;
	}
	if (in->saved.cs != 0x33) {
		r = -EOPNOTSUPP;
		goto fail;
	}
	/* An event stop's siginfo carries si_code = sig | PTRACE_EVENT_STOP << 8
	 * (a group stop of a non-seized tracee has none: EINVAL). */
	if (ptrace(PTRACE_GETSIGINFO, tid, 0, &in->stop_info) == 0)
		in->stop_is_signal = (in->stop_info.si_code >> 8) != PTRACE_EVENT_STOP;

	in->insn = find_vdso_syscall(in);
	if (!in->insn) {
		uint8_t insn[2] = { 0x0f, 0x05 };

		in->insn = in->saved.rip;
		r = mem_rw(in, false, in->insn, in->poked_orig, 2);
		if (r == 0)
			r = mem_rw(in, true, in->insn, insn, 2);
		if (r < 0)
			goto fail;
		in->poked = true;
	}
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, (void *)sizeof(rc), &rc) >= 0 && rc.rseq_abi_pointer &&
	    mem_rw(in, false, rc.rseq_abi_pointer + 8, &in->rseq_cs, 8) == 0)
		in->rseq_cs_addr = rc.rseq_abi_pointer + 8;
	if (scratch_len) {
		r = map_scratch(in, scratch_len);
		if (r < 0) {
			ckpt_inject_end(in);
			return r;
		}
	}
	*ret = in;
	return 0;
fail:
	close(in->mem_fd);
	free(in);
	return r;
}

uint64_t ckpt_inject_scratch(const struct ckpt_inject *in)
{
	return in->scratch;
}

size_t ckpt_inject_scratch_len(const struct ckpt_inject *in)
{
	return in->scratch_len;
}

int ckpt_inject_write(struct ckpt_inject *in, size_t off, const void *p, size_t len)
{
	if (off > in->scratch_len || len > in->scratch_len - off)
		return -EINVAL;
	return mem_rw(in, true, in->scratch + off, (void *)p, len);
}

int ckpt_inject_read(struct ckpt_inject *in, size_t off, void *p, size_t len)
{
	if (off > in->scratch_len || len > in->scratch_len - off)
		return -EINVAL;
	return mem_rw(in, false, in->scratch + off, p, len);
}

int ckpt_inject_stop_signal(const struct ckpt_inject *in, siginfo_t *ret_info)
{
	if (!in->stop_is_signal)
		return 0;
	if (ret_info)
		*ret_info = in->stop_info;
	return 1;
}

/* Queue a signal again, with its siginfo, to the thread itself. */
static int requeue(struct ckpt_inject *in, const siginfo_t *si)
{
	int64_t res;
	int r;

	r = ckpt_inject_write(in, 0, si, sizeof(*si));
	if (r < 0)
		return r;
	r = inject6(in, SYS_rt_tgsigqueueinfo, (uint64_t)in->ns_pid, (uint64_t)in->ns_tid, (uint64_t)si->si_signo,
		    in->scratch, 0, 0, &res);
	return r < 0 ? r : (int)res;
}

/* From the last syscall-exit stop back into the kind of stop the thread was
 * found in, with the saved registers (see the top of the file). */
static int back_to_stop(struct ckpt_inject *in)
{
	uint64_t open_mask;
	int status, r;

	if (ptrace(PTRACE_SETREGS, in->tid, 0, &in->saved) < 0)
		return -errno;
	if (!in->stop_is_signal) {
		if (in->masked && ptrace(PTRACE_SETSIGMASK, in->tid, (void *)sizeof(in->mask), &in->mask) < 0)
			return -errno;
		if (ptrace(PTRACE_INTERRUPT, in->tid, 0, 0) < 0 || ptrace(PTRACE_CONT, in->tid, 0, 0) < 0)
			return -errno;
		r = wait_thread(in, &status);
		if (r < 0)
			return r;
		return WIFSTOPPED(status) && is_event_stop(status) ? 0 : -EIO;
	}
	open_mask = ~(1ull << (in->stop_info.si_signo - 1));
	if (ptrace(PTRACE_SETSIGMASK, in->tid, (void *)sizeof(open_mask), &open_mask) < 0 ||
	    ptrace(PTRACE_CONT, in->tid, 0, 0) < 0)
		return -errno;
	for (int i = 0; i < STOPS_MAX; i++) {
		r = wait_thread(in, &status);
		if (r < 0)
			return r;
		if (!WIFSTOPPED(status))
			return -EIO;
		if (!is_event_stop(status) && WSTOPSIG(status) == in->stop_info.si_signo) {
			if (in->masked && ptrace(PTRACE_SETSIGMASK, in->tid, (void *)sizeof(in->mask), &in->mask) < 0)
				return -errno;
			return 0;
		}
		if (!is_event_stop(status))
			return -EIO; /* only SIGSTOP could come first: give up, stopped */
		if (ptrace(PTRACE_CONT, in->tid, 0, 0) < 0)
			return -errno;
	}
	return -EIO;
}

int ckpt_inject_end(struct ckpt_inject *in)
{
	int r = 0, q;

	if (!in)
		return 0;
	if (in->where == LOST) {
		r = -ESRCH;
		goto out;
	}
	if (in->where == AT_EXIT) {
		/* the signal whose delivery we cut short, then those we held */
		if ((in->stop_is_signal || in->n_held) && !in->scratch)
			r = map_scratch(in, 4096);
		if (r == 0 && in->stop_is_signal)
			r = requeue(in, &in->stop_info);
		for (size_t i = 0; r == 0 && i < in->n_held; i++)
			r = requeue(in, &in->held[i]);
	}
	if (in->scratch) {
		int64_t res = 0;

		q = inject6(in, SYS_munmap, in->scratch, in->scratch_len, 0, 0, 0, 0, &res);
		if (q == 0 && res != 0)
			q = (int)res;
		if (q < 0 && r == 0)
			r = q;
	}
	if (in->loop) {
		int64_t res = 0;

		q = inject6(in, SYS_munmap, in->loop, LOOP_LEN, 0, 0, 0, 0, &res);
		if (q == 0 && res != 0)
			q = (int)res;
		if (q < 0 && r == 0)
			r = q;
	}
	if (in->where == LOST) {
		r = -ESRCH;
		goto out;
	}
	if (in->poked) {
		q = mem_rw(in, true, in->saved.rip, in->poked_orig, 2);
		if (q < 0 && r == 0)
			r = q;
	}
	if (in->rseq_cs_addr) {
		uint64_t now;

		if (mem_rw(in, false, in->rseq_cs_addr, &now, 8) == 0 && now != in->rseq_cs) {
			q = mem_rw(in, true, in->rseq_cs_addr, &in->rseq_cs, 8);
			if (q < 0 && r == 0)
				r = q;
		}
	}
	if (in->where == AT_EXIT) {
		q = back_to_stop(in);
		if (q < 0 && r == 0)
			r = q;
	}
out:
	close(in->mem_fd);
	free(in);
	return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal model of a process image and its sections (0x1001..0x1007), shared
 * by the dump (ckpt_dump.c), the restore (ckpt_restore.c) and the tests.
 * The payloads are documented byte for byte in docs/checkpoint.md.
 */
#ifndef SOCKMIG_LIB_CKPT_H
#define SOCKMIG_LIB_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"

struct ckpt_fds;
struct ckpt_task;

enum {
	CKPT_SEC_INFO = 0x1001,   /* pid, comm, CPU features (xcr0) */
	CKPT_SEC_MM = 0x1002,     /* mm fields, auxv, exe path */
	CKPT_SEC_VMAS = 0x1003,   /* every mapping */
	CKPT_SEC_PAGES = 0x1004,  /* one run of contiguous present pages */
	CKPT_SEC_THREAD = 0x1005, /* registers, xstate, blocked mask, rseq */
	/* 0x1006 was STDIO (fds 0..2) before ckpt_fd.c took every fd */
	CKPT_SEC_VDSO = 0x1007,   /* the vdso's bytes, compared on restore */
	/* pre-copy (ckpt_precopy.c, ckpt_pcstore.c); 0x1008..0x1017 are
	 * ckpt_fd.c's and ckpt_task.c's */
	CKPT_SEC_PRECOPY = 0x1018, /* process image: mappings whose pages the pre-copy store holds */
	CKPT_SEC_DROP = 0x1019,    /* pages the store must forget (they read as zeros now) */
	CKPT_SEC_ROUND = 0x101a,   /* pages image: the round, its mappings */
};

/* Image kind of one pre-copy round ("pages image"): ROUND, then PAGES and
 * DROP sections. Kinds 1..3 are image.h's and move.h's. */
#define CKPT_IMAGE_KIND_PAGES 4u

#define CKPT_PAGE 4096ull
/* Pages per PAGES section: 16 MiB, well below SM_IMAGE_MAX_SECTION. */
#define CKPT_RUN_MAX_PAGES 4096u
#define CKPT_MAX_VMAS 65536u
#define CKPT_NREGS 27 /* struct user_regs_struct, x86-64 */
#define CKPT_XSTATE_MAX 16384u
#define CKPT_AUXV_MAX 1024u /* bytes; the kernel keeps fewer */

/* vma flags */
enum {
	CKPT_VMA_ANON = 1u << 0,      /* no file behind it */
	CKPT_VMA_SHARED = 1u << 1,    /* MAP_SHARED */
	CKPT_VMA_GROWSDOWN = 1u << 2, /* the [stack] */
	CKPT_VMA_HEAP = 1u << 3,      /* [heap] */
	CKPT_VMA_VVAR = 1u << 4,      /* [vvar] */
	CKPT_VMA_VVAR_VCLOCK = 1u << 5,
	CKPT_VMA_VDSO = 1u << 6,
	CKPT_VMA_VSYSCALL = 1u << 7, /* fixed by the kernel, nothing to do */
	/* MAP_SHARED memory the image carries (shared anonymous, memfd, a
	 * deleted file): restored as a memfd with these pages, shared by every
	 * mapping (and fd) of the same inode */
	CKPT_VMA_SHM = 1u << 8,
};
#define CKPT_VMA_SPECIAL (CKPT_VMA_VVAR | CKPT_VMA_VVAR_VCLOCK | CKPT_VMA_VDSO | CKPT_VMA_VSYSCALL)

struct ckpt_vma {
	uint64_t start, end;
	uint64_t pgoff; /* file offset in bytes */
	uint64_t ino;   /* the inode behind it (0: anonymous) */
	uint32_t prot;  /* PROT_READ | PROT_WRITE | PROT_EXEC */
	uint32_t flags; /* CKPT_VMA_* */
	char *path;     /* file-backed: the file; NULL otherwise */
};

struct ckpt_mm {
	uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint8_t auxv[CKPT_AUXV_MAX];
	uint32_t auxv_len;
	char exe[4096];
};

struct ckpt_thread {
	uint32_t tid;
	uint64_t regs[CKPT_NREGS]; /* user_regs_struct order: r15 ... gs */
	uint64_t sigmask;          /* blocked signals, bit n-1 for signal n */
	uint64_t rseq_ptr;         /* 0: none registered */
	uint32_t rseq_len, rseq_sig;
	uint32_t xstate_len;
	uint8_t xstate[CKPT_XSTATE_MAX];
};

struct ckpt_info {
	uint32_t pid; /* as the process itself sees it (innermost pid namespace) */
	char comm[17];
	uint64_t xfeatures; /* the source's XCR0: state components the xstate may use */
};

/* ---- pre-copy ---- */

#define CKPT_PC_ID_LEN 16
/* Range flags: in a ROUND, NEW means "forget what you hold here first";
 * ranges without it keep what earlier rounds sent. PRECOPY ranges carry
 * no flag (bit 1, LAZY, is kept for pages served on demand later and is
 * refused today). */
enum { CKPT_PC_NEW = 1u << 0, CKPT_PC_LAZY = 1u << 1 };
#define CKPT_PC_MAX_RANGES CKPT_MAX_VMAS
/* A mapping larger than this is never pre-copied (dumped whole at the
 * freeze): the store reserves address space for the whole of each. */
#define CKPT_PC_VMA_MAX (64ull << 30)

struct ckpt_pc_range {
	uint64_t start, end;
	uint32_t flags; /* CKPT_PC_* */
};

/* A ROUND or PRECOPY payload: which pre-copy this is, the round, ranges. */
struct ckpt_pc_ranges {
	uint8_t id[CKPT_PC_ID_LEN];
	uint32_t round;
	struct ckpt_pc_range *r; /* sorted, disjoint, page-aligned */
	size_t n;
};

/* The mappings that pre-copy tracks and a restore may take from the store:
 * private anonymous memory other than the stack and the kernel's mappings. */
static inline int ckpt_vma_precopyable(uint32_t flags)
{
	return (flags & CKPT_VMA_ANON) &&
	       !(flags & (CKPT_VMA_SHARED | CKPT_VMA_SHM | CKPT_VMA_GROWSDOWN | CKPT_VMA_SPECIAL));
}

int ckpt_write_ranges(struct sm_image_writer *w, uint16_t type, const struct ckpt_pc_ranges *pr);
/* Decode a ROUND or PRECOPY payload (allowed flags: `flags_ok`); untrusted. */
int ckpt_read_ranges(struct sm_cursor *c, const char *what, uint32_t flags_ok, struct ckpt_pc_ranges *ret);
void ckpt_pc_ranges_free(struct ckpt_pc_ranges *pr);
/* One DROP section: npages pages at addr. */
int ckpt_write_drop(struct sm_image_writer *w, uint64_t addr, uint64_t npages);

/* The whole image except the pages, which stream through a callback. */
struct ckpt_image {
	struct ckpt_info info;
	struct ckpt_pc_ranges precopy; /* PRECOPY section: n == 0 without one */
	int has_precopy;
	struct ckpt_mm mm;
	struct ckpt_thread thread;
	struct ckpt_fds *fds;   /* ckpt_fd.c; NULL: no fd at all */
	struct ckpt_task *task; /* ckpt_task.c */
	struct ckpt_vma *vmas;
	size_t n_vmas;
	uint8_t *vdso;
	size_t vdso_len;
};

void ckpt_image_free(struct ckpt_image *im);

/* Encoders: one section each. */
int ckpt_write_info(struct sm_image_writer *w, const struct ckpt_info *in);
int ckpt_write_mm(struct sm_image_writer *w, const struct ckpt_mm *mm);
int ckpt_write_vmas(struct sm_image_writer *w, const struct ckpt_vma *v, size_t n);
int ckpt_write_thread(struct sm_image_writer *w, const struct ckpt_thread *t);
int ckpt_write_vdso(struct sm_image_writer *w, const void *p, size_t len);
/* Header of a PAGES section; the caller writes header + data as one section. */
#define CKPT_PAGES_HDR 16

/* Called for each PAGES section, in image order: `addr` is page-aligned and
 * the run lies inside one of the image's VMAs (checked before the call). */
typedef int (*ckpt_pages_fn)(uint64_t addr, const uint8_t *data, size_t len, void *userdata);

/* Read a whole process image: every section checked, VMAS before PAGES, each
 * run inside a mapping; pages are handed to fn as they come. */
int ckpt_read_image(struct sm_image_reader *r, struct ckpt_image *im, ckpt_pages_fn fn, void *userdata);

/* The same with the pre-copy sections. PRECOPY comes after VMAS and before
 * any PAGES or DROP; each of its ranges is exactly one precopyable VMA of
 * the image (checked before `precopy` is called, which may refuse). DROP
 * runs lie inside PRECOPY ranges. A NULL callback ignores its sections. */
struct ckpt_read_ops {
	ckpt_pages_fn pages;
	int (*precopy)(const struct ckpt_pc_ranges *pr, void *userdata);
	int (*drop)(uint64_t addr, uint64_t len, void *userdata);
};
int ckpt_read_image_ops(struct sm_image_reader *r, struct ckpt_image *im, const struct ckpt_read_ops *ops,
			void *userdata);

/* The blob that becomes the process (ckpt_blob.c): raw machine code, position
 * independent, no stack, no data. It runs a table of syscalls (struct
 * ckpt_op) given in %rdi (count in %rsi), then stops on int3 with %r15 = 0;
 * at the first failing op it stops on int3 with %r15 = 1, %r14 = op index,
 * %rax = the result. */
struct ckpt_op {
	uint64_t nr;
	uint64_t arg[6];
	uint64_t expect; /* with CKPT_OP_EQ */
	uint64_t check;  /* CKPT_OP_* */
};
enum { CKPT_OP_ANY = 0, CKPT_OP_EQ = 1, CKPT_OP_NONNEG = 2 };

/* This CPU's XCR0: the state components its xsave handles. */
static inline uint64_t ckpt_xcr0(void)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

/* /proc/PID/maps (pid 0: our own) as vmas; ckpt_dump.c. */
int ckpt_read_maps(pid_t pid, struct ckpt_vma **ret, size_t *ret_n);

extern const uint8_t ckpt_blob_start[], ckpt_blob_end[], ckpt_blob_syscall[];

#endif

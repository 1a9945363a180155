/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The restorer blob: the code a freshly forked child jumps to once it has been
 * given the blob's own mapping. It unmaps the child's whole address space and
 * builds the image's, so it may use nothing of it: no libc, no stack (the
 * stack is unmapped by its first ops), no data, no relocations. Writing it in
 * assembly makes that a fact rather than a hope about what a C compiler emits
 * (stack protector, memcpy calls, jump tables in .rodata).
 *
 * It only executes a table of syscalls prepared by the parent (struct
 * ckpt_op, 72 bytes each), checking each result, and stops on int3; the
 * parent, which traces it, then sets the registers. See docs/checkpoint.md.
 */
#include "ckpt.h"

__asm__(".pushsection .text\n"
	".globl ckpt_blob_start\n"
	".globl ckpt_blob_end\n"
	".globl ckpt_blob_syscall\n"
	".hidden ckpt_blob_start\n"
	".hidden ckpt_blob_end\n"
	".hidden ckpt_blob_syscall\n"
	".p2align 4\n"
	"ckpt_blob_start:\n"
	"	mov %rdi, %rbx\n"          /* op pointer */
	"	mov %rsi, %r12\n"          /* ops left */
	"	xor %r14d, %r14d\n"        /* op index */
	"1:	test %r12, %r12\n"
	"	jz 3f\n"
	"	mov 0(%rbx), %rax\n"
	"	mov 8(%rbx), %rdi\n"
	"	mov 16(%rbx), %rsi\n"
	"	mov 24(%rbx), %rdx\n"
	"	mov 32(%rbx), %r10\n"
	"	mov 40(%rbx), %r8\n"
	"	mov 48(%rbx), %r9\n"
	"	syscall\n"
	"	mov 64(%rbx), %r11\n"
	"	cmp $1, %r11\n"
	"	jne 2f\n"
	"	cmp 56(%rbx), %rax\n"
	"	jne 4f\n"
	"	jmp 5f\n"
	"2:	cmp $2, %r11\n"
	"	jne 5f\n"
	"	test %rax, %rax\n"
	"	js 4f\n"
	"5:	add $72, %rbx\n"
	"	inc %r14\n"
	"	dec %r12\n"
	"	jmp 1b\n"
	"3:	xor %r15d, %r15d\n"
	"	int3\n"
	"	ud2\n"
	"4:	mov $1, %r15d\n"
	"	int3\n"
	"	ud2\n"
	/* The parent points rip here to have the process unmap the blob
	 * itself, and catches the syscall's exit with PTRACE_SYSCALL. */
	"ckpt_blob_syscall:\n"
	"	syscall\n"
	"	int3\n"
	"	ud2\n"
	"ckpt_blob_end:\n"
	".popsection\n");

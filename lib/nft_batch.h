/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nf_tables over netlink with libmnl, for what libnftables is too slow at:
 * set elements by the thousand (flow locks, flow routes). Not installed.
 *
 * A batch is BATCH_BEGIN, messages with the sequence numbers seq0 + 1 ..
 * seq0 + n, BATCH_END; the kernel applies all of it or nothing. Every
 * message asks for an ACK, so the answer names the message (and, with
 * extended ACKs, the attribute offset) the kernel refused.
 *
 * Keys of concatenated set types are stored by nf_tables with every part
 * padded to 32 bits: sm_nft_key_put() appends one part that way.
 */
#ifndef SOCKMIG_LIB_NFT_BATCH_H
#define SOCKMIG_LIB_NFT_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>

/* Since Linux 6.3: delete an element, and no error if it is not there. The
 * uapi headers of the build machine may predate it. */
#define SM_NFT_MSG_DESTROYSETELEM 30

/* nla_len is 16 bits: the nested element list of one message must stay
 * below 64 KiB, so large updates are split into several messages of the
 * same batch (still one transaction). */
#define SM_NFT_ELEMS_MSG_MAX 60000

/* A netfilter netlink socket: batches and dumps. */
struct sm_nft {
	struct mnl_socket *nl;
	uint32_t portid;
	uint32_t seq;
	int sndbuf;
};

/* Open (extended, capped ACKs; answers awaited at most 5 s). Returns 0 or
 * -errno; the caller words the error. */
int sm_nft_open(struct sm_nft *s);
void sm_nft_close(struct sm_nft *s);

/* One nfnetlink message header at p. */
struct nlmsghdr *sm_nft_msg_put(void *p, uint16_t type, uint16_t flags, uint32_t seq, uint8_t family,
				uint16_t res_id);
size_t sm_nft_batch_begin(void *p, uint32_t seq);
size_t sm_nft_batch_end(void *p, uint32_t seq);

/* Send a batch whose messages (begin and end excluded) have the sequence
 * numbers seq0 + 1 .. seq0 + n_msgs, each with NLM_F_ACK, and wait for all
 * answers. Returns 0 or the first error, with the failing message's seq and
 * attribute offset (0 if the kernel named none). */
int sm_nft_batch_send(struct sm_nft *s, const void *buf, size_t len, uint32_t seq0, uint32_t n_msgs,
		      uint32_t *ret_seq, uint32_t *ret_offs);

/* Append one part of a concatenated key, padded to 32 bits; returns the
 * new length. */
static inline size_t sm_nft_key_put(uint8_t *key, size_t off, const void *v, size_t len)
{
	memcpy(key + off, v, len);
	memset(key + off + len, 0, ((len + 3) & ~(size_t)3) - len);
	return off + ((len + 3) & ~(size_t)3);
}

/* ---- element batches that grow as needed ---- */

/* Where an element went: to match the kernel's extended ACK to it. */
struct sm_nft_pos {
	uint32_t seq;
	uint32_t off;
};

struct sm_nft_batch {
	struct sm_nft *s;
	uint8_t *buf;
	size_t len, cap;
	uint32_t seq0, n_msgs;
	size_t msg_off, list_off; /* the open message; msg_off == 0: none */
	uint16_t type, flags;
	uint8_t family;
	char table[64], set[64];
	int err; /* -ENOMEM once an allocation failed; commit returns it */
};

void sm_nft_batch_init(struct sm_nft_batch *b, struct sm_nft *s);
void sm_nft_batch_free(struct sm_nft_batch *b);
/* The following elements go to table/set with a message of type
 * (NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM, SM_NFT_MSG_DESTROYSETELEM) and
 * flags (e.g. NLM_F_CREATE | NLM_F_EXCL). */
void sm_nft_batch_elems(struct sm_nft_batch *b, uint16_t type, uint16_t flags, uint8_t family, const char *table,
			const char *set);
/* One element: key, and the data of a map (dlen 0 for a set). */
void sm_nft_batch_elem(struct sm_nft_batch *b, const void *key, size_t klen, const void *data, size_t dlen,
		       struct sm_nft_pos *ret_pos);
/* Send it (nothing to send is success). 0 or the first error, with where
 * (ret_bad->off is 0 if the kernel named no attribute). */
int sm_nft_batch_commit(struct sm_nft_batch *b, struct sm_nft_pos *ret_bad);

/* ---- reading ---- */

/* Every element of a set or map: key, data (dlen 0 for a set), and the
 * packets counted by the element's counter (0 without one). A callback
 * that returns < 0 ends the dump with that error. */
typedef int (*sm_nft_elem_cb)(const uint8_t *key, size_t klen, const uint8_t *data, size_t dlen, uint64_t packets,
			      void *arg);
int sm_nft_set_dump(struct sm_nft *s, uint8_t family, const char *table, const char *set, sm_nft_elem_cb cb,
		    void *arg);

/* 1 if the chain exists, 0 if it (or its table) does not, or -errno. */
int sm_nft_chain_exists(struct sm_nft *s, uint8_t family, const char *table, const char *chain);
/* 1 if the table exists, 0 if not, or -errno. */
int sm_nft_table_exists(struct sm_nft *s, uint8_t family, const char *table);

#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The channel's insides, shared by its two halves: lib/chan_handshake.c
 * (the handshake: frames, keys, signatures) and lib/chan.c (records, the
 * pump). Not installed; include/sockmig/chan.h is the manual.
 */
#ifndef SOCKMIG_LIB_CHAN_IMPL_H
#define SOCKMIG_LIB_CHAN_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <sodium.h>

#include "sockmig/chan.h"
#include "sockmig/config.h"

#define REC_HDR 4

struct rx_state {
	uint8_t hdr[REC_HDR];
	size_t hdr_got;
	uint32_t clen;
	uint8_t *buf; /* ciphertext of the record being read */
	size_t cap, got;
	uint8_t *pt;  /* the last record, decrypted: type, payload */
	size_t pt_cap, pt_len;
	uint64_t n;   /* records received so far */
	bool ended;
	bool peer_gave_up; /* the peer's last record was an ERROR */
};

struct sockmig_chan {
	int fd;
	unsigned timeout_ms;
	char peer[SOCKMIG_NAME_MAX + 1];
	char peer_desc[SOCKMIG_NAME_MAX + 16]; /* "node 'NAME'", for sentences */
	crypto_secretstream_xchacha20poly1305_state tx_st, rx_st;
	struct rx_state rx;
	/* sealed bytes waiting for the socket */
	uint8_t *tx;
	size_t tx_cap, tx_len, tx_off;
	/* plaintext being sealed: type, payload */
	uint8_t *txp;
	size_t txp_cap;
	uint64_t tx_n;
	bool tx_ended;
	/* the pump */
	int cancel_fd;
	int pump_local; /* our end of pump_start's socketpair */
	pthread_t thread;
	bool thread_running;
	int pump_result;
	char pump_error[512];
};

uint64_t sm_chan_deadline_in(unsigned ms);
/* Wait until fd has events or the deadline; 0, -ETIMEDOUT or -errno. */
int sm_chan_wait_fd(int fd, short events, uint64_t deadline);
/* All of buf, within the deadline; 0 or -errno. */
int sm_chan_write_deadline(int fd, const void *buf, size_t len, uint64_t deadline);
/* A channel on fd (made non-blocking), not yet keyed. */
int sm_chan_new(int fd, unsigned timeout_ms, struct sockmig_chan **ret);

#endif

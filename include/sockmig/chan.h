/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The node-to-node channel: mutual authentication by the cluster's secret and
 * each node's own signing key, and encryption, over a connected TCP socket,
 * with libsodium. The bytes on the wire are docs/wire-protocol.md (version
 * 2.0).
 *
 *   initiator (dials)                          responder (accepted)
 *   ---------------------------------------    ---------------------------------
 *   sockmig_chan_connect(fd, opts)              sockmig_chan_accept(fd, opts)
 *           ---- HELLO: version, name, cluster, ephemeral key, node key -->
 *           <--- HELLO, AUTH: MAC proving the secret, node signature -----
 *           ---- AUTH: MAC proving the secret, node signature, STREAM --->
 *           <--- STREAM header (or REFUSE with the reason) ---------
 *   records both ways: sockmig_chan_send() / sockmig_chan_recv(), each a type
 *   byte and up to SOCKMIG_CHAN_RECORD_MAX bytes, sealed with
 *   crypto_secretstream_xchacha20poly1305 (one stream per direction); each
 *   direction ends with an END record (TAG_FINAL): sockmig_chan_end(). A
 *   side that fails on a live channel (a damaged record from the peer, a
 *   timeout) first tells the peer its sentence in an ERROR record, if it can.
 *
 * Keys: both sides make an ephemeral crypto_kx key pair; the session keys
 * are derived from the kx result, the transcript of both HELLOs and the
 * secret, so a peer without the secret can neither prove itself nor read or
 * forge a byte, and a recorded session stays secret even if the cluster
 * secret is disclosed later (forward secrecy against passive attackers).
 * Each side also signs the transcript with its node's Ed25519 key, and
 * checks the other's signature with the key its own config gives the name
 * the other claims: a member that knows the secret cannot pose as another.
 *
 * The pump: the socket move and checkpoint code speak over a plain fd
 * (write(2) of images, read(2) of answers). sockmig_chan_pump_start() gives
 * the caller one end of a socketpair and relays it, in a thread, to and from
 * the encrypted socket as DATA records; closing (or shutting down for
 * writing) the local end sends END, an END from the peer shuts the local end
 * down for writing, so EOF travels both ways. A record that fails
 * authentication (a byte changed on the wire), a truncated stream, an
 * oversized record or a peer silent in the middle of a record for the
 * timeout closes both sides at once: the local end then reads EOF (never a
 * byte of the damaged record) and sockmig_chan_pump_wait() returns the
 * sentence. Ignore SIGPIPE in a program that uses the pump.
 *
 * Every wait is bounded by the timeout (per step of the handshake, per
 * record, per write); memory is bounded whatever the peer sends: a record's
 * length is checked against the limit before anything is allocated.
 * Functions return >= 0 or -errno with a sentence (sockmig_error()).
 */
#ifndef SOCKMIG_CHAN_H
#define SOCKMIG_CHAN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SOCKMIG_CHAN_VERSION_MAJOR 2
#define SOCKMIG_CHAN_VERSION_MINOR 0
/* Largest record payload (after the type byte), in both directions. */
#define SOCKMIG_CHAN_RECORD_MAX (256u << 10)
#define SOCKMIG_CHAN_DEFAULT_TIMEOUT_MS 10000

/* Record types. The framing never changes with them: a new kind of record
 * (memory pre-copy rounds, lazy pages) is a new type. A receiver that does
 * not know a type refuses the stream, unless the type has the MAY_SKIP bit,
 * in which case it skips the record. */
enum sockmig_chan_type {
	SOCKMIG_CHAN_DATA = 0x01,    /* bytes of the relayed stream (the pump) */
	SOCKMIG_CHAN_END = 0x02,     /* this direction ends here, cleanly; empty */
	SOCKMIG_CHAN_REQUEST = 0x03, /* a daemon's request: "VERB [ARG...]" */
	SOCKMIG_CHAN_REPLY = 0x04,   /* the answer: "ok [...]" or "error SENTENCE" */
	/* The channel's own, never sent by a caller: the sender gave up (a
	 * damaged record from its peer, a timeout...); the payload is its
	 * sentence, which the receiver fails with ("node 'n2' gave up the
	 * channel: ..."). Its last record. */
	SOCKMIG_CHAN_ERROR = 0x05,
	/* 0x10..0x1f reserved for process memory: pre-copy rounds, lazy pages */
	SOCKMIG_CHAN_MAY_SKIP = 0x80,
};

struct sockmig_chan;
struct sockmig_keys; /* sockmig/config.h */

struct sockmig_chan_opts {
	const char *cluster;   /* our cluster's name: the peer's must be equal */
	const char *node;      /* our node's name, told to the peer */
	/* A loaded config's `secret`: the cluster secret, our node's signing
	 * key (which must be the key of the member named node), and every
	 * member's public key, which a peer's signature is checked with. */
	const struct sockmig_keys *secret;
	unsigned timeout_ms;   /* every wait on the peer; 0: 10 s */
	/* connect: the peer must call itself this; NULL: any name. */
	const char *expect_peer;
	/* Called once the peer has proved it knows the secret and holds the
	 * key of the member it claims to be, before the channel is up, with
	 * that name: return 0 to accept it, or -errno with a reason (one
	 * sentence) written to reason, which is told to the peer and
	 * recorded. NULL: every member is accepted. */
	int (*check_peer)(const char *peer, char *reason, size_t size, void *userdata);
	void *userdata;
};

/* Handshake as the initiator on a connected TCP socket. On success the
 * channel owns fd (and sets it non-blocking); on failure fd stays the
 * caller's and nothing was left in it that could be mistaken for a channel. */
int sockmig_chan_connect(int fd, const struct sockmig_chan_opts *o, struct sockmig_chan **ret);
/* Handshake as the responder on an accepted TCP socket. Same ownership. */
int sockmig_chan_accept(int fd, const struct sockmig_chan_opts *o, struct sockmig_chan **ret);

/* The authenticated peer's node name. */
const char *sockmig_chan_peer(const struct sockmig_chan *c);
/* The TCP socket (e.g. for getpeername, or shutdown() from another thread
 * to wake whatever waits on it). */
int sockmig_chan_fd(const struct sockmig_chan *c);
/* Change the bound of every later wait. */
void sockmig_chan_set_timeout(struct sockmig_chan *c, unsigned timeout_ms);

/* Seal and send one record (type: not END; len <= SOCKMIG_CHAN_RECORD_MAX). */
int sockmig_chan_send(struct sockmig_chan *c, uint8_t type, const void *data, size_t len);
/* Send END: nothing more goes this way (again: nothing happens). */
int sockmig_chan_end(struct sockmig_chan *c);
/* Wait for the next record: returns 1 and fills the outputs (*ret_data is
 * valid until the next call on c), or 0 once the peer sent END. Records of
 * unknown MAY_SKIP types are returned too: the caller skips them. */
int sockmig_chan_recv(struct sockmig_chan *c, uint8_t *ret_type, const uint8_t **ret_data, size_t *ret_len);

/* Relay local_fd (a connected stream socket, the caller's; made
 * non-blocking) and the channel until both directions have ended, on the
 * calling thread (a poll loop). 0 when both ended cleanly, else -errno: then
 * both the channel and local_fd are shut down. */
int sockmig_chan_pump(struct sockmig_chan *c, int local_fd);
/* The same in a thread of its own: *ret_fd is the caller's end of a new
 * socketpair (O_CLOEXEC), to be used like a connected socket to the peer's
 * end, and closed when done. Only sockmig_chan_pump_cancel(), _wait() and
 * _free() may be called on c until _wait() returned. */
int sockmig_chan_pump_start(struct sockmig_chan *c, int *ret_fd);
/* Wait for the pump thread: its result, with its sentence. */
int sockmig_chan_pump_wait(struct sockmig_chan *c);
/* Make a running pump stop at once with -ECANCELED (from any thread). */
void sockmig_chan_pump_cancel(struct sockmig_chan *c);

/* Closes the socket (and waits for a pump still running); NULL is fine. */
void sockmig_chan_free(struct sockmig_chan *c);

#ifdef __cplusplus
}
#endif

#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The cluster config file: which cluster this is, its shared secret, which
 * member this node is and its signing key, where every member's daemon
 * listens and its public key, and where the local daemon's control socket
 * is. The format is docs/cluster.md:
 *
 *   # comment
 *   cluster   NAME
 *   secret    64 HEX DIGITS            (or: secret-file PATH, mode 0600)
 *   key-file  PATH                     this node's Ed25519 key, mode 0600
 *   node      NAME                     this node: one of the members
 *   control   /run/sockmig/sockmigd.sock
 *   timeout   10000                    ms, every wait on another node
 *   member    NAME ADDRESS [PORT] key PUBLIC-KEY
 *                                      ADDRESS: IPv4 or IPv6, PORT 7890;
 *                                      PUBLIC-KEY: 32 bytes in base64
 *
 * The text is untrusted: every refusal is one sentence "FILE:LINE: cause".
 *
 *   sockmig_config_load()      read a file, parse it, read the secret and
 *                              key files
 *   sockmig_config_parse()     parse text from memory (no file is opened)
 *   sockmig_config_member()    a member by name; _self(): this node's
 *   sockmig_config_write()     the canonical text of a config
 *   sockmig_config_secret_create()   a fresh random secret file, mode 0600
 *   sockmig_config_key_create()      a fresh node key file, mode 0600
 */
#ifndef SOCKMIG_CONFIG_H
#define SOCKMIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SOCKMIG_CONFIG_DEFAULT_PATH "/etc/sockmig/cluster.conf"
#define SOCKMIG_CONFIG_DEFAULT_CONTROL "/run/sockmig/sockmigd.sock"
#define SOCKMIG_CONFIG_DEFAULT_PORT 7890
#define SOCKMIG_CONFIG_DEFAULT_TIMEOUT_MS 10000
#define SOCKMIG_CONFIG_MEMBERS_MAX 256
/* Longest config file read; a longer one is refused. */
#define SOCKMIG_CONFIG_SIZE_MAX (1u << 20)
/* Node and cluster names: 1 to 63 of [A-Za-z0-9_.-]. */
#define SOCKMIG_NAME_MAX 63
#define SOCKMIG_SECRET_SIZE 32
/* A node's Ed25519 public key (crypto_sign), and its secret key as
 * libsodium keeps it: the 32-byte seed, then the public key. */
#define SOCKMIG_KEY_SIZE 32
#define SOCKMIG_NODE_KEY_SIZE 64
/* A public key in base64 (with its one '=' of padding), as configs write it. */
#define SOCKMIG_KEY_TEXT_SIZE 45
/* sun_path of a unix socket, with the NUL. */
#define SOCKMIG_CONTROL_PATH_SIZE 108
#define SOCKMIG_PATH_SIZE 4096

struct sockmig_member {
	char name[SOCKMIG_NAME_MAX + 1];
	int family;        /* AF_INET or AF_INET6 */
	uint8_t addr[16];  /* network order; IPv4 in the first 4 bytes */
	uint16_t port;     /* host order */
	char addr_text[46];
	unsigned line;     /* where it was declared */
	bool has_key;      /* key holds its public key (every parsed member has one) */
	uint8_t key[SOCKMIG_KEY_SIZE]; /* Ed25519: what its handshakes are signed with */
};

/*
 * What the channel proves this node with and checks its peers against
 * (sockmig_chan_opts.secret): the cluster's shared secret, this node's
 * signing key, and the members with their public keys. A config holds it as
 * an array of one, so that `cfg->secret` is passed by reference and wiped
 * with sizeof(cfg->secret), as the 32-byte array it replaced was.
 */
struct sockmig_keys {
	uint8_t cluster[SOCKMIG_SECRET_SIZE]; /* the shared secret */
	bool has_node_key;                    /* node holds this node's key */
	uint8_t node[SOCKMIG_NODE_KEY_SIZE];  /* crypto_sign secret key: seed, public key */
	/* The members and their keys: the config's own members array, so a
	 * config must not be copied by value. */
	const struct sockmig_member *members;
	size_t n_members;
};

struct sockmig_config {
	char path[SOCKMIG_PATH_SIZE]; /* the file (or the name given to _parse) */
	char cluster[SOCKMIG_NAME_MAX + 1];
	char node[SOCKMIG_NAME_MAX + 1];
	char control[SOCKMIG_CONTROL_PATH_SIZE];
	unsigned timeout_ms;
	bool has_secret;  /* secret->cluster holds the cluster's secret */
	struct sockmig_keys secret[1];
	/* secret-file as written (relative: to the config's directory), and
	 * resolved; "" if the secret is inline. */
	char secret_file[SOCKMIG_PATH_SIZE];
	unsigned secret_line;
	/* key-file (this node's signing key), resolved like secret_file. */
	char key_file[SOCKMIG_PATH_SIZE];
	unsigned key_line;
	size_t n_members;
	struct sockmig_member members[];
};

enum {
	/* Do not read the secret and key files and do not refuse an inline
	 * secret in a file others can read: for clients (sockmig nodes) that
	 * only need the control socket and the member list. has_secret and
	 * secret->has_node_key may be false. */
	SOCKMIG_CONFIG_NO_SECRET = 1u << 0,
};

/* true if s is a valid node or cluster name. */
bool sockmig_name_valid(const char *s);

/* Read and check the config file at path. Unless flags has
 * SOCKMIG_CONFIG_NO_SECRET, the secret is loaded: from its file (which must
 * be a regular file of root's or ours, not accessible to group or others),
 * or inline, in which case the config file itself must not be readable by
 * group or others; and so is this node's key, from its key-file (the same
 * rules), whose public half must be a member's key. free() the result. */
int sockmig_config_load(const char *path, unsigned flags, struct sockmig_config **ret);

/* Parse and check config text (need not be NUL-terminated); name is used in
 * sentences and to resolve a relative secret-file or key-file. Nothing is
 * opened: a secret-file and the key-file are left for the caller
 * (has_secret and secret->has_node_key stay false). */
int sockmig_config_parse(const char *text, size_t len, const char *name, struct sockmig_config **ret);

/* Read the secret file named by cfg into cfg->secret, with the checks of
 * sockmig_config_load(). */
int sockmig_config_read_secret(struct sockmig_config *cfg);

/* Read this node's key from the key-file named by cfg into cfg->secret->node,
 * with the same checks on the file. The key must be one of the members'
 * (the channel checks at every handshake that it is the one of the node it
 * runs as, which `sockmigd --node` may have changed). */
int sockmig_config_read_key(struct sockmig_config *cfg);

/* The member of that name, or NULL. */
const struct sockmig_member *sockmig_config_member(const struct sockmig_config *cfg, const char *name);
/* This node's member entry (never NULL for a config that parsed). */
const struct sockmig_member *sockmig_config_self(const struct sockmig_config *cfg);

/* A member's address as a sockaddr, ready for bind() or connect(). */
socklen_t sockmig_member_sockaddr(const struct sockmig_member *m, struct sockaddr_storage *ret);

/* Write the canonical text of cfg to fd (the secret as secret-file if it
 * has one, else inline; the key-file; the members with their keys). Parsing
 * it gives cfg back. */
int sockmig_config_write(const struct sockmig_config *cfg, int fd);

/* Create path (it must not exist) with mode 0600 holding a fresh random
 * 32-byte secret in hex; if ret_secret is not NULL it gets the secret. */
int sockmig_config_secret_create(const char *path, uint8_t ret_secret[SOCKMIG_SECRET_SIZE]);

/* Create path (it must not exist) with mode 0600 holding a fresh node key
 * (docs/cluster.md: its seed in hex, after a comment with its public key);
 * ret_public, if not NULL, gets the public key for the members' lines. */
int sockmig_config_key_create(const char *path, uint8_t ret_public[SOCKMIG_KEY_SIZE]);

/* A public key as a config writes it (base64, NUL-terminated), and back:
 * 0, or -EINVAL if text is not 32 bytes in base64. */
void sockmig_key_to_text(const uint8_t key[SOCKMIG_KEY_SIZE], char text[SOCKMIG_KEY_TEXT_SIZE]);
int sockmig_key_from_text(const char *text, uint8_t ret_key[SOCKMIG_KEY_SIZE]);

#ifdef __cplusplus
}
#endif

#endif

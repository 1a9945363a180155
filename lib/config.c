/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The cluster config file: include/sockmig/config.h, docs/cluster.md. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "sockmig/config.h"
#include "image.h"
#include "util.h"

#define LINE_MAX_LEN 8192
#define WORDS_MAX 6
/* A key file: a comment and the seed; anything longer is not one. */
#define KEY_FILE_MAX 1024

_Static_assert(SOCKMIG_KEY_SIZE == crypto_sign_PUBLICKEYBYTES, "a node key is an Ed25519 public key");
_Static_assert(SOCKMIG_NODE_KEY_SIZE == crypto_sign_SECRETKEYBYTES, "libsodium's Ed25519 secret key");
_Static_assert(SOCKMIG_KEY_TEXT_SIZE == sodium_base64_ENCODED_LEN(SOCKMIG_KEY_SIZE, sodium_base64_VARIANT_ORIGINAL),
	       "a key's base64 with its NUL");

bool sockmig_name_valid(const char *s)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '-' || c == '.'))
			return false;
	}
	return n >= 1 && n <= SOCKMIG_NAME_MAX;
}

/* Untrusted text in a sentence: printable ASCII only, at most 40 bytes. */
static const char *shown(const char *s, char buf[64])
{
	size_t i, o = 0;

	for (i = 0; s[i] && o < 40; i++)
		buf[o++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	if (s[i])
		memcpy(buf + o, "...", 4);
	else
		buf[o] = '\0';
	return buf;
}

struct parser {
	const char *name;
	unsigned line;
	struct sockmig_config *cfg; /* without members until the end */
	struct sockmig_member *members;
	size_t n_members, cap;
	unsigned seen[16];         /* line of each key, 0 if not seen */
};

enum { K_CLUSTER, K_SECRET, K_SECRET_FILE, K_KEY_FILE, K_NODE, K_CONTROL, K_TIMEOUT, K_MEMBER };

#define MEMBER_USAGE "member NAME ADDRESS [PORT] key PUBLIC-KEY"

static const struct {
	const char *word;
	int min_args, max_args;
	const char *values;
	const char *usage;
} keys[] = {
	[K_CLUSTER] = { "cluster", 1, 1, "one value", "cluster NAME" },
	[K_SECRET] = { "secret", 1, 1, "one value", "secret HEX (64 hex digits)" },
	[K_SECRET_FILE] = { "secret-file", 1, 1, "one value", "secret-file PATH" },
	[K_KEY_FILE] = { "key-file", 1, 1, "one value", "key-file PATH" },
	[K_NODE] = { "node", 1, 1, "one value", "node NAME" },
	[K_CONTROL] = { "control", 1, 1, "one value", "control PATH" },
	[K_TIMEOUT] = { "timeout", 1, 1, "one value", "timeout MILLISECONDS" },
	/* 2 and 3 values are the key-less lines of channel version 1: let
	 * parse_member() say what they lack. */
	[K_MEMBER] = { "member", 2, 5, "a name, an address, an optional port and 'key PUBLIC-KEY'", MEMBER_USAGE },
};

static int pfail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pfail(struct parser *p, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sm_fail(-EINVAL, "%s:%u: %s", p->name, p->line, msg);
}

static int parse_name(struct parser *p, const char *what, const char *s, char *out)
{
	char b[64];

	if (!sockmig_name_valid(s))
		return pfail(p, "'%s' is not a valid %s name (1 to %d of letters, digits, '_', '-', '.')",
			     shown(s, b), what, SOCKMIG_NAME_MAX);
	snprintf(out, SOCKMIG_NAME_MAX + 1, "%s", s);
	return 0;
}

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *ret)
{
	unsigned long v = 0;

	if (!*s || strlen(s) > 10)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

static int parse_hex_secret(const char *s, uint8_t out[SOCKMIG_SECRET_SIZE])
{
	size_t bin_len = 0;

	if (strlen(s) != 2 * SOCKMIG_SECRET_SIZE)
		return -EINVAL;
	for (const char *c = s; *c; c++) {
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F')))
			return -EINVAL;
	}
	if (sodium_hex2bin(out, SOCKMIG_SECRET_SIZE, s, strlen(s), NULL, &bin_len, NULL) < 0 ||
	    bin_len != SOCKMIG_SECRET_SIZE)
		return -EINVAL;
	return 0;
}

void sockmig_key_to_text(const uint8_t key[SOCKMIG_KEY_SIZE], char text[SOCKMIG_KEY_TEXT_SIZE])
{
	sodium_bin2base64(text, SOCKMIG_KEY_TEXT_SIZE, key, SOCKMIG_KEY_SIZE, sodium_base64_VARIANT_ORIGINAL);
}

int sockmig_key_from_text(const char *text, uint8_t ret_key[SOCKMIG_KEY_SIZE])
{
	uint8_t key[SOCKMIG_KEY_SIZE];
	const char *end = NULL;
	size_t bin_len = 0;

	if (strlen(text) != SOCKMIG_KEY_TEXT_SIZE - 1 ||
	    sodium_base642bin(key, sizeof(key), text, SOCKMIG_KEY_TEXT_SIZE - 1, NULL, &bin_len, &end,
			      sodium_base64_VARIANT_ORIGINAL) < 0 ||
	    bin_len != SOCKMIG_KEY_SIZE || end != text + SOCKMIG_KEY_TEXT_SIZE - 1)
		return -EINVAL;
	memcpy(ret_key, key, sizeof(key));
	return 0;
}

static int member_usage(struct parser *p)
{
	return pfail(p, "'member' takes %s: %s", keys[K_MEMBER].values, keys[K_MEMBER].usage);
}

static int parse_member(struct parser *p, char **w, int nw)
{
	struct sockmig_member m = { .port = SOCKMIG_CONFIG_DEFAULT_PORT, .line = p->line };
	char addr[64], b[64];
	size_t alen;
	int r, at = 3;

	r = parse_name(p, "member", w[1], m.name);
	if (r < 0)
		return r;
	/* [v6] is accepted too, as people write it next to a port. */
	alen = strlen(w[2]);
	if (alen >= sizeof(addr))
		return pfail(p, "'%s' is not an IPv4 or IPv6 address", shown(w[2], b));
	if (w[2][0] == '[' && alen > 2 && w[2][alen - 1] == ']') {
		memcpy(addr, w[2] + 1, alen - 2);
		addr[alen - 2] = '\0';
	} else {
		memcpy(addr, w[2], alen + 1);
	}
	if (inet_pton(AF_INET, addr, m.addr) == 1)
		m.family = AF_INET;
	else if (inet_pton(AF_INET6, addr, m.addr) == 1)
		m.family = AF_INET6;
	else
		return pfail(p, "'%s' is not an IPv4 or IPv6 address", shown(w[2], b));
	inet_ntop(m.family, m.addr, m.addr_text, sizeof(m.addr_text));
	if (nw > 3 && strcmp(w[3], "key")) {
		unsigned long port;
		if (parse_uint(w[3], 1, 65535, &port) < 0)
			return pfail(p, "'%s' is not a port number (1 to 65535)", shown(w[3], b));
		m.port = (uint16_t)port;
		at = 4;
	}
	if (at < nw) {
		if (strcmp(w[at], "key") || at + 2 != nw)
			return member_usage(p);
		if (sockmig_key_from_text(w[at + 1], m.key) < 0)
			return pfail(p, "'%s' is not a node's public key (32 bytes in base64: 44 characters)",
				     shown(w[at + 1], b));
		m.has_key = true;
	}
	/* A member without a key could be claimed by any node that knows the
	 * secret: exactly what the keys close. */
	if (!m.has_key)
		return pfail(p, "member '%s' has no key: every member needs its node's public key (%s)", m.name,
			     MEMBER_USAGE);
	for (size_t i = 0; i < p->n_members; i++) {
		const struct sockmig_member *o = &p->members[i];
		if (!strcmp(o->name, m.name))
			return pfail(p, "member '%s' is declared twice (first on line %u)", m.name, o->line);
		if (o->family == m.family && o->port == m.port &&
		    !memcmp(o->addr, m.addr, m.family == AF_INET ? 4 : 16))
			return pfail(p, "members '%s' and '%s' have the same address and port %s %u", o->name, m.name,
				     m.addr_text, m.port);
		/* One node holding two names' key could be either. */
		if (!memcmp(o->key, m.key, sizeof(m.key)))
			return pfail(p, "members '%s' and '%s' have the same key: every node needs a key of its own",
				     o->name, m.name);
	}
	if (p->n_members == SOCKMIG_CONFIG_MEMBERS_MAX)
		return pfail(p, "a cluster has at most %d members", SOCKMIG_CONFIG_MEMBERS_MAX);
	if (p->n_members == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		void *n = realloc(p->members, cap * sizeof(*p->members));
		if (!n)
			return sm_fail(-ENOMEM, "%s:%u: out of memory", p->name, p->line);
		p->members = n;
		p->cap = cap;
	}
	p->members[p->n_members++] = m;
	return 0;
}

static int parse_path(struct parser *p, const char *what, const char *s, char *out, size_t size)
{
	char b[64];

	if (strlen(s) >= size)
		return pfail(p, "the %s path is longer than %zu bytes", what, size - 1);
	for (const char *c = s; *c; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return pfail(p, "the %s path '%s' contains a control character", what, shown(s, b));
	}
	snprintf(out, size, "%s", s);
	return 0;
}

static int parse_line(struct parser *p, char *line)
{
	char *w[WORDS_MAX + 1], *save = NULL, *tok, b[64];
	int nw = 0, k = -1, r;
	unsigned long v;

	/* A comment runs from '#' to the end of the line. */
	line[strcspn(line, "#")] = '\0';
	for (tok = strtok_r(line, " \t\r\v\f", &save); tok; tok = strtok_r(NULL, " \t\r\v\f", &save)) {
		if (nw == WORDS_MAX + 1)
			break;
		w[nw++] = tok;
	}
	if (nw == 0)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		if (!strcmp(w[0], keys[i].word))
			k = (int)i;
	}
	if (k < 0)
		return pfail(p, "'%s' is not a config keyword (cluster, secret, secret-file, key-file, node, control, "
				"timeout, member)",
			     shown(w[0], b));
	if (nw - 1 < keys[k].min_args || nw - 1 > keys[k].max_args)
		return pfail(p, "'%s' takes %s: %s", keys[k].word, keys[k].values, keys[k].usage);
	if (k != K_MEMBER && p->seen[k])
		return pfail(p, "'%s' is given twice (first on line %u)", keys[k].word, p->seen[k]);
	if (!p->seen[k])
		p->seen[k] = p->line;

	switch (k) {
	case K_CLUSTER:
		return parse_name(p, "cluster", w[1], p->cfg->cluster);
	case K_NODE:
		return parse_name(p, "node", w[1], p->cfg->node);
	case K_SECRET:
		if (parse_hex_secret(w[1], p->cfg->secret->cluster) < 0)
			return pfail(p, "the secret must be exactly %d hex digits", 2 * SOCKMIG_SECRET_SIZE);
		p->cfg->has_secret = true;
		p->cfg->secret_line = p->line;
		return 0;
	case K_SECRET_FILE:
		r = parse_path(p, "secret-file", w[1], p->cfg->secret_file, sizeof(p->cfg->secret_file));
		if (r == 0 && !p->cfg->secret_file[0])
			r = pfail(p, "the secret-file path is empty");
		p->cfg->secret_line = p->line;
		return r;
	case K_KEY_FILE:
		r = parse_path(p, "key-file", w[1], p->cfg->key_file, sizeof(p->cfg->key_file));
		if (r == 0 && !p->cfg->key_file[0])
			r = pfail(p, "the key-file path is empty");
		p->cfg->key_line = p->line;
		return r;
	case K_CONTROL:
		r = parse_path(p, "control socket", w[1], p->cfg->control, sizeof(p->cfg->control));
		if (r == 0 && p->cfg->control[0] != '/')
			r = pfail(p, "the control socket path must be absolute, not '%s'", shown(w[1], b));
		return r;
	case K_TIMEOUT:
		if (parse_uint(w[1], 1, 3600000, &v) < 0)
			return pfail(p, "timeout takes milliseconds from 1 to 3600000, not '%s'", shown(w[1], b));
		p->cfg->timeout_ms = (unsigned)v;
		return 0;
	case K_MEMBER:
		return parse_member(p, w, nw);
	}
	return 0;
}

/* A relative secret-file or key-file names a file next to the config. */
static int resolve_file(struct sockmig_config *cfg, char path[SOCKMIG_PATH_SIZE], unsigned line, const char *what)
{
	char dir[SOCKMIG_PATH_SIZE], out[SOCKMIG_PATH_SIZE];

	if (!path[0] || path[0] == '/')
		return 0;
	snprintf(dir, sizeof(dir), "%s", cfg->path);
	if ((size_t)snprintf(out, sizeof(out), "%s/%s", dirname(dir), path) >= sizeof(out))
		return sm_fail(-ENAMETOOLONG, "%s:%u: the %s path is too long once made relative to %s", cfg->path, line,
			       what, cfg->path);
	memcpy(path, out, sizeof(out));
	return 0;
}

int sockmig_config_parse(const char *text, size_t len, const char *name, struct sockmig_config **ret)
{
	struct parser p = { .name = name && name[0] ? name : "(config)" };
	struct sockmig_config *cfg;
	char *line = NULL;
	size_t pos = 0;
	int r = 0;

	if (len > SOCKMIG_CONFIG_SIZE_MAX) {
		p.line = 1;
		return pfail(&p, "the file is longer than %u bytes", SOCKMIG_CONFIG_SIZE_MAX);
	}
	line = malloc(LINE_MAX_LEN + 1);
	p.cfg = calloc(1, sizeof(*p.cfg));
	if (!line || !p.cfg) {
		free(line);
		free(p.cfg);
		return sm_fail(-ENOMEM, "%s: out of memory", p.name);
	}
	p.cfg->timeout_ms = SOCKMIG_CONFIG_DEFAULT_TIMEOUT_MS;
	while (pos < len && r == 0) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

		p.line++;
		if (n > LINE_MAX_LEN)
			r = pfail(&p, "the line is longer than %d bytes", LINE_MAX_LEN);
		else if (memchr(text + pos, '\0', n))
			r = pfail(&p, "the line contains a NUL byte");
		if (r < 0)
			break;
		memcpy(line, text + pos, n);
		line[n] = '\0';
		r = parse_line(&p, line);
		pos += n + (nl ? 1 : 0);
	}
	free(line);
	if (r < 0)
		goto fail;

	/* What the whole file must have, reported at its last line. */
	p.line = p.line ? p.line : 1;
	if (!p.seen[K_CLUSTER])
		r = pfail(&p, "the file ends without a 'cluster NAME' line");
	else if (!p.seen[K_NODE])
		r = pfail(&p, "the file ends without a 'node NAME' line (which member this node is)");
	else if (!p.seen[K_SECRET] && !p.seen[K_SECRET_FILE])
		r = pfail(&p, "the file ends without a 'secret' or 'secret-file' line");
	else if (p.seen[K_SECRET] && p.seen[K_SECRET_FILE]) {
		p.line = p.seen[K_SECRET] > p.seen[K_SECRET_FILE] ? p.seen[K_SECRET] : p.seen[K_SECRET_FILE];
		r = pfail(&p, "give either 'secret' or 'secret-file', not both (lines %u and %u)", p.seen[K_SECRET],
			  p.seen[K_SECRET_FILE]);
	} else if (!p.seen[K_KEY_FILE])
		r = pfail(&p, "the file ends without a 'key-file PATH' line (this node's signing key)");
	else if (p.n_members == 0)
		r = pfail(&p, "the file ends without any '" MEMBER_USAGE "' line");
	if (r < 0)
		goto fail;
	{
		bool found = false;
		for (size_t i = 0; i < p.n_members; i++)
			found |= !strcmp(p.members[i].name, p.cfg->node);
		if (!found) {
			p.line = p.seen[K_NODE];
			r = pfail(&p, "this node '%s' is not one of the members", p.cfg->node);
			goto fail;
		}
	}
	if (!p.cfg->control[0])
		snprintf(p.cfg->control, sizeof(p.cfg->control), "%s", SOCKMIG_CONFIG_DEFAULT_CONTROL);

	cfg = realloc(p.cfg, sizeof(*cfg) + p.n_members * sizeof(cfg->members[0]));
	if (!cfg) {
		r = sm_fail(-ENOMEM, "%s: out of memory", p.name);
		goto fail;
	}
	p.cfg = NULL;
	snprintf(cfg->path, sizeof(cfg->path), "%s", p.name);
	cfg->n_members = p.n_members;
	memcpy(cfg->members, p.members, p.n_members * sizeof(cfg->members[0]));
	free(p.members);
	cfg->secret->members = cfg->members;
	cfg->secret->n_members = cfg->n_members;
	r = resolve_file(cfg, cfg->secret_file, cfg->secret_line, "secret-file");
	if (r == 0)
		r = resolve_file(cfg, cfg->key_file, cfg->key_line, "key-file");
	if (r < 0) {
		sodium_memzero(cfg->secret, sizeof(cfg->secret));
		free(cfg);
		return r;
	}
	*ret = cfg;
	return 0;
fail:
	free(p.members);
	if (p.cfg) {
		sodium_memzero(p.cfg->secret, sizeof(p.cfg->secret));
		free(p.cfg);
	}
	return r;
}

/*
 * Read a small private file: a regular file of root's or ours that group
 * and others cannot touch (what is in it lets anyone act as this node).
 * Fills text (NUL-terminated, at most size - 1 bytes; more is -EFBIG
 * without a sentence, for the caller's "must hold" sentence).
 */
static int read_private(const struct sockmig_config *cfg, unsigned line, const char *what, const char *path,
			char *text, size_t size)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	size_t n = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return sm_fail(-errno, "%s:%u: cannot open %s file %s: %s", cfg->path, line, what, path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return sm_fail(-errno, "%s:%u: cannot stat %s file %s: %s", cfg->path, line, what, path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return sm_fail(-EINVAL, "%s:%u: %s file %s is not a regular file", cfg->path, line, what, path);
	if (st.st_mode & 077)
		return sm_fail(-EPERM, "%s:%u: %s file %s can be read or written by group or others (mode %04o); "
				       "make it mode 0600",
			       cfg->path, line, what, path, (unsigned)(st.st_mode & 07777));
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return sm_fail(-EPERM, "%s:%u: %s file %s belongs to uid %u, neither root nor us", cfg->path, line, what,
			       path, (unsigned)st.st_uid);
	for (;;) {
		ssize_t k = read(fd, text + n, size - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return sm_fail(-errno, "%s:%u: cannot read %s file %s: %s", cfg->path, line, what, path,
				       strerror(errno));
		if (k == 0)
			break;
		n += (size_t)k;
		if (n == size - 1) {
			char extra;
			if (read(fd, &extra, 1) == 1) {
				sodium_memzero(text, size);
				return -EFBIG;
			}
			break;
		}
	}
	text[n] = '\0';
	return (int)n;
}

/* Trailing blanks and line ends off, in place. */
static void strip_end(char *s, char *end)
{
	while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
}

int sockmig_config_read_secret(struct sockmig_config *cfg)
{
	char text[256];
	int n;

	if (!cfg->secret_file[0])
		return cfg->has_secret ? 0 : sm_fail(-EINVAL, "%s: there is no secret", cfg->path);
	n = read_private(cfg, cfg->secret_line, "secret", cfg->secret_file, text, sizeof(text));
	if (n < 0 && n != -EFBIG)
		return n;
	if (n >= 0 && !memchr(text, '\0', (size_t)n))
		strip_end(text, text + n);
	else
		text[0] = '\0';
	if (parse_hex_secret(text, cfg->secret->cluster) < 0) {
		sodium_memzero(text, sizeof(text));
		return sm_fail(-EINVAL, "%s:%u: secret file %s must hold exactly %d hex digits", cfg->path,
			       cfg->secret_line, cfg->secret_file, 2 * SOCKMIG_SECRET_SIZE);
	}
	sodium_memzero(text, sizeof(text));
	cfg->has_secret = true;
	return 0;
}

/* The seed of a key file: its one line that is neither empty nor a comment. */
static int key_file_seed(char *text, uint8_t seed[32])
{
	char *line, *save = NULL, *found = NULL;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		line += strspn(line, " \t");
		strip_end(line, line + strlen(line));
		if (!line[0] || line[0] == '#')
			continue;
		if (found)
			return -EINVAL;
		found = line;
	}
	return found ? parse_hex_secret(found, seed) : -EINVAL;
}

int sockmig_config_read_key(struct sockmig_config *cfg)
{
	struct sockmig_keys *k = cfg->secret;
	uint8_t seed[32], pk[SOCKMIG_KEY_SIZE];
	char text[KEY_FILE_MAX + 1], shown_pk[SOCKMIG_KEY_TEXT_SIZE];
	int n, r;

	if (!cfg->key_file[0])
		return sm_fail(-EINVAL, "%s: there is no key-file", cfg->path);
	n = read_private(cfg, cfg->key_line, "key", cfg->key_file, text, sizeof(text));
	if (n < 0 && n != -EFBIG)
		return n;
	r = n < 0 || memchr(text, '\0', (size_t)n) ? -EINVAL : key_file_seed(text, seed);
	sodium_memzero(text, sizeof(text));
	if (r < 0)
		return sm_fail(-EINVAL, "%s:%u: key file %s must hold one line of %d hex digits (a node key, as "
					"sockmig_config_key_create() writes it)",
			       cfg->path, cfg->key_line, cfg->key_file, 2 * 32);
	crypto_sign_seed_keypair(pk, k->node, seed);
	sodium_memzero(seed, sizeof(seed));
	/* Any member's key, not only the file's node's: `sockmigd --node`
	 * may run as another one, and the channel checks at each handshake
	 * that the key is the one of the node it speaks for. */
	for (size_t i = 0; i < cfg->n_members; i++) {
		if (cfg->members[i].has_key && !memcmp(cfg->members[i].key, pk, sizeof(pk))) {
			k->has_node_key = true;
			return 0;
		}
	}
	sodium_memzero(k->node, sizeof(k->node));
	sockmig_key_to_text(pk, shown_pk);
	return sm_fail(-EACCES, "%s:%u: key file %s holds the key of public key %s, which no member has; this node's "
				"member line needs 'key %s'",
		       cfg->path, cfg->key_line, cfg->key_file, shown_pk, shown_pk);
}

int sockmig_config_load(const char *path, unsigned flags, struct sockmig_config **ret)
{
	_cleanup_close_ int fd = -1;
	struct sockmig_config *cfg = NULL;
	struct stat st;
	char *text;
	size_t done = 0;
	int r;

	if (sodium_init() < 0)
		return sm_fail(-EIO, "cannot initialise libsodium");
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return sm_fail(-errno, "cannot open config file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return sm_fail(-errno, "cannot stat config file %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return sm_fail(-EINVAL, "config file %s is not a regular file", path);
	if (st.st_size > (off_t)SOCKMIG_CONFIG_SIZE_MAX)
		return sm_fail(-EFBIG, "%s:1: the file is longer than %u bytes", path, SOCKMIG_CONFIG_SIZE_MAX);
	text = malloc((size_t)st.st_size + 1);
	if (!text)
		return sm_fail(-ENOMEM, "out of memory reading %s", path);
	while (done < (size_t)st.st_size) {
		ssize_t k = read(fd, text + done, (size_t)st.st_size - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = sm_fail(-errno, "cannot read config file %s: %s", path, strerror(errno));
			free(text);
			return r;
		}
		if (k == 0)
			break;
		done += (size_t)k;
	}
	r = sockmig_config_parse(text, done, path, &cfg);
	sodium_memzero(text, done);
	free(text);
	if (r < 0)
		return r;
	if (!(flags & SOCKMIG_CONFIG_NO_SECRET)) {
		if (cfg->has_secret && (st.st_mode & 077))
			r = sm_fail(-EPERM, "%s:%u: the secret is written in a file that group or others can access "
					    "(mode %04o); make it mode 0600 or use secret-file",
				    path, cfg->secret_line, (unsigned)(st.st_mode & 07777));
		else if (!cfg->has_secret)
			r = sockmig_config_read_secret(cfg);
		if (r == 0)
			r = sockmig_config_read_key(cfg);
		if (r < 0) {
			sodium_memzero(cfg->secret, sizeof(cfg->secret));
			free(cfg);
			return r;
		}
	}
	*ret = cfg;
	return 0;
}

const struct sockmig_member *sockmig_config_member(const struct sockmig_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_members; i++) {
		if (!strcmp(cfg->members[i].name, name))
			return &cfg->members[i];
	}
	return NULL;
}

const struct sockmig_member *sockmig_config_self(const struct sockmig_config *cfg)
{
	return sockmig_config_member(cfg, cfg->node);
}

socklen_t sockmig_member_sockaddr(const struct sockmig_member *m, struct sockaddr_storage *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (m->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ret;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(m->port);
		memcpy(&sin->sin_addr, m->addr, 4);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ret;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(m->port);
	memcpy(&sin6->sin6_addr, m->addr, 16);
	return sizeof(*sin6);
}

int sockmig_config_write(const struct sockmig_config *cfg, int fd)
{
	struct sm_buf b;
	char hex[2 * SOCKMIG_SECRET_SIZE + 1], line[SOCKMIG_PATH_SIZE + 64], key[SOCKMIG_KEY_TEXT_SIZE];
	int r;

	sm_buf_init(&b);
#define PUT(...)                                                                                   \
	do {                                                                                       \
		int n_ = snprintf(line, sizeof(line), __VA_ARGS__);                                \
		sm_buf_put_bytes(&b, line, n_ < 0 ? 0 : (size_t)n_ < sizeof(line) ? (size_t)n_ : sizeof(line) - 1); \
	} while (0)
	PUT("# sockmig cluster config (docs/cluster.md)\n");
	PUT("cluster %s\n", cfg->cluster);
	PUT("node %s\n", cfg->node);
	if (cfg->secret_file[0]) {
		PUT("secret-file %s\n", cfg->secret_file);
	} else {
		sodium_bin2hex(hex, sizeof(hex), cfg->secret->cluster, sizeof(cfg->secret->cluster));
		PUT("secret %s\n", hex);
		sodium_memzero(hex, sizeof(hex));
	}
	if (cfg->key_file[0])
		PUT("key-file %s\n", cfg->key_file);
	PUT("control %s\n", cfg->control);
	if (cfg->timeout_ms != SOCKMIG_CONFIG_DEFAULT_TIMEOUT_MS)
		PUT("timeout %u\n", cfg->timeout_ms);
	for (size_t i = 0; i < cfg->n_members; i++) {
		const struct sockmig_member *m = &cfg->members[i];

		if (m->has_key) {
			sockmig_key_to_text(m->key, key);
			PUT("member %s %s %u key %s\n", m->name, m->addr_text, m->port, key);
		} else {
			PUT("member %s %s %u\n", m->name, m->addr_text, m->port);
		}
	}
#undef PUT
	r = b.err ? b.err : sm_write_full(fd, b.data, b.len);
	if (b.data)
		sodium_memzero(b.data, b.len);
	sm_buf_free(&b);
	if (r < 0)
		return sm_fail(r, "cannot write the config of cluster '%s': %s", cfg->cluster, strerror(-r));
	return 0;
}

int sockmig_config_secret_create(const char *path, uint8_t ret_secret[SOCKMIG_SECRET_SIZE])
{
	uint8_t secret[SOCKMIG_SECRET_SIZE];
	char hex[2 * SOCKMIG_SECRET_SIZE + 2];
	int fd, r;

	if (sodium_init() < 0)
		return sm_fail(-EIO, "cannot initialise libsodium");
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return sm_fail(-errno, "cannot create secret file %s: %s", path, strerror(errno));
	randombytes_buf(secret, sizeof(secret));
	sodium_bin2hex(hex, sizeof(hex), secret, sizeof(secret));
	hex[2 * SOCKMIG_SECRET_SIZE] = '\n';
	/* fchmod: the umask may have taken bits off, never added any; this
	 * makes the mode exactly what readers check for. */
	r = fchmod(fd, 0600) < 0 ? -errno : sm_write_full(fd, hex, 2 * SOCKMIG_SECRET_SIZE + 1);
	sodium_memzero(hex, sizeof(hex));
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r < 0) {
		unlink(path);
		sodium_memzero(secret, sizeof(secret));
		return sm_fail(r, "cannot write secret file %s: %s", path, strerror(-r));
	}
	if (ret_secret)
		memcpy(ret_secret, secret, sizeof(secret));
	sodium_memzero(secret, sizeof(secret));
	return 0;
}

int sockmig_config_key_create(const char *path, uint8_t ret_public[SOCKMIG_KEY_SIZE])
{
	uint8_t pk[SOCKMIG_KEY_SIZE], sk[SOCKMIG_NODE_KEY_SIZE];
	char pk_text[SOCKMIG_KEY_TEXT_SIZE], text[256];
	int fd, n, r;

	if (sodium_init() < 0)
		return sm_fail(-EIO, "cannot initialise libsodium");
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return sm_fail(-errno, "cannot create key file %s: %s", path, strerror(errno));
	crypto_sign_keypair(pk, sk);
	sockmig_key_to_text(pk, pk_text);
	n = snprintf(text, sizeof(text), "# sockmig node key (Ed25519 seed); its member line takes: key %s\n", pk_text);
	/* The seed is the first half of libsodium's secret key. */
	sodium_bin2hex(text + n, sizeof(text) - (size_t)n, sk, 32);
	n += 64;
	text[n++] = '\n';
	sodium_memzero(sk, sizeof(sk));
	/* fchmod: as for the secret, exactly the mode readers check for. */
	r = fchmod(fd, 0600) < 0 ? -errno : sm_write_full(fd, text, (size_t)n);
	sodium_memzero(text, sizeof(text));
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r < 0) {
		unlink(path);
		return sm_fail(r, "cannot write key file %s: %s", path, strerror(-r));
	}
	if (ret_public)
		memcpy(ret_public, pk, sizeof(pk));
	return 0;
}

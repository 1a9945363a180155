/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The cluster config file: a whole valid file and its defaults, a refusal
 * with FILE:LINE for every kind of mistake, the secret (inline, in a file,
 * and the mode checks on both), the node keys (key-file, the members' public
 * keys, a key file made and read back), and the writer's text parsing back
 * to the same config.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "sockmig/config.h"
#include "sockmig/sockmig.h"

#define HEX64 "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
/* Public keys of 32 bytes 0x01, 0x02, 0x03, 0x04. */
#define K1 "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
#define K2 "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
#define K3 "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
#define K4 "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ="

static char dir[64];

static struct sockmig_config *parse_ok(const char *text)
{
	struct sockmig_config *cfg = NULL;
	int r = sockmig_config_parse(text, strlen(text), "/etc/sm/c.conf", &cfg);

	if (r < 0)
		fail_msg("parse failed: %s", sockmig_error());
	return cfg;
}

/* Refused, with exactly this sentence. */
static void parse_bad(const char *text, const char *sentence)
{
	struct sockmig_config *cfg = NULL;
	int r = sockmig_config_parse(text, strlen(text), "c.conf", &cfg);

	assert_true(r < 0);
	assert_null(cfg);
	if (strcmp(sockmig_error(), sentence))
		fail_msg("got '%s', wanted '%s'", sockmig_error(), sentence);
}

static void test_valid_file(void **state)
{
	struct sockmig_config *cfg;
	const struct sockmig_member *m;

	(void)state;
	cfg = parse_ok("# a cluster\n"
		       "cluster   lab.one   # trailing comment\n"
		       "\n"
		       "node n2\r\n"
		       "secret " HEX64 "\n"
		       "key-file /etc/sm/n2.key\n"
		       "\tmember n1 198.18.0.1 key " K1 "\n"
		       "member n2 198.18.0.2 7000 key   " K2 "  # comment\n"
		       "member n3 2001:2::3 key " K3 "\n"
		       "member n4 [2001:2::4] 9 key " K4 "\n");
	assert_string_equal(cfg->cluster, "lab.one");
	assert_string_equal(cfg->node, "n2");
	assert_true(cfg->has_secret);
	assert_int_equal(cfg->secret->cluster[0], 0x00);
	assert_int_equal(cfg->secret->cluster[31], 0xff);
	assert_string_equal(cfg->key_file, "/etc/sm/n2.key");
	assert_int_equal(cfg->key_line, 6);
	/* parsing reads no file: the node key is the loader's */
	assert_false(cfg->secret->has_node_key);
	/* the channel finds the members (and their keys) through the keys */
	assert_ptr_equal(cfg->secret->members, cfg->members);
	assert_int_equal(cfg->secret->n_members, 4);
	assert_string_equal(cfg->control, SOCKMIG_CONFIG_DEFAULT_CONTROL);
	assert_int_equal(cfg->timeout_ms, SOCKMIG_CONFIG_DEFAULT_TIMEOUT_MS);
	assert_int_equal(cfg->n_members, 4);
	m = sockmig_config_member(cfg, "n1");
	assert_non_null(m);
	assert_int_equal(m->family, AF_INET);
	assert_int_equal(m->port, 7890);
	assert_int_equal(m->line, 7);
	assert_true(m->has_key);
	assert_int_equal(m->key[0], 0x01);
	assert_int_equal(m->key[31], 0x01);
	assert_int_equal(sockmig_config_member(cfg, "n3")->key[5], 0x03);
	assert_string_equal(sockmig_config_self(cfg)->addr_text, "198.18.0.2");
	assert_int_equal(sockmig_config_self(cfg)->port, 7000);
	m = sockmig_config_member(cfg, "n4");
	assert_int_equal(m->family, AF_INET6);
	assert_string_equal(m->addr_text, "2001:2::4");
	assert_int_equal(m->port, 9);
	assert_null(sockmig_config_member(cfg, "n5"));
	{
		struct sockaddr_storage ss;
		assert_int_equal(sockmig_member_sockaddr(m, &ss), sizeof(struct sockaddr_in6));
		assert_int_equal(ss.ss_family, AF_INET6);
	}
	free(cfg);

	cfg = parse_ok("cluster c\nnode a\nsecret-file keys/secret\nkey-file keys/a.key\ncontrol /run/x/a.sock\n"
		       "timeout 250\nmember a 10.0.0.1 key " K1 "\n");
	assert_false(cfg->has_secret);
	assert_string_equal(cfg->secret_file, "/etc/sm/keys/secret");
	assert_string_equal(cfg->key_file, "/etc/sm/keys/a.key");
	assert_string_equal(cfg->control, "/run/x/a.sock");
	assert_int_equal(cfg->timeout_ms, 250);
	free(cfg);
}

#define BASE "cluster c\nnode a\nsecret " HEX64 "\nkey-file a.key\n"
#define MEMBER_A "member a 10.0.0.1 key " K1 "\n"
#define USAGE "member NAME ADDRESS [PORT] key PUBLIC-KEY"
#define MEMBER_TAKES "'member' takes a name, an address, an optional port and 'key PUBLIC-KEY': " USAGE

static void test_every_mistake_has_file_and_line(void **state)
{
	(void)state;
	parse_bad(BASE MEMBER_A "bogus 1\n",
		  "c.conf:6: 'bogus' is not a config keyword (cluster, secret, secret-file, key-file, node, control, "
		  "timeout, member)");
	parse_bad("cluster c\ncluster d\n", "c.conf:2: 'cluster' is given twice (first on line 1)");
	parse_bad("cluster c d\n", "c.conf:1: 'cluster' takes one value: cluster NAME");
	parse_bad("cluster\n", "c.conf:1: 'cluster' takes one value: cluster NAME");
	parse_bad("cluster a/b\n",
		  "c.conf:1: 'a/b' is not a valid cluster name (1 to 63 of letters, digits, '_', '-', '.')");
	parse_bad("node n1\nnode n2\n", "c.conf:2: 'node' is given twice (first on line 1)");
	parse_bad("secret abc\n", "c.conf:1: the secret must be exactly 64 hex digits");
	parse_bad("secret " HEX64 "0\n", "c.conf:1: the secret must be exactly 64 hex digits");
	parse_bad("secret 0g112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n",
		  "c.conf:1: the secret must be exactly 64 hex digits");
	parse_bad(BASE MEMBER_A "member b 10.0.0.300 key " K2 "\n",
		  "c.conf:6: '10.0.0.300' is not an IPv4 or IPv6 address");
	parse_bad(BASE "member a 10.0.0.1 0 key " K1 "\n", "c.conf:5: '0' is not a port number (1 to 65535)");
	parse_bad(BASE "member a 10.0.0.1 65536 key " K1 "\n", "c.conf:5: '65536' is not a port number (1 to 65535)");
	parse_bad(BASE "member a 10.0.0.1 +80 key " K1 "\n", "c.conf:5: '+80' is not a port number (1 to 65535)");
	parse_bad(BASE "member a\n", "c.conf:5: " MEMBER_TAKES);
	parse_bad(BASE "member a 10.0.0.1 1 key " K1 " 2\n", "c.conf:5: " MEMBER_TAKES);
	parse_bad(BASE MEMBER_A "member a 10.0.0.2 key " K2 "\n",
		  "c.conf:6: member 'a' is declared twice (first on line 5)");
	parse_bad(BASE MEMBER_A "member b 10.0.0.1 7890 key " K2 "\n",
		  "c.conf:6: members 'a' and 'b' have the same address and port 10.0.0.1 7890");
	/* the node keys: on every member line, well-formed, one per node */
	parse_bad(BASE "member a 10.0.0.1\n",
		  "c.conf:5: member 'a' has no key: every member needs its node's public key (" USAGE ")");
	parse_bad(BASE "member a 10.0.0.1 7890\n",
		  "c.conf:5: member 'a' has no key: every member needs its node's public key (" USAGE ")");
	parse_bad(BASE "member a 10.0.0.1 key\n", "c.conf:5: " MEMBER_TAKES);
	parse_bad(BASE "member a 10.0.0.1 7890 key\n", "c.conf:5: " MEMBER_TAKES);
	parse_bad(BASE "member a 10.0.0.1 7890 pub " K1 "\n", "c.conf:5: " MEMBER_TAKES);
	parse_bad(BASE "member a 10.0.0.1 key " K1 " key\n", "c.conf:5: " MEMBER_TAKES);
	parse_bad(BASE "member a 10.0.0.1 key AQEB\n",
		  "c.conf:5: 'AQEB' is not a node's public key (32 bytes in base64: 44 characters)");
	/* 33 bytes, and a hex key */
	parse_bad(BASE "member a 10.0.0.1 key AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB\n",
		  "c.conf:5: 'AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB...' is not a node's public key (32 bytes in "
		  "base64: 44 characters)");
	parse_bad(BASE "member a 10.0.0.1 key " HEX64 "\n",
		  "c.conf:5: '00112233445566778899aabbccddeeff00112233...' is not a node's public key (32 bytes in "
		  "base64: 44 characters)");
	parse_bad(BASE MEMBER_A "member b 10.0.0.2 key " K1 "\n",
		  "c.conf:6: members 'a' and 'b' have the same key: every node needs a key of its own");
	parse_bad(BASE "key-file b.key\n" MEMBER_A, "c.conf:5: 'key-file' is given twice (first on line 4)");
	parse_bad("key-file\n", "c.conf:1: 'key-file' takes one value: key-file PATH");
	parse_bad("cluster c\nnode a\nsecret " HEX64 "\n" MEMBER_A,
		  "c.conf:4: the file ends without a 'key-file PATH' line (this node's signing key)");
	parse_bad(BASE "control run/x.sock\n", "c.conf:5: the control socket path must be absolute, not 'run/x.sock'");
	parse_bad(BASE "control /" "0123456789012345678901234567890123456789012345678901234567890123456789"
		  "0123456789012345678901234567890123456789\n",
		  "c.conf:5: the control socket path is longer than 107 bytes");
	parse_bad(BASE "timeout 0\n", "c.conf:5: timeout takes milliseconds from 1 to 3600000, not '0'");
	parse_bad(BASE "timeout 1s\n", "c.conf:5: timeout takes milliseconds from 1 to 3600000, not '1s'");
	parse_bad("node a\nsecret " HEX64 "\n" MEMBER_A, "c.conf:3: the file ends without a 'cluster NAME' line");
	parse_bad("cluster c\nsecret " HEX64 "\n" MEMBER_A,
		  "c.conf:3: the file ends without a 'node NAME' line (which member this node is)");
	parse_bad("cluster c\nnode a\n" MEMBER_A, "c.conf:3: the file ends without a 'secret' or 'secret-file' line");
	parse_bad(BASE "secret-file /s\n" MEMBER_A,
		  "c.conf:5: give either 'secret' or 'secret-file', not both (lines 3 and 5)");
	parse_bad(BASE, "c.conf:4: the file ends without any '" USAGE "' line");
	parse_bad(BASE "member b 10.0.0.1 key " K2 "\n", "c.conf:2: this node 'a' is not one of the members");
	parse_bad("", "c.conf:1: the file ends without a 'cluster NAME' line");
	/* untrusted bytes are shown printable and short */
	parse_bad("\x01\x7f\xff\n", "c.conf:1: '\?\?\?' is not a config keyword (cluster, secret, secret-file, key-file, "
				   "node, control, timeout, member)");
	parse_bad("cluster aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
		  "c.conf:1: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is not a valid cluster name (1 to 63 of letters, "
		  "digits, '_', '-', '.')");
	{
		static const char nul[] = "cluster c\nno\0de a\n";
		struct sockmig_config *cfg = NULL;
		assert_true(sockmig_config_parse(nul, sizeof(nul) - 1, "c.conf", &cfg) < 0);
		assert_string_equal(sockmig_error(), "c.conf:2: the line contains a NUL byte");
	}
	{
		char *long_line = malloc(10000);
		struct sockmig_config *cfg = NULL;
		memset(long_line, '#', 9999);
		long_line[9999] = '\0';
		assert_true(sockmig_config_parse(long_line, strlen(long_line), "c.conf", &cfg) < 0);
		assert_string_equal(sockmig_error(), "c.conf:1: the line is longer than 8192 bytes");
		free(long_line);
	}
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* A fresh key file at dir/name; its public key in base64 into pub. */
static void make_key(const char *name, char pub[SOCKMIG_KEY_TEXT_SIZE])
{
	uint8_t pk[SOCKMIG_KEY_SIZE];
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	assert_int_equal(sockmig_config_key_create(path, pk), 0);
	sockmig_key_to_text(pk, pub);
}

static void test_secret_file(void **state)
{
	struct sockmig_config *cfg = NULL;
	char conf[128], sec[128], key[128], want[600], text[600], pub[SOCKMIG_KEY_TEXT_SIZE];

	(void)state;
	snprintf(conf, sizeof(conf), "%s/c.conf", dir);
	snprintf(sec, sizeof(sec), "%s/secret", dir);
	snprintf(key, sizeof(key), "%s/a.key", dir);
	make_key("a.key", pub);
	snprintf(text, sizeof(text), "cluster c\nnode a\nsecret-file secret\nkey-file a.key\nmember a 10.0.0.1 key %s\n",
		 pub);
	write_file(conf, text, 0644);

	/* missing */
	unlink(sec);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), -ENOENT);
	snprintf(want, sizeof(want), "%s:3: cannot open secret file %s: No such file or directory", conf, sec);
	assert_string_equal(sockmig_error(), want);
	/* readable by others */
	write_file(sec, HEX64 "\n", 0644);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), -EPERM);
	snprintf(want, sizeof(want),
		 "%s:3: secret file %s can be read or written by group or others (mode 0644); make it mode 0600", conf, sec);
	assert_string_equal(sockmig_error(), want);
	/* not a secret */
	write_file(sec, "hello\n", 0600);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: secret file %s must hold exactly 64 hex digits", conf, sec);
	assert_string_equal(sockmig_error(), want);
	/* fine; a client needs no secret (and may not be able to read it) */
	write_file(sec, HEX64 "\n", 0600);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), 0);
	assert_true(cfg->has_secret);
	assert_int_equal(cfg->secret->cluster[1], 0x11);
	assert_true(cfg->secret->has_node_key);
	free(cfg);
	write_file(sec, HEX64 "\n", 0644);
	assert_int_equal(sockmig_config_load(conf, SOCKMIG_CONFIG_NO_SECRET, &cfg), 0);
	assert_false(cfg->has_secret);
	assert_false(cfg->secret->has_node_key);
	free(cfg);

	/* inline: the config must then be private */
	snprintf(text, sizeof(text), BASE "member a 10.0.0.1 key %s\n", pub);
	write_file(conf, text, 0644);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), -EPERM);
	snprintf(want, sizeof(want),
		 "%s:3: the secret is written in a file that group or others can access (mode 0644); make it mode "
		 "0600 or use secret-file",
		 conf);
	assert_string_equal(sockmig_error(), want);
	assert_int_equal(sockmig_config_load(conf, SOCKMIG_CONFIG_NO_SECRET, &cfg), 0);
	free(cfg);
	chmod(conf, 0600);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), 0);
	assert_true(cfg->has_secret);
	free(cfg);
	/* a file error names the file */
	write_file(conf, BASE MEMBER_A "member b\n", 0600);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), -EINVAL);
	snprintf(want, sizeof(want), "%s:6: " MEMBER_TAKES, conf);
	assert_string_equal(sockmig_error(), want);
	unlink(conf);
	unlink(sec);
	unlink(key);
}

static void test_key_file(void **state)
{
	struct sockmig_config *cfg = NULL;
	char conf[128], key[128], want[700], text[700], pub_a[SOCKMIG_KEY_TEXT_SIZE], pub_b[SOCKMIG_KEY_TEXT_SIZE];
	uint8_t pk[SOCKMIG_KEY_SIZE];

	(void)state;
	snprintf(conf, sizeof(conf), "%s/k.conf", dir);
	snprintf(key, sizeof(key), "%s/a.key", dir);
	make_key("a.key", pub_a);
	make_key("b.key", pub_b);
	snprintf(text, sizeof(text),
		 "cluster c\nnode a\nsecret " HEX64 "\nkey-file a.key\nmember a 10.0.0.1 key %s\nmember b 10.0.0.2 key %s\n",
		 pub_a, pub_b);
	write_file(conf, text, 0600);

	/* fine: the secret key is the seed's, its public half a's */
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), 0);
	assert_true(cfg->secret->has_node_key);
	assert_memory_equal(cfg->secret->node + 32, sockmig_config_member(cfg, "a")->key, 32);
	{
		uint8_t sig[crypto_sign_BYTES];
		crypto_sign_detached(sig, NULL, (const uint8_t *)"m", 1, cfg->secret->node);
		assert_int_equal(crypto_sign_verify_detached(sig, (const uint8_t *)"m", 1, sockmig_config_member(cfg, "a")->key), 0);
	}
	free(cfg);

	/* missing, open to others, not a key */
	unlink(key);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), -ENOENT);
	snprintf(want, sizeof(want), "%s:4: cannot open key file %s: No such file or directory", conf, key);
	assert_string_equal(sockmig_error(), want);
	write_file(key, "# c\n" HEX64 "\n", 0640);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), -EPERM);
	snprintf(want, sizeof(want),
		 "%s:4: key file %s can be read or written by group or others (mode 0640); make it mode 0600", conf, key);
	assert_string_equal(sockmig_error(), want);
	snprintf(want, sizeof(want),
		 "%s:4: key file %s must hold one line of 64 hex digits (a node key, as sockmig_config_key_create() "
		 "writes it)",
		 conf, key);
	write_file(key, "hello\n", 0600);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), -EINVAL);
	assert_string_equal(sockmig_error(), want);
	write_file(key, HEX64 "\n" HEX64 "\n", 0600);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), -EINVAL);
	assert_string_equal(sockmig_error(), want);
	write_file(key, "# only a comment\n", 0600);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), -EINVAL);
	assert_string_equal(sockmig_error(), want);

	/* a key that no member has: the sentence gives its public key */
	write_file(key, "# a comment\n\n  " HEX64 "\r\n", 0600);
	{
		uint8_t seed[32], sk[64];
		char pub[SOCKMIG_KEY_TEXT_SIZE];
		assert_int_equal(sodium_hex2bin(seed, 32, HEX64, 64, NULL, NULL, NULL), 0);
		crypto_sign_seed_keypair(pk, sk, seed);
		sockmig_key_to_text(pk, pub);
		assert_int_equal(sockmig_config_load(conf, 0, &cfg), -EACCES);
		snprintf(want, sizeof(want),
			 "%s:4: key file %s holds the key of public key %s, which no member has; this node's member line "
			 "needs 'key %s'",
			 conf, key, pub, pub);
		assert_string_equal(sockmig_error(), want);
	}
	/* another member's key is taken (sockmigd --node may run as that
	 * one): the channel checks it against the node it speaks for */
	unlink(key);
	snprintf(text, sizeof(text), "%s/b.key", dir);
	assert_int_equal(rename(text, key), 0);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), 0);
	assert_true(cfg->secret->has_node_key);
	assert_memory_equal(cfg->secret->node + 32, sockmig_config_member(cfg, "b")->key, 32);
	/* and by hand, after a parse */
	cfg->secret->has_node_key = false;
	assert_int_equal(sockmig_config_read_key(cfg), 0);
	assert_true(cfg->secret->has_node_key);
	free(cfg);
	/* a client reads no key */
	chmod(key, 0644);
	assert_int_equal(sockmig_config_load(conf, SOCKMIG_CONFIG_NO_SECRET, &cfg), 0);
	assert_false(cfg->secret->has_node_key);
	free(cfg);
	unlink(key);
	unlink(conf);
}

static void test_write_parses_back(void **state)
{
	struct sockmig_config *a, *b = NULL;
	char conf[128], text[4096];
	int fd;
	ssize_t n;

	(void)state;
	snprintf(conf, sizeof(conf), "%s/w.conf", dir);
	a = parse_ok("cluster c\nnode b\nsecret " HEX64 "\nkey-file /k/b.key\ncontrol /run/c.sock\ntimeout 1234\n"
		     "member a 10.0.0.1 key " K1 "\nmember b 2001:db8::2 7000 key " K2 "\n");
	fd = open(conf, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(sockmig_config_write(a, fd), 0);
	n = pread(fd, text, sizeof(text), 0);
	close(fd);
	assert_true(n > 0);
	text[n] = '\0';
	assert_non_null(strstr(text, "\nkey-file /k/b.key\n"));
	assert_non_null(strstr(text, "\nmember b 2001:db8::2 7000 key " K2 "\n"));
	assert_int_equal(sockmig_config_parse(text, (size_t)n, conf, &b), 0);
	assert_string_equal(a->cluster, b->cluster);
	assert_string_equal(a->node, b->node);
	assert_string_equal(a->control, b->control);
	assert_string_equal(a->key_file, b->key_file);
	assert_int_equal(a->timeout_ms, b->timeout_ms);
	assert_memory_equal(a->secret->cluster, b->secret->cluster, 32);
	assert_int_equal(a->n_members, b->n_members);
	for (size_t i = 0; i < a->n_members; i++) {
		assert_string_equal(a->members[i].name, b->members[i].name);
		assert_memory_equal(a->members[i].addr, b->members[i].addr, 16);
		assert_int_equal(a->members[i].port, b->members[i].port);
		assert_true(b->members[i].has_key);
		assert_memory_equal(a->members[i].key, b->members[i].key, 32);
	}
	free(a);
	free(b);
	unlink(conf);
}

static void test_secret_create(void **state)
{
	uint8_t s1[32], s2[32];
	char path[128], text[100];
	struct stat st;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/new-secret", dir);
	unlink(path);
	umask(0);
	assert_int_equal(sockmig_config_secret_create(path, s1), 0);
	umask(022);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_int_equal(read(fd, text, sizeof(text)), 65);
	close(fd);
	assert_int_equal(text[64], '\n');
	assert_int_equal(sodium_hex2bin(s2, 32, text, 64, NULL, NULL, NULL), 0);
	assert_memory_equal(s1, s2, 32);
	/* never over an existing file */
	assert_int_equal(sockmig_config_secret_create(path, NULL), -EEXIST);
	unlink(path);
}

static void test_key_create(void **state)
{
	uint8_t pk[SOCKMIG_KEY_SIZE], pk2[SOCKMIG_KEY_SIZE], seed[32], sk[64], back[SOCKMIG_KEY_SIZE];
	char path[128], text[400], pub[SOCKMIG_KEY_TEXT_SIZE], *nl;
	struct stat st;
	ssize_t n;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/new.key", dir);
	unlink(path);
	umask(0);
	assert_int_equal(sockmig_config_key_create(path, pk), 0);
	umask(022);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	assert_true(n > 0);
	text[n] = '\0';
	/* a comment that gives the member line's key, then the seed */
	sockmig_key_to_text(pk, pub);
	assert_int_equal(strlen(pub), 44);
	assert_int_equal(text[0], '#');
	nl = strchr(text, '\n');
	assert_non_null(nl);
	assert_non_null(strstr(text, pub));
	assert_true(strstr(text, pub) < nl);
	assert_int_equal(strlen(nl + 1), 65);
	assert_int_equal(nl[65], '\n');
	assert_int_equal(sodium_hex2bin(seed, 32, nl + 1, 64, NULL, NULL, NULL), 0);
	crypto_sign_seed_keypair(pk2, sk, seed);
	assert_memory_equal(pk, pk2, 32);
	/* the text form and back */
	assert_int_equal(sockmig_key_from_text(pub, back), 0);
	assert_memory_equal(back, pk, 32);
	assert_int_equal(sockmig_key_from_text("", back), -EINVAL);
	assert_int_equal(sockmig_key_from_text(K1 "=", back), -EINVAL);
	pub[43] = '!';
	assert_int_equal(sockmig_key_from_text(pub, back), -EINVAL);
	/* two keys differ, and never over an existing file */
	assert_int_equal(sockmig_config_key_create(path, NULL), -EEXIST);
	unlink(path);
	assert_int_equal(sockmig_config_key_create(path, pk2), 0);
	assert_memory_not_equal(pk, pk2, 32);
	unlink(path);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_config.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/b.key", dir);
	unlink(path);
	return rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_file),
		cmocka_unit_test(test_every_mistake_has_file_and_line),
		cmocka_unit_test(test_secret_file),
		cmocka_unit_test(test_key_file),
		cmocka_unit_test(test_write_parses_back),
		cmocka_unit_test(test_secret_create),
		cmocka_unit_test(test_key_create),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup, teardown);
}

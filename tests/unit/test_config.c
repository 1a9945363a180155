/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The cluster config file: a whole valid file and its defaults, a refusal
 * with FILE:LINE for every kind of mistake, the secret (inline, in a file,
 * and the mode checks on both), and the writer's text parsing back to the
 * same config.
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
		       "\tmember n1 198.18.0.1\n"
		       "member n2 198.18.0.2 7000\n"
		       "member n3 2001:2::3\n"
		       "member n4 [2001:2::4] 9\n");
	assert_string_equal(cfg->cluster, "lab.one");
	assert_string_equal(cfg->node, "n2");
	assert_true(cfg->has_secret);
	assert_int_equal(cfg->secret[0], 0x00);
	assert_int_equal(cfg->secret[31], 0xff);
	assert_string_equal(cfg->control, SOCKMIG_CONFIG_DEFAULT_CONTROL);
	assert_int_equal(cfg->timeout_ms, SOCKMIG_CONFIG_DEFAULT_TIMEOUT_MS);
	assert_int_equal(cfg->n_members, 4);
	m = sockmig_config_member(cfg, "n1");
	assert_non_null(m);
	assert_int_equal(m->family, AF_INET);
	assert_int_equal(m->port, 7890);
	assert_int_equal(m->line, 6);
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

	cfg = parse_ok("cluster c\nnode a\nsecret-file keys/secret\ncontrol /run/x/a.sock\ntimeout 250\nmember a 10.0.0.1\n");
	assert_false(cfg->has_secret);
	assert_string_equal(cfg->secret_file, "/etc/sm/keys/secret");
	assert_string_equal(cfg->control, "/run/x/a.sock");
	assert_int_equal(cfg->timeout_ms, 250);
	free(cfg);
}

#define BASE "cluster c\nnode a\nsecret " HEX64 "\n"

static void test_every_mistake_has_file_and_line(void **state)
{
	(void)state;
	parse_bad(BASE "member a 10.0.0.1\nbogus 1\n",
		  "c.conf:5: 'bogus' is not a config keyword (cluster, secret, secret-file, node, control, timeout, member)");
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
	parse_bad(BASE "member a 10.0.0.1\nmember b 10.0.0.300\n", "c.conf:5: '10.0.0.300' is not an IPv4 or IPv6 address");
	parse_bad(BASE "member a 10.0.0.1 0\n", "c.conf:4: '0' is not a port number (1 to 65535)");
	parse_bad(BASE "member a 10.0.0.1 65536\n", "c.conf:4: '65536' is not a port number (1 to 65535)");
	parse_bad(BASE "member a 10.0.0.1 +80\n", "c.conf:4: '+80' is not a port number (1 to 65535)");
	parse_bad(BASE "member a\n", "c.conf:4: 'member' takes 2 or 3 values: member NAME ADDRESS [PORT]");
	parse_bad(BASE "member a 10.0.0.1 1 2\n", "c.conf:4: 'member' takes 2 or 3 values: member NAME ADDRESS [PORT]");
	parse_bad(BASE "member a 10.0.0.1\nmember a 10.0.0.2\n",
		  "c.conf:5: member 'a' is declared twice (first on line 4)");
	parse_bad(BASE "member a 10.0.0.1\nmember b 10.0.0.1 7890\n",
		  "c.conf:5: members 'a' and 'b' have the same address and port 10.0.0.1 7890");
	parse_bad(BASE "control run/x.sock\n", "c.conf:4: the control socket path must be absolute, not 'run/x.sock'");
	parse_bad(BASE "control /" "0123456789012345678901234567890123456789012345678901234567890123456789"
		  "0123456789012345678901234567890123456789\n",
		  "c.conf:4: the control socket path is longer than 107 bytes");
	parse_bad(BASE "timeout 0\n", "c.conf:4: timeout takes milliseconds from 1 to 3600000, not '0'");
	parse_bad(BASE "timeout 1s\n", "c.conf:4: timeout takes milliseconds from 1 to 3600000, not '1s'");
	parse_bad("node a\nsecret " HEX64 "\nmember a 10.0.0.1\n",
		  "c.conf:3: the file ends without a 'cluster NAME' line");
	parse_bad("cluster c\nsecret " HEX64 "\nmember a 10.0.0.1\n",
		  "c.conf:3: the file ends without a 'node NAME' line (which member this node is)");
	parse_bad("cluster c\nnode a\nmember a 10.0.0.1\n",
		  "c.conf:3: the file ends without a 'secret' or 'secret-file' line");
	parse_bad(BASE "secret-file /s\nmember a 10.0.0.1\n",
		  "c.conf:4: give either 'secret' or 'secret-file', not both (lines 3 and 4)");
	parse_bad(BASE, "c.conf:3: the file ends without any 'member NAME ADDRESS [PORT]' line");
	parse_bad(BASE "member b 10.0.0.1\n", "c.conf:2: this node 'a' is not one of the members");
	parse_bad("", "c.conf:1: the file ends without a 'cluster NAME' line");
	/* untrusted bytes are shown printable and short */
	parse_bad("\x01\x7f\xff\n", "c.conf:1: '\?\?\?' is not a config keyword (cluster, secret, secret-file, node, control, "
				   "timeout, member)");
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

static void test_secret_file(void **state)
{
	struct sockmig_config *cfg = NULL;
	char conf[128], sec[128], want[600];

	(void)state;
	snprintf(conf, sizeof(conf), "%s/c.conf", dir);
	snprintf(sec, sizeof(sec), "%s/secret", dir);
	write_file(conf, "cluster c\nnode a\nsecret-file secret\nmember a 10.0.0.1\n", 0644);

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
	assert_int_equal(cfg->secret[1], 0x11);
	free(cfg);
	write_file(sec, HEX64 "\n", 0644);
	assert_int_equal(sockmig_config_load(conf, SOCKMIG_CONFIG_NO_SECRET, &cfg), 0);
	assert_false(cfg->has_secret);
	free(cfg);

	/* inline: the config must then be private */
	write_file(conf, BASE "member a 10.0.0.1\n", 0644);
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
	write_file(conf, BASE "member a 10.0.0.1\nmember b\n", 0600);
	assert_int_equal(sockmig_config_load(conf, 0, &cfg), -EINVAL);
	snprintf(want, sizeof(want), "%s:5: 'member' takes 2 or 3 values: member NAME ADDRESS [PORT]", conf);
	assert_string_equal(sockmig_error(), want);
	unlink(conf);
	unlink(sec);
}

static void test_write_parses_back(void **state)
{
	struct sockmig_config *a, *b = NULL;
	char conf[128], text[4096];
	int fd;
	ssize_t n;

	(void)state;
	snprintf(conf, sizeof(conf), "%s/w.conf", dir);
	a = parse_ok("cluster c\nnode b\nsecret " HEX64 "\ncontrol /run/c.sock\ntimeout 1234\n"
		     "member a 10.0.0.1\nmember b 2001:db8::2 7000\n");
	fd = open(conf, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(sockmig_config_write(a, fd), 0);
	n = pread(fd, text, sizeof(text), 0);
	close(fd);
	assert_true(n > 0);
	assert_int_equal(sockmig_config_parse(text, (size_t)n, conf, &b), 0);
	assert_string_equal(a->cluster, b->cluster);
	assert_string_equal(a->node, b->node);
	assert_string_equal(a->control, b->control);
	assert_int_equal(a->timeout_ms, b->timeout_ms);
	assert_memory_equal(a->secret, b->secret, 32);
	assert_int_equal(a->n_members, b->n_members);
	for (size_t i = 0; i < a->n_members; i++) {
		assert_string_equal(a->members[i].name, b->members[i].name);
		assert_memory_equal(a->members[i].addr, b->members[i].addr, 16);
		assert_int_equal(a->members[i].port, b->members[i].port);
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

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_config.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_file),
		cmocka_unit_test(test_every_mistake_has_file_and_line),
		cmocka_unit_test(test_secret_file),
		cmocka_unit_test(test_write_parses_back),
		cmocka_unit_test(test_secret_create),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup, teardown);
}

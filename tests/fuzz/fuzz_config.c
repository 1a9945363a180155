/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The cluster config parser on arbitrary text: it must refuse or accept
 * without crashing, and an accepted config must be consistent (this node
 * among the members, names valid, every member with a key of its own, the
 * writer's text parsing back to it).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sockmig/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockmig_config *cfg = NULL, *again = NULL;
	char text[1 << 16];
	ssize_t n;
	int fd;

	if (sockmig_config_parse((const char *)data, size, "/fuzz/c.conf", &cfg) < 0)
		return 0;
	if (!sockmig_config_self(cfg) || !sockmig_name_valid(cfg->cluster) || !cfg->n_members)
		abort();
	if (!cfg->key_file[0] || cfg->secret->members != cfg->members || cfg->secret->n_members != cfg->n_members)
		abort();
	for (size_t i = 0; i < cfg->n_members; i++) {
		if (!sockmig_name_valid(cfg->members[i].name) || !cfg->members[i].port || !cfg->members[i].has_key)
			abort();
		for (size_t k = 0; k < i; k++) {
			if (!memcmp(cfg->members[k].key, cfg->members[i].key, SOCKMIG_KEY_SIZE))
				abort();
		}
	}
	fd = memfd_create("fuzz", MFD_CLOEXEC);
	if (fd >= 0 && sockmig_config_write(cfg, fd) == 0) {
		n = pread(fd, text, sizeof(text), 0);
		if (n <= 0 || sockmig_config_parse(text, (size_t)n, "/fuzz/c.conf", &again) < 0)
			abort();
		if (strcmp(again->node, cfg->node) || again->n_members != cfg->n_members ||
		    strcmp(again->secret_file, cfg->secret_file) || strcmp(again->key_file, cfg->key_file) ||
		    memcmp(again->secret->cluster, cfg->secret->cluster, sizeof(cfg->secret->cluster)))
			abort();
		for (size_t i = 0; i < cfg->n_members; i++) {
			if (memcmp(again->members[i].key, cfg->members[i].key, SOCKMIG_KEY_SIZE))
				abort();
		}
		free(again);
	}
	if (fd >= 0)
		close(fd);
	free(cfg);
	return 0;
}

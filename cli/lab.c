/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Placeholder until the lab lands in this same change series. */
#include "cli.h"

int lab_main(int argc, char *argv[])
{
	(void)argc;
	(void)argv;
	cli_err("lab: not built yet");
	return 1;
}

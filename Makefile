# sockmig: one plain GNU Makefile. Quiet unless V=1.
#
#   make              library, CLI, daemon, test programs, unit tests
#   make check        the whole test suite (as root: scripts/test.sh does the setup)
#   make fuzz         libFuzzer harnesses (needs clang)
#   make install      PREFIX=/usr/local DESTDIR=
#
# Sources are found by directory, so adding a file never needs an edit here:
# lib/*.c -> libsockmig, cli/*.c -> sockmig, daemon/*.c -> sockmigd,
# tests/unit/test_*.c -> one cmocka binary each, tests/progs/*.c and
# bench/*.c -> one program each, tests/fuzz/fuzz_*.c -> one fuzzer each.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DESTDIR    ?=

CC         ?= cc
PKG_CONFIG ?= pkg-config
PKGS       := libmnl libnftables libsodium

# CFLAGS, CPPFLAGS, LDFLAGS and LDLIBS are the user's (e.g. CFLAGS="-O0 -g
# -Werror"); what the build needs is kept apart so they never drop it.
CFLAGS   ?= -O2 -g
SM_CFLAGS := -std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -fno-strict-aliasing -fPIC -D_GNU_SOURCE $(CFLAGS)
SM_CPPFLAGS := -Iinclude -Ilib -MMD -MP $(shell $(PKG_CONFIG) --cflags $(PKGS)) $(CPPFLAGS)
SM_LDLIBS := $(LDLIBS) $(shell $(PKG_CONFIG) --libs $(PKGS))

ifeq ($(V),1)
Q :=
E := @:
else
Q := @
E := @printf '  %-7s %s\n'
endif

B := build

LIB_SRC    := $(sort $(wildcard lib/*.c))
CLI_SRC    := $(sort $(wildcard cli/*.c))
DAEMON_SRC := $(sort $(wildcard daemon/*.c))
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))
PROG_SRC   := $(sort $(wildcard tests/progs/*.c))
BENCH_SRC  := $(sort $(wildcard bench/*.c))
FUZZ_SRC   := $(sort $(wildcard tests/fuzz/fuzz_*.c))

LIB_OBJ    := $(LIB_SRC:%.c=$(B)/%.o)
CLI_OBJ    := $(CLI_SRC:%.c=$(B)/%.o)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(B)/%.o)
UNIT_BIN   := $(UNIT_SRC:%.c=$(B)/%)
PROG_BIN   := $(PROG_SRC:%.c=$(B)/%)
BENCH_BIN  := $(BENCH_SRC:%.c=$(B)/%)
FUZZ_BIN   := $(FUZZ_SRC:%.c=$(B)/%)

LIBA  := $(B)/libsockmig.a
LIBSO := $(B)/libsockmig.so

all: $(LIBA) $(LIBSO) $(B)/sockmig $(B)/sockmigd $(UNIT_BIN) $(PROG_BIN) $(BENCH_BIN)

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(E) CC $<
	$(Q)$(CC) $(SM_CPPFLAGS) $(SM_CFLAGS) -c -o $@ $<

$(LIBA): $(LIB_OBJ)
	$(E) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIBSO): $(LIB_OBJ)
	$(E) LD $@
	$(Q)$(CC) $(LDFLAGS) -shared -Wl,-soname,libsockmig.so.0 -o $@ $^ $(SM_LDLIBS)

$(B)/sockmig: $(CLI_OBJ) $(LIBA)
	$(E) LD $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(SM_LDLIBS)

$(B)/sockmigd: $(DAEMON_OBJ) $(LIBA)
	$(E) LD $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(SM_LDLIBS)

$(B)/tests/unit/%: tests/unit/%.c $(LIBA)
	@mkdir -p $(@D)
	$(E) CC $<
	$(Q)$(CC) $(SM_CPPFLAGS) $(SM_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBA) $(SM_LDLIBS) $(shell $(PKG_CONFIG) --libs cmocka)

$(B)/tests/progs/%: tests/progs/%.c $(LIBA)
	@mkdir -p $(@D)
	$(E) CC $<
	$(Q)$(CC) $(SM_CPPFLAGS) $(SM_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBA) $(SM_LDLIBS)

$(B)/bench/%: bench/%.c $(LIBA)
	@mkdir -p $(@D)
	$(E) CC $<
	$(Q)$(CC) $(SM_CPPFLAGS) $(SM_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBA) $(SM_LDLIBS) -lm

# Fuzzers are always built with clang's libFuzzer and the sanitizers, from the
# library sources directly so that the whole parser is instrumented.
FUZZ_CC     ?= clang
FUZZ_CFLAGS := -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
$(B)/tests/fuzz/%: tests/fuzz/%.c $(LIB_SRC)
	@mkdir -p $(@D)
	$(E) FUZZ $<
	$(Q)$(FUZZ_CC) $(SM_CPPFLAGS) $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRC) $(SM_LDLIBS)

fuzz: $(FUZZ_BIN)

check: all
	$(Q)bash tests/run.sh

install: $(B)/sockmig $(B)/sockmigd $(LIBA) $(LIBSO)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/sockmig
	install -m 0755 $(B)/sockmig $(DESTDIR)$(BINDIR)/sockmig
	install -m 0755 $(B)/sockmigd $(DESTDIR)$(SBINDIR)/sockmigd
	install -m 0644 $(LIBA) $(DESTDIR)$(LIBDIR)/libsockmig.a
	install -m 0755 $(LIBSO) $(DESTDIR)$(LIBDIR)/libsockmig.so.0
	ln -sf libsockmig.so.0 $(DESTDIR)$(LIBDIR)/libsockmig.so
	install -m 0644 include/sockmig/*.h $(DESTDIR)$(INCLUDEDIR)/sockmig/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sockmig $(DESTDIR)$(SBINDIR)/sockmigd \
	      $(DESTDIR)$(LIBDIR)/libsockmig.a $(DESTDIR)$(LIBDIR)/libsockmig.so.0 \
	      $(DESTDIR)$(LIBDIR)/libsockmig.so
	rm -rf $(DESTDIR)$(INCLUDEDIR)/sockmig

clean:
	rm -rf $(B)

.PHONY: all fuzz check install uninstall clean
.DELETE_ON_ERROR:

-include $(shell find $(B) -name '*.d' 2>/dev/null)

# runbook - one GNU makefile. `make`, `make test`, `make asan`, `make demo`, `make install`.
PREFIX  ?= /usr/local
DESTDIR ?=
SHARE   := $(PREFIX)/share/runbook
CC      ?= cc
PKGS    := lua5.4 lua5.4-cjson libpq hiredis libcurl libedit

# Debian packages: what building needs, and what the tests need on top.
DEPS_BUILD := gcc make pkg-config liblua5.4-dev lua-cjson-dev libpq-dev libhiredis-dev libcurl4-openssl-dev libedit-dev
DEPS_TEST  := python3 util-linux postgresql redis-server openssl prometheus openssh-client openssh-server ansible-core docker.io docker-compose alembic python3-django python3-psycopg2 nginx

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wno-format-nonliteral -Wpointer-arith -Wvla
CFLAGS  ?= -O2 -g
# Where libpq looks for pg_service.conf when $PGSYSCONFDIR is not set (stdlib/pg_service.c).
PG_SYSCONFDIR := $(or $(shell pg_config --sysconfdir 2>/dev/null),/etc/postgresql-common)
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -iquote interp -iquote stdlib -iquote lab \
             -fPIC -DRUNBOOK_SHARE='"$(SHARE)"' -DRUNBOOK_LIBDIR='"$(LIBDIR)"' \
             -DPG_SYSCONFDIR='"$(PG_SYSCONFDIR)"' \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# The network modules and the REPL's line editor are shared objects loaded on first `require`
# (stdlib/modules.c): libpq, hiredis and libcurl bring some forty libraries that every start would
# otherwise map, even `list`, and libedit four, which only a terminal session uses.
CORE_PKGS := lua5.4 lua5.4-cjson
LDLIBS  = $(shell pkg-config --libs $(CORE_PKGS) 2>/dev/null) -lm
LIBDIR  := $(PREFIX)/lib/runbook
ASAN    := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

MOD_SRC := stdlib/pg.c stdlib/pg_conninfo.c stdlib/pg_engine.c stdlib/pg_probes.c stdlib/pg_service.c \
           stdlib/redis.c stdlib/redis_engine.c stdlib/redis_commands.c stdlib/redis_probes.c \
           stdlib/http.c stdlib/http_request.c stdlib/http_transfer.c stdlib/http_result.c \
           interp/lineedit.c
SRC     := $(filter-out $(MOD_SRC),$(wildcard interp/*.c) $(wildcard stdlib/*.c) $(wildcard lab/*.c))
# The Lua halves of every part: the interpreter, its incident tools, the lab, the Lua modules of stdlib.
LUA     := $(sort $(wildcard interp/*.lua interp/incident/*.lua lab/*.lua stdlib/*.lua))
OBJ     := $(SRC:%.c=obj/%.o) obj/embedded.o
OBJ_ASAN:= $(SRC:%.c=obj-asan/%.o) obj-asan/embedded.o
MODS    := obj/modules/pg.so obj/modules/redis.so obj/modules/http.so obj/modules/lineedit.so
MODS_ASAN := $(MODS:obj/%=obj-asan/%)

.PHONY: all asan test test-asan demo deps install uninstall clean
all: runbook

# -rdynamic: the modules call back into the host (luax_*, tasks_*, gate_*, net_*).
runbook: $(OBJ) $(MODS)
	$(CC) $(ALL_CFLAGS) -rdynamic -o $@ $(OBJ) $(LDLIBS)

runbook-asan: $(OBJ_ASAN) $(MODS_ASAN)
	$(CC) $(ALL_CFLAGS) $(ASAN) -rdynamic -o $@ $(OBJ_ASAN) $(LDLIBS)

# A module NAME is NAME.c and NAME_*.c, linked with its library.
mod_objs = $(patsubst %.c,$(1)/%.o,$(foreach f,$(MOD_SRC),$(if $(filter $(2) $(2)_%,$(basename $(notdir $(f)))),$(f))))
mod_pkg  = $(or $(word 2,$(subst :, ,$(filter $(1):%,pg:libpq redis:hiredis http:libcurl lineedit:libedit))),$(error no library for module $(1)))
mod_libs = $(shell pkg-config --libs $(call mod_pkg,$(1)) 2>/dev/null)

.SECONDEXPANSION:
obj/modules/%.so: $$(call mod_objs,obj,$$*)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -shared -o $@ $^ $(call mod_libs,$*)

obj-asan/modules/%.so: $$(call mod_objs,obj-asan,$$*)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ASAN) -shared -o $@ $^ $(call mod_libs,$*)

obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

obj-asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ASAN) -MMD -MP -c -o $@ $<

obj/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror $(shell pkg-config --cflags lua5.4 2>/dev/null) -o $@ $< \
	    $(shell pkg-config --libs lua5.4 2>/dev/null)

obj/embedded.c: obj/tools/embed $(LUA)
	obj/tools/embed $@ $(LUA)

obj/embedded.o obj-asan/embedded.o: obj/embedded.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(if $(findstring asan,$@),$(ASAN)) -Wno-missing-prototypes -c -o $@ $<

# Installs the missing Debian packages (with sudo when not root).
deps:
	@missing=$$(for p in $(DEPS_BUILD) $(DEPS_TEST); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	    $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

test: deps
	$(MAKE) --no-print-directory runbook
	python3 tests/run.py --binary ./runbook

# LSAN_OPTIONS=use_tls=0: LeakSanitizer's tracer (gcc 12) can crash reading the dynamic TLS of a
# process that dlopen()ed libraries with thread-local storage (libcurl's, libpq's), depending on when
# the collector ran; without TLS as a root, leaks are still found (there can only be more reports).
asan: deps
	$(MAKE) --no-print-directory runbook-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 LSAN_OPTIONS=use_tls=0 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 python3 tests/run.py --binary ./runbook-asan

# A real incident, rehearsed: the lab's Redis is stopped, redis-failure diagnoses it and asks
# before restarting it (answer yes), then checks the service. The lab is removed afterwards.
demo: deps
	$(MAKE) --no-print-directory runbook
	RUNBOOK_PATH=$(CURDIR)/runbooks ./runbook drill redis-failure --auto; rc=$$?; \
	    ./runbook lab down >/dev/null; exit $$rc

install: runbook
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SHARE)/runbooks $(DESTDIR)$(LIBDIR)
	install -m 0755 runbook $(DESTDIR)$(PREFIX)/bin/runbook
	install -m 0644 $(MODS) $(DESTDIR)$(LIBDIR)/
	install -m 0644 runbooks/*.lua $(DESTDIR)$(SHARE)/runbooks/
	./runbook doc --luals $(DESTDIR)$(SHARE)/luals --as $(SHARE)/luals >/dev/null

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/runbook
	rm -rf $(DESTDIR)$(SHARE) $(DESTDIR)$(LIBDIR)

clean:
	rm -rf obj obj-asan runbook runbook-asan

# The modules' objects are kept (make would delete them as intermediate files) and their
# dependencies read, so that a header change rebuilds the shared objects too.
MOD_OBJ := $(MOD_SRC:%.c=obj/%.o) $(MOD_SRC:%.c=obj-asan/%.o)
.SECONDARY: $(MOD_OBJ)
-include $(OBJ:.o=.d) $(OBJ_ASAN:.o=.d) $(MOD_OBJ:.o=.d)

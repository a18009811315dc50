# runbook - one GNU makefile. `make`, `make test`, `make asan`, `make demo`, `make install`.
PREFIX  ?= /usr/local
DESTDIR ?=
SHARE   := $(PREFIX)/share/runbook
CC      ?= cc
PKGS    := lua5.4 lua5.4-cjson libpq hiredis libcurl libedit

# Debian packages: what building needs, and what the tests need on top.
DEPS_BUILD := gcc make pkg-config liblua5.4-dev lua-cjson-dev libpq-dev libhiredis-dev libcurl4-openssl-dev libedit-dev
DEPS_TEST  := python3 util-linux postgresql redis-server openssl

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wno-format-nonliteral -Wpointer-arith -Wvla
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -iquote interp -iquote stdlib -iquote lab \
             -DRUNBOOK_SHARE='"$(SHARE)"' $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
ASAN    := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRC     := $(wildcard interp/*.c) $(wildcard stdlib/*.c) $(wildcard lab/*.c)
LUA     := $(sort $(wildcard stdlib/lua/*.lua))
OBJ     := $(SRC:%.c=obj/%.o) obj/embedded.o
OBJ_ASAN:= $(SRC:%.c=obj-asan/%.o) obj-asan/embedded.o

.PHONY: all asan test test-asan demo deps install uninstall clean
all: runbook

runbook: $(OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

runbook-asan: $(OBJ_ASAN)
	$(CC) $(ALL_CFLAGS) $(ASAN) -o $@ $^ $(LDLIBS)

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

asan: deps
	$(MAKE) --no-print-directory runbook-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    python3 tests/run.py --binary ./runbook-asan

# A real incident, rehearsed: the lab's Redis is stopped, redis-failure diagnoses it and asks
# before restarting it (answer yes), then checks the service. The lab is removed afterwards.
demo: deps
	$(MAKE) --no-print-directory runbook
	RUNBOOK_PATH=$(CURDIR)/runbooks ./runbook drill redis-failure --auto; rc=$$?; \
	    ./runbook lab down >/dev/null; exit $$rc

install: runbook
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SHARE)/runbooks
	install -m 0755 runbook $(DESTDIR)$(PREFIX)/bin/runbook
	install -m 0644 runbooks/*.lua $(DESTDIR)$(SHARE)/runbooks/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/runbook
	rm -rf $(DESTDIR)$(SHARE)

clean:
	rm -rf obj obj-asan runbook runbook-asan

-include $(OBJ:.o=.d) $(OBJ_ASAN:.o=.d)

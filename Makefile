# hl7broker: a plain Makefile. `make` builds, `make test` runs every test,
# `make run` starts the broker on conf/hl7broker.conf. Every target that
# compiles first makes sure the Debian packages it needs are installed.

CC        ?= cc
SANITIZER ?=
prefix    ?= /usr/local
DESTDIR   ?=
CONFIG    ?= conf/hl7broker.conf
FUZZ_SECONDS ?= 30

comma := ,
# One build tree per sanitizer set, so switching never needs a clean.
ifeq ($(SANITIZER),)
BUILD := build/default
SANFLAGS :=
else
BUILD := build/san-$(subst $(comma),-,$(SANITIZER))
SANFLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

PKGS      := libevent libevent_openssl libevent_pthreads openssl libconfig jansson libxml-2.0
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -llmdb -lzmq -lpthread

CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -MMD -MP \
            -Iinclude $(SANFLAGS) $(PKG_CFLAGS)
LDFLAGS  += $(SANFLAGS)

# The Debian packages the build, the tests and the benchmarks need.
DEB_PACKAGES := gcc make pkg-config libzmq3-dev libevent-dev libssl-dev \
                liblmdb-dev lmdb-utils libconfig-dev libcmocka-dev libjansson-dev libxml2-dev \
                openssl valgrind python3 python3-hl7 curl xxd
FUZZ_PACKAGES := clang
# Only `make test` needs these: the dashboard test renders the page in a
# headless browser (about 290 MB, so not part of every build).
TEST_PACKAGES := chromium

LIB_SRC  := $(filter-out broker/hl7brokerd.c broker/hl7ctl.c, \
              $(wildcard broker/*.c routes/*.c adapters/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/dashboard_html.o
LIB      := $(BUILD)/libhl7broker.a

BROKERD  := $(BUILD)/hl7brokerd
HL7CTL   := $(BUILD)/hl7ctl

UNIT_SRC := $(wildcard test/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:test/unit/%.c=$(BUILD)/test/%)

FUZZ_SRC := $(wildcard test/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRC:test/fuzz/%.c=%)
REPLAY_BIN := $(FUZZ_NAMES:%=$(BUILD)/test/replay_%)

BENCH_BIN := $(BUILD)/test/bench_hl7
# The MLLP load generator (the ingest tests use it too) and the LMDB
# commit probe, at the tree's normal -O2.
MLLP_LOAD   := $(BUILD)/test/mllp_load
LMDB_COMMIT := $(BUILD)/test/lmdb_commit
PRUNE_FILL  := $(BUILD)/test/prune_fill
# A ZeroMQ client for the zmq source's tests (python3-zmq may be absent).
ZMQ_CLIENT  := $(BUILD)/test/zmq_client

.PHONY: all deps deps-fuzz deps-test test run bench fuzz install clean check-config
# Keep test and tool objects between runs (they are intermediate files).
.SECONDARY:
all: conf-perms $(BROKERD) $(HL7CTL)

# Git keeps no file modes but the executable bit: the example keys must be
# private again after a clone, or the broker rightly refuses them.
.PHONY: conf-perms
conf-perms:
	@chmod 600 conf/keys/*.key test/data/routes/*.key conf/admin.token test/data/admin/*.token 2>/dev/null || true

deps:
	@sh test/deps.sh $(DEB_PACKAGES)

deps-fuzz:
	@sh test/deps.sh $(FUZZ_PACKAGES)

deps-test:
	@sh test/deps.sh $(TEST_PACKAGES)

# Compilation waits for deps but is not redone because of it.
$(BUILD)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The dashboard page (broker/dashboard.html) as a C byte array, NUL
# added; remade whenever the page changes.
$(BUILD)/gen/dashboard_html.c: broker/dashboard.html | deps
	@mkdir -p $(dir $@)
	@set -e; { echo '/* generated from broker/dashboard.html by the Makefile: do not edit */'; \
	  echo '#include "dashboard.h"'; \
	  echo 'const unsigned char dashboard_html[] = {'; \
	  xxd -i <$<; \
	  echo ', 0x00 };'; \
	  echo 'const size_t dashboard_html_len = sizeof dashboard_html - 1;'; } >$@.tmp
	@mv $@.tmp $@

$(BUILD)/gen/dashboard_html.o: $(BUILD)/gen/dashboard_html.c | deps
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BROKERD): $(BUILD)/broker/hl7brokerd.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(HL7CTL): $(BUILD)/broker/hl7ctl.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/test/test_%: $(BUILD)/test/unit/test_%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka

# Fuzz targets replayed over their corpus without libFuzzer.
$(BUILD)/test/replay_%: $(BUILD)/test/fuzz/%.o $(BUILD)/test/fuzz/replay.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BENCH_BIN): $(BUILD)/test/bench/bench_hl7.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(MLLP_LOAD): $(BUILD)/test/bench/mllp_load.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(PRUNE_FILL): $(BUILD)/test/bench/prune_fill.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(LMDB_COMMIT): $(BUILD)/test/bench/lmdb_commit.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -llmdb

$(ZMQ_CLIENT): $(BUILD)/test/tools/zmq_client.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lzmq

test: deps-test all $(UNIT_BIN) $(REPLAY_BIN) $(MLLP_LOAD) $(ZMQ_CLIENT)
	@BUILD=$(BUILD) sh test/run-tests.sh

run: all
	$(BROKERD) -c $(CONFIG)

check-config: all
	$(BROKERD) -c $(CONFIG) --check

# CFLAGS goes through the environment: given on the command line it would
# also replace the project's own flags (-Iinclude, -std=c11, ...).
bench: deps
	@CFLAGS="-O3 -g -march=native" $(MAKE) --no-print-directory SANITIZER= \
	    BUILD=build/bench build/bench/test/bench_hl7
	@$(MAKE) --no-print-directory SANITIZER= all build/default/test/mllp_load \
	    build/default/test/lmdb_commit build/default/test/prune_fill
	@INGEST_BUILD=build/default sh test/bench/run.sh build/bench/test/bench_hl7

# libFuzzer builds with clang, in a tree of their own. New inputs collect
# in $(FUZZ_BUILD)/new (kept between runs) and only those that reach new
# edges are merged into the committed corpus (-use_counters=0: edges, not
# hit counts), which so stays small. A crash leaves its input as
# $(FUZZ_BUILD)/<target>-crash-*; the other targets still run. A target's
# dictionary is test/fuzz/<target>.dict when there is one, else hl7.dict.
FUZZ_BUILD := build/fuzz
# The targets link against the whole library, built once by clang with
# the fuzzer's coverage instrumentation and the sanitizers in a tree of its
# own; the linker takes from it only what each target uses.
FUZZ_LIB_SAN := fuzzer-no-link,address,undefined
FUZZ_LIB := build/san-$(subst $(comma),-,$(FUZZ_LIB_SAN))/libhl7broker.a
fuzz: deps deps-fuzz
	@mkdir -p $(FUZZ_BUILD)
	$(MAKE) CC=clang SANITIZER=$(FUZZ_LIB_SAN) $(FUZZ_LIB)
	@set -e; for t in $(FUZZ_NAMES); do \
	  echo "fuzz: building $$t"; \
	  clang -std=c11 -D_GNU_SOURCE -O1 -g -Iinclude $(PKG_CFLAGS) \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -o $(FUZZ_BUILD)/$$t \
	    test/fuzz/$$t.c $(FUZZ_LIB) $(PKG_LIBS); \
	done
	@fail=""; for t in $(FUZZ_NAMES); do \
	  mkdir -p test/fuzz/corpus/$$t $(FUZZ_BUILD)/new/$$t; \
	  dict=test/fuzz/hl7.dict; [ -f test/fuzz/$$t.dict ] && dict=test/fuzz/$$t.dict; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  $(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    -dict=$$dict -artifact_prefix=$(FUZZ_BUILD)/$$t- \
	    $(FUZZ_BUILD)/new/$$t test/fuzz/corpus/$$t || fail="$$fail $$t"; \
	  echo "fuzz: $$t: merging what adds coverage into test/fuzz/corpus/$$t"; \
	  $(FUZZ_BUILD)/$$t -merge=1 -use_counters=0 -max_len=65536 \
	    -artifact_prefix=$(FUZZ_BUILD)/$$t- test/fuzz/corpus/$$t \
	    $(FUZZ_BUILD)/new/$$t >$(FUZZ_BUILD)/$$t-merge.log 2>&1 \
	    || { tail -n 30 $(FUZZ_BUILD)/$$t-merge.log; fail="$$fail $$t"; }; \
	  tail -n 1 $(FUZZ_BUILD)/$$t-merge.log; \
	done; \
	if [ -n "$$fail" ]; then \
	  echo "fuzz: crashes in:$$fail; the inputs are $(FUZZ_BUILD)/<target>-crash-*"; \
	  exit 1; \
	fi

install: all
	install -d $(DESTDIR)$(prefix)/bin $(DESTDIR)$(prefix)/share/hl7broker
	install -m 0755 $(BROKERD) $(HL7CTL) $(DESTDIR)$(prefix)/bin/
	install -m 0644 conf/hl7broker.conf $(DESTDIR)$(prefix)/share/hl7broker/

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

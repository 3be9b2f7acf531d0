# Agnes — build, run and test.  See README.md.
#
#   make            build build/agnes
#   make run        install missing deps, build, serve on ./data with a local listener
#   make test       unit (cmocka) + black-box (pytest) suites, one summary line
#   make asan       the same suite against an ASan+UBSan build
#   make clean
#
# Version info is baked in: make VERSION=2026.11.1 CHANNEL=stable

CC       ?= cc
PKGS     := libmicrohttpd jansson libsodium yaml-0.1 libcurl libjwt libpq zlib
DUCKDB   := third_party/duckdb
CSTD     := -std=c11 -D_GNU_SOURCE
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-missing-field-initializers -Wno-format-truncation
CFLAGS   ?= -O2 -g
CPPFLAGS += -Isrc -isystem $(DUCKDB)/include
LIBS      = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -L$(DUCKDB)/lib -lduckdb -lpthread -lm
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)

GIT_TAG  := $(shell git describe --tags --match '*[0-9][0-9][0-9][0-9].[0-9][0-9].[0-9]*' 2>/dev/null)
VERSION  ?= $(if $(GIT_TAG),$(shell echo '$(GIT_TAG)' | sed -E 's/^[a-z]+-//'),dev)
CHANNEL  ?= dev
COMMIT   ?= $(shell git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)

SRC      := $(sort $(wildcard src/core/*.c src/store/*.c src/engine/*.c src/sync/*.c src/http/*.c src/web/*.c src/cli/*.c src/cli/client/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
TOOL_SRC := $(sort $(wildcard tests/tools/*.c))

# Two build flavours share the rules below: normal (build/) and sanitized (build/asan/).
BUILD    ?= build
# `make V=1` prints full compiler command lines.
Q        := $(if $(V),,@)
ifeq ($(SANITIZE),1)
BUILD    := build/asan
CFLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif
# The binary finds libduckdb.so relative to itself: from build/, build/tests/,
# build/asan/ and build/asan/tests/ in a checkout, and ../lib when installed.
RPATH    := $(foreach up,.. ../.. ../../..,-Wl,-rpath,'$$ORIGIN/$(up)/$(DUCKDB)/lib') -Wl,-rpath,'$$ORIGIN/../lib'

OBJ      := $(SRC:src/%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libagnes.a
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/%)

.PHONY: all deps run-deps run test asan unit-build clean interfaces
.DELETE_ON_ERROR:

all: $(BUILD)/agnes

deps:
	@scripts/bootstrap --check >/dev/null 2>&1 || scripts/bootstrap

# Running needs only what building needs; the tests' servers and tools come with `make test`.
run-deps:
	@scripts/bootstrap --check --build-only >/dev/null 2>&1 || scripts/bootstrap --build-only

$(DUCKDB)/lib/libduckdb.so $(DUCKDB)/include/duckdb.h:
	scripts/bootstrap

# Rebuild version.o only when the baked values change.
$(BUILD)/version.stamp: FORCE
	@mkdir -p $(@D)
	@echo '$(VERSION) $(CHANNEL) $(COMMIT)' | cmp -s - $@ || echo '$(VERSION) $(CHANNEL) $(COMMIT)' > $@
FORCE:

$(BUILD)/obj/core/version.o: $(BUILD)/version.stamp
$(BUILD)/obj/core/version.o: CPPFLAGS += -DAGNES_BUILD_VERSION='"$(VERSION)"' -DAGNES_BUILD_CHANNEL='"$(CHANNEL)"' \
	-DAGNES_BUILD_COMMIT='"$(COMMIT)"' -DAGNES_BUILD_TIME="\"$$(date -u +%Y-%m-%dT%H:%M:%SZ)\""

$(BUILD)/obj/%.o: src/%.c $(DUCKDB)/include/duckdb.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CSTD) $(WARN) $(CFLAGS) $(CPPFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(filter-out $(BUILD)/obj/main.o,$(OBJ))
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/agnes: $(BUILD)/obj/main.o $(LIB) $(DUCKDB)/lib/libduckdb.so
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(BUILD)/obj/main.o $(LIB) $(LIBS) $(RPATH)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CSTD) $(WARN) $(CFLAGS) $(CPPFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LIBS) -lcmocka $(RPATH)

$(BUILD)/tests/%: tests/tools/%.c $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  TOOL    $@")
	$(Q)$(CC) $(CSTD) $(WARN) $(CFLAGS) $(CPPFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LIBS) $(RPATH)

unit-build: $(BUILD)/agnes $(UNIT_BIN) $(TOOL_BIN)

run: run-deps
	@$(MAKE) --no-print-directory all
	DATA_DIR=$${DATA_DIR:-./data} AGNES_LISTEN=$${AGNES_LISTEN:-127.0.0.1:8000} AGNES_DEMO=$${AGNES_DEMO:-1} \
	  $(BUILD)/agnes serve

test: deps
	@$(MAKE) --no-print-directory unit-build
	@tests/run-all $(BUILD)

asan: deps
	@$(MAKE) --no-print-directory SANITIZE=1 unit-build
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tests/run-all build/asan

# The interface snapshots scripts/breaking-check compares across revisions; tests fail when they drift.
interfaces: all
	$(BUILD)/agnes openapi > openapi.json
	$(BUILD)/agnes schema dump > contracts/system_schema.json
	$(BUILD)/agnes help --json > contracts/cli.json

clean:
	rm -rf build

-include $(OBJ:.o=.d)

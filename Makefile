# tidegate build. GNU make.
#
#   make              build/tidegate (BPF objects embedded as skeletons)
#   make test         setup packages, build, run every suite, print a summary
#   make demo         the whole path in network namespaces (see README)
#   make bench        comparisons against nginx, HAProxy and nftables
#   make help         this list, with the knobs
#
# Knobs: BUILD=dir (build directory), SAN=1 (ASan+UBSan), CC=clang, V=1.

BUILD    ?= build
CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
SAN      ?= 0
FUZZ     ?= 0
PYTHON   ?= /usr/bin/python3

ifeq ($(V),1)
Q :=
else
Q := @
endif

PKG_LIBS := libbpf libfyaml libcurl openssl
CPPFLAGS += -D_GNU_SOURCE -Isrc -I$(BUILD)/bpf -Ibpf
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wformat=2 \
	    -Wmissing-prototypes -Wstrict-prototypes -fno-strict-aliasing -pthread -MMD -MP
LDLIBS   += $(shell pkg-config --libs $(PKG_LIBS)) -lelf -lz -lpthread -lm

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(FUZZ),1)
CC      := $(CLANG)
CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -DTG_FUZZING
LDFLAGS += -fsanitize=address,undefined
endif

# Every .c under src/ is part of the library except main.c and fuzz targets.
SRCS      := $(shell find src -name '*.c' ! -name 'fuzz_*.c' | sort)
MAIN_SRC  := src/cmd/main.c
LIB_SRCS  := $(filter-out $(MAIN_SRC),$(SRCS))
LIB_OBJS  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRCS))
MAIN_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(MAIN_SRC))
LIB       := $(BUILD)/libtidegate.a
BIN       := $(BUILD)/tidegate

# BPF programs: bpf/NAME.bpf.c -> $(BUILD)/bpf/NAME.bpf.o -> $(BUILD)/bpf/NAME.skel.h
BPF_SRCS  := $(wildcard bpf/*.bpf.c)
BPF_OBJS  := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.bpf.o,$(BPF_SRCS))
BPF_SKELS := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.skel.h,$(BPF_SRCS))
VMLINUX   := $(BUILD)/bpf/vmlinux.h
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -I$(BUILD)/bpf -Ibpf

# Unit tests: tests/unit/MOD/test_X.c -> $(BUILD)/tests/unit/MOD/test_X
UNIT_SRCS := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BINS := $(patsubst %.c,$(BUILD)/%,$(UNIT_SRCS))
# Helpers shared by unit tests (guard-page buffers, ...)
UNIT_HELP := $(shell find tests/unit -name '*.c' ! -name 'test_*.c' 2>/dev/null | sort)
UNIT_HOBJ := $(patsubst %.c,$(BUILD)/%.o,$(UNIT_HELP))

# BPF fixture runners: tests/bpf/test_X.c -> $(BUILD)/tests/bpf/test_X
BPFT_SRCS := $(shell find tests/bpf -name 'test_*.c' 2>/dev/null | sort)
BPFT_BINS := $(patsubst %.c,$(BUILD)/%,$(BPFT_SRCS))

# Fuzz targets: src/MOD/fuzz_X.c -> $(BUILD)/fuzz/fuzz_X (only with FUZZ=1)
FUZZ_SRCS := $(shell find src -name 'fuzz_*.c' | sort)
FUZZ_BINS := $(patsubst %.c,$(BUILD)/fuzz/%,$(notdir $(FUZZ_SRCS)))

.PHONY: all test unit bpf-test integration fuzz fuzz-build demo demo-stop bench \
	help clean format check-format tests-build

all: $(BIN)

# Skeletons and BPF objects are intermediate files of pattern chains; keep them
# so that every make does not rebuild them.
.SECONDARY: $(BPF_OBJS) $(BPF_SKELS) $(VMLINUX)

$(VMLINUX):
	@mkdir -p $(dir $@)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h) $(VMLINUX)
	@mkdir -p $(dir $@)
	@echo "  BPF     $@"
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/bpf/%.skel.h: $(BUILD)/bpf/%.bpf.o
	$(Q)$(BPFTOOL) gen skeleton $< name tg_$(subst -,_,$*) > $@.tmp && mv $@.tmp $@

$(BUILD)/%.o: %.c | $(BPF_SKELS)
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BIN): $(MAIN_OBJ) $(LIB)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit/%: tests/unit/%.c $(UNIT_HOBJ) $(LIB)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) $(LDFLAGS) -o $@ $< $(UNIT_HOBJ) $(LIB) -lcmocka $(LDLIBS)

$(BUILD)/tests/bpf/%: tests/bpf/%.c $(LIB) $(BPF_SKELS)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(CPPFLAGS) -Itests/bpf $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) -lcmocka $(LDLIBS)

$(BUILD)/fuzz/fuzz_%: $(LIB) $(BPF_SKELS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ \
		$(shell find src -name 'fuzz_$*.c') $(LIB) $(LDLIBS)

tests-build: $(BIN) $(UNIT_BINS) $(BPFT_BINS)


# The whole suite: packages, build, unit, BPF fixtures, integration, brief
# fuzzing, and the unit+integration suites again under ASan+UBSan.
test:
	$(Q)scripts/setup
	$(Q)scripts/test-all

unit: $(UNIT_BINS)
	$(Q)scripts/run-unit $(BUILD)

bpf-test: $(BPFT_BINS)
	$(Q)scripts/run-unit $(BUILD) tests/bpf

integration: $(BIN)
	$(Q)TIDEGATE=$(abspath $(BIN)) $(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS)

fuzz-build:
	$(Q)$(MAKE) --no-print-directory BUILD=build-fuzz FUZZ=1 $(addprefix build-fuzz/fuzz/,$(notdir $(FUZZ_SRCS:.c=)))

# make fuzz FUZZ_SECONDS=60   runs every fuzz target for that long each
FUZZ_SECONDS ?= 60
fuzz: fuzz-build
	$(Q)scripts/run-fuzz build-fuzz $(FUZZ_SECONDS)

demo: $(BIN)
	$(Q)scripts/demo

demo-stop:
	$(Q)scripts/demo stop

bench: $(BIN)
	$(Q)scripts/setup
	$(Q)bench/run

help:
	@echo "tidegate make targets:"
	@echo "  make              build $(BUILD)/tidegate (BPF skeletons embedded)"
	@echo "  make test         install packages (scripts/setup), build, run unit, BPF-fixture,"
	@echo "                    integration, brief fuzz and ASan+UBSan suites; prints a summary"
	@echo "  make unit         unit tests only (cmocka)"
	@echo "  make bpf-test     BPF fixtures through BPF_PROG_TEST_RUN"
	@echo "  make integration  pytest integration tests (real processes, network namespaces)"
	@echo "  make fuzz         every libFuzzer target for FUZZ_SECONDS (default 60) each"
	@echo "  make demo         start the demo path in network namespaces; make demo-stop ends it"
	@echo "  make bench        benchmarks against nginx, HAProxy and nftables, printed as ratios"
	@echo "  make format       clang-format every C file in place"
	@echo "  make clean        remove build directories"
	@echo "knobs: BUILD=dir SAN=1 (ASan+UBSan) CC=clang V=1 PYTEST_ARGS='-k name'"

format:
	$(Q)clang-format -i $$(find src bpf tests -name '*.[ch]' ! -name vmlinux.h)

check-format:
	$(Q)clang-format --dry-run --Werror $$(find src bpf tests -name '*.[ch]' ! -name vmlinux.h)

clean:
	rm -rf build build-*

# Dependency files of fuzz binaries are left out: they would match the fuzz
# link rule and make would try to "build" them.
-include $(shell find $(BUILD) -name '*.d' ! -path '*/fuzz/*' 2>/dev/null)

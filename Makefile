# The two commands of the README: `make run` and `make test`. Everything else is plumbing.
# Each build flavour has its own CMake tree under build/.

MAKEFLAGS   += --no-print-directory
JOBS        ?= 2
# Tests at once. Most of a suite's time is waiting (deadlines, restarts, a broker's queue),
# not CPU: on 2 cores -j4 ran the gcc suite in 407 s against 778 s at -j2, and the ASan suite
# in 447 s against 664 s, with the same results (2026-11-30).
TEST_JOBS   ?= 4
PREFIX      ?= /usr/local
DESTDIR     ?=
FUZZ_SECONDS ?= 5
SEED        ?= 1
# make chaos: the long run of tests/chaos (load with faults); shorter with CHAOS_SECONDS=60.
CHAOS_SECONDS  ?= 300
CHAOS_MACHINES ?= 1000
CHAOS_RATE     ?= 50
B           := build
CMAKE_Q     := cmake -Wno-dev --log-level=WARNING

.PHONY: all bootstrap build run test test-release test-asan test-m32 build-rv32 fuzz chaos bench \
        format check-format clean install

all: build

bootstrap:
	@tools/bootstrap

# The test trees (release, asan) build vendd with crash points (VEND_CRASH_POINTS, for the
# crash tests); `make install` builds its own tree without them.
$(B)/release/CMakeCache.txt: | bootstrap
	@$(CMAKE_Q) -S . -B $(B)/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVEND_CRASH_POINTS=ON

$(B)/install/CMakeCache.txt: | bootstrap
	@$(CMAKE_Q) -S . -B $(B)/install -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVEND_TESTS=OFF \
	    -DVEND_CRASH_POINTS=OFF

build: bootstrap $(B)/release/CMakeCache.txt
	@cmake --build $(B)/release -j$(JOBS)

run: bootstrap $(B)/release/CMakeCache.txt
	@cmake --build $(B)/release -j$(JOBS) --target vendd fake-midtrans vmsim
	@tools/run-dev

# The release build of what is installed (cmake/install.cmake lists it) into $(DESTDIR)$(PREFIX):
# `make install PREFIX=/usr DESTDIR=/tmp/pkg` stages a package.
install: bootstrap $(B)/install/CMakeCache.txt
	@cmake --build $(B)/install -j$(JOBS) --target vend-installables
	@DESTDIR="$(DESTDIR)" cmake --install $(B)/install --prefix "$(PREFIX)"

test: bootstrap check-format test-release test-asan test-m32 build-rv32
	@echo "make test: all suites passed"

test-release: build
	@ctest --test-dir $(B)/release -j$(TEST_JOBS) --output-on-failure --no-tests=error

# ASan + UBSan with clang, which also builds the libFuzzer targets; each fuzzer runs
# FUZZ_SECONDS inside this suite (longer: `make fuzz`).
test-asan: bootstrap
	@$(CMAKE_Q) -S . -B $(B)/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	    -DVEND_SANITIZE=ON -DVEND_FUZZ=ON -DVEND_FUZZ_SECONDS=$(FUZZ_SECONDS) -DVEND_CRASH_POINTS=ON
	@cmake --build $(B)/asan -j$(JOBS)
	@ctest --test-dir $(B)/asan -j$(TEST_JOBS) --output-on-failure --no-tests=error

# The codec and its tests on ILP32, as on the ESP32.
test-m32: bootstrap
	@$(CMAKE_Q) -S . -B $(B)/m32 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-i386.cmake \
	    -DVEND_PROTO_ONLY=ON
	@cmake --build $(B)/m32 -j$(JOBS)
	@ctest --test-dir $(B)/m32 -j$(TEST_JOBS) --output-on-failure --no-tests=error

# The codec and the firmware core freestanding for the ESP32-C3 (rv32imc, picolibc), warnings
# as errors; prints their sizes (text/data/bss, bytes).
build-rv32: bootstrap
	@$(CMAKE_Q) -S . -B $(B)/rv32 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-rv32imc.cmake \
	    -DVEND_PROTO_ONLY=ON
	@cmake --build $(B)/rv32 -j$(JOBS)
	@for lib in proto/libvendproto.a firmware/libvendfw.a; do \
	    riscv64-unknown-elf-size -t $(B)/rv32/$$lib | \
	        awk -v lib=$(B)/rv32/$$lib 'END { printf "rv32imc: %s built freestanding: " \
	            "text %d, data %d, bss %d\n", lib, $$1, $$2, $$3 }'; \
	done

fuzz:
	@$(MAKE) --no-print-directory test-asan FUZZ_SECONDS=300 JOBS=$(JOBS)

# 1,000 simulated machines, a steady order rate and random faults for CHAOS_SECONDS; passes
# when vend-check finds every invariant of SPEC §4 holding at the end. SEED picks the plan.
chaos: build
	@R=$(B)/release; VENDD=$$R/daemon/vendd VMSIM=$$R/firmware/port/host/vmsim \
	    FAKE_MIDTRANS=$$R/tools/fake-midtrans/fake-midtrans VEND_CHECK=$$R/tools/vend-check/vend-check \
	    $$R/tests/chaos/chaos --seed $(SEED) --seconds $(CHAOS_SECONDS) \
	    --machines $(CHAOS_MACHINES) --rate $(CHAOS_RATE)

bench: build
	@tools/run-bench $(B)/release

SOURCES = $(shell git ls-files '*.c' '*.h')

format:
	@clang-format -i $(SOURCES)

check-format: bootstrap
	@clang-format --dry-run --Werror $(SOURCES)
	@tools/checksrc

clean:
	rm -rf $(B)

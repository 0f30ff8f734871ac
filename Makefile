# thinsnap: thin wrappers over tools/install-deps, CMake and CTest.
BUILD    ?= build
JOBS     ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build test test-long fuzz demo sanitize format clean

all: build

deps:
	tools/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Every CTest test not labelled `long`: unit tests, gRPC tests and the dm-thin suites inside the
# qemu VM. To see the list: ctest --test-dir $(BUILD) -N -LE long
test: deps build
	ctest --test-dir $(BUILD) --output-on-failure -LE long

# `make sanitize`, `make fuzz`, then every CTest test labelled `long` (and the fixtures they
# need). The labels in tests/vm/*.cmake are the list; to see it:
#   ctest --test-dir $(BUILD) -N -L long
test-long: deps build sanitize fuzz
	ctest --test-dir $(BUILD) --output-on-failure -L long

# Every libFuzzer target for a short while (clang build, tests/fuzz/README.md).
fuzz: deps
	cmake -S . -B $(BUILD)-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DTHINSNAP_FUZZ=ON
	cmake --build $(BUILD)-fuzz -j $(JOBS) --target fuzzers
	ctest --test-dir $(BUILD)-fuzz --output-on-failure -L fuzz

# Unit tests under AddressSanitizer and UndefinedBehaviorSanitizer.
sanitize: deps
	cmake -S . -B $(BUILD)-asan -DTHINSNAP_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(BUILD)-asan -j $(JOBS) --target unit_tests
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --test-dir $(BUILD)-asan --output-on-failure -L unit

demo: deps build
	tools/demo $(BUILD)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-fuzz

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

# Unit tests, gRPC tests and the dm-thin suites inside the qemu VM, including
# the per-failpoint crash runs, a short randomised SIGKILL run and the power-cut runs.
test: deps build
	ctest --test-dir $(BUILD) --output-on-failure -LE long

# The randomised SIGKILL runs, the 32-client soak, the 10,000-snapshot scale run and the benchmark against containerd's
# devmapper, plus everything CI runs besides `make test`.
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

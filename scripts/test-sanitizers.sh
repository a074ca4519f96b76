#!/usr/bin/env bash
# Builds the native library and tests with AddressSanitizer and UndefinedBehaviorSanitizer
# (plain CMake, no addon) and runs the native tests under them.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-sanitizers -DCMAKE_BUILD_TYPE=Debug -DMU_SANITIZE=address,undefined >/dev/null
cmake --build build-sanitizers -j"$(nproc)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
ctest --test-dir build-sanitizers --output-on-failure
# The simulator exercises every engine path under faults: a short range under the sanitizers.
build-sanitizers/Debug/mu-sim --seeds 1..40

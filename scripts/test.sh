#!/usr/bin/env bash
# The test suite, once per feature set: the default build (the ndarray CPU backend), then the
# `--features wgpu` build's unit tests and its backend tests (tests/wgpu.rs: both backends on
# the same data, checkpoints across backends, a missing adapter). The other integration tests
# drive the CLI, the data and the faults on the CPU backend, the same code in either build, so
# they run once.
# The wgpu tests need a wgpu adapter: a GPU, or Mesa's software Vulkan driver lavapipe
# (Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1). Extra arguments go to both
# `cargo test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test "$@"
cargo test --features wgpu --lib --test wgpu "$@"

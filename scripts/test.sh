#!/usr/bin/env bash
# The test suite, once per feature set: the default build (the ndarray CPU backend), then with
# `--features wgpu`, whose tests also train on the wgpu backend and compare it with ndarray.
# The wgpu tests need a wgpu adapter: a GPU, or Mesa's software Vulkan driver lavapipe
# (Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1). Extra arguments go to both
# `cargo test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test "$@"
cargo test --features wgpu "$@"

#!/usr/bin/env bash
# The wgpu suite: the `--features wgpu` build's unit tests and its backend tests (tests/wgpu.rs:
# both backends on the same data, checkpoints across backends, a missing adapter). The rest of
# the tests drive the CLI, the data and the faults on the CPU, the same code in either build, so
# `cargo test --release` runs them once.
#
# It needs a wgpu adapter that is not the OpenGL fallback: a GPU, or, without one, Mesa's
# software Vulkan driver lavapipe (Debian/Ubuntu: apt-get install mesa-vulkan-drivers
# libvulkan1). Without one, its first test says so within seconds. Extra arguments go to
# `cargo test`.
#
# Dependencies are built unoptimised here (opt-level 0; this crate keeps the release profile):
# the wgpu features change Burn's feature set, so this build shares almost nothing with the
# default one, and unoptimised it takes 4 minutes instead of 11 on a 2-core machine, while the
# suite runs about a minute longer on lavapipe (BENCHMARKS.md, "Building", has the figures).
# The code under test is the same; `cargo run --release --features wgpu` builds Burn fully
# optimised.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests open wgpu in their own process too, where EGL's Wayland probe complains on stderr
# when this is unset (a root shell, CI).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR=$(mktemp -d)
  export XDG_RUNTIME_DIR
  trap 'rm -rf "$XDG_RUNTIME_DIR"' EXIT
fi

cargo test --release --features wgpu --lib --test wgpu \
  --config 'profile.release.package."*".opt-level=0' \
  --config 'profile.release.package.burn-ndarray.opt-level=0' "$@"

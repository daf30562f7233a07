#!/usr/bin/env bash
# The browser test: `serve`'s page in Debian's headless chromium, driven over WebDriver
# (chromedriver), drawing a 1 and a 0 on the pad (tests/browser.rs). It needs the packages
# `chromium` and `chromium-driver`, which `cargo test --release` does not, so it is ignored
# there and run here (and by CI). Without them it fails and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test browser -- --ignored --exact drawing_a_one_and_a_zero_on_the_pad "$@"

#!/usr/bin/env bash
# The browser tests: `serve`'s page in Debian's headless chromium, driven over WebDriver
# (chromedriver), drawing a 1 and a 0 on the pad, and sorting a sweep's table and charting its
# chosen trials (tests/browser.rs). It needs the packages
# `chromium` and `chromium-driver`, which `cargo test --release` does not, so it is ignored
# there and run here (and by CI). Without them it fails and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test browser -- --ignored --exact drawing_a_one_and_a_zero_on_the_pad \
  a_sweeps_table_sorts_by_its_headers_and_charts_the_chosen_trials \
  markup_in_a_sweeps_settings_is_shown_as_text "$@"

#!/usr/bin/env bash
# Every test: formatting, lints, unit and integration tests, and the interop tests against the
# pinned upstream Jumpstarter 0.9.0 packages (installed into ./.venv first).
# Needs: the Rust toolchain (cargo, rustfmt, clippy) and python3 >= 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-interop-venv.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
if [ -n "${JMP_TEST_IMAGE:-}" ]; then ./scripts/test-image.sh; else echo "image test not run (opt-in: JMP_TEST_IMAGE=1; it needs scripts/build-static.sh's release build, 15-40 min)"; fi

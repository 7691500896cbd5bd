#!/usr/bin/env bash
# Runs the side-by-side benchmarks (ours vs upstream Jumpstarter 0.9.0) and writes BENCHMARKS.md.
# `--quick` runs fewer iterations (for a smoke check, not for the published figures).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-interop-venv.sh
cargo build --release --locked -p jumpstarter-cli -p jumpstarter-controller -p jumpstarter-bench
exec ./target/release/jumpstarter-bench --venv .venv --out BENCHMARKS.md "$@"

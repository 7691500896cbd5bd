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
# The exporter image, FROM scratch with buildah (installed from Debian in CI): in CI from a
# quick static build (PROFILE=dev, a few minutes); elsewhere when asked (JMP_TEST_IMAGE=1).
if [ "${CI:-}" = true ] || [ -n "${JMP_TEST_IMAGE:-}" ]; then
    dist="$(mktemp -d)"
    PROFILE="${PROFILE:-dev}" ./scripts/build-static.sh "$dist"
    ./scripts/test-image.sh "$dist"
    rm -rf "$dist"
else
    echo "image test not run here (CI=true or JMP_TEST_IMAGE=1 runs it: scripts/test-image.sh)"
fi

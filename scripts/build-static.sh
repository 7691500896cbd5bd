#!/usr/bin/env bash
# Builds `jmp` as one statically linked executable (glibc with crt-static: no shared libraries,
# no Python), plus `j` as a symlink to it (the binary acts as `j` when called by that name).
#
#   scripts/build-static.sh [OUT_DIR]        # default OUT_DIR: dist/
#   TARGET=aarch64-unknown-linux-gnu scripts/build-static.sh   # e.g. Raspberry Pi OS 64-bit
#
# Cross builds need the target's standard library (`rustup target add $TARGET`) and a linker for
# it (on Debian: gcc-aarch64-linux-gnu, with
# CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc).
# The result runs on any Linux of the same architecture with a kernel >= 3.2. Name lookups of
# host names go through glibc's NSS, which a static glibc program can only use when the host's
# libnss modules match; numeric addresses (and the usual `files`/`dns` setups) are unaffected.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
target="${TARGET:-$(rustc -vV | sed -n 's/^host: //p')}"

# With --target, RUSTFLAGS reach only the target code (build scripts and proc macros stay
# dynamic, as they must).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p jumpstarter-cli --bin jmp

bin="target/$target/release/jmp"
mkdir -p "$out"
cp "$bin" "$out/jmp"
ln -sf jmp "$out/j"

# Check: no program interpreter, no shared libraries.
if command -v file >/dev/null; then
    file -L "$out/jmp"
fi
if readelf -l "$out/jmp" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    echo "error: $out/jmp is dynamically linked" >&2
    exit 1
fi
if readelf -d "$out/jmp" 2>/dev/null | grep -q '(NEEDED)'; then
    echo "error: $out/jmp needs shared libraries:" >&2
    readelf -d "$out/jmp" | grep '(NEEDED)' >&2
    exit 1
fi
if [ "$target" = "$(rustc -vV | sed -n 's/^host: //p')" ]; then
    "$out/jmp" version
fi
echo "static binaries in $out/: jmp, j -> jmp"

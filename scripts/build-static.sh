#!/usr/bin/env bash
# Builds `jmp` as one statically linked executable (glibc with crt-static: no shared libraries,
# no Python), plus `j` as a symlink to it (the binary acts as `j` when called by that name).
#
#   scripts/build-static.sh [OUT_DIR]        # default OUT_DIR: dist/
#   TARGET=aarch64-unknown-linux-gnu scripts/build-static.sh   # e.g. Raspberry Pi OS 64-bit
#   PROFILE=dev scripts/build-static.sh /tmp/out                # quick, unoptimised (tests)
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

# The libc crate binds the termios speed functions (cfsetspeed & co., used by the serial
# driver) to versioned glibc symbols such as `cfsetspeed@GLIBC_2.2.5`; the static libc.a has no
# symbol versions, so the final link is told that those names are the plain functions.
case "$target" in
    x86_64-*-linux-gnu) glibc=2.2.5 ;;
    aarch64-*-linux-gnu | powerpc64le-*-linux-gnu) glibc=2.17 ;;
    arm*-linux-gnueabi*) glibc=2.4 ;;
    i?86-*-linux-gnu) glibc=2.0 ;;
    riscv64*-linux-gnu) glibc=2.27 ;;
    *) echo "error: no glibc symbol version known for $target; add it to $0" >&2; exit 1 ;;
esac
link_args=()
for sym in cfgetispeed cfgetospeed cfsetispeed cfsetospeed cfsetspeed; do
    link_args+=(-C "link-arg=-Wl,-u,$sym" -C "link-arg=-Wl,--defsym=\"$sym@GLIBC_$glibc\"=$sym")
done

# With --target, RUSTFLAGS reach only the target code (build scripts and proc macros stay
# dynamic, as they must). The link arguments (and symbol stripping) go to the final link only.
# PROFILE=dev builds the same static binary unoptimised in the workspace code (dependencies
# at opt-level 2, as in every dev build): a few minutes instead of the release build's many,
# for the image test in CI. The default is the release profile.
profile="${PROFILE:-release}"
case "$profile" in
    dev) profile_dir=debug ;;
    *) profile_dir="$profile" ;;
esac
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo rustc --profile "$profile" --locked --target "$target" -p jumpstarter-cli --bin jmp -- -C strip=symbols "${link_args[@]}"

bin="${CARGO_TARGET_DIR:-target}/$target/$profile_dir/jmp"
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

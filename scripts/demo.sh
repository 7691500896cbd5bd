#!/usr/bin/env bash
# Builds jmp and j, then runs a local exporter with mock drivers (examples/exporters/demo.yaml)
# and a command inside its shell: `j power on` by default, or the arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p jumpstarter-cli
export PATH="$PWD/target/release:$PATH"
if [ $# -eq 0 ]; then
  set -- j power on
fi
exec jmp shell --exporter-config examples/exporters/demo.yaml -- "$@"

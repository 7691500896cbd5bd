#!/usr/bin/env bash
# Creates ./.venv with the pinned upstream Jumpstarter 0.9.0 packages used by the interop tests.
# Re-installs only when tests/interop/requirements.txt changed. Needs python3 (>= 3.11) with venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
req="$root/tests/interop/requirements.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python3 -c 'import sys; assert sys.version_info >= (3, 11), "python3 >= 3.11 is required for Jumpstarter 0.9.0"'
if ! python3 -m venv "$venv" 2>/dev/null; then
  # Debian splits venv/ensurepip into python3-venv.
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  else
    echo "python3 -m venv failed; install python3-venv" >&2
    exit 1
  fi
fi
"$venv/bin/pip" install --disable-pip-version-check -q -r "$req"
echo "$want" > "$stamp"

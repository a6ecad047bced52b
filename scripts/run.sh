#!/usr/bin/env bash
# `make run`: starts the Vigil server on the embedded defaults (SQLite under ./data, no Redis).
# Until the server exists it hashes the bundled sample images instead.
set -euo pipefail
vigil=${1:?path to vigil}
cd "$(dirname "$0")/.."
if "$vigil" serve --help >/dev/null 2>&1; then
  exec "$vigil" serve "${@:2}"
fi
echo "vigil serve is not built yet; hashing the sample images with vigil hash:"
exec "$vigil" hash samples/*

#!/usr/bin/env bash
# The whole test suite (called by `make test` and CI). Starts nothing by hand: the tests start
# their own throwaway PostgreSQL server (tests/postgres_server.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM=offscreen
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "PostgreSQL server binaries missing: installing postgresql (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

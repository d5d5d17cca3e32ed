#!/usr/bin/env bash
# The whole test suite (called by `make test` and CI). Starts nothing by hand: the tests start
# their own throwaway PostgreSQL server (tests/postgres_server.py), which needs the PostgreSQL
# server binaries (initdb, postgres). When they are missing, root installs them with apt-get;
# anyone else is told what to install and the script stops before running any test.
#
# Overrides (for tests of this script): PATHOMICS_ASSUME_NONROOT=1 behaves as a non-root user;
# PATHOMICS_POSTGRES_LIB is the folder searched for <version>/bin/initdb (/usr/lib/postgresql).
set -euo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM=offscreen

postgres_lib="${PATHOMICS_POSTGRES_LIB:-/usr/lib/postgresql}"

postgres_present() {
  command -v initdb >/dev/null 2>&1 && return 0
  local candidate
  for candidate in "$postgres_lib"/*/bin/initdb; do
    [ -x "$candidate" ] && return 0
  done
  return 1
}

is_root() {
  [ "${PATHOMICS_ASSUME_NONROOT:-0}" != "1" ] && [ "$(id -u)" -eq 0 ]
}

explain_postgres_install() {
  cat >&2 <<'EOF'
The PostgreSQL server binaries (initdb, postgres) are missing. The registry tests run on a
throwaway PostgreSQL server, so install them once and run the tests again:

    sudo apt-get install postgresql

(Debian/Ubuntu; on Fedora: sudo dnf install postgresql-server; on macOS: brew install postgresql.)
Installing needs root; this script does it by itself only when run as root.
EOF
}

if ! postgres_present; then
  if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
    explain_postgres_install
    exit 3
  fi
  echo "PostgreSQL server binaries missing: installing postgresql (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

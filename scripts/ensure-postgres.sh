#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 for the tests: use a running one,
# start an installed cluster, or install Debian's postgresql (as root) and start it.
# Prints the SQLAlchemy URL to use on stdout; exits non-zero if no server can be had.
set -uo pipefail
HOST=127.0.0.1
PORT="${SAFEHAVEN_TEST_PG_PORT:-5432}"
URL="postgresql+psycopg://postgres:postgres@${HOST}:${PORT}/postgres"

ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$HOST" -p "$PORT"; }

start_cluster() {
  command -v pg_ctlcluster >/dev/null 2>&1 || return 1
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  [ -n "$version" ] || return 1
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do ready && return 0; sleep 1; done
  return 1
}

if ! ready; then
  if ! start_cluster; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "ensure-postgres: installing postgresql with apt-get" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2 \
        || { echo "ensure-postgres: apt-get install failed" >&2; exit 1; }
      start_cluster || { echo "ensure-postgres: cluster did not start" >&2; exit 1; }
      # A fresh Debian cluster uses password auth over TCP: give postgres a known password.
      su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >&2 || true
    else
      echo "ensure-postgres: no PostgreSQL server and cannot install one (not root)" >&2
      exit 1
    fi
  fi
fi
echo "$URL"

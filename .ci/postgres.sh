#!/usr/bin/env bash
# Best effort: make Debian's PostgreSQL server binaries (initdb, pg_ctl) available for
# tests/scale/test_search.py, which starts its own throw-away cluster on 127.0.0.1 and skips with
# its reason when there is no server. Never fails the build.
set -u
if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "postgres.sh: cannot install postgresql here (needs root and apt-get); its test will skip"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null 2>&1 \
       && apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1; } \
  || echo "postgres.sh: apt-get install postgresql failed; its test will skip"
exit 0

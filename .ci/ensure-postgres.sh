#!/usr/bin/env bash
# The PostgreSQL tests (store/postgres, storetest on PostgreSQL, the e2e
# tests with SEALPOST_TEST_STORE=postgres) need the machine's PostgreSQL on
# 127.0.0.1:5432 with trust auth and a database "test". This kind of machine
# installs and starts it before the session; start it again if it is down,
# and fail loudly if it does not come up.
set -euo pipefail

answers() { pg_isready -q -h 127.0.0.1 -p 5432; }

if ! command -v pg_isready >/dev/null; then
  echo "ensure-postgres: pg_isready not found: PostgreSQL is not installed on this machine" >&2
  exit 1
fi
if ! answers; then
  echo "== starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  for _ in $(seq 1 60); do
    answers && break
    sleep 1
  done
fi
if ! answers; then
  echo "ensure-postgres: PostgreSQL does not answer on 127.0.0.1:5432" >&2
  exit 1
fi
psql -h 127.0.0.1 -U postgres -d test -tAc 'SELECT 1' >/dev/null
echo "== PostgreSQL answers on 127.0.0.1:5432"

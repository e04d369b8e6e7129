#!/usr/bin/env bash
# Installs Kamailio, the peer that `sealbench compare` measures sealpostd
# against (bench/kamailio, BENCHMARKS.md): Debian's kamailio with its TLS and
# SQLite modules, and the db_sqlite schema files msilo's database is made
# from. Non-interactive and idempotent: when all is there it only says so.
# sealbench starts its own Kamailio on free loopback ports with its own
# configuration; a system service the package may have started is not used.
set -euo pipefail

schema=/usr/share/kamailio/db_sqlite/msilo-create.sql
module() {
  find /usr/lib -path "*/kamailio/modules/$1" -print -quit 2>/dev/null | grep -q .
}
have_all() {
  command -v kamailio >/dev/null 2>&1 && module tls.so && module db_sqlite.so && module msilo.so && [ -e "$schema" ]
}

versions() {
  dpkg-query -W -f='${Package} ${Version}\n' kamailio kamailio-tls-modules kamailio-sqlite-modules 2>/dev/null | sed 's/^/   /'
}

if have_all; then
  echo "== kamailio: already installed"
  versions
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "== kamailio: apt-get install kamailio kamailio-tls-modules kamailio-sqlite-modules"
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends kamailio kamailio-tls-modules kamailio-sqlite-modules

if ! have_all; then
  echo "kamailio: kamailio, its tls or db_sqlite module, or $schema still missing after apt-get install" >&2
  exit 1
fi
versions

#!/usr/bin/env bash
# Installs what the browser tests of `sealpost web` (tests/web) drive:
# Debian's chromium, and a colour emoji font so that the screenshots show
# emoji instead of empty boxes. Non-interactive and idempotent: when both
# are there it only says so. A failed install fails CI, so the browser
# tests never pass by skipping on a machine that should have run them.
set -euo pipefail

have_all() {
  command -v chromium >/dev/null 2>&1 &&
    dpkg-query -W -f='${Status}\n' fonts-noto-color-emoji 2>/dev/null | grep -q 'install ok installed'
}

versions() {
  dpkg-query -W -f='${Package} ${Version}\n' chromium fonts-noto-color-emoji 2>/dev/null | sed 's/^/   /'
}

if have_all; then
  echo "== chromium: already installed"
  versions
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "== chromium: apt-get install chromium fonts-noto-color-emoji"
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends chromium fonts-noto-color-emoji

if ! have_all; then
  echo "chromium: chromium or fonts-noto-color-emoji still missing after apt-get install" >&2
  exit 1
fi
versions

#!/usr/bin/env bash
# Installs the standard SIP clients that tests/interop drives: baresip (Debian
# package baresip; its modules, ctrl_tcp among them, are in baresip-core) and
# linphonec (linphone-cli). Non-interactive and idempotent: when both are
# already there it only says so. A failed install fails CI, so the interop
# tests never pass by skipping on a machine that should have run them.
set -euo pipefail

have_clients() {
  command -v baresip >/dev/null 2>&1 &&
    command -v linphonec >/dev/null 2>&1 &&
    [ -e /usr/lib/baresip/modules/ctrl_tcp.so ]
}

versions() {
  dpkg-query -W -f='${Package} ${Version}\n' baresip-core linphone-cli 2>/dev/null | sed 's/^/   /'
}

if have_clients; then
  echo "== sip clients: already installed"
  versions
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "== sip clients: apt-get install baresip linphone-cli"
$sudo apt-get update -q
# Recommends would add GTK, ffmpeg and GStreamer front ends the headless
# tests never load.
$sudo apt-get install -y -q --no-install-recommends baresip linphone-cli

if ! have_clients; then
  echo "sip clients: baresip, linphonec or baresip's ctrl_tcp module still missing after apt-get install" >&2
  exit 1
fi
versions

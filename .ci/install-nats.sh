#!/usr/bin/env bash
# Installs Debian's nats-server for the tests of several nodes
# (tests/cluster_e2e_test.go), which start their own on a free loopback
# port and kill it with -9 for the NATS outage. Idempotent: when it is
# there it only says so. A system service the package starts is not used.
set -euo pipefail

if [ -x /usr/sbin/nats-server ]; then
  echo "== nats-server: already installed ($(/usr/sbin/nats-server --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "== nats-server: installing from Debian"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nats-server >/dev/null
/usr/sbin/nats-server --version

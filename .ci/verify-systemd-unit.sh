#!/usr/bin/env bash
# Checks dist/sealpostd.service with systemd-analyze verify (installing the
# Debian package systemd if it is missing). verify also checks that
# ExecStart's program exists, so the binary is built into a scratch root
# at the path the unit names and the check runs with --root on it.
# Idempotent; needs no running systemd.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "== systemd-analyze: apt-get install systemd"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends systemd
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/bin" "$root/usr/lib"
go build -o "$root/usr/local/bin/sealpostd" ./cmd/sealpostd
cp -L /bin/kill "$root/bin/kill"
# The targets the unit is ordered against (network-online.target, sysinit.target …).
cp -r /usr/lib/systemd "$root/usr/lib/"
cp dist/sealpostd.service "$root/etc/systemd/system/sealpostd.service"

echo "== systemd-analyze verify dist/sealpostd.service"
out=$(systemd-analyze verify --root="$root" "$root/etc/systemd/system/sealpostd.service" 2>&1) || {
  echo "$out" >&2
  exit 1
}
# verify exits 0 on some warnings; a warning about our own unit is a failure.
if echo "$out" | grep -i 'sealpostd.service'; then
  echo "systemd-analyze verify: the lines above are about dist/sealpostd.service" >&2
  exit 1
fi
echo "ok"

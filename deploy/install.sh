#!/usr/bin/env bash
# Install edge-runtime as a system service on a Raspberry Pi OS / Debian device.
#
#   sudo deploy/install.sh [CONFIG.toml]
#
# Creates a virtual environment in /opt/edge-runtime, a system user 'edge-runtime'
# (in the gpio and dialout groups, for GPIO pins and serial microcontrollers), puts the
# config in /etc/edge-runtime/config.toml and enables deploy/edge-runtime.service.
# Re-running it upgrades in place and keeps an existing config.
set -euo pipefail

if [[ $EUID -ne 0 ]]; then
  echo "install.sh: run as root (sudo deploy/install.sh)" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=/opt/edge-runtime
config_src=${1:-}

echo "[1/5] system packages"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv

echo "[2/5] service user"
id -u edge-runtime >/dev/null 2>&1 || useradd --system --home /var/lib/edge-runtime \
  --create-home --shell /usr/sbin/nologin edge-runtime
for group in gpio dialout video; do
  getent group "$group" >/dev/null && usermod -aG "$group" edge-runtime
done

echo "[3/5] virtual environment in $prefix"
python3 -m venv "$prefix"
"$prefix/bin/pip" install --upgrade --quiet "$repo"
"$prefix/bin/edge-runtime" models verify

echo "[4/5] configuration"
install -d -m 0755 /etc/edge-runtime
if [[ -n "$config_src" ]]; then
  "$prefix/bin/edge-runtime" check "$config_src"
  install -m 0644 "$config_src" /etc/edge-runtime/config.toml
elif [[ ! -f /etc/edge-runtime/config.toml ]]; then
  echo "  no config given: copy one to /etc/edge-runtime/config.toml (see docs/config.md)"
fi

echo "[5/5] systemd service"
install -m 0644 "$repo/deploy/edge-runtime.service" /etc/systemd/system/edge-runtime.service
systemctl daemon-reload
if [[ -f /etc/edge-runtime/config.toml ]]; then
  systemctl enable --now edge-runtime.service
  systemctl --no-pager status edge-runtime.service | head -5
else
  systemctl enable edge-runtime.service
  echo "  enabled; it starts once /etc/edge-runtime/config.toml exists (systemctl start edge-runtime)"
fi

#!/bin/sh
# Install edge-runtime as a system service (Raspberry Pi OS Bookworm 64-bit, Debian or
# Ubuntu on amd64/arm64), from this checkout. POSIX sh; safe to run again (it upgrades
# in place and keeps an existing config). deploy/README.md walks through it.
#
#   sudo deploy/install.sh [--config FILE] [--fleet-key FILE.pub] [--system-site-packages]
#   sudo deploy/install.sh --uninstall [--purge]
#   deploy/install.sh --prefix DIR ...      # everything under DIR (tests, image builds):
#                                           # no service user, no systemctl
#
# What it does:
#   1. checks: 64-bit Python >= 3.11 with venv (onnxruntime has no 32-bit wheels)
#   2. the service user 'edge-runtime', in the groups video, gpio, i2c, spi, dialout,
#      audio where they exist (cameras, GPIO, I2C/SPI, serial microcontrollers, mics)
#   3. a venv in /opt/edge-runtime with this checkout pip-installed into it; on
#      Raspberry Pi OS with --system-site-packages, so apt's picamera2 can be imported
#   4. /etc/edge-runtime/config.toml (kept if it exists; else --config FILE, else a
#      starter config watching the board's own temperature), state in
#      /var/lib/edge-runtime; the fleet key as /etc/edge-runtime/fleet.pub
#   5. the systemd unit, enabled and (re)started when the system runs systemd
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=""
config_src=""
fleet_key=""
uninstall=0
purge=0
site_packages=auto
user=edge-runtime

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; prefix=$2; shift 2 ;;
        --config) [ $# -ge 2 ] || die "--config needs a file"; config_src=$2; shift 2 ;;
        --fleet-key) [ $# -ge 2 ] || die "--fleet-key needs a .pub file"; fleet_key=$2; shift 2 ;;
        --system-site-packages) site_packages=yes; shift ;;
        --no-system-site-packages) site_packages=no; shift ;;
        --uninstall) uninstall=1; shift ;;
        --purge) purge=1; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
if [ -n "$prefix" ]; then
    mkdir -p "$prefix"
    prefix=$(cd "$prefix" && pwd)
fi

venv=$prefix/opt/edge-runtime
etc=$prefix/etc/edge-runtime
state=$prefix/var/lib/edge-runtime
cache=$prefix/var/cache/edge-runtime
unit_dir=$prefix/etc/systemd/system
unit=$unit_dir/edge-runtime.service
docs=$venv/share/doc/edge-runtime

if [ -z "$prefix" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or give --prefix DIR to install into a folder"
fi
# systemctl only on a system booted with systemd, and never for a --prefix install.
use_systemd=0
if [ -z "$prefix" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    use_systemd=1
fi

# -- uninstall ------------------------------------------------------------------------
if [ "$uninstall" -eq 1 ]; then
    if [ "$use_systemd" -eq 1 ]; then
        systemctl disable --now edge-runtime.service 2>/dev/null || true
    fi
    rm -f "$unit"
    [ "$use_systemd" -eq 1 ] && systemctl daemon-reload
    rm -rf "$venv"
    if [ "$purge" -eq 1 ]; then
        rm -rf "$etc" "$state" "$cache"
        if [ -z "$prefix" ] && id -u "$user" >/dev/null 2>&1; then
            userdel "$user" 2>/dev/null || true
        fi
        say "removed the service, the venv, the config, the state and the user"
    else
        say "removed the service and the venv; kept $etc and $state (--purge removes them)"
    fi
    exit 0
fi

# -- 1. prerequisites -------------------------------------------------------------------
arch=${EDGE_RUNTIME_TEST_ARCH:-$(uname -m)}   # test hook: pretend another machine
command -v python3 >/dev/null 2>&1 || die "python3 is missing: apt-get install python3 python3-venv"
bits=$(python3 -c 'import struct; print(struct.calcsize("P") * 8)')
[ -n "${EDGE_RUNTIME_TEST_ARCH:-}" ] && case "$arch" in armv6l|armv7l|i686|i386) bits=32 ;; esac
if [ "$bits" != 64 ]; then
    die "this is a 32-bit system ($arch, ${bits}-bit Python): onnxruntime has no wheels for it; flash a 64-bit OS (Raspberry Pi OS (64-bit) on a Pi 3, 4, 5 or Zero 2 W) and run this again"
fi
case "$arch" in
    x86_64|aarch64|arm64|amd64) ;;
    *) die "unsupported machine $arch: edge-runtime is tested on amd64 and arm64 (aarch64)" ;;
esac
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "Python $(python3 -c 'import platform; print(platform.python_version())') is too old: edge-runtime needs 3.11 or newer (Debian 12 / Raspberry Pi OS Bookworm have it)"
python3 -c 'import venv, ensurepip' 2>/dev/null ||
    die "the Python venv module is missing: apt-get install python3-venv"
[ -z "$config_src" ] || [ -f "$config_src" ] || die "no config file $config_src"
[ -z "$fleet_key" ] || [ -f "$fleet_key" ] || die "no fleet key file $fleet_key"

raspberry_pi=0
if [ -f /etc/rpi-issue ] || grep -qs "Raspberry Pi" /proc/device-tree/model; then
    raspberry_pi=1
fi
if [ "$site_packages" = auto ]; then
    site_packages=no
    [ "$raspberry_pi" -eq 1 ] && site_packages=yes
fi

# -- 2. service user --------------------------------------------------------------------
if [ -z "$prefix" ]; then
    if ! id -u "$user" >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/edge-runtime --no-create-home \
            --shell /usr/sbin/nologin --user-group "$user"
        say "created the service user $user"
    fi
    groups=""
    for group in video gpio i2c spi dialout audio; do
        if getent group "$group" >/dev/null 2>&1; then
            usermod -a -G "$group" "$user"
            groups="$groups $group"
        fi
    done
    say "$user is in the groups:${groups:- (none of video gpio i2c spi dialout audio exist)}"
else
    say "--prefix: no service user, no systemctl (files under $prefix)"
fi

# -- 3. the venv ------------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
    if [ "$site_packages" = yes ]; then
        python3 -m venv --system-site-packages "$venv"
        say "venv $venv (with the system's packages: picamera2 from apt is importable)"
    else
        python3 -m venv "$venv"
        say "venv $venv"
    fi
fi
say "installing edge-runtime from $repo into $venv (pip)"
"$venv/bin/pip" install --quiet --upgrade "$repo"
mkdir -p "$docs"
cp "$repo/deploy/README.md" "$docs/deploy.md"
cp "$repo/docs/config.md" "$docs/config.md"
cp "$repo/README.md" "$docs/README.md"
"$venv/bin/edge-runtime" models verify >/dev/null
say "shipped models verified"

# -- 4. config and state ----------------------------------------------------------------
install -d -m 0755 "$etc"
install -d -m 0750 "$state" "$state/models" "$cache"
if [ -z "$prefix" ]; then
    chown "$user:$user" "$state" "$state/models" "$cache"
fi
config=$etc/config.toml
if [ -f "$config" ]; then
    say "kept the existing $config"
elif [ -n "$config_src" ]; then
    install -m 0640 "$config_src" "$config"
    say "installed $config_src as $config"
else
    node_name=$(hostname 2>/dev/null || echo edge-node)
    cat > "$config" <<EOF
# edge-runtime node config (docs: $docs/config.md). Written by deploy/install.sh.
# Paths are absolute: the service runs with everything read-only but $state.
[node]
name = "$node_name"
state_dir = "$state"

[[sources]]
type = "system"
id = "soc"
channel = "cpu_temperature_c"
min_rate_hz = 0.05
max_rate_hz = 0.1

[[pipelines]]
id = "soc-temperature"
source = "soc"
detector = "anomaly"
EOF
    chmod 0640 "$config"
    say "wrote a starter config $config (the board watching its own temperature)"
fi
[ -z "$prefix" ] && chown "root:$user" "$config"
state_dir=$("$venv/bin/python" -c 'import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb")).get("node", {}).get("state_dir", "state"))' "$config")
case "$state_dir" in
    /*) ;;
    *) die "$config: node.state_dir is relative (\"$state_dir\"), so it lands under $etc where the service cannot write; set state_dir = \"$state\"" ;;
esac
if [ -n "$fleet_key" ]; then
    install -m 0644 "$fleet_key" "$etc/fleet.pub"
    say "fleet key installed: only updates signed by it are accepted"
fi
if [ -z "$prefix" ] && command -v runuser >/dev/null 2>&1; then
    runuser -u "$user" -- "$venv/bin/edge-runtime" check "$config"
else
    "$venv/bin/edge-runtime" check "$config"
fi

# -- 5. the systemd unit ----------------------------------------------------------------
install -d -m 0755 "$unit_dir"
sed "s#/opt/edge-runtime#$venv#g; s#/etc/edge-runtime#$etc#g" \
    "$repo/deploy/systemd/edge-runtime.service" > "$unit.tmp"
chmod 0644 "$unit.tmp"
mv "$unit.tmp" "$unit"
if [ "$use_systemd" -eq 1 ]; then
    systemctl daemon-reload
    systemctl enable edge-runtime.service
    systemctl restart edge-runtime.service
    say "edge-runtime.service enabled and started; 'systemctl status edge-runtime' and 'edge-runtime status' show it"
elif [ -z "$prefix" ]; then
    if command -v systemctl >/dev/null 2>&1; then
        systemctl enable edge-runtime.service >/dev/null 2>&1 || true
    fi
    say "this system was not booted with systemd (a container or chroot): the unit is installed as $unit; it starts at the next boot with systemd (or: systemctl enable --now edge-runtime)"
else
    say "unit written to $unit (not enabled: --prefix)"
fi
say "done"

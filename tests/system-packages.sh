#!/bin/sh
# Installs the Debian packages the test suite uses, if any are missing (the README's
# test command runs this first). As root it calls apt-get itself; otherwise through
# sudo; where neither works it says which packages to install and exits 2.
#
# Why each package is here:
#   gcc g++ libc6-dev      build the reference firmware the bridge tests talk to over a pty
#   python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad}
#                          GStreamer's RTSP server (run by the system python3), the IP
#                          camera of the RTSP tests; plugins-bad brings the H.264 encoder
#   mosquitto mosquitto-clients  the real MQTT broker (and mosquitto_passwd) the upstream tests publish to
#   espeak-ng              speaks the words the audio tests mix with silence and noise
#   alsa-utils             arecord, the ALSA capture child process of the audio source
#   systemd                systemd-analyze: verify the unit and score its exposure (works
#                          without systemd running, so in containers too)
#   minisign               the real signing tool: update signatures it makes must verify
#                          in the runtime, and the runtime's must verify with minisign -V
#   chromium               the real browser tests/web loads the node's page in (via Playwright)
#   prometheus             the real Prometheus server tests/web lets scrape /metrics
#   iproute2               ip netns, veth and bridges: tests/mesh builds its hosts from them
set -eu

PACKAGES="gcc g++ libc6-dev
python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
gstreamer1.0-plugins-bad
mosquitto mosquitto-clients
espeak-ng alsa-utils
systemd minisign
chromium prometheus
iproute2"

if ! command -v dpkg >/dev/null 2>&1; then
    echo "tests/system-packages.sh: this is not a Debian-based system (no dpkg)." >&2
    echo "  Install the equivalents of these Debian packages by hand, then run pytest:" >&2
    echo "  $(echo $PACKAGES)" >&2
    exit 2
fi

missing=""
for pkg in $PACKAGES; do
    # dpkg -s succeeds for removed-but-configured packages too: ask for the status word.
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "tests/system-packages.sh: the tests need these Debian packages:$missing" >&2
    echo "  You are not root and there is no sudo: as root, run" >&2
    echo "  apt-get install --no-install-recommends$missing" >&2
    exit 2
fi

echo "== installing Debian packages the tests use:$missing"
if ! { $as_root apt-get update -qq &&
       DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq \
           --no-install-recommends $missing >/dev/null; }; then
    echo "tests/system-packages.sh: could not install:$missing" >&2
    echo "  Run 'apt-get install --no-install-recommends$missing' as root and try again." >&2
    exit 2
fi

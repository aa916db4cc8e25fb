"""A real RTSP server for the camera tests: GStreamer's gst-rtsp-server on 127.0.0.1.

Run by Debian's system Python (``/usr/bin/python3``), not the project's venv: it needs the
GObject bindings (``python3-gi``), which are Debian packages. It imports nothing from the
project. ``tests/helpers/rtsp.py`` starts and stops it; run by hand it is also a quick
way to look at the stream::

    /usr/bin/python3 tests/helpers/rtsp_server.py --port 8554 &
    ffplay -rtsp_transport tcp rtsp://127.0.0.1:8554/stream

On start it prints one line, ``READY <port>``, once the port is listening. Anything
missing makes it print ``MISSING <apt package>: <what>`` and exit with code 3.
"""

from __future__ import annotations

import argparse
import signal
import sys

#: Exit code for "a Debian package is missing"; the test helper turns it into a message.
EXIT_MISSING = 3

#: Which Debian package ships each GStreamer element the pipelines below use.
ELEMENT_PACKAGES = {
    "videotestsrc": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
    "jpegenc": "gstreamer1.0-plugins-good",
    "rtpjpegpay": "gstreamer1.0-plugins-good",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "openh264enc": "gstreamer1.0-plugins-bad",
}

#: Media pipelines by encoding. A moving ball on a live test source; the payloader must be
#: called ``pay0`` for gst-rtsp-server. H.264 (what most IP cameras send) uses a short
#: GOP and repeats SPS/PPS so a client that joins mid-stream decodes within a second.
PIPELINES = {
    "jpeg": (
        "videotestsrc is-live=true pattern=ball ! "
        "video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 ! "
        "jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26"
    ),
    "h264": (
        "videotestsrc is-live=true pattern=ball ! "
        "video/x-raw,width={width},height={height},framerate={fps}/1 ! videoconvert ! "
        "openh264enc gop-size={gop} ! video/x-h264,profile=constrained-baseline ! "
        "rtph264pay name=pay0 pt=96 config-interval=-1"
    ),
}


def _missing(package: str, what: str) -> None:
    print(f"MISSING {package}: {what}", flush=True)
    sys.exit(EXIT_MISSING)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--path", default="/stream")
    parser.add_argument("--encoding", choices=sorted(PIPELINES), default="jpeg")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--gop", type=int, default=15, help="H.264 keyframe interval, frames")
    parser.add_argument("--transport", choices=("tcp", "any"), default="tcp",
                        help="tcp refuses RTP over UDP, so a client must interleave")
    args = parser.parse_args()

    try:
        import gi
    except ImportError:
        _missing("python3-gi", "no GObject bindings (import gi)")
    try:
        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
    except (ValueError, ImportError) as exc:
        _missing("gir1.2-gst-rtsp-server-1.0", f"no GStreamer RTSP server typelib ({exc})")

    Gst.init(None)
    launch = PIPELINES[args.encoding].format(width=args.width, height=args.height,
                                              fps=args.fps, gop=args.gop)
    for name, package in ELEMENT_PACKAGES.items():
        if f"{name} " in launch and Gst.ElementFactory.find(name) is None:
            _missing(package, f"no GStreamer element {name}")

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( {launch} )")
    factory.set_shared(True)  # one encoder for all clients, like a camera
    if args.transport == "tcp":
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on 127.0.0.1:{args.port}", flush=True)
        sys.exit(1)

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()

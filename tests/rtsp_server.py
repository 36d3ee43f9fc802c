"""A real RTSP server for tests: GStreamer's (Debian's gir1.2-gst-rtsp-server-1.0).

Run by the system Python (``/usr/bin/python3``, which has ``python3-gi``) as a
subprocess: ``python3 tests/rtsp_server.py PORT``. It serves ``/live`` (a VP8
picture of one colour and an Opus 440 Hz tone, both live) and prints ``ready``
once it listens; it runs until killed.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=solid-color foreground-color=0xff1e1ee6"
    " ! video/x-raw,width=320,height=240,framerate=15/1"
    " ! vp8enc deadline=1 keyframe-max-dist=15 ! rtpvp8pay name=pay0 pt=96"
    " audiotestsrc is-live=true freq=440 ! audioconvert ! audioresample"
    " ! audio/x-raw,rate=48000,channels=2 ! opusenc ! rtpopuspay name=pay1 pt=97 )"
)


def main() -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(sys.argv[1])
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


main()
